"""A LightningDataModule that hands each client its own shard of the training set.

The module loads a dataset once, partitions it among ``num_clients`` and then
serves per-client loaders whose shuffling depends only on
``(seed, server_round, client_id)``, so a round's batches are the same whichever
process or device trains the client. Batches need not be tensors: a ``collate_fn``
(graphs, padded sequences ...) and other DataLoader arguments are the user's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Dataset, Subset

from fedmrn_pl.data.custom import (
    check_loader_kwargs,
    concat_clients,
    datamodule_loaders,
    infer_targets,
    loader_settings,
    statistics_targets,
)
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
        collate_fn: Builds a batch from a list of samples, for client and test loaders alike
            (e.g. graphs into one disjoint graph); None: torch's ``default_collate`` (tensors).
        loader_kwargs: Further DataLoader arguments for every loader (``pin_memory``,
            ``worker_init_fn`` ...); batch size, sampler and order are set per client and round.
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
        collate_fn: Callable[[list[Any]], Any] | None = None,
        loader_kwargs: Mapping[str, Any] | None = None,
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
        if collate_fn is not None and not callable(collate_fn):
            raise ValueError(f"collate_fn must be callable (list of samples -> batch), got {type(collate_fn).__name__}")
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
        self.collate_fn = collate_fn
        self.loader_kwargs = check_loader_kwargs(loader_kwargs or {})
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
        collate_fn: Callable[[list[Any]], Any] | None = None,
        loader_kwargs: Mapping[str, Any] | None = None,
        name: str = "custom",
    ) -> FederatedDataModule:
        """Clients whose data is already split (one dataset per speaker, user, device ...): client k is ``client_datasets[k]``.

        Labels only feed the partition statistics here: they are inferred as in
        ``FederatedDataset.from_datasets``, and samples without a readable integer label count as label 0.

        Raises:
            ValueError: no clients, or an empty client.
        """
        train, parts = concat_clients(client_datasets)
        labels = [statistics_targets(dataset, f"client_datasets[{k}]") for k, dataset in enumerate(client_datasets)]
        targets = np.concatenate(labels)
        data = FederatedDataset.from_datasets(
            train, test, num_classes=num_classes, train_targets=targets,
            test_targets=statistics_targets(test, "test"), name=name,
        )  # fmt: skip
        module = cls(
            data,
            num_clients=len(parts),
            seed=seed,
            batch_size=batch_size,
            test_batch_size=test_batch_size,
            num_workers=num_workers,
            collate_fn=collate_fn,
            loader_kwargs=loader_kwargs,
        )
        module.partition, module._parts = "natural", parts  # the clients' own split, kept as it is
        return module

    @classmethod
    def from_datamodule(
        cls,
        datamodule: L.LightningDataModule,
        *,
        num_clients: int | None = None,
        partition: str = "iid",
        partition_kwargs: dict[str, Any] | None = None,
        seed: int = 0,
        num_classes: int | None = None,
        train_targets: Sequence[int] | np.ndarray | None = None,
        batch_size: int = 64,
        test_batch_size: int | None = None,
    ) -> FederatedDataModule:
        """A plain ``LightningDataModule``'s data, federated: its training set split among clients, its
        ``test_dataloader()`` (else ``val_dataloader()``) the server's test set.

        ``prepare_data`` and ``setup`` are called here. The loaders' own way of building batches is kept
        (``collate_fn``, workers, ``pin_memory`` ...); batch size and order become the federation's. A
        ``train_dataloader()`` that returns one loader per client (a list or a dict) is the clients' own
        split and is kept as it is; a single loader's dataset is partitioned.

        Args:
            datamodule: any LightningDataModule whose loaders read map-style datasets.
            num_clients: clients to split a single training loader's dataset among; with per-client
                loaders, None or their number.
            partition: a ``PartitionName``; label-based ones need readable labels or ``train_targets``.
            partition_kwargs: the partitioner's settings (see ``FederatedDataModule``).
            seed: run seed of the partition and the shuffling.
            num_classes: default: the largest label + 1.
            train_targets: one int per training sample, when the items do not say their label.
            batch_size: default client batch size (``FederatedTrainer(batch_size=)`` sets it per run).
            test_batch_size: default: the batch size of the module's own test loader.

        Raises:
            ValueError: no evaluation loader, data that cannot be split (see ``datamodule_loaders``),
                a missing or mismatched ``num_clients``, or labels a label-based partition cannot read.
        """
        name = type(datamodule).__name__
        train_loaders, test_loader = datamodule_loaders(datamodule)
        num_workers, collate_fn, loader_kwargs = loader_settings(train_loaders[0])
        settings: dict[str, Any] = dict(
            seed=seed, batch_size=batch_size, test_batch_size=test_batch_size or test_loader.batch_size or 256,
            num_workers=num_workers, collate_fn=collate_fn, loader_kwargs=loader_kwargs,
        )  # fmt: skip
        if len(train_loaders) > 1:  # the module's own per-client split
            if num_clients not in (None, len(train_loaders)):
                raise ValueError(
                    f"{name}.train_dataloader() returns {len(train_loaders)} client loaders but "
                    f"num_clients={num_clients}; leave num_clients out to keep its split"
                )
            return cls.from_client_datasets(
                [loader.dataset for loader in train_loaders], test_loader.dataset, num_classes=num_classes,
                name=name, **settings,
            )  # fmt: skip
        if num_clients is None:
            raise ValueError(
                f"{name}.train_dataloader() returns one loader: pass num_clients= to split its dataset among clients"
            )
        train = train_loaders[0].dataset
        if train_targets is None:
            label_based = PartitionName.parse(partition, "partition").value != "iid"
            train_targets = infer_targets(train, "train") if label_based else statistics_targets(train, "train")
        data = FederatedDataset.from_datasets(
            train, test_loader.dataset, num_classes=num_classes, train_targets=train_targets,
            test_targets=statistics_targets(test_loader.dataset, "test"), name=name,
        )  # fmt: skip
        return cls(data, num_clients=num_clients, partition=partition, partition_kwargs=partition_kwargs, **settings)

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
            # A trailing batch of one sample breaks BatchNorm in training mode; drop it
            # (a different sample each epoch, since the order is reshuffled).
            drop_last=len(dataset) % batch_size == 1 and len(dataset) > 1,
            **self._loader_args(),
        )

    def test_dataloader(self) -> DataLoader:
        """The global test set, in order, for server-side evaluation."""
        return DataLoader(self.data.test, batch_size=self.test_batch_size, shuffle=False, **self._loader_args())

    def _loader_args(self) -> dict[str, Any]:
        """How every loader builds batches: the user's collate_fn, workers and further DataLoader arguments."""
        args = {"num_workers": self.num_workers, **self.loader_kwargs}
        if self.collate_fn is not None:
            args["collate_fn"] = self.collate_fn
        return args

    def _client_parts(self) -> list[np.ndarray]:
        self.setup()
        assert self._parts is not None
        return self._parts
