"""Run files written whole or not at all: a temp file beside the target, fsync, then rename.

A full disk, a quota or a read-only directory never leaves a partial file: the temp file
is removed, the file it would have replaced is left as it was, and ``SaveError`` names
the file and why in one line. Torch-free, so the CLI can catch the error cheaply.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

__all__ = ["SaveError", "atomic_write", "remove_stale_temps", "temp_path"]


class SaveError(OSError):
    """A run file could not be written (no space left, quota, permissions); the previous version is untouched.

    Args:
        path: the file that was being written.
        reason: why, as the OS says it (``"No space left on device"``).
        errno: the OS error number (``errno.ENOSPC``), if there was one.
    """

    def __init__(self, path: str | Path, reason: str, errno: int | None = None) -> None:
        super().__init__(errno, reason, str(path))
        self.path = Path(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.reason[:1].lower()}{self.reason[1:]} writing {self.path}"

    def __reduce__(self) -> tuple[type, tuple[str, str, int | None]]:
        return type(self), (str(self.path), self.reason, self.errno)

    @classmethod
    def of(cls, path: str | Path, error: OSError) -> SaveError:
        """The ``SaveError`` for ``error``, raised while writing ``path``."""
        if isinstance(error, SaveError):
            return error
        return cls(path, error.strerror or str(error) or type(error).__name__, error.errno)


def temp_path(path: str | Path) -> Path:
    """Where ``path`` is written before it is renamed into place: ``.<name>.<pid>.tmp`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def remove_stale_temps(dirpath: str | Path, targets: Sequence[str]) -> list[Path]:
    """Delete the temp files (``temp_path``) of ``targets`` whose process is gone (killed mid-save); return them.

    Args:
        dirpath: the folder the targets are in.
        targets: file names or glob patterns relative to ``dirpath`` (``"payloads/*.fmrn"``);
            temp files of anything else are left alone.
    """
    removed = []
    for target in targets:
        folder, _, name = target.rpartition("/")
        for tmp in sorted((Path(dirpath) / folder).glob(f".{name}.*.tmp")):
            pid = tmp.name[: -len(".tmp")].rpartition(".")[2]
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


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """Write ``path`` through the binary file this yields; when the block ends, fsync and rename it into place.

    Raises:
        SaveError: an ``OSError`` (also one a writer such as ``torch.save`` wrapped in another
            exception) while writing; no temp file remains and ``path`` is as it was.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except Exception as error:
        cause = _os_error(error)
        if cause is None:
            raise
        raise SaveError.of(path, cause) from error
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _os_error(error: BaseException) -> OSError | None:
    """The ``OSError`` behind ``error``: itself, or one in its cause/context chain (torch wraps it)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
