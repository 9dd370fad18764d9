"""Server-side decode time of each body kind, and ``describe_payload`` (``fedmrn-pl inspect``) time and memory.

Synthetic bodies of the sizes a CNN/ResNet update carries: masks ~20% ones (FedMRN-like
skew) by kernel phase and by noise context, a deflated float32 tensor, a sparse top-k
tensor. Each is timed as the server decodes it (best of ``--repeat``), then a whole payload
of them through ``decode_update`` and ``describe_payload``, with the peak memory each adds
(tracemalloc, numpy's allocations included). Compare two checkouts with
``PYTHONPATH=<other checkout> python benchmarks/bench_wire_decode.py``.

    python benchmarks/bench_wire_decode.py
    python benchmarks/bench_wire_decode.py --scale 4 --repeat 5
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import torch

from fedmrn_pl.compressed import Sparse
from fedmrn_pl.update import ClientUpdate, NoiseSpec
from fedmrn_pl.wire import decode_update, describe_payload, encode_update
from fedmrn_pl.wire.context_coding import noise_contexts
from fedmrn_pl.wire.dense_coding import deflate_planes, inflate_planes
from fedmrn_pl.wire.mask_coding import decode_in_contexts, decode_mask, encode_in_contexts, encode_mask
from fedmrn_pl.wire.value_coding import decode_sparse, encode_sparse

NOISE = NoiseSpec("uniform", 0.01)


def best_of(repeat: int, work: Callable[[], object]) -> float:
    """The shortest of ``repeat`` timings of ``work``, in milliseconds."""
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def peak_mib(work: Callable[[], object]) -> float:
    """Peak memory ``work`` allocates through Python and numpy (tracemalloc), in MiB."""
    gc.collect()
    tracemalloc.start()
    work()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1, help="multiply every tensor's first dim")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    conv, linear = (256 * args.scale, 128, 3, 3), (1024 * args.scale, 1024)
    conv_mask, linear_mask = torch.rand(conv, generator=gen) < 0.2, torch.rand(linear, generator=gen) < 0.2
    phase_body = encode_mask(conv_mask)
    contexts = noise_contexts(7, "fc.weight", linear, NOISE)
    context_body = encode_in_contexts(linear_mask, contexts)
    dense = torch.randn(512 * args.scale, 1024, generator=gen) * 0.01
    deflated = deflate_planes(dense.numpy().tobytes(), 4)
    numel = 1024 * 1024 * args.scale
    kept = torch.randperm(numel, generator=gen)[: numel // 100].sort().values
    sparse = Sparse(torch.randn(kept.numel(), generator=gen), kept, (numel,))
    sparse_body = encode_sparse(sparse)

    rows = [
        ("coded_mask (by phase)", f"{conv}", lambda: decode_mask(phase_body, conv)),
        ("noise_coded_mask + contexts", f"{linear}", lambda: decode_in_contexts(
            context_body, linear, lambda: noise_contexts(7, "fc.weight", linear, NOISE))),
        ("noise contexts alone", f"{linear}", lambda: noise_contexts(7, "fc.weight", linear, NOISE)),
        ("deflated float32", f"{tuple(dense.shape)}", lambda: inflate_planes(deflated, 4, dense.numel() * 4)),
        ("sparse (1% kept)", f"({numel},)", lambda: decode_sparse(sparse_body, (numel,))),
    ]  # fmt: skip
    print(f"{'body':<30} {'shape':<22} {'decode ms':>10}")
    for name, shape, work in rows:
        work()  # warm up
        print(f"{name:<30} {shape:<22} {best_of(args.repeat, work):>10.1f}")

    update = ClientUpdate(
        1, 2, 7, "binary", NOISE, 100, masks={"conv.weight": conv_mask, "fc.weight": linear_mask},
        dense={"bn.weight": dense},
    )  # fmt: skip
    payload = encode_update(update)
    print(f"\npayload of {len(payload)} bytes")
    for name, work in (("decode_update", lambda: decode_update(payload)), ("describe_payload", lambda: describe_payload(payload))):
        work()
        print(f"{name:<18} {best_of(args.repeat, work):>8.1f} ms  peak {peak_mib(work):>7.1f} MiB")


if __name__ == "__main__":
    main()
