"""Split a training set among clients: IID, Dirichlet label skew, or k labels per client (two rules).

Partitioners are pure functions of the label array and a seed, so they are tested
without images and give the same split in every process. Each returns one sorted
index array per client; the arrays are disjoint.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fedmrn_pl.data.choices import PartitionName
from fedmrn_pl.seeding import derive_seed

__all__ = [
    "PartitionName",
    "format_partition_stats",
    "partition",
    "partition_dirichlet",
    "partition_iid",
    "partition_label_count",
    "partition_label_count_balanced",
    "partition_stats",
]

_MAX_DIRICHLET_ATTEMPTS = 1000


def _rng(seed: int) -> np.random.Generator:
    """The partitioning stream of ``seed``; never the global numpy RNG."""
    return np.random.default_rng(derive_seed(seed, purpose="partition"))


def _check_clients(num_clients: int, num_samples: int) -> None:
    if num_clients < 1:
        raise ValueError(f"num_clients must be >= 1, got {num_clients}")
    if num_clients > num_samples:
        raise ValueError(f"num_clients ({num_clients}) must not exceed the number of samples ({num_samples})")


def _as_targets(targets: Sequence[int] | np.ndarray) -> np.ndarray:
    array = np.asarray(targets)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"targets must be a 1-D integer array, got shape {array.shape} dtype {array.dtype}")
    return array


def partition_iid(num_samples: int, num_clients: int, seed: int) -> list[np.ndarray]:
    """Shuffle all indices and deal them out; client sizes differ by at most one.

    Raises:
        ValueError: If ``num_clients`` is < 1 or exceeds ``num_samples``.
    """
    _check_clients(num_clients, num_samples)
    order = _rng(seed).permutation(num_samples)
    return [np.sort(part) for part in np.array_split(order, num_clients)]


def partition_dirichlet(
    targets: Sequence[int] | np.ndarray, num_clients: int, beta: float, seed: int, min_size: int = 10
) -> list[np.ndarray]:
    """Label skew: split each class among clients by Dirichlet(beta) proportions.

    Small ``beta`` concentrates each class on few clients (strong non-IID); large
    ``beta`` approaches IID. Draws are repeated until every client holds at least
    ``min_size`` samples. As in NIID-bench, a client already holding its fair share
    (N / num_clients) gets no more of later classes, which keeps sizes usable.

    Raises:
        ValueError: On ``beta <= 0``, ``min_size < 0``, ``min_size * num_clients`` above the
            sample count, or when no draw meets ``min_size`` within the attempt budget.
    """
    labels = _as_targets(targets)
    n = len(labels)
    _check_clients(num_clients, n)
    if not beta > 0:
        raise ValueError(f"beta must be > 0 (smaller = more skewed), got {beta}")
    if min_size < 0 or min_size * num_clients > n:
        raise ValueError(f"min_size must be in [0, {n // num_clients}] (num_samples // num_clients), got {min_size}")
    rng = _rng(seed)
    class_indices = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    for _ in range(_MAX_DIRICHLET_ATTEMPTS):
        parts: list[list[int]] = [[] for _ in range(num_clients)]
        for idx in class_indices:
            proportions = rng.dirichlet(np.full(num_clients, beta))
            proportions *= np.array([len(p) < n / num_clients for p in parts])
            if proportions.sum() == 0:  # every client is full: fall back to an even split
                proportions = np.ones(num_clients)
            cuts = (np.cumsum(proportions / proportions.sum()) * len(idx)).astype(int)[:-1]
            for part, chunk in zip(parts, np.split(idx, cuts)):
                part.extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    raise ValueError(
        f"no Dirichlet(beta={beta}) split of {n} samples gave all {num_clients} clients >= {min_size} "
        f"samples in {_MAX_DIRICHLET_ATTEMPTS} attempts; lower min_size or num_clients, or raise beta"
    )


def _label_count_inputs(
    targets: Sequence[int] | np.ndarray, num_clients: int, labels_per_client: int
) -> tuple[np.ndarray, np.ndarray]:
    """The labels and the classes, after checking ``num_clients`` and ``labels_per_client``."""
    labels = _as_targets(targets)
    _check_clients(num_clients, len(labels))
    classes = np.unique(labels)
    if not 1 <= labels_per_client <= len(classes):
        raise ValueError(
            f"labels_per_client must be in [1, {len(classes)}] (the number of classes), got {labels_per_client}"
        )
    return labels, classes


def partition_label_count(
    targets: Sequence[int] | np.ndarray, num_clients: int, labels_per_client: int, seed: int
) -> list[np.ndarray]:
    """Give every client exactly ``labels_per_client`` distinct labels.

    Labels are dealt round-robin over a random permutation of the classes, so each
    client's labels are distinct, labels are held by equally many clients (+-1),
    and every label is held by someone when ``num_clients * k >= num_classes``
    (otherwise the unheld labels' samples are left out). Each label's samples are
    split evenly among its holders.

    Raises:
        ValueError: If ``labels_per_client`` is outside [1, number of classes] or a
            client would end up with no samples.
    """
    labels, classes = _label_count_inputs(targets, num_clients, labels_per_client)
    rng = _rng(seed)
    class_order = rng.permutation(classes)
    client_order = rng.permutation(num_clients)
    holders: dict[int, list[int]] = {int(c): [] for c in classes}
    for slot, client in enumerate(client_order):
        for j in range(labels_per_client):
            holders[int(class_order[(slot * labels_per_client + j) % len(classes)])].append(int(client))
    return _split_labels(labels, holders, num_clients, rng)


def partition_label_count_balanced(
    targets: Sequence[int] | np.ndarray, num_clients: int, labels_per_client: int, seed: int
) -> list[np.ndarray]:
    """``labels_per_client`` distinct labels per client, least-used labels first (the FedMRN authors' rule).

    Clients pick in turn (client 0 first); each takes the ``labels_per_client`` labels held
    by the fewest clients so far, ties broken at random. Each label's samples are split
    evenly among its holders, as in ``label_count``.

    Raises:
        ValueError: If ``labels_per_client`` is outside [1, number of classes] or a
            client would end up with no samples.
    """
    labels, classes = _label_count_inputs(targets, num_clients, labels_per_client)
    rng = _rng(seed)
    used = np.zeros(len(classes), dtype=np.int64)
    holders: dict[int, list[int]] = {int(c): [] for c in classes}
    for client in range(num_clients):
        order = np.lexsort((rng.random(len(classes)), used))  # fewest holders first, random among ties
        for position in order[:labels_per_client]:
            used[position] += 1
            holders[int(classes[position])].append(client)
    return _split_labels(labels, holders, num_clients, rng)


def _split_labels(
    labels: np.ndarray, holders: dict[int, list[int]], num_clients: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Split each label's samples evenly (in random order) among the clients holding it."""
    parts: list[list[int]] = [[] for _ in range(num_clients)]
    for label, clients in holders.items():
        if not clients:
            continue
        idx = rng.permutation(np.flatnonzero(labels == label))
        for client, chunk in zip(clients, np.array_split(idx, len(clients))):
            parts[client].extend(chunk.tolist())
    empty = [c for c, p in enumerate(parts) if not p]
    if empty:
        raise ValueError(f"clients {empty} received no samples: too many clients share too few labels' samples")
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def _iid(targets: np.ndarray, num_clients: int, seed: int) -> list[np.ndarray]:
    return partition_iid(len(targets), num_clients, seed)


# One partitioner per ``PartitionName`` (data/choices.py: the names a config may use, torch-free).
_PARTITIONERS: dict[str, Callable[..., list[np.ndarray]]] = {
    PartitionName.dirichlet: partition_dirichlet,
    PartitionName.iid: _iid,
    PartitionName.label_count: partition_label_count,
    PartitionName.label_count_balanced: partition_label_count_balanced,
}


def partition(
    name: str, targets: Sequence[int] | np.ndarray, num_clients: int, seed: int, **kwargs: Any
) -> list[np.ndarray]:
    """Dispatch to a partitioner by name, as configs do (``data.partition: dirichlet``).

    Args:
        name: A ``PartitionName``.
        targets: Train labels, one per sample.
        num_clients: Number of clients to split among.
        seed: Run seed; the split uses ``derive_seed(seed, purpose="partition")``.
        **kwargs: The partitioner's own settings: ``beta`` and ``min_size`` for
            ``dirichlet``, ``labels_per_client`` for ``label_count`` and ``label_count_balanced``.

    Returns:
        One sorted index array per client.

    Raises:
        ValueError: On an unknown name, unknown or missing settings, or invalid values.
    """
    func = _PARTITIONERS[PartitionName.parse(name, "partition").value]
    params = inspect.signature(func).parameters
    allowed = [p for p in params if p not in ("targets", "num_clients", "seed")]
    unknown = sorted(set(kwargs) - set(allowed))
    required = [p for p in allowed if params[p].default is inspect.Parameter.empty and p not in kwargs]
    if unknown or required:
        raise ValueError(
            f"partition {name!r} takes settings {allowed or 'none'}; "
            f"unknown: {unknown or 'none'}, missing: {required or 'none'}"
        )
    return func(targets=_as_targets(targets), num_clients=num_clients, seed=seed, **kwargs)


def partition_stats(
    targets: Sequence[int] | np.ndarray, parts: Sequence[np.ndarray], num_classes: int
) -> dict[str, Any]:
    """Per-client sizes and label histograms plus a summary, for logs and sanity checks.

    Returns:
        ``{"sizes": [int], "label_counts": [[int] * num_classes], "summary": {...}}`` where the
        summary holds num_clients, num_samples, min/max/mean size and the mean number of
        distinct labels per client.
    """
    labels = _as_targets(targets)
    counts = np.zeros((len(parts), num_classes), dtype=np.int64)
    for client, part in enumerate(parts):
        counts[client] = np.bincount(labels[part], minlength=num_classes)
    sizes = counts.sum(axis=1)
    any_client = len(parts) > 0
    return {
        "sizes": sizes.tolist(),
        "label_counts": counts.tolist(),
        "summary": {
            "num_clients": len(parts),
            "num_samples": int(sizes.sum()),
            "min_size": int(sizes.min()) if any_client else 0,
            "max_size": int(sizes.max()) if any_client else 0,
            "mean_size": float(sizes.mean()) if any_client else 0.0,
            "mean_labels_per_client": float((counts > 0).sum(axis=1).mean()) if any_client else 0.0,
        },
    }


def format_partition_stats(stats: dict[str, Any], max_rows: int = 5) -> str:
    """A few-line table: the summary, then size and label spread of the first clients."""
    s = stats["summary"]
    lines = [
        f"{s['num_clients']} clients, {s['num_samples']} samples; size min {s['min_size']} / "
        f"mean {s['mean_size']:.1f} / max {s['max_size']}; labels per client {s['mean_labels_per_client']:.2f}",
        f"{'client':>6} {'size':>6} {'labels':>6}  top label (share)",
    ]
    for client, (size, hist) in enumerate(zip(stats["sizes"][:max_rows], stats["label_counts"])):
        hist = np.asarray(hist)
        top = int(hist.argmax())
        share = hist[top] / size if size else 0.0
        lines.append(f"{client:>6} {size:>6} {int((hist > 0).sum()):>6}  {top} ({share:.0%})")
    if s["num_clients"] > max_rows:
        lines.append(f"{'...':>6} ({s['num_clients'] - max_rows} more clients)")
    return "\n".join(lines)
