"""The user's ``trainer_kwargs``: what may go to the local ``lightning.Trainer``s, and their logger.

The federated trainer owns how long a client trains and that client fits run no
validation or checkpoints; a key that would override those is refused, with the
setting to use instead. A user's Lightning logger receives every client fit under a
``round_<r>/client_<c>/`` prefix (each local fit restarts Lightning's step at 0, so
the prefix keeps fits apart), and the round's metrics at ``step = server_round``.
"""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers import Logger

__all__ = ["OWN_SETTINGS", "ClientFitLogger", "check_trainer_kwargs", "client_loggers", "user_loggers"]

# lightning.Trainer keys FederatedTrainer sets itself -> what to use instead.
OWN_SETTINGS = {
    "max_epochs": "local_epochs",
    "min_epochs": "local_epochs",
    "max_steps": "local_epochs",
    "min_steps": "local_epochs",
    "max_time": "client_timeout (a client past it is dropped)",
    "num_sanity_val_steps": "test_step on the server (client fits run no validation)",
    "limit_val_batches": "test_step on the server (client fits run no validation)",
    "val_check_interval": "test_step on the server (client fits run no validation)",
    "check_val_every_n_epoch": "test_step on the server (client fits run no validation)",
    "enable_checkpointing": "the FederatedCheckpoint callback (checkpoints hold the federated state)",
}


def check_trainer_kwargs(trainer_kwargs: Mapping[str, Any]) -> None:
    """Refuse keys that conflict with the federated trainer's own settings, and loggers it cannot route.

    Raises:
        ValueError: one line naming the key and what to use instead.
    """
    for key, instead in OWN_SETTINGS.items():
        if key in trainer_kwargs:
            raise ValueError(
                f"trainer_kwargs[{key!r}]={trainer_kwargs[key]!r} conflicts with FederatedTrainer's own setting; "
                f"use {instead} instead"
            )
    user_loggers(trainer_kwargs)


def user_loggers(trainer_kwargs: Mapping[str, Any]) -> list[Logger]:
    """The Lightning loggers in ``trainer_kwargs["logger"]`` (none for a missing, None or False value).

    Raises:
        ValueError: ``logger=True`` (Lightning would start a new log for every client fit) or not a Logger.
    """
    value = trainer_kwargs.get("logger")
    if value is None or value is False:
        return []
    loggers = list(value) if isinstance(value, (list, tuple)) else [value]
    if value is True or not all(isinstance(logger, Logger) for logger in loggers):
        raise ValueError(
            f"trainer_kwargs['logger'] must be a Lightning Logger (e.g. CSVLogger('logs')), a list of them, "
            f"False or None, got {value!r}: logger=True would start a new log for every client fit"
        )
    return loggers


def client_loggers(trainer_kwargs: Mapping[str, Any], server_round: int, client_id: int) -> list[Logger] | bool:
    """The user's loggers as one client fit sees them: keys under ``round_<r>/client_<c>/`` (False: none)."""
    prefix = f"round_{server_round}/client_{client_id}/"
    return [ClientFitLogger(logger, prefix) for logger in user_loggers(trainer_kwargs)] or False


class ClientFitLogger(Logger):
    """Forwards one client fit's logs to the user's logger, keys prefixed; the run finalizes the logger once."""

    def __init__(self, logger: Logger, prefix: str) -> None:
        super().__init__()
        self.logger = logger
        self.prefix = prefix

    @property
    def name(self) -> str | None:
        return self.logger.name

    @property
    def version(self) -> int | str | None:
        return self.logger.version

    @property
    def save_dir(self) -> str | None:
        return self.logger.save_dir

    @property
    def log_dir(self) -> str | None:
        return self.logger.log_dir

    @property
    def experiment(self) -> Any:
        return self.logger.experiment

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.logger.log_metrics({f"{self.prefix}{key}": value for key, value in metrics.items()}, step)

    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        self.logger.log_hyperparams(params, *args, **kwargs)

    def save(self) -> None:
        self.logger.save()

    def finalize(self, status: str) -> None:
        """A client fit ended: save, but leave the logger open for the rest of the run."""
        self.logger.save()
