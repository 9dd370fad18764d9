"""Mask coding on real masks: bits per masked parameter and coding time per round.

Runs a short fedmrn-pl job with ``save_payloads=true`` into a temporary folder (or reads
payloads you already have, ``--payloads DIR``), decodes every client mask and codes it
again with each candidate: ``packed`` (8 per byte), ``phase`` (our rANS coder with one
probability per kernel position), ``noise`` (the same coder with one probability per noise
context, the noise regenerated from the seed on both sides; what ``encode_update`` sends
over uniform noise), each only where shorter than packed, and general-purpose
compressors on the packed bytes (``zlib`` level 9, ``lzma`` preset 9e, ``zstd`` level 19
when the ``zstandard`` package is installed). ``entropy`` is the per-tensor zeroth-order
entropy, the bound for a coder without context. Every candidate is checked to round-trip.

    python benchmarks/bench_mask_coding.py                      # default job: mnist5k, iid
    python benchmarks/bench_mask_coding.py data.partition=dirichlet data.beta=0.3
    python benchmarks/bench_mask_coding.py --payloads runs/default/payloads
"""

from __future__ import annotations

import argparse
import datetime
import lzma
import math
import os
import platform
import subprocess
import tempfile
import time
import zlib
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from fedmrn_pl.wire import decode_update, pack_bits, unpack_bits
from fedmrn_pl.wire.context_coding import noise_contexts, uses_contexts
from fedmrn_pl.wire.mask_coding import decode_in_contexts, decode_mask, encode_in_contexts, encode_mask

try:
    import zstandard
except ImportError:  # optional: only measured when installed
    zstandard = None

# Each codec gets the mask and a zero-argument function that regenerates its noise contexts
# (what a reader can do from the payload header), so "noise" is timed with that work included.
Contexts = Callable[[], np.ndarray]
Codec = tuple[Callable[[torch.Tensor, Contexts], bytes], Callable[[bytes, tuple[int, ...], Contexts], torch.Tensor]]


def _compressor(compress: Callable[[bytes], bytes], decompress: Callable[[bytes], bytes]) -> Codec:
    """A general-purpose compressor applied to the packed bits."""
    return (lambda mask, _: compress(pack_bits(mask)), lambda data, shape, _: unpack_bits(decompress(data), shape))


def _or_packed(encode: Callable[[torch.Tensor, Contexts], bytes], decode: Callable) -> Codec:
    """A coder as ``encode_update`` uses it: its body where shorter than packing, else the packed one."""

    def encode_or_pack(mask: torch.Tensor, contexts: Contexts) -> bytes:
        coded, packed = encode(mask, contexts), pack_bits(mask)
        return coded if len(coded) < len(packed) else packed

    def decode_either(data: bytes, shape: tuple[int, ...], contexts: Contexts) -> torch.Tensor:
        packed = len(data) == (math.prod(shape) + 7) // 8
        return unpack_bits(data, shape) if packed else decode(data, shape, contexts)

    return encode_or_pack, decode_either


def codecs() -> dict[str, Codec]:
    """Every candidate, by name."""
    table = {
        "packed": (lambda mask, _: pack_bits(mask), lambda data, shape, _: unpack_bits(data, shape)),
        "phase": _or_packed(lambda mask, _: encode_mask(mask), lambda data, shape, _: decode_mask(data, shape)),
        "noise": _or_packed(  # what encode_update sends for masks over uniform noise (format v4)
            lambda mask, contexts: encode_in_contexts(mask, contexts()),
            lambda data, shape, contexts: decode_in_contexts(data, shape, contexts),
        ),
        "zlib-9": _compressor(lambda b: zlib.compress(b, 9), zlib.decompress),
        "lzma-9e": _compressor(lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME), lzma.decompress),
    }
    if zstandard is not None:
        table["zstd-19"] = _compressor(
            zstandard.ZstdCompressor(level=19).compress, zstandard.ZstdDecompressor().decompress
        )
    return table


def entropy_bits(mask: torch.Tensor) -> float:
    """Zeroth-order entropy of the mask in bits (numel x H(fraction of ones))."""
    p = mask.float().mean().item() if mask.numel() else 0.0
    return 0.0 if p in (0.0, 1.0) else -mask.numel() * (p * math.log2(p) + (1 - p) * math.log2(1 - p))


def make_payloads(overrides: list[str], out_dir: Path) -> Path:
    """Run ``fedmrn-pl fit save_payloads=true`` into ``out_dir`` and return its payload folder."""
    command = ["fedmrn-pl", "fit", "save_payloads=true", f"output_dir={out_dir}", *overrides]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return out_dir / "payloads"


def measure(payload_dir: Path) -> tuple[dict, dict]:
    """Per round and codec: (bits, seconds) summed over clients; and masked elements per round."""
    table, numel = codecs(), defaultdict(int)
    bits, seconds = defaultdict(float), defaultdict(float)
    for path in sorted(payload_dir.glob("round_*_client_*.fmrn")):
        server_round = int(path.name.split("_")[1])
        update = decode_update(path.read_bytes())
        if not uses_contexts(update.noise):
            table.pop("noise", None)  # only masks over uniform noise are coded by noise context
        for tensor_name, mask in update.masks.items():
            shape = tuple(mask.shape)

            def contexts(name: str = tensor_name, shape: tuple[int, ...] = shape) -> np.ndarray:
                return noise_contexts(update.seed, name, shape, update.noise)

            numel[server_round] += mask.numel()
            bits[server_round, "entropy"] += entropy_bits(mask)
            for name, (encode, decode) in table.items():
                start = time.perf_counter()
                data = encode(mask, contexts)
                restored = decode(data, shape, contexts)
                seconds[server_round, name] += time.perf_counter() - start
                assert torch.equal(restored, mask), f"{name} does not round-trip {path.name}"
                bits[server_round, name] += 8 * len(data)
    return {"bits": bits, "seconds": seconds, "names": ["entropy", *table]}, numel  # noise: dropped unless uniform


def report(result: dict, numel: dict) -> None:
    """Print bits per masked parameter and ms per round (encode + decode of all its clients)."""
    names, rounds = result["names"], sorted(numel)
    print(f"bits per masked parameter (mean over a round's clients); ms = encode+decode of the round's masks")
    print(
        f"{'round':>5}"
        + "".join(f"{name:>10}" for name in names)
        + "".join(f"{name + ' ms':>12}" for name in names[1:])
    )
    for r in rounds:
        row = "".join(f"{result['bits'][r, n] / numel[r]:>10.3f}" for n in names)
        row += "".join(f"{1e3 * result['seconds'][r, n]:>12.1f}" for n in names[1:])
        print(f"{r:>5}{row}")
    total = sum(numel.values())
    row = "".join(f"{sum(result['bits'][r, n] for r in rounds) / total:>10.3f}" for n in names)
    row += "".join(f"{1e3 * sum(result['seconds'][r, n] for r in rounds) / len(rounds):>12.1f}" for n in names[1:])
    print(f"{'mean':>5}{row}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payloads", type=Path, help="a folder of saved payloads instead of a new run")
    parser.add_argument("overrides", nargs="*", help="fedmrn-pl config overrides for the run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"date      {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"platform  {platform.platform()} | {platform.processor() or platform.machine()} | {os.cpu_count()} CPUs")
    versions = f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}"
    print(f"versions  {versions}, zstandard {zstandard.__version__ if zstandard else '(not installed)'}")
    with tempfile.TemporaryDirectory() as tmp:
        payload_dir = args.payloads or make_payloads(args.overrides, Path(tmp))
        print(f"payloads  {payload_dir if args.payloads else 'fedmrn-pl fit ' + ' '.join(args.overrides)}")
        report(*measure(payload_dir))


if __name__ == "__main__":
    main()
