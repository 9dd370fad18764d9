"""Settings of FedMRN masking, in one validated object."""

from __future__ import annotations

from dataclasses import dataclass, field

import math

from fedmrn_pl.masking.choices import MaskSampling, NoiseScale, Schedule
from fedmrn_pl.masking.selection import ParameterSelector
from fedmrn_pl.update import MaskKind, NoiseSpec

__all__ = ["MaskingConfig", "default_alpha"]


def default_alpha(kind: MaskKind | str) -> float:
    """The paper's noise magnitude: 0.01 for binary masks, 0.005 for signed ones."""
    return 0.01 if kind == "binary" else 0.005


@dataclass(frozen=True)
class MaskingConfig:
    """How clients mask: mask kind, noise, PSM schedule and which parameters.

    The defaults are the setting that learns on any architecture (signed masks over noise
    whose magnitude follows each tensor's updates, see ``masking/scales.py``). The paper's
    setting is ``MaskingConfig(kind="binary", noise_scale="absolute")``.
    """

    kind: MaskKind = MaskKind.signed  # "signed" {-1,+1} or "binary" {0,1} (the paper's CNNs)
    noise: NoiseSpec = field(default_factory=NoiseSpec)  # family, and alpha: the magnitude (adaptive: of round 1)
    schedule: Schedule = Schedule.linear  # PSM: "linear" (paper), "cosine", "constant" (plain SM)
    selector: ParameterSelector = field(default_factory=ParameterSelector)  # what is masked
    sampling: MaskSampling = MaskSampling.stochastic  # uploaded mask: sampled (paper) or "threshold" (ablation)
    noise_scale: NoiseScale = NoiseScale.adaptive  # "adaptive" per tensor and round, or "absolute" alpha (paper)
    scale_factor: float = 5.0  # adaptive: noise magnitude = scale_factor x the clients' last update RMS
    scale_cap: float = 2.0  # adaptive: at most scale_cap x the tensor's weight RMS (or x alpha, if larger)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", MaskKind.parse(self.kind, "mask kind"))
        object.__setattr__(self, "noise_scale", NoiseScale.parse(self.noise_scale, "noise scale"))
        for label, value, default in (("scale_factor", self.scale_factor, 5.0), ("scale_cap", self.scale_cap, 2.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
                raise ValueError(f"{label} must be a finite number > 0 (default {default}), got {value!r}")
        object.__setattr__(self, "schedule", Schedule.parse(self.schedule, "PSM schedule"))
        object.__setattr__(self, "sampling", MaskSampling.parse(self.sampling, "mask sampling"))
