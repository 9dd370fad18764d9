"""Progress display: tqdm bars on a terminal, one plain line per round elsewhere.

Interactive terminals get a bar over rounds (postfix: test accuracy and cumulative
uplink) and a transient bar over the round's clients. Logs, CI and pipes get no bars,
only one line per round, so a run's output stays readable as a file.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from tqdm import tqdm

from fedmrn_pl.messages import FitResult

from .base import FederatedCallback, FederatedRun

__all__ = ["ProgressDisplay", "format_round", "is_interactive"]


def is_interactive() -> bool:
    """True on a terminal: stdout is a TTY and no ``CI`` variable says otherwise."""
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty()) and not os.environ.get("CI")


def format_round(metrics: Mapping[str, Any], rounds: int, history: Sequence[Mapping[str, Any]]) -> str:
    """The one-line summary of a round, e.g. ``round 3/10  acc 0.9312  loss 0.2311  uplink ...``.

    Args:
        metrics: the round's metrics (as passed to ``on_round_end``).
        rounds: the run's total number of rounds.
        history: the run's per-round metrics so far, used for the cumulative compression.
    """
    uplink = sum(r.get("uplink/bytes", 0) for r in history)
    dense = sum(r.get("uplink/dense_bytes", 0) for r in history)
    compression = f"{dense / uplink:.1f}x" if uplink else "-"
    return (
        f"round {metrics['round']}/{rounds}  "
        f"acc {_fixed(metrics.get('test/acc'))}  loss {_fixed(metrics.get('test/loss'))}  "
        f"uplink {metrics.get('uplink/bytes', 0) / 1e6:.2f} MB "
        f"(cum {metrics.get('uplink/cumulative_bytes', 0) / 1e6:.2f} MB, {compression})  "
        f"dropped {len(metrics.get('dropped_clients', ()))}  "
        f"{metrics.get('round/seconds', 0.0):.1f} s"
    )


class ProgressDisplay(FederatedCallback):
    """Shows a run's progress: bars on a terminal, one line per round otherwise.

    Args:
        enabled: False prints nothing at all.
        interactive: force bars (True) or lines (False); None decides with ``is_interactive()``.
    """

    def __init__(self, enabled: bool = True, interactive: bool | None = None) -> None:
        self.enabled = enabled
        self.interactive = interactive
        self._rounds_bar: tqdm | None = None
        self._clients_bar: tqdm | None = None

    @classmethod
    def for_terminal(cls) -> ProgressDisplay:
        """The Python API's default: bars on an interactive terminal, silent elsewhere (logs, CI, notebooks' pipes)."""
        return cls(enabled=is_interactive())

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
            print(format_round(metrics, trainer.rounds, trainer.history), flush=True)
            return
        self._close_clients()
        self._rounds_bar.set_postfix(
            acc=_fixed(metrics.get("test/acc")),
            uplink=f"{metrics.get('uplink/cumulative_bytes', 0) / 1e6:.2f} MB",
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


def _fixed(value: Any) -> str:
    """Four decimals, or ``-`` for a missing or non-finite value."""
    return f"{value:.4f}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"
