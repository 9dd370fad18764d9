"""The client update: what one client sends the server after a round.

Shared vocabulary between masking (which produces it), the wire format (which
serialises it) and the server strategies (which aggregate it). Plain data only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fedmrn_pl.choices import Choice

if TYPE_CHECKING:  # annotations only: the config reads the choices here without loading torch
    import torch

    from fedmrn_pl.compressed import CompressedTensor

__all__ = ["DENSE_KIND", "MASK_KINDS", "ClientUpdate", "DenseDtype", "MaskKind", "NoiseFamily", "NoiseSpec"]


class MaskKind(Choice):
    """What a mask bit selects: ``binary`` {0, 1} or ``signed`` {-1, +1} times the noise."""

    binary = "binary"
    signed = "signed"


class NoiseFamily(Choice):
    """The distribution of the noise the masks select from, scaled by alpha."""

    uniform = "uniform"  # U(-alpha, alpha)
    gauss = "gauss"  # alpha * N(0, 1)
    bernoulli = "bernoulli"  # +-alpha


class DenseDtype(Choice):
    """How floating dense tensors (biases, norm parameters, FedAvg weights) travel."""

    float32 = "float32"
    float16 = "float16"


DENSE_KIND = "none"  # the mask kind of an update with no masks (FedAvg-style dense upload)
MASK_KINDS = (*MaskKind.values(), DENSE_KIND)  # every mask kind an update may have


@dataclass(frozen=True)
class NoiseSpec:
    """Which random noise a client's masks select from."""

    family: str = "uniform"  # a NoiseFamily
    alpha: float = 0.01  # magnitude: U(-a, a), a*N(0, 1) or +-a

    def __post_init__(self) -> None:
        object.__setattr__(self, "family", NoiseFamily.parse(self.family, "noise family").value)
        if not (isinstance(self.alpha, (int, float)) and self.alpha > 0 and self.alpha < float("inf")):
            raise ValueError(f"noise alpha must be a finite number > 0, got {self.alpha!r}")


@dataclass
class ClientUpdate:
    """One client's result for one round.

    ``masks`` hold bool tensors: for binary masks True means 1 (keep the noise), for
    signed masks True means +1 and False -1. ``dense`` holds tensors uploaded as they
    are (biases, norm parameters, buffers; every tensor for FedAvg). Floating dense
    tensors are float32 or float16, integer buffers int64. ``compressed`` holds the
    low-bit baselines' tensors (sign bits + scale, sparse values; see ``compressed.py``).
    """

    server_round: int
    client_id: int
    seed: int  # noise seed; the server regenerates each mask's noise from it
    mask_kind: str  # one of MASK_KINDS
    noise: NoiseSpec
    num_examples: int  # the client's training sample count, the aggregation weight
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    dense: dict[str, torch.Tensor] = field(default_factory=dict)
    compressed: dict[str, CompressedTensor] = field(default_factory=dict)
    # Per masked tensor: the noise magnitude it was drawn with (absent: ``noise.alpha``) and the
    # RMS of the client's trained update ``u`` (how far its optimizer wanted the weight to move).
    noise_scales: dict[str, float] = field(default_factory=dict)
    update_rms: dict[str, float] = field(default_factory=dict)

    def noise_for(self, name: str) -> NoiseSpec:
        """The noise mask ``name`` selects from: the update's family at that tensor's scale."""
        scale = self.noise_scales.get(name)
        return self.noise if scale is None else NoiseSpec(self.noise.family, scale)

    def __post_init__(self) -> None:
        if self.mask_kind not in MASK_KINDS:
            raise ValueError(f"mask_kind {self.mask_kind!r} is not valid; choose one of {list(MASK_KINDS)}")
        if self.mask_kind == "none" and self.masks:
            raise ValueError("a dense update (mask_kind='none') cannot carry masks")
        overlap = set(self.masks) & set(self.dense)
        if overlap:
            raise ValueError(f"tensors cannot be both masked and dense: {sorted(overlap)}")
        overlap = set(self.compressed) & (set(self.masks) | set(self.dense))
        if overlap:
            raise ValueError(f"compressed tensors cannot also be masks or dense: {sorted(overlap)}")
        for label, values, in_range, valid in (
            ("noise_scales", self.noise_scales, lambda v: v > 0, "a finite number > 0"),
            ("update_rms", self.update_rms, lambda v: v >= 0, "a finite number >= 0"),
        ):
            stray = sorted(set(values) - set(self.masks))
            if stray:
                raise ValueError(f"{label} names tensors that are not masks: {stray}")
            for name, value in values.items():
                if not (isinstance(value, (int, float)) and math.isfinite(value) and in_range(value)):
                    raise ValueError(f"{label}[{name!r}] = {value!r} is not valid; expected {valid}")
