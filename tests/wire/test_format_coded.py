"""Tests for coded masks in fedmrn_pl.wire.format: the per-tensor choice, sizes, refusals, inspection."""

from __future__ import annotations

import math
import struct

import pytest
import torch

from fedmrn_pl.update import ClientUpdate, NoiseSpec
from fedmrn_pl.wire import PayloadError, decode_update, describe_payload, encode_update, packed_size, payload_size
from fedmrn_pl.wire.mask_coding import coded_overhead, encode_mask
from tests.wire.test_format import assert_same_update, make_update, raw_payload, specs_of

CODED = 4
BERNOULLI = 2  # noise family code: masks over constant |n| are coded by kernel phase (coded_mask)


def skewed_update(ones: float = 0.2, seed: int = 0) -> ClientUpdate:
    """A CNN-like update whose big conv mask is skewed like a learned one; tiny masks stay packed.

    Bernoulli noise, so its masks take the per-phase ``coded_mask`` form (``test_context_coding.py``
    covers masks over continuous noise).
    """
    gen = torch.Generator().manual_seed(seed)
    masks = {
        "conv.weight": torch.rand(64, 32, 3, 3, generator=gen) < ones,
        "fc.weight": torch.rand(10, 256, generator=gen) < ones,
        "tiny.weight": torch.rand(3, 2, generator=gen) < ones,
        "empty.weight": torch.zeros(0, 4, dtype=torch.bool),
    }
    dense = {"bn.running_var": torch.rand(64, generator=gen)}
    return ClientUpdate(2, 4, 77, "binary", NoiseSpec("bernoulli", 0.01), 300, masks, dense)


def test_coded_payload_decodes_bit_exact_and_re_encodes_to_the_same_bytes():
    update = skewed_update()
    payload = encode_update(update)
    decoded = decode_update(payload, specs_of(update), server_round=2)
    assert_same_update(decoded, update)
    assert encode_update(decoded) == payload
    assert encode_update(decoded, mask_encoding="packed") == encode_update(update, mask_encoding="packed")


def test_each_mask_is_coded_exactly_when_that_is_shorter():
    update = skewed_update()
    rows = {row["name"]: row for row in describe_payload(encode_update(update))["tensors"]}
    for name, mask in update.masks.items():
        packed, coded = packed_size(mask.numel()), len(encode_mask(mask))
        expected = ("coded_mask", coded) if coded < packed else ("mask", packed)
        assert (rows[name]["encoding"], rows[name]["body_bytes"]) == expected, name
    assert rows["conv.weight"]["encoding"] == "coded_mask"
    assert rows["tiny.weight"]["encoding"] == rows["empty.weight"]["encoding"] == "mask"


def test_coded_payload_is_smaller_by_exactly_the_coded_savings():
    update = skewed_update()
    saved = sum(max(packed_size(m.numel()) - len(encode_mask(m)), 0) for m in update.masks.values())
    dense = {name: (t.shape, t.dtype) for name, t in update.dense.items()}
    packed_bytes = payload_size({name: m.shape for name, m in update.masks.items()}, dense)
    assert len(encode_update(update, mask_encoding="packed", dense_encoding="raw")) == packed_bytes
    assert len(encode_update(update, dense_encoding="raw")) == packed_bytes - saved
    assert saved > 0.25 * packed_size(64 * 32 * 9)  # 20% ones: ~0.72 bits per element instead of 1


def test_fair_coin_masks_stay_packed():
    mask = torch.rand(64, 32, 3, 3, generator=torch.Generator().manual_seed(1)) < 0.5
    update = ClientUpdate(1, 1, 1, "signed", NoiseSpec("bernoulli"), 1, masks={"w": mask})
    assert encode_update(update) == encode_update(update, mask_encoding="packed")


def test_describe_payload_reports_bits_per_masked_element():
    update = skewed_update()
    info = describe_payload(encode_update(update))
    rows = {row["name"]: row for row in info["tensors"]}
    conv = rows["conv.weight"]
    assert conv["bits_per_element"] == 8 * conv["body_bytes"] / (64 * 32 * 9) < 0.8
    assert rows["tiny.weight"]["bits_per_element"] == 8 / 6 and rows["empty.weight"]["bits_per_element"] == 0.0
    assert conv["ones_fraction"] == pytest.approx(update.masks["conv.weight"].float().mean().item())
    masked = [row for row in info["tensors"] if row["encoding"] in ("mask", "coded_mask")]
    bits = 8 * sum(row["body_bytes"] for row in masked) / sum(row["numel"] for row in masked)
    assert info["mask_bits_per_element"] == bits
    assert describe_payload(encode_update(make_update("none")))["mask_bits_per_element"] == 0.0
    assert describe_payload(encode_update(update, mask_encoding="packed"))["mask_bits_per_element"] > 1.0


def test_encoder_refuses_unknown_mask_encoding():
    with pytest.raises(ValueError, match=r"mask_encoding 'zstd' is not valid; choose one of \['coded', 'packed'\]"):
        encode_update(make_update(), mask_encoding="zstd")


# --------------------------------------------------------------------------- refusals

SHAPE = (16, 8, 3, 3)
MASK = torch.rand(SHAPE, generator=torch.Generator().manual_seed(2)) < 0.1
BODY = encode_mask(MASK)


def test_hand_built_coded_payload_decodes():
    update = decode_update(raw_payload([(b"w", CODED, SHAPE, len(BODY))], [BODY], family=BERNOULLI))
    assert torch.equal(update.masks["w"], MASK)


@pytest.mark.parametrize(
    ("size", "message"),
    [
        (coded_overhead(SHAPE) - 1, "coded mask body length is 16 bytes, expected at least 17 and fewer than the 144"),
        (packed_size(math.prod(SHAPE)), "body length is 144 bytes, expected at least 17 and fewer than the 144 bytes"),
    ],
)
def test_coded_body_lengths_are_bounded_by_the_shape(size, message):
    with pytest.raises(PayloadError, match=message):
        decode_update(raw_payload([(b"w", CODED, SHAPE, size)], [bytes(size)], family=BERNOULLI))


def test_bodies_too_short_for_their_shape_are_refused_before_decoding():
    with pytest.raises(PayloadError, match="length is 100 bytes, expected at least 754033 and fewer than"):
        decode_update(raw_payload([(b"w", CODED, (2**30,), 100)], [bytes(100)], family=BERNOULLI))


def test_empty_and_tiny_masks_cannot_be_coded():
    with pytest.raises(PayloadError, match="expected at least 9 and fewer than the 0 bytes"):
        decode_update(raw_payload([(b"e", CODED, (0, 4), 5)], [bytes(5)], family=BERNOULLI))
    with pytest.raises(PayloadError, match="fewer than the 1 bytes"):
        decode_update(raw_payload([(b"t", CODED, (3, 2), 0)], [], family=BERNOULLI))


def test_corrupt_coded_body_names_the_tensor():
    body = BODY[:-2] + bytes([BODY[-2] ^ 0xFF, BODY[-1]])
    with pytest.raises(PayloadError, match="tensor 'w': coded mask"):
        decode_update(raw_payload([(b"w", CODED, SHAPE, len(body))], [body], family=BERNOULLI))


def test_dense_update_cannot_carry_coded_masks():
    with pytest.raises(PayloadError, match=r"mask kind 'none' .* cannot carry mask tensors \['w'\]"):
        decode_update(raw_payload([(b"w", CODED, SHAPE, len(BODY))], [BODY], kind=2, family=BERNOULLI))


def test_coded_mask_is_a_mask_for_the_servers_manifest():
    update = skewed_update()
    specs = specs_of(update)
    specs["conv.weight"] = type(specs["conv.weight"])((64, 32, 3, 3), "dense")
    with pytest.raises(PayloadError, match="tensor 'conv.weight' is sent as mask but the server expects dense"):
        decode_update(encode_update(update), specs)


@pytest.mark.parametrize("version", [1, 5])  # 5: the last format of 16-bit rANS lanes
def test_older_payloads_are_refused_by_version(version):
    payload = bytearray(encode_update(skewed_update(), mask_encoding="packed"))
    struct.pack_into("<H", payload, 4, version)
    with pytest.raises(PayloadError, match=f"unsupported format version {version}; this reader supports 6"):
        decode_update(bytes(payload))
