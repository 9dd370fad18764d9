"""EDEN/DRIVE-style uplink: a random Hadamard rotation from the shared seed, sign bits, one scale per tensor."""

from __future__ import annotations

from fedmrn_pl.methods.plugin import FederatedMethod, MethodContext, MethodParts


def _build(context: MethodContext) -> MethodParts:
    from fedmrn_pl.methods.compression import compressed_method
    from fedmrn_pl.methods.compressors import EdenSign

    return compressed_method("eden", EdenSign(), context.selected_names())


METHOD = FederatedMethod("eden", _build, summary="random Hadamard rotation, sign bits, one scale")
