"""Your own data: integer labels read from any torch ``Dataset``, and per-client datasets joined into one.

Partitioners and partition statistics need one integer label per training sample;
they are read from the dataset when it says them (``.targets``, a ``TensorDataset``'s
last tensor) or item by item from ``(input, label)`` pairs, and can always be given.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, TensorDataset

__all__ = ["concat_clients", "infer_targets"]


def infer_targets(dataset: Dataset, label: str = "dataset") -> np.ndarray:
    """One int64 label per sample of ``dataset`` (an ``(input, label)`` dataset).

    Raises:
        ValueError: the labels are not integers (e.g. whole target sequences); ``label``
            names the dataset in the message.
    """
    if isinstance(dataset, TensorDataset) and dataset.tensors[-1].dim() == 1:
        values = dataset.tensors[-1]
    elif getattr(dataset, "targets", None) is not None:
        values = dataset.targets  # torchvision datasets
    else:
        values = [_item_label(dataset, index, label) for index in range(len(dataset))]  # type: ignore[arg-type]
    targets = np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values)
    if targets.ndim != 1 or not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(_not_labels(label, f"labels of shape {targets.shape} and dtype {targets.dtype}"))
    return targets.astype(np.int64)


def _item_label(dataset: Dataset, index: int, label: str) -> int:
    item = dataset[index]
    value = item[1] if isinstance(item, (tuple, list)) and len(item) >= 2 else None
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_floating_point():
        return int(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    found = f"a tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
    raise ValueError(_not_labels(label, f"{label}[{index}][1] is {found}"))


def _not_labels(label: str, found: str) -> str:
    return (
        f"cannot infer integer labels from {label}: {found}; pass {label}_targets= (one int per sample, "
        "used to partition by label and in partition statistics; any grouping works, e.g. the first target token)"
    )


def concat_clients(clients: Sequence[Dataset]) -> tuple[ConcatDataset, list[np.ndarray]]:
    """One training set of the clients' datasets, and each client's index range in it.

    Raises:
        ValueError: no clients, or an empty client dataset.
    """
    if len(clients) == 0:
        raise ValueError("client_datasets is empty; give one Dataset per client")
    sizes = [len(dataset) for dataset in clients]  # type: ignore[arg-type]
    empty = [index for index, size in enumerate(sizes) if size == 0]
    if empty:
        raise ValueError(f"client_datasets {empty} are empty; every client needs at least one sample")
    ends = np.cumsum(sizes)
    return ConcatDataset(clients), [np.arange(end - size, end) for size, end in zip(sizes, ends)]
