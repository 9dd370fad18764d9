"""The closed sets of the federated loop's settings, torch-free so a config is checked without loading torch."""

from __future__ import annotations

from fedmrn_pl.choices import Choice

__all__ = ["DownlinkMode"]


class DownlinkMode(Choice):
    """How the global model reaches the sampled clients."""

    dense = "dense"  # the model's tensors, every round
    masks = "masks"  # the round messages a client missed (dense when it never synced or missed too many)
