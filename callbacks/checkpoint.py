"""Checkpointing: save the federated state every N rounds so a stopped run can resume.

A checkpoint is a plain dict of tensors and plain data, written atomically and loaded
with ``weights_only=True``. It carries a SHA-256 digest of its own content, so flipped
bytes are found on load, and its structure is checked before anything trusts it.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fedmrn_pl.interrupt import RunInterrupted

from .base import FederatedCallback, FederatedRun

__all__ = [
    "CHECKPOINT_NAME",
    "CheckpointError",
    "FederatedCheckpoint",
    "load_checkpoint",
    "remove_stale_temp_files",
    "save_checkpoint",
    "state_digest",
]

CHECKPOINT_NAME = "checkpoint.pt"
DIGEST_KEY = "state_sha256"  # hex SHA-256 of the rest of the checkpoint (see ``state_digest``)


class CheckpointError(ValueError):
    """A checkpoint cannot be used: unreadable, damaged, or not this run's; the message names the file and why."""


def state_digest(state: Any) -> str:
    """SHA-256 over names, types, shapes, dtypes and bytes: any changed value changes it."""
    digest = hashlib.sha256()
    _feed(digest, state)
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    """Add ``value`` to ``digest`` in a canonical, unambiguous form (each item tagged and sized)."""
    if isinstance(value, torch.Tensor):
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{flat.dtype}{tuple(value.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    elif isinstance(value, Mapping):
        digest.update(f"D{len(value)};".encode())
        for key in sorted(value, key=repr):
            _feed(digest, key)
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"{'L' if isinstance(value, list) else 'U'}{len(value)};".encode())
        for item in value:
            _feed(digest, item)
    else:  # None, bool, int, float, str and the few other types weights_only allows
        digest.update(f"{type(value).__qualname__}:{value!r};".encode())


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` plus its digest atomically: to a temp file first, then rename over ``path``.

    A process killed mid-save leaves at most a stray ``.tmp`` file (removed by
    ``remove_stale_temp_files`` when the run starts again); the last good checkpoint
    is never replaced by a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            torch.save({**state, DIGEST_KEY: state_digest(state)}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def remove_stale_temp_files(dirpath: str | Path) -> list[Path]:
    """Delete the temp files of saves whose process is gone (killed mid-save); return them."""
    removed = []
    for tmp in Path(dirpath).glob(f".{CHECKPOINT_NAME}.*.tmp"):
        pid = tmp.name[len(CHECKPOINT_NAME) + 2 : -len(".tmp")]
        if pid.isdigit() and not _process_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or a number no process can have
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def load_checkpoint(
    path: str | Path, *, model_state: Mapping[str, torch.Tensor] | None = None, rounds: int | None = None
) -> dict[str, Any]:
    """Load and verify a checkpoint written by ``save_checkpoint`` (tensors and plain data only).

    The digest and the structure are checked; with ``model_state`` the tensors' names,
    shapes and dtypes must match it, and with ``rounds`` the completed rounds must not
    exceed it.

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        CheckpointError: the file is unreadable, damaged, or does not fit the model or rounds.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; a run writes {CHECKPOINT_NAME} into its output_dir")
    state = _read(path)
    try:
        _check_digest(state)
        _check_structure(state)
        if model_state is not None:
            _check_against_model(state["global_state"], model_state)
        if rounds is not None and state["completed_rounds"] > rounds:
            raise CheckpointError(
                f"it holds {state['completed_rounds']} completed rounds but train.rounds={rounds}; "
                f"resume with train.rounds >= {state['completed_rounds']}"
            )
    except CheckpointError as error:
        raise CheckpointError(f"checkpoint {path}: {error}") from None
    return state


def _read(path: Path) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True``, its failures turned into one line without torch's advice."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. the pickle-protocol notice of a foreign file
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a truncated, damaged or foreign file
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if isinstance(error, pickle.UnpicklingError) and found:
            raise CheckpointError(
                f"checkpoint {path} refers to the Python object {found.group(1)}; a checkpoint holds only "
                "tensors and plain data, and nothing else is ever loaded from it"
            ) from None
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(error).__name__}): it is truncated, damaged "
            "or not a fedmrn-pl checkpoint"
        ) from None


def _check_digest(state: Any) -> None:
    if not isinstance(state, dict) or not isinstance(state.get(DIGEST_KEY), str):
        raise CheckpointError(f"no '{DIGEST_KEY}' digest: not written by this fedmrn-pl, or damaged")
    stored = state.pop(DIGEST_KEY)
    if state_digest(state) != stored:
        raise CheckpointError("content digest mismatch: the file changed after it was saved (damaged)")


def _check_structure(state: dict[str, Any]) -> None:
    """The fields a resume relies on, each of the right type and in range."""
    weights = state.get("global_state")
    if not isinstance(weights, dict) or not weights:
        raise CheckpointError("'global_state' must be a non-empty dict of tensors")
    for name, tensor in weights.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"'global_state' entry {name!r} must be a tensor under a str name")
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"'global_state' tensor {name!r} holds non-finite values")
    rounds = state.get("completed_rounds")
    if type(rounds) is not int or rounds < 0:
        raise CheckpointError(f"'completed_rounds'={rounds!r} must be an int >= 0")
    history = state.get("history")
    if not isinstance(history, list) or not all(isinstance(record, dict) for record in history):
        raise CheckpointError("'history' must be a list of dicts (one per round)")
    if len(history) != rounds:
        raise CheckpointError(f"'history' has {len(history)} rounds but 'completed_rounds' is {rounds}")
    elapsed = state.get("elapsed_seconds", 0.0)
    if not isinstance(elapsed, (int, float)) or not math.isfinite(elapsed) or elapsed < 0:
        raise CheckpointError(f"'elapsed_seconds'={elapsed!r} must be a finite number >= 0")
    for key in ("strategy", "callbacks"):
        if not isinstance(state.get(key, {}), dict):
            raise CheckpointError(f"'{key}' must be a dict")


def _check_against_model(weights: Mapping[str, torch.Tensor], model_state: Mapping[str, torch.Tensor]) -> None:
    missing, unexpected = sorted(set(model_state) - set(weights)), sorted(set(weights) - set(model_state))
    if missing or unexpected:
        raise CheckpointError(f"its model does not match: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, expected in model_state.items():
        tensor = weights[name]
        if tensor.shape != expected.shape or tensor.dtype != expected.dtype:
            raise CheckpointError(
                f"tensor {name!r} is {tensor.dtype} {tuple(tensor.shape)}, "
                f"the model has {expected.dtype} {tuple(expected.shape)}"
            )


class FederatedCheckpoint(FederatedCallback):
    """Save ``trainer.state_dict()`` to ``<dirpath>/checkpoint.pt`` every ``every_n_rounds``.

    Args:
        dirpath: the run directory.
        every_n_rounds: rounds between saves; the last round is always saved.
        extra: plain data saved beside the trainer state (e.g. the run's config fingerprint).
    """

    def __init__(self, dirpath: str | Path, every_n_rounds: int = 1, extra: dict[str, Any] | None = None) -> None:
        if not isinstance(every_n_rounds, int) or every_n_rounds < 1:
            raise ValueError(f"every_n_rounds must be an int >= 1, got {every_n_rounds!r}")
        self.path = Path(dirpath) / CHECKPOINT_NAME
        self.every_n_rounds = every_n_rounds
        self.extra = dict(extra or {})

    def on_round_end(self, trainer: FederatedRun, server_round: int, metrics: dict[str, Any]) -> None:
        if server_round % self.every_n_rounds == 0 or server_round == trainer.rounds:
            save_checkpoint({**self.extra, **trainer.state_dict()}, self.path)

    def on_exception(self, trainer: FederatedRun, exception: BaseException) -> None:
        """Ctrl-C stopped the run between rounds: save the last round if it was not saved yet."""
        if isinstance(exception, RunInterrupted) and not exception.forced and trainer.completed_rounds % self.every_n_rounds:
            save_checkpoint({**self.extra, **trainer.state_dict()}, self.path)
