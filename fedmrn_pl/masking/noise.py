"""Seeded random noise: the fixed tensors that client masks select from.

Noise is generated on the CPU with a ``torch.Generator`` seeded from
``(seed, parameter name)`` and only then moved to the target device, so a client on
a GPU and the server on a CPU regenerate bit-identical tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fedmrn_pl.seeding import derive_seed, make_generator
from fedmrn_pl.update import NoiseSpec

__all__ = ["MIN_NOISE_MAGNITUDE", "generate_noise"]

MIN_NOISE_MAGNITUDE = 1e-8  # |n| below this becomes this, keeping u / n finite


def generate_noise(
    seed: int,
    name: str,
    shape: Sequence[int] | torch.Size,
    spec: NoiseSpec,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Noise tensor for parameter ``name`` from a client's noise ``seed``.

    Args:
        seed: the client's noise seed (the one sent in its payload).
        name: the parameter's state-dict name; each parameter gets its own stream.
        shape: the parameter's shape.
        spec: noise family and magnitude ``alpha``.
        device: where the result should live; generation always happens on the CPU.

    Returns:
        A float32 tensor of ``shape`` with no entry smaller than 1e-8 in magnitude.
    """
    generator = make_generator(derive_seed(seed, purpose=f"noise:{name}"))
    shape = tuple(int(d) for d in shape)
    if spec.family == "uniform":
        noise = torch.rand(shape, generator=generator).mul_(2.0).sub_(1.0).mul_(spec.alpha)
    elif spec.family == "gauss":
        noise = torch.randn(shape, generator=generator).mul_(spec.alpha)
    elif spec.family == "bernoulli":
        signs = torch.randint(0, 2, shape, generator=generator, dtype=torch.float32)
        noise = signs.mul_(2.0).sub_(1.0).mul_(spec.alpha)
    else:  # NoiseSpec validates the family; this guards against future additions.
        raise ValueError(f"unknown noise family {spec.family!r}")
    noise = torch.where(noise.abs() < MIN_NOISE_MAGNITUDE, torch.full_like(noise, MIN_NOISE_MAGNITUDE), noise)
    return noise if device is None else noise.to(device)
