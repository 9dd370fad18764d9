"""The uplink wire format: a client update as bytes, and back.

Knows nothing about training: it turns a :class:`~fedmrn_pl.update.ClientUpdate` into
a versioned, checksummed payload (masks entropy-coded or packed 8 per byte, dense
tensors as little-endian values, raw or deflated by byte plane) and validates a received
payload before trusting any of it. The one thing it shares with training is the noise
generator: masks are coded by the magnitude of the noise they select from, which a reader
regenerates from the payload's own header.
Every malformed payload raises :class:`PayloadError`.
"""

from __future__ import annotations

from fedmrn_pl.wire.bits import pack_bits, packed_size, unpack_bits
from fedmrn_pl.wire.dense_coding import DenseEncoding
from fedmrn_pl.wire.errors import PayloadError
from fedmrn_pl.wire.round_message import RoundMessage, decode_round_message, encode_round_message
from fedmrn_pl.wire.format import DEFAULT_MAX_BYTES, MaskEncoding, TensorSpec, decode_update, describe_payload, encode_update, expected_manifest
from fedmrn_pl.wire.layout import (
    CHECKSUM_SIZE,
    FORMAT_VERSION,
    HEADER_SIZE,
    MAGIC,
    manifest_size,
    payload_size,
)

__all__ = [
    "CHECKSUM_SIZE",
    "DEFAULT_MAX_BYTES",
    "DenseEncoding",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "MAGIC",
    "MaskEncoding",
    "PayloadError",
    "RoundMessage",
    "TensorSpec",
    "decode_round_message",
    "decode_update",
    "describe_payload",
    "encode_round_message",
    "encode_update",
    "expected_manifest",
    "manifest_size",
    "pack_bits",
    "packed_size",
    "payload_size",
    "unpack_bits",
]
