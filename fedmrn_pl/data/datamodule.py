"""A LightningDataModule that hands each client its own shard of the training set.

The module loads a dataset once, partitions it among ``num_clients`` and then
serves per-client loaders whose shuffling depends only on
``(seed, server_round, client_id)``, so a round's batches are the same whichever
process or device trains the client.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Dataset, Subset

from fedmrn_pl.data.datasets import FederatedDataset, load_dataset
from fedmrn_pl.data.partition import PartitionName, partition_stats
from fedmrn_pl.data.partition import partition as split_among_clients
from fedmrn_pl.seeding import derive_seed, make_generator

__all__ = ["FederatedDataModule"]


class FederatedDataModule(L.LightningDataModule):
    """Loads a dataset, splits it among clients and builds their data loaders.

    Args:
        dataset: A ``DatasetName`` or an already loaded :class:`FederatedDataset`.
        num_clients: Number of clients to partition the training set among.
        partition: A ``PartitionName`` (``iid``, ``dirichlet``, ``label_count``).
        partition_kwargs: The partitioner's settings, e.g. ``{"beta": 0.5}`` for ``dirichlet``
            or ``{"labels_per_client": 2}`` for ``label_count``.
        seed: Run seed; the split, the partition and the shuffling all derive from it.
        root: Folder with the torchvision datasets' files.
        download: Let torchvision download missing files.
        verify_checksums: Check official MD5s of SVHN/CIFAR files.
        augment: CIFAR-10/100 training augmentation (random crop with padding 4, flip); ignored elsewhere.
        batch_size: Default client batch size (the paper uses 64).
        test_batch_size: Batch size of the global test loader.
        num_workers: Worker processes per loader; 0 loads in the calling process.
    """

    def __init__(
        self,
        dataset: str | FederatedDataset = "mnist5k",
        *,
        num_clients: int = 10,
        partition: str = "iid",
        partition_kwargs: dict[str, Any] | None = None,
        seed: int = 0,
        root: str = "data",
        download: bool = False,
        verify_checksums: bool = True,
        augment: bool = True,
        batch_size: int = 64,
        test_batch_size: int = 256,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if num_clients < 1:
            raise ValueError(f"num_clients must be >= 1, got {num_clients}")
        PartitionName.parse(partition, "partition")
        for label, value in (("batch_size", batch_size), ("test_batch_size", test_batch_size)):
            if value < 1:
                raise ValueError(f"{label} must be >= 1, got {value}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.dataset = dataset
        self.num_clients = num_clients
        self.partition = partition
        self.partition_kwargs = dict(partition_kwargs or {})
        self.seed = seed
        self.root = root
        self.download = download
        self.verify_checksums = verify_checksums
        self.augment = augment
        self.batch_size = batch_size
        self.test_batch_size = test_batch_size
        self.num_workers = num_workers
        self._data: FederatedDataset | None = dataset if isinstance(dataset, FederatedDataset) else None
        self._parts: list[np.ndarray] | None = None

    @classmethod
    def from_client_datasets(
        cls,
        client_datasets: Sequence[Dataset],
        test: Dataset,
        *,
        num_classes: int | None = None,
        seed: int = 0,
        batch_size: int = 64,
        test_batch_size: int = 256,
        num_workers: int = 0,
        name: str = "custom",
    ) -> FederatedDataModule:
        """Clients whose data is already split (one dataset per speaker, user, device ...): client k is ``client_datasets[k]``.

        Labels are inferred as in ``FederatedDataset.from_datasets`` (for the partition statistics).

        Raises:
            ValueError: no clients, an empty client, or labels that cannot be inferred.
        """
        from fedmrn_pl.data.custom import concat_clients, infer_targets

        train, parts = concat_clients(client_datasets)
        targets = np.concatenate([infer_targets(d, f"client_datasets[{k}]") for k, d in enumerate(client_datasets)])
        data = FederatedDataset.from_datasets(train, test, num_classes=num_classes, train_targets=targets, name=name)
        module = cls(
            data,
            num_clients=len(parts),
            seed=seed,
            batch_size=batch_size,
            test_batch_size=test_batch_size,
            num_workers=num_workers,
        )
        module.partition, module._parts = "natural", parts  # the clients' own split, kept as it is
        return module

    def prepare_data(self) -> None:
        """Download the files once per machine, when ``download`` is on."""
        if self.download and isinstance(self.dataset, str):
            load_dataset(self.dataset, self.root, download=True, seed=self.seed, verify_checksums=self.verify_checksums)

    def setup(self, stage: str | None = None) -> None:
        """Load the dataset (if given by name) and partition it; later calls do nothing."""
        if self._parts is not None:
            return
        if self._data is None:
            assert isinstance(self.dataset, str)
            self._data = load_dataset(
                self.dataset, self.root, self.download, seed=self.seed, verify_checksums=self.verify_checksums,
                augment=self.augment,
            )
        self._parts = split_among_clients(
            self.partition, self._data.train_targets, self.num_clients, self.seed, **self.partition_kwargs
        )

    @property
    def data(self) -> FederatedDataset:
        """The loaded dataset and its metadata (sets the module up on first use)."""
        self.setup()
        assert self._data is not None
        return self._data

    @property
    def partition_stats(self) -> dict[str, Any]:
        """Sizes and label histograms of the clients' shards (see ``partition_stats``)."""
        return partition_stats(self.data.train_targets, self._client_parts(), self.data.num_classes)

    def client_indices(self, client_id: int) -> np.ndarray:
        """Indices into the training set that belong to ``client_id``."""
        parts = self._client_parts()
        if not 0 <= client_id < len(parts):
            raise ValueError(f"client_id must be in [0, {len(parts) - 1}], got {client_id}")
        return parts[client_id]

    def client_num_examples(self, client_id: int) -> int:
        """Number of training samples of ``client_id`` (the weight N_k in aggregation)."""
        return len(self.client_indices(client_id))

    def client_dataset(self, client_id: int) -> Subset:
        """The training samples of ``client_id`` as a ``Subset``."""
        return Subset(self.data.train, self.client_indices(client_id).tolist())

    def client_dataloader(self, client_id: int, server_round: int, batch_size: int | None = None) -> DataLoader:
        """A shuffled loader over ``client_id``'s shard for ``server_round``.

        The order comes from a generator seeded with
        ``derive_seed(seed, server_round, client_id, "shuffle")``: reproducible, different
        across rounds and clients, and independent of global RNG state.
        """
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        dataset = self.client_dataset(client_id)
        batch_size = batch_size or self.batch_size
        generator = make_generator(derive_seed(self.seed, server_round, client_id, "shuffle"))
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=True,
            generator=generator,
            num_workers=self.num_workers,
            # A trailing batch of one sample breaks BatchNorm in training mode; drop it
            # (a different sample each epoch, since the order is reshuffled).
            drop_last=len(dataset) % batch_size == 1 and len(dataset) > 1,
        )

    def test_dataloader(self) -> DataLoader:
        """The global test set, in order, for server-side evaluation."""
        return DataLoader(self.data.test, batch_size=self.test_batch_size, shuffle=False, num_workers=self.num_workers)

    def _client_parts(self) -> list[np.ndarray]:
        self.setup()
        assert self._parts is not None
        return self._parts
