"""The federated loop: trainer, client sampling and aggregation strategies.

Names load on first use, so the config (which types a field with ``DownlinkMode``)
does not pull in Lightning.
"""

from __future__ import annotations

from fedmrn_pl._lazy import lazy_exports

_EXPORTS = {
    "ClientData": "fedmrn_pl.federated.trainer",
    "EvaluationError": "fedmrn_pl.federated.evaluation",
    "FedAvg": "fedmrn_pl.federated.strategies",
    "FedMRN": "fedmrn_pl.federated.strategies",
    "FederatedTrainer": "fedmrn_pl.federated.trainer",
    "Strategy": "fedmrn_pl.federated.strategies",
    "sample_clients": "fedmrn_pl.federated.sampling",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
