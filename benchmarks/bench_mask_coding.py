"""Mask coding on real masks: bits per masked parameter, coding time per round and per client, ResNet-18.

Runs a short fedmrn-pl job with ``save_payloads=true`` into a temporary folder (or reads
payloads you already have, ``--payloads DIR``), decodes every client mask and codes it
again with each candidate: ``packed`` (8 per byte), ``phase`` (our coder, constriction's
rANS, with one probability per kernel position), ``noise`` (the same coder with one
probability per noise context, the noise regenerated from the seed on both sides; what
``encode_update`` sends over uniform noise), each only where shorter than packed, and
general-purpose compressors on the packed bytes (``zlib`` level 9, ``lzma`` preset 9e,
``zstd`` level 19 when the ``zstandard`` package is installed). ``entropy`` is the
per-tensor zeroth-order entropy, the bound for a coder without context. Every candidate
is checked to round-trip.

Then (unless ``--no-resnet``) ResNet-18 (torchvision's, GroupNorm, 11.2M masked parameters):
one FedMRN local epoch of 200 CIFAR-shaped samples on the CPU, and the coded payload of that
client's update encoded and decoded; the ratio of the two is the coder's share of a client.

    python -m benchmarks.bench_mask_coding                      # default job: mnist5k, iid
    python -m benchmarks.bench_mask_coding data.partition=dirichlet data.beta=0.3
    python -m benchmarks.bench_mask_coding --payloads runs/default/payloads --no-resnet
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
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_client_fit import plain_client
from examples.resnet_groupnorm import resnet18_groupnorm, synthetic_cifar
from fedmrn_pl import ClassificationTask, FederatedDataModule, MaskingConfig
from fedmrn_pl.messages import FitRequest
from fedmrn_pl.state import module_state
from fedmrn_pl.update import ClientUpdate
from fedmrn_pl.wire import decode_update, encode_update, pack_bits, unpack_bits
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
        "noise": _or_packed(  # what encode_update sends for masks over uniform noise (format v4 on)
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
    table, numel, clients = codecs(), defaultdict(int), 0
    bits, seconds, split = defaultdict(float), defaultdict(float), defaultdict(float)
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
                middle = time.perf_counter()
                restored = decode(data, shape, contexts)
                seconds[server_round, name] += time.perf_counter() - start
                split[name, "encode"] += middle - start
                split[name, "decode"] += time.perf_counter() - middle
                assert torch.equal(restored, mask), f"{name} does not round-trip {path.name}"
                bits[server_round, name] += 8 * len(data)
        clients += 1
    result = {"bits": bits, "seconds": seconds, "names": ["entropy", *table], "split": split, "clients": clients}
    return result, numel  # noise: dropped unless uniform


def report(result: dict, numel: dict) -> None:
    """Print bits per masked parameter and ms per round (encode + decode of all its clients)."""
    names, rounds = result["names"], sorted(numel)
    print("bits per masked parameter (mean over a round's clients); ms = encode+decode of the round's masks")
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
    for name in names[1:]:
        per_client = {way: 1e3 * result["split"][name, way] / result["clients"] for way in ("encode", "decode")}
        print(f"per client {name:>8}: encode {per_client['encode']:7.2f} ms, decode {per_client['decode']:7.2f} ms")


def resnet18_client(samples: int = 200, batch_size: int = 32) -> None:
    """One FedMRN local epoch of ResNet-18 on ``samples`` images, then its masks coded and decoded.

    ``coded`` codes every mask (``noise`` above: contexts drawn on both sides), the cost of a
    payload whose masks all code shorter than packed, as trained masks do after a few rounds;
    ``payload`` is ``encode_update`` + ``decode_update`` of this client's real update, which
    after one epoch from scratch packs the masks its coder finds no shorter.
    """
    train, test = synthetic_cifar(samples, 0), synthetic_cifar(16, 1)
    data = FederatedDataModule.from_client_datasets([train], test, num_classes=10)
    data.setup()
    module = ClassificationTask(resnet18_groupnorm(), 10, lr=0.1)
    module.log = lambda *a, **k: None  # no Lightning logging in the plain loop
    masking, request = MaskingConfig(), FitRequest(1, 0, samples, seed=123)
    start = time.perf_counter()
    result = plain_client(module, data, masking, module_state(module), request, 1, batch_size, torch.device("cpu"))
    epoch = time.perf_counter() - start
    masks = result["masks"]
    dense = {name: tensor for name, tensor in result["state"].items() if name not in masks}
    update = ClientUpdate(1, 0, request.seed, masking.kind, masking.noise, samples, masks=masks, dense=dense)
    encode_noise, decode_noise = codecs()["noise"]
    timings: dict[str, list[float]] = defaultdict(list)
    coded_bytes = 0
    for _ in range(3):
        coded_bytes = 0
        for way in ("coded encode", "coded decode"):
            timings[way].append(0.0)
        for name, mask in masks.items():
            shape = tuple(mask.shape)

            def contexts(name: str = name, shape: tuple[int, ...] = shape) -> np.ndarray:
                return noise_contexts(update.seed, name, shape, update.noise)

            start = time.perf_counter()
            body = encode_in_contexts(mask, contexts())
            middle = time.perf_counter()
            restored = decode_in_contexts(body, shape, contexts)
            timings["coded encode"][-1] += middle - start
            timings["coded decode"][-1] += time.perf_counter() - middle
            assert torch.equal(restored, mask)
            coded_bytes += len(body)
        start = time.perf_counter()
        payload = encode_update(update)
        middle = time.perf_counter()
        decoded = decode_update(payload)
        timings["payload encode"].append(middle - start)
        timings["payload decode"].append(time.perf_counter() - middle)
    assert all(torch.equal(decoded.masks[name], mask) for name, mask in masks.items())
    best = {way: min(seconds) for way, seconds in timings.items()}
    numel = sum(mask.numel() for mask in masks.values())
    ones = sum(int(mask.sum()) for mask in masks.values()) / numel
    print(f"ResNet-18 (GroupNorm), {numel:,} masked parameters: one FedMRN local epoch of {samples} samples "
          f"(batch {batch_size}, CPU, 1 thread) {epoch:.2f} s; masks {ones:.3f} ones")
    for what, size in (("coded", coded_bytes), ("payload", len(payload))):
        coding = best[f"{what} encode"] + best[f"{what} decode"]
        print(f"  {what:>7}: {size:>10,} bytes ({8 * size / numel:.3f} bits per masked parameter), encode "
              f"{1e3 * best[f'{what} encode']:.0f} ms + decode {1e3 * best[f'{what} decode']:.0f} ms = "
              f"{1e3 * coding:.0f} ms, {coding / epoch:.3f} of the epoch (target for coded: <= 0.1)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payloads", type=Path, help="a folder of saved payloads instead of a new run")
    parser.add_argument("--no-resnet", action="store_true", help="skip the ResNet-18 row (a local epoch: ~10 s)")
    parser.add_argument("overrides", nargs="*", help="fedmrn-pl config overrides for the run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"date      {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"platform  {platform.platform()} | {platform.processor() or platform.machine()} | {os.cpu_count()} CPUs")
    versions = f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}"
    print(f"versions  {versions}, constriction {version('constriction')}, "
          f"zstandard {zstandard.__version__ if zstandard else '(not installed)'}")
    with tempfile.TemporaryDirectory() as tmp:
        payload_dir = args.payloads or make_payloads(args.overrides, Path(tmp))
        print(f"payloads  {payload_dir if args.payloads else 'fedmrn-pl fit ' + ' '.join(args.overrides)}")
        report(*measure(payload_dir))
    if not args.no_resnet:
        resnet18_client()


if __name__ == "__main__":
    main()
