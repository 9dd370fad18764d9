"""Compressed tensors: what the low-bit baselines upload instead of masks or dense values.

Shared vocabulary between the baseline encoders (``fedmrn_pl/methods``), the wire format
(which serialises them) and the server strategies (which reconstruct and aggregate them).
Plain data only: the meaning of the bits (a sign, a rotated coordinate) is the method's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["CompressedTensor", "SignScale", "Sparse"]


@dataclass(frozen=True)
class SignScale:
    """1 bit per element and one float32 scale: element ``i`` is ``scale`` if ``signs[i]`` else ``-scale``.

    ``signs`` may have a shape of the method's choosing (a rotated, padded vector for EDEN).
    """

    signs: torch.Tensor  # bool; True = +1
    scale: float  # finite, >= 0, a float32 value

    def __post_init__(self) -> None:
        if not isinstance(self.signs, torch.Tensor) or self.signs.dtype != torch.bool:
            raise TypeError(f"SignScale.signs must be a bool tensor, got {getattr(self.signs, 'dtype', self.signs)!r}")
        scale = float(torch.tensor(float(self.scale), dtype=torch.float32))  # what the wire carries
        if not (math.isfinite(scale) and scale >= 0):
            raise ValueError(f"SignScale.scale must be finite and >= 0, got {self.scale!r}")
        object.__setattr__(self, "scale", abs(scale))  # -0.0 -> 0.0: one encoding per value

    def dequantize(self) -> torch.Tensor:
        """The float32 tensor the bits stand for."""
        return torch.where(self.signs, self.scale, -self.scale).to(torch.float32)


@dataclass(frozen=True)
class Sparse:
    """A few float32 values at ascending flat indices of a tensor of ``shape``; zeros elsewhere."""

    values: torch.Tensor  # float32, (c,)
    indices: torch.Tensor  # int64, (c,), strictly ascending, < numel
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if self.values.dtype != torch.float32 or self.indices.dtype != torch.int64:
            raise TypeError(
                f"Sparse needs float32 values and int64 indices, got {self.values.dtype} and {self.indices.dtype}"
            )
        if self.values.shape != self.indices.shape or self.values.dim() != 1:
            raise ValueError(
                f"Sparse values and indices must be 1-d of one length, got {tuple(self.values.shape)} "
                f"and {tuple(self.indices.shape)}"
            )
        numel = math.prod(self.shape)
        if self.indices.numel() and (
            int(self.indices[0]) < 0 or int(self.indices[-1]) >= numel or bool((self.indices.diff() <= 0).any())
        ):
            raise ValueError(f"Sparse indices must be strictly ascending in [0, {numel})")

    def densify(self) -> torch.Tensor:
        """The float32 tensor of ``shape`` with the values at their indices."""
        flat = torch.zeros(math.prod(self.shape), dtype=torch.float32)
        flat[self.indices] = self.values.to(torch.float32)
        return flat.reshape(self.shape)


CompressedTensor = SignScale | Sparse
