"""Clients over ``torch.distributed`` ranks: who trains which client, and how results reach rank 0.

A job launched by ``torchrun`` (or SLURM through torchrun) runs one process per rank.
Every rank samples the same clients; client ``i`` of the round's sample trains on
rank ``i mod world_size``. Results cross the process boundary as bytes over a gloo
group (the real uplink payloads plus a small JSON record each, no pickle), rank 0
validates and aggregates, and broadcasts the new global model and the round's
metrics, so every rank starts the next round from the same state. Gloo works for
CPU and GPU runs alike and lets two ranks share one GPU.

The group is a standalone ``ProcessGroupGloo`` on torchrun's rendezvous store, not
the default process group: ``torch.distributed.is_initialized()`` stays False, so the
user's LightningModule, its torchmetrics metrics and each client's Lightning Trainer
run exactly as in a single process and never try to sync with the other ranks.

Every collective has a timeout: a rank that died or hangs makes the others fail
with :class:`DistributedError` naming the rank and the operation, never wait forever.
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from fedmrn_pl.messages import FitRequest, FitResult

__all__ = ["DEFAULT_TIMEOUT_SECONDS", "DistributedError", "Ranks", "clients_of_rank", "local_device_index"]

DEFAULT_TIMEOUT_SECONDS = 1800.0  # how long a collective waits for a peer rank
_LENGTH = struct.Struct("<Q")
_NO_PAYLOAD = (1 << 64) - 1
_GROUP_NUMBERS = itertools.count()  # each trainer's group gets its own store prefix, the same on every rank


class DistributedError(RuntimeError):
    """A collective between ranks failed: a peer rank died, hung past the timeout, or the group broke."""


def clients_of_rank(client_ids: Sequence[int], rank: int, world_size: int) -> list[int]:
    """The clients ``rank`` trains: client ``i`` of the sampled list goes to rank ``i mod world_size``."""
    return [client_id for index, client_id in enumerate(client_ids) if index % world_size == rank]


@dataclass(frozen=True)
class Ranks:
    """This process's place among the ranks, and the gloo group results travel over.

    ``Ranks.from_environment()`` joins the ranks a launcher (torchrun, SLURM via
    torchrun) describes in the environment, or describes a single process (rank 0 of 1).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    group: Any = None  # a ProcessGroupGloo; None for a single process

    @classmethod
    def from_environment(cls, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> Ranks:
        """Rendezvous with the other ranks through the launcher's store (``env://``), if there are any."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        store, rank, world_size = next(dist.rendezvous("env://"))
        prefix = f"fedmrn_pl/{next(_GROUP_NUMBERS)}"
        timeout = datetime.timedelta(seconds=timeout_seconds)
        group = dist.ProcessGroupGloo(dist.PrefixStore(prefix, store), rank, world_size, timeout)
        return cls(rank, world_size, int(os.environ.get("LOCAL_RANK", rank)), group)

    @property
    def is_global_zero(self) -> bool:
        """Whether this process is rank 0: the server (aggregation, evaluation, logging, files)."""
        return self.rank == 0

    def gather_results(self, results: Sequence[FitResult]) -> list[FitResult] | None:
        """Every rank's results, on rank 0 (in rank order); None on the other ranks."""
        if self.world_size == 1:
            return list(results)
        encoded = _encode_results(results)
        size = torch.tensor([len(encoded)], dtype=torch.int64)
        sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(self.world_size)]
        self._run("all_gather of result sizes", self.group.allgather, [sizes], [size])
        longest = max(1, int(max(s.item() for s in sizes)))
        padded = torch.zeros(longest, dtype=torch.uint8)
        if encoded:
            padded[: len(encoded)] = torch.frombuffer(bytearray(encoded), dtype=torch.uint8)
        gathered = [torch.zeros(longest, dtype=torch.uint8) for _ in range(self.world_size)]
        options = dist.GatherOptions()
        options.rootRank = 0
        self._run("gather of client results", self.group.gather, [gathered] if self.rank == 0 else [], [padded], options)
        if self.rank != 0:
            return None
        everyone = []
        for buffer, count in zip(gathered, sizes):
            everyone += _decode_results(buffer[: int(count.item())].numpy().tobytes())
        return everyone

    def broadcast_round(
        self, global_state: dict[str, torch.Tensor], metrics: dict[str, Any] | None
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Rank 0's global model and round metrics, on every rank."""
        if self.world_size == 1:
            assert metrics is not None
            return global_state, metrics
        state = {}
        for name in sorted(global_state):  # every rank holds the same names and shapes
            tensor = global_state[name].detach().cpu().contiguous().clone()
            self._broadcast(f"broadcast of {name!r}", tensor)
            state[name] = tensor
        encoded = json.dumps(metrics).encode() if self.rank == 0 else b""
        size = torch.tensor([len(encoded)], dtype=torch.int64)
        self._broadcast("broadcast of the round metrics", size)
        buffer = torch.zeros(int(size.item()), dtype=torch.uint8)
        if self.rank == 0:
            buffer.copy_(torch.frombuffer(bytearray(encoded), dtype=torch.uint8))
        self._broadcast("broadcast of the round metrics", buffer)
        return {name: state[name] for name in global_state}, json.loads(buffer.numpy().tobytes())

    def broadcast_client_states(self, states: dict[int, bytes] | None) -> dict[int, bytes]:
        """Rank 0's ``{client_id: state}`` for the round's clients, on every rank (clients change ranks each round)."""
        if self.world_size == 1:
            return dict(states or {})
        chunks = [_LENGTH.pack(len(states or {}))]
        for client_id, blob in sorted((states or {}).items()):
            chunks += [_LENGTH.pack(client_id), _LENGTH.pack(len(blob)), blob]
        encoded = b"".join(chunks) if self.rank == 0 else b""
        size = torch.tensor([len(encoded)], dtype=torch.int64)
        self._broadcast("broadcast of the client states", size)
        buffer = torch.zeros(int(size.item()), dtype=torch.uint8)
        if self.rank == 0 and encoded:
            buffer.copy_(torch.frombuffer(bytearray(encoded), dtype=torch.uint8))
        self._broadcast("broadcast of the client states", buffer)
        data, offset, received = buffer.numpy().tobytes(), _LENGTH.size, {}
        for _ in range(_LENGTH.unpack_from(data, 0)[0]):
            client_id, length = _LENGTH.unpack_from(data, offset)[0], _LENGTH.unpack_from(data, offset + 8)[0]
            received[client_id] = data[offset + 16 : offset + 16 + length]
            offset += 16 + length
        return received

    def _broadcast(self, what: str, tensor: torch.Tensor) -> None:
        options = dist.BroadcastOptions()
        options.rootRank = 0
        self._run(what, self.group.broadcast, [tensor], options)

    def _run(self, what: str, operation: Any, *args: Any) -> None:
        """Start a collective on the group and wait for it; a failure or timeout names this rank."""
        try:
            operation(*args).wait()
        except (RuntimeError, dist.DistBackendError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise DistributedError(
                f"rank {self.rank} of {self.world_size}: {what} failed; a peer rank died or did not answer "
                f"in time ({first_line})"
            ) from error


def _encode_results(results: Sequence[FitResult]) -> bytes:
    """Results as bytes: per result a JSON record (request, figures, why dropped) and the raw payload."""
    chunks = [_LENGTH.pack(len(results))]
    for result in results:
        record = json.dumps(
            {
                "request": [result.server_round, result.client_id, result.request.num_examples, result.request.seed],
                "train_loss": result.train_loss,
                "logged": result.logged,
                "stats": result.stats,
                "seconds": result.seconds,
                "dropped": result.dropped,
            }
        ).encode()
        chunks += [_LENGTH.pack(len(record)), record]
        for blob in (result.payload, result.client_state):
            chunks += [_LENGTH.pack(_NO_PAYLOAD)] if blob is None else [_LENGTH.pack(len(blob)), blob]
    return b"".join(chunks)


def _decode_results(data: bytes) -> list[FitResult]:
    """The inverse of ``_encode_results`` (bytes from our own ranks, so a short read is a bug, not an attack)."""
    view = memoryview(data)
    offset = 0

    def take(size: int) -> bytes:
        nonlocal offset
        chunk = bytes(view[offset : offset + size])
        if len(chunk) != size:
            raise DistributedError(f"a rank's results are truncated at byte {offset}")
        offset += size
        return chunk

    def take_blob() -> bytes | None:
        (size,) = _LENGTH.unpack(take(_LENGTH.size))
        return None if size == _NO_PAYLOAD else take(size)

    (count,) = _LENGTH.unpack(take(_LENGTH.size))
    results = []
    for _ in range(count):
        (record_size,) = _LENGTH.unpack(take(_LENGTH.size))
        record = json.loads(take(record_size))
        payload, client_state = (take_blob(), take_blob())
        results.append(
            FitResult(
                FitRequest(*record["request"]),
                payload=payload,
                train_loss=record["train_loss"],
                logged=record["logged"],
                stats=record["stats"],
                seconds=record["seconds"],
                dropped=record["dropped"],
                client_state=client_state,
            )
        )
    return results


def local_device_index(ranks: Ranks, accelerator: str) -> int | None:
    """The GPU a rank's clients train on (``LOCAL_RANK`` modulo the visible GPUs); None on CPU."""
    uses_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if not uses_gpu or not torch.cuda.is_available():
        return None
    return ranks.local_rank % torch.cuda.device_count()

