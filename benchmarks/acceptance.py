"""Acceptance matrix: FedMRN vs FedAvg across partitions, dense dtypes and noise families.

Every row is the quick default config (mnist5k, CNN4, 20 clients, 5 per round,
2 local epochs, batch 32, 10 rounds) plus a few overrides, run end to end with
``run_experiment`` into ``runs/acceptance/<row>``. Besides accuracy and traffic the
table shows the arithmetic bound of the compression, so the wire format's overhead
is visible: the bound counts 32 bits per float element of the state_dict for the
dense upload, against 1 bit per masked weight plus the dense dtype's bits per
element of every other float tensor. The int64 BatchNorm ``num_batches_tracked``
counters are left out of the bound (they are in the measured bytes on both sides).
Row k repeats row a: the two global-model hashes must be equal.

    python benchmarks/acceptance.py [--only a,b] [--out runs/acceptance] [key=value ...]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fedmrn_pl.config import load_config
from fedmrn_pl.data import load_dataset
from fedmrn_pl.experiment import masking_from_config, model_from_config, run_experiment
from fedmrn_pl.masking import ParameterSelector

DIRICHLET = ["data.partition=dirichlet", "data.beta=0.3"]
LABEL_COUNT = ["data.partition=label_count", "data.labels_per_client=2"]
FEDAVG = ["method.name=fedavg", "train.lr=0.03"]
FEDMRN = ["method.name=fedmrn", "method.mask=binary", "train.lr=0.1"]


@dataclass(frozen=True)
class Row:
    """One run of the matrix: a short key, a directory name and its config overrides."""

    key: str
    name: str
    overrides: tuple[str, ...]


ROWS = [
    Row("a", "a_fedmrn_binary_iid", (*FEDMRN,)),
    Row("b", "b_fedavg_iid", (*FEDAVG,)),
    Row("c", "c_fedmrn_binary_iid_fp16", (*FEDMRN, "method.dense_dtype=float16")),
    Row("d", "d_fedmrn_signed_iid", ("method.name=fedmrn", "method.mask=signed", "train.lr=0.1")),
    Row("e", "e_fedmrn_binary_dir03", (*FEDMRN, *DIRICHLET)),
    Row("f", "f_fedavg_dir03", (*FEDAVG, *DIRICHLET)),
    Row("g", "g_fedmrn_binary_label2", (*FEDMRN, *LABEL_COUNT)),
    Row("h", "h_fedavg_label2", (*FEDAVG, *LABEL_COUNT)),
    Row("i", "i_fedmrn_binary_gauss", (*FEDMRN, "method.noise=gauss")),
    Row("j", "j_fedmrn_binary_bernoulli", (*FEDMRN, "method.noise=bernoulli")),
    Row("k", "k_repeat_of_a", (*FEDMRN,)),
]
DENSE_BITS = {"float32": 32, "float16": 16}


def compression_bound(config: Any) -> float:
    """Dense float32 bits of the state_dict over FedMRN's 1 bit per masked weight + dense bits.

    Float tensors only (int64 ``num_batches_tracked`` is left out); FedAvg's bound is 1.
    """
    masking = masking_from_config(config)
    if masking is None:
        return 1.0
    data = load_dataset(config.data.name, config.data.root, config.data.download, seed=config.seed)
    model = model_from_config(config, data)
    selector: ParameterSelector = masking.selector
    masked = {name for name, _, _ in selector.select(model)}
    floats = {name: t for name, t in model.state_dict().items() if t.is_floating_point()}
    masked_elements = sum(t.numel() for name, t in floats.items() if name in masked)
    dense_elements = sum(t.numel() for name, t in floats.items() if name not in masked)
    dense_bits = DENSE_BITS[config.method.dense_dtype]
    return 32 * (masked_elements + dense_elements) / (masked_elements + dense_bits * dense_elements)


def run_row(row: Row, out: Path, extra: list[str]) -> dict[str, Any]:
    """Run one row of the matrix and return the figures of the table."""
    config = load_config(None, [*row.overrides, f"output_dir={out / row.name}", *extra])
    bound = compression_bound(config)
    summary = run_experiment(config)
    method = summary["method"] if config.method.name == "fedavg" else f"{summary['method']} ({config.method.noise})"
    compression = summary["uplink_compression"]
    return {
        "row": row.key,
        "method": method,
        "partition": _partition_label(config),
        "dense": config.method.dense_dtype,
        "final_acc": 100 * summary["final_test_accuracy"],
        "best_acc": 100 * summary["best_test_accuracy"],
        "uplink_mb": summary["uplink_bytes"] / 1e6,
        "compression": compression,
        "bound": bound,
        "of_bound": 100 * compression / bound,
        "wall_s": summary["wall_seconds"],
        "sha": summary["global_model_sha256"],
    }


def _partition_label(config: Any) -> str:
    partition = config.data.partition
    if partition == "dirichlet":
        return f"dirichlet {config.data.beta:g}"
    if partition == "label_count":
        return f"label_count {config.data.labels_per_client}"
    return partition


def markdown_table(results: list[dict[str, Any]]) -> str:
    """The results as a markdown table (accuracies in %, MB = 10^6 bytes)."""
    lines = [
        "| row | method | partition | dense dtype | final acc % | best acc % | uplink MB | compression | bound | % of bound | wall s | sha256 |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['row']} | {r['method']} | {r['partition']} | {r['dense']} | {r['final_acc']:.2f} | {r['best_acc']:.2f} "
            f"| {r['uplink_mb']:.3f} | {r['compression']:.2f}x | {r['bound']:.2f}x | {r['of_bound']:.1f} | {r['wall_s']:.0f} "
            f"| `{r['sha'][:12]}` |"
        )
    return "\n".join(lines)


def findings(results: list[dict[str, Any]]) -> list[str]:
    """What a reader should notice: FedMRN/FedAvg gaps > 1.5 points, < 97% of the bound, hash mismatches."""
    by_row = {r["row"]: r for r in results}
    notes = []
    for mrn, avg in (("a", "b"), ("e", "f"), ("g", "h")):
        if mrn in by_row and avg in by_row:
            gap = by_row[avg]["final_acc"] - by_row[mrn]["final_acc"]
            flag = "  <-- above 1.5 points" if abs(gap) > 1.5 else ""
            notes.append(f"FedAvg - FedMRN final accuracy, {by_row[mrn]['partition']}: {gap:+.2f} points{flag}")
    for r in results:
        if r["bound"] > 1.0 and r["of_bound"] < 97.0:
            notes.append(
                f"row {r['row']}: compression {r['compression']:.2f}x is {r['of_bound']:.1f}% of the bound {r['bound']:.2f}x (< 97%)"
            )
    if "a" in by_row and "k" in by_row:
        same = by_row["a"]["sha"] == by_row["k"]["sha"]
        notes.append(f"rows a and k (same config): global_model_sha256 {'identical' if same else 'DIFFERENT'}")
    return notes


def main() -> None:
    """Run the chosen rows one after another, then print the table and the findings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated row keys, e.g. a,b (default: all)")
    parser.add_argument("--out", default="runs/acceptance", help="parent directory of the run directories")
    parser.add_argument(
        "overrides", nargs="*", help="extra key=value overrides applied to every row, e.g. train.rounds=2"
    )
    args = parser.parse_args()
    keys = [k.strip() for k in args.only.split(",") if k.strip()] or [row.key for row in ROWS]
    unknown = sorted(set(keys) - {row.key for row in ROWS})
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {[row.key for row in ROWS]}")
    rows = [row for row in ROWS if row.key in keys]

    print(f"date      {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"platform  {platform.platform()} | {platform.processor() or platform.machine()} | {os.cpu_count()} CPUs")
    print(
        f"versions  python {platform.python_version()}, torch {torch.__version__}; torch threads {torch.get_num_threads()}"
    )
    print(f"settings  configs/default.yaml {' '.join(args.overrides)}".rstrip(), flush=True)
    results = []
    for row in rows:
        results.append(run_row(row, Path(args.out), args.overrides))
        r = results[-1]
        print(
            f"row {row.key} done: final acc {r['final_acc']:.2f}%, {r['compression']:.2f}x, {r['wall_s']:.0f} s",
            flush=True,
        )
    print()
    print(markdown_table(results))
    print()
    for note in findings(results):
        print(f"- {note}")


if __name__ == "__main__":
    main()
