"""The library's messages on the console: the ``fedmrn_pl`` logger, shown unless the user configured logging.

As Lightning does for its own logger: a handler is added only when neither the
``fedmrn_pl`` logger nor the root logger has one, so an application's own logging set-up
wins. Silence it with ``logging.getLogger("fedmrn_pl").setLevel(logging.WARNING)``.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["ConsoleHandler", "show_library_logs"]

LOGGER_NAME = "fedmrn_pl"


class ConsoleHandler(logging.Handler):
    """Info on stdout, warnings on stderr, as plain lines; the streams are looked up per record."""

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
        stream.write(self.format(record) + "\n")
        stream.flush()


def show_library_logs(force: bool = False) -> None:
    """Show the ``fedmrn_pl`` logger's info lines (progress, partition) on the console.

    Args:
        force: the CLI's choice: always show them (its own process, no one else's set-up to respect).
            Otherwise only where nothing is configured: no handler on the logger or the root
            logger, and no level the user set on the logger.
    """
    logger = logging.getLogger(LOGGER_NAME)
    ours = any(isinstance(handler, ConsoleHandler) for handler in logger.handlers)
    if not force and (logger.handlers or logging.getLogger().handlers or logger.level != logging.NOTSET):
        return
    if not ours:
        logger.addHandler(ConsoleHandler())
    logger.setLevel(logging.INFO)
    logger.propagate = False
