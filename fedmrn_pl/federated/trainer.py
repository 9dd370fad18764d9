"""FederatedTrainer: runs the rounds of a federated job on top of Lightning.

A round, top to bottom: sample clients; for each, issue a seed, train it locally
with a real ``lightning.Trainer`` and pack its update into bytes; the server decodes
and validates every payload, aggregates the valid ones with the strategy, and
evaluates the new global model. Callbacks are called at each of these moments.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import lightning as L
from lightning.pytorch.utilities.model_helpers import is_overridden
import torch
from torch.utils.data import DataLoader

from fedmrn_pl.callbacks import FederatedCallback, MaskPacking, SeedSync
from fedmrn_pl.client import FederatedClient, cpu_state, quiet_lightning
from fedmrn_pl.federated.job import ClientJob
from fedmrn_pl.federated.report import state_bytes
from fedmrn_pl.federated.sampling import sample_clients
from fedmrn_pl.federated.strategies import FedMRN, Strategy
from fedmrn_pl.federated.workers import ClientTask, ClientWorkerPool, TaskOutcome, train_client
from fedmrn_pl.masking import MaskingConfig
from fedmrn_pl.update import ClientUpdate
from fedmrn_pl.wire import PayloadError, TensorSpec, decode_update

__all__ = ["ClientData", "FederatedTrainer"]

log = logging.getLogger(__name__)


class ClientData(Protocol):
    """What the trainer needs from data: per-client loaders and a test loader."""

    num_clients: int

    def client_num_examples(self, client_id: int) -> int: ...

    def client_dataloader(self, client_id: int, server_round: int, batch_size: int) -> DataLoader: ...

    def test_dataloader(self) -> DataLoader: ...


class FederatedTrainer:
    """Runs FedMRN (or FedAvg) rounds over any LightningModule.

    Args:
        module: the model as a LightningModule (its ``training_step``, ``test_step`` and
            ``configure_optimizers`` are used unchanged); its state is the global model.
        data: per-client training data and the global test set (``FederatedDataModule``).
        strategy: aggregation, ``FedMRN()`` or ``FedAvg()``.
        masking: FedMRN masking settings; must be None for dense strategies.
        rounds: number of rounds to run.
        clients_per_round: clients sampled each round.
        local_epochs: local epochs per client per round.
        batch_size: local batch size.
        run_seed: the seed every random stream is derived from.
        min_clients: fewest valid updates a round needs to change the global model.
        callbacks: federated callbacks; ``SeedSync`` and ``MaskPacking`` are added if absent.
        trainer_kwargs: passed to each local ``lightning.Trainer`` and the evaluation one
            (``accelerator``, ``devices``, ``precision`` ...).
        max_payload_bytes: payloads above this size are refused unread.
        client_workers: processes that train clients in parallel (1: in this process).
        worker_devices: device indices the workers spread over, e.g. ``[0, 1, 2, 3]`` for
            four GPUs (worker k uses ``worker_devices[k % len]``); None keeps
            ``trainer_kwargs["devices"]``.
    """

    def __init__(
        self,
        module: L.LightningModule,
        data: ClientData,
        strategy: Strategy,
        masking: MaskingConfig | None = None,
        *,
        rounds: int = 10,
        clients_per_round: int = 10,
        local_epochs: int = 1,
        batch_size: int = 64,
        run_seed: int = 0,
        min_clients: int = 1,
        callbacks: Sequence[FederatedCallback] = (),
        trainer_kwargs: Mapping[str, Any] | None = None,
        max_payload_bytes: int = 1 << 31,
        client_workers: int = 1,
        worker_devices: Sequence[Any] | None = None,
    ) -> None:
        if isinstance(strategy, FedMRN) != (masking is not None):
            raise ValueError("FedMRN needs a MaskingConfig and dense strategies need masking=None")
        for label, value, low in (
            ("rounds", rounds, 1),
            ("local_epochs", local_epochs, 1),
            ("batch_size", batch_size, 1),
            ("min_clients", min_clients, 1),
        ):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{label} must be an int >= {low}, got {value!r}")
        if not 1 <= clients_per_round <= data.num_clients:
            raise ValueError(
                f"clients_per_round must be in [1, {data.num_clients}] (the number of clients), got {clients_per_round}"
            )
        if min_clients > clients_per_round:
            raise ValueError(
                f"min_clients={min_clients} exceeds clients_per_round={clients_per_round}: no round could update the model"
            )
        quiet_lightning()
        self.module = module
        self.data = data
        self.strategy = strategy
        self.masking = masking
        self.rounds = rounds
        self.clients_per_round = clients_per_round
        self.batch_size = batch_size
        self.run_seed = run_seed
        self.min_clients = min_clients
        self.max_payload_bytes = max_payload_bytes
        if not isinstance(client_workers, int) or client_workers < 1:
            raise ValueError(f"client_workers must be an int >= 1, got {client_workers!r}")
        self.client_workers = client_workers
        self.worker_devices = list(worker_devices) if worker_devices is not None else None
        self._pool: ClientWorkerPool | None = None
        self.trainer_kwargs = dict(trainer_kwargs or {})
        self.callbacks = _with_default_callbacks(callbacks)
        self.client = FederatedClient(module, masking, local_epochs, run_seed, self.trainer_kwargs)
        _check_module(module, self.trainer_kwargs)
        self.global_state = cpu_state(module)
        _check_wire_dtypes(self.global_state)
        self.masked_names = self._masked_names()
        self.expected_manifest = self._expected_manifest()
        self.completed_rounds = 0  # rounds finished so far (the resume point)
        self.elapsed_seconds = 0.0  # wall time spent in fit(), over resumes too
        self._fit_origin = time.perf_counter()
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ the run
    def fit(self) -> list[dict[str, Any]]:
        """Run the remaining rounds and return the per-round metrics."""
        self._fit_origin = time.perf_counter() - self.elapsed_seconds
        try:
            if self.client_workers > 1 and self.completed_rounds < self.rounds:
                self._pool = ClientWorkerPool(
                    self.client, self.data, self.batch_size, self.client_workers, self.worker_devices
                )
            self._call("on_fit_start")
            for server_round in range(self.completed_rounds + 1, self.rounds + 1):
                self.run_round(server_round)
            self._call("on_fit_end")
        except BaseException as exception:
            self._call("on_exception", exception)
            if self._pool is not None:
                self._pool.terminate()
                self._pool = None
            raise
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self.elapsed_seconds = time.perf_counter() - self._fit_origin
        return self.history

    def run_round(self, server_round: int) -> dict[str, Any]:
        """One full round: sample, train clients, aggregate, evaluate."""
        started = time.perf_counter()
        client_ids = sample_clients(self.run_seed, server_round, self.data.num_clients, self.clients_per_round)
        self._call("on_round_start", server_round, client_ids)
        jobs = self._train_clients(server_round, client_ids)
        self._call("on_aggregate_start", server_round, jobs)
        accepted = self._receive(server_round, jobs)
        kept_previous = len(accepted) < self.min_clients
        if kept_previous:
            log.warning(
                "round %d: %d valid update(s), fewer than min_clients=%d; keeping the previous global model",
                server_round,
                len(accepted),
                self.min_clients,
            )
        else:
            new_state = self.strategy.aggregate(server_round, self.global_state, [update for _, update in accepted])
            if new_state is not None:
                self.global_state = new_state
        accepted_jobs = [job for job, _ in accepted]
        self._call("on_aggregate_end", server_round, accepted_jobs)
        metrics = self._round_metrics(server_round, jobs, accepted_jobs, kept_previous)
        metrics.update(self.evaluate())
        metrics["round/seconds"] = time.perf_counter() - started
        self.history.append(metrics)
        self.completed_rounds = server_round
        self.elapsed_seconds = time.perf_counter() - self._fit_origin
        self._call("on_round_end", server_round, metrics)
        return metrics

    def evaluate(self) -> dict[str, float]:
        """Test the current global model with the module's own ``test_step``."""
        self.module.load_state_dict(self.global_state)
        settings = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
        settings.update({k: v for k, v in self.trainer_kwargs.items() if k in ("accelerator", "devices", "precision")})
        results = L.Trainer(**settings).test(self.module, dataloaders=self.data.test_dataloader(), verbose=False)
        return {key: float(value) for key, value in (results[0] if results else {}).items()}

    # ------------------------------------------------------------ client side
    def _train_clients(self, server_round: int, client_ids: list[int]) -> list[ClientJob]:
        """Train the round's clients here, one after another, or in the worker pool."""
        if self._pool is None:
            jobs = []
            for client_id in client_ids:
                job = self._start_job(server_round, client_id)
                self._finish_job(
                    job, train_client(self.client, self.data, self.global_state, _task(job), self.batch_size)
                )
                jobs.append(job)
            return jobs
        jobs = [self._start_job(server_round, client_id) for client_id in client_ids]
        for job, outcome in zip(jobs, self._pool.run(self.global_state, [_task(job) for job in jobs])):
            self._finish_job(job, outcome)
        return jobs

    def _start_job(self, server_round: int, client_id: int) -> ClientJob:
        job = ClientJob(server_round, client_id, self.data.client_num_examples(client_id))
        self._call("on_client_fit_start", job)
        if job.seed is None:
            raise RuntimeError("no seed was issued to the client; keep SeedSync among the callbacks")
        return job

    def _finish_job(self, job: ClientJob, outcome: TaskOutcome) -> None:
        job.result, job.dropped, job.seconds = outcome.result, outcome.error, outcome.seconds
        if job.dropped is not None:
            log.warning("round %d: client %d dropped, %s", job.server_round, job.client_id, job.dropped)
        self._call("on_client_fit_end", job)

    # ------------------------------------------------------------ server side
    def _receive(self, server_round: int, jobs: list[ClientJob]) -> list[tuple[ClientJob, ClientUpdate]]:
        """Decode and validate every payload; drop (and log) the ones that fail."""
        accepted = []
        for job in jobs:
            if job.dropped is not None:
                continue
            try:
                update = self._decode(job)
            except PayloadError as error:
                job.dropped = f"invalid payload: {error}"
                log.warning("round %d: client %d dropped, %s", server_round, job.client_id, job.dropped)
                continue
            accepted.append((job, update))
        return accepted

    def _decode(self, job: ClientJob) -> ClientUpdate:
        if job.payload is None:
            raise PayloadError("the client sent no payload (is MaskPacking among the callbacks?)")
        update = decode_update(
            job.payload, self.expected_manifest, server_round=job.server_round, max_bytes=self.max_payload_bytes
        )
        if update.client_id != job.client_id:
            raise PayloadError(f"payload is from client {update.client_id}, expected client {job.client_id}")
        if update.seed != job.seed:
            raise PayloadError(f"payload seed {update.seed} differs from the seed issued to the client ({job.seed})")
        if update.num_examples != job.num_examples:
            # The aggregation weight is the server's own count, never a client's claim.
            raise PayloadError(
                f"payload claims {update.num_examples} training examples, the client holds {job.num_examples}"
            )
        expected_kind = "none" if self.masking is None else self.masking.kind
        if update.mask_kind != expected_kind or (self.masking is not None and update.noise != self.masking.noise):
            raise PayloadError(
                f"payload mask kind/noise {update.mask_kind}/{update.noise} differ from the run's {expected_kind}/{self.masking and self.masking.noise}"
            )
        for name, tensor in update.dense.items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise PayloadError(f"tensor {name!r} has non-finite values")
        return update

    def _masked_names(self) -> list[str]:
        if self.masking is None:
            return []
        names = [name for name, _, _ in self.masking.selector.select(self.module)]
        if not names:
            raise ValueError(
                f"the masking selector {self.masking.selector} selects no parameter of {type(self.module).__name__}"
            )
        return names

    def _expected_manifest(self) -> dict[str, TensorSpec]:
        masked = set(self.masked_names)
        return {
            name: TensorSpec(tuple(tensor.shape), "mask" if name in masked else "dense")
            for name, tensor in self.global_state.items()
        }

    # --------------------------------------------------------------- figures
    def _round_metrics(
        self, server_round: int, jobs: list[ClientJob], accepted: list[ClientJob], kept_previous: bool
    ) -> dict[str, Any]:
        sent = [job for job in jobs if job.payload is not None]
        uplink = sum(len(job.payload) for job in sent)
        dense_uplink = len(sent) * state_bytes(self.global_state)
        previous = self.history[-1]["uplink/cumulative_bytes"] if self.history else 0
        losses = [job.result.train_loss for job in accepted if job.result and job.result.train_loss is not None]
        metrics: dict[str, Any] = {
            "round": server_round,
            "clients": [job.client_id for job in jobs],
            "accepted_clients": len(accepted),
            "dropped_clients": [{"client_id": job.client_id, "reason": job.dropped} for job in jobs if job.dropped],
            "kept_previous_model": kept_previous,
            "train/loss": sum(losses) / len(losses) if losses else math.nan,
            "uplink/bytes": uplink,
            "uplink/cumulative_bytes": previous + uplink,
            "uplink/dense_bytes": dense_uplink,
            "uplink/compression": dense_uplink / uplink if uplink else math.nan,
            "downlink/bytes": len(jobs) * state_bytes(self.global_state),
        }
        stats = [job.result.stats for job in accepted if job.result and job.result.stats]
        for key in sorted({k for s in stats for k in s}):
            metrics[f"mask/{key}"] = sum(s[key] for s in stats) / len(stats)
        return metrics

    # ----------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: tensors and plain data only (``weights_only`` loadable)."""
        return {
            "global_state": {name: tensor.clone() for name, tensor in self.global_state.items()},
            "completed_rounds": self.completed_rounds,
            "elapsed_seconds": self.elapsed_seconds,
            "history": self.history,
            "strategy": self.strategy.state_dict(),
            "callbacks": {callback.state_key: callback.state_dict() for callback in self.callbacks},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a ``state_dict`` so that ``fit`` continues after its last round."""
        missing = {"global_state", "completed_rounds", "history"} - set(state)
        if missing:
            raise ValueError(f"checkpoint lacks {sorted(missing)}")
        if set(state["global_state"]) != set(self.global_state):
            raise ValueError("checkpoint's global model does not match this module's parameters")
        self.global_state = dict(state["global_state"])
        self.module.load_state_dict(self.global_state)
        self.completed_rounds = int(state["completed_rounds"])
        self.elapsed_seconds = float(state.get("elapsed_seconds", 0.0))
        self.history = list(state["history"])
        self.strategy.load_state_dict(state.get("strategy", {}))
        saved = state.get("callbacks", {})
        for callback in self.callbacks:
            if callback.state_key in saved:
                callback.load_state_dict(saved[callback.state_key])

    def _call(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)


def _task(job: ClientJob) -> ClientTask:
    assert job.seed is not None
    return ClientTask(job.server_round, job.client_id, job.seed, job.num_examples)


def _with_default_callbacks(callbacks: Sequence[FederatedCallback]) -> list[FederatedCallback]:
    """SeedSync first and MaskPacking after the user's client hooks, unless given."""
    callbacks = list(callbacks)
    for callback in callbacks:
        if not isinstance(callback, FederatedCallback):
            raise TypeError(f"callbacks must be FederatedCallback instances, got {type(callback).__name__}")
    if not any(isinstance(c, SeedSync) for c in callbacks):
        callbacks.insert(0, SeedSync())
    if not any(isinstance(c, MaskPacking) for c in callbacks):
        callbacks.append(MaskPacking())
    return callbacks


def _check_module(module: L.LightningModule, trainer_kwargs: Mapping[str, Any]) -> None:
    """Fail before round 1, not after every client trained, on what cannot work."""
    if not isinstance(module, L.LightningModule):
        raise TypeError(f"module must be a lightning.LightningModule, got {type(module).__name__}")
    for hook in ("training_step", "test_step"):
        if not is_overridden(hook, module, L.LightningModule):
            raise TypeError(
                f"{type(module).__name__} must define {hook}(): the trainer trains clients and tests the global model with it"
            )
    try:
        L.Trainer(
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            **trainer_kwargs,
        )
    except Exception as error:  # Lightning raises several types for bad accelerator/precision settings
        raise ValueError(f"invalid lightning.Trainer settings {dict(trainer_kwargs)}: {error}") from None


_WIRE_DTYPES = (torch.float32, torch.float16, torch.int64)


def _check_wire_dtypes(state: Mapping[str, torch.Tensor]) -> None:
    """Every tensor of the model must have a wire encoding (float32, float16 or int64)."""
    unsupported = {name: str(t.dtype) for name, t in state.items() if t.dtype not in _WIRE_DTYPES}
    if unsupported:
        raise TypeError(
            f"tensors {unsupported} have dtypes the payload format cannot carry; "
            "use float32/float16 parameters and float or int64 buffers"
        )
