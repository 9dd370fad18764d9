"""Every payload encoding in one table: its code, its role, its size rule, its writer and its readers.

An encoding is how one tensor's body is written: the byte in its manifest entry names it.
``ENCODINGS`` holds one :class:`Encoding` per name, in code order; the parser, the writer,
the decoder and ``describe_payload`` look an entry's encoding up there instead of testing
for names, so adding an encoding is one record here (its codec in a module of its own, such
as ``value_coding.py``) and a ``FORMAT_VERSION`` bump in ``layout.py``.

Codes are part of the format: never renumber them, only append, below ``DEFLATED`` (0x80).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from fedmrn_pl.compressed import SignScale, Sparse
from fedmrn_pl.update import NoiseSpec
from fedmrn_pl.wire.bits import count_packed_ones, pack_bits, packed_size, unpack_bits
from fedmrn_pl.wire.context_coding import noise_context_chunks, noise_contexts, uses_contexts
from fedmrn_pl.wire.errors import PayloadError
from fedmrn_pl.wire.mask_coding import (
    MAX_SYMBOLS_PER_BYTE,
    coded_overhead,
    context_overhead,
    count_mask_ones,
    count_ones_in_contexts,
    decode_in_contexts,
    decode_mask,
    encode_in_contexts,
    encode_mask,
)
from fedmrn_pl.wire.value_coding import (
    check_sign_scale,
    decode_sign_scale,
    decode_sparse,
    encode_sign_scale,
    encode_sparse,
    sign_scale_size,
    sparse_count,
)

__all__ = ["DENSE", "DENSE_DTYPES", "ENCODINGS", "MASK", "ROLES", "BodyContext", "Encoding", "dtype_name"]

MASK = "mask"  # the role of a mask's encodings: the server regenerates its noise from the header
DENSE = "dense"  # the role of raw values; any other role is a compressed tensor's (``fedmrn_pl.compressed``)

Body = bytes | memoryview
SizeRule = Callable[[str, tuple[int, ...], int], None]  # (tensor name, shape, body length): PayloadError if unfit


@dataclass(frozen=True)
class BodyContext:
    """What a codec may need besides the body: the tensor's name and manifest shape, the header's seed and noise.

    Noise-coded masks regenerate their contexts from all four; the other codecs use the shape.
    """

    name: str
    shape: tuple[int, ...]
    seed: int
    noise: NoiseSpec


def _own_shape(value: Any) -> tuple[int, ...]:
    """A tensor's (or a ``Sparse``'s) manifest shape: its own."""
    return tuple(value.shape)


@dataclass(frozen=True)
class Encoding:
    """One payload encoding: how a body is sized, written and read.

    ``check_size(name, shape, size)`` refuses, while the manifest is parsed, a body length
    that does not fit the shape. ``encode(value, context)`` writes the body of an in-memory
    value; ``decode(body, context)`` reads it back, validating everything and raising
    PayloadError. ``check(body, context)`` runs decode's checks for ``describe_payload``
    without holding the decoded tensor (memory must not grow with the declared shape) and
    returns a mask's number of ones (None for other roles).
    """

    name: str
    code: int  # the manifest byte; part of the format
    role: str  # what the server expects the tensor as (``TensorSpec.role``): MASK, DENSE or a compressed kind
    check_size: SizeRule
    encode: Callable[[Any, BodyContext], bytes]
    decode: Callable[[Body, BodyContext], Any]
    check: Callable[[Body, BodyContext], int | None]
    dtype: torch.dtype | None = None  # dense: the values' dtype; such bodies may also travel deflated by byte plane
    value_type: type | None = None  # compressed: the dataclass a writer sends in this encoding
    shape_of: Callable[[Any], tuple[int, ...]] = _own_shape  # a value's manifest shape
    # masks: the header noises this coded form codes masks over (None: any, the packed form, which
    # every writer may send). At most one coded form fits a noise, so a mask has one valid body.
    for_noise: Callable[[NoiseSpec], bool] | None = None
    # whether describe_payload's max_elements bound counts the shape's elements; not a sparse tensor's
    # zeros, which are neither sent nor allocated
    counts_elements: bool = True

    def raw_size(self, shape: Sequence[int]) -> int:
        """Bytes of a dense encoding's body of ``shape`` before deflating: what a deflated body must inflate to."""
        return math.prod(shape) * self.dtype.itemsize


def _exact_size(size_of: Callable[[int], int], what: str) -> SizeRule:
    """A body of exactly ``size_of(numel)`` bytes; ``what`` (its ``{shape}`` filled in) ends the refusal."""

    def check(name: str, shape: tuple[int, ...], size: int) -> None:
        expected = size_of(math.prod(shape))
        if size != expected:
            raise PayloadError(
                f"tensor {name!r} body length is {size} bytes, expected {expected} {what.format(shape=shape)}"
            )

    return check


def _coded_size(overhead: Callable[[Sequence[int]], int]) -> SizeRule:
    """A coded mask: shorter than packing it, and no more than MAX_SYMBOLS_PER_BYTE packed bytes per body byte.

    A coded body may legitimately be ~200x smaller than its packed mask; one claiming more is
    refused before it is decoded.
    """

    def check(name: str, shape: tuple[int, ...], size: int) -> None:
        packed = packed_size(math.prod(shape))
        low = max(overhead(shape), -(-packed // MAX_SYMBOLS_PER_BYTE))
        if not low <= size < packed:
            raise PayloadError(
                f"tensor {name!r} coded mask body length is {size} bytes, expected at least {low} and fewer than "
                f"the {packed} bytes of packing shape {shape} (a mask is only coded when that is shorter)"
            )

    return check


def _sparse_size(name: str, shape: tuple[int, ...], size: int) -> None:
    """A ``sparse`` body: a length that some value count gives (the count itself is not sent)."""
    if sparse_count(size, math.prod(shape)) is None:
        raise PayloadError(
            f"tensor {name!r} sparse body length {size} bytes matches no count of float32 values and "
            f"indices for shape {shape}"
        )


def _by_shape(codec: Callable[[Body, tuple[int, ...]], Any]) -> Callable[[Body, BodyContext], Any]:
    """A reader that needs only the manifest shape."""
    return lambda body, at: codec(body, at.shape)


def _by_value(codec: Callable[[Any], bytes]) -> Callable[[Any, BodyContext], bytes]:
    """A writer that needs only the value."""
    return lambda value, at: codec(value)


def _contexts(at: BodyContext) -> np.ndarray:
    """The noise contexts of the tensor at ``at``, regenerated from its header's seed and noise."""
    return noise_contexts(at.seed, at.name, at.shape, at.noise)


def _check_sparse(body: Body, shape: tuple[int, ...]) -> None:
    """Decode a sparse body and drop it: values and indices are a few times the body, never the dense tensor."""
    decode_sparse(body, shape)


def _dense(name: str, code: int, dtype: torch.dtype, wire: str) -> Encoding:
    """The encoding of raw ``dtype`` values, ``wire`` their little-endian numpy dtype."""

    def encode(tensor: torch.Tensor, at: BodyContext) -> bytes:
        array = tensor.detach().to("cpu", dtype).contiguous().numpy()
        return array.astype(wire, copy=False).tobytes()

    def decode(body: Body, at: BodyContext) -> torch.Tensor:
        values = np.frombuffer(body, dtype=wire)
        return torch.from_numpy(values.astype(values.dtype.newbyteorder("="))).reshape(at.shape)  # a native copy

    size = _exact_size(lambda numel: numel * dtype.itemsize, f"for shape {{shape}} encoded as {name}")
    return Encoding(name, code, DENSE, size, encode=encode, decode=decode, check=lambda body, at: None, dtype=dtype)


_TABLE = (
    Encoding(
        "mask", 0, MASK, _exact_size(packed_size, "for shape {shape} encoded as mask"),
        encode=_by_value(pack_bits), decode=_by_shape(unpack_bits), check=_by_shape(count_packed_ones),
    ),
    _dense("float32", 1, torch.float32, "<f4"),
    _dense("float16", 2, torch.float16, "<f2"),
    _dense("int64", 3, torch.int64, "<i8"),
    Encoding(
        "coded_mask", 4, MASK, _coded_size(coded_overhead),
        encode=_by_value(encode_mask), decode=_by_shape(decode_mask), check=_by_shape(count_mask_ones),
        for_noise=lambda noise: not uses_contexts(noise),
    ),
    Encoding(
        "sign_scale", 5, "sign_scale", _exact_size(sign_scale_size, "(float32 scale + packed signs) for shape {shape}"),
        encode=_by_value(encode_sign_scale), decode=_by_shape(decode_sign_scale), check=_by_shape(check_sign_scale),
        value_type=SignScale, shape_of=lambda value: tuple(value.signs.shape),
    ),
    Encoding(
        "sparse", 6, "sparse", _sparse_size,
        encode=_by_value(encode_sparse), decode=_by_shape(decode_sparse), check=_by_shape(_check_sparse),
        value_type=Sparse, counts_elements=False,
    ),
    Encoding(
        "noise_coded_mask", 7, MASK, _coded_size(context_overhead),
        encode=lambda mask, at: encode_in_contexts(mask, _contexts(at)),
        decode=lambda body, at: decode_in_contexts(body, at.shape, lambda: _contexts(at)),
        check=lambda body, at: count_ones_in_contexts(
            body, at.shape, lambda: noise_context_chunks(at.seed, at.name, at.shape, at.noise)
        ),
        for_noise=uses_contexts,
    ),
)  # fmt: skip

ENCODINGS: Mapping[str, Encoding] = MappingProxyType({encoding.name: encoding for encoding in _TABLE})
ROLES = tuple(dict.fromkeys(encoding.role for encoding in _TABLE))  # mask, dense, then the compressed kinds
DENSE_DTYPES = tuple(encoding.name for encoding in _TABLE if encoding.role == DENSE)


def dtype_name(dtype: str | torch.dtype) -> str:
    """``"float32"`` for ``torch.float32`` or ``"float32"``; ValueError if not a dense wire dtype."""
    name = str(dtype).removeprefix("torch.")
    if name not in DENSE_DTYPES:
        raise ValueError(f"dense dtype {dtype!r} cannot be sent; choose one of {list(DENSE_DTYPES)}")
    return name
