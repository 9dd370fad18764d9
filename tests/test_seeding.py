"""The one seeding rule: a fixed hash of (run_seed, round, client, purpose)."""

import hashlib
import struct

import pytest
import torch

from fedmrn_pl.seeding import derive_seed, make_generator


def test_derive_seed_is_blake2b_of_the_fixed_encoding():
    expected = hashlib.blake2b(struct.pack("<qqq", 7, 3, 11) + b"noise", digest_size=8).digest()
    assert derive_seed(7, 3, 11, "noise") == int.from_bytes(expected, "little") & ((1 << 63) - 1)


def test_every_component_changes_the_seed():
    base = derive_seed(1, 2, 3, "noise")
    assert (
        len(
            {
                base,
                derive_seed(2, 2, 3, "noise"),
                derive_seed(1, 3, 3, "noise"),
                derive_seed(1, 2, 4, "noise"),
                derive_seed(1, 2, 3, "shuffle"),
            }
        )
        == 5
    )


def test_huge_and_negative_run_seeds_are_accepted():
    assert 0 <= derive_seed(2**70) < 2**63
    assert 0 <= derive_seed(-5) < 2**63


def test_non_integer_inputs_are_refused():
    with pytest.raises(TypeError, match="server_round must be an int"):
        derive_seed(0, 1.5)


def test_generators_from_equal_seeds_draw_equal_numbers():
    assert torch.equal(torch.rand(5, generator=make_generator(42)), torch.rand(5, generator=make_generator(42)))
