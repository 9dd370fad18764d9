"""Federated callbacks: hooks called at named moments of a FedMRN run."""

from .base import FederatedCallback
from .checkpoint import CHECKPOINT_NAME, FederatedCheckpoint, load_checkpoint, save_checkpoint
from .mask_packing import DENSE_DTYPES, MaskPacking
from .progress import ProgressDisplay
from .seed_sync import SeedSync
from .wandb_logger import WandbLogger

__all__ = [
    "CHECKPOINT_NAME",
    "DENSE_DTYPES",
    "FederatedCallback",
    "FederatedCheckpoint",
    "MaskPacking",
    "ProgressDisplay",
    "SeedSync",
    "WandbLogger",
    "load_checkpoint",
    "save_checkpoint",
]
