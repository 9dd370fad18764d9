"""Bodies of the baselines' tensors: sign bits with a scale, and sparse values with bit-packed indices.

``sign_scale``  float32 scale (little-endian, finite, >= 0), then the signs packed 8 per
                byte as ``bits.py`` packs masks: ``4 + ceil(numel / 8)`` bytes.
``sparse``      ``c`` float32 values (finite), then ``c`` flat indices, strictly ascending,
                each in ``index_bits(numel)`` bits, packed LSB-first, padding bits zero:
                ``4c + ceil(c * index_bits / 8)`` bytes. ``c`` is not sent: the body
                length determines it (:func:`sparse_count`), so no count can disagree.

Both are canonical: one tensor, one body. Decoders refuse anything else with PayloadError.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from fedmrn_pl.compressed import SignScale, Sparse
from fedmrn_pl.wire.bits import count_packed_ones, pack_bits, packed_size, unpack_bits
from fedmrn_pl.wire.errors import PayloadError

__all__ = [
    "check_sign_scale",
    "decode_sign_scale",
    "decode_sparse",
    "encode_sign_scale",
    "encode_sparse",
    "index_bits",
    "sign_scale_size",
    "sparse_count",
    "sparse_size",
]

_SCALE = np.dtype("<f4")


def index_bits(numel: int) -> int:
    """Bits per sparse index for a tensor of ``numel`` elements: enough for ``numel - 1``, at least 1."""
    return max(1, (numel - 1).bit_length())


def sign_scale_size(numel: int) -> int:
    """Body bytes of a ``sign_scale`` tensor."""
    return _SCALE.itemsize + packed_size(numel)


def sparse_size(count: int, numel: int) -> int:
    """Body bytes of a ``sparse`` tensor with ``count`` kept values."""
    return 4 * count + (count * index_bits(numel) + 7) // 8


def sparse_count(size: int, numel: int) -> int | None:
    """The value count a ``sparse`` body of ``size`` bytes holds, or None if no count gives that size."""
    bits = index_bits(numel)
    guess = 8 * size // (32 + bits)  # sparse_size is increasing: only guess and guess - 1 can fit
    for count in (guess, guess - 1):
        if 0 <= count <= numel and sparse_size(count, numel) == size:
            return count
    return None


def encode_sign_scale(tensor: SignScale) -> bytes:
    """The ``sign_scale`` body of ``tensor``."""
    return np.array([tensor.scale], dtype=_SCALE).tobytes() + pack_bits(tensor.signs)


def decode_sign_scale(body: bytes | memoryview, shape: Sequence[int]) -> SignScale:
    """Read a ``sign_scale`` body of a tensor of ``shape`` (its length already checked)."""
    scale = _scale(body)
    return SignScale(unpack_bits(body[_SCALE.itemsize :], shape), scale)


def check_sign_scale(body: bytes | memoryview, shape: Sequence[int]) -> None:
    """Check a ``sign_scale`` body as :func:`decode_sign_scale` does, without unpacking its bits."""
    _scale(body)
    count_packed_ones(body[_SCALE.itemsize :], shape)


def _scale(body: bytes | memoryview) -> float:
    """A ``sign_scale`` body's scale: finite, >= 0 and not -0.0, so one tensor has one body."""
    scale = float(np.frombuffer(body[: _SCALE.itemsize], dtype=_SCALE)[0])
    if not (math.isfinite(scale) and scale >= 0) or math.copysign(1.0, scale) < 0:
        raise PayloadError(f"sign scale is {scale!r}, expected a finite float32 >= 0 (and not -0.0)")
    return scale


def encode_sparse(tensor: Sparse) -> bytes:
    """The ``sparse`` body of ``tensor``."""
    bits = index_bits(math.prod(tensor.shape))
    values = tensor.values.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4", copy=False)
    indices = tensor.indices.detach().to("cpu").numpy().astype(np.uint64)
    planes = ((indices[:, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
    return values.tobytes() + np.packbits(planes.reshape(-1), bitorder="little").tobytes()


def decode_sparse(body: bytes | memoryview, shape: Sequence[int]) -> Sparse:
    """Read a ``sparse`` body of a tensor of ``shape`` (its length already checked to fit a count)."""
    shape = tuple(int(d) for d in shape)
    numel = math.prod(shape)
    count = sparse_count(len(body), numel)
    if count is None:
        raise PayloadError(f"sparse body of {len(body)} bytes fits no value count for {numel} elements")
    bits = index_bits(numel)
    values = np.frombuffer(body[: 4 * count], dtype="<f4").astype(np.float32)
    if not np.isfinite(values).all():
        raise PayloadError("sparse values hold non-finite numbers")
    packed = np.frombuffer(body[4 * count :], dtype=np.uint8)
    used = (count * bits) % 8
    if used and packed[-1] >> used:
        raise PayloadError(f"non-zero padding bits after the {count} sparse indices of {bits} bits")
    indices = _unpack_indices(packed, count, bits)
    if count and (indices[-1] >= numel or (np.diff(indices) <= 0).any()):
        raise PayloadError(f"sparse indices must be strictly ascending and below {numel}")
    return Sparse(torch.from_numpy(values.copy()), torch.from_numpy(indices), shape)


def _unpack_indices(packed: np.ndarray, count: int, bits: int) -> np.ndarray:
    """``count`` indices of ``bits`` bits each, LSB-first: each read from the 8 bytes its first bit falls in.

    ``bits <= 48`` (MAX_NUMEL) and a bit offset within a byte is < 8, so an index lies inside one
    little-endian uint64 window; ~40 bytes of memory per index, not 16 per index bit.
    """
    offsets = np.arange(count, dtype=np.int64) * bits
    padded = np.concatenate([packed, np.zeros(8, dtype=np.uint8)])  # the last windows may run past the body
    windows = np.lib.stride_tricks.sliding_window_view(padded, 8)[offsets >> 3]  # (count, 8): a copy, rows contiguous
    words = windows.view("<u8").reshape(-1)
    return ((words >> (offsets & 7).astype(np.uint64)) & np.uint64((1 << bits) - 1)).astype(np.int64)
