"""Mask packing throughput: fedmrn_pl.wire pack_bits/unpack_bits against raw numpy.

Ours goes torch bool tensor -> bytes -> torch bool tensor (with the length and
padding-bit checks the decoder needs); the baseline is ``np.packbits`` followed by
``np.unpackbits`` on the same data, nothing else. Both run in the same process, best
of ``--repeats``; a ratio >= 1.0 means ours is at least as fast.

    python benchmarks/bench_packing.py [--numel 10000000] [--repeats 20]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from collections.abc import Callable

import numpy as np
import torch

from fedmrn_pl.wire import pack_bits, unpack_bits


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` timed calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    """Time both round trips and print throughput and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numel", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    numel = args.numel

    mask = torch.rand(numel, generator=torch.Generator().manual_seed(0)) < 0.5
    array = mask.numpy()
    packed_np = np.packbits(array, bitorder="little")
    packed_ours = pack_bits(mask)
    assert packed_ours == packed_np.tobytes() and torch.equal(unpack_bits(packed_ours, (numel,)), mask)

    timings = {
        ("ours", "pack"): best_seconds(lambda: pack_bits(mask), args.repeats),
        ("ours", "unpack"): best_seconds(lambda: unpack_bits(packed_ours, (numel,)), args.repeats),
        ("ours", "round trip"): best_seconds(lambda: unpack_bits(pack_bits(mask), (numel,)), args.repeats),
        ("numpy", "pack"): best_seconds(lambda: np.packbits(array, bitorder="little"), args.repeats),
        ("numpy", "unpack"): best_seconds(
            lambda: np.unpackbits(packed_np, count=numel, bitorder="little"), args.repeats
        ),
        ("numpy", "round trip"): best_seconds(
            lambda: np.unpackbits(np.packbits(array, bitorder="little"), count=numel, bitorder="little"), args.repeats
        ),
    }

    print(f"date      {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"platform  {platform.platform()} | {platform.processor() or platform.machine()} | {os.cpu_count()} CPUs")
    print(f"versions  python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}")
    print(f"mask      {numel:,} random bools -> {len(packed_ours):,} bytes; best of {args.repeats}")
    print(f"{'step':<11}{'ours ms':>10}{'numpy ms':>10}{'ours Mel/s':>12}{'numpy Mel/s':>13}{'ours/numpy':>12}")
    for step in ("pack", "unpack", "round trip"):
        ours, base = timings[("ours", step)], timings[("numpy", step)]
        print(
            f"{step:<11}{ours * 1e3:>10.3f}{base * 1e3:>10.3f}{numel / ours / 1e6:>12.0f}"
            f"{numel / base / 1e6:>13.0f}{base / ours:>12.2f}"
        )


if __name__ == "__main__":
    main()
