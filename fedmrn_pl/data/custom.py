"""Your own data: integer labels read from any torch ``Dataset``, per-client datasets joined into one,
and the datasets and loader settings of a plain ``LightningDataModule``.

Partitioners and partition statistics need one integer label per training sample;
they are read from the dataset when it says them (``.targets``, a ``TensorDataset``'s
last tensor) or item by item from ``(input, label)`` pairs or a graph's ``.y``, and can
always be given.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch.utils.data import (
    ConcatDataset,
    DataLoader,
    Dataset,
    IterableDataset,
    TensorDataset,
    default_collate,
    default_convert,
)

__all__ = [
    "LOADER_OWN_ARGS",
    "check_loader_kwargs",
    "concat_clients",
    "datamodule_loaders",
    "infer_targets",
    "loader_settings",
    "statistics_targets",
]

log = logging.getLogger(__name__)

# DataLoader arguments the federated data module sets itself, per client and round.
LOADER_OWN_ARGS = ("dataset", "batch_size", "shuffle", "sampler", "batch_sampler", "generator", "drop_last")
_LOADER_DEFAULTS = {
    name: param.default for name, param in inspect.signature(DataLoader.__init__).parameters.items() if name != "self"
}


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
    pair = isinstance(item, (tuple, list))
    if pair:
        value = item[1] if len(item) >= 2 else None
    else:
        value = getattr(item, "y", None)  # a graph's label, where torch_geometric's Data holds it
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.reshape(())
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_floating_point():
        return int(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    found = f"a tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
    where = f"{label}[{index}][1]" if pair else f"{label}[{index}] is a {type(item).__name__} whose .y"
    raise ValueError(_not_labels(label, f"{where} is {found}"))


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


def statistics_targets(dataset: Dataset, label: str) -> np.ndarray:
    """Labels that are only reported, never used to split: inferred, else label 0 for every sample (logged)."""
    try:
        return infer_targets(dataset, label)
    except ValueError:
        log.info("%s has no readable integer labels; label statistics count its samples as label 0", label)
        return np.zeros(len(dataset), dtype=np.int64)  # type: ignore[arg-type]


def check_loader_kwargs(loader_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The user's extra DataLoader arguments, refused when unknown or set by the data module itself.

    Raises:
        ValueError: one line naming the key and what to use instead.
    """
    for key in loader_kwargs:
        if key in LOADER_OWN_ARGS:
            raise ValueError(
                f"loader_kwargs[{key!r}] is set per client and round by FederatedDataModule; "
                "batch sizes are FederatedTrainer(batch_size=) and test_batch_size="
            )
        if key in ("collate_fn", "num_workers"):
            raise ValueError(f"pass {key}= to FederatedDataModule itself, not in loader_kwargs")
        if key not in _LOADER_DEFAULTS:
            allowed = sorted(set(_LOADER_DEFAULTS) - set(LOADER_OWN_ARGS) - {"collate_fn", "num_workers"})
            raise ValueError(f"loader_kwargs[{key!r}] is not a DataLoader argument; allowed: {allowed}")
    return dict(loader_kwargs)


def loader_settings(loader: DataLoader) -> tuple[int, Callable[[list[Any]], Any] | None, dict[str, Any]]:
    """``(num_workers, collate_fn, loader_kwargs)`` of the user's ``loader``: how it builds batches, not which.

    Batch size, sampler and order are the federation's (per client and round); ``collate_fn``
    is None for torch's default, and only settings that differ from DataLoader's defaults are kept.
    """
    collate = loader.collate_fn
    collate_fn = None if collate in (default_collate, default_convert) else collate
    kwargs = {}
    for name, default in _LOADER_DEFAULTS.items():
        if name in LOADER_OWN_ARGS or name in ("collate_fn", "num_workers") or not hasattr(loader, name):
            continue
        value = getattr(loader, name)
        if not (value is default or value == default):
            kwargs[name] = value
    if loader.num_workers == 0:
        kwargs.pop("prefetch_factor", None)  # DataLoader refuses one without workers
    return loader.num_workers, collate_fn, kwargs


def datamodule_loaders(datamodule: L.LightningDataModule) -> tuple[list[DataLoader], DataLoader]:
    """The training loader(s) and the test loader (else the validation loader) of a set-up ``datamodule``.

    ``train_dataloader()`` may return one loader, or one per client (a list or a dict).

    Raises:
        ValueError: no test or validation loader, several evaluation loaders, or data that cannot be
            split (an ``IterableDataset``, a loader that is not a ``DataLoader``).
    """
    name = type(datamodule).__name__
    datamodule.prepare_data()
    for stage in ("fit", "test"):
        datamodule.setup(stage)
    returned = datamodule.train_dataloader()
    train = list(returned.values()) if isinstance(returned, Mapping) else returned
    train = list(train) if isinstance(train, (list, tuple)) else [train]
    if not train:
        raise ValueError(f"{name}.train_dataloader() returned no loader")
    hooks = [h for h in ("test_dataloader", "val_dataloader") if is_overridden(h, datamodule, L.LightningDataModule)]
    if not hooks:
        raise ValueError(f"{name} has neither test_dataloader() nor val_dataloader(); the server evaluates on one")
    hook = hooks[0]
    test = getattr(datamodule, hook)()
    if isinstance(test, (list, tuple, Mapping)):
        if len(test) != 1:
            raise ValueError(f"{name}.{hook}() returned {len(test)} loaders; the server evaluates on one")
        test = next(iter(test.values())) if isinstance(test, Mapping) else test[0]
    for where, loader in [*((f"{name}.train_dataloader()", t) for t in train), (f"{name}.{hook}()", test)]:
        if not isinstance(loader, DataLoader):
            raise ValueError(f"{where} returned a {type(loader).__name__}; give a torch DataLoader")
        if isinstance(loader.dataset, IterableDataset):
            raise ValueError(
                f"{where} iterates an IterableDataset, which cannot be split among clients or counted; "
                "give it a map-style Dataset, or give FederatedTrainer your own ClientData"
            )
    return train, test
