"""Run artifacts: ``metrics.json`` and the plots, written once when a run ends (or stops with an error)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedmrn_pl.report import METRICS_NAME, run_summary, write_metrics_json

from .base import FederatedCallback, FederatedRun

__all__ = ["RunArtifacts"]

log = logging.getLogger(__name__)


class RunArtifacts(FederatedCallback):
    """Write ``<output_dir>/metrics.json`` (the run summary) and the plots of the monitored metric when a run ends.

    A run that stops with an exception still gets a ``metrics.json`` of its completed rounds,
    with ``"stopped_by"`` saying why (no plots).

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
        self._write(trainer.summary)
        if self.plots and trainer.history:
            from fedmrn_pl.plots import plot_histories  # matplotlib only where plots are drawn

            plot_histories([(trainer.summary["method"], trainer.history)], self.output_dir, trainer.monitor)

    def on_exception(self, trainer: FederatedRun, exception: BaseException) -> None:
        """Keep the completed rounds: write their summary, noting what stopped the run; never raise over it."""
        if not trainer.history:
            return
        summary = run_summary(
            trainer.label, trainer.history, trainer.global_state, trainer.elapsed_seconds, monitor=trainer.monitor
        )
        reason = " ".join(str(exception).split())
        stopped_by = f"{type(exception).__name__}: {reason}" if reason else type(exception).__name__
        try:
            self._write(summary, stopped_by=stopped_by)
        except OSError as error:
            log.warning("could not write %s after the run stopped: %s", self.output_dir / METRICS_NAME, error)

    def _write(self, summary: Mapping[str, Any], **fields: Any) -> None:
        """metrics.json: the summary's figures, the extra data and ``fields``, then the per-round list."""
        self.written = {**{k: v for k, v in summary.items() if k != "per_round"}, **self.extra, **fields}
        self.written["per_round"] = summary["per_round"]
        write_metrics_json(self.output_dir / METRICS_NAME, self.written)
