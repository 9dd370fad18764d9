"""``fedmrn-pl compare``: every method on the same partition, seeds and local settings, in one table.

Each (method, seed) is a normal run in ``<output_dir>/<method>/seed_<s>`` (metrics.json,
checkpoint, W&B when on), so a stopped compare resumes where it stopped: finished runs
are read back, interrupted ones resume from their checkpoint, missing ones start.
Bytes are the real uplink payloads' lengths for every method, so bits per parameter
(``8 * uplink bytes / uploaded parameters``) are counted the same way everywhere.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fedmrn_pl.methods.registry import compare_variants

__all__ = ["CompareSettings", "compare", "parse_compare_args", "summarise"]

log = logging.getLogger(__name__)

COLUMNS = (
    "method", "seeds", "final_acc_mean", "final_acc_std", "best_acc_mean", "best_acc_std", "uplink_mb",
    "bits_per_param", "rounds_to_target", "uplink_mb_to_target", "reached_target", "wall_seconds",
)  # fmt: skip


@dataclass
class CompareSettings:
    """What ``compare`` runs: methods, seeds and the accuracy whose cost is reported."""

    methods: list[str]
    seeds: list[int]
    target_accuracy: float | None = None


def parse_compare_args(items: Sequence[str]) -> tuple[CompareSettings, list[str]]:
    """Split ``methods=[..] seeds=[..] target_accuracy=x`` off the config overrides.

    Raises:
        ValueError: an unknown method, an empty list, or a target outside (0, 1].
    """
    own: dict[str, Any] = {}
    overrides = []
    for item in items:
        key = item.partition("=")[0]
        if key in ("methods", "seeds", "target_accuracy"):
            own[key] = OmegaConf.to_container(OmegaConf.from_dotlist([item]))[key]  # type: ignore[index]
        else:
            overrides.append(item)
    variants = compare_variants()
    methods = own.get("methods", list(variants))
    methods = [methods] if isinstance(methods, str) else list(methods)
    unknown = [m for m in methods if m not in variants]
    if unknown or not methods:
        raise ValueError(f"methods={methods} is not valid: choose from {list(variants)}")
    seeds = own.get("seeds", [0])
    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"seeds={seeds} is not valid: give a list of ints, e.g. seeds=[0,1,2]")
    target = own.get("target_accuracy")
    if target is not None and not (isinstance(target, (int, float)) and 0 < target <= 1):
        raise ValueError(f"target_accuracy={target} is not valid: give a fraction in (0, 1], e.g. 0.9")
    return CompareSettings(methods, seeds, None if target is None else float(target)), overrides


def run_dir(output_dir: str | Path, method: str, seed: int) -> Path:
    """Where one (method, seed) run lives."""
    return Path(output_dir) / method / f"seed_{seed}"


def compare(config_path: str | Path | None, settings: CompareSettings, overrides: Sequence[str]) -> dict[str, Path]:
    """Run (or resume, or read back) every (method, seed) and write the table and plots.

    Returns:
        ``{"csv", "md", "accuracy_vs_round", "accuracy_vs_uplink"}`` paths.
    """
    from fedmrn_pl.run_directory import CHECKPOINT_NAME
    from fedmrn_pl.config import load_config
    from fedmrn_pl.experiment import run_experiment
    from fedmrn_pl.report import METRICS_NAME

    base = load_config(config_path, list(overrides))
    output_dir = Path(base.output_dir)
    variants = compare_variants()
    runs: dict[str, list[dict[str, Any]]] = {}
    for method in settings.methods:
        for seed in settings.seeds:
            where = run_dir(output_dir, method, seed)
            layered = [*overrides, *variants[method], f"seed={seed}", f"output_dir={where}"]
            config = load_config(config_path, layered)
            summary = None if config.overwrite else _finished(where / METRICS_NAME, config)
            if summary is None:
                if (where / CHECKPOINT_NAME).is_file() and not config.overwrite:
                    config = load_config(config_path, [*layered, f"resume={where}"])
                    log.info("compare: resuming %s seed %d from %s", method, seed, where)
                else:
                    log.info("compare: running %s seed %d into %s", method, seed, where)
                summary = run_experiment(config)
            else:
                log.info("compare: %s seed %d already done (%s)", method, seed, where)
            runs.setdefault(method, []).append(summary)
    target = settings.target_accuracy
    return write_outputs(output_dir, summarise(runs, target), runs, target)


def _finished(path: Path, config: DictConfig) -> dict[str, Any] | None:
    """The run's metrics.json if it exists and covers all of ``config``'s rounds."""
    if not path.is_file():
        return None
    from fedmrn_pl.config import ConfigError
    from fedmrn_pl.experiment import run_fingerprint

    summary = json.loads(path.read_text())
    if summary.get("rounds") != config.train.rounds:
        return None
    saved = summary.get("config")
    if not isinstance(saved, Mapping) or run_fingerprint(OmegaConf.create(dict(saved))) != run_fingerprint(config):
        raise ConfigError(
            f"{path.parent} holds a finished run with other settings than this comparison's; "
            "write the comparison to another output_dir, or replace its runs (overwrite=true)"
        )
    return summary


def _reach(per_round: Sequence[Mapping[str, Any]], target: float | None) -> tuple[int, float] | None:
    """``(round, cumulative uplink bytes)`` when test accuracy first reached ``target``."""
    if target is None:
        return None
    for metrics in per_round:
        accuracy = metrics.get("test/acc")
        if accuracy is not None and accuracy >= target:
            return int(metrics["round"]), float(metrics["uplink/cumulative_bytes"])
    return None


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(runs: Mapping[str, Sequence[Mapping[str, Any]]], target: float | None) -> list[dict[str, Any]]:
    """One row per method: accuracy mean and std over seeds, bytes, bits per parameter, cost to ``target``."""
    rows = []
    for method, summaries in runs.items():
        final = _mean_std([s["final_test_accuracy"] for s in summaries])
        best = _mean_std([s["best_test_accuracy"] for s in summaries])
        uplink = statistics.fmean(s["uplink_bytes"] for s in summaries)
        dense = statistics.fmean(s["dense_uplink_bytes"] for s in summaries)
        reached = [r for r in (_reach(s["per_round"], target) for s in summaries) if r is not None]
        rows.append({
            "method": method,
            "seeds": len(summaries),
            "final_acc_mean": final[0], "final_acc_std": final[1],
            "best_acc_mean": best[0], "best_acc_std": best[1],
            "uplink_mb": uplink / 1e6,
            # dense uplink is 32 bits per uploaded parameter, so this is bits per parameter of the payloads
            "bits_per_param": 32 * uplink / dense if dense else math.nan,
            "rounds_to_target": statistics.fmean(r[0] for r in reached) if reached else math.nan,
            "uplink_mb_to_target": statistics.fmean(r[1] for r in reached) / 1e6 if reached else math.nan,
            "reached_target": f"{len(reached)}/{len(summaries)}" if target is not None else "-",
            "wall_seconds": statistics.fmean(s["wall_seconds"] for s in summaries),
        })  # fmt: skip
    return rows


def _mean_history(summaries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per-round test accuracy and cumulative uplink averaged over seeds (rounds all seeds have)."""
    rounds = min(len(s["per_round"]) for s in summaries)
    history = []
    for index in range(rounds):
        entries = [s["per_round"][index] for s in summaries]
        accuracy = [e.get("test/acc") for e in entries if e.get("test/acc") is not None]
        history.append({
            "round": entries[0]["round"],
            "test/acc": statistics.fmean(accuracy) if accuracy else math.nan,
            "uplink/cumulative_bytes": statistics.fmean(e["uplink/cumulative_bytes"] for e in entries),
        })  # fmt: skip
    return history


def _cell(row: Mapping[str, Any], key: str) -> str:
    value = row[key]
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        return f"{value:.3f}" if key in ("bits_per_param", "uplink_mb", "uplink_mb_to_target") else f"{value:.4f}"
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], target: float | None) -> str:
    """The compare table as Markdown: accuracy as mean ± std over seeds."""
    to = f" to {target:g}" if target is not None else " to target"
    head = ["method", "seeds", "final acc", "best acc", "uplink MB", "bits/param", f"rounds{to}", f"uplink MB{to}",
            "reached", "wall s"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        lines.append("| " + " | ".join([
            row["method"], str(row["seeds"]),
            f"{_cell(row, 'final_acc_mean')} ± {_cell(row, 'final_acc_std')}",
            f"{_cell(row, 'best_acc_mean')} ± {_cell(row, 'best_acc_std')}",
            _cell(row, "uplink_mb"), _cell(row, "bits_per_param"),
            "-" if not math.isfinite(row["rounds_to_target"]) else f"{row['rounds_to_target']:.1f}",
            _cell(row, "uplink_mb_to_target"), row["reached_target"], f"{row['wall_seconds']:.0f}",
        ]) + " |")  # fmt: skip
    return "\n".join(lines) + "\n"


def write_outputs(
    output_dir: Path, rows: Sequence[Mapping[str, Any]], runs: Mapping[str, Sequence[Mapping[str, Any]]],
    target: float | None = None,
) -> dict[str, Path]:
    """Write ``compare.csv``, ``compare.md`` and the two plots into ``output_dir``."""
    from fedmrn_pl.plots import plot_histories

    output_dir.mkdir(parents=True, exist_ok=True)
    csv_path = output_dir / "compare.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row[key] for key in COLUMNS})
    md_path = output_dir / "compare.md"
    md_path.write_text(markdown_table(rows, target))
    by_round, by_uplink = plot_histories([(m, _mean_history(s)) for m, s in runs.items()], output_dir)
    return {"csv": csv_path, "md": md_path, "accuracy_vs_round": by_round, "accuracy_vs_uplink": by_uplink}
