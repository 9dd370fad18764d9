"""The federated callback base class: hooks called at named moments of a run.

Like Lightning's ``Callback``: a plain class whose hooks do nothing; subclasses
override what they need. Stateful callbacks return plain data from ``state_dict``
and are checkpointed under ``state_key``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fedmrn_pl.federated.job import ClientJob
    from fedmrn_pl.federated.trainer import FederatedTrainer

__all__ = ["FederatedCallback"]


class FederatedCallback:
    """Base class of the hooks ``FederatedTrainer`` calls during a run."""

    @property
    def state_key(self) -> str:
        """Key of this callback's state in checkpoints; unique per class by default."""
        return type(self).__qualname__

    def on_fit_start(self, trainer: FederatedTrainer) -> None:
        """Called when the run starts (after a resume has restored its state)."""

    def on_round_start(self, trainer: FederatedTrainer, server_round: int, client_ids: list[int]) -> None:
        """Called when a round starts, after clients are sampled."""

    def on_client_fit_start(self, trainer: FederatedTrainer, job: ClientJob) -> None:
        """Called before a client trains; may set ``job.seed``."""

    def on_client_fit_end(self, trainer: FederatedTrainer, job: ClientJob) -> None:
        """Called after a client trained; may set ``job.payload`` from ``job.result``."""

    def on_aggregate_start(self, trainer: FederatedTrainer, server_round: int, jobs: list[ClientJob]) -> None:
        """Called before the server decodes and aggregates the round's payloads."""

    def on_aggregate_end(self, trainer: FederatedTrainer, server_round: int, accepted: list[ClientJob]) -> None:
        """Called after aggregation with the jobs whose updates were used."""

    def on_round_end(self, trainer: FederatedTrainer, server_round: int, metrics: dict[str, Any]) -> None:
        """Called after evaluation with the round's metrics (may add entries)."""

    def on_fit_end(self, trainer: FederatedTrainer) -> None:
        """Called when the run ends, after the last round."""

    def on_exception(self, trainer: FederatedTrainer, exception: BaseException) -> None:
        """Called when the run stops with an exception."""

    def state_dict(self) -> dict[str, Any]:
        """Plain data to checkpoint."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
