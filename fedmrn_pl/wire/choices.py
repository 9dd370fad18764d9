"""How tensors travel on the wire: the closed sets of encodings, torch-free so a config is checked without loading torch."""

from __future__ import annotations

from fedmrn_pl.choices import Choice

__all__ = ["DenseEncoding", "MaskEncoding"]


class MaskEncoding(Choice):
    """How masks travel: entropy-coded where that is shorter (default), or packed 8 per byte."""

    coded = "coded"
    packed = "packed"


class DenseEncoding(Choice):
    """How dense tensors travel: byte planes deflated where shorter (default), or raw bytes."""

    deflate = "deflate"
    raw = "raw"
