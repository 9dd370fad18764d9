"""The Flower run config (``[tool.flwr.app.config]``, ``flwr run --run-config``) as a fedmrn-pl config.

The ServerApp and every ClientApp read the same run config, so both sides build the
same ``ExperimentConfig`` that ``fedmrn-pl fit --config <config> <overrides>`` would:
the same model, partition, masking and seeds.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig

from fedmrn_pl.config import ConfigError, load_config

__all__ = ["RUN_CONFIG_KEYS", "experiment_config", "run_setting"]

# Keys of the Flower run config this app reads, with their defaults.
RUN_CONFIG_KEYS: dict[str, Any] = {
    "config": "",  # a fedmrn-pl YAML config file; "" is the bundled default (what `fedmrn-pl fit` runs)
    "overrides": "",  # `key=value` overrides, space separated, as on the `fedmrn-pl fit` command line
    "resume": False,  # continue the run in output_dir from its checkpoint (as `fedmrn-pl fit --resume`)
    "reply-timeout": 600.0,  # seconds the ServerApp waits for a SuperNode's reply before dropping the client
    "node-timeout": 60.0,  # seconds the ServerApp waits for the SuperNodes holding the clients to connect
}


def run_setting(run_config: Mapping[str, Any], key: str) -> Any:
    """One setting of the run config, or its default; refuses keys this app does not know."""
    if key not in RUN_CONFIG_KEYS:
        raise ConfigError(f"unknown Flower run config key {key!r}; known: {sorted(RUN_CONFIG_KEYS)}")
    value = run_config.get(key, RUN_CONFIG_KEYS[key])
    default = RUN_CONFIG_KEYS[key]
    if isinstance(default, bool) and not isinstance(value, bool):
        raise ConfigError(f"Flower run config {key}={value!r} must be true or false")
    if isinstance(default, float) and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
        raise ConfigError(f"Flower run config {key}={value!r} must be a number of seconds > 0")
    return value


def experiment_config(run_config: Mapping[str, Any]) -> DictConfig:
    """The fedmrn-pl config of a Flower run: ``config`` and ``overrides`` as ``fedmrn-pl fit`` reads them.

    Raises:
        ConfigError: a bad key, value or file, in the words ``fedmrn-pl fit`` would use.
    """
    path = str(run_setting(run_config, "config")) or None
    overrides = shlex.split(str(run_setting(run_config, "overrides")))
    config = load_config(path, overrides)
    if run_setting(run_config, "resume"):
        config.resume = config.output_dir
    return config
