"""Round time on 1 vs 2 ranks (torchrun, CPU): the speedup of spreading clients over processes.

Runs the same compute-bound config (mnist5k, CNN4, 4 clients a round, 2 local epochs)
three ways, each a real ``fedmrn-pl fit``: one process with 1 thread, two torchrun
ranks with 1 thread each, and (for reference) one process with 2 threads. The figure
is the mean ``round/seconds`` over rounds 2.. (round 1 pays one-off start-up costs),
from each run's metrics.json; the speedup is 1 rank / 2 ranks at the same threads per
rank. All three give the same ``global_model_sha256`` except the 2-thread reference.
Target: >= 1.6x for 2 ranks.

    python benchmarks/bench_ranks.py [--rounds 4]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIG = [
    "data.name=mnist5k",
    "data.num_clients=20",
    "train.clients_per_round=4",
    "train.local_epochs=2",
    "checkpoint_every=0",
    "progress=false",
]


def run(label: str, launcher: list[str], threads: int, rounds: int, folder: Path) -> dict:
    """One ``fit``; returns its mean round seconds (rounds 2..) and sha."""
    out = folder / label.replace(" ", "_")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [*launcher, "-m", "fedmrn_pl", "fit", *CONFIG, f"train.rounds={rounds}", f"train.threads={threads}"]
    subprocess.run([*command, f"output_dir={out}"], check=True, env=env, capture_output=True)
    metrics = json.loads((out / "metrics.json").read_text())
    seconds = [r["round/seconds"] for r in metrics["per_round"][1:]]
    return {"label": label, "seconds": statistics.mean(seconds), "sha": metrics["global_model_sha256"][:12]}


def main() -> None:
    """Run the three variants and print round times and the speedup."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    python = [sys.executable]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    with tempfile.TemporaryDirectory() as folder:
        one = run("1 rank x 1 thread", python, 1, args.rounds, Path(folder))
        two = run("2 ranks x 1 thread", torchrun, 1, args.rounds, Path(folder))
        threads = run("1 rank x 2 threads", python, 2, args.rounds, Path(folder))
    print(f"date: {datetime.datetime.now().isoformat(timespec='minutes')}, {platform.platform()}, {os.cpu_count()} cores")
    for row in (one, two, threads):
        print(f"{row['label']:<22} mean round {row['seconds']:.2f} s   sha {row['sha']}")
    print(f"speedup 2 ranks / 1 rank (1 thread each): {one['seconds'] / two['seconds']:.2f}x (target >= 1.6x)")
    print(f"2 ranks x 1 thread vs 1 rank x 2 threads: {threads['seconds'] / two['seconds']:.2f}x")


if __name__ == "__main__":
    main()
