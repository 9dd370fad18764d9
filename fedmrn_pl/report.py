"""Run figures: byte counts, the model fingerprint and the metrics.json summary."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from fedmrn_pl.monitor import Monitor
from fedmrn_pl.saving import atomic_write

__all__ = ["METRICS_NAME", "global_model_sha256", "run_summary", "sample_weighted_mean", "state_bytes", "write_metrics_json"]

METRICS_NAME = "metrics.json"  # the run summary in a run directory


def state_bytes(state: Mapping[str, torch.Tensor]) -> int:
    """Bytes of a model state sent densely (each tensor at its own element size)."""
    return sum(tensor.numel() * tensor.element_size() for tensor in state.values())


def sample_weighted_mean(values: Sequence[float], num_examples: Sequence[int]) -> float:
    """Mean of per-client figures weighted by sample counts ``N_k``, the rule aggregation uses (NaN if empty)."""
    total = sum(num_examples)
    if not values or total <= 0:
        return math.nan
    return sum(value * count for value, count in zip(values, num_examples, strict=True)) / total


def global_model_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of the model's tensor bytes, in sorted name order: equal runs, equal hash."""
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _clean(value: Any) -> Any:
    """JSON cannot hold NaN/inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def run_summary(
    method: str,
    history: Sequence[Mapping[str, Any]],
    global_state: Mapping[str, torch.Tensor],
    wall_seconds: float,
    extra: Mapping[str, Any] | None = None,
    monitor: Monitor | None = None,
) -> dict[str, Any]:
    """The metrics.json content: totals over the run plus the per-round list.

    ``monitor`` (default: test accuracy, higher is better) names the metric whose ``final_value``,
    ``best_value`` and ``best_round`` the summary gives, and which way is better.
    """
    monitor = monitor or Monitor()
    accuracies = [r["test/acc"] for r in history if "test/acc" in r]
    best = monitor.best(history)
    # Accuracy is higher-is-better unless it is the monitored metric with the user's own mode.
    best_accuracy = (monitor if monitor.standard_key == "test/acc" else Monitor()).best(history)
    uplink = sum(r["uplink/bytes"] for r in history)
    dense = sum(r["uplink/dense_bytes"] for r in history)
    summary = {
        "method": method,
        "rounds": len(history),
        "final_test_accuracy": accuracies[-1] if accuracies else None,
        "best_test_accuracy": best_accuracy[1] if best_accuracy else None,
        "final_test_loss": history[-1].get("test/loss") if history else None,
        "monitor": monitor.key,  # the metric the run is judged by
        "monitor_mode": str(monitor.mode),  # max: higher is better; min: lower is better
        "final_value": history[-1].get(monitor.key) if history else None,
        "best_value": best[1] if best else None,
        "best_round": best[0] if best else None,
        "uplink_bytes": uplink,
        "dense_uplink_bytes": dense,
        "uplink_compression": dense / uplink if uplink else None,
        "downlink_bytes": sum(r["downlink/bytes"] for r in history),
        "dropped_clients": sum(len(r["dropped_clients"]) for r in history),
        "wall_seconds": wall_seconds,
        "global_model_sha256": global_model_sha256(global_state),
    }
    summary.update(extra or {})
    summary["per_round"] = list(history)
    return _clean(summary)


def write_metrics_json(path: str | Path, summary: Mapping[str, Any]) -> Path:
    """Write ``summary`` as indented JSON, atomically (a crash or a full disk leaves no half file).

    Raises:
        SaveError: the file could not be written; an earlier ``path`` is kept as it was.
    """
    path = Path(path)
    text = json.dumps(summary, indent=2, sort_keys=False) + "\n"
    with atomic_write(path) as handle:
        handle.write(text.encode())
    return path
