"""Pack bool masks 8 per byte and back.

Bit order is LSB-first (numpy ``bitorder="little"``): element ``i`` of the flattened
(C-order) mask is bit ``i % 8`` of byte ``i // 8``. A mask of ``n`` elements takes
exactly ``ceil(n / 8)`` bytes; the unused high bits of the last byte are zero.

The decoder rejects non-zero padding bits. Without that check 2**(8 - n % 8) different
byte strings would decode to the same mask, and a flipped padding bit would pass
unnoticed; with it every mask has exactly one encoding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from fedmrn_pl.wire.errors import PayloadError

__all__ = ["check_padding", "count_packed_ones", "pack_bits", "packed_size", "unpack_bits"]

POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.uint8)  # ones per byte
_CHUNK = 1 << 20  # bytes counted at a time, so counting costs no memory in proportion to the mask


def packed_size(numel: int) -> int:
    """Bytes a mask of ``numel`` elements takes on the wire: ``ceil(numel / 8)``."""
    return (numel + 7) // 8


def pack_bits(mask: torch.Tensor) -> bytes:
    """Pack a bool tensor of any shape, device or layout into ``ceil(numel / 8)`` bytes.

    Args:
        mask: bool tensor; flattened in C order. CUDA or non-contiguous tensors are
            copied to contiguous CPU memory first.

    Returns:
        The packed bytes, LSB-first, padding bits zero.

    Raises:
        TypeError: if ``mask`` is not a bool tensor.
    """
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise TypeError(f"pack_bits needs a torch.bool tensor, got {got}")
    flat = mask.detach().to("cpu").contiguous().view(-1).numpy()  # zero-copy for CPU tensors
    return np.packbits(flat, bitorder="little").tobytes()


def unpack_bits(data: bytes | bytearray | memoryview, shape: Sequence[int]) -> torch.Tensor:
    """Unpack bytes made by :func:`pack_bits` into a bool tensor of ``shape``.

    Args:
        data: exactly ``ceil(prod(shape) / 8)`` bytes (a memoryview slice is not copied).
        shape: the mask's shape.

    Returns:
        A new, writeable CPU bool tensor that owns its memory.

    Raises:
        PayloadError: if ``data`` has the wrong length or a padding bit is set.
    """
    shape = tuple(int(d) for d in shape)
    numel = math.prod(shape)
    packed = _checked(data, numel)
    bits = np.unpackbits(packed, count=numel, bitorder="little")  # new uint8 array of 0/1
    return torch.from_numpy(bits.view(np.bool_)).reshape(shape)


def count_packed_ones(data: bytes | bytearray | memoryview, shape: Sequence[int]) -> int:
    """The ones in a mask made by :func:`pack_bits`, checked as :func:`unpack_bits` checks it, without unpacking it.

    Raises:
        PayloadError: if ``data`` has the wrong length or a padding bit is set.
    """
    packed = _checked(data, math.prod(int(d) for d in shape))
    return sum(int(POPCOUNT[packed[lo : lo + _CHUNK]].sum(dtype=np.int64)) for lo in range(0, packed.size, _CHUNK))


def check_padding(last: int, numel: int) -> None:
    """The unused high bits of the last byte of ``numel`` packed bits must be zero: one mask, one encoding."""
    used = numel % 8
    if used and last >> used:
        raise PayloadError(
            f"non-zero padding bits in the last byte of a mask of {numel} elements "
            f"(byte 0x{last:02x}, only the low {used} bits may be set)"
        )


def _checked(data: bytes | bytearray | memoryview, numel: int) -> np.ndarray:
    """``data`` as uint8 (not copied), checked to be the packed length of ``numel`` bits with zero padding bits."""
    packed = np.frombuffer(data, dtype=np.uint8)
    if packed.size != packed_size(numel):
        raise PayloadError(f"packed mask of {numel} elements must be {packed_size(numel)} bytes, got {packed.size}")
    if packed.size:
        check_padding(int(packed[-1]), numel)
    return packed
