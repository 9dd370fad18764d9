"""EF-SignSGD: SignSGD's upload plus error feedback (each client adds its previous compression error)."""

from __future__ import annotations

from fedmrn_pl.methods.plugin import FederatedMethod, MethodContext, MethodParts


def _build(context: MethodContext) -> MethodParts:
    from fedmrn_pl.methods.compression import compressed_method
    from fedmrn_pl.methods.compressors import ScaledSign

    return compressed_method("ef_signsgd", ScaledSign(error_feedback=True), context.selected_names())


METHOD = FederatedMethod("ef_signsgd", _build, summary="sign bits x mean |delta|, with the client's residual")
