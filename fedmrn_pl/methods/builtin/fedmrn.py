"""FedMRN: clients learn a 1-bit mask over seeded random noise; the server adds the masked noise.

Its settings are the config's ``method.*`` masking keys (``mask``, ``noise``, ``alpha``,
``schedule`` ...), which the Python API's ``MaskingConfig`` mirrors, so it has no
``method.fedmrn`` section of its own.
"""

from __future__ import annotations

from fedmrn_pl.methods.plugin import FederatedMethod, MethodContext, MethodParts


def _build(context: MethodContext) -> MethodParts:
    from fedmrn_pl.federated.strategies import FedMRN

    return MethodParts(FedMRN())


_BINARY = "method.mask=binary"
METHOD = FederatedMethod(
    "fedmrn",
    _build,
    summary="masked random noise with progressive stochastic masking (1 bit or less per parameter)",
    masked=True,
    variants={
        "fedmrn": [_BINARY],
        "fedmrn_signed": ["method.mask=signed"],
        "fedmrn_sm": [_BINARY, "method.schedule=constant"],  # ablation: SM only
        "fedmrn_cosine": [_BINARY, "method.schedule=cosine"],  # PSM, cosine
        "fedmrn_det": [_BINARY, "method.mask_sampling=threshold"],  # ablation: uploaded mask thresholded
        "fedmrn_gauss": [_BINARY, "method.noise=gauss"],
        "fedmrn_bernoulli": [_BINARY, "method.noise=bernoulli"],
        "fedmrn_avgm": [_BINARY, "server.optimizer=avgm"],  # server momentum 0.9, lr 1
        "fedmrn_adam": [_BINARY, "server.optimizer=adam"],  # FedAdam, lr 0.01
        "fedmrn_yogi": [_BINARY, "server.optimizer=yogi"],
        "fedmrn_adagrad": [_BINARY, "server.optimizer=adagrad"],
        "fedmrn_prox": [_BINARY, "train.proximal_mu=0.1"],  # FedProx's term on the masked weights
    },
)
