"""Tests for fedmrn_pl.wire.bits: 8 masks bits per byte, LSB-first, canonical padding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedmrn_pl.wire import PayloadError, pack_bits, packed_size, unpack_bits

SHAPES = [(0,), (1,), (7,), (8,), (9,), (1_000_003,), (), (2, 0, 4), (3, 5, 7), (64, 3, 3, 3), (10, 1600)]


def _random_mask(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < 0.5


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_unpack_of_pack_returns_the_same_mask(shape):
    mask = _random_mask(shape)
    restored = unpack_bits(pack_bits(mask), shape)
    assert restored.dtype == torch.bool
    assert restored.shape == mask.shape
    assert torch.equal(restored, mask)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_packed_length_is_ceil_of_numel_over_8(shape):
    numel = math.prod(shape)
    assert len(pack_bits(_random_mask(shape))) == math.ceil(numel / 8) == packed_size(numel)


def test_bits_are_packed_lsb_first_in_c_order():
    mask = torch.tensor([[1, 0, 1, 1, 0], [0, 0, 0, 0, 1]], dtype=torch.bool)  # flat: 1011000001
    assert pack_bits(mask) == bytes([0b00001101, 0b00000010])
    assert pack_bits(torch.tensor([True] + [False] * 7 + [True])) == b"\x01\x01"


def test_all_ones_mask_leaves_padding_bits_zero():
    assert pack_bits(torch.ones(11, dtype=torch.bool)) == b"\xff\x07"


@pytest.mark.parametrize("numel", [1, 5, 7, 9, 15])
def test_decoder_rejects_every_nonzero_padding_bit(numel):
    packed = bytearray(pack_bits(_random_mask((numel,))))
    for bit in range(numel % 8, 8):
        corrupt = packed.copy()
        corrupt[-1] |= 1 << bit
        with pytest.raises(PayloadError, match="padding bits"):
            unpack_bits(bytes(corrupt), (numel,))


@pytest.mark.parametrize("delta", [-1, 1])
def test_decoder_rejects_wrong_byte_length(delta):
    packed = pack_bits(_random_mask((20,)))  # 3 bytes
    data = packed[:delta] if delta < 0 else packed + b"\x00"
    with pytest.raises(PayloadError, match="must be 3 bytes, got"):
        unpack_bits(data, (20,))


def test_pack_accepts_non_contiguous_tensors():
    mask = _random_mask((13, 6)).t()
    assert not mask.is_contiguous()
    assert torch.equal(unpack_bits(pack_bits(mask), mask.shape), mask)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pack_accepts_cuda_tensors():
    mask = _random_mask((33, 3))
    assert pack_bits(mask.cuda()) == pack_bits(mask)


def test_pack_rejects_non_bool_tensors():
    with pytest.raises(TypeError, match="torch.bool"):
        pack_bits(torch.zeros(8, dtype=torch.uint8))


def test_unpacked_mask_owns_writeable_memory():
    data = bytearray(pack_bits(_random_mask((40,))))
    mask = unpack_bits(memoryview(data), (40,))
    expected = mask.clone()
    data[:] = b"\x00" * len(data)
    assert torch.equal(mask, expected)
    mask[0] = ~mask[0]  # would warn or fail on a read-only buffer
    assert mask[0] != expected[0]


def test_pack_matches_numpy_packbits_little():
    mask = _random_mask((1001,), seed=3)
    assert pack_bits(mask) == np.packbits(mask.numpy(), bitorder="little").tobytes()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), max_size=300), st.integers(1, 3))
def test_round_trip_holds_for_arbitrary_masks(bits, rows):
    mask = torch.tensor(bits * rows, dtype=torch.bool).reshape(rows, len(bits))
    assert torch.equal(unpack_bits(pack_bits(mask), mask.shape), mask)
