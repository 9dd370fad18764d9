"""Federated methods beside FedMRN: the low-bit uplink baselines, each a client encoder plus a server strategy.

Names load on first use, so the config (which types a field with ``QuantNorm``) does not
pull in the training stack.
"""

from __future__ import annotations

from fedmrn_pl._lazy import lazy_exports

_EXPORTS = {
    "COMPRESSED_METHODS": "fedmrn_pl.methods.registry",
    "CompressedDeltas": "fedmrn_pl.methods.compression",
    "Compressor": "fedmrn_pl.methods.compressors",
    "EdenSign": "fedmrn_pl.methods.compressors",
    "FedPM": "fedmrn_pl.methods.fedpm",
    "FedPMClient": "fedmrn_pl.methods.fedpm",
    "QuantNorm": "fedmrn_pl.methods.choices",
    "ScaledSign": "fedmrn_pl.methods.compressors",
    "StochasticSign": "fedmrn_pl.methods.compressors",
    "TopK": "fedmrn_pl.methods.compressors",
    "UpdateCompression": "fedmrn_pl.methods.compression",
    "build_method": "fedmrn_pl.methods.registry",
    "compressor_for": "fedmrn_pl.methods.registry",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
