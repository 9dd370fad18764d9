"""Server state per client: what error feedback costs the server in memory, on disk and per checkpoint.

A run of EF-SignSGD on mnist5k split over many clients (default 1,000 clients, 50 per
round, 2 rounds, CNN4, one thread), checkpointing every round. Reported: the checkpoint
file's size, the residual files' total size and count, the process's peak RSS over a
run with the same settings but without error feedback (SignSGD: identical work minus the
residuals), and the seconds per round of each. Each run is a fresh subprocess, so peak
RSS is its own.

    python -m benchmarks.bench_server_state [--clients 1000] [--per-round 50] [--rounds 2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from fedmrn_pl.run_directory import CHECKPOINT_NAME, STATES_DIRNAME


def _run(method: str, args: argparse.Namespace, folder: Path) -> dict[str, float]:
    """One ``fedmrn-pl fit`` in a fresh process; its figures."""
    overrides = [f"method.name={method}", f"data.num_clients={args.clients}", f"train.clients_per_round={args.per_round}",
                 f"train.rounds={args.rounds}", "train.local_epochs=1", "progress=false",
                 f"output_dir={folder}"]  # fmt: skip
    code = (
        "import json, resource, sys\n"
        "from fedmrn_pl.cli import main\n"
        "code = main(['fit', *sys.argv[1:]])\n"
        "print(json.dumps({'peak_rss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    done = subprocess.run([sys.executable, "-c", code, *overrides], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{method} failed:\n{done.stderr[-2000:]}")
    peak = json.loads(done.stdout.strip().splitlines()[-1])["peak_rss"]
    metrics = json.loads((folder / "metrics.json").read_text())
    states = list((folder / STATES_DIRNAME).glob("*.bin")) if (folder / STATES_DIRNAME).is_dir() else []
    return {
        "checkpoint_bytes": (folder / CHECKPOINT_NAME).stat().st_size,
        "state_files": len(states),
        "state_bytes": sum(path.stat().st_size for path in states),
        "peak_rss": peak,
        "round_seconds": metrics["wall_seconds"] / args.rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--per-round", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"{datetime.datetime.now().isoformat(timespec='minutes')}  {platform.platform()}  "
          f"load {os.getloadavg()[0]:.1f}  {args.clients} clients, {args.per_round} per round, {args.rounds} rounds")  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        rows = {method: _run(method, args, Path(scratch) / method) for method in ("signsgd", "ef_signsgd")}
    print("| method | checkpoint.pt | residual files | residual bytes | bytes per client with a residual | peak RSS | s/round |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for method, row in rows.items():
        per_client = row["state_bytes"] / row["state_files"] if row["state_files"] else 0
        print(f"| {method} | {row['checkpoint_bytes'] / 1e6:.2f} MB | {row['state_files']} | {row['state_bytes'] / 1e6:.1f} MB | "
              f"{per_client / 1e6:.3f} MB | {row['peak_rss'] / 1e6:.0f} MB | {row['round_seconds']:.1f} |")  # fmt: skip
    extra = rows["ef_signsgd"]["peak_rss"] - rows["signsgd"]["peak_rss"]
    print(f"peak RSS with error feedback - without: {extra / 1e6:+.0f} MB")


if __name__ == "__main__":
    main()
