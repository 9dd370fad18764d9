"""Federated methods: FedMRN, FedAvg, the low-bit uplink baselines, FedPM, and yours.

Each method is a ``FederatedMethod`` in the registry (``register_method``; the built-in
ones are ``fedmrn_pl.methods.builtin``). Names load on first use, so the config (which
reads the registry) does not pull in the training stack.
"""

from __future__ import annotations

from fedmrn_pl._lazy import lazy_exports

_EXPORTS = {
    "CompressedDeltas": "fedmrn_pl.methods.compression",
    "Compressor": "fedmrn_pl.methods.compressors",
    "EdenSign": "fedmrn_pl.methods.compressors",
    "FedPM": "fedmrn_pl.methods.fedpm",
    "FedPMClient": "fedmrn_pl.methods.fedpm",
    "FederatedMethod": "fedmrn_pl.methods.plugin",
    "MethodContext": "fedmrn_pl.methods.plugin",
    "MethodParts": "fedmrn_pl.methods.plugin",
    "ProximalTerm": "fedmrn_pl.methods.fedprox",
    "QuantNorm": "fedmrn_pl.methods.choices",
    "RunFacts": "fedmrn_pl.methods.plugin",
    "ScaledSign": "fedmrn_pl.methods.compressors",
    "StochasticSign": "fedmrn_pl.methods.compressors",
    "TopK": "fedmrn_pl.methods.compressors",
    "UpdateCompression": "fedmrn_pl.methods.compression",
    "build_method": "fedmrn_pl.methods.registry",
    "compare_variants": "fedmrn_pl.methods.registry",
    "compressed_method": "fedmrn_pl.methods.compression",
    "get_method": "fedmrn_pl.methods.registry",
    "method_names": "fedmrn_pl.methods.registry",
    "register_method": "fedmrn_pl.methods.registry",
    "registered_methods": "fedmrn_pl.methods.registry",
    "unregister_method": "fedmrn_pl.methods.registry",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
