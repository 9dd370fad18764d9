"""Tests for fedmrn_pl.wire.mask_coding: bit-exact rANS coding of masks, sizes, every refusal."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedmrn_pl.wire import PayloadError, packed_size
from fedmrn_pl.wire import mask_coding
from fedmrn_pl.wire.mask_coding import (
    MAX_SYMBOLS_PER_BYTE,
    coded_overhead,
    decode_mask,
    encode_mask,
    lane_count,
    mask_phases,
)

SHAPES = [(0,), (1,), (7,), (8,), (9,), (), (2, 0, 4), (3, 5, 7), (64, 3, 3, 3), (10, 1600), (4, 2, 3, 3, 3), (99_999,)]


def _mask(shape: tuple[int, ...], ones: float, seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < ones


@pytest.mark.parametrize("ones", [0.0, 0.02, 0.2, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_decode_of_encode_is_bit_exact(shape, ones):
    mask = _mask(shape, ones)
    restored = decode_mask(encode_mask(mask), shape)
    assert restored.dtype == torch.bool and restored.shape == mask.shape
    assert torch.equal(restored, mask)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.booleans(), max_size=400), st.integers(1, 3), st.booleans())
def test_round_trip_holds_for_arbitrary_masks(bits, rows, as_kernel):
    shape = (rows, 1, len(bits)) if as_kernel else (rows, len(bits))  # a kernel of len(bits) phases, or one phase
    mask = torch.tensor(bits * rows, dtype=torch.bool).reshape(shape)
    assert torch.equal(decode_mask(encode_mask(mask), shape), mask)


def test_skewed_masks_cost_close_to_their_entropy():
    mask = _mask((256, 128, 3, 3), 0.2)
    numel = mask.numel()
    p = mask.float().mean().item()
    entropy_bytes = numel * -(p * math.log2(p) + (1 - p) * math.log2(1 - p)) / 8
    size = len(encode_mask(mask))
    assert size < 0.75 * packed_size(numel)
    assert entropy_bytes < size < entropy_bytes * 1.003 + coded_overhead(mask.shape)


def test_constant_masks_stay_within_the_symbols_per_byte_bound():
    for mask in (torch.zeros(4_000_000, dtype=torch.bool), torch.ones(1000, 1000, 2, 2, dtype=torch.bool)):
        body = encode_mask(mask)
        assert 150 < packed_size(mask.numel()) / len(body) < MAX_SYMBOLS_PER_BYTE / 4
        assert torch.equal(decode_mask(body, mask.shape), mask)


def test_body_length_is_overhead_plus_whole_words():
    for shape in SHAPES:
        size = len(encode_mask(_mask(shape, 0.3)))
        assert size >= coded_overhead(shape) and (size - coded_overhead(shape)) % 2 == 0


def test_phases_follow_the_kernel_and_lanes_the_size():
    assert [mask_phases(s) for s in [(5,), (4, 6), (8, 4, 3, 3), (2, 2, 5, 5), (2, 2, 9, 9), (3, 1, 0)]] == [
        1, 1, 9, 25, 1, 1,
    ]  # fmt: skip
    assert [lane_count(n) for n in [0, 1, 8 * 2048, 8 * 2048 + 1, 294_912, 10**9]] == [1, 1, 1, 2, 18, 32]
    assert coded_overhead((256, 128, 3, 3)) == 9 + 4 * 18


def test_phase_probabilities_come_first_and_match_the_bit_counts():
    mask = torch.zeros(40, 1, 2, 2, dtype=torch.bool)
    mask[:, :, 0, 0] = True  # phase 0 always one, the others never
    assert list(encode_mask(mask)[:4]) == [255, 1, 1, 1]
    assert encode_mask(torch.tensor([True, False, False, False]))[:1] == bytes([64])


def test_encoding_is_deterministic_and_layout_independent():
    mask = _mask((37, 11), 0.25)
    assert encode_mask(mask) == encode_mask(mask.t().contiguous().t()) == encode_mask(mask.clone())


def test_encoder_rejects_non_bool_tensors():
    with pytest.raises(TypeError, match="torch.bool"):
        encode_mask(torch.zeros(8, dtype=torch.uint8))


# --------------------------------------------------------------------------- refusals

SHAPE = (16, 8, 3, 3)
BODY = encode_mask(_mask(SHAPE, 0.2, seed=3))
FIXED = coded_overhead(SHAPE)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "needs 9 probability bytes, 1 lane states of 4 bytes and whole 2-byte words, got 0 bytes"),
        (BODY[: FIXED - 1], "got 12 bytes"),
        (BODY[:-1], "whole 2-byte words"),
        (BODY + b"\x00\x00", "words left after its 144 symbols"),
        (BODY[:-2], "stream truncated|lane 0 ends in state"),
        (bytes(1) + BODY[1:], "probability of phase 0 is 0"),
        (BODY[:9] + bytes(4) + BODY[13:], "lane state 0 is below the minimum 65536"),
        (bytes([BODY[0] + 1]) + BODY[1:], "do not match its bit counts|ends in state|stream truncated|words left"),
    ],
)
def test_malformed_bodies_raise_payload_error(body, message):
    with pytest.raises(PayloadError, match=message):
        decode_mask(body, SHAPE)


def _body_for(symbols: bytes, probabilities: list[int], lanes: int = 1) -> bytes:
    """A well-formed rANS body for any byte ``symbols`` under any phase ``probabilities``."""
    q = np.array(probabilities, dtype=np.uint8)
    freq, start = mask_coding._tables(q)
    values = np.frombuffer(symbols, dtype=np.uint8)
    phase = mask_coding._symbol_phases(0, values.size, q.size)
    states, words = mask_coding._rans_encode(freq[phase, values], start[phase, values], lanes)
    return q.tobytes() + states.astype("<u4").tobytes() + words.astype("<u2").tobytes()


def test_helper_body_matches_the_encoder():
    mask = torch.tensor([True] * 13)
    assert _body_for(b"\xff\x1f", [255]) == encode_mask(mask)


def test_set_padding_bits_are_refused():
    with pytest.raises(PayloadError, match="non-zero padding bits in the last byte of a mask of 13 elements"):
        decode_mask(_body_for(b"\xff\xff", [255]), (13,))


def test_probabilities_other_than_the_bit_counts_are_refused():
    with pytest.raises(PayloadError, match=r"probabilities \[200\] do not match its bit counts, expected \[255\]"):
        decode_mask(_body_for(b"\xff\x1f", [200]), (13,))


def test_every_single_byte_corruption_is_refused_or_decodes_canonically():
    rng = np.random.default_rng(5)
    for _ in range(400):
        corrupt = bytearray(BODY)
        corrupt[rng.integers(len(corrupt))] ^= int(rng.integers(1, 256))
        try:
            mask = decode_mask(bytes(corrupt), SHAPE)
        except PayloadError:
            continue
        assert encode_mask(mask) == bytes(corrupt)  # one mask, one body


def test_decoded_mask_owns_writeable_memory():
    data = bytearray(BODY)
    mask = decode_mask(memoryview(data), SHAPE)
    expected = mask.clone()
    data[:] = bytes(len(data))
    mask[0, 0, 0, 0] = ~mask[0, 0, 0, 0]
    assert torch.equal(mask.logical_xor(expected).sum(), torch.tensor(1))
