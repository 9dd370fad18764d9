"""Progress display: tqdm bars on a terminal, one plain line per round elsewhere.

Interactive terminals get a bar over rounds (postfix: the monitored metric, test accuracy
unless the run says otherwise, and cumulative uplink) and a transient bar over the round's
clients. Logs, CI and pipes get no bars, only one line per round on the ``fedmrn_pl.progress``
logger, so a run's output stays readable as a file and a slow run never looks hung.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from tqdm import tqdm

from fedmrn_pl.messages import FitResult
from fedmrn_pl.monitor import Monitor

from .base import FederatedCallback, FederatedRun

__all__ = ["ProgressDisplay", "format_round", "is_interactive"]

log = logging.getLogger("fedmrn_pl.progress")


def is_interactive() -> bool:
    """True on a terminal: stdout is a TTY and no ``CI`` variable says otherwise."""
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty()) and not os.environ.get("CI")


_SHORT_NAMES = {"test/acc": "acc", "test/loss": "loss"}  # standard keys by their short names in the line


def format_round(
    metrics: Mapping[str, Any], rounds: int, history: Sequence[Mapping[str, Any]], monitor: Monitor | None = None
) -> str:
    """The one-line summary of a round, e.g. ``round 3/10  acc 0.9312  loss 0.2311  uplink ...``.

    The monitored metric comes first, by its own name (``test_mse 0.0123``); then the test
    loss and, when the round has one, the test accuracy, unless the monitor is already that.

    Args:
        metrics: the round's metrics (as passed to ``on_round_end``).
        rounds: the run's total number of rounds.
        history: the run's per-round metrics so far, used for the cumulative compression.
        monitor: the metric the run is judged by; default test accuracy.
    """
    monitor = monitor or Monitor()
    uplink = sum(r.get("uplink/bytes", 0) for r in history)
    dense = sum(r.get("uplink/dense_bytes", 0) for r in history)
    compression = f"{dense / uplink:.1f}x" if uplink else "-"
    figures = [f"{_short_name(monitor)} {_fixed(metrics.get(monitor.key))}"]
    for key in ("test/acc", "test/loss"):
        # A missing loss shows as "-" (it is expected of every module); accuracy only when logged.
        if monitor.standard_key != key and (key == "test/loss" or key in metrics):
            figures.append(f"{_SHORT_NAMES[key]} {_fixed(metrics.get(key))}")
    return (
        f"round {metrics['round']}/{rounds}  "
        f"{'  '.join(figures)}  "
        f"uplink {metrics.get('uplink/bytes', 0) / 1e6:.2f} MB "
        f"(cum {metrics.get('uplink/cumulative_bytes', 0) / 1e6:.2f} MB, {compression})  "
        f"dropped {len(metrics.get('dropped_clients', ()))}  "
        f"{metrics.get('round/seconds', 0.0):.1f} s"
    )


class ProgressDisplay(FederatedCallback):
    """Shows a run's progress: bars on a terminal, one line per round otherwise (an info record
    on the ``fedmrn_pl.progress`` logger, see ``fedmrn_pl.console``).

    Args:
        enabled: False shows nothing at all.
        interactive: force bars (True) or lines (False); None decides with ``is_interactive()``.
    """

    def __init__(self, enabled: bool = True, interactive: bool | None = None) -> None:
        self.enabled = enabled
        self.interactive = interactive
        self._rounds_bar: tqdm | None = None
        self._clients_bar: tqdm | None = None


    @property
    def bars(self) -> bool:
        """Whether this run draws tqdm bars (decided when the run starts)."""
        return self.enabled and (self.interactive if self.interactive is not None else is_interactive())

    def on_fit_start(self, trainer: FederatedRun) -> None:
        """Open the rounds bar, starting at the rounds already done (after a resume)."""
        if self.bars:
            self._rounds_bar = tqdm(
                total=trainer.rounds,
                initial=trainer.completed_rounds,
                desc="rounds",
                unit="round",
                file=sys.stdout,
                dynamic_ncols=True,
            )

    def on_round_start(self, trainer: FederatedRun, server_round: int, client_ids: list[int]) -> None:
        """Open the transient bar over this round's clients."""
        if self._rounds_bar is not None:
            self._clients_bar = tqdm(
                total=len(client_ids),
                desc=f"round {server_round} clients",
                unit="client",
                leave=False,
                position=1,
                file=sys.stdout,
                dynamic_ncols=True,
            )

    def on_client_fit_end(self, trainer: FederatedRun, result: FitResult) -> None:
        """Advance the clients bar."""
        if self._clients_bar is not None:
            self._clients_bar.update(1)

    def on_round_end(self, trainer: FederatedRun, server_round: int, metrics: dict[str, Any]) -> None:
        """Advance the rounds bar, or print the round's line."""
        if not self.enabled:
            return
        if self._rounds_bar is None:
            log.info("%s", format_round(metrics, trainer.rounds, trainer.history, trainer.monitor))
            return
        self._close_clients()
        monitor = trainer.monitor
        self._rounds_bar.set_postfix(
            {
                _short_name(monitor): _fixed(metrics.get(monitor.key)),
                "uplink": f"{metrics.get('uplink/cumulative_bytes', 0) / 1e6:.2f} MB",
            },
            refresh=False,
        )
        self._rounds_bar.update(1)

    def on_fit_end(self, trainer: FederatedRun) -> None:
        """Close the bars."""
        self._close()

    def on_exception(self, trainer: FederatedRun, exception: BaseException) -> None:
        """Close the bars so the traceback starts on a clean line."""
        self._close()

    def _close_clients(self) -> None:
        if self._clients_bar is not None:
            self._clients_bar.close()
            self._clients_bar = None

    def _close(self) -> None:
        self._close_clients()
        if self._rounds_bar is not None:
            self._rounds_bar.close()
            self._rounds_bar = None


def _short_name(monitor: Monitor) -> str:
    """``acc`` and ``loss`` for the standard test keys, else the monitored key itself."""
    return _SHORT_NAMES.get(monitor.key, monitor.key)


def _fixed(value: Any) -> str:
    """Four decimals, or ``-`` for a missing or non-finite value."""
    return f"{value:.4f}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"
