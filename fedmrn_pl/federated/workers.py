"""Where clients train: in the server's process, or in a pool of worker processes.

Both paths run the same ``train_client`` function, so a client's result depends only
on the global state and its seeds, not on which process (or device) trained it.
Worker processes are how a run uses several GPUs: worker ``k`` trains its clients on
device ``k % num_devices`` (clients in parallel, as in Flower's simulation engine).
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.multiprocessing as mp

from fedmrn_pl.client import FederatedClient
from fedmrn_pl.messages import FitRequest, FitResult

__all__ = ["ClientWorkerPool"]

# Per-process state of a pool worker, set once by ``_init_worker``.
_WORKER: dict[str, FederatedClient] = {}


def _init_worker(client_bytes: bytes, devices: Sequence[Any] | None, threads: int) -> None:
    client: FederatedClient = pickle.loads(client_bytes)
    torch.set_num_threads(threads)
    if devices:
        # Worker k of the pool trains on devices[k % len(devices)].
        identity = mp.current_process()._identity  # (k,) for pool workers, 1-based
        index = (identity[0] - 1) if identity else 0
        client.trainer_kwargs["devices"] = [devices[index % len(devices)]]
    _WORKER["client"] = client


def _run_request(global_state: Mapping[str, torch.Tensor], request: FitRequest) -> FitResult:
    return _WORKER["client"].fit(global_state, request)


class ClientWorkerPool:
    """A pool of ``num_workers`` spawned processes that train clients in parallel.

    Args:
        client: the client runner (module, data, masking, trainer settings) copied to each worker.
        num_workers: processes to start.
        devices: device indices to spread the workers over (GPUs), or None for CPU.
        threads_per_worker: torch intra-op threads per worker (default: this process's / workers).
    """

    def __init__(
        self,
        client: FederatedClient,
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
        self._pool = context.Pool(num_workers, initializer=_init_worker, initargs=(client_bytes, devices, threads))

    def run(self, global_state: Mapping[str, torch.Tensor], requests: Sequence[FitRequest]) -> list[FitResult]:
        """Train every request, in parallel; results come back in request order."""
        state = {name: tensor.detach().cpu() for name, tensor in global_state.items()}
        pending = [self._pool.apply_async(_run_request, (state, request)) for request in requests]
        return [item.get() for item in pending]

    def close(self) -> None:
        """Stop the workers."""
        self._pool.close()
        self._pool.join()

    def terminate(self) -> None:
        """Stop the workers now (after an error or interrupt)."""
        self._pool.terminate()
        self._pool.join()
