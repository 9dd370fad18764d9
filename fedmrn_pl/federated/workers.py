"""Where clients train: in the server's process, or in a pool of worker processes.

Both paths run the same ``train_client`` function, so a client's result depends only
on the global state and its seeds, not on which process (or device) trained it.
Worker processes are how a run uses several GPUs: worker ``k`` trains its clients on
device ``k % num_devices`` (clients in parallel, as in Flower's simulation engine).
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.multiprocessing as mp

from fedmrn_pl.client import ClientResult, FederatedClient, quiet_lightning
from fedmrn_pl.seeding import derive_seed

__all__ = ["ClientTask", "ClientWorkerPool", "TaskOutcome", "train_client"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientTask:
    """What a client needs to train one round (plain data, cheap to send to a worker)."""

    server_round: int
    client_id: int
    seed: int
    num_examples: int


@dataclass
class TaskOutcome:
    """A client's result, or why it failed, and how long it took."""

    result: ClientResult | None
    error: str | None
    seconds: float


def train_client(
    client: FederatedClient, data: Any, global_state: Mapping[str, torch.Tensor], task: ClientTask, batch_size: int
) -> TaskOutcome:
    """Train one client; a failure becomes ``TaskOutcome.error`` instead of an exception."""
    started = time.perf_counter()
    # Global RNG too (dropout in user models): a pure function of (run, round, client),
    # inside fork_rng so the caller's own RNG state is left as it was.
    with torch.random.fork_rng():
        torch.manual_seed(derive_seed(client.run_seed, task.server_round, task.client_id, "torch_global"))
        try:
            loader = data.client_dataloader(task.client_id, task.server_round, batch_size)
            result = client.fit(global_state, task.server_round, task.client_id, task.seed, loader, task.num_examples)
            return TaskOutcome(result, None, time.perf_counter() - started)
        except Exception as error:  # a failing client must not end the run
            return TaskOutcome(None, f"training failed: {type(error).__name__}: {error}", time.perf_counter() - started)


# Per-process state of a pool worker, set once by ``_init_worker``.
_WORKER: dict[str, Any] = {}


def _init_worker(client_bytes: bytes, data: Any, batch_size: int, devices: Sequence[Any] | None, threads: int) -> None:
    quiet_lightning()
    client: FederatedClient = pickle.loads(client_bytes)
    torch.set_num_threads(threads)
    if devices:
        # Worker k of the pool trains on devices[k % len(devices)].
        identity = mp.current_process()._identity  # (k,) for pool workers, 1-based
        index = (identity[0] - 1) if identity else 0
        client.trainer_kwargs["devices"] = [devices[index % len(devices)]]
    _WORKER.update(client=client, data=data, batch_size=batch_size)


def _run_task(global_state: Mapping[str, torch.Tensor], task: ClientTask) -> TaskOutcome:
    return train_client(_WORKER["client"], _WORKER["data"], global_state, task, _WORKER["batch_size"])


class ClientWorkerPool:
    """A pool of ``num_workers`` spawned processes that train clients in parallel.

    Args:
        client: the client runner (module, masking, trainer settings) copied to each worker.
        data: the client data (``FederatedDataModule``), copied to each worker.
        batch_size: local batch size.
        num_workers: processes to start.
        devices: device indices to spread the workers over (GPUs), or None for CPU.
        threads_per_worker: torch intra-op threads per worker (default: this process's / workers).
    """

    def __init__(
        self,
        client: FederatedClient,
        data: Any,
        batch_size: int,
        num_workers: int,
        devices: Sequence[Any] | None = None,
        threads_per_worker: int | None = None,
    ) -> None:
        if num_workers < 2:
            raise ValueError(f"a worker pool needs num_workers >= 2, got {num_workers}")
        # Split this process's intra-op threads among the workers (same count, same sums).
        threads = threads_per_worker or max(1, torch.get_num_threads() // num_workers)
        context = mp.get_context("spawn")
        # Plain pickle copies the module's tensors; torch.multiprocessing's pickler would
        # share their memory, and every worker would then train the same parameters.
        client_bytes = pickle.dumps(client)
        self._pool = context.Pool(
            num_workers, initializer=_init_worker, initargs=(client_bytes, data, batch_size, devices, threads)
        )

    def run(self, global_state: Mapping[str, torch.Tensor], tasks: Sequence[ClientTask]) -> list[TaskOutcome]:
        """Train every task, in parallel; outcomes come back in task order."""
        state = {name: tensor.detach().cpu() for name, tensor in global_state.items()}
        pending = [self._pool.apply_async(_run_task, (state, task)) for task in tasks]
        return [item.get() for item in pending]

    def close(self) -> None:
        """Stop the workers."""
        self._pool.close()
        self._pool.join()

    def terminate(self) -> None:
        """Stop the workers now (after an error or interrupt)."""
        self._pool.terminate()
        self._pool.join()
