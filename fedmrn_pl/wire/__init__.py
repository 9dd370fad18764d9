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

from fedmrn_pl._lazy import lazy_exports

# Names load on first use, so the config (which types fields with ``MaskEncoding`` and
# ``DenseEncoding``) does not pull in torch.
_EXPORTS = {
    "CHECKSUM_SIZE": "fedmrn_pl.wire.layout",
    "DEFAULT_MAX_BYTES": "fedmrn_pl.wire.format",
    "DenseEncoding": "fedmrn_pl.wire.choices",
    "FORMAT_VERSION": "fedmrn_pl.wire.layout",
    "HEADER_SIZE": "fedmrn_pl.wire.layout",
    "MAGIC": "fedmrn_pl.wire.layout",
    "MaskEncoding": "fedmrn_pl.wire.choices",
    "PayloadError": "fedmrn_pl.wire.errors",
    "RoundMessage": "fedmrn_pl.wire.round_message",
    "TensorSpec": "fedmrn_pl.wire.format",
    "UNUSED_NOISE": "fedmrn_pl.wire.layout",
    "decode_round_message": "fedmrn_pl.wire.round_message",
    "decode_update": "fedmrn_pl.wire.format",
    "describe_payload": "fedmrn_pl.wire.format",
    "encode_round_message": "fedmrn_pl.wire.round_message",
    "encode_update": "fedmrn_pl.wire.format",
    "expected_manifest": "fedmrn_pl.wire.format",
    "manifest_size": "fedmrn_pl.wire.layout",
    "pack_bits": "fedmrn_pl.wire.bits",
    "packed_size": "fedmrn_pl.wire.bits",
    "payload_size": "fedmrn_pl.wire.layout",
    "unpack_bits": "fedmrn_pl.wire.bits",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
