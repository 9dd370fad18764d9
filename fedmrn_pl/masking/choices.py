"""The closed sets of masking settings, torch-free so a config is checked without loading torch."""

from __future__ import annotations

from fedmrn_pl.choices import Choice

__all__ = ["MaskSampling", "NoiseScale", "Schedule"]


class Schedule(Choice):
    """How the PSM probability ``p`` grows over a client's local steps."""

    linear = "linear"  # p = step / total (the paper)
    cosine = "cosine"  # p = (1 - cos(pi * step / total)) / 2
    constant = "constant"  # p = 1: plain stochastic masking (SM)


class MaskSampling(Choice):
    """How the uploaded mask is drawn at the end of local training (PSM during training is unchanged)."""

    stochastic = "stochastic"  # SM: m ~ its Bernoulli (the paper)
    threshold = "threshold"  # ablation: m = 1 where the expected mask >= 0.5 (binary) or >= 0 (signed: +1)


class NoiseScale(Choice):
    """How each masked tensor's noise magnitude is chosen."""

    adaptive = "adaptive"  # per tensor and round: scale_factor x the clients' last update RMS (first round: alpha)
    absolute = "absolute"  # the paper: alpha for every tensor, every round
