"""The one exception the wire format raises for a bad payload."""

from __future__ import annotations

__all__ = ["PayloadError"]


class PayloadError(ValueError):
    """A payload is malformed, corrupt, or does not fit what the server expects.

    Raised by every decoding function in :mod:`fedmrn_pl.wire` and by nothing else,
    so a server can ``except PayloadError``, drop that client's update, log the
    message and carry on with the round. The message names the offending field and
    the value that was expected.
    """
