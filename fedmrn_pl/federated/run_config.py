"""A Python-API run described as plain data, for ``wandb.config`` (the CLI logs its YAML config instead).

The module's ``hparams`` (from ``save_hyperparameters``), the masking settings and the
trainer's own settings: what tells two runs apart when they are compared later.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

__all__ = ["describe_run", "plain"]


def plain(value: Any) -> Any:
    """``value`` as JSON-able data: containers recursed, classes and other objects by name."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, type):
        return value.__qualname__
    if dataclasses.is_dataclass(value):
        return {field.name: plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(item) for item in value]
    return f"<{type(value).__qualname__}>"  # a model, logger, tensor ...: its type, not its repr


def describe_run(trainer: Any) -> dict[str, Any]:
    """The module, masking and trainer settings of a ``FederatedTrainer`` as plain data."""
    return {
        "module": {"class": _class_path(trainer.module), "hparams": plain(dict(trainer.module.hparams))},
        "strategy": trainer.strategy.name,
        "masking": plain(trainer.masking),
        "trainer": {
            "rounds": trainer.rounds,
            "clients_per_round": trainer.clients_per_round,
            "num_clients": trainer.data.num_clients,
            "local_epochs": trainer.client.local_epochs,
            "batch_size": trainer.client.batch_size,
            "run_seed": trainer.run_seed,
            "min_clients": trainer.min_clients,
            "label": trainer.label,
            "metric_keys": dict(trainer.metric_keys.names),
            "monitor": trainer.monitor.key,
            "monitor_mode": str(trainer.monitor.mode),
            "trainer_kwargs": plain(trainer.trainer_kwargs),
        },
    }


def _class_path(value: Any) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"
