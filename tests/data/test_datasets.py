"""Dataset loading: the embedded real sets, and torchvision sets from small files in the official format."""

from __future__ import annotations

import pickle
import struct
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from fedmrn_pl.data import DatasetName, DatasetNotFoundError, load_dataset

NUM_SAMPLES = 6  # per split in the hand-made torchvision files


# --------------------------------------------------- writers of the on-disk formats


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An uncompressed big-endian IDX file (magic 0x08 = ubyte, then the dims)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


class _Py2Str(bytes):
    """A Python 2 ``str``: the official CIFAR pickles use these as dict keys."""


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes ``_Py2Str`` as BINSTRING, as Python 2 did, so loading decodes it per ``encoding``."""

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def _save_py2_str(self, obj: bytes) -> None:
        self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + bytes(obj))
        self.memoize(obj)

    dispatch[_Py2Str] = _save_py2_str


def _write_cifar_pickle(path: Path, entry: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump({_Py2Str(key.encode()): value for key, value in entry.items()})


def _images(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def _normalised(images_nchw: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    x = torch.from_numpy(images_nchw.astype(np.float32) / 255.0)
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def _write_fmnist(root: Path, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    raw = root / "FashionMNIST" / "raw"
    written = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = _images(rng, (NUM_SAMPLES, 28, 28)), rng.integers(0, 10, NUM_SAMPLES)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        written[split] = (images[:, None], labels)
    return written


def _write_svhn(root: Path, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    written = {}
    for split in ("train", "test"):
        images, labels = _images(rng, (NUM_SAMPLES, 3, 32, 32)), np.arange(NUM_SAMPLES) % 10
        labels[0] = 0  # stored as 10 in the .mat file
        stored_y = np.where(labels == 0, 10, labels).astype(np.uint8)[:, None]  # (N, 1)
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": images.transpose(2, 3, 1, 0), "y": stored_y})
        written[split] = (images, labels)
    return written


def _write_cifar(root: Path, rng: np.random.Generator, *, hundred: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    label_key = "fine_labels" if hundred else "labels"
    train_files = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    test_files = ["test"] if hundred else ["test_batch"]
    written = {}
    for split, files in (("train", train_files), ("test", test_files)):
        chunks = []
        for filename in files:
            images = _images(rng, (NUM_SAMPLES, 3, 32, 32))
            labels = rng.integers(0, 100 if hundred else 10, NUM_SAMPLES)
            entry = {"data": images.reshape(NUM_SAMPLES, 3072), label_key: labels.tolist()}  # rows are R, G, B planes
            _write_cifar_pickle(folder / filename, entry)
            chunks.append((images, labels))
        written[split] = (np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks]))
    meta_key = "fine_label_names" if hundred else "label_names"
    _write_cifar_pickle(folder / ("meta" if hundred else "batches.meta"), {meta_key: [f"c{i}" for i in range(10)]})
    return written


WRITERS = {  # name: (writer, mean, std, channels, classes)
    "fmnist": (_write_fmnist, (0.2860,), (0.3530,), 1, 10),
    "svhn": (_write_svhn, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), 3, 10),
    "cifar10": (partial(_write_cifar, hundred=False), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 3, 10),
    "cifar100": (partial(_write_cifar, hundred=True), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 3, 100),
}

EXPECTED_FILES = {
    "fmnist": [
        "FashionMNIST/raw/train-images-idx3-ubyte",
        "FashionMNIST/raw/train-labels-idx1-ubyte",
        "FashionMNIST/raw/t10k-images-idx3-ubyte",
        "FashionMNIST/raw/t10k-labels-idx1-ubyte",
    ],
    "svhn": ["train_32x32.mat", "test_32x32.mat"],
    "cifar10": [f"cifar-10-batches-py/{f}" for f in ("data_batch_1", "data_batch_5", "test_batch", "batches.meta")],
    "cifar100": ["cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"],
}


# ------------------------------------------------------------------- embedded sets


@pytest.mark.parametrize(
    ("name", "train_size", "test_size", "image_size"), [("mnist5k", 4000, 1000, 28), ("digits", 1437, 360, 8)]
)
def test_embedded_datasets_load_real_normalised_images(
    name: str, train_size: int, test_size: int, image_size: int
) -> None:
    data = load_dataset(name)
    assert (len(data.train), len(data.test)) == (train_size, test_size)
    assert (data.num_classes, data.in_channels, data.image_size) == (10, 1, image_size)
    image, label = data.train[0]
    assert image.shape == (1, image_size, image_size) and image.dtype == torch.float32
    assert label.dtype == torch.int64
    train_images = data.train.tensors[0]
    assert abs(train_images.mean().item()) < 0.05 and train_images.std().item() == pytest.approx(1.0, abs=0.05)
    assert train_images.std(dim=(1, 2, 3)).min() > 0.1  # real digits, not blank images


@pytest.mark.parametrize("name", ["mnist5k", "digits"])
def test_embedded_split_is_stratified_covers_all_classes_and_matches_targets(name: str) -> None:
    data = load_dataset(name)
    assert data.train_targets.dtype == np.int64
    np.testing.assert_array_equal(data.train_targets, data.train.tensors[1].numpy())
    np.testing.assert_array_equal(data.test_targets, data.test.tensors[1].numpy())
    train_share = np.bincount(data.train_targets, minlength=10) / len(data.train_targets)
    test_share = np.bincount(data.test_targets, minlength=10) / len(data.test_targets)
    assert (train_share > 0).all() and (test_share > 0).all()
    np.testing.assert_allclose(train_share, test_share, atol=0.01)


def test_embedded_split_is_deterministic_for_a_seed_and_changes_with_it() -> None:
    first, again, other = load_dataset("digits", seed=1), load_dataset("digits", seed=1), load_dataset("digits", seed=2)
    assert torch.equal(first.train.tensors[0], again.train.tensors[0])
    np.testing.assert_array_equal(first.test_targets, again.test_targets)
    assert not torch.equal(first.train.tensors[0], other.train.tensors[0])


def test_every_dataset_name_has_a_loader_and_every_loader_a_name() -> None:
    from fedmrn_pl.data.datasets import _LOADERS

    assert sorted(_LOADERS) == DatasetName.values()  # data/choices.py (torch-free) and the registry agree


def test_dataset_names_and_unknown_name_error() -> None:
    assert DatasetName.values() == ["cifar10", "cifar100", "digits", "fmnist", "mnist5k", "svhn"]
    with pytest.raises(ValueError, match=r"choose one of \['cifar10', 'cifar100', 'digits', 'fmnist', 'mnist5k', 'svhn'\]"):
        load_dataset("imagenet")


# ---------------------------------------------------------------- torchvision sets


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_torchvision_datasets_load_files_written_in_the_official_format(name: str, tmp_path: Path) -> None:
    writer, mean, std, channels, num_classes = WRITERS[name]
    written = writer(tmp_path, np.random.default_rng(0))
    data = load_dataset(name, root=str(tmp_path), verify_checksums=False, augment=False)
    image_size = 28 if channels == 1 else 32
    assert (data.num_classes, data.in_channels, data.image_size) == (num_classes, channels, image_size)
    for split, dataset, targets in (("train", data.train, data.train_targets), ("test", data.test, data.test_targets)):
        images, labels = written[split]
        assert len(dataset) == len(labels)
        np.testing.assert_array_equal(targets, labels)
        expected = _normalised(images, mean, std)
        for i in (0, len(labels) - 1):
            image, label = dataset[i]
            assert int(label) == labels[i]
            torch.testing.assert_close(image, expected[i], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_training_images_are_augmented_and_test_images_are_not(name: str, tmp_path: Path) -> None:
    writer, mean, std, _, _ = WRITERS[name]
    written = writer(tmp_path, np.random.default_rng(0))
    data = load_dataset(name, root=str(tmp_path), verify_checksums=False)  # augment defaults to on
    plain = _normalised(written["train"][0], mean, std)
    torch.manual_seed(0)
    draws = [data.train[0][0] for _ in range(8)]
    assert all(d.shape == plain[0].shape for d in draws)
    assert any(not torch.allclose(d, plain[0], atol=1e-5) for d in draws)  # cropped and/or flipped
    assert any(not torch.equal(draws[0], d) for d in draws[1:])  # a fresh draw each read
    pixels = torch.from_numpy(written["train"][0][0].astype(np.float32) / 255.0)  # (3, 32, 32)
    windows = torch.nn.functional.pad(pixels, (4, 4, 4, 4)).unfold(1, 32, 1).unfold(2, 32, 1)  # (3, 9, 9, 32, 32)
    windows = windows.permute(1, 2, 0, 3, 4).reshape(-1, 3, 32, 32)
    m, sd = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
    for draw in draws:  # each is a 32x32 window of the zero-padded image, maybe flipped
        raw = draw * sd + m
        assert any(min((w - raw).abs().max(), (w.flip(-1) - raw).abs().max()) < 1e-5 for w in windows)
    expected_test = _normalised(written["test"][0], mean, std)
    torch.testing.assert_close(data.test[0][0], expected_test[0], atol=1e-5, rtol=0)
    again = load_dataset(name, root=str(tmp_path), verify_checksums=False, augment=False)
    torch.testing.assert_close(again.train[0][0], plain[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["svhn", "cifar10", "cifar100"])
def test_checksum_failure_raises_dataset_error_not_torchvision_runtime_error(name: str, tmp_path: Path) -> None:
    WRITERS[name][0](tmp_path, np.random.default_rng(0))
    with pytest.raises(DatasetNotFoundError, match="verify_checksums=False"):
        load_dataset(name, root=str(tmp_path))


@pytest.mark.parametrize("name", sorted(EXPECTED_FILES))
def test_missing_files_raise_an_error_naming_every_expected_path(name: str, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(name, root=str(tmp_path / "data"), download=False)
    assert isinstance(info.value, DatasetNotFoundError)
    message = str(info.value)
    assert repr(name) in message and "download=True" in message
    for relative in EXPECTED_FILES[name]:
        assert str(tmp_path / "data" / relative) in message


SOURCES = {  # where torchvision downloads each set from
    "fmnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "svhn": "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}


def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every torchvision download fails as it does offline (the network, not the code under test, is simulated)."""
    import urllib.error

    import torchvision.datasets.svhn
    import torchvision.datasets.utils

    def offline(url: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torchvision.datasets.utils, "download_url", offline)  # MNIST family and CIFAR
    monkeypatch.setattr(torchvision.datasets.svhn, "download_url", offline)


@pytest.mark.parametrize("name", sorted(EXPECTED_FILES))
def test_a_failed_download_names_the_dataset_its_source_the_reason_and_where_files_belong(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_network(monkeypatch)
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(name, root=str(tmp_path), download=True)
    message = str(info.value)
    assert "\n" not in message
    assert f"Dataset {name!r} could not be downloaded from {SOURCES[name]}" in message
    assert "Name or service not known" in message
    for relative in EXPECTED_FILES[name]:
        folder, _, file = str(tmp_path / relative).rpartition("/")
        assert f"{folder}: " in message and file in message


def test_missing_file_error_lists_only_the_missing_files(tmp_path: Path) -> None:
    _write_cifar(tmp_path, np.random.default_rng(0), hundred=False)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar10", root=str(tmp_path), verify_checksums=False)
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_3") in str(info.value)
    assert "data_batch_2" not in str(info.value)
