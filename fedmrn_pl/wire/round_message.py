"""The downlink round message: what a client needs to rebuild a round's global model.

FedMRN's new global model is ``w + sum_k (N_k/N) n_k * m_k``: it follows from the
previous model and the round's accepted uplink payloads (seed, masks, dense tensors,
sample count each). So instead of the dense model the server can send those payloads,
and a client that holds the previous model replays the aggregation. The message also
carries the SHA-256 of the model the server got, so the client can check its rebuild.
Knows nothing about training; the payloads inside are validated by ``decode_update``.

Layout, every integer little-endian::

    header    ROUND_HEADER_SIZE bytes: magic b"FMRD", uint16 version, uint16 flags (0),
              uint64 server_round, 32 bytes SHA-256 of the new global model,
              uint32 payload count
    payloads  per payload: uint64 length, the uplink payload's bytes (in aggregation order)
    checksum  CHECKSUM_SIZE bytes of BLAKE2b over everything before it

A round that kept the previous model (too few valid updates) has no payloads.
"""

from __future__ import annotations

import hmac
import operator
import struct
from dataclasses import dataclass

from fedmrn_pl.wire.errors import PayloadError
from fedmrn_pl.wire.format import DEFAULT_MAX_BYTES
from fedmrn_pl.wire.layout import CHECKSUM_SIZE, UINT64, UINT64_LIMIT, checksum

__all__ = ["ROUND_HEADER_SIZE", "ROUND_MAGIC", "RoundMessage", "decode_round_message", "encode_round_message"]

ROUND_MAGIC = b"FMRD"
ROUND_VERSION = 1
ROUND_HEADER = struct.Struct("<4sHHQ32sI")
ROUND_HEADER_SIZE = ROUND_HEADER.size  # 52
SHA256_SIZE = 32


@dataclass(frozen=True)
class RoundMessage:
    """One round's downlink: the aggregated uplink payloads and the resulting model's SHA-256."""

    server_round: int
    model_sha256: bytes  # 32 raw bytes
    payloads: tuple[bytes, ...]


def encode_round_message(server_round: int, model_sha256: bytes, payloads: list[bytes] | tuple[bytes, ...]) -> bytes:
    """Serialise a round message (no pickle).

    Raises:
        ValueError: the round does not fit uint64, or the digest is not 32 bytes.
    """
    number = -1 if isinstance(server_round, bool) else operator.index(server_round)
    if not 0 <= number < UINT64_LIMIT:
        raise ValueError(f"server_round must be an int in [0, 2**64), got {server_round!r}")
    if len(model_sha256) != SHA256_SIZE:
        raise ValueError(f"model_sha256 must be {SHA256_SIZE} raw bytes, got {len(model_sha256)}")
    chunks = [ROUND_HEADER.pack(ROUND_MAGIC, ROUND_VERSION, 0, number, bytes(model_sha256), len(payloads))]
    for payload in payloads:
        chunks += [UINT64.pack(len(payload)), bytes(payload)]
    content = b"".join(chunks)
    return content + checksum(content)


def decode_round_message(data: bytes | bytearray | memoryview, *, max_bytes: int = DEFAULT_MAX_BYTES) -> RoundMessage:
    """Validate a round message's framing and split it into its payloads (each still to be decoded).

    Raises:
        PayloadError: the size limit, magic, version, flags, checksum or framing is wrong.
    """
    view = memoryview(data).cast("B")
    if len(view) > max_bytes:
        raise PayloadError(f"round message of {len(view)} bytes exceeds the limit of {max_bytes} bytes")
    if len(view) < ROUND_HEADER_SIZE + CHECKSUM_SIZE:
        raise PayloadError(
            f"round message truncated at byte {len(view)}: need at least {ROUND_HEADER_SIZE + CHECKSUM_SIZE} bytes"
        )
    magic, version, flags, server_round, digest, count = ROUND_HEADER.unpack(view[:ROUND_HEADER_SIZE])
    if magic != ROUND_MAGIC:
        raise PayloadError(f"bad round message magic {magic!r}, expected {ROUND_MAGIC!r}")
    if version != ROUND_VERSION:
        raise PayloadError(f"unsupported round message version {version}; this reader supports {ROUND_VERSION}")
    stored, computed = bytes(view[-CHECKSUM_SIZE:]), checksum(view[:-CHECKSUM_SIZE])
    if not hmac.compare_digest(stored, computed):
        raise PayloadError(f"round message checksum mismatch: stored {stored.hex()}, computed {computed.hex()}")
    if flags:
        raise PayloadError(f"unsupported round message flags 0x{flags:04x}; this reader supports 0x0000")
    end, pos, payloads = len(view) - CHECKSUM_SIZE, ROUND_HEADER_SIZE, []
    for index in range(count):  # each payload takes >= 8 bytes, so a huge count fails fast
        if end - pos < UINT64.size:
            raise PayloadError(f"round message truncated at byte {pos}: need 8 bytes for payload #{index}'s length")
        (size,) = UINT64.unpack(view[pos : pos + UINT64.size])
        pos += UINT64.size
        if size > end - pos:
            raise PayloadError(
                f"round message truncated at byte {pos}: payload #{index} needs {size} bytes, only {end - pos} left"
            )
        payloads.append(bytes(view[pos : pos + size]))
        pos += size
    if pos != end:
        raise PayloadError(f"round message has {end - pos} trailing bytes after its {count} payloads, expected 0")
    return RoundMessage(server_round, digest, tuple(payloads))
