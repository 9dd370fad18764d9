"""Plain ``nn.Module`` models from the FedMRN paper; nothing federated in here.

Names load on first use, so the config (which types fields with ``ModelName`` and
``InitScheme``) does not pull in torch.
"""

from __future__ import annotations

from fedmrn_pl._lazy import lazy_exports

_EXPORTS = {
    "CNN4": "fedmrn_pl.models.cnn",
    "CNN8": "fedmrn_pl.models.cnn",
    "ConvNet": "fedmrn_pl.models.cnn",
    "DEFAULT_INIT": "fedmrn_pl.models.registry",
    "InitScheme": "fedmrn_pl.models.choices",
    "MLP": "fedmrn_pl.models.mlp",
    "ModelName": "fedmrn_pl.models.choices",
    "PAPER_INIT_STD": "fedmrn_pl.models.initialization",
    "build_model": "fedmrn_pl.models.registry",
    "initialize_weights": "fedmrn_pl.models.initialization",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
