"""Federated methods beside FedMRN: the low-bit uplink baselines, each a client encoder plus a server strategy.

Names load on first use, so the config (which types a field with ``QuantNorm``) does not
pull in the training stack.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "COMPRESSED_METHODS": "fedmrn_pl.methods.registry",
    "CompressedDeltas": "fedmrn_pl.methods.compression",
    "Compressor": "fedmrn_pl.methods.compressors",
    "EdenSign": "fedmrn_pl.methods.compressors",
    "FedPM": "fedmrn_pl.methods.fedpm",
    "FedPMClient": "fedmrn_pl.methods.fedpm",
    "QuantNorm": "fedmrn_pl.methods.functional",
    "ScaledSign": "fedmrn_pl.methods.compressors",
    "StochasticSign": "fedmrn_pl.methods.compressors",
    "TopK": "fedmrn_pl.methods.compressors",
    "UpdateCompression": "fedmrn_pl.methods.compression",
    "build_method": "fedmrn_pl.methods.registry",
    "compressor_for": "fedmrn_pl.methods.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fedmrn_pl.methods' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
