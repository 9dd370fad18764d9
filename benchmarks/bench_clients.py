"""Per-client cost of a round: FedAvg and FedMRN rounds vs a plain PyTorch loop doing the same client work.

100 clients of 40 MNIST digits each (mnist5k), CNN4, 1 local epoch, batch 32, one thread.
For K clients per round (5, 25, 50, 100) both sides train the same K clients on the same
batches: the framework runs one round of ``FederatedTrainer`` (a Lightning Trainer per
client, payload encode, server decode and validation, aggregation); the plain loop loads
the global weights, trains with the module's own ``training_step`` (masked noise and PSM for
FedMRN, then the final masks) and averages. The figure is the slope of round time over K,
seconds per client, from a least-squares fit of the per-K medians (the per-round constant,
evaluation, drops out); the ratio of slopes is the framework's per-client overhead.
Targets: FedAvg <= 1.5x plain, FedMRN <= 2x plain. ``--profile`` adds where one FedMRN
round's time goes (cProfile, grouped).

    python -m benchmarks.bench_clients [--repeats 3] [--sizes 5 25 50 100] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import logging
import os
import platform
import pstats
import statistics
import time
from collections.abc import Callable, Sequence

import torch

from benchmarks.bench_client_fit import plain_client
from fedmrn_pl import ClassificationTask, FederatedDataModule, FederatedTrainer, FedAvg, FedMRN, MaskingConfig, build_model
from fedmrn_pl.callbacks import ProgressDisplay
from fedmrn_pl.federated.sampling import sample_clients
from fedmrn_pl.messages import FitRequest
from fedmrn_pl.state import load_module_state, module_state

CLIENTS = 100
BATCH = 32


def _module() -> ClassificationTask:
    return ClassificationTask(build_model("cnn4", in_channels=1, num_classes=10, image_size=28, seed=0), 10)


def plain_round(module: ClassificationTask, data: FederatedDataModule, clients: Sequence[int], masking: MaskingConfig | None) -> None:
    """The round's client work as a hand-written loop (``bench_client_fit.plain_client`` per client), then the average."""
    global_state = module_state(module)
    module.log = lambda *args, **kwargs: None  # no Lightning logging outside a Trainer
    states = [
        plain_client(module, data, masking, global_state, FitRequest(1, client, data.client_num_examples(client), seed=1000 + client),
                     1, BATCH, torch.device("cpu"))["state"]
        for client in clients
    ]  # fmt: skip
    with torch.no_grad():
        average = {name: sum(state[name].double() for state in states) / len(states) for name in global_state}
    load_module_state(module, {name: average[name].to(global_state[name].dtype) for name in global_state})


def framework_round(data: FederatedDataModule, size: int, method: str) -> None:
    """One round of FederatedTrainer with ``size`` clients (includes its evaluation: a constant in ``size``)."""
    strategy, masking = (FedMRN(), MaskingConfig()) if method == "fedmrn" else (FedAvg(), None)
    trainer = FederatedTrainer(
        _module(), data, strategy, masking, rounds=1, clients_per_round=size, batch_size=BATCH,
        callbacks=[ProgressDisplay(enabled=False)],
    )  # fmt: skip
    trainer.fit()
    assert not trainer.history[-1]["dropped_clients"], trainer.history[-1]["dropped_clients"]


def slope(sizes: Sequence[int], seconds: Sequence[float]) -> float:
    """Least-squares seconds per client."""
    mean_x, mean_y = statistics.fmean(sizes), statistics.fmean(seconds)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(sizes, seconds)) / sum((x - mean_x) ** 2 for x in sizes)


def timed(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def profile_round(data: FederatedDataModule, size: int) -> None:
    """Where one FedMRN round's time goes, by the functions that own each phase (cumulative, overlapping)."""
    profiler = cProfile.Profile()
    profiler.enable()
    framework_round(data, size, "fedmrn")
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = max(entry[3] for entry in stats.stats.values())  # the outermost call's cumulative time
    phases = {
        "local fit (Lightning Trainer.fit)": ("lightning/pytorch/trainer/trainer.py", "fit"),
        "Lightning Trainer construction": ("lightning/pytorch/trainer/trainer.py", "__init__"),
        "payload encode": ("fedmrn_pl/wire/format.py", "encode_update"),
        "payload decode + checks": ("fedmrn_pl/wire/format.py", "decode_update"),
        "aggregation": ("fedmrn_pl/federated/strategies.py", "aggregate"),
        "evaluation": ("fedmrn_pl/federated/evaluation.py", "evaluate_module"),
    }
    print(f"profile of one FedMRN round, {size} clients ({total:.2f} s under cProfile):")
    for label, (path_end, function) in phases.items():
        cumulative = sum(entry[3] for (path, _, name), entry in stats.stats.items() if name == function and path.endswith(path_end))
        print(f"  {label:<36} {cumulative:7.2f} s  {cumulative / total:6.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 25, 50, 100])
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("fedmrn_pl").setLevel(logging.WARNING)  # no partition table and round line per round
    data = FederatedDataModule("mnist5k", num_clients=CLIENTS, seed=0)
    data.setup()
    module = _module()
    rows = {}
    for method, masking in (("fedavg", None), ("fedmrn", MaskingConfig())):
        framework_round(data, args.sizes[0], method)  # warm-up
        medians: dict[str, list[float]] = {"plain": [], "framework": []}
        for size in args.sizes:
            clients = sample_clients(0, 1, CLIENTS, size)
            plain = lambda: plain_round(module, data, clients, masking)  # noqa: E731
            framework = lambda: framework_round(data, size, method)  # noqa: E731
            times: dict[str, list[float]] = {"plain": [], "framework": []}
            for repeat in range(args.repeats):
                order = (("plain", plain), ("framework", framework))
                for name, run in order if repeat % 2 == 0 else order[::-1]:
                    times[name].append(timed(run))
            for name in medians:
                medians[name].append(statistics.median(times[name]))
        rows[method] = {name: slope(args.sizes, values) for name, values in medians.items()}
        rows[method]["medians"] = medians  # type: ignore[assignment]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"date: {datetime.datetime.now().isoformat(timespec='minutes')}, {platform.platform()}, torch {torch.__version__}, "
          f"{os.cpu_count()} cores, load {load:.1f}, 1 thread")  # fmt: skip
    print(f"{CLIENTS} clients x ~{4000 // CLIENTS} samples, CNN4, 1 epoch, batch {BATCH}; K = {args.sizes}")
    for method, target in (("fedavg", 1.5), ("fedmrn", 2.0)):
        row = rows[method]
        ratio = row["framework"] / row["plain"]
        print(
            f"{method}: {row['framework'] * 1e3:.1f} ms/client (framework) vs {row['plain'] * 1e3:.1f} ms/client (plain) "
            f"= {ratio:.2f}x (target <= {target}x); round medians {[round(s, 2) for s in row['medians']['framework']]} s"
        )
    if args.profile:
        profile_round(data, 25)


if __name__ == "__main__":
    main()
