"""The closed sets of the callbacks' settings, torch-free so a config is checked without loading torch."""

from __future__ import annotations

from fedmrn_pl.choices import Choice

__all__ = ["WandbMode"]


class WandbMode(Choice):
    """Where a W&B run goes: ``offline`` (default, sync later), ``online``, or ``disabled``."""

    offline = "offline"
    online = "online"
    disabled = "disabled"
