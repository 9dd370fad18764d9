"""Federated callbacks: hooks called at named moments of a FedMRN run.

Names load on first use, so the config (which types a field with ``WandbMode``)
does not pull in torch.
"""

from __future__ import annotations

from fedmrn_pl._lazy import lazy_exports

_EXPORTS = {
    name: f"{__name__}.{module}"
    for name, module in {
        "CHECKPOINT_NAME": "checkpoint",
        "FederatedCallback": "base",
        "FederatedCheckpoint": "checkpoint",
        "FederatedRun": "base",
        "MaskPacking": "mask_packing",
        "ProgressDisplay": "progress",
        "RoundMetricsLogger": "lightning_logger",
        "RunArtifacts": "run_artifacts",
        "SeedSync": "seed_sync",
        "UpdateTransform": "base",
        "WandbLogger": "wandb_logger",
        "WandbMode": "choices",
        "load_checkpoint": "checkpoint",
        "save_checkpoint": "checkpoint",
    }.items()
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
