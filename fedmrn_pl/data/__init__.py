"""Datasets, client partitioners and the federated data module."""

from fedmrn_pl.data.datamodule import FederatedDataModule
from fedmrn_pl.data.datasets import DATASET_NAMES, DatasetNotFoundError, FederatedDataset, load_dataset
from fedmrn_pl.data.partition import (
    PARTITION_NAMES,
    format_partition_stats,
    partition,
    partition_dirichlet,
    partition_iid,
    partition_label_count,
    partition_stats,
)

__all__ = [
    "DATASET_NAMES",
    "DatasetNotFoundError",
    "FederatedDataModule",
    "FederatedDataset",
    "PARTITION_NAMES",
    "format_partition_stats",
    "load_dataset",
    "partition",
    "partition_dirichlet",
    "partition_iid",
    "partition_label_count",
    "partition_stats",
]
