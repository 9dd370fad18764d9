"""Your own data: FederatedDataset.from_datasets and FederatedDataModule.from_client_datasets."""

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

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
