"""Checkpointing: save the federated state every N rounds so a stopped run can resume."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .base import FederatedCallback, FederatedRun

__all__ = ["CHECKPOINT_NAME", "FederatedCheckpoint", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` atomically: to a temp file first, then rename over ``path``.

    A process killed mid-save leaves at most a stray ``.tmp`` file; the last good
    checkpoint is never replaced by a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by ``save_checkpoint`` (tensors and plain data only).

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        ValueError: the file is not a readable fedmrn-pl checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; a run writes {CHECKPOINT_NAME} into its output_dir")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a damaged file
        raise ValueError(f"cannot read checkpoint {path}: {type(error).__name__}: {error}") from None
    if not isinstance(state, dict) or "global_state" not in state:
        raise ValueError(f"{path} is not a fedmrn-pl checkpoint (no 'global_state')")
    return state


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
