"""FedAvg (McMahan et al., 2017): clients upload their dense weights; the server averages them by sample count."""

from __future__ import annotations

from fedmrn_pl.methods.plugin import FederatedMethod, MethodContext, MethodParts


def _build(context: MethodContext) -> MethodParts:
    from fedmrn_pl.federated.strategies import FedAvg

    return MethodParts(FedAvg())


METHOD = FederatedMethod("fedavg", _build, summary="dense float32 weights, sample-weighted average (the baseline)")
