"""Pure functions of FedMRN masking: stochastic masks, PSM and its schedules.

With ``r = u / n`` and ``xi ~ U[0, 1)``:

* binary SM: ``m = clamp(floor(r + xi), 0, 1)``, expectation ``clip(r, 0, 1)``;
* signed SM: ``m = 2 clamp(floor((r + 1) / 2 + xi), 0, 1) - 1``, expectation ``clip(r, -1, 1)``.

PSM uses the SM value per element with probability ``p`` and the expectation
otherwise; the backward pass is straight-through (``d w_eff / d u := 1``).

Speed: uniform draws from a seeded generator dominate the cost on CPU, so PSM takes
one draw ``v`` per element for both choices: ``v < p`` picks SM, and given that,
``xi = v / p`` is again uniform on ``[0, 1)``. With ``xi < 1``, the binary
``clamp(floor(r + xi), 0, 1)`` is simply ``r + xi >= 1``, i.e. ``v + p r >= p``:
no division, and computed in place in the draw's tensor. ``p = 1`` is plain SM.
"""

from __future__ import annotations

import math

import torch

from fedmrn_pl.masking.choices import MaskSampling, Schedule
from fedmrn_pl.update import MaskKind

__all__ = [
    "MaskSampling",
    "Schedule",
    "expected_mask",
    "mask_values",
    "masked_noise",
    "masked_weight",
    "psm_probability",
    "stochastic_mask",
    "threshold_mask",
]


def stochastic_mask(ratio: torch.Tensor, kind: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample an SM mask (float, values {0,1} or {-1,+1}) for ``ratio = u / n``."""
    MaskKind.parse(kind, "mask kind")
    return _psm_mask(ratio, kind, 1.0, generator)  # at p = 1 ``ratio`` is only read


def threshold_mask(ratio: torch.Tensor, kind: str) -> torch.Tensor:
    """The deterministic mask (float, {0,1} or {-1,+1}): the SM mask's expectation rounded to the nearer value."""
    MaskKind.parse(kind, "mask kind")
    if kind == "binary":
        return (ratio.clamp(0.0, 1.0) >= 0.5).to(ratio.dtype)
    return torch.where(ratio.clamp(-1.0, 1.0) >= 0.0, 1.0, -1.0).to(ratio.dtype)


def expected_mask(ratio: torch.Tensor, kind: str) -> torch.Tensor:
    """The SM mask's expectation inside its clip range: ``clip(r, 0, 1)`` or ``clip(r, -1, 1)``."""
    MaskKind.parse(kind, "mask kind")
    return ratio.clamp(0.0, 1.0) if kind == "binary" else ratio.clamp(-1.0, 1.0)


def psm_probability(schedule: str, step: int, total_steps: int) -> float:
    """Probability of using the sampled mask at local ``step`` of ``total_steps`` (0-based)."""
    Schedule.parse(schedule, "PSM schedule")
    if schedule == "constant" or total_steps <= 0:
        return 1.0
    progress = min(max(step / total_steps, 0.0), 1.0)
    if schedule == "linear":
        return progress
    return 0.5 * (1.0 - math.cos(math.pi * progress))


def _sampled(ratio: torch.Tensor, draw: torch.Tensor, kind: str, p: float) -> torch.Tensor:
    """The SM mask with ``xi = draw / p`` (valid where ``draw < p``), in place in ``draw``: no new tensor."""
    scale = p if kind == "binary" else 0.5 * p
    sampled = draw.add_(ratio, alpha=scale).ge_(scale)  # binary r + xi >= 1; signed (r + 1) / 2 + xi >= 1
    return sampled if kind == "binary" else sampled.mul_(2.0).sub_(1.0)


def _psm_mask(ratio: torch.Tensor, kind: str, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """PSM mask from ``ratio = u / n``, which it may overwrite (at ``p < 1``); one draw per element at ``p > 0``."""
    low = 0.0 if kind == "binary" else -1.0
    if p <= 0.0:
        return ratio.clamp_(low, 1.0)
    draw = torch.rand(ratio.shape, generator=generator, device=ratio.device, dtype=ratio.dtype)
    if p >= 1.0:
        return _sampled(ratio, draw, kind, 1.0)
    use_sampled = torch.lt(draw, p, out=torch.empty_like(draw))  # 1.0 where SM is used, else 0.0
    sampled = _sampled(ratio, draw, kind, p)
    # lerp with weights in {0, 1} returns either end exactly; one float kernel (where() on a bool is ~10x slower on CPU)
    return torch.lerp(ratio.clamp_(low, 1.0), sampled, use_sampled, out=ratio)


def mask_values(
    update: torch.Tensor, noise: torch.Tensor, kind: str, p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """PSM mask ``M(u, n)``: per element SM with probability ``p``, else the clipped expectation.

    One uniform draw per element serves both choices (see the module docstring), so
    ``p = 1`` gives exactly ``stochastic_mask`` with the same generator state.
    """
    MaskKind.parse(kind, "mask kind")
    return _psm_mask(update / noise, kind, p, generator)


class _MaskedWeight(torch.autograd.Function):
    """``w + n * M(u, n)`` forward in one fused kernel; straight-through gradient to ``u`` (and ``w``).

    Saves nothing for backward: the temporaries of the mask (ratio, draw) are freed as
    soon as the effective weight exists.
    """

    @staticmethod
    def forward(ctx, weight, update, noise, kind, p, generator):  # type: ignore[override]
        return torch.addcmul(weight, _psm_mask(update / noise, kind, p, generator), noise)

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        grad_weight = grad_output if ctx.needs_input_grad[0] else None
        return grad_weight, grad_output, None, None, None, None


def masked_noise(
    update: torch.Tensor, noise: torch.Tensor, kind: str, p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The masked-noise weight delta ``n * M(u, n)`` with a straight-through gradient to ``update``."""
    zero = torch.zeros((), dtype=noise.dtype, device=noise.device)  # w = 0: the delta alone
    return _MaskedWeight.apply(zero, update, noise, kind, float(p), generator)


def masked_weight(
    weight: torch.Tensor,
    update: torch.Tensor,
    noise: torch.Tensor,
    kind: str,
    p: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The effective weight ``w + n * M(u, n)``: ``weight + masked_noise(...)`` (up to rounding), one kernel and one graph node fewer."""
    return _MaskedWeight.apply(weight, update, noise, kind, float(p), generator)
