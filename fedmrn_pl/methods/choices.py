"""The closed sets of the baselines' settings, torch-free so a config is checked without loading torch.

The methods themselves are not a closed set: ``fedmrn_pl.methods.registry`` holds them.
"""

from __future__ import annotations

from fedmrn_pl.choices import Choice

__all__ = ["QuantNorm"]


class QuantNorm(Choice):
    """The scale of stochastic 1-bit quantisation: ``linf`` (max |x|, lower variance) or ``l2`` (QSGD's norm)."""

    linf = "linf"
    l2 = "l2"

