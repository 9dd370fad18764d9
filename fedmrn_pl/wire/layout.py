"""The byte layout of an uplink payload, and what it costs.

A payload is four sections, every integer little-endian::

    header    HEADER_SIZE bytes  magic b"FMRN", uint16 version, uint16 flags (0),
                                 uint64 server_round, client_id, seed,
                                 uint8 mask kind, uint8 noise family, float64 alpha,
                                 uint64 num_examples, uint32 tensor count,
                                 uint32 manifest length in bytes
    manifest  per tensor, names in ascending (UTF-8 byte) order:
                                 uint16 name length, UTF-8 name, uint8 encoding,
                                 uint8 ndim, ndim x uint64 dims, uint64 body length
    bodies    in manifest order: masks packed 8 per byte (see ``bits.py``) or
                                 entropy-coded (see ``mask_coding.py``), dense
                                 tensors as raw little-endian float32/float16/int64
                                 or, with DEFLATED set in the encoding byte, those
                                 bytes deflated by byte plane (``dense_coding.py``),
                                 the baselines' sign bits + scale or sparse values
                                 (see ``value_coding.py``)
    checksum  CHECKSUM_SIZE bytes of BLAKE2b over everything before it

The encoding codes (``encodings.py``, one record per encoding) are part of the format:
never renumber them, only append.

Version 2 added the ``coded_mask`` encoding (code 4). A coded body is sent only when it
is shorter than the packed one, so its length is checked to lie in
``[coded_overhead(shape), ceil(numel / 8))``: a mask body is never larger than in
version 1, and a version-1 reader refuses version-2 payloads by their version instead
of by an encoding code it does not know.

Version 3 added deflated dense bodies: bit 7 (``DEFLATED``) of a dense tensor's encoding
byte says its body is the raw bytes split into byte planes and raw-DEFLATEd; the low bits
still name the dtype. A deflated body must be shorter than the raw one and at least
``1 / MAX_DEFLATE_RATIO`` of it; masks never carry the bit. Version 3 also added the
baselines' encodings ``sign_scale`` (code 5: float32 scale + packed sign bits) and
``sparse`` (code 6: float32 values + bit-packed ascending indices). Their manifest shape
is the shape of the bits or of the dense tensor the values belong to.

Version 4 added ``noise_coded_mask`` (code 7): a mask entropy-coded in groups by the
magnitude of the noise it selects from (``context_coding.py``), which the reader
regenerates from the header's seed and noise; the body starts with the CRC-32 of those
contexts. Which coded form a mask may take follows from the header, so the format stays
canonical: an update over uniform noise sends its masks noise-coded or packed, any other
update coded or packed.

Version 5 added two float32s to every mask's manifest entry: the magnitude of the noise
that mask selects from (the header's alpha is the run's base magnitude, which noise
contexts are measured in; a mask's own scale may differ per tensor and round, see
``masking/scales.py``) and the RMS of the client's trained update ``u`` for that tensor,
from which the server sets the next round's scales. A scale must be finite and > 0, or
0.0 for the header's alpha (a run at one magnitude, the paper's); an RMS finite and >= 0.

Version 6 changed the two coded mask bodies, not their codes: the symbols travel in one
rANS stack of 32-bit words with a 64-bit state (``mask_coding.py``, coded by ``constriction``)
instead of up to 32 interleaved lanes of 16-bit words, the groups (kernel positions or noise
contexts) one after another. A body is its probability bytes (after the contexts' CRC-32 for
``noise_coded_mask``) and then at least two uint32 words; no lane states.

An update without masks (mask kind ``none``: FedAvg, the baselines) selects from no noise,
so its header's noise family and alpha are unused; they must be ``UNUSED_NOISE``'s (uniform,
0.01, what every writer puts there), so that such a payload too has one valid form.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Mapping, Sequence

import torch

from fedmrn_pl.update import NoiseSpec
from fedmrn_pl.wire.bits import packed_size
from fedmrn_pl.wire.encodings import ENCODINGS, dtype_name

__all__ = [
    "CHECKSUM_SIZE",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "MAGIC",
    "MAX_NDIM",
    "MAX_NUMEL",
    "UNUSED_NOISE",
    "manifest_size",
    "payload_size",
]

MAGIC = b"FMRN"
FORMAT_VERSION = 6
HEADER = struct.Struct("<4sHHQQQBBdQII")
HEADER_SIZE = HEADER.size  # 58
CHECKSUM_SIZE = 16
MAX_NDIM = 8
MAX_NUMEL = 1 << 48  # bound on the product of a shape's dims (0 counted as 1), keeps strides in int64
MAX_NAME_BYTES = (1 << 16) - 1
UINT64_LIMIT = 1 << 64

NAME_LEN = struct.Struct("<H")
ENCODING_NDIM = struct.Struct("<BB")
UINT64 = struct.Struct("<Q")
MASK_EXTRAS = struct.Struct("<ff")  # a mask entry's noise scale and update RMS

MASK_KIND_CODES = {"binary": 0, "signed": 1, "none": 2}
NOISE_FAMILY_CODES = {"uniform": 0, "gauss": 1, "bernoulli": 2}
UNUSED_NOISE = NoiseSpec()  # the header noise of an update whose masks select from none (dense, baselines, FedPM)
DEFLATED = 0x80  # encoding-byte flag of a deflated dense body; not an encoding of its own


def extent(shape: Sequence[int]) -> int:
    """Product of the dims with 0 counted as 1: what MAX_NUMEL bounds, so strides stay in int64."""
    return math.prod(max(dim, 1) for dim in shape)


def entry_size(name: str, ndim: int, mask: bool = False) -> int:
    """Bytes of one manifest entry (a mask's carries its noise scale and update RMS too)."""
    extras = MASK_EXTRAS.size if mask else 0
    return NAME_LEN.size + len(name.encode("utf-8")) + ENCODING_NDIM.size + UINT64.size * (ndim + 1) + extras


def manifest_size(shapes: Mapping[str, Sequence[int]], masks: Sequence[str] = ()) -> int:
    """Bytes of the manifest describing tensors ``{name: shape}``, of which ``masks`` are masks.

    The per-payload overhead is ``HEADER_SIZE + manifest_size(shapes, masks) + CHECKSUM_SIZE``.
    """
    masked = set(masks)
    return sum(entry_size(name, len(shape), name in masked) for name, shape in shapes.items())


def payload_size(
    masks: Mapping[str, Sequence[int]],
    dense: Mapping[str, tuple[Sequence[int], str | torch.dtype]],
) -> int:
    """Exact size in bytes of the payload ``encode_update(..., mask_encoding="packed")`` writes.

    With ``mask_encoding="coded"`` the payload is this size or smaller (a mask is only
    coded when that is shorter than packing it).

    Args:
        masks: ``{name: shape}`` of the mask tensors.
        dense: ``{name: (shape, dtype)}`` of the dense tensors, dtype as sent on the
            wire (``"float32"``, ``"float16"``, ``"int64"`` or the torch dtype).

    Returns:
        Header + manifest + bodies + checksum bytes.
    """
    dense_encodings = {name: (shape, ENCODINGS[dtype_name(dtype)]) for name, (shape, dtype) in dense.items()}
    shapes = {**dict(masks), **{name: shape for name, (shape, _) in dense_encodings.items()}}
    bodies = sum(packed_size(math.prod(shape)) for shape in masks.values())
    bodies += sum(encoding.raw_size(shape) for shape, encoding in dense_encodings.values())
    return HEADER_SIZE + manifest_size(shapes, list(masks)) + bodies + CHECKSUM_SIZE


def checksum(data: bytes | memoryview) -> bytes:
    """The payload trailer: a 16-byte BLAKE2b digest of ``data``."""
    return hashlib.blake2b(data, digest_size=CHECKSUM_SIZE).digest()
