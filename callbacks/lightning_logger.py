"""Round metrics to a user's Lightning logger (CSV, TensorBoard, W&B ...), one row per round."""

from __future__ import annotations

from typing import Any

from .base import FederatedCallback, FederatedRun
from .wandb_logger import round_scalars

__all__ = ["RoundMetricsLogger"]


class RoundMetricsLogger(FederatedCallback):
    """Logs each round's scalar metrics at ``step = server_round`` and finalizes the loggers when the run ends.

    Added by ``FederatedTrainer`` for the loggers in ``trainer_kwargs["logger"]``.

    Args:
        loggers: Lightning loggers (``lightning.pytorch.loggers.Logger``).
    """

    def __init__(self, loggers: list[Any]) -> None:
        self.loggers = list(loggers)

    def on_round_end(self, trainer: FederatedRun, server_round: int, metrics: dict[str, Any]) -> None:
        """Log the round's numbers."""
        for logger in self.loggers:
            logger.log_metrics(round_scalars(metrics), step=server_round)
            logger.save()

    def on_fit_end(self, trainer: FederatedRun) -> None:
        """Close the loggers: the run is over."""
        for logger in self.loggers:
            logger.finalize("success")

    def on_exception(self, trainer: FederatedRun, exception: BaseException) -> None:
        """Close the loggers as failed."""
        for logger in self.loggers:
            logger.finalize("failed")
