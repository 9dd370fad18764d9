"""FederatedTrainer: runs the rounds of a federated job on top of Lightning.

A round, top to bottom: sample clients; for each, issue a seed, train it locally
with a real ``lightning.Trainer`` and pack its update into bytes; the server decodes
and validates every payload, aggregates the valid ones with the strategy, and
evaluates the new global model. Callbacks are called at each of these moments.

Under ``torchrun`` the round's clients are spread over the ranks (see
``distributed.py``); rank 0 is the server. Client hooks (``on_client_fit_*``) run on
the rank that trains the client; every other hook runs on rank 0 only, so callbacks
that log or write files need no rank checks of their own.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.model_helpers import is_overridden

from fedmrn_pl.callbacks import (
    FederatedCallback,
    MaskPacking,
    ProgressDisplay,
    RoundMetricsLogger,
    RunArtifacts,
    SeedSync,
    UpdateTransform,
)
from fedmrn_pl.callbacks.checkpoint_state import check_state
from fedmrn_pl.client import ClientData, FederatedClient, check_client_data, local_trainer, quiet_lightning
from fedmrn_pl.client_states import ClientStateStore
from fedmrn_pl.federated.downlink import DownlinkMode, DownlinkReceiver, ServerDownlink, rebuild_global
from fedmrn_pl.federated.evaluation import EvaluationError, evaluate_module, evaluation_hook
from fedmrn_pl.federated.metric_keys import MetricKeys
from fedmrn_pl.federated.noise_scales import NoiseScaleWatch, issued_noise_scales, scale_metrics
from fedmrn_pl.federated.run_config import describe_run
from fedmrn_pl.federated.restore import check_against_run, section
from fedmrn_pl.federated.sampling import sample_clients
from fedmrn_pl.federated.server_optimizers import PlainUpdate, ServerOptimizer
from fedmrn_pl.federated.strategies import Strategy
from fedmrn_pl.federated.distributed import DEFAULT_TIMEOUT_SECONDS, Ranks, clients_of_rank, local_device_index
from fedmrn_pl.console import show_library_logs
from fedmrn_pl.data.partition import format_partition_stats
from fedmrn_pl.interrupt import GracefulStop, RunInterrupted
from fedmrn_pl.masking import MaskingConfig
from fedmrn_pl.messages import FitRequest, FitResult
from fedmrn_pl.report import run_summary, sample_weighted_mean, state_bytes
from fedmrn_pl.state import frozen_names, load_module_state, module_state
from fedmrn_pl.trainer_kwargs import check_trainer_kwargs, user_loggers
from fedmrn_pl.update import ClientUpdate
from fedmrn_pl.wire import DEFAULT_MAX_BYTES, PayloadError, TensorSpec, expected_manifest

__all__ = ["ClientData", "FederatedTrainer"]

log = logging.getLogger(__name__)


class FederatedTrainer:
    """Runs FedMRN (or FedAvg) rounds over any LightningModule.

    Args:
        module: the model as a LightningModule (its ``training_step``, ``test_step`` (else its
            ``validation_step``) and ``configure_optimizers`` are used unchanged); its state is the global model.
        data: per-client training data and the global test set (``FederatedDataModule``; wrap a plain
            LightningDataModule with ``FederatedDataModule.from_datamodule``).
        strategy: aggregation, ``FedMRN()`` or ``FedAvg()``.
        masking: FedMRN masking settings; must be None for dense strategies.
        rounds: number of rounds to run.
        clients_per_round: clients sampled each round.
        local_epochs: local epochs per client per round.
        batch_size: local batch size.
        run_seed: the seed every random stream is derived from.
        min_clients: fewest valid updates a round needs to change the global model.
        callbacks: federated callbacks; ``SeedSync``, ``MaskPacking`` and ``ProgressDisplay`` (bars
            on an interactive terminal, one logged line per round elsewhere) are added if absent.
        trainer_kwargs: passed to each local ``lightning.Trainer`` and the evaluation one
            (``accelerator``, ``devices``, ``precision`` ...); keys the trainer sets itself
            (``max_epochs`` ...) are refused. A ``logger`` gets each client fit under
            ``round_<r>/client_<c>/`` and the round metrics at ``step = round``.
        max_payload_bytes: payloads above this size are refused unread.
        threads: torch intra-op threads while the run trains and evaluates (restored after); 1, as
            in the CLI: clients' small batches run 5-15x slower with torch's default on shared
            cores, and CPU sums depend on the count. None keeps the process's.
        timeout_seconds: how long a collective waits for a peer rank under torchrun.
        client_timeout: seconds a client's local fit may take; a slower client is stopped
            after its current batch and dropped with the reason (None: no limit).
        output_dir: if set, ``metrics.json`` and the plots are written there when the run ends.
            The run owns the directory while it runs; one that holds an earlier run is refused
            (a resumed run continues its own).
        overwrite: replace an earlier run in ``output_dir`` instead of refusing to start.
        label: the run's name in summaries and plots; default ``fedmrn-<mask kind>`` or the strategy's name.
        metric_keys: the names your module logs for ``train/loss``, ``test/acc`` and ``test/loss``,
            e.g. ``{"test/acc": "val_acc"}``; see ``MetricKeys``.
        monitor: the metric the run is judged by (as Lightning's ``ModelCheckpoint(monitor=)``): a standard
            key or one your module logs in ``test_step``, e.g. ``"test_mse"``. The summary's ``best_value`` and
            ``best_round``, the progress line, the plots and W&B follow it, by its name.
        monitor_mode: ``"max"`` (higher is better) or ``"min"`` (lower is better); None: max for (a key
            mapped to) ``test/acc``, min for the losses; any other ``monitor`` must say.
        downlink: ``"dense"`` sends the sampled clients the model; ``"masks"`` sends a client the
            round messages it missed, from which it rebuilds the model bit for bit (see ``downlink.py``).
        dense_sync_every: with ``downlink="masks"``, a client that missed more rounds gets the dense model.
        server_optimizer: how the strategy's aggregate becomes the next model
            (``federated.server_optimizers``: FedAvgM, FedAdam, FedYogi, FedAdagrad); None: as it is.
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
        max_payload_bytes: int = DEFAULT_MAX_BYTES,
        threads: int | None = 1,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        client_timeout: float | None = None,
        output_dir: str | Path | None = None,
        overwrite: bool = False,
        label: str | None = None,
        metric_keys: Mapping[str, str] | None = None,
        monitor: str = "test/acc",
        monitor_mode: str | None = None,
        downlink: str = "dense",
        dense_sync_every: int = 10,
        server_optimizer: ServerOptimizer | None = None,
    ) -> None:
        if strategy.aggregates_masked_noise != (masking is not None):
            raise ValueError(
                f"strategy {strategy.name!r} "
                + ("aggregates masked noise and needs a MaskingConfig" if strategy.aggregates_masked_noise else
                   "takes dense or compressed updates and needs masking=None")
            )  # fmt: skip
        for name, value, low in (
            ("rounds", rounds, 1),
            ("local_epochs", local_epochs, 1),
            ("batch_size", batch_size, 1),
            ("min_clients", min_clients, 1),
            ("threads", 1 if threads is None else threads, 1),
        ):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        check_client_data(data)
        if not 1 <= clients_per_round <= data.num_clients:
            raise ValueError(
                f"clients_per_round must be in [1, {data.num_clients}] (the number of clients), got {clients_per_round}"
            )
        if min_clients > clients_per_round:
            raise ValueError(
                f"min_clients={min_clients} exceeds clients_per_round={clients_per_round}: no round could update the model"
            )
        self.module = module
        self.data = data
        self.strategy = strategy
        self.masking = masking
        self.rounds = rounds
        self.clients_per_round = clients_per_round
        self.run_seed = run_seed
        self.min_clients = min_clients
        self.max_payload_bytes = max_payload_bytes
        self.threads = threads
        self.ranks = Ranks.from_environment(timeout_seconds)
        self.trainer_kwargs = _per_rank_trainer_kwargs(dict(trainer_kwargs or {}), self.ranks)
        check_trainer_kwargs(self.trainer_kwargs)
        _check_timeouts(client_timeout, timeout_seconds, clients_per_round, self.ranks.world_size)
        self.label = label or (strategy.name if masking is None else f"{strategy.name}-{masking.kind}")
        self.callbacks, self.wire = _with_default_callbacks(callbacks, output_dir, overwrite)
        declared = [local for callback in self.callbacks for local in callback.configure_local_callbacks()]
        if declared:  # the methods' own local callbacks, after the user's (as Lightning adds configure_callbacks)
            self.trainer_kwargs["callbacks"] = [*self.trainer_kwargs.get("callbacks", []), *declared]
        show_library_logs()  # progress and the partition on the console, unless the application configured logging
        if user_loggers(self.trainer_kwargs):
            self.callbacks.append(RoundMetricsLogger(user_loggers(self.trainer_kwargs)))
        self.metric_keys = MetricKeys(metric_keys, monitor, monitor_mode)
        self.monitor = self.metric_keys.monitor  # the metric the run is judged by, and which way is better
        self.client = FederatedClient(
            module,
            data,
            masking,
            local_epochs,
            batch_size,
            run_seed,
            self.trainer_kwargs,
            train_loss_key=self.metric_keys.train_loss,
            timeout_seconds=client_timeout,
        )
        _check_module(module, self.trainer_kwargs)
        self.global_state = module_state(module)
        strategy.setup(module)
        _check_wire_dtypes(self.global_state)
        _check_precision(self.trainer_kwargs, self.global_state)
        self.masked_names = self._masked_names()
        masked, self.frozen_names = set(self.masked_names), sorted(frozen_names(module))  # frozen: never uploaded
        compressed = strategy.compressed_manifest(self.global_state)  # a baseline's sign bits or sparse values
        dense = {n: t for n, t in self.global_state.items()
                 if n not in masked and n not in self.frozen_names and n not in compressed}  # fmt: skip
        self.expected_manifest: dict[str, TensorSpec] = expected_manifest(
            masks={name: t.shape for name, t in self.global_state.items() if name in masked},
            dense={name: t.shape for name, t in dense.items()},
            dense_dtypes={name: self.wire.dense_encodings(t.dtype) for name, t in dense.items()},
            compressed=compressed,
        )
        self.downlink = ServerDownlink(downlink, dense_sync_every)
        if self.downlink.mode is DownlinkMode.masks and not strategy.replayable:
            raise ValueError(
                f"downlink='masks' needs a strategy clients can replay from the round messages; "
                f"{type(strategy).__name__} keeps server state across rounds (FedPM: set reset_every=1), "
                f"so use downlink='dense'"
            )
        self.server_optimizer = _server_optimizer(server_optimizer, strategy, self.downlink.mode)
        self.server_optimizer.setup(  # the trainable parameters; buffers and frozen tensors take the aggregate
            name for name, p in module.named_parameters()
            if p.requires_grad and p.is_floating_point() and name in self.global_state and name not in self.frozen_names
        )  # fmt: skip
        self.replica = DownlinkReceiver(strategy, self.expected_manifest, max_payload_bytes)  # checks each round message
        self.client_states = ClientStateStore()  # clients' private state (EF residuals), kept by the server
        self.completed_rounds = 0  # rounds finished so far (the resume point)
        self.elapsed_seconds = 0.0  # wall time spent in fit(), over resumes too
        self._fit_origin = time.perf_counter()
        self.history: list[dict[str, Any]] = []
        self.summary: dict[str, Any] | None = None  # the run's figures, computed once when fit() ends
        self.issued_noise_scales: dict[str, float] = {}  # this round's per-tensor noise scales ({}: alpha)
        self._scale_watch = NoiseScaleWatch()

    # ------------------------------------------------------------------ the run
    @property
    def is_global_zero(self) -> bool:
        """Whether this process is the server (rank 0, or the only process)."""
        return self.ranks.is_global_zero

    def fit(self) -> list[dict[str, Any]]:
        """Run the remaining rounds and return the per-round metrics (the same on every rank)."""
        self._fit_origin = time.perf_counter() - self.elapsed_seconds
        threads = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            # Ctrl-C and SIGTERM are handled until the callbacks have kept what they keep.
            with GracefulStop(enabled=self.ranks.world_size == 1) as stop:  # ranks could not agree on a round
                try:
                    self._call("on_fit_start")
                    if self.is_global_zero and self.completed_rounds == 0:
                        _log_partition(self.data)
                    self._run_rounds(stop)
                    self.elapsed_seconds = time.perf_counter() - self._fit_origin
                    self.summary = run_summary(
                        self.label, self.history, self.global_state, self.elapsed_seconds, monitor=self.monitor
                    )
                    self.summary["world_size"] = self.ranks.world_size
                    self._call("on_fit_end")
                except BaseException as error:
                    # Ctrl-C, SIGTERM, or a KeyboardInterrupt/SystemExit from the user's code: one RunInterrupted.
                    interrupted = stop.interruption(error, self.completed_rounds, self.rounds)
                    self._call("on_exception", interrupted or error)
                    if interrupted is None or interrupted is error:
                        raise
                    # A signal's traceback says nothing; the user's own raise keeps its traceback.
                    raise interrupted from (None if interrupted.by in ("Ctrl-C", "SIGTERM") else error)
        finally:
            torch.set_num_threads(threads)
        return self.history

    def _run_rounds(self, stop: GracefulStop) -> None:
        """The remaining rounds; a first Ctrl-C stops them at a round boundary (anything else, at once)."""
        for server_round in range(self.completed_rounds + 1, self.rounds + 1):
            self.run_round(server_round)
            if stop.requested and server_round < self.rounds:
                raise RunInterrupted(server_round, self.rounds)

    def run_round(self, server_round: int) -> dict[str, Any]:
        """One full round: sample, train clients (this rank's share), aggregate and evaluate on rank 0."""
        started = time.perf_counter()
        client_ids = sample_clients(self.run_seed, server_round, self.data.num_clients, self.clients_per_round)
        self.issued_noise_scales = issued_noise_scales(self.masking, self.history)
        if self.is_global_zero:
            self.downlink.deliver(server_round, client_ids, self.global_state)
        self._call("on_round_start", server_round, client_ids)
        mine = clients_of_rank(client_ids, self.ranks.rank, self.ranks.world_size)
        sampled_states = self.client_states.of_clients(client_ids) if self.is_global_zero else None
        states = self.ranks.broadcast_client_states(sampled_states)
        gathered = self.ranks.gather_results(self._train_clients(server_round, mine, states))
        metrics = None
        if gathered is not None:  # the server
            metrics = self._serve_round(server_round, client_ids, gathered)
            metrics["round/seconds"] = time.perf_counter() - started
            self.history.append(metrics)
            self.completed_rounds = server_round
            self.elapsed_seconds = time.perf_counter() - self._fit_origin
            self._call("on_round_end", server_round, metrics)
        self.global_state, metrics = self.ranks.broadcast_round(self.global_state, metrics)
        if not self.is_global_zero:
            self.history.append(metrics)
            self.completed_rounds = server_round
        return metrics

    def _serve_round(self, server_round: int, client_ids: list[int], gathered: list[FitResult]) -> dict[str, Any]:
        """Rank 0's part of a round: validate the payloads, aggregate, evaluate; returns the metrics."""
        by_client = {result.client_id: result for result in gathered}
        results = [by_client[client_id] for client_id in client_ids]  # sample order, whichever rank trained them
        for result in results:
            if result.client_state is not None:
                self.client_states.put(result.client_id, result.client_state)
        self._call("on_aggregate_start", server_round, results)
        accepted = self._receive(results)
        kept_previous = len(accepted) < self.min_clients
        if kept_previous:
            log.warning(
                "round %d: %d valid update(s), fewer than min_clients=%d; keeping the previous global model",
                server_round,
                len(accepted),
                self.min_clients,
            )
        aggregated = [] if kept_previous else accepted
        updates: list[ClientUpdate] = [result.update for result in aggregated]  # type: ignore[misc]
        previous, self.global_state = self.global_state, rebuild_global(self.strategy, server_round, self.global_state, updates)
        if updates:  # the strategy's aggregate, applied by the server optimizer (plain: as it is)
            self.global_state = self.server_optimizer.step(previous, self.global_state)
        message = self.downlink.record(server_round, [result.payload for result in aggregated], self.global_state)  # type: ignore[misc]
        if message is not None:  # a client holding the previous model must rebuild this one from the message
            self.replica.sync(previous, server_round - 1)
            self.replica.apply(message)
        self._call("on_aggregate_end", server_round, accepted)
        metrics = self._round_metrics(server_round, results, accepted, kept_previous)
        metrics.update(scale_metrics(self.masking, self.issued_noise_scales, updates, previous, self.global_state,
                                     self.masked_names))  # fmt: skip
        self._scale_watch.check(self.masking, server_round, metrics)
        self.metric_keys.check_clients(accepted)
        try:
            test_results = self.evaluate()
        except Exception as error:  # the user's step failed: stop in one line, keeping the model last evaluated
            self.global_state = previous
            raise EvaluationError.of(self.module, server_round, error) from error
        metrics.update(self.metric_keys.with_standard_keys(test_results, evaluation_hook(self.module) or "test_step"))
        return metrics

    def evaluate(self) -> dict[str, float]:
        """Test the current global model with the module's own ``test_step`` (else its ``validation_step``)."""
        load_module_state(self.module, self.global_state)
        return evaluate_module(self.module, self.data.test_dataloader(), self.trainer_kwargs)

    def run_config(self) -> dict[str, Any]:
        """The run's settings as plain data: module hparams, masking, trainer settings (W&B's config)."""
        return describe_run(self)

    # ------------------------------------------------------------ client side
    def _train_clients(
        self, server_round: int, client_ids: list[int], states: Mapping[int, bytes] | None = None
    ) -> list[FitResult]:
        """Train ``client_ids`` one after another in this process; client hooks run here."""
        results = []
        for request in self.round_requests(server_round, client_ids, states):
            self._call_client("on_client_fit_start", request)
            result = self.client.fit(self.global_state, request)
            if result.dropped is not None:
                log.warning("round %d: client %d dropped, %s", server_round, request.client_id, result.dropped)
            self._call_client("on_client_fit_end", result)
            results.append(result)
        return results

    def round_requests(
        self, server_round: int, client_ids: Sequence[int], states: Mapping[int, bytes] | None = None
    ) -> list[FitRequest]:
        """The requests of ``client_ids`` this round, before any client hook (``SeedSync`` issues their seeds).

        Each carries the client's sample count, its private state from ``states`` and the
        round's noise scales; a client runner that sends requests elsewhere (Flower) builds
        them here, so they are what the in-process clients get.
        """
        requests = []
        for client_id in client_ids:
            request = FitRequest(server_round, client_id, self.data.client_num_examples(client_id))
            request.client_state = (states or {}).get(client_id)
            request.noise_scales = dict(self.issued_noise_scales) or None
            requests.append(request)
        return requests

    # ------------------------------------------------------------ server side
    def _receive(self, results: list[FitResult]) -> list[FitResult]:
        """Validate every payload through the wire; drop (and log) the clients whose payload fails."""
        accepted = []
        for result in results:
            if result.dropped is not None:
                continue
            try:
                result.update = self.wire.unpack(self, result)
            except PayloadError as error:
                result.dropped = f"invalid payload: {error}"
                log.warning("round %d: client %d dropped, %s", result.server_round, result.client_id, result.dropped)
                continue
            accepted.append(result)
        return accepted

    def _masked_names(self) -> list[str]:
        if self.masking is None:
            return []
        names = [name for name, _, _ in self.masking.selector.select(self.module)]
        if not names:
            raise ValueError(
                f"the masking selector {self.masking.selector} selects no parameter of {type(self.module).__name__}"
            )
        return names

    # --------------------------------------------------------------- figures
    def _round_metrics(
        self, server_round: int, results: list[FitResult], accepted: list[FitResult], kept_previous: bool
    ) -> dict[str, Any]:
        sent = [result for result in results if result.payload is not None]
        uplink = sum(len(result.payload) for result in sent)  # type: ignore[arg-type]
        dense_uplink = len(sent) * state_bytes({n: t for n, t in self.global_state.items() if n in self.expected_manifest})
        previous = self.history[-1]["uplink/cumulative_bytes"] if self.history else 0
        with_loss = [result for result in accepted if result.train_loss is not None]
        metrics: dict[str, Any] = {
            "round": server_round,
            "clients": [result.client_id for result in results],
            "accepted_clients": len(accepted),
            "dropped_clients": [
                {"client_id": result.client_id, "reason": result.dropped} for result in results if result.dropped
            ],
            "kept_previous_model": kept_previous,
            # Per-client figures are weighted by sample counts, as aggregation weights updates.
            "train/loss": sample_weighted_mean(
                [r.train_loss for r in with_loss], [r.request.num_examples for r in with_loss]  # type: ignore[misc]
            ),
            "uplink/bytes": uplink,
            "uplink/cumulative_bytes": previous + uplink,
            "uplink/dense_bytes": dense_uplink,
            "uplink/compression": dense_uplink / uplink if uplink else math.nan,
            "downlink/bytes": sum(delivery.num_bytes for delivery in self.downlink.deliveries),
        }
        with_stats = [result for result in accepted if result.stats]
        for key in sorted({key for result in with_stats for key in result.stats}):
            having = [result for result in with_stats if key in result.stats]
            metrics[f"mask/{key}"] = sample_weighted_mean(
                [r.stats[key] for r in having], [r.request.num_examples for r in having]
            )
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
            "server_optimizer": self.server_optimizer.state_dict(),
            "downlink": self.downlink.state_dict(),
            "callbacks": {callback.state_key: callback.state_dict() for callback in self.callbacks},
            "client_states": self.client_states.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a ``state_dict`` so that ``fit`` continues after its last round.

        Every section is checked before the run changes: its types, keys and ranges
        (``checkpoint_state.SECTIONS``), then against this run (``restore.check_against_run``:
        the model, the client ids, each stored client state and round message decoded). The
        strategy, the downlink and stateful callbacks then check their own state as they load it.

        Raises:
            CheckpointError: one line naming the section that does not fit.
        """
        check_state(state)
        client_states = check_against_run(self, state)
        with section("'strategy'"):
            self.strategy.load_state_dict(state.get("strategy", {}))
        with section("'server_optimizer'"):
            self.server_optimizer.load_state_dict(state.get("server_optimizer", {}))
            self.server_optimizer.check_shapes(state["global_state"])
        with section("'downlink'"):
            self.downlink.load_state_dict(state.get("downlink", {}))
        saved = state.get("callbacks", {})
        for callback in self.callbacks:
            if callback.state_key in saved:
                with section(f"'callbacks'[{callback.state_key!r}]"):
                    callback.load_state_dict(saved[callback.state_key])
        self.global_state = dict(state["global_state"])
        load_module_state(self.module, self.global_state)
        self.completed_rounds = state["completed_rounds"]
        self.elapsed_seconds = float(state.get("elapsed_seconds", 0.0))
        self.history = list(state["history"])
        self.client_states.load(client_states)

    def _call(self, hook: str, *args: Any) -> None:
        """A server hook: runs on rank 0 only."""
        if self.is_global_zero:
            self._call_client(hook, *args)

    def _call_client(self, hook: str, *args: Any) -> None:
        """A client hook: runs on the rank where the client trains."""
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)


def _server_optimizer(optimizer: ServerOptimizer | None, strategy: Strategy, downlink: DownlinkMode) -> ServerOptimizer:
    """The server optimizer (None: the plain update), refused where the strategy or the downlink cannot take it."""
    if optimizer is None:
        return PlainUpdate()
    if not isinstance(optimizer, ServerOptimizer):
        raise TypeError(f"server_optimizer must be a ServerOptimizer (FedAvgM, FedAdam ...), got {type(optimizer).__name__}")
    if not optimizer.replayable and not strategy.takes_server_optimizer:
        raise ValueError(
            f"{type(strategy).__name__} does not take a server optimizer (its aggregate is not a model update); "
            f"leave server_optimizer=None"
        )
    if not optimizer.replayable and downlink is DownlinkMode.masks:
        raise ValueError(
            f"server_optimizer {optimizer.name} keeps moments that clients replaying round messages do not hold; "
            f"use downlink='dense'"
        )
    return optimizer


def _with_default_callbacks(
    callbacks: Sequence[FederatedCallback], output_dir: str | Path | None, overwrite: bool = False
) -> tuple[list[FederatedCallback], MaskPacking]:
    """SeedSync first, RunArtifacts next (when a directory is given), then the caller's callbacks, the methods'
    ``UpdateTransform``s and MaskPacking last, wherever the caller put them (as Lightning runs its checkpoint
    callback last); progress on a terminal unless the caller chose a ``ProgressDisplay``.

    The protocol's order is not the caller's to break: the seed is issued before any client hook reads
    the request, a user's hook sees the trained weights before a method transforms them, and the update
    is encoded after every transform, so a ``MaskPacking`` or compressor listed first cannot make the
    server refuse every payload.

    Returns the callbacks and the one ``MaskPacking``, which owns the wire both ways.
    """
    callbacks = list(callbacks)
    for callback in callbacks:
        if not isinstance(callback, FederatedCallback):
            raise TypeError(f"callbacks must be FederatedCallback instances, got {type(callback).__name__}")
    if output_dir is not None and not any(isinstance(c, RunArtifacts) for c in callbacks):
        callbacks.insert(0, RunArtifacts(output_dir, overwrite=overwrite))
    if not any(isinstance(c, ProgressDisplay) for c in callbacks):
        callbacks.append(ProgressDisplay())
    seeds = [c for c in callbacks if isinstance(c, SeedSync)] or [SeedSync()]
    packers = [c for c in callbacks if isinstance(c, MaskPacking)] or [MaskPacking()]
    if len(packers) > 1:
        raise ValueError(f"give at most one MaskPacking callback (it owns the wire format), got {len(packers)}")
    if len(seeds) > 1:
        raise ValueError(f"give at most one SeedSync callback (it issues the clients' seeds), got {len(seeds)}")
    transforms = [c for c in callbacks if isinstance(c, UpdateTransform)]
    others = [c for c in callbacks if not isinstance(c, (SeedSync, MaskPacking, UpdateTransform))]
    return [*seeds, *others, *transforms, *packers], packers[0]


def _check_precision(trainer_kwargs: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> None:
    """Refuse a precision that makes clients send half weights of a float32 model: the server would drop every one."""
    precision = str(trainer_kwargs.get("precision", "32-true"))
    if precision in ("16-true", "bf16-true") and any(t.dtype == torch.float32 for t in state.values()):
        raise ValueError(
            f"precision={precision} turns every client's weights to half precision while the global model is "
            "float32, so the server would refuse every update; use 16-mixed or bf16-mixed (half-precision "
            "compute, float32 weights)"
        )


def _check_timeouts(client_timeout: float | None, collective: float, clients_per_round: int, world_size: int) -> None:
    """Under torchrun, a rank training its slowest allowed clients must finish before its peers stop waiting."""
    if world_size < 2 or client_timeout is None:
        return
    per_rank = math.ceil(clients_per_round / world_size)
    if per_rank * client_timeout >= collective:
        raise ValueError(
            f"client_timeout={client_timeout:g} s for up to {per_rank} client(s) per rank reaches the ranks' "
            f"timeout_seconds={collective:g} s: a rank training slow clients would be taken for a dead one; "
            f"raise the collective timeout (train.dist_timeout) above {per_rank * client_timeout:g} s or lower client_timeout"
        )


def _log_partition(data: ClientData) -> None:
    """Say how the clients' data is split (sizes, labels), when the data can tell: the run's first line."""
    try:
        stats = getattr(data, "partition_stats", None)
    except (ValueError, TypeError):  # labels the data cannot say: nothing to show
        return
    if isinstance(stats, Mapping) and "summary" in stats:
        log.info("%s", format_partition_stats(stats))


def _per_rank_trainer_kwargs(trainer_kwargs: dict[str, Any], ranks: Ranks) -> dict[str, Any]:
    """Each client trains on one device: under torchrun, this rank's GPU (``LOCAL_RANK``), never a DDP job."""
    devices = trainer_kwargs.get("devices", 1)
    if devices not in (1, "1", "auto") and not (isinstance(devices, list) and len(devices) == 1):
        raise ValueError(
            f"trainer_kwargs devices={devices!r}: each client trains on one device; "
            "to use several GPUs launch one rank per GPU with torchrun (see README, Multi-GPU)"
        )
    trainer_kwargs["devices"] = devices if devices != "auto" else 1
    if ranks.world_size > 1:
        index = local_device_index(ranks, str(trainer_kwargs.get("accelerator", "auto")))
        trainer_kwargs["devices"] = 1 if index is None else [index]
    return trainer_kwargs


def _check_module(module: L.LightningModule, trainer_kwargs: Mapping[str, Any]) -> None:
    """Fail before round 1, not after every client trained, on what cannot work."""
    if not isinstance(module, L.LightningModule):
        raise TypeError(f"module must be a lightning.LightningModule, got {type(module).__name__}")
    if not is_overridden("training_step", module, L.LightningModule):
        raise TypeError(f"{type(module).__name__} must define training_step(): the clients train with it")
    if evaluation_hook(module) is None:
        raise TypeError(
            f"{type(module).__name__} must define test_step() or validation_step(): the server evaluates the global "
            "model with it on the test set"
        )
    try:
        with quiet_lightning():
            local_trainer(trainer_kwargs)
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
