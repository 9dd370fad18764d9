"""Settings of FedMRN masking, in one validated object."""

from __future__ import annotations

from dataclasses import dataclass, field

from fedmrn_pl.masking.functional import MaskSampling, Schedule
from fedmrn_pl.masking.selection import ParameterSelector
from fedmrn_pl.update import MaskKind, NoiseSpec

__all__ = ["MaskingConfig", "default_alpha"]


def default_alpha(kind: MaskKind | str) -> float:
    """The paper's noise magnitude: 0.01 for binary masks, 0.005 for signed ones."""
    return 0.01 if kind == "binary" else 0.005


@dataclass(frozen=True)
class MaskingConfig:
    """How clients mask: mask kind, noise, PSM schedule and which parameters."""

    kind: MaskKind = MaskKind.binary  # "binary" {0,1} or "signed" {-1,+1}
    noise: NoiseSpec = field(default_factory=NoiseSpec)  # family and alpha
    schedule: Schedule = Schedule.linear  # PSM: "linear" (paper), "cosine", "constant" (plain SM)
    selector: ParameterSelector = field(default_factory=ParameterSelector)  # what is masked
    sampling: MaskSampling = MaskSampling.stochastic  # uploaded mask: sampled (paper) or "threshold" (ablation)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", MaskKind.parse(self.kind, "mask kind"))
        object.__setattr__(self, "schedule", Schedule.parse(self.schedule, "PSM schedule"))
        object.__setattr__(self, "sampling", MaskSampling.parse(self.sampling, "mask sampling"))
