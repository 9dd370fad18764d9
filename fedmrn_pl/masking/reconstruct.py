"""The server's side of masking: noise regenerated from a seed, selected by masks."""

from __future__ import annotations

import torch

from fedmrn_pl.masking.noise import generate_noise
from fedmrn_pl.update import MaskKind, NoiseSpec

__all__ = ["mask_to_values", "reconstruct_delta"]


def mask_to_values(mask: torch.Tensor, kind: str) -> torch.Tensor:
    """Bool wire mask -> float values: binary {0, 1}, signed {-1, +1}."""
    MaskKind.parse(kind, "mask kind")
    values = mask.to(torch.float32)
    return values if kind == "binary" else values.mul_(2.0).sub_(1.0)


def reconstruct_delta(
    seed: int,
    name: str,
    mask: torch.Tensor,
    kind: str,
    noise: NoiseSpec,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``n * m`` for one parameter: the weight change a client's mask encodes."""
    target = mask.device if device is None else device
    return generate_noise(seed, name, mask.shape, noise, device=target).mul_(mask_to_values(mask.to(target), kind))
