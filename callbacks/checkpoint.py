"""Checkpointing: save the federated state every N rounds so a stopped run can resume.

A checkpoint is a plain dict of tensors and plain data, written atomically and loaded
with ``weights_only=True`` (so loading one runs no code). It carries a SHA-256 digest of
its own content, so flipped bytes are found on load, and every section is checked
(``checkpoint_state.SECTIONS``) before anything trusts it.

The digest guards against damage, not against a forger: anyone who can write the file
can recompute it. With ``FEDMRN_PL_CHECKPOINT_KEY`` set, a save also writes an
HMAC-SHA256 of the same content under that key, and a load refuses a checkpoint whose
tag is missing or does not verify.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fedmrn_pl.client_states import STATES_DIRNAME, ClientStateError, read_state_file
from fedmrn_pl.interrupt import RunInterrupted
from fedmrn_pl.run_directory import CHECKPOINT_NAME, remove_stale_temp_files
from fedmrn_pl.saving import atomic_write

from .base import FederatedCallback, FederatedRun
from .checkpoint_state import CheckpointError, check_against_model, check_state

__all__ = [
    "CHECKPOINT_NAME",
    "KEY_ENV",
    "CheckpointError",
    "FederatedCheckpoint",
    "checkpoint_path",
    "load_checkpoint",
    "remove_stale_temp_files",
    "save_checkpoint",
    "sealed",
    "state_digest",
]

log = logging.getLogger(__name__)

DIGEST_KEY = "state_sha256"  # hex SHA-256 of the rest of the checkpoint (see ``state_digest``)
TAG_KEY = "state_hmac_sha256"  # hex HMAC-SHA256 of the same content, under KEY_ENV's key (when set at save)
KEY_ENV = "FEDMRN_PL_CHECKPOINT_KEY"  # the secret that keys TAG_KEY; unset or empty: no tag
_unverified_noticed = False  # the notice that a tag went unverified is given once per process


def state_digest(state: Any) -> str:
    """SHA-256 over names, types, shapes, dtypes and bytes: any changed value changes it."""
    digest = hashlib.sha256()
    _feed(digest, state)
    return digest.hexdigest()


def checkpoint_key() -> bytes | None:
    """The HMAC key from ``FEDMRN_PL_CHECKPOINT_KEY`` (its bytes), or None when it is unset or empty."""
    return os.fsencode(os.environ.get(KEY_ENV, "")) or None


def sealed(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with its digest, and its HMAC tag when ``FEDMRN_PL_CHECKPOINT_KEY`` is set: what a save writes."""
    digest, tag = _digests(state, checkpoint_key())
    return {**state, DIGEST_KEY: digest, **({TAG_KEY: tag} if tag is not None else {})}


def _digests(state: Any, key: bytes | None) -> tuple[str, str | None]:
    """SHA-256 of ``state`` and, with ``key``, its HMAC-SHA256 over the same canonical input, in one pass."""
    digest = hashlib.sha256()
    tag = hmac.new(key, digestmod=hashlib.sha256) if key is not None else None
    _feed(_Both(digest, tag) if tag is not None else digest, state)
    return digest.hexdigest(), tag.hexdigest() if tag is not None else None


class _Both:
    """Feeds two hashes at once."""

    def __init__(self, first: Any, second: Any) -> None:
        self.first, self.second = first, second

    def update(self, data: bytes) -> None:
        self.first.update(data)
        self.second.update(data)


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

    A failed save (a full disk) removes its temp file; a process killed mid-save leaves at
    most a stray ``.tmp`` file (removed by ``remove_stale_temp_files`` when the run starts
    again); the last good checkpoint is never replaced by a half-written one.

    Raises:
        SaveError: the file could not be written (no space left, quota, permissions);
            the previous checkpoint at ``path`` is kept as it was.
    """
    path = Path(path)
    content = sealed(state)
    with atomic_write(path) as handle:
        torch.save(content, handle)
    return path


def load_checkpoint(
    path: str | Path, *, model_state: Mapping[str, torch.Tensor] | None = None, rounds: int | None = None
) -> dict[str, Any]:
    """Load and verify a checkpoint written by ``save_checkpoint`` (tensors and plain data only).

    The digest (and with ``FEDMRN_PL_CHECKPOINT_KEY`` set, the HMAC tag) and every section
    (``checkpoint_state.SECTIONS``) are checked; with ``model_state`` the tensors' names,
    shapes and dtypes must match it, and with ``rounds`` the completed rounds must not
    exceed it. What depends on the run (clients, strategy, payloads) is checked by
    ``FederatedTrainer.load_state_dict``.

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        CheckpointError: the file is unreadable, damaged, or does not fit the model or rounds.
    """
    path = checkpoint_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; a run writes {CHECKPOINT_NAME} into its output_dir")
    state = _read(path)
    try:
        _check_digest(state, path)
        check_state(state, rounds)
        if model_state is not None:
            check_against_model(state["global_state"], model_state)
        _read_client_states(state, path.parent / STATES_DIRNAME)
    except CheckpointError as error:
        raise CheckpointError(f"checkpoint {path}: {error}") from None
    except RecursionError:  # data nested deeper than any checkpoint is
        raise CheckpointError(f"checkpoint {path}: its data is nested too deeply to be a checkpoint") from None
    return state


def _read_client_states(state: dict[str, Any], directory: Path) -> None:
    """Replace each client state the checkpoint names by digest with its file's bytes, checked against the digest."""
    stored = state.get("client_states", {})
    for key, value in stored.items():
        if isinstance(value, str):
            try:
                data = read_state_file(directory, int(key), value)
            except ClientStateError as error:
                raise CheckpointError(f"'client_states'[{key!r}]: {error}") from None
            stored[key] = torch.frombuffer(bytearray(data), dtype=torch.uint8)


def checkpoint_path(path: str | Path) -> Path:
    """The checkpoint file ``path`` names: ``path`` itself, or ``<path>/checkpoint.pt`` for a run directory."""
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


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


def _check_digest(state: Any, path: Path) -> None:
    """The content digest, then the HMAC tag: required and verified when a key is set, else noted once."""
    if not isinstance(state, dict) or not isinstance(state.get(DIGEST_KEY), str):
        raise CheckpointError(f"no '{DIGEST_KEY}' digest: not written by this fedmrn-pl, or damaged")
    stored, tag = state.pop(DIGEST_KEY), state.pop(TAG_KEY, None)
    key = checkpoint_key()
    digest, expected = _digests(state, key)
    if digest != stored:
        raise CheckpointError("content digest mismatch: the file changed after it was saved (damaged)")
    if expected is not None:
        if tag is None:
            raise CheckpointError(f"it has no keyed digest '{TAG_KEY}' but {KEY_ENV} is set: it was saved without the key")
        if not (isinstance(tag, str) and tag.isascii() and hmac.compare_digest(tag, expected)):
            raise CheckpointError(
                f"its keyed digest '{TAG_KEY}' does not verify with {KEY_ENV}: it was saved with another key, "
                "or changed by someone without the key"
            )
    elif tag is not None:
        global _unverified_noticed
        if not _unverified_noticed:
            _unverified_noticed = True
            log.warning("checkpoint %s carries a keyed digest that was not verified: %s is not set", path, KEY_ENV)


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

    def on_fit_start(self, trainer: FederatedRun) -> None:
        """Clients' private state goes to files beside the checkpoint, which names them by digest."""
        trainer.client_states.attach(self.path.parent / STATES_DIRNAME)

    def on_round_end(self, trainer: FederatedRun, server_round: int, metrics: dict[str, Any]) -> None:
        if server_round % self.every_n_rounds == 0 or server_round == trainer.rounds:
            self._save(trainer)

    def on_exception(self, trainer: FederatedRun, exception: BaseException) -> None:
        """Ctrl-C stopped the run between rounds: save the last round if it was not saved yet."""
        if isinstance(exception, RunInterrupted) and not exception.forced and trainer.completed_rounds % self.every_n_rounds:
            self._save(trainer)

    def _save(self, trainer: FederatedRun) -> None:
        """Write the checkpoint, then drop the client state files only older checkpoints named."""
        save_checkpoint({**self.extra, **trainer.state_dict()}, self.path)
        trainer.client_states.prune()
