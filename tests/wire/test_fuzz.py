"""Fuzz the decoder: a mutated payload is refused with PayloadError or decodes faithfully.

Seeded, so a failure reproduces. Mutations that keep the original checksum must be
refused (or, by chance, leave the content unchanged); mutations that are resealed with
a fresh checksum reach the parser's own checks and must either be refused or decode
to exactly what the bytes say, which for a canonical format means: re-encoding the
decoded update gives back the mutated bytes. Any other exception fails the test.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import pytest
import torch

from fedmrn_pl.update import ClientUpdate, NoiseSpec
from fedmrn_pl.wire import CHECKSUM_SIZE, HEADER_SIZE, PayloadError, decode_update, encode_update, expected_manifest

SEED = 20240611
# (offset, struct format) of every header field after the magic
HEADER_FIELDS = [(4, "<H"), (6, "<H"), (8, "<Q"), (16, "<Q"), (24, "<Q"), (32, "B"), (33, "B"), (34, "<d"),
                 (42, "<Q"), (50, "<I"), (54, "<I")]  # fmt: skip


def _update() -> ClientUpdate:
    gen = torch.Generator().manual_seed(7)
    masks = {
        "conv.weight": torch.rand(4, 2, 3, 3, generator=gen) < 0.5,
        "fc.weight": torch.rand(3, 5, generator=gen) < 0.5,
    }
    dense = {
        "bn.num_batches_tracked": torch.tensor(42),
        "bn.running_var": torch.rand(4, generator=gen),
        "fc.bias": torch.randn(3, generator=gen).half(),
    }
    return ClientUpdate(5, 11, 123456789, "signed", NoiseSpec("gauss", 0.25), 321, masks, dense)


UPDATE = _update()
PAYLOAD = encode_update(UPDATE)
EXPECTED = expected_manifest(
    {name: t.shape for name, t in UPDATE.masks.items()}, {name: t.shape for name, t in UPDATE.dense.items()}
)


def _content(update: ClientUpdate) -> tuple:
    """Every field, and every tensor as (dtype, shape, raw bytes): equal iff bit-exact equal."""
    tensors = {
        (group, name): (t.dtype, tuple(t.shape), t.numpy().tobytes())
        for group in ("masks", "dense")
        for name, t in getattr(update, group).items()
    }
    return (update.server_round, update.client_id, update.seed, update.mask_kind, update.noise, update.num_examples,
            tensors)  # fmt: skip


ORIGINAL = _content(UPDATE)


def _reseal(payload: bytes) -> bytes:
    content = payload[:-CHECKSUM_SIZE]
    return content + hashlib.blake2b(content, digest_size=CHECKSUM_SIZE).digest()


def _decode(payload: bytes, **kwargs) -> ClientUpdate | None:
    """The decoded update, or None for PayloadError; any other exception propagates."""
    try:
        return decode_update(payload, **kwargs)
    except PayloadError:
        return None


def _flip(rng: np.random.Generator, payload: bytes, lo: int, hi: int) -> bytes:
    """XOR 1 to 4 random bytes in ``payload[lo:hi]`` with non-zero values."""
    data = bytearray(payload)
    for pos in rng.integers(lo, hi, size=rng.integers(1, 5)):
        data[pos] ^= int(rng.integers(1, 256))
    return bytes(data)


def _assert_refused_or_original(payload: bytes) -> None:
    for kwargs in ({}, {"expected": EXPECTED, "server_round": 5}):
        decoded = _decode(payload, **kwargs)
        assert decoded is None or _content(decoded) == ORIGINAL


def _assert_refused_or_faithful(payload: bytes) -> None:
    """Resealed mutants: refused, or the decoded update re-encodes to these very bytes."""
    decoded = _decode(payload)
    if decoded is None:
        return
    assert encode_update(decoded) == payload
    checked = _decode(payload, expected=EXPECTED)
    if checked is not None:
        assert _content(checked) == _content(decoded)
        for name, tensor in {**checked.masks, **checked.dense}.items():
            assert tuple(tensor.shape) == EXPECTED[name].shape
        assert all(t.dtype == torch.bool for t in checked.masks.values())


def test_random_byte_flips_are_refused():
    rng = np.random.default_rng(SEED)
    for _ in range(1500):
        _assert_refused_or_original(_flip(rng, PAYLOAD, 0, len(PAYLOAD)))


def test_truncations_and_extensions_are_refused():
    rng = np.random.default_rng(SEED + 1)
    for length in rng.integers(0, len(PAYLOAD), size=300):
        assert _decode(PAYLOAD[:length]) is None
    for extra in rng.integers(1, 65, size=200):
        tail = rng.integers(0, 256, size=extra, dtype=np.uint8).tobytes()
        assert _decode(PAYLOAD + tail) is None
        assert _decode(_reseal(PAYLOAD[:-CHECKSUM_SIZE] + tail + PAYLOAD[-CHECKSUM_SIZE:])) is None


def _field_value(rng: np.random.Generator, fmt: str, old: int | float) -> int | float:
    """A new value for a header field: a boundary, a near neighbour, or random bits."""
    bits = 8 * struct.calcsize(fmt)
    if fmt == "<d":
        return [0.0, -0.0, np.nan, np.inf, -1.0, 5e-324, old * 2, float(rng.standard_normal())][rng.integers(8)]
    choice = rng.integers(4)
    if choice == 0:
        return [0, 1, 2, 3, 2**bits - 1, 2 ** (bits - 1)][rng.integers(6)]
    if choice == 1:
        return int(min(max(old + int(rng.integers(-3, 4)), 0), 2**bits - 1))
    return int(rng.integers(0, 2**bits, dtype=np.uint64)) if bits == 64 else int(rng.integers(0, 2**bits))


def test_resealed_header_field_edits_are_refused_or_decoded_faithfully():
    rng = np.random.default_rng(SEED + 2)
    for _ in range(1000):
        offset, fmt = HEADER_FIELDS[rng.integers(len(HEADER_FIELDS))]
        (old,) = struct.unpack_from(fmt, PAYLOAD, offset)
        content = bytearray(PAYLOAD[:-CHECKSUM_SIZE])
        struct.pack_into(fmt, content, offset, _field_value(rng, fmt, old))
        _assert_refused_or_faithful(_reseal(bytes(content) + bytes(CHECKSUM_SIZE)))


def test_resealed_manifest_byte_flips_are_refused_or_decoded_faithfully():
    (manifest_bytes,) = struct.unpack_from("<I", PAYLOAD, 54)
    rng = np.random.default_rng(SEED + 3)
    for _ in range(800):
        _assert_refused_or_faithful(_reseal(_flip(rng, PAYLOAD, HEADER_SIZE, HEADER_SIZE + manifest_bytes)))


def test_resealed_body_edits_are_refused_or_decoded_as_the_bytes_say():
    (manifest_bytes,) = struct.unpack_from("<I", PAYLOAD, 54)
    start, end = HEADER_SIZE + manifest_bytes, len(PAYLOAD) - CHECKSUM_SIZE
    rng = np.random.default_rng(SEED + 4)
    outcomes = {"refused": 0, "decoded": 0}
    for _ in range(800):
        mutant = _reseal(_flip(rng, PAYLOAD, start, end))
        outcomes["decoded" if _decode(mutant) is not None else "refused"] += 1
        _assert_refused_or_faithful(mutant)
    assert outcomes["refused"] > 0 and outcomes["decoded"] > 0  # padding bits are refused, the rest is data


@pytest.mark.parametrize("cut", [1, 8, 57, 58, 59])
def test_resealed_truncations_are_refused(cut):
    assert _decode(_reseal(PAYLOAD[: -CHECKSUM_SIZE - cut] + bytes(CHECKSUM_SIZE))) is None
