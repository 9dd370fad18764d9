"""FederatedDataModule: per-client shards, reproducible per-round shuffling, the global test loader."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest
import torch

from fedmrn_pl.data import FederatedDataModule, FederatedDataset, load_dataset, partition


@pytest.fixture(scope="module")
def digits() -> FederatedDataset:
    return load_dataset("digits", seed=0)


def _module(digits, **kwargs: Any) -> FederatedDataModule:
    dm = FederatedDataModule(digits, seed=7, **{"num_clients": 5, "batch_size": 16, **kwargs})
    dm.setup()
    return dm


def _epoch(loader: Iterable) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*loader)
    return torch.cat(images), torch.cat(labels)


def test_client_shards_match_the_partition_and_cover_the_train_set(digits: FederatedDataset) -> None:
    dm = _module(digits, partition="dirichlet", partition_kwargs={"beta": 0.5})
    expected = partition("dirichlet", digits.train_targets, 5, seed=7, beta=0.5)
    for client_id, indices in enumerate(expected):
        np.testing.assert_array_equal(dm.client_indices(client_id), indices)
        assert dm.client_num_examples(client_id) == len(indices)
    assert sum(dm.client_num_examples(c) for c in range(dm.num_clients)) == len(digits.train)
    assert dm.partition_stats["sizes"] == [len(p) for p in expected]


def test_client_loader_yields_exactly_the_clients_samples(digits: FederatedDataset) -> None:
    dm = _module(digits)
    images, labels = _epoch(dm.client_dataloader(2, server_round=1))
    assert len(labels) == dm.client_num_examples(2)
    assert sorted(labels.tolist()) == sorted(digits.train_targets[dm.client_indices(2)].tolist())
    assert images.shape[1:] == (1, 8, 8)


def test_client_loader_order_is_reproducible_per_round_and_client_despite_global_rng(
    digits: FederatedDataset,
) -> None:
    dm = _module(digits)
    torch.manual_seed(0)
    first = _epoch(dm.client_dataloader(1, server_round=3))
    torch.manual_seed(1)
    again = _epoch(_module(digits).client_dataloader(1, server_round=3))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


def test_client_loader_order_changes_across_rounds(digits: FederatedDataset) -> None:
    dm = _module(digits)
    round_1, round_2 = _epoch(dm.client_dataloader(1, 1))[0], _epoch(dm.client_dataloader(1, 2))[0]
    assert not torch.equal(round_1, round_2)
    torch.testing.assert_close(round_1.sum(0), round_2.sum(0))  # same samples, new order


def test_client_loader_batch_size_defaults_and_overrides(digits: FederatedDataset) -> None:
    dm = _module(digits)
    assert next(iter(dm.client_dataloader(0, 1)))[0].shape[0] == 16
    assert next(iter(dm.client_dataloader(0, 1, batch_size=4)))[0].shape[0] == 4


def test_test_loader_covers_the_test_set_in_order(digits: FederatedDataset) -> None:
    dm = _module(digits, test_batch_size=100)
    images, labels = _epoch(dm.test_dataloader())
    assert len(labels) == len(digits.test)
    np.testing.assert_array_equal(labels.numpy(), digits.test_targets)
    assert torch.equal(images, digits.test.tensors[0])


def test_module_loads_a_dataset_by_name_on_setup() -> None:
    dm = FederatedDataModule(
        "digits", num_clients=4, partition="label_count", partition_kwargs={"labels_per_client": 3}
    )
    dm.setup()
    assert dm.data.name == "digits" and dm.num_clients == 4
    assert [len(np.unique(dm.data.train_targets[dm.client_indices(c)])) for c in range(4)] == [3] * 4


@pytest.mark.parametrize("client_id", [-1, 5])
def test_out_of_range_client_id_raises_with_the_valid_range(digits: FederatedDataset, client_id: int) -> None:
    with pytest.raises(ValueError, match=r"client_id must be in \[0, 4\]"):
        _module(digits).client_dataloader(client_id, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_clients": 0}, "num_clients must be >= 1"),
        ({"partition": "shards"}, r"choose one of \['dirichlet', 'iid', 'label_count', 'label_count_balanced'\]"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
    ],
)
def test_invalid_settings_are_rejected_at_construction(digits: FederatedDataset, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FederatedDataModule(digits, **kwargs)


def test_collate_fn_and_loader_kwargs_reach_the_client_and_test_loaders(digits: FederatedDataset) -> None:
    def as_dict(samples: list) -> dict[str, torch.Tensor]:
        images, labels = zip(*samples)
        return {"images": torch.stack(images), "labels": torch.stack(labels)}

    dm = _module(digits, collate_fn=as_dict, loader_kwargs={"worker_init_fn": print})
    for loader in (dm.client_dataloader(0, 1), dm.test_dataloader()):
        batch = next(iter(loader))
        assert set(batch) == {"images", "labels"} and loader.worker_init_fn is print
    assert next(iter(dm.client_dataloader(0, 1)))["labels"].shape == (16,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"loader_kwargs": {"shuffle": False}}, r"loader_kwargs\['shuffle'\] is set per client and round"),
        ({"loader_kwargs": {"collate_fn": list}}, r"pass collate_fn= to FederatedDataModule itself"),
        ({"loader_kwargs": {"pin_memry": True}}, r"'pin_memry'\] is not a DataLoader argument; allowed: .*'pin_memory'"),
        ({"collate_fn": "stack"}, r"collate_fn must be callable"),
    ],
)
def test_loader_arguments_the_module_sets_or_dataloader_lacks_are_refused(
    digits: FederatedDataset, kwargs: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        FederatedDataModule(digits, **kwargs)
