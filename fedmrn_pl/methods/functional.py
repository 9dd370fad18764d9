"""The math of the low-bit baselines: pure functions on tensors, no training imports.

Each compressor maps a model update ``delta`` (the change a client made to one tensor)
to what it uploads (:class:`SignScale` or :class:`Sparse`) and back. Randomness comes
from an explicit ``torch.Generator`` or a seed, never from global state, so the server
reproduces a client's rotation and a run reproduces bit for bit.
"""

from __future__ import annotations

import math

import torch

from fedmrn_pl.compressed import SignScale, Sparse
from fedmrn_pl.methods.choices import QuantNorm
from fedmrn_pl.seeding import derive_seed, make_generator

__all__ = [
    "MAX_ROTATION_BLOCK",
    "QuantNorm",
    "eden_compress",
    "eden_decompress",
    "fwht",
    "padded_length",
    "rotate",
    "rotation_block",
    "sign_compress",
    "stochastic_sign_compress",
    "topk_compress",
    "topk_count",
    "unrotate",
]

MAX_ROTATION_BLOCK = 1 << 14  # Hadamard blocks of at most 16384 entries: padding stays small


def sign_compress(delta: torch.Tensor) -> SignScale:
    """SignSGD with a scale: ``sign(delta) * mean|delta|`` (zeros count as +)."""
    flat = delta.detach().to("cpu", torch.float32)
    return SignScale(flat >= 0, float(flat.abs().mean()) if flat.numel() else 0.0)


def stochastic_sign_compress(delta: torch.Tensor, generator: torch.Generator, norm: str = "linf") -> SignScale:
    """Unbiased stochastic 1-bit quantisation (QSGD with one level): ``+s`` with probability ``(1 + x/s)/2``, else ``-s``.

    ``s`` is ``max|x|`` (``linf``) or ``||x||_2`` (``l2``); ``E[q] = x`` either way.
    """
    x = delta.detach().to("cpu", torch.float32)
    scale = float(x.abs().max()) if QuantNorm.parse(norm, "norm") is QuantNorm.linf and x.numel() else float(x.norm())
    if scale == 0.0 or not math.isfinite(scale):
        return SignScale(torch.ones(x.shape, dtype=torch.bool), 0.0)
    scale = float(torch.tensor(scale, dtype=torch.float32))  # the wire's float32, so |x| / s <= 1 holds exactly
    probability = ((1.0 + x / scale) / 2.0).clamp_(0.0, 1.0)
    return SignScale(torch.rand(x.shape, generator=generator) < probability, scale)


# ----------------------------------------------------------------- rotation (EDEN/DRIVE)


def rotation_block(numel: int) -> int:
    """Hadamard block size for a tensor of ``numel`` elements: the next power of two, at most MAX_ROTATION_BLOCK."""
    return min(1 << max(0, (numel - 1).bit_length()), MAX_ROTATION_BLOCK)


def padded_length(numel: int) -> int:
    """Length of the rotated vector: ``numel`` padded with zeros to whole Hadamard blocks."""
    block = rotation_block(numel)
    return -(-numel // block) * block


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal fast Walsh-Hadamard transform over the last dim (a power of two); its own inverse."""
    n = x.shape[-1]
    if n & (n - 1):
        raise ValueError(f"fwht needs a power-of-two length, got {n}")
    y = x.reshape(-1, n).clone()
    h = 1
    while h < n:
        y = y.view(-1, n // (2 * h), 2, h)  # (rows, pairs, 2, h)
        a, b = y[:, :, 0, :], y[:, :, 1, :]
        y = torch.stack((a + b, a - b), dim=2).view(-1, n)
        h *= 2
    return (y / math.sqrt(n)).reshape(x.shape)


def _diagonal(seed: int, name: str, length: int) -> torch.Tensor:
    """The random +-1 diagonal of the rotation of tensor ``name``, from the shared seed."""
    generator = make_generator(derive_seed(seed, purpose=f"rotation:{name}"))
    return torch.randint(0, 2, (length,), generator=generator, dtype=torch.float32).mul_(2).sub_(1)


def rotate(delta: torch.Tensor, seed: int, name: str) -> torch.Tensor:
    """``H D x``: pad the flattened tensor to whole blocks, flip signs by ``D``, Hadamard each block."""
    flat = delta.detach().to("cpu", torch.float32).reshape(-1)
    length, block = padded_length(flat.numel()), rotation_block(flat.numel())
    padded = torch.zeros(length)
    padded[: flat.numel()] = flat
    return fwht((padded * _diagonal(seed, name, length)).view(-1, block)).reshape(-1)


def unrotate(z: torch.Tensor, seed: int, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """``D H z`` cut back to ``shape``: the inverse of :func:`rotate`."""
    numel = math.prod(shape)
    block = rotation_block(numel)
    back = fwht(z.to(torch.float32).view(-1, block)).reshape(-1) * _diagonal(seed, name, z.numel())
    return back[:numel].reshape(shape)


def eden_compress(delta: torch.Tensor, seed: int, name: str) -> SignScale:
    """EDEN/DRIVE 1-bit: signs of the rotated update, scaled by ``||x||^2 / ||Rx||_1`` (unbiased over rotations)."""
    z = rotate(delta, seed, name)
    l1 = float(z.abs().sum())
    scale = float(delta.detach().to(torch.float32).pow(2).sum()) / l1 if l1 > 0 else 0.0
    return SignScale(z >= 0, scale)


def eden_decompress(signs: SignScale, seed: int, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The update an EDEN upload stands for: rotate the scaled signs back."""
    if signs.signs.numel() != padded_length(math.prod(shape)):
        raise ValueError(f"EDEN signs for {name!r} have {signs.signs.numel()} entries, expected "
                         f"{padded_length(math.prod(shape))} for shape {shape}")  # fmt: skip
    return unrotate(signs.dequantize().reshape(-1), seed, name, shape)


# ----------------------------------------------------------------------------- top-k


def topk_count(numel: int, fraction: float) -> int:
    """How many entries top-k keeps: ``ceil(fraction * numel)``, at least 1 (0 for an empty tensor)."""
    return min(numel, max(1, math.ceil(fraction * numel))) if numel else 0


def topk_compress(delta: torch.Tensor, fraction: float) -> Sparse:
    """The ``fraction`` of entries largest in magnitude, at ascending indices (ties: lower index first)."""
    flat = delta.detach().to("cpu", torch.float32).reshape(-1)
    count = topk_count(flat.numel(), fraction)
    order = torch.argsort(flat.abs(), descending=True, stable=True)[:count]
    indices = order.sort().values
    return Sparse(flat[indices].contiguous(), indices.to(torch.int64), tuple(delta.shape))
