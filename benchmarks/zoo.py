"""FedMRN vs FedAvg vs central training on the kinds of models users bring.

    python benchmarks/zoo.py                     # the BENCHMARKS.md table (2 seeds, ~20 min on 2 cores)
    python benchmarks/zoo.py --quick             # a minute: what the test suite runs
    python benchmarks/zoo.py --models gru,gcn --seeds 0 --masking noise_scale=absolute

Every model is a plain LightningModule at its library's default initialisation and
optimizer (``zoo_models.py``), trained through the Python API a user would call with the
default ``MaskingConfig()``; FedMRN, FedAvg and central training see the same data,
rounds and local steps. "central" is one client holding all the training data with
full participation: the ceiling, not a same-compute baseline. Needs the ``zoo`` extra
(``transformers``, ``peft``) for the BERT and LoRA rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.zoo_models import (
    BertClassifier,
    ConvAutoencoder,
    GCNClassifier,
    GRUClassifier,
    ImageClassifier,
    TransformerClassifier,
    as_dataset,
    digit_graph,
    digits_split,
)
from fedmrn_pl import FedAvg, FederatedDataModule, FederatedDataset, FederatedTrainer, FedMRN, MaskingConfig
from fedmrn_pl.callbacks import FederatedCallback, ProgressDisplay
from fedmrn_pl.wire import describe_payload

METHODS = ("fedmrn", "fedavg", "central")


@dataclasses.dataclass(frozen=True)
class Case:
    """One zoo model: how to build its data and module, how long to train, what to read."""

    name: str
    build: Callable[[int], tuple[L.LightningModule, FederatedDataset]]  # seed -> (module, data)
    rounds: int
    quick_rounds: int
    metric: str = "test/acc"  # the module's logged key, higher is better
    target: float = 0.8  # "rounds to target" threshold
    local_epochs: int = 2
    num_clients: int = 10
    clients_per_round: int = 5
    batch_size: int = 32


def _digits(seed: int) -> FederatedDataset:
    x_train, y_train, x_test, y_test = digits_split(seed)
    return FederatedDataset.from_datasets(as_dataset(x_train, y_train), as_dataset(x_test, y_test), num_classes=10)


def _cnn4(seed: int) -> tuple[L.LightningModule, FederatedDataset]:
    from fedmrn_pl import build_model, load_dataset

    model = build_model("cnn4", in_channels=1, num_classes=10, image_size=28, seed=seed)
    return ImageClassifier(model, lr=0.1), load_dataset("mnist5k")


def _seeded(factory: Callable[[], L.LightningModule]) -> Callable[[int], tuple[L.LightningModule, FederatedDataset]]:
    def build(seed: int) -> tuple[L.LightningModule, FederatedDataset]:
        torch.manual_seed(seed)
        return factory(), _digits(seed)

    return build


def _gcn(seed: int) -> tuple[L.LightningModule, FederatedDataset]:
    x_train, y_train, x_test, y_test = digits_split(seed)
    images = torch.cat([x_train, x_test])
    labels = torch.cat([y_train, y_test])
    nodes = torch.arange(len(images))
    train, test = nodes[: len(x_train)], nodes[len(x_train) :]
    torch.manual_seed(seed)
    module = GCNClassifier(images.reshape(len(images), -1), digit_graph(images))
    data = FederatedDataset.from_datasets(as_dataset(train, labels[train]), as_dataset(test, labels[test]), num_classes=10)
    return module, data


CASES = {
    case.name: case
    for case in (
        Case("cnn4", _cnn4, rounds=10, quick_rounds=2, num_clients=20, target=0.9),
        Case("gru", _seeded(lambda: GRUClassifier(lr=3e-3)), rounds=20, quick_rounds=4),
        Case("transformer", _seeded(TransformerClassifier), rounds=20, quick_rounds=6),
        Case("bert", _seeded(lambda: BertClassifier(lr=3e-3)), rounds=20, quick_rounds=4, target=0.5),
        Case("bert_lora", _seeded(lambda: BertClassifier(lr=1e-2, lora_rank=4)), rounds=20, quick_rounds=2, target=0.3),
        Case("gcn", _gcn, rounds=20, quick_rounds=4),
        Case("autoencoder", _seeded(ConvAutoencoder), rounds=20, quick_rounds=4, metric="test/psnr", target=15.0),
    )
}


class MaskBits(FederatedCallback):
    """Mask body bits per masked element over every payload of the run."""

    def __init__(self) -> None:
        self.bits = 0.0
        self.elements = 0

    def on_aggregate_start(self, trainer: Any, server_round: int, results: list) -> None:
        for result in results:
            if result.payload is None:
                continue
            tensors = describe_payload(result.payload)["tensors"]
            masks = [t for t in tensors if "ones_fraction" in t]
            self.bits += sum(8 * t["body_bytes"] for t in masks)
            self.elements += sum(t["numel"] for t in masks)

    @property
    def per_element(self) -> float:
        return self.bits / self.elements if self.elements else math.nan


def run_case(case: Case, method: str, seed: int, quick: bool, masking: MaskingConfig) -> dict[str, Any]:
    """Train one zoo model with one method and seed; return its figures."""
    module, dataset = case.build(seed)
    rounds = case.quick_rounds if quick else case.rounds
    if method == "central":
        train = dataset.train
        data = FederatedDataModule.from_client_datasets([train], dataset.test, num_classes=10, seed=seed)
        strategy, masking_used, clients, per_round = FedAvg(), None, 1, 1
    else:
        data = FederatedDataModule(dataset, num_clients=case.num_clients, partition="iid", seed=seed)
        strategy, masking_used = (FedMRN(), masking) if method == "fedmrn" else (FedAvg(), None)
        clients, per_round = case.num_clients, case.clients_per_round
    data.setup()
    bits = MaskBits()
    trainer = FederatedTrainer(
        module, data, strategy, masking_used, rounds=rounds, clients_per_round=per_round,
        local_epochs=case.local_epochs, batch_size=case.batch_size, run_seed=seed, threads=1,
        callbacks=[bits, ProgressDisplay(enabled=False)],
        metric_keys={"test/acc": case.metric} if case.metric != "test/acc" else None,
    )  # fmt: skip
    started = time.perf_counter()
    history = trainer.fit()
    curve = [float(row[case.metric]) for row in history]
    reached = [i + 1 for i, value in enumerate(curve) if value >= case.target]
    relative = [row.get("mask/relative_update") for row in history]
    return {
        "model": case.name,
        "method": method,
        "seed": seed,
        "rounds": rounds,
        "final": curve[-1],
        "best": max(curve),
        "rounds_to_target": reached[0] if reached else None,
        "mask_bits_per_element": bits.per_element if method == "fedmrn" else None,
        "uplink_bytes": sum(row["uplink/bytes"] for row in history),
        "relative_update": [None if value is None else float(value) for value in relative],
        "curve": curve,
        "seconds": time.perf_counter() - started,
        "clients": clients,
    }


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per model and method: mean (and spread) over seeds."""
    table = []
    for model in dict.fromkeys(row["model"] for row in rows):
        for method in METHODS:
            mine = [row for row in rows if row["model"] == model and row["method"] == method]
            if not mine:
                continue
            finals = [row["final"] for row in mine]
            reached = [row["rounds_to_target"] for row in mine]
            bits = [row["mask_bits_per_element"] for row in mine if row["mask_bits_per_element"] is not None]
            table.append({
                "model": model, "method": method, "seeds": len(mine),
                "final_mean": statistics.fmean(finals), "final_std": statistics.pstdev(finals),
                "rounds_to_target": None if None in reached else statistics.fmean(reached),
                "mask_bits_per_element": statistics.fmean(bits) if bits else None,
            })  # fmt: skip
    return table


def markdown(table: list[dict[str, Any]]) -> str:
    """The BENCHMARKS.md table: FedMRN and FedAvg side by side per model, with the central ceiling."""
    lines = [
        "| model | metric | FedMRN | FedAvg | gap | central | FedMRN rounds to target | FedAvg rounds to target | mask bits/param |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    by_key = {(row["model"], row["method"]): row for row in table}
    for model in dict.fromkeys(row["model"] for row in table):
        case = CASES[model]
        cells = {m: by_key.get((model, m)) for m in METHODS}

        def value(row: dict | None) -> str:
            return "-" if row is None else f"{row['final_mean']:.3f} ± {row['final_std']:.3f}"

        def to_target(row: dict | None) -> str:
            return "-" if row is None or row["rounds_to_target"] is None else f"{row['rounds_to_target']:.1f}"

        mrn, avg = cells["fedmrn"], cells["fedavg"]
        gap = "-" if mrn is None or avg is None else f"{mrn['final_mean'] - avg['final_mean']:+.3f}"
        bits = "-" if mrn is None or mrn["mask_bits_per_element"] is None else f"{mrn['mask_bits_per_element']:.2f}"
        metric = f"{case.metric} (target {case.target:g})"
        lines.append(
            f"| {model} | {metric} | {value(mrn)} | {value(avg)} | {gap} | {value(cells['central'])} | "
            f"{to_target(mrn)} | {to_target(avg)} | {bits} |"
        )
    return "\n".join(lines)


def _masking(overrides: list[str]) -> MaskingConfig:
    """``MaskingConfig()`` with ``key=value`` overrides (numbers parsed), for trying variants."""
    fields: dict[str, Any] = {}
    for item in overrides:
        key, _, raw = item.partition("=")
        try:
            fields[key] = float(raw) if any(c in raw for c in ".e") else int(raw)
        except ValueError:
            fields[key] = raw
    return MaskingConfig(**fields)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few rounds per model, one seed: the test suite's run")
    parser.add_argument("--models", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1; --quick: 0)")
    parser.add_argument("--masking", nargs="*", default=[], help="MaskingConfig overrides, key=value")
    parser.add_argument("--json", type=Path, default=None, help="write every run's figures here")
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(CASES)) + sorted(set(args.methods.split(",")) - set(METHODS))
    if unknown:
        parser.error(f"unknown model or method {unknown}; models: {', '.join(CASES)}; methods: {', '.join(METHODS)}")
    seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1")).split(",")]
    masking = _masking(args.masking)
    rows = []
    for model in models:
        for seed in seeds:
            for method in args.methods.split(","):
                row = run_case(CASES[model], method, seed, args.quick, masking)
                rows.append(row)
                print(
                    f"{model:12s} {method:8s} seed {seed}  final {row['final']:.4f}  best {row['best']:.4f}  "
                    f"bits {row['mask_bits_per_element'] or 0:.2f}  {row['seconds']:.0f} s",
                    flush=True,
                )
    print(markdown(summarise(rows)))
    if args.json is not None:
        args.json.write_text(json.dumps({"masking": repr(masking), "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
