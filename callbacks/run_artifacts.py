"""Run artifacts: ``metrics.json`` and the plots, written once when a run ends."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedmrn_pl.report import METRICS_NAME, write_metrics_json

from .base import FederatedCallback, FederatedRun

__all__ = ["RunArtifacts"]


class RunArtifacts(FederatedCallback):
    """Write ``<output_dir>/metrics.json`` (the run summary) and the accuracy plots at the end of a run.

    Args:
        output_dir: the run directory.
        extra: plain data recorded in metrics.json beside the summary (e.g. the config).
        plots: also draw ``accuracy_vs_round.png`` and ``accuracy_vs_uplink.png``.
    """

    def __init__(self, output_dir: str | Path, extra: Mapping[str, Any] | None = None, plots: bool = True) -> None:
        self.output_dir = Path(output_dir)
        self.extra = dict(extra or {})
        self.plots = plots
        self.written: dict[str, Any] | None = None  # what metrics.json holds, once written

    def on_fit_end(self, trainer: FederatedRun) -> None:
        """Write the summary the trainer computed, and draw the plots from its history."""
        if trainer.summary is None:
            return
        per_round = trainer.summary["per_round"]
        self.written = {**{k: v for k, v in trainer.summary.items() if k != "per_round"}, **self.extra}
        self.written["per_round"] = per_round
        write_metrics_json(self.output_dir / METRICS_NAME, self.written)
        if self.plots and trainer.history:
            from fedmrn_pl.plots import plot_histories  # matplotlib only where plots are drawn

            plot_histories([(trainer.summary["method"], trainer.history)], self.output_dir)
