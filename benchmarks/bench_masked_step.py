"""Cost of masked noise in one local step: CNN4 plain vs wrapped with apply_masked_noise.

One step is forward + backward + SGD step on the same batch of random 28x28 images.
The plain model trains its weights; the wrapped model trains the updates ``u`` (and
the dense BatchNorm parameters) through ``w + n * M(u, n)`` with PSM at a fixed ``p``.
All variants run in one process and are interleaved block by block, so background
load hits them alike. We report the median and best ms/step and two masked/plain
ratios: of the best blocks, and the median over repeats of the ratio to the plain
block of the same repeat (paired, robust to load that comes and goes). Target <= 1.10 on CPU.

    python benchmarks/bench_masked_step.py [--steps 5] [--repeats 40] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from fedmrn_pl.masking import apply_masked_noise, masked_parametrizations, set_mask_generator, set_mask_probability
from fedmrn_pl.models import build_model
from fedmrn_pl.seeding import make_generator

VARIANTS = [("binary", 0.0), ("binary", 0.5), ("binary", 1.0), ("signed", 0.0), ("signed", 0.5), ("signed", 1.0)]


def make_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float) -> Callable[[], None]:
    """One SGD step over the model's trainable tensors (a fresh optimizer, as each client round has)."""
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    return step


def masked_model(base: nn.Module, kind: str, p: float, device: torch.device) -> nn.Module:
    """A copy of ``base`` wrapped with masked noise, PSM probability ``p`` and a seeded draw stream."""
    model = copy.deepcopy(base)
    apply_masked_noise(model, seed=1234, kind=kind)
    set_mask_probability(model, p)
    set_mask_generator(model, make_generator(5678, device))
    return model.train()


def timed_ms_per_step(step: Callable[[], None], steps: int, device: torch.device) -> float:
    """Wall milliseconds per step over ``steps`` consecutive steps."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1e3 / steps


def tensor_bytes(tensors: list[torch.Tensor]) -> int:
    """Bytes held by ``tensors``."""
    return sum(t.numel() * t.element_size() for t in tensors)


def cuda_peak_bytes(step: Callable[[], None], device: torch.device) -> int:
    """Peak CUDA memory allocated during one step, above what was allocated before it."""
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def main() -> None:
    """Time plain and masked steps, then print machine info, the timing table and the memory figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=40, help="interleaved timed blocks per variant")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps per variant first")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--model", default="cnn4", choices=["cnn4", "cnn8"], help="cnn4 on 1x28x28, cnn8 on 3x32x32")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA GPU; none is visible")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    data = torch.Generator().manual_seed(0)
    channels, size = (1, 28) if args.model == "cnn4" else (3, 32)
    x = torch.randn(args.batch_size, channels, size, size, generator=data).to(device)
    y = torch.randint(0, 10, (args.batch_size,), generator=data).to(device)
    base = build_model(args.model, in_channels=channels, num_classes=10, image_size=size, seed=0).to(device).train()

    models = {"plain": copy.deepcopy(base)}
    models.update({f"{kind} p={p:g}": masked_model(base, kind, p, device) for kind, p in VARIANTS})
    steps = {name: make_step(model, x, y, lr=0.1) for name, model in models.items()}

    for step in steps.values():
        for _ in range(args.warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():  # interleaved: each repeat visits every variant once
            times[name].append(timed_ms_per_step(step, args.steps, device))

    print(f"date      {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"platform  {platform.platform()} | {platform.processor() or platform.machine()} | {os.cpu_count()} CPUs")
    print(
        f"versions  python {platform.python_version()}, torch {torch.__version__}; torch threads {torch.get_num_threads()}"
    )
    if device.type == "cuda":
        print(f"device    {torch.cuda.get_device_name(device)}")
    print(
        f"workload  {args.model.upper()} {channels}x{size}x{size} -> 10, batch {args.batch_size}, SGD lr 0.1, device {device.type}; "
        f"{args.repeats} interleaved blocks of {args.steps} steps after {args.warmup} warm-up steps"
    )
    print()
    plain = times["plain"]
    print("| variant | median ms/step | best ms/step | ratio of best | paired ratio (median) |")
    print("|---|---:|---:|---:|---:|")
    for name, values in times.items():
        paired = statistics.median(v / b for v, b in zip(values, plain))
        print(
            f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {min(values) / min(plain):.3f} | {paired:.3f} |"
        )

    wrapped = models["binary p=0.5"]
    found = masked_parametrizations(wrapped)
    param_bytes = tensor_bytes(list(base.parameters()))
    masked_bytes = tensor_bytes([p.noise for p in found.values()])
    extra = tensor_bytes([p.noise for p in found.values()] + [p.update for p in found.values()])
    print()
    print(
        f"masked    {len(found)} tensors, {sum(p.noise.numel() for p in found.values()):,} of "
        f"{sum(p.numel() for p in base.parameters()):,} parameters"
    )
    print(
        f"memory    model parameters {param_bytes:,} B; noise + update tensors {extra:,} B "
        f"= {extra / param_bytes:.2f}x the parameters ({extra / masked_bytes:.1f}x the masked weights)"
    )
    largest = max(p.noise.numel() * p.noise.element_size() for p in found.values())
    print(
        f"transient per step (from the code, not measured): effective weights kept for backward {masked_bytes:,} B; "
        f"while one layer's PSM mask is computed, 3 temporaries of its size (ratio, draw, sampled), at most {3 * largest:,} B"
    )
    if device.type == "cuda":
        plain_peak = cuda_peak_bytes(steps["plain"], device)
        masked_peak = cuda_peak_bytes(steps["binary p=0.5"], device)
        print(
            f"cuda peak one step above resident: plain {plain_peak:,} B, binary p=0.5 {masked_peak:,} B "
            f"(+{masked_peak - plain_peak:,} B transient)"
        )


if __name__ == "__main__":
    main()
