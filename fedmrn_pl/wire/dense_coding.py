"""Lossless coding of dense tensor bodies: byte planes, then raw DEFLATE.

Dense tensors (BatchNorm state, biases) are ~20% of a coded FedMRN payload. Their
floats are not random bytes: the sign/exponent byte of a float32 takes few values
within a tensor. Splitting the little-endian bytes into planes (all byte 0s, then all
byte 1s ...) puts those alike bytes next to each other, and DEFLATE (zlib, stdlib)
shrinks them: 7,712 -> ~6,650 bytes per payload of the default run.

A body is deflated only when that is strictly shorter than the raw bytes. Decoding
accepts any valid raw DEFLATE stream that inflates to exactly the tensor's bytes and
ends exactly at the body's end: different zlib builds (zlib, zlib-ng) write different
streams for the same data, so requiring one compressor's output would refuse valid
payloads from another machine.
"""

from __future__ import annotations

import zlib

import numpy as np

from fedmrn_pl.wire.choices import DenseEncoding
from fedmrn_pl.wire.errors import PayloadError

__all__ = ["MAX_DEFLATE_RATIO", "DenseEncoding", "check_deflated", "deflate_planes", "inflate_planes"]

MAX_DEFLATE_RATIO = 1032  # DEFLATE's largest possible expansion: fewer body bytes cannot hold the tensor
_WBITS = -15  # raw DEFLATE: no zlib header or Adler-32 (the payload has its own checksum)
_CHUNK = 1 << 20  # bytes inflated at a time when only checking


DEFLATE_LEVEL = 6  # CNN4's dense float32 update: level 9 is 5.7x slower for 0.3% fewer bytes (BENCHMARKS.md)


def deflate_planes(raw: bytes, itemsize: int) -> bytes:
    """Byte-plane shuffle of ``raw`` (elements of ``itemsize`` bytes), then raw DEFLATE at ``DEFLATE_LEVEL``."""
    planes = np.frombuffer(raw, dtype=np.uint8).reshape(-1, itemsize).T.tobytes()
    compressor = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, _WBITS, 9)
    return compressor.compress(planes) + compressor.flush()


def inflate_planes(body: bytes | memoryview, itemsize: int, raw_size: int) -> bytes:
    """The inverse of :func:`deflate_planes`: exactly ``raw_size`` bytes, or PayloadError.

    Inflates at most ``raw_size + 1`` bytes whatever the stream claims, so a hostile body
    cannot cost more memory than the tensor it declares.
    """
    planes = _inflate(body, raw_size, keep=True)
    return np.frombuffer(planes, dtype=np.uint8).reshape(itemsize, -1).T.tobytes()


def check_deflated(body: bytes | memoryview, raw_size: int) -> None:
    """Check a deflated body as :func:`inflate_planes` does, inflating it a chunk at a time and keeping nothing.

    Memory does not grow with ``raw_size``, which a body may claim up to MAX_DEFLATE_RATIO times its length.
    """
    _inflate(body, raw_size, keep=False)


def _inflate(body: bytes | memoryview, raw_size: int, keep: bool) -> bytes:
    """Inflate ``body``, which must be one raw DEFLATE stream of exactly ``raw_size`` bytes ending at its end.

    With ``keep`` the bytes are inflated in one call and returned; without, ``_CHUNK`` at a
    time and dropped (``b""`` is returned). Never more than ``raw_size + 1`` bytes are inflated.
    """
    inflater = zlib.decompressobj(_WBITS)
    kept, total, pending = [], 0, body
    try:
        while True:
            limit = raw_size + 1 - total  # >= 1: the loop stops once past raw_size
            planes = inflater.decompress(pending, limit if keep else min(limit, _CHUNK))
            total += len(planes)
            if keep:
                kept.append(planes)
            pending = inflater.unconsumed_tail
            if inflater.eof or total > raw_size or not pending:
                break
    except zlib.error as err:
        raise PayloadError(f"deflated body is corrupt ({err})") from None
    if total != raw_size or not inflater.eof:
        raise PayloadError(f"deflated body inflates to {'more than' if total > raw_size else 'only'} "
                           f"{min(total, raw_size)} bytes{'' if inflater.eof else ' (stream unfinished)'}, "
                           f"expected exactly {raw_size}")  # fmt: skip
    if inflater.unused_data or inflater.unconsumed_tail:
        raise PayloadError(f"deflated body has {len(inflater.unused_data) + len(inflater.unconsumed_tail)} "
                           "bytes after the end of its stream, expected 0")  # fmt: skip
    return b"".join(kept)
