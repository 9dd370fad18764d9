"""Run artifacts: ``metrics.json`` and the plots, written once when a run ends (or stops with an error)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedmrn_pl.report import METRICS_NAME, run_summary, write_metrics_json
from fedmrn_pl.run_directory import RunDirectory
from fedmrn_pl.saving import SaveError

from .base import FederatedCallback, FederatedRun

__all__ = ["RunArtifacts"]

log = logging.getLogger(__name__)


class RunArtifacts(FederatedCallback):
    """Write ``<output_dir>/metrics.json`` (the run summary) and the plots of the monitored metric when a run ends.

    A run that stops with an exception still gets a ``metrics.json`` of its completed rounds,
    with ``"stopped_by"`` saying why (no plots).

    The run owns its directory while it runs (see ``RunDirectory``): a second run into it
    is refused, and so is a new run into a directory that holds one, unless ``overwrite``;
    a resumed run (one that starts after round 0) continues its own.

    Args:
        output_dir: the run directory.
        extra: plain data recorded in metrics.json beside the summary (e.g. the config).
        plots: also draw ``accuracy_vs_round.png`` and ``accuracy_vs_uplink.png``.
        overwrite: replace a run found in ``output_dir`` instead of refusing to start.
    """

    def __init__(
        self, output_dir: str | Path, extra: Mapping[str, Any] | None = None, plots: bool = True, overwrite: bool = False
    ) -> None:
        self.output_dir = Path(output_dir)
        self.extra = dict(extra or {})
        self.plots = plots
        self.directory = RunDirectory(output_dir, overwrite)
        self.written: dict[str, Any] | None = None  # what metrics.json holds, once written

    def on_fit_start(self, trainer: FederatedRun) -> None:
        """Claim the run directory (done already when the CLI claimed it before writing config.yaml)."""
        self.directory.claim(
            resuming=trainer.completed_rounds > 0,
            advice="continue it (trainer.load_state_dict(load_checkpoint(dir)) before fit()), "
            "write to another output_dir, or replace it with overwrite=True",
        )

    def on_fit_end(self, trainer: FederatedRun) -> None:
        """Write the summary the trainer computed, and draw the plots from its history."""
        if trainer.summary is None:
            return
        try:
            self._write(trainer.summary)
            if self.plots and trainer.history:
                from fedmrn_pl.plots import plot_histories  # matplotlib only where plots are drawn

                try:
                    plot_histories([(trainer.summary["method"], trainer.history)], self.output_dir, trainer.monitor)
                except OSError as error:  # a full disk: one line naming the file, as for every run file
                    raise SaveError.of(error.filename or self.output_dir, error) from error
        finally:
            self.directory.release()

    def on_exception(self, trainer: FederatedRun, exception: BaseException) -> None:
        """Keep the completed rounds: write their summary, noting what stopped the run; never raise over it."""
        if not self.directory.claimed:  # stopped before the run had its directory: nothing of it to write
            return
        try:
            self._write_stopped(trainer, exception)
        finally:
            self.directory.release()

    def _write_stopped(self, trainer: FederatedRun, exception: BaseException) -> None:
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
            # A run stopped by a failed write (a full disk) has said so already: no second line for the same cause.
            level = logging.DEBUG if isinstance(exception, SaveError) else logging.WARNING
            log.log(level, "could not write %s after the run stopped: %s", self.output_dir / METRICS_NAME, error)

    def _write(self, summary: Mapping[str, Any], **fields: Any) -> None:
        """metrics.json: the summary's figures, the extra data and ``fields``, then the per-round list."""
        self.written = {**{k: v for k, v in summary.items() if k != "per_round"}, **self.extra, **fields}
        self.written["per_round"] = summary["per_round"]
        write_metrics_json(self.output_dir / METRICS_NAME, self.written)
