"""Datasets, client partitioners and the federated data module.

Names load on first use, so the config (which types fields with ``DatasetName`` and
``PartitionName``) does not pull in torch or Lightning.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from fedmrn_pl._lazy import lazy_exports

_EXPORTS = {
    "DatasetName": "fedmrn_pl.data.choices",
    "DatasetNotFoundError": "fedmrn_pl.data.datasets",
    "FederatedDataModule": "fedmrn_pl.data.datamodule",
    "FederatedDataset": "fedmrn_pl.data.datasets",
    "PartitionName": "fedmrn_pl.data.choices",
    "format_partition_stats": "fedmrn_pl.data.partition",
    "load_dataset": "fedmrn_pl.data.datasets",
    "partition": "fedmrn_pl.data.partition",
    "partition_dirichlet": "fedmrn_pl.data.partition",
    "partition_iid": "fedmrn_pl.data.partition",
    "partition_label_count": "fedmrn_pl.data.partition",
    "partition_label_count_balanced": "fedmrn_pl.data.partition",
    "partition_stats": "fedmrn_pl.data.partition",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


class _Package(ModuleType):
    """Keeps ``fedmrn_pl.data.partition`` the function: loading the submodule of that name must not replace it."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "partition" and isinstance(value, ModuleType):  # the import system naming the submodule
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
