"""Your own data: FederatedDataset.from_datasets, FederatedDataModule.from_client_datasets and from_datamodule."""

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from fedmrn_pl import FederatedDataModule, FederatedDataset


class Pairs(Dataset):
    """A plain map-style dataset of (token sequence, next token) with no ``targets`` attribute."""

    def __init__(self, labels, sequence_labels=False):
        self.labels = labels
        self.sequence_labels = sequence_labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        label = torch.full((4,), self.labels[index]) if self.sequence_labels else self.labels[index]
        return torch.arange(4), label


def test_from_datasets_infers_labels_and_needs_no_image_fields():
    train = TensorDataset(torch.randn(30, 5), torch.arange(30) % 3)
    data = FederatedDataset.from_datasets(train, Pairs([0, 4, 1]))
    assert data.num_classes == 5 and data.in_channels is None and data.image_size is None
    np.testing.assert_array_equal(data.test_targets, [0, 4, 1])
    module = FederatedDataModule(data, num_clients=3, partition="label_count", partition_kwargs={"labels_per_client": 1})
    assert sum(module.client_num_examples(c) for c in range(3)) == 30
    assert all(len(set(data.train_targets[module.client_indices(c)])) == 1 for c in range(3))


def test_labels_that_are_not_integers_must_be_given():
    with pytest.raises(ValueError, match=r"train\[0\]\[1\] is a tensor of shape \(4,\); pass train_targets="):
        FederatedDataset.from_datasets(Pairs([1, 2], sequence_labels=True), Pairs([1]))
    data = FederatedDataset.from_datasets(Pairs([1, 2], sequence_labels=True), Pairs([1]), train_targets=[1, 2])
    assert data.num_classes == 3
    with pytest.raises(ValueError, match=r"train_targets has shape \(1,\); it needs one label per sample \(2,\)"):
        FederatedDataset.from_datasets(Pairs([1, 2]), Pairs([1]), train_targets=[1])
    with pytest.raises(ValueError, match=r"num_classes=2 but the data has label 2"):
        FederatedDataset.from_datasets(Pairs([1, 2]), Pairs([1]), num_classes=2)


def test_from_client_datasets_keeps_the_natural_split():
    speakers = [Pairs([0] * 5), Pairs([1] * 2), Pairs([2, 0, 1])]
    module = FederatedDataModule.from_client_datasets(speakers, Pairs([0, 1, 2]), seed=3, batch_size=2)
    assert module.num_clients == 3 and module.partition == "natural"
    assert [module.client_num_examples(c) for c in range(3)] == [5, 2, 3]
    labels = sorted(int(y) for _, y in module.client_dataloader(2, server_round=1, batch_size=3) for y in y)
    assert labels == [0, 1, 2]
    assert module.partition_stats["label_counts"][1] == [0, 2, 0]
    with pytest.raises(ValueError, match=r"client_datasets \[1\] are empty"):
        FederatedDataModule.from_client_datasets([Pairs([0]), Pairs([])], Pairs([0]))


class PlainDM(L.LightningDataModule):
    """A plain LightningDataModule: tensors, its own loader settings, a validation loader and no test loader."""

    def setup(self, stage):
        self.train, self.val = TensorDataset(torch.randn(40, 3), torch.arange(40) % 4), Pairs([0, 1, 2])

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=5, shuffle=True, worker_init_fn=print, collate_fn=_pairs_as_dict)

    def val_dataloader(self):
        return DataLoader(self.val, batch_size=2)


def _pairs_as_dict(samples):
    inputs, labels = zip(*samples)
    return {"inputs": torch.stack(inputs), "labels": torch.as_tensor(labels)}


def test_from_datamodule_splits_its_train_set_and_tests_on_its_val_set_without_a_test_loader():
    module = FederatedDataModule.from_datamodule(
        PlainDM(), num_clients=4, partition="label_count", partition_kwargs={"labels_per_client": 1}
    )
    assert module.data.name == "PlainDM" and module.data.num_classes == 4 and module.test_batch_size == 2
    assert module.collate_fn is _pairs_as_dict and module.loader_kwargs == {"worker_init_fn": print}
    assert all(len(set(module.data.train_targets[module.client_indices(c)])) == 1 for c in range(4))
    assert set(next(iter(module.client_dataloader(0, 1, batch_size=3)))) == {"inputs", "labels"}
    assert len(module.data.test) == 3


class NoEvaluation(PlainDM):
    val_dataloader = L.LightningDataModule.val_dataloader


class Unlabelled(PlainDM):
    def setup(self, stage):
        super().setup(stage)
        self.train = Pairs([1, 2, 3, 4], sequence_labels=True)


class Streamed(PlainDM):
    def train_dataloader(self):
        return DataLoader(Stream())


class Stream(IterableDataset):
    def __iter__(self):
        yield from range(3)


@pytest.mark.parametrize(
    ("datamodule", "kwargs", "message"),
    [
        (PlainDM(), {}, r"PlainDM.train_dataloader\(\) returns one loader: pass num_clients="),
        (NoEvaluation(), {"num_clients": 2}, r"NoEvaluation has neither test_dataloader\(\) nor val_dataloader\(\)"),
        (Streamed(), {"num_clients": 2}, r"Streamed.train_dataloader\(\) iterates an IterableDataset"),
        (Unlabelled(), {"num_clients": 2, "partition": "dirichlet", "partition_kwargs": {"beta": 1.0}},
         r"cannot infer integer labels from train.*pass train_targets="),
    ],
)
def test_from_datamodule_refuses_what_it_cannot_split_in_one_line(datamodule, kwargs, message):
    with pytest.raises(ValueError, match=message):
        FederatedDataModule.from_datamodule(datamodule, **kwargs)


def test_an_iid_split_needs_no_labels_and_given_labels_serve_label_partitions():
    iid = FederatedDataModule.from_datamodule(Unlabelled(), num_clients=2)
    assert [iid.client_num_examples(c) for c in range(2)] == [2, 2]
    skewed = FederatedDataModule.from_datamodule(
        Unlabelled(), num_clients=2, partition="label_count", partition_kwargs={"labels_per_client": 1},
        train_targets=[0, 0, 1, 1],
    )
    assert sorted(skewed.client_indices(0).tolist() + skewed.client_indices(1).tolist()) == [0, 1, 2, 3]


class Node:
    """A graph-like item that holds its label as ``.y`` (torch_geometric's ``Data`` does)."""

    def __init__(self, y):
        self.y = y


def test_labels_are_read_from_an_items_y_and_a_missing_one_is_named():
    data = FederatedDataset.from_datasets([Node(torch.tensor([2])), Node(torch.tensor(0))], [Node(1)])
    np.testing.assert_array_equal(data.train_targets, [2, 0])
    with pytest.raises(ValueError, match=r"train\[0\] is a Node whose .y is a tensor of shape \(2,\)"):
        FederatedDataset.from_datasets([Node(torch.tensor([2, 3]))], [Node(1)])
