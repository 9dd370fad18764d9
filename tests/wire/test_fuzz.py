"""Fuzz the decoder: a mutated payload is refused with PayloadError or decodes faithfully.

Seeded, so a failure reproduces. Mutations that keep the original checksum must be
refused (or, by chance, leave the content unchanged); mutations that are resealed with
a fresh checksum reach the parser's own checks and must either be refused or decode
to exactly what the bytes say, which for a canonical format means: re-encoding the
decoded update (packed, or coded where that is shorter) gives back the mutated bytes, or,
for a deflated dense body (any valid DEFLATE stream is accepted), the decoded values are
what an independent inflate of the body gives.
Any other exception fails the test. Every test runs on a payload of packed masks, on
one whose conv mask is entropy-coded, and on a baseline's payload of sign bits + scale
and sparse values.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import pytest
import torch

from fedmrn_pl.compressed import SignScale, Sparse
from fedmrn_pl.update import ClientUpdate, NoiseSpec
from fedmrn_pl.wire import (
    CHECKSUM_SIZE,
    HEADER_SIZE,
    PayloadError,
    TensorSpec,
    decode_update,
    encode_update,
    expected_manifest,
)
from fedmrn_pl.wire.parse import parse_payload
from tests.wire.test_dense_coding import _oracle

SEED = 20240611
# (offset, struct format) of every header field after the magic
HEADER_FIELDS = [(4, "<H"), (6, "<H"), (8, "<Q"), (16, "<Q"), (24, "<Q"), (32, "B"), (33, "B"), (34, "<d"),
                 (42, "<Q"), (50, "<I"), (54, "<I")]  # fmt: skip


def _update(conv_shape: tuple[int, ...], ones: float, family: str = "uniform") -> ClientUpdate:
    gen = torch.Generator().manual_seed(7)
    masks = {
        "conv.weight": torch.rand(conv_shape, generator=gen) < ones,
        "fc.weight": torch.rand(3, 5, generator=gen) < 0.5,
    }
    dense = {
        "bn.num_batches_tracked": torch.tensor(42),
        "bn.running_var": torch.rand(4, generator=gen),
        "fc.bias": torch.randn(3, generator=gen).half(),
    }
    return ClientUpdate(5, 11, 123456789, "signed", NoiseSpec(family, 0.25), 321, masks, dense)


def _case(
    conv_shape: tuple[int, ...], ones: float, family: str = "uniform"
) -> tuple[ClientUpdate, bytes, dict[str, TensorSpec]]:
    """An update, its payload, and the server's manifest for it."""
    update = _update(conv_shape, ones, family)
    expected = expected_manifest(
        {name: t.shape for name, t in update.masks.items()}, {name: t.shape for name, t in update.dense.items()}
    )
    return update, encode_update(update), expected


def _compressed_case() -> tuple[ClientUpdate, bytes, dict[str, TensorSpec]]:
    """A baselines' payload: sign bits + scale (one padded, rotated) and sparse values, plus a dense bias."""
    gen = torch.Generator().manual_seed(9)
    compressed = {
        "conv.weight": SignScale(torch.rand(4, 2, 3, 3, generator=gen) < 0.5, 0.031),
        "fc.weight": Sparse(torch.randn(6, generator=gen), torch.tensor([1, 2, 7, 8, 13, 14]), (3, 5)),
        "rot.weight": SignScale(torch.rand(16, generator=gen) < 0.5, 1.5),
    }
    update = ClientUpdate(5, 11, 123456789, "none", NoiseSpec(), 321, dense={"fc.bias": torch.randn(3, generator=gen)},
                          compressed=compressed)  # fmt: skip
    expected = expected_manifest(
        {}, {"fc.bias": (3,)},
        compressed={name: ("sign_scale" if isinstance(t, SignScale) else "sparse",
                           t.signs.shape if isinstance(t, SignScale) else t.shape) for name, t in compressed.items()},
    )  # fmt: skip
    return update, encode_update(update), expected


# at 10% ones the 288-bit conv mask codes to ~30 bytes instead of 36 packed
# over uniform noise the 4608-bit conv mask codes in noise contexts to ~340 bytes instead of 576
CASES = {
    "packed": _case((4, 2, 3, 3), 0.5),
    "coded": _case((8, 4, 3, 3), 0.1, "bernoulli"),
    "noise_coded": _case((32, 16, 3, 3), 0.1),
    "compressed": _compressed_case(),
}


def _content(update: ClientUpdate) -> tuple:
    """Every field, and every tensor as (dtype, shape, raw bytes): equal iff bit-exact equal."""
    tensors = {
        (group, name): (t.dtype, tuple(t.shape), t.numpy().tobytes())
        for group in ("masks", "dense")
        for name, t in getattr(update, group).items()
    }
    for name, t in update.compressed.items():
        parts = (t.signs, torch.tensor(t.scale)) if isinstance(t, SignScale) else (t.values, t.indices, torch.tensor(t.shape))
        tensors[("compressed", name)] = tuple(part.numpy().tobytes() for part in parts)
    return (update.server_round, update.client_id, update.seed, update.mask_kind, update.noise, update.num_examples,
            tensors)  # fmt: skip


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


def _assert_refused_or_original(payload: bytes, update: ClientUpdate, expected: dict[str, TensorSpec]) -> None:
    for kwargs in ({}, {"expected": expected, "server_round": 5}):
        decoded = _decode(payload, **kwargs)
        assert decoded is None or _content(decoded) == _content(update)


def _assert_refused_or_faithful(payload: bytes, expected: dict[str, TensorSpec]) -> None:
    """Resealed mutants: refused, or the decoded update re-encodes to these very bytes."""
    decoded = _decode(payload)
    if decoded is None:
        return
    if payload not in {encode_update(decoded), encode_update(decoded, mask_encoding="packed")}:
        # Deflated dense bodies are not canonical (any valid stream is accepted): they must inflate to what was decoded.
        assert any(entry.deflated for entry in parse_payload(payload, len(payload)).entries)
        said = _oracle(payload)
        assert all(t.numpy().tobytes() == said[name] for name, t in decoded.dense.items())
    checked = _decode(payload, expected=expected)
    if checked is not None:
        assert _content(checked) == _content(decoded)
        for name, tensor in {**checked.masks, **checked.dense}.items():
            assert tuple(tensor.shape) == expected[name].shape
        assert all(t.dtype == torch.bool for t in checked.masks.values())


def _bodies_start(payload: bytes) -> int:
    (manifest_bytes,) = struct.unpack_from("<I", payload, 54)
    return HEADER_SIZE + manifest_bytes


def test_the_coded_case_carries_a_coded_mask_and_the_packed_case_none():
    assert b"conv.weight\x04" in CASES["coded"][1][: _bodies_start(CASES["coded"][1])]
    assert b"conv.weight\x07" in CASES["noise_coded"][1][: _bodies_start(CASES["noise_coded"][1])]
    assert b"conv.weight\x05" in CASES["compressed"][1][: _bodies_start(CASES["compressed"][1])]
    assert b"fc.weight\x06" in CASES["compressed"][1][: _bodies_start(CASES["compressed"][1])]
    assert b"conv.weight\x00" in CASES["packed"][1][: _bodies_start(CASES["packed"][1])]
    for case in ("packed", "coded", "noise_coded"):  # and all carry a deflated dense body (the int64 counter)
        payload = CASES[case][1]
        assert b"bn.num_batches_tracked\x83" in payload[: _bodies_start(payload)]


@pytest.mark.parametrize("case", CASES)
def test_random_byte_flips_are_refused(case):
    update, payload, expected = CASES[case]
    rng = np.random.default_rng(SEED)
    for _ in range(1500):
        _assert_refused_or_original(_flip(rng, payload, 0, len(payload)), update, expected)


@pytest.mark.parametrize("case", CASES)
def test_truncations_and_extensions_are_refused(case):
    payload = CASES[case][1]
    rng = np.random.default_rng(SEED + 1)
    for length in rng.integers(0, len(payload), size=300):
        assert _decode(payload[:length]) is None
    for extra in rng.integers(1, 65, size=200):
        tail = rng.integers(0, 256, size=extra, dtype=np.uint8).tobytes()
        assert _decode(payload + tail) is None
        assert _decode(_reseal(payload[:-CHECKSUM_SIZE] + tail + payload[-CHECKSUM_SIZE:])) is None


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


@pytest.mark.parametrize("case", CASES)
def test_resealed_header_field_edits_are_refused_or_decoded_faithfully(case):
    _, payload, expected = CASES[case]
    rng = np.random.default_rng(SEED + 2)
    for _ in range(1000):
        offset, fmt = HEADER_FIELDS[rng.integers(len(HEADER_FIELDS))]
        (old,) = struct.unpack_from(fmt, payload, offset)
        content = bytearray(payload[:-CHECKSUM_SIZE])
        struct.pack_into(fmt, content, offset, _field_value(rng, fmt, old))
        _assert_refused_or_faithful(_reseal(bytes(content) + bytes(CHECKSUM_SIZE)), expected)


@pytest.mark.parametrize("case", CASES)
def test_resealed_manifest_byte_flips_are_refused_or_decoded_faithfully(case):
    _, payload, expected = CASES[case]
    rng = np.random.default_rng(SEED + 3)
    for _ in range(800):
        _assert_refused_or_faithful(_reseal(_flip(rng, payload, HEADER_SIZE, _bodies_start(payload))), expected)


@pytest.mark.parametrize("case", CASES)
def test_resealed_body_edits_are_refused_or_decoded_as_the_bytes_say(case):
    _, payload, expected = CASES[case]
    start, end = _bodies_start(payload), len(payload) - CHECKSUM_SIZE
    rng = np.random.default_rng(SEED + 4)
    outcomes = {"refused": 0, "decoded": 0}
    for _ in range(800):
        mutant = _reseal(_flip(rng, payload, start, end))
        outcomes["decoded" if _decode(mutant) is not None else "refused"] += 1
        _assert_refused_or_faithful(mutant, expected)
    assert outcomes["refused"] > 0 and outcomes["decoded"] > 0  # invalid bodies are refused, the rest is data


@pytest.mark.parametrize("cut", [1, 8, 57, 58, 59])
@pytest.mark.parametrize("case", CASES)
def test_resealed_truncations_are_refused(case, cut):
    payload = CASES[case][1]
    assert _decode(_reseal(payload[: -CHECKSUM_SIZE - cut] + bytes(CHECKSUM_SIZE))) is None
