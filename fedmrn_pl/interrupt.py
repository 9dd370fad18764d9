"""Stopping a run from outside: Ctrl-C, SIGTERM, or a ``KeyboardInterrupt``/``SystemExit`` from the user's code.

The first Ctrl-C stops the run after the current round, which keeps it whole: every
completed round is in the history, the checkpoint can be brought up to date, and
``--resume`` continues bit for bit. A second press raises at once; the last checkpoint
written stays valid. SIGTERM stops at once (a scheduler sends it shortly before SIGKILL),
even from a client stuck in its data loader. A ``KeyboardInterrupt`` or ``SystemExit``
raised by a training step is the user's interrupt too. Each ends in ``RunInterrupted``.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["GracefulStop", "RunInterrupted"]

log = logging.getLogger(__name__)

CTRL_C_EXIT = 130  # 128 + SIGINT, what a shell reports for a process ended by Ctrl-C
SIGTERM_EXIT = 143  # 128 + SIGTERM


class RunInterrupted(KeyboardInterrupt):
    """The run was stopped before its last round: Ctrl-C, SIGTERM, or an interrupt raised by the user's code.

    Args:
        completed_rounds: rounds finished (and in the history) when it stopped.
        rounds: the rounds the run was asked for.
        forced: stopped inside a round (second Ctrl-C, SIGTERM, or no graceful stop was possible):
            the round in progress is lost, only what was checkpointed before it counts.
        by: what stopped it: ``"Ctrl-C"``, ``"SIGTERM"``, ``"KeyboardInterrupt"`` or ``"SystemExit(5)"``.
        exit_code: the status a command ends with: 130 after Ctrl-C or a ``KeyboardInterrupt``,
            143 after SIGTERM, a ``SystemExit``'s own non-zero code (else 1).
    """

    def __init__(
        self, completed_rounds: int, rounds: int, forced: bool = False, by: str = "Ctrl-C", exit_code: int = CTRL_C_EXIT
    ) -> None:
        inside = forced and completed_rounds < rounds  # a round was under way
        when = f"during round {completed_rounds + 1}" if inside else f"after round {completed_rounds}"
        super().__init__(f"interrupted by {by} {when} of {rounds}")
        self.completed_rounds = completed_rounds
        self.rounds = rounds
        self.forced = forced
        self.by = by
        self.exit_code = exit_code


class GracefulStop:
    """Turns the first SIGINT into a request to stop after the current round, and SIGTERM into a stop now.

    Installed only where it can work: in the main thread, over Python's own handlers
    (a program that set its own keeps it). Under torchrun each rank would stop at a
    different round, so the trainer does not use it there.

    Attributes:
        requested: Ctrl-C was pressed once: stop at the next round boundary.
        forced: Ctrl-C was pressed again, or SIGTERM came: a ``KeyboardInterrupt`` is on its way.
        terminated: SIGTERM came (later ones are ignored while the run closes).
        catches_ctrl_c: the SIGINT handler is installed, so a ``KeyboardInterrupt`` that is not
            ``forced`` was raised by code, not by Ctrl-C.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.requested = False
        self.forced = False
        self.terminated = False
        self._previous: dict[int, Any] = {}

    @property
    def catches_ctrl_c(self) -> bool:
        """Whether this object handles SIGINT now."""
        return signal.SIGINT in self._previous

    def __enter__(self) -> GracefulStop:
        if self.enabled and threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_sigint)
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                # Lightning's trainer calls this handler after its own, which only notes the signal.
                self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # SIGINT: also undoes Lightning's SIG_IGN after its own interrupt
        self._previous = {}

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            self.forced = True
            raise KeyboardInterrupt
        self.requested = True
        log.warning("Ctrl-C: stopping after this round and saving it; press Ctrl-C again to stop now")

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        if self.terminated:
            return
        self.terminated = self.forced = True
        raise KeyboardInterrupt  # at once, also out of a sleeping data loader: SIGKILL usually follows soon

    def interruption(self, error: BaseException, completed_rounds: int, rounds: int) -> RunInterrupted | None:
        """``error`` as the ``RunInterrupted`` it means, or None when it is an ordinary failure."""
        if isinstance(error, RunInterrupted):
            return error
        from lightning.pytorch.utilities.exceptions import SIGTERMException  # where our handler is not installed

        if self.terminated or isinstance(error, SIGTERMException):
            return RunInterrupted(completed_rounds, rounds, forced=True, by="SIGTERM", exit_code=SIGTERM_EXIT)
        # Lightning turns a KeyboardInterrupt inside a client's fit into SystemExit(1).
        keyboard = isinstance(error, KeyboardInterrupt) or (
            isinstance(error, SystemExit) and isinstance(error.__context__, KeyboardInterrupt)
        )
        if self.forced or (keyboard and not self.catches_ctrl_c):
            return RunInterrupted(completed_rounds, rounds, forced=True)
        if keyboard:
            return RunInterrupted(completed_rounds, rounds, forced=True, by="KeyboardInterrupt")
        if isinstance(error, SystemExit):
            code = error.code  # the run did not finish: never exit 0 for it
            exit_code = code if isinstance(code, int) and code != 0 else 1
            return RunInterrupted(completed_rounds, rounds, True, by=f"SystemExit({code!r})", exit_code=exit_code)
        return None
