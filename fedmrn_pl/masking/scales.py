"""Noise that fits each tensor: per-tensor noise magnitudes, set by the server round by round.

A masked weight moves at most ``|n|`` per round. The paper's fixed magnitude (``alpha``
0.01 binary, 0.005 signed) suits its N(0, 0.01)-initialised CNNs behind BatchNorm, not
weights at other scales or optimizers that take other step sizes (Adam moves a weight
~``lr`` per step whatever its gradient). With ``noise_scale="adaptive"`` every client
reports, per masked tensor, the RMS of its trained update ``u``: with the
straight-through gradient ``u`` accumulates the step the client's own optimizer wanted,
clipped or not, so it measures how far a FedAvg client would have moved that tensor.
The server sets the next round's magnitude to ``scale_factor`` times the sample-weighted
mean of those reports, at most ``scale_cap`` times the tensor's own RMS (or alpha, for a
tensor still at zero such as LoRA's B), so a large optimizer step never turns a weight
into noise; the first round uses ``alpha``. Scales travel as float32 both
ways (request and payload), so client and server draw bit-identical noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from fedmrn_pl.masking.choices import NoiseScale

__all__ = ["MAX_NOISE_SCALE", "MIN_NOISE_SCALE", "NoiseScale", "as_wire_scale", "next_noise_scales", "tensor_rms"]

MIN_NOISE_SCALE = 1e-8  # the noise's own floor (``MIN_NOISE_MAGNITUDE``): below it every |n| is the same
MAX_NOISE_SCALE = 1e4  # far above any weight step; keeps a runaway report from producing inf noise


def as_wire_scale(value: float) -> float:
    """``value`` clamped to the valid range and rounded to float32, the precision the payload carries."""
    clamped = min(max(float(value), MIN_NOISE_SCALE), MAX_NOISE_SCALE)
    return float(np.float32(clamped))


@torch.no_grad()
def tensor_rms(tensor: torch.Tensor) -> float:
    """Root mean square of a tensor (a trained update ``u``, a weight), on the CPU in float64 (0.0 if empty)."""
    if tensor.numel() == 0:
        return 0.0
    value = tensor.detach().to("cpu", torch.float64).square().mean().sqrt().item()
    return value if math.isfinite(value) else 0.0


def next_noise_scales(
    reports: Sequence[Mapping[str, float]],
    weights: Sequence[float],
    factor: float,
    previous: Mapping[str, float] | None = None,
    caps: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """The next round's noise magnitude per tensor: ``factor`` x the weighted mean of the reported update RMS.

    Args:
        reports: per accepted client, ``{tensor name: RMS of its update u}``.
        weights: the clients' aggregation weights (sample shares), same order.
        factor: how many update RMS the noise magnitude spans.
        previous: this round's scales, kept for tensors no client reported on.
        caps: per tensor, the largest scale allowed (unlisted: no cap).

    Returns:
        ``{name: scale}``, each a float32 value in ``[MIN_NOISE_SCALE, MAX_NOISE_SCALE]``.
    """
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"scale factor must be a finite number > 0, got {factor!r}")
    scales = dict(previous or {})
    names = sorted({name for report in reports for name in report})
    for name in names:
        having = [(report[name], weight) for report, weight in zip(reports, weights, strict=True) if name in report]
        total = sum(weight for _, weight in having)
        mean = sum(value * weight for value, weight in having) / total if total > 0 else 0.0
        scale = factor * mean
        if caps is not None and name in caps:
            scale = min(scale, caps[name])
        scales[name] = as_wire_scale(scale)
    return scales
