"""Clients' private state (error-feedback residuals), kept by the server between a client's rounds.

A residual is as large as the model's compressed tensors, one per client ever sampled
(1.56 MB for CNN4, so 1,000 clients would hold 1.6 GB). Without a run directory the
states stay in memory. A run that checkpoints keeps them in files instead,
``<run>/client_states/<client id>-<sha256>.bin``, and holds only their digests in
memory: a round reads the states of its sampled clients and writes the new ones, and the
checkpoint names each client's file by digest instead of embedding every state.

Files are named by their content and never rewritten: a state that did not change since
the last checkpoint costs that checkpoint ~80 bytes, not its size. A file is deleted only
once the checkpoint just written no longer names it, so the files of the last good
checkpoint survive a crash at any moment.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import torch

from fedmrn_pl.run_directory import STATES_DIRNAME
from fedmrn_pl.saving import atomic_write

__all__ = ["STATES_DIRNAME", "ClientStateError", "ClientStateStore", "state_file"]

_FILE = re.compile(r"(0|[1-9][0-9]*)-([0-9a-f]{64})\.bin")


class ClientStateError(RuntimeError):
    """A client's state file is missing or does not hold the bytes its digest names."""


def state_file(directory: str | Path, client_id: int, digest: str) -> Path:
    """Where client ``client_id``'s state with SHA-256 ``digest`` is kept."""
    return Path(directory) / f"{client_id}-{digest}.bin"


def read_state_file(directory: str | Path, client_id: int, digest: str) -> bytes:
    """The state file's bytes, checked against ``digest``.

    Raises:
        ClientStateError: the file is missing, unreadable or holds other bytes.
    """
    path = state_file(directory, client_id, digest)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ClientStateError(f"client {client_id}'s state file {path} cannot be read: {error.strerror or error}") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise ClientStateError(f"client {client_id}'s state file {path} was changed: its SHA-256 is not the one named")
    return data


class ClientStateStore:
    """``{client_id: state bytes}``, in memory or (after :meth:`attach`) in files named by digest."""

    def __init__(self) -> None:
        self._memory: dict[int, bytes] = {}
        self._digests: dict[int, str] = {}  # the file-backed states
        self.directory: Path | None = None

    def __len__(self) -> int:
        return len(self._held())

    def __iter__(self) -> Iterator[int]:
        """The ids of the clients that have a state, in order."""
        return iter(sorted(self._held()))

    def _held(self) -> Mapping[int, object]:
        return self._digests if self.directory is not None else self._memory

    def get(self, client_id: int) -> bytes | None:
        """Client ``client_id``'s state, or None before its first round."""
        if self.directory is None:
            return self._memory.get(client_id)
        digest = self._digests.get(client_id)
        return None if digest is None else read_state_file(self.directory, client_id, digest)

    def of_clients(self, client_ids: Iterable[int]) -> dict[int, bytes]:
        """The states of ``client_ids`` that have one (a round's sampled clients)."""
        found = ((client_id, self.get(client_id)) for client_id in client_ids)
        return {client_id: state for client_id, state in found if state is not None}

    def put(self, client_id: int, state: bytes) -> None:
        """Keep ``state`` as client ``client_id``'s (a new file when file-backed; the old one stays until pruned)."""
        if self.directory is None:
            self._memory[client_id] = state
            return
        digest = hashlib.sha256(state).hexdigest()
        path = state_file(self.directory, client_id, digest)
        if not path.is_file():
            with atomic_write(path) as file:
                file.write(state)
        self._digests[client_id] = digest

    def attach(self, directory: str | Path) -> None:
        """Keep the states in files under ``directory`` from now on (the ones in memory move there)."""
        if self.directory is not None:
            return
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        held, self._memory = self._memory, {}
        for client_id, state in held.items():
            self.put(client_id, state)

    def prune(self) -> list[Path]:
        """Delete the state files no current state names (after a checkpoint saved the current ones); return them."""
        if self.directory is None:
            return []
        kept = {state_file(self.directory, c, d).name for c, d in self._digests.items()}
        removed = [path for path in self.directory.iterdir() if _FILE.fullmatch(path.name) and path.name not in kept]
        for path in removed:
            path.unlink(missing_ok=True)
        return removed

    def state_dict(self) -> dict[str, torch.Tensor | str]:
        """For a checkpoint: ``{client id: hex digest}`` when file-backed, else ``{client id: uint8 tensor}``."""
        if self.directory is not None:
            return {str(client_id): digest for client_id, digest in sorted(self._digests.items())}
        return {str(c): torch.frombuffer(bytearray(b), dtype=torch.uint8) for c, b in sorted(self._memory.items())}

    def load(self, states: Mapping[int, bytes]) -> None:
        """Replace every state with ``states`` (checked already: a checkpoint's, on resume)."""
        self._memory, self._digests = {}, {}
        for client_id, state in states.items():
            self.put(client_id, state)
