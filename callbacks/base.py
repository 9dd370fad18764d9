"""The federated callback base class: hooks called at named moments of a run.

Like Lightning's ``Callback``: a plain class whose hooks do nothing; subclasses
override what they need. Stateful callbacks return plain data from ``state_dict``
and are checkpointed under ``state_key``.

Callbacks see the trainer through :class:`FederatedRun`, the part of
``FederatedTrainer`` they may read, so this package never imports ``federated/``
(which imports the callbacks it installs by default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import torch

from fedmrn_pl.masking.config import MaskingConfig
from fedmrn_pl.messages import FitRequest, FitResult
from fedmrn_pl.client_states import ClientStateStore
from fedmrn_pl.monitor import Monitor
from fedmrn_pl.wire import TensorSpec

__all__ = ["FederatedCallback", "FederatedRun", "UpdateTransform"]


class FederatedRun(Protocol):
    """What a callback may read of the running ``FederatedTrainer``."""

    run_seed: int  # every random stream is derived from it
    rounds: int  # the rounds the run will have when done
    completed_rounds: int  # rounds finished so far
    history: list[dict[str, Any]]  # per-round metrics so far
    global_state: dict[str, torch.Tensor]  # the current global model
    summary: dict[str, Any] | None  # the run's figures, set when the last round is done
    monitor: Monitor  # the metric the run is judged by, and which way is better
    label: str  # the run's name in summaries and plots
    elapsed_seconds: float  # wall time of the completed rounds, over resumes too

    masking: MaskingConfig | None  # the run's masking settings (None: dense updates)
    expected_manifest: dict[str, TensorSpec]  # every tensor a payload must carry, and how
    max_payload_bytes: int  # payloads above this size are refused unread
    issued_noise_scales: dict[str, float]  # this round's per-tensor noise scales ({}: the masking's alpha)
    client_states: ClientStateStore  # clients' private state between their rounds (error-feedback residuals)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (tensors and plain data)."""
        ...

    def run_config(self) -> dict[str, Any]:
        """The run's settings as plain data: module hparams, masking, trainer settings."""
        ...

    def round_requests(
        self, server_round: int, client_ids: Sequence[int], states: Mapping[int, bytes] | None = None
    ) -> list[FitRequest]:
        """The round's requests for ``client_ids``, before any client hook (what a remote client runner sends)."""
        ...


class FederatedCallback:
    """Base class of the hooks ``FederatedTrainer`` calls during a run."""

    @property
    def state_key(self) -> str:
        """Key of this callback's state in checkpoints; unique per class by default."""
        return type(self).__qualname__

    def on_fit_start(self, trainer: FederatedRun) -> None:
        """Called when the run starts (after a resume has restored its state)."""

    def on_round_start(self, trainer: FederatedRun, server_round: int, client_ids: list[int]) -> None:
        """Called when a round starts, after clients are sampled."""

    def on_client_fit_start(self, trainer: FederatedRun, request: FitRequest) -> None:
        """Called before a client trains, where it trains; may set ``request.seed``."""

    def on_client_fit_end(self, trainer: FederatedRun, result: FitResult) -> None:
        """Called after a client trained, where it trained; may turn ``result.update`` into ``result.payload``."""

    def on_aggregate_start(self, trainer: FederatedRun, server_round: int, results: list[FitResult]) -> None:
        """Called on the server before it validates and aggregates the round's payloads."""

    def on_aggregate_end(self, trainer: FederatedRun, server_round: int, accepted: list[FitResult]) -> None:
        """Called after aggregation with the results whose updates were used."""

    def on_round_end(self, trainer: FederatedRun, server_round: int, metrics: dict[str, Any]) -> None:
        """Called after evaluation with the round's metrics (may add entries)."""

    def on_fit_end(self, trainer: FederatedRun) -> None:
        """Called when the run ends, after the last round and ``trainer.summary`` are done."""

    def on_exception(self, trainer: FederatedRun, exception: BaseException) -> None:
        """Called when the run stops with an exception."""

    def state_dict(self) -> dict[str, Any]:
        """Plain data to checkpoint."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    @property
    def keeps_client_state(self) -> bool:
        """Whether this callback gives clients private state (``FitResult.client_state``) that the server keeps."""
        return False

    def check_client_state(self, trainer: FederatedRun, client_id: int, state: bytes) -> None:
        """Called on resume with each stored client state, if ``keeps_client_state``: raise ValueError if it is damaged."""

    def configure_local_callbacks(self) -> Sequence[Any]:
        """Lightning callbacks to add to every local ``lightning.Trainer`` of this process (client fits and evaluation).

        As a LightningModule's ``configure_callbacks``: a method declares the callbacks its
        local training needs, and the trainer adds them, so nobody passes them by hand.
        """
        return ()


class UpdateTransform(FederatedCallback):
    """A method's client-side transform of the update (compression, FedPM's sampled masks).

    The trainer runs these after every other client hook and right before ``MaskPacking``
    encodes the update, in the order given, wherever the caller listed them: a user's hook
    always sees the trained weights, and the wire always gets what the method uploads.
    """
