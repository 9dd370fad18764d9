"""One run per directory: a lock that a second writer cannot take, and no earlier run replaced silently.

A run directory holds a run once it has a ``metrics.json``, a checkpoint or saved payloads;
a lone ``config.yaml`` (a run stopped before its first checkpoint) holds nothing to lose.
The lock is an OS file lock (``filelock``), so it dies with its process: a killed run never
leaves a stale lock behind.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from filelock import FileLock, Timeout

from fedmrn_pl.saving import remove_stale_temps

__all__ = ["CHECKPOINT_NAME", "LOCK_NAME", "STATES_DIRNAME", "RunDirectory", "RunDirectoryError", "remove_stale_temp_files", "run_files"]

CHECKPOINT_NAME = "checkpoint.pt"  # here, not in the checkpoint module, so checking a --resume path needs no torch
LOCK_NAME = ".fedmrn-pl.lock"
STATES_DIRNAME = "client_states"  # clients' private state files, beside the checkpoint (fedmrn_pl.client_states)
_RUN_FILES = ("metrics.json", CHECKPOINT_NAME, "payloads", STATES_DIRNAME)  # what makes a directory hold a run
_REPLACED = (*_RUN_FILES, "config.yaml", "accuracy_vs_round.png", "accuracy_vs_uplink.png")  # what overwrite removes
_WRITTEN_WHOLE = (CHECKPOINT_NAME, "metrics.json", "payloads/*.fmrn", f"{STATES_DIRNAME}/*.bin")  # saved through a temp file and a rename


class RunDirectoryError(ValueError):
    """The run directory is in use by another run, or holds a run this one would replace."""


def run_files(path: str | Path) -> list[str]:
    """The names in ``path`` that show it holds a run (empty: nothing to lose)."""
    directory = Path(path)
    found = []
    for name in _RUN_FILES:
        entry = directory / name
        if entry.is_file() or (entry.is_dir() and any(entry.iterdir())):
            found.append(name)
    return found


def remove_stale_temp_files(path: str | Path) -> list[Path]:
    """Delete the temp files a killed run left while saving its files (checkpoint, metrics, payloads); return them."""
    return remove_stale_temps(path, _WRITTEN_WHOLE)


class RunDirectory:
    """Claims ``path`` for one run.

    Args:
        path: the run directory (created on claim).
        overwrite: replace a run found there (its metrics, checkpoint, payloads, plots and
            config.yaml; nothing else in the directory is touched) instead of refusing.
    """

    def __init__(self, path: str | Path, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        self._lock: FileLock | None = None

    @property
    def claimed(self) -> bool:
        """Whether this object holds the directory's lock."""
        return self._lock is not None

    def claim(self, resuming: bool, advice: str = "") -> None:
        """Lock the directory; unless ``resuming``, refuse (or, with ``overwrite``, clear) an earlier run.

        Args:
            resuming: the run continues the one in the directory.
            advice: what to do instead (resume, another directory, overwrite), in the caller's terms.

        Raises:
            RunDirectoryError: another process holds the lock, or the directory holds a run.
        """
        if self.claimed:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunDirectoryError(f"output directory {self.path} cannot be created: {error.strerror}") from None
        lock = FileLock(self.path / LOCK_NAME, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise RunDirectoryError(
                f"{self.path} is in use by another run (it holds {self.path / LOCK_NAME}); "
                "wait for that run to end or write to another directory"
            ) from None
        self._lock = lock
        try:
            self.check(resuming, advice)
        except RunDirectoryError:
            self.release()
            raise
        if not resuming and run_files(self.path):
            self._clear()

    def check(self, resuming: bool, advice: str = "") -> None:
        """Refuse early, without locking, what ``claim`` would refuse for an earlier run (same arguments)."""
        found = [] if resuming or self.overwrite else run_files(self.path)
        if found:
            raise RunDirectoryError(
                f"{self.path} already holds a run ({', '.join(found)}); "
                f"{advice or 'write to another directory or replace it with overwrite=True'}"
            )

    def release(self) -> None:
        """Let other runs have the directory (the lock file stays; the lock is what counts)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _clear(self) -> None:
        for name in _REPLACED:
            entry = self.path / name
            if entry.is_dir():
                shutil.rmtree(entry)
            elif entry.exists():
                entry.unlink()
