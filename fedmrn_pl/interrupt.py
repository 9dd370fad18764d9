"""Ctrl-C during a run: the first press stops it after the current round, the second at once.

Stopping between rounds keeps the run whole: every completed round is in the history,
the checkpoint can be brought up to date, and ``--resume`` continues bit for bit. A
second press raises at once; the last checkpoint written stays valid.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["GracefulStop", "RunInterrupted"]

log = logging.getLogger(__name__)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the run.

    Args:
        completed_rounds: rounds finished (and in the history) when it stopped.
        rounds: the rounds the run was asked for.
        forced: stopped inside a round (second Ctrl-C, or no graceful stop was possible):
            the round in progress is lost, only what was checkpointed before it counts.
    """

    def __init__(self, completed_rounds: int, rounds: int, forced: bool = False) -> None:
        when = "during round" if forced else "after round"
        at = completed_rounds + 1 if forced else completed_rounds
        super().__init__(f"interrupted by Ctrl-C {when} {at} of {rounds}")
        self.completed_rounds = completed_rounds
        self.rounds = rounds
        self.forced = forced


class GracefulStop:
    """Context manager that turns the first SIGINT into a request to stop after the current round.

    Installed only where it can work: in the main thread, over Python's own SIGINT handler
    (a program that set its own keeps it). Under torchrun each rank would stop at a
    different round, so the trainer does not use it there.

    Attributes:
        requested: Ctrl-C was pressed once: stop at the next round boundary.
        forced: Ctrl-C was pressed again: a ``KeyboardInterrupt`` is on its way.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.requested = False
        self.forced = False
        self._previous: Any = None

    def __enter__(self) -> GracefulStop:
        in_main_thread = threading.current_thread() is threading.main_thread()
        if self.enabled and in_main_thread and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)  # also undoes Lightning's SIG_IGN after its own interrupt
            self._previous = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            self.forced = True
            raise KeyboardInterrupt
        self.requested = True
        log.warning("Ctrl-C: stopping after this round and saving it; press Ctrl-C again to stop now")
