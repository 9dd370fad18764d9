"""SignSGD-style uplink: one sign bit per element of the update, scaled by its mean ``|delta|`` per tensor."""

from __future__ import annotations

from fedmrn_pl.methods.plugin import FederatedMethod, MethodContext, MethodParts


def _build(context: MethodContext) -> MethodParts:
    from fedmrn_pl.methods.compression import compressed_method
    from fedmrn_pl.methods.compressors import ScaledSign

    return compressed_method("signsgd", ScaledSign(), context.selected_names())


METHOD = FederatedMethod("signsgd", _build, summary="sign bits x mean |delta| per tensor")
