"""Compressors: each baseline's client-side encoder and server-side decoder of one tensor's update.

A :class:`Compressor` is the pair of functions a low-bit method is made of:
``compress(name, delta, ...)`` on the client and ``decompress(name, tensor, ...)`` on the
server. Thin classes over ``functional``; the wire carries what ``compress`` returns.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

from fedmrn_pl.compressed import CompressedTensor, SignScale, Sparse
from fedmrn_pl.methods.functional import (
    QuantNorm,
    eden_compress,
    eden_decompress,
    padded_length,
    sign_compress,
    stochastic_sign_compress,
    topk_compress,
)

__all__ = ["Compressor", "EdenSign", "ScaledSign", "StochasticSign", "TopK"]


class Compressor(ABC):
    """How a baseline turns one tensor's update into what it uploads, and back.

    ``error_feedback``: the client adds the error of its previous compression (its
    residual) to the next update before compressing it (EF-SignSGD).
    """

    role = "sign_scale"  # the wire role of what ``compress`` returns (see ``wire.TensorSpec``)

    def __init__(self, error_feedback: bool = False) -> None:
        self.error_feedback = bool(error_feedback)

    def wire_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The manifest shape the server expects for a tensor of ``shape``."""
        return tuple(shape)

    @abstractmethod
    def compress(self, name: str, delta: torch.Tensor, seed: int, generator: torch.Generator) -> CompressedTensor:
        """Client side: the upload for ``delta``; ``seed`` is shared with the server, ``generator`` is the client's."""

    def decompress(self, name: str, tensor: CompressedTensor, seed: int, shape: tuple[int, ...]) -> torch.Tensor:
        """Server side: the float32 update ``tensor`` stands for."""
        if isinstance(tensor, SignScale):
            return tensor.dequantize().reshape(shape)
        return tensor.densify()


class ScaledSign(Compressor):
    """SignSGD-style: one sign bit per element, scaled by the tensor's mean ``|delta|``."""

    def compress(self, name: str, delta: torch.Tensor, seed: int, generator: torch.Generator) -> SignScale:
        return sign_compress(delta)


class StochasticSign(Compressor):
    """Unbiased stochastic 1-bit quantisation (QSGD, one level): ``+-s`` with ``E = delta``."""

    def __init__(self, norm: str = "linf", error_feedback: bool = False) -> None:
        super().__init__(error_feedback)
        self.norm = QuantNorm.parse(norm, "quantisation norm")

    def compress(self, name: str, delta: torch.Tensor, seed: int, generator: torch.Generator) -> SignScale:
        return stochastic_sign_compress(delta, generator, self.norm)


class EdenSign(Compressor):
    """EDEN/DRIVE-style: signs of the update after a random Hadamard rotation from the shared seed, one scale."""

    def wire_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (padded_length(math.prod(shape)),)

    def compress(self, name: str, delta: torch.Tensor, seed: int, generator: torch.Generator) -> SignScale:
        return eden_compress(delta, seed, name)

    def decompress(self, name: str, tensor: CompressedTensor, seed: int, shape: tuple[int, ...]) -> torch.Tensor:
        if not isinstance(tensor, SignScale):
            raise TypeError(f"EDEN uploads SignScale tensors, got {type(tensor).__name__} for {name!r}")
        return eden_decompress(tensor, seed, name, shape)


class TopK(Compressor):
    """Top-k sparsification: the ``fraction`` of entries largest in magnitude, as values + indices."""

    role = "sparse"

    def __init__(self, fraction: float = 0.01, error_feedback: bool = False) -> None:
        super().__init__(error_feedback)
        if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
            raise ValueError(f"top-k fraction must be in (0, 1], got {fraction!r}")
        self.fraction = float(fraction)

    def compress(self, name: str, delta: torch.Tensor, seed: int, generator: torch.Generator) -> Sparse:
        return topk_compress(delta, self.fraction)
