"""Run figures: the monitored metric per round and against cumulative uplink bytes.

The monitored metric is test accuracy unless the run says otherwise (``monitor``,
``monitor_mode``); it is named as the run names it, and each run's best round is circled
by its own rule (highest or lowest). The plots read only the per-round metrics (the
``per_round`` list of a run's ``metrics.json``, or ``FederatedTrainer.history`` while a
run is live), so the same code draws a finished run from disk and the W&B logger's
figures at the end of a fit. Figures are built on ``matplotlib.figure.Figure`` with the
Agg canvas: no display, no pyplot global state.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter, MaxNLocator

from fedmrn_pl.monitor import STANDARD_MODES, Monitor
from fedmrn_pl.report import METRICS_NAME

__all__ = ["PLOT_NAMES", "load_run", "plot_histories", "plot_runs"]

PLOT_NAMES = ("accuracy_vs_round.png", "accuracy_vs_uplink.png")  # the same names whatever the monitored metric
_REQUIRED_KEYS = ("round", "uplink/cumulative_bytes")  # and the monitored metric's key

History = Sequence[Mapping[str, Any]]


def load_run(run_dir: str | Path) -> tuple[str, list[dict[str, Any]]]:
    """Read a run directory's ``metrics.json``: its method label and per-round metrics.

    Raises:
        FileNotFoundError: the directory has no ``metrics.json``.
        ValueError: the file is not JSON or lacks the per-round fields the plots need.
    """
    label, per_round, _ = _load_run(run_dir)
    return label, per_round


def _load_run(run_dir: str | Path) -> tuple[str, list[dict[str, Any]], Monitor]:
    """``load_run`` and the metric the run is judged by (test accuracy for runs that do not say)."""
    path = Path(run_dir) / METRICS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; is {Path(run_dir)} a fedmrn-pl run directory?")
    try:
        summary = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("per_round"), list):
        raise ValueError(f"{path} has no 'per_round' list; expected the metrics.json written by `fedmrn-pl fit`")
    try:
        monitor = Monitor.of_summary(summary)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    per_round = summary["per_round"]
    if not per_round:
        raise ValueError(f"{path} has no rounds to plot")
    required = (*_REQUIRED_KEYS, monitor.key)
    for index, metrics in enumerate(per_round):
        missing = [key for key in required if not isinstance(metrics, dict) or key not in metrics]
        if missing:
            raise ValueError(f"{path}: per_round[{index}] lacks {missing}")
    return str(summary.get("method") or Path(run_dir).name), per_round, monitor


def plot_histories(
    runs: Sequence[tuple[str, History]], out_dir: str | Path, monitor: Monitor | None = None
) -> list[Path]:
    """Draw one line per ``(label, per_round)`` run and write the PNGs into ``out_dir``.

    Args:
        runs: each run's legend label and its per-round metrics, in plotting order.
        out_dir: created if missing; existing plots there are replaced.
        monitor: the metric to plot and which way is better; default test accuracy (higher is better).

    Returns:
        The paths written: ``accuracy_vs_round.png`` and ``accuracy_vs_uplink.png``.
    """
    if not runs:
        raise ValueError("nothing to plot: no runs given")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for figure, name in zip(_draw(runs, monitor or Monitor()), PLOT_NAMES):
        path = out_dir / name
        figure.savefig(path, dpi=120)
        paths.append(path)
    return paths


def _draw(runs: Sequence[tuple[str, History]], monitor: Monitor) -> tuple[Figure, Figure]:
    """The two figures: the monitored metric per round and against cumulative uplink, best rounds circled."""
    name = monitor.label
    title = name[:1].upper() + name[1:] if monitor.key in STANDARD_MODES else name  # never re-case a user's key
    ylabel = f"{name} ({monitor.better})"
    by_round = _figure(f"{title} per round", "round", ylabel)
    by_uplink = _figure(f"{title} vs. cumulative uplink", "cumulative uplink (MB, log scale)", ylabel)
    for label, history in runs:
        rounds = [int(metrics["round"]) for metrics in history]
        values = [_number(metrics.get(monitor.key)) for metrics in history]
        uplink_mb = [_number(metrics.get("uplink/cumulative_bytes")) / 1e6 for metrics in history]
        (line,) = by_round.axes[0].plot(rounds, values, marker="o", markersize=3, label=label)
        # A log axis cannot show runs whose uplink is still zero (every client dropped).
        points = [(mb, value) for mb, value in zip(uplink_mb, values) if mb > 0]
        by_uplink.axes[0].plot(
            [mb for mb, _ in points], [value for _, value in points], marker="o", markersize=3, label=label
        )
        best = monitor.best(history)
        if best is not None:
            index = rounds.index(best[0])
            _circle(by_round, [rounds[index]], [best[1]], line.get_color())
            if uplink_mb[index] > 0:
                _circle(by_uplink, [uplink_mb[index]], [best[1]], line.get_color())
    by_round.axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    by_uplink.axes[0].set_xscale("log")
    by_uplink.axes[0].xaxis.set_major_formatter(_PlainLogFormatter(labelOnlyBase=True))
    by_uplink.axes[0].xaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False))
    for figure in (by_round, by_uplink):
        _circle(figure, [], [], "gray", label="best round")  # the legend's key
        figure.axes[0].legend(loc="best", fontsize="small")
    return by_round, by_uplink


def plot_runs(run_dirs: Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    """Compare runs: read each directory's ``metrics.json`` and plot them together.

    Lines are labelled by method; when two runs share a method the run directory's
    name is added so the legend tells them apart.

    Raises:
        FileNotFoundError: a directory has no ``metrics.json``.
        ValueError: no directories, a ``metrics.json`` is malformed, or the runs monitor different metrics.
    """
    if not run_dirs:
        raise ValueError("nothing to plot: no run directories given")
    loaded = [(Path(run_dir), *_load_run(run_dir)) for run_dir in run_dirs]
    monitors = {monitor for _, _, _, monitor in loaded}
    if len(monitors) > 1:
        judged = ", ".join(f"{run_dir} by {monitor.key} ({monitor.mode})" for run_dir, _, _, monitor in loaded)
        raise ValueError(f"the runs are judged by different metrics ({judged}); plot them separately")
    counts = Counter(label for _, label, _, _ in loaded)
    runs = [
        (f"{label} ({run_dir.name})" if counts[label] > 1 else label, history)
        for run_dir, label, history, _ in loaded
    ]
    return plot_histories(runs, out_dir, monitors.pop())


class _PlainLogFormatter(LogFormatter):
    """Log-axis labels as plain numbers (0.3, 1, 10) where matplotlib would write 3e-01."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:g}" if super().__call__(x, pos) else ""


def _figure(title: str, xlabel: str, ylabel: str) -> Figure:
    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, which="major", alpha=0.3)
    return figure


def _circle(figure: Figure, x: list[float], y: list[float], color: str, label: str = "_best") -> None:
    """Open circles around a run's best point (labels starting with ``_`` stay out of the legend)."""
    figure.axes[0].plot(x, y, linestyle="none", marker="o", markersize=10, markerfacecolor="none", color=color,
                        label=label)  # fmt: skip (an explicit color leaves the runs' color cycle alone)


def _number(value: Any) -> float:
    """metrics.json writes NaN as null; plot it as a gap."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.nan
