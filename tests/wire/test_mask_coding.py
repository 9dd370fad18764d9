"""Tests for fedmrn_pl.wire.mask_coding: bit-exact rANS coding of masks, the stream as specified, every refusal."""

from __future__ import annotations

import hashlib
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
    encode_in_contexts,
    encode_mask,
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
        assert 150 < packed_size(mask.numel()) / len(body) < MAX_SYMBOLS_PER_BYTE
        assert torch.equal(decode_mask(body, mask.shape), mask)


def test_body_length_is_overhead_plus_whole_words():
    for shape in SHAPES:
        size = len(encode_mask(_mask(shape, 0.3)))
        assert size >= coded_overhead(shape) and (size - coded_overhead(shape)) % 4 == 0


def test_phases_follow_the_kernel_and_the_overhead_is_phases_and_one_state():
    assert [mask_phases(s) for s in [(5,), (4, 6), (8, 4, 3, 3), (2, 2, 5, 5), (2, 2, 9, 9), (3, 1, 0)]] == [
        1, 1, 9, 25, 1, 1,
    ]  # fmt: skip
    assert coded_overhead((256, 128, 3, 3)) == 9 + 8 and coded_overhead((10**9,)) == 1 + 8


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
        (b"", "needs 9 probability bytes and whole 4-byte words, at least 2, got 0 bytes"),
        (BODY[: FIXED - 1], "got 16 bytes"),
        (BODY[:-1], "whole 4-byte words"),
        (BODY[:9] + bytes(4) + BODY[9:], "words left after its 144 symbols"),
        (BODY[:-4], "ends in state|words left|do not match its bit counts|padding bits"),
        (bytes(1) + BODY[1:], "probability of phase 0 is 0"),
        (BODY[:-4] + bytes(4), "starts in state \\d+, below the minimum 4294967296: its top word is 0"),
        (bytes([BODY[0] + 1]) + BODY[1:], "do not match its bit counts|ends in state|words left"),
    ],
)
def test_malformed_bodies_raise_payload_error(body, message):
    with pytest.raises(PayloadError, match=message):
        decode_mask(body, SHAPE)


def _body_for(symbols: bytes, probability: int) -> bytes:
    """A well-formed body of one phase for any byte ``symbols`` under any ``probability``."""
    q = np.array([probability], dtype=np.uint8)
    return q.tobytes() + mask_coding._encode_stream([(np.frombuffer(symbols, dtype=np.uint8), q.tobytes() * 8)])


def test_helper_body_matches_the_encoder():
    mask = torch.tensor([True] * 13)
    assert _body_for(b"\xff\x1f", 255) == encode_mask(mask)


def test_set_padding_bits_are_refused():
    with pytest.raises(PayloadError, match="non-zero padding bits in the last byte of a mask of 13 elements"):
        decode_mask(_body_for(b"\xff\xff", 255), (13,))


def test_probabilities_other_than_the_bit_counts_are_refused():
    with pytest.raises(PayloadError, match=r"probabilities \[200\] do not match its bit counts, expected \[255\]"):
        decode_mask(_body_for(b"\xff\x1f", 200), (13,))


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


# --------------------------------------------------------------------------- the stream, as specified


def _reference_frequencies(bit_q: list[int]) -> list[int]:
    """The module docstring's byte model, in Python integers."""
    freq = []
    for symbol in range(256):
        product = math.prod(bit_q[k] if symbol >> k & 1 else 256 - bit_q[k] for k in range(8))
        freq.append(max(product >> 40, 1))
    freq[freq.index(max(freq))] += 2**24 - sum(freq)
    return freq


def _reference_encode(groups: list[tuple[list[int], list[int]]]) -> bytes:
    """The module docstring's writer, line by line: groups of (symbols, frequencies), first group first."""
    state, words = 2**32, []
    for symbols, freq in reversed(groups):
        starts = [sum(freq[:s]) for s in range(256)]
        for s in reversed(symbols):
            if state >> 40 >= freq[s]:
                words.append(state % 2**32)
                state >>= 32
            state = (state // freq[s]) * 2**24 + starts[s] + state % freq[s]
    words += [state % 2**32, state >> 32]
    return b"".join(w.to_bytes(4, "little") for w in words)


def _reference_decode(data: bytes, groups: list[tuple[int, list[int]]]) -> list[int]:
    """The module docstring's reader: the symbols, after checking that every word was read and the state is 2**32."""
    words = [int.from_bytes(data[i : i + 4], "little") for i in range(0, len(data), 4)]
    high, low = words.pop(), words.pop()
    state, out = high << 32 | low, []
    for count, freq in groups:
        starts = [sum(freq[:s]) for s in range(257)]
        for _ in range(count):
            quantile = state % 2**24
            s = next(s for s in range(256) if starts[s] <= quantile < starts[s + 1])
            state = (state >> 24) * freq[s] + quantile - starts[s]
            if state < 2**32 and words:
                state = state << 32 | words.pop()
            out.append(s)
    assert not words and state == 2**32
    return out


def _fixed_mask(shape: tuple[int, ...], per_mille: int) -> torch.Tensor:
    """A mask made by integer arithmetic only, the same on every machine and numpy or torch version."""
    index = np.arange(math.prod(shape), dtype=np.int64)
    return torch.from_numpy((index * 2654435761 + index // 7) % 1000 < per_mille).reshape(shape)


@pytest.mark.parametrize("shape", [(1000,), (40, 3, 2, 2), (20, 4, 3, 3), (6, 2, 5, 5), (3, 2, 2, 2, 2)], ids=str)
def test_the_phase_stream_is_the_one_the_module_docstring_specifies(shape):
    """constriction is one implementation of the wire's stream; another reader must be able to write its own."""
    mask = _fixed_mask(shape, 230)
    body = encode_mask(mask)
    phases = mask_phases(shape)
    q = list(body[:phases])
    packed = list(np.packbits(mask.reshape(-1).numpy(), bitorder="little"))
    period = phases // math.gcd(8, phases)
    rows = [_reference_frequencies([q[(8 * j + k) % phases] for k in range(8)]) for j in range(period)]
    assert body[phases:] == _reference_encode([(packed[j::period], rows[j]) for j in range(period)])
    decoded = _reference_decode(body[phases:], [(len(packed[j::period]), rows[j]) for j in range(period)])
    assert decoded == [s for j in range(period) for s in packed[j::period]]


def test_the_context_stream_is_the_one_the_module_docstring_specifies():
    mask = _fixed_mask((3000,), 300)
    contexts = (np.arange(3000) * 7 % 8).astype(np.uint8)
    body = encode_in_contexts(mask, contexts)
    q = list(body[4:12])
    bits = mask.numpy()
    groups = [list(np.packbits(bits[contexts == c], bitorder="little")) for c in range(8)]
    assert body[12:] == _reference_encode([(groups[c], _reference_frequencies([q[c]] * 8)) for c in range(8)])


def test_the_bytes_are_pinned():
    """The same mask gives the same bytes on every machine and with every release of the coder library."""
    digest = hashlib.sha256()
    for shape in [(256, 64, 3, 3), (20_000,)]:
        mask = _fixed_mask(shape, 180)
        digest.update(encode_mask(mask))
        digest.update(encode_in_contexts(mask, (np.arange(mask.numel()) % 8).astype(np.uint8)))
    assert digest.hexdigest() == "4e14f2a19cfe7240e3dc7e943178f33e265312e6ce7bb086f1f55d1ce39c7250"
