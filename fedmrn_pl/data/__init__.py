"""Datasets, client partitioners and the federated data module."""

from fedmrn_pl.data.datamodule import FederatedDataModule
from fedmrn_pl.data.datasets import DatasetName, DatasetNotFoundError, FederatedDataset, load_dataset
from fedmrn_pl.data.partition import (
    PartitionName,
    format_partition_stats,
    partition,
    partition_dirichlet,
    partition_iid,
    partition_label_count,
    partition_label_count_balanced,
    partition_stats,
)

__all__ = [
    "DatasetName",
    "DatasetNotFoundError",
    "FederatedDataModule",
    "FederatedDataset",
    "PartitionName",
    "format_partition_stats",
    "load_dataset",
    "partition",
    "partition_dirichlet",
    "partition_iid",
    "partition_label_count",
    "partition_label_count_balanced",
    "partition_stats",
]
