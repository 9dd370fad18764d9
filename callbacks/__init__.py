"""Federated callbacks: hooks called at named moments of a FedMRN run."""

from .base import FederatedCallback
from .mask_packing import DENSE_DTYPES, MaskPacking
from .seed_sync import SeedSync

__all__ = ["DENSE_DTYPES", "FederatedCallback", "MaskPacking", "SeedSync"]
