"""The metric a run is judged by, and which way is better (Lightning's ``ModelCheckpoint(monitor=, mode=)``).

The summary's best value and round, the progress line, the plots and W&B read the
monitored metric by its own name, so a regression run judged by ``test_mse`` (lower is
better) never reads as an accuracy. Callbacks, plots and reports import this module, so
it imports nothing from training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fedmrn_pl.choices import Choice

__all__ = ["STANDARD_MODES", "Monitor", "MonitorMode"]


class MonitorMode(Choice):
    """Which way a monitored metric is better: ``max`` (an accuracy) or ``min`` (a loss, an error)."""

    max = "max"
    min = "min"


# The keys summaries, the progress line and plots read (``metric_keys`` maps a module's
# names to them), and which way each is better.
STANDARD_MODES: dict[str, MonitorMode] = {
    "train/loss": MonitorMode.min,
    "test/acc": MonitorMode.max,
    "test/loss": MonitorMode.min,
}
_LABELS = {"train/loss": "train loss", "test/acc": "test accuracy", "test/loss": "test loss"}


@dataclass(frozen=True)
class Monitor:
    """The metric a run is judged by and which way is better.

    Args:
        key: a key of the round's metrics: a standard key (``test/acc``, ``test/loss``,
            ``train/loss``) or one the module logs in ``test_step`` (e.g. ``"test_mse"``).
        mode: ``"max"`` (higher is better) or ``"min"`` (lower is better); None takes the
            standard key's own (max for ``test/acc``, min for the losses); other keys must say.
        standard_key: the standard key that ``key`` is also recorded under (through
            ``metric_keys``), which gives its mode when none is said; None: ``key`` if standard.

    Raises:
        ValueError: ``key`` is not a non-empty str, ``mode`` is not max/min, or a non-standard
            key comes without a mode.
    """

    key: str = "test/acc"
    mode: MonitorMode | str | None = None  # a MonitorMode once constructed
    standard_key: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ValueError(f"monitor must be a non-empty str (a metric key your module logs), got {self.key!r}")
        standard = self.standard_key or (self.key if self.key in STANDARD_MODES else None)
        if standard is not None and standard not in STANDARD_MODES:
            raise ValueError(f"standard_key {standard!r} is not valid; choose one of {list(STANDARD_MODES)} or None")
        if self.mode is None and standard is None:
            raise ValueError(
                f"monitor={self.key!r} needs monitor_mode='max' (higher is better) or 'min' (lower is better)"
            )
        mode = STANDARD_MODES[standard] if self.mode is None else MonitorMode.parse(self.mode, "monitor_mode")
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "standard_key", standard)

    @classmethod
    def of_summary(cls, summary: Mapping[str, Any]) -> Monitor:
        """The monitor a ``metrics.json`` summary records; test accuracy for runs written before it did."""
        return cls(summary.get("monitor") or "test/acc", summary.get("monitor_mode"))

    @property
    def label(self) -> str:
        """Its name in plots and printed summaries: ``test accuracy`` for ``test/acc``, else the key."""
        return _LABELS.get(self.key, self.key)

    @property
    def better(self) -> str:
        """``higher is better`` or ``lower is better``, for labels."""
        return "higher is better" if self.mode == MonitorMode.max else "lower is better"

    def value(self, metrics: Mapping[str, Any]) -> float | None:
        """The round's value, or None when missing or not a finite number."""
        value = metrics.get(self.key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        return float(value)

    def is_better(self, value: float, than: float) -> bool:
        """Whether ``value`` beats ``than`` (a tie does not)."""
        return value > than if self.mode == MonitorMode.max else value < than

    def best(self, history: Sequence[Mapping[str, Any]]) -> tuple[int, float] | None:
        """``(round, value)`` of the best round, the earliest on ties; None when no round has a value."""
        best: tuple[int, float] | None = None
        for metrics in history:
            value = self.value(metrics)
            if value is not None and (best is None or self.is_better(value, best[1])):
                best = (int(metrics["round"]), value)
        return best
