"""Cost of masked noise in one local step: a model plain vs wrapped with apply_masked_noise.

One step is forward + backward + SGD step on the same batch of random images (CNN4:
1x28x28; CNN8 and torchvision's ResNet-18: 3x32x32). The plain model trains its
weights; the wrapped model trains the updates ``u`` (and the dense BatchNorm
parameters) through ``w + n * M(u, n)`` with PSM at a fixed ``p``, one mask per step
(``begin_mask_step`` / ``end_mask_step``, as a client does). All variants run in one
process and are interleaved block by block, so background load hits them alike. We
report the median and best ms/step and two masked/plain ratios: of the best blocks,
and the median over repeats of the ratio to the plain block of the same repeat (paired,
robust to load that comes and goes). Targets: CNN4 <= 1.10x; ResNet-18 <= 1.25x at p = 0.5.

Memory: the training increment of one step, i.e. the peak of tensor bytes allocated
during the step above those allocated just before it (grads set to None first). On
CUDA from the allocator's peak statistics; on CPU, which keeps none, from the torch
profiler's allocation timeline (``profile_memory``: every tensor allocation and free
of the step, summed in time order), so the figure counts tensors, not allocator
caching or RSS. Resident tensors (weights, noise, ``u``) are outside the increment and
printed apart. Target for ResNet-18: <= 1.5x the plain step's increment.

    python benchmarks/bench_masked_step.py [--model cnn4|cnn8|resnet18] [--steps 5] [--repeats 40] [--device cpu|cuda]
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

from fedmrn_pl.masking import (
    apply_masked_noise,
    begin_mask_step,
    end_mask_step,
    masked_parametrizations,
    set_mask_generator,
    set_mask_probability,
)
from fedmrn_pl.models import build_model
from fedmrn_pl.seeding import make_generator

VARIANTS = [("binary", 0.0), ("binary", 0.5), ("binary", 1.0), ("signed", 0.0), ("signed", 0.5), ("signed", 1.0)]


MODELS = {"cnn4": (1, 28), "cnn8": (3, 32), "resnet18": (3, 32)}  # name -> input channels, image size


def build(name: str, channels: int, size: int) -> nn.Module:
    """The benchmarked model, seeded: the project's CNNs, or torchvision's ResNet-18 (11.2M masked weights)."""
    if name == "resnet18":
        import torchvision

        torch.manual_seed(0)
        return torchvision.models.resnet18(num_classes=10)
    return build_model(name, in_channels=channels, num_classes=10, image_size=size, seed=0)


def make_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float) -> Callable[[], None]:
    """One SGD step over the model's trainable tensors (a fresh optimizer, as each client round has)."""
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    masked = bool(masked_parametrizations(model))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        if masked:
            begin_mask_step(model)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        if masked:
            end_mask_step(model)

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


def cpu_peak_bytes(step: Callable[[], None]) -> int:
    """Peak tensor bytes allocated during one step above those allocated before it, from the profiler's timeline."""
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Action

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        step()
    current = peak = 0
    for _, action, (key, _), size in prof._memory_profile().timeline:
        if key.device.type != "cpu":
            continue
        if action == Action.CREATE:  # an allocation during the step (PREEXISTING ones are the baseline)
            current += size
        elif action == Action.DESTROY:
            current -= size
        peak = max(peak, current)
    return peak


def step_peak_bytes(step: Callable[[], None], model: nn.Module, device: torch.device) -> int:
    """The step's training memory increment on ``device`` (see the module docstring), from a state without grads."""
    for parameter in model.parameters():
        parameter.grad = None
    return cuda_peak_bytes(step, device) if device.type == "cuda" else cpu_peak_bytes(step)


def main() -> None:
    """Time plain and masked steps, then print machine info, the timing table and the memory figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=40, help="interleaved timed blocks per variant")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps per variant first")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--model", default="cnn4", choices=sorted(MODELS), help="cnn4 on 1x28x28, the others on 3x32x32")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA GPU; none is visible")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    data = torch.Generator().manual_seed(0)
    channels, size = MODELS[args.model]
    x = torch.randn(args.batch_size, channels, size, size, generator=data).to(device)
    y = torch.randint(0, 10, (args.batch_size,), generator=data).to(device)
    base = build(args.model, channels, size).to(device).train()

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
    peaks = {name: step_peak_bytes(step, models[name], device) for name, step in steps.items()}
    plain = times["plain"]
    print("| variant | median ms/step | best ms/step | ratio of best | paired ratio (median) | step memory increment | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, values in times.items():
        paired = statistics.median(v / b for v, b in zip(values, plain))
        print(
            f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {min(values) / min(plain):.3f} | {paired:.3f} "
            f"| {peaks[name] / 2**20:.1f} MiB | {peaks[name] / peaks['plain']:.2f} |"
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
    print(
        "step memory increment: peak tensor bytes allocated during one step above those allocated before it "
        + ("(CUDA allocator peak)" if device.type == "cuda" else "(torch profiler allocation timeline)")
    )


if __name__ == "__main__":
    main()
