"""Pure functions of FedMRN masking: stochastic masks, PSM and its schedules.

With ``r = u / n`` and ``xi ~ U[0, 1)``:

* binary SM: ``m = clamp(floor(r + xi), 0, 1)``, expectation ``clip(r, 0, 1)``;
* signed SM: ``m = 2 clamp(floor((r + 1) / 2 + xi), 0, 1) - 1``, expectation ``clip(r, -1, 1)``.

PSM uses the SM value per element with probability ``p`` and the expectation
otherwise; the backward pass is straight-through (``d w_eff / d u := 1``).
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "MASKED_KINDS",
    "SCHEDULES",
    "expected_mask",
    "mask_values",
    "masked_noise",
    "psm_probability",
    "stochastic_mask",
]

MASKED_KINDS = ("binary", "signed")
SCHEDULES = ("linear", "cosine", "constant")


def _check_kind(kind: str) -> None:
    if kind not in MASKED_KINDS:
        raise ValueError(f"mask kind {kind!r} is not valid; choose one of {list(MASKED_KINDS)}")


def stochastic_mask(ratio: torch.Tensor, kind: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample an SM mask (float, values {0,1} or {-1,+1}) for ``ratio = u / n``."""
    _check_kind(kind)
    xi = torch.rand(ratio.shape, generator=generator, device=ratio.device, dtype=ratio.dtype)
    if kind == "binary":
        return torch.floor(ratio + xi).clamp_(0.0, 1.0)
    return torch.floor((ratio + 1.0) * 0.5 + xi).clamp_(0.0, 1.0).mul_(2.0).sub_(1.0)


def expected_mask(ratio: torch.Tensor, kind: str) -> torch.Tensor:
    """The SM mask's expectation inside its clip range: ``clip(r, 0, 1)`` or ``clip(r, -1, 1)``."""
    _check_kind(kind)
    return ratio.clamp(0.0, 1.0) if kind == "binary" else ratio.clamp(-1.0, 1.0)


def psm_probability(schedule: str, step: int, total_steps: int) -> float:
    """Probability of using the sampled mask at local ``step`` of ``total_steps`` (0-based)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"PSM schedule {schedule!r} is not valid; choose one of {list(SCHEDULES)}")
    if schedule == "constant" or total_steps <= 0:
        return 1.0
    progress = min(max(step / total_steps, 0.0), 1.0)
    if schedule == "linear":
        return progress
    return 0.5 * (1.0 - math.cos(math.pi * progress))


def mask_values(update: torch.Tensor, noise: torch.Tensor, kind: str, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """PSM mask ``M(u, n)``: per element SM with probability ``p``, else the clipped expectation."""
    ratio = update / noise
    if p <= 0.0:
        return expected_mask(ratio, kind)
    sampled = stochastic_mask(ratio, kind, generator)
    if p >= 1.0:
        return sampled
    use_sampled = torch.rand(ratio.shape, generator=generator, device=ratio.device) < p
    return torch.where(use_sampled, sampled, expected_mask(ratio, kind))


class _MaskedNoise(torch.autograd.Function):
    """``n * M(u, n)`` forward, identity gradient to ``u`` backward (straight-through)."""

    @staticmethod
    def forward(ctx, update, noise, kind, p, generator):  # type: ignore[override]
        return mask_values(update, noise, kind, p, generator).mul_(noise)

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        return grad_output, None, None, None, None


def masked_noise(update: torch.Tensor, noise: torch.Tensor, kind: str, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """The masked-noise weight delta ``n * M(u, n)`` with a straight-through gradient to ``update``."""
    return _MaskedNoise.apply(update, noise, kind, float(p), generator)
