"""Start-up cost of ``fedmrn-pl inspect FILE`` against ``python -c "import torch"``.

``inspect`` must read a payload without loading the training stack (Lightning,
torchvision, scikit-learn, matplotlib, wandb): torch (the wire format decodes into
tensors) is the floor. Each repeat runs both commands as fresh processes, in
alternating order; the figure is the median over repeats of (inspect / import torch)
wall time, paired within a repeat so load from other jobs moves both alike.
Target: <= 1.3x.

    python benchmarks/bench_inspect_startup.py [--repeats 15]
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
from pathlib import Path

import torch

from fedmrn_pl.update import ClientUpdate, NoiseSpec
from fedmrn_pl.wire import encode_update


def wall_seconds(command: list[str]) -> float:
    """Wall time of one run of ``command`` (which must succeed)."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def cnn4_like_payload() -> bytes:
    """A FedMRN payload the size of the default run's: ~390k mask bits plus dense tensors."""
    generator = torch.Generator().manual_seed(0)
    masks = {
        f"layer{i}.weight": torch.rand(shape, generator=generator) < 0.3
        for i, shape in enumerate([(32, 1, 3, 3), (64, 32, 3, 3), (64, 64, 3, 3), (128, 64 * 9), (10, 128)])
    }
    dense = {f"norm{i}.weight": torch.ones(64) for i in range(4)}
    return encode_update(ClientUpdate(1, 3, 42, "binary", NoiseSpec(), 200, masks=masks, dense=dense))


def main() -> None:
    """Time both commands and print the paired ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "payload.fmrn"
        path.write_bytes(cnn4_like_payload())
        inspect = [sys.executable, "-m", "fedmrn_pl", "inspect", str(path)]
        baseline = [sys.executable, "-c", "import torch"]
        wall_seconds(inspect), wall_seconds(baseline)  # warm the file cache
        ratios, inspect_times, torch_times = [], [], []
        for repeat in range(args.repeats):
            order = (inspect, baseline) if repeat % 2 == 0 else (baseline, inspect)
            times = {tuple(command): wall_seconds(command) for command in order}
            inspect_times.append(times[tuple(inspect)])
            torch_times.append(times[tuple(baseline)])
            ratios.append(inspect_times[-1] / torch_times[-1])
    print(f"date: {datetime.datetime.now().isoformat(timespec='minutes')}, {platform.platform()}, torch {torch.__version__}")
    print(f"python -c 'import torch': median {statistics.median(torch_times):.3f} s")
    print(f"fedmrn-pl inspect FILE:   median {statistics.median(inspect_times):.3f} s")
    print(f"ratio (median of paired): {statistics.median(ratios):.3f}x (target <= 1.3x)")


if __name__ == "__main__":
    main()
