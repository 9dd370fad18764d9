"""Partitioners: disjoint covers, balanced IID, Dirichlet skew, k labels per client, seeding, errors."""

from __future__ import annotations

import numpy as np
import pytest

from fedmrn_pl.data import (
    PartitionName,
    format_partition_stats,
    partition,
    partition_dirichlet,
    partition_iid,
    partition_label_count,
    partition_label_count_balanced,
    partition_stats,
)

TARGETS = np.repeat(np.arange(10), 200)  # 2000 samples, 10 balanced classes
SETTINGS = {
    "iid": {},
    "dirichlet": {"beta": 0.5},
    "label_count": {"labels_per_client": 2},
    "label_count_balanced": {"labels_per_client": 2},
}


def _distinct_labels(parts: list[np.ndarray]) -> float:
    return float(np.mean([len(np.unique(TARGETS[p])) for p in parts]))


def test_partition_names() -> None:
    assert PartitionName.values() == ["dirichlet", "iid", "label_count", "label_count_balanced"]


def test_every_partition_name_has_a_partitioner_and_every_partitioner_a_name() -> None:
    from fedmrn_pl.data.partition import _PARTITIONERS

    assert sorted(_PARTITIONERS) == PartitionName.values()  # data/choices.py (torch-free) and the registry agree


@pytest.mark.parametrize("name", sorted(SETTINGS))
@pytest.mark.parametrize("num_clients", [5, 7, 20])
def test_partitions_are_disjoint_and_cover_every_sample(name: str, num_clients: int) -> None:
    parts = partition(name, TARGETS, num_clients, seed=0, **SETTINGS[name])
    assert len(parts) == num_clients
    assert all(len(p) > 0 and p.dtype.kind == "i" for p in parts)
    merged = np.concatenate(parts)
    assert len(merged) == len(np.unique(merged))  # disjoint
    np.testing.assert_array_equal(np.sort(merged), np.arange(len(TARGETS)))  # covering


@pytest.mark.parametrize("name", ["iid", "dirichlet"])
def test_a_single_client_gets_every_sample(name: str) -> None:
    (only,) = partition(name, TARGETS, 1, seed=0, **SETTINGS[name])
    np.testing.assert_array_equal(only, np.arange(len(TARGETS)))


@pytest.mark.parametrize(("num_samples", "num_clients"), [(2000, 7), (10, 10), (11, 3)])
def test_iid_client_sizes_differ_by_at_most_one(num_samples: int, num_clients: int) -> None:
    sizes = [len(p) for p in partition_iid(num_samples, num_clients, seed=3)]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == num_samples


def test_iid_clients_see_roughly_every_label() -> None:
    assert _distinct_labels(partition_iid(len(TARGETS), 10, seed=0)) == 10


def test_small_beta_dirichlet_is_more_skewed_than_large_beta() -> None:
    skewed = partition_dirichlet(TARGETS, 10, beta=0.1, seed=0, min_size=1)
    near_iid = partition_dirichlet(TARGETS, 10, beta=100.0, seed=0, min_size=1)
    assert _distinct_labels(skewed) < 6 < _distinct_labels(near_iid) == 10
    # near-IID clients hold each label in about equal share; skewed ones are dominated by one label
    top_share = lambda parts: np.mean([np.bincount(TARGETS[p]).max() / len(p) for p in parts])  # noqa: E731
    assert top_share(skewed) > 0.4 > 0.15 > top_share(near_iid)


@pytest.mark.parametrize("seed", range(5))
def test_dirichlet_honours_min_size(seed: int) -> None:
    parts = partition_dirichlet(TARGETS, 20, beta=0.1, seed=seed, min_size=40)
    assert min(len(p) for p in parts) >= 40


def test_dirichlet_rejects_impossible_min_size_at_once() -> None:
    with pytest.raises(ValueError, match=r"min_size must be in \[0, 100\]"):
        partition_dirichlet(TARGETS, 20, beta=0.5, seed=0, min_size=101)


def test_dirichlet_gives_up_after_bounded_attempts_with_advice() -> None:
    with pytest.raises(ValueError, match="attempts; lower min_size"):
        partition_dirichlet(TARGETS, 20, beta=0.01, seed=0, min_size=100)


@pytest.mark.parametrize("k", [1, 2, 3, 10])
def test_label_count_gives_every_client_exactly_k_labels(k: int) -> None:
    parts = partition_label_count(TARGETS, 10, labels_per_client=k, seed=0)
    assert [len(np.unique(TARGETS[p])) for p in parts] == [k] * 10


def test_label_count_spreads_labels_evenly_across_clients() -> None:
    parts = partition_label_count(TARGETS, 15, labels_per_client=2, seed=1)
    holders = np.zeros(10, dtype=int)
    for p in parts:
        holders[np.unique(TARGETS[p])] += 1
    assert holders.max() - holders.min() <= 1 and holders.sum() == 30


def test_label_count_with_too_few_slots_leaves_unheld_labels_out() -> None:
    parts = partition_label_count(TARGETS, 3, labels_per_client=2, seed=0)  # 6 label slots < 10 classes
    merged = np.concatenate(parts)
    assert len(merged) == len(np.unique(merged)) == 6 * 200
    assert len(np.unique(TARGETS[merged])) == 6


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_same_seed_same_partition_other_seed_different(name: str) -> None:
    first = partition(name, TARGETS, 8, seed=11, **SETTINGS[name])
    again = partition(name, TARGETS, 8, seed=11, **SETTINGS[name])
    other = partition(name, TARGETS, 8, seed=12, **SETTINGS[name])
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_partition_ignores_global_numpy_rng() -> None:
    np.random.seed(0)
    first = partition("dirichlet", TARGETS, 8, seed=5, beta=0.3)
    np.random.seed(1)
    second = partition("dirichlet", TARGETS, 8, seed=5, beta=0.3)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize(
    ("name", "num_clients", "kwargs", "message"),
    [
        ("fedavg", 4, {}, r"choose one of \['dirichlet', 'iid', 'label_count', 'label_count_balanced'\]"),
        ("iid", 0, {}, "num_clients must be >= 1"),
        ("iid", 2001, {}, r"must not exceed the number of samples \(2000\)"),
        ("dirichlet", 4, {"beta": 0.0}, "beta must be > 0"),
        ("dirichlet", 4, {}, r"missing: \['beta'\]"),
        ("dirichlet", 4, {"beta": 1.0, "alpha": 2}, r"unknown: \['alpha'\]"),
        ("label_count", 4, {"labels_per_client": 0}, r"labels_per_client must be in \[1, 10\]"),
        ("label_count", 4, {"labels_per_client": 11}, r"labels_per_client must be in \[1, 10\]"),
        ("iid", 4, {"beta": 0.5}, r"takes settings none"),
    ],
)
def test_bad_arguments_raise_value_errors_saying_what_is_valid(
    name: str, num_clients: int, kwargs: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        partition(name, TARGETS, num_clients, seed=0, **kwargs)


def test_targets_must_be_a_one_dimensional_integer_array() -> None:
    with pytest.raises(ValueError, match="1-D integer array"):
        partition("iid", TARGETS.astype(float), 4, seed=0)


def test_partition_stats_counts_sizes_and_labels_per_client() -> None:
    targets = np.array([0, 0, 1, 2, 2, 2])
    stats = partition_stats(targets, [np.array([0, 1, 2]), np.array([3, 4, 5])], num_classes=3)
    assert stats["sizes"] == [3, 3]
    assert stats["label_counts"] == [[2, 1, 0], [0, 0, 3]]
    assert stats["summary"] == {
        "num_clients": 2,
        "num_samples": 6,
        "min_size": 3,
        "max_size": 3,
        "mean_size": 3.0,
        "mean_labels_per_client": 1.5,
    }


def test_format_partition_stats_is_a_short_table_with_the_summary() -> None:
    stats = partition_stats(TARGETS, partition_iid(len(TARGETS), 50, seed=0), num_classes=10)
    text = format_partition_stats(stats)
    lines = text.splitlines()
    assert len(lines) <= 8
    assert lines[0].startswith("50 clients, 2000 samples") and "min 40" in lines[0]
    assert "45 more clients" in lines[-1]


def _least_used_first(num_classes: int, num_clients: int, k: int, parts: list[np.ndarray], targets: np.ndarray) -> None:
    """Replays the rule: each client's labels were among the least-held ones when it picked."""
    used = np.zeros(num_classes, dtype=int)
    for part in parts:
        mine = np.unique(targets[part])
        assert len(mine) == k
        free = sorted(range(num_classes), key=lambda c: used[c])
        threshold = used[free[k - 1]]  # the k-th smallest count so far
        assert all(used[c] <= threshold for c in mine)
        assert all(used[c] > threshold or c in mine for c in range(num_classes) if used[c] < threshold)
        used[mine] += 1


@pytest.mark.parametrize(("num_clients", "k"), [(10, 2), (7, 3), (20, 2), (3, 5)])
def test_label_count_balanced_takes_least_used_labels_first(num_clients: int, k: int) -> None:
    parts = partition_label_count_balanced(TARGETS, num_clients, k, seed=1)
    _least_used_first(10, num_clients, k, parts, TARGETS)
    holders = np.bincount(np.concatenate([np.unique(TARGETS[p]) for p in parts]), minlength=10)
    assert holders.max() - holders.min() <= 1  # least-used first keeps every label's holders within one
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(TARGETS))) or num_clients * k < 10


def test_label_count_balanced_is_seeded_and_validated() -> None:
    a = partition_label_count_balanced(TARGETS, 10, 2, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, partition_label_count_balanced(TARGETS, 10, 2, seed=3)))
    assert not all(np.array_equal(x, y) for x, y in zip(a, partition_label_count_balanced(TARGETS, 10, 2, seed=4)))
    with pytest.raises(ValueError, match=r"\[1, 10\]"):
        partition_label_count_balanced(TARGETS, 10, 11, seed=0)
