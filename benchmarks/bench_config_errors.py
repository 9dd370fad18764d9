"""Time to refuse a config typo (``fedmrn-pl fit train.roundz=3``) against ``python -c "import omegaconf"``.

A config is read and checked before the training stack loads, so a typo costs about
what reading it costs: OmegaConf is the floor. Each repeat runs both commands as fresh
processes, in alternating order; the figure is the median over repeats of
(typo / import omegaconf) wall time, paired within a repeat so load from other jobs
moves both alike. Target: <= 2x (it was ~60x when the config imported torch and Lightning).

    python benchmarks/bench_config_errors.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import subprocess
import sys
import tempfile
import time

TYPO = [sys.executable, "-m", "fedmrn_pl", "fit", "train.roundz=3"]
BASELINE = [sys.executable, "-c", "import omegaconf"]


def wall_seconds(command: list[str], folder: str, expected_code: int) -> float:
    """Wall time of one run of ``command`` in ``folder``, which must exit with ``expected_code``."""
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if completed.returncode != expected_code:
        raise SystemExit(f"{' '.join(command)} exited {completed.returncode}, expected {expected_code}: {completed.stderr}")
    return elapsed


def main() -> None:
    """Time both commands and print the paired ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    runs = {"typo": (TYPO, 2), "omegaconf": (BASELINE, 0)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    with tempfile.TemporaryDirectory() as folder:  # the typo writes nothing; a fresh folder shows it
        for command, code in runs.values():
            wall_seconds(command, folder, code)  # warm the file cache
        for repeat in range(args.repeats):
            order = list(runs) if repeat % 2 == 0 else list(reversed(runs))
            for name in order:
                command, code = runs[name]
                times[name].append(wall_seconds(command, folder, code))
    ratios = [typo / floor for typo, floor in zip(times["typo"], times["omegaconf"])]
    print(f"date: {datetime.datetime.now().isoformat(timespec='minutes')}, {platform.platform()}, python {platform.python_version()}")
    print(f"python -c 'import omegaconf':  median {statistics.median(times['omegaconf']):.3f} s")
    print(f"fedmrn-pl fit train.roundz=3:  median {statistics.median(times['typo']):.3f} s")
    print(f"ratio (median of paired): {statistics.median(ratios):.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
