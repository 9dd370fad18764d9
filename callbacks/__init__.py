"""Federated callbacks: hooks called at named moments of a FedMRN run."""

from .base import FederatedCallback, FederatedRun
from .checkpoint import CHECKPOINT_NAME, FederatedCheckpoint, load_checkpoint, save_checkpoint
from .lightning_logger import RoundMetricsLogger
from .mask_packing import MaskPacking
from .progress import ProgressDisplay
from .run_artifacts import RunArtifacts
from .seed_sync import SeedSync
from .wandb_logger import WandbLogger, WandbMode

__all__ = [
    "CHECKPOINT_NAME",
    "FederatedCallback",
    "FederatedCheckpoint",
    "FederatedRun",
    "MaskPacking",
    "ProgressDisplay",
    "RoundMetricsLogger",
    "RunArtifacts",
    "SeedSync",
    "WandbLogger",
    "WandbMode",
    "load_checkpoint",
    "save_checkpoint",
]
