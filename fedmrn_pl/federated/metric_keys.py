"""Which of the module's logged metrics the run reads as its training loss, test accuracy and test loss,
and which one it is judged by.

Summaries, the progress line, plots and W&B read ``train/loss``, ``test/acc`` and
``test/loss``. A module that logs other names (``train_loss``, ``val_acc``) maps them
here; its values are then also recorded under the standard names, and a key that the
module never logs is reported once instead of showing up as a silent ``nan``. The
monitored metric (``test/acc`` unless said) gives the run's best value and round.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from fedmrn_pl.messages import FitResult
from fedmrn_pl.monitor import STANDARD_MODES, Monitor, MonitorMode

__all__ = ["STANDARD_KEYS", "MetricKeys"]

log = logging.getLogger(__name__)

STANDARD_KEYS = tuple(STANDARD_MODES)  # what summaries, progress, plots and W&B read


class MetricKeys:
    """Maps the standard keys to the names the module logs, and warns once per key never logged.

    Args:
        mapping: ``{standard key: the module's key}``, e.g. ``{"test/acc": "val_acc"}``;
            keys left out keep their standard name.
        monitor: the metric the run is judged by: a standard key or one the module logs in
            ``test_step`` (e.g. ``"test_mse"``); see ``Monitor``.
        monitor_mode: ``"max"`` or ``"min"``; None: max for (a key mapped to) ``test/acc``,
            min for the losses; any other ``monitor`` must say.

    Raises:
        ValueError: a key of ``mapping`` is not a standard key, a value is not a non-empty str,
            or the monitor is not valid (see ``Monitor``; the training loss is monitored as ``train/loss``).
    """

    def __init__(
        self,
        mapping: Mapping[str, str] | None = None,
        monitor: str = "test/acc",
        monitor_mode: MonitorMode | str | None = None,
    ) -> None:
        mapping = dict(mapping or {})
        unknown = sorted(set(mapping) - set(STANDARD_KEYS))
        if unknown:
            raise ValueError(f"metric_keys has unknown keys {unknown}; map any of {list(STANDARD_KEYS)} to your names")
        for standard, name in mapping.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"metric_keys[{standard!r}] must be a non-empty str (a key your module logs), got {name!r}")
        self.names = {key: mapping.get(key, key) for key in STANDARD_KEYS}
        standard = next((key for key, name in self.names.items() if name == monitor), None)
        if standard == "train/loss" and monitor != standard:  # the rounds record the clients' mean, not the module's key
            raise ValueError(
                f"monitor={monitor!r} is the training loss, recorded per round as 'train/loss': monitor that key"
            )
        self.monitor = Monitor(monitor, monitor_mode, standard)  # the metric the run is judged by
        self._warned: set[str] = set()

    @property
    def train_loss(self) -> str:
        """The key the client reads as its training loss."""
        return self.names["train/loss"]

    def with_standard_keys(self, test_results: Mapping[str, float], hook: str = "test_step") -> dict[str, float]:
        """``test_results`` plus the test metrics under their standard names; warn once for a missing one.

        Accuracy is expected only of a run judged by it: a regression run has none. ``hook``
        is the module's evaluation step (``test_step`` or ``validation_step``), named in the warning.
        """
        results = dict(test_results)
        for standard in ("test/acc", "test/loss"):
            name = self.names[standard]
            if name in results:
                results[standard] = results[name]
            elif standard != "test/acc" or self.monitor.standard_key == "test/acc":
                self._warn_once(standard, hook, sorted(test_results))
        if self.monitor.standard_key is None and self.monitor.key not in results:
            self._warn_monitor_once(sorted(test_results), hook)
        return results

    def check_clients(self, accepted: Sequence[FitResult]) -> None:
        """Warn once when clients trained and none of them logged the training-loss key."""
        if accepted and all(result.train_loss is None for result in accepted):
            self._warn_once("train/loss", "training_step", sorted({key for r in accepted for key in r.logged}))

    def _warn_once(self, standard: str, hook: str, logged: list[str]) -> None:
        if standard in self._warned:
            return
        self._warned.add(standard)
        name = self.names[standard]
        log.warning(
            "the module logged no %r in %s (it logged %s); %s reads as missing. Log it with self.log(%r, ...) "
            "or name your key: FederatedTrainer(..., metric_keys={%r: '<your key>'})",
            name,
            hook,
            logged or "nothing",
            standard,
            name,
            standard,
        )

    def _warn_monitor_once(self, logged: list[str], hook: str) -> None:
        key = self.monitor.key
        if key in self._warned:
            return
        self._warned.add(key)
        log.warning(
            "the module logged no %r in %s (it logged %s), the metric the run is judged by; its best value "
            "reads as missing. Log it with self.log(%r, ...) or monitor one of the keys it logs",
            key,
            hook,
            logged or "nothing",
            key,
        )
