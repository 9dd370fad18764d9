"""The baselines' payload kinds: sign bits + scale and sparse values round-trip and refuse corruption."""

from __future__ import annotations

import math

import pytest
import torch

from fedmrn_pl.compressed import SignScale, Sparse
from fedmrn_pl.update import ClientUpdate, NoiseSpec
from fedmrn_pl.wire import CHECKSUM_SIZE, HEADER_SIZE, PayloadError, decode_update, encode_update, expected_manifest
from fedmrn_pl.wire.layout import checksum
from fedmrn_pl.wire.value_coding import index_bits, sign_scale_size, sparse_count, sparse_size


def _update() -> ClientUpdate:
    gen = torch.Generator().manual_seed(3)
    compressed = {
        "conv.weight": SignScale(torch.rand(4, 3, 3, 3, generator=gen) < 0.5, 0.0123),
        "rotated.weight": SignScale(torch.rand(128, generator=gen) < 0.5, 2.5),
        "fc.weight": Sparse(torch.randn(7, generator=gen), torch.tensor([0, 3, 4, 10, 33, 50, 59]), (6, 10)),
    }
    dense = {"fc.bias": torch.randn(6, generator=gen)}
    return ClientUpdate(2, 5, 77, "none", NoiseSpec(), 40, dense=dense, compressed=compressed)


def _expected() -> dict:
    return expected_manifest(
        {}, {"fc.bias": (6,)},
        compressed={"conv.weight": ("sign_scale", (4, 3, 3, 3)), "rotated.weight": ("sign_scale", (128,)),
                    "fc.weight": ("sparse", (6, 10))},
    )  # fmt: skip


def _reseal(content: bytes) -> bytes:
    return content + checksum(content)


def test_sign_scale_and_sparse_round_trip_bit_exactly():
    update = _update()
    payload = encode_update(update)
    decoded = decode_update(payload, _expected(), server_round=2)
    for name, tensor in update.compressed.items():
        got = decoded.compressed[name]
        assert type(got) is type(tensor)
        if isinstance(tensor, SignScale):
            assert torch.equal(got.signs, tensor.signs) and got.scale == tensor.scale
        else:
            assert torch.equal(got.values, tensor.values) and torch.equal(got.indices, tensor.indices)
            assert got.shape == tensor.shape
    assert encode_update(decoded) == payload  # canonical


def test_body_sizes_follow_their_formulas():
    assert sign_scale_size(108) == 4 + 14
    assert index_bits(60) == 6 and index_bits(1) == 1 and index_bits(1024) == 10 and index_bits(1025) == 11
    assert sparse_size(7, 60) == 28 + math.ceil(42 / 8)
    for numel in (1, 60, 1000, 2**20):
        for count in range(0, min(numel, 300)):
            assert sparse_count(sparse_size(count, numel), numel) == count


def test_dequantize_and_densify():
    signs = SignScale(torch.tensor([True, False, True]), 0.5)
    assert torch.equal(signs.dequantize(), torch.tensor([0.5, -0.5, 0.5]))
    sparse = Sparse(torch.tensor([1.0, -2.0]), torch.tensor([1, 3]), (2, 2))
    assert torch.equal(sparse.densify(), torch.tensor([[0.0, 1.0], [0.0, -2.0]]))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: SignScale(torch.zeros(3), 1.0), "bool"),
        (lambda: SignScale(torch.zeros(3, dtype=torch.bool), float("nan")), "finite"),
        (lambda: SignScale(torch.zeros(3, dtype=torch.bool), -1.0), ">= 0"),
        (lambda: Sparse(torch.zeros(2), torch.tensor([1, 1]), (4,)), "ascending"),
        (lambda: Sparse(torch.zeros(1), torch.tensor([4]), (4,)), "ascending"),
        (lambda: Sparse(torch.zeros(1, dtype=torch.float64), torch.tensor([0]), (4,)), "float32"),
    ],
)
def test_invalid_compressed_tensors_are_refused_when_built(make, match):
    with pytest.raises((TypeError, ValueError), match=match):
        make()


def _body(payload: bytes, name: str) -> int:
    """Offset of ``name``'s body in ``payload`` (via the decoder's own parse)."""
    from fedmrn_pl.wire.parse import parse_payload

    entry = next(e for e in parse_payload(payload, 1 << 30).entries if e.name == name)
    return entry.offset


def test_corrupt_scale_indices_and_padding_are_refused():
    payload = encode_update(_update())
    content = bytearray(payload[:-CHECKSUM_SIZE])
    scale_at = _body(payload, "conv.weight")
    for bad in (float("nan"), float("inf"), -1.0, -0.0):
        mutant = bytearray(content)
        mutant[scale_at : scale_at + 4] = torch.tensor([bad], dtype=torch.float32).numpy().tobytes()
        with pytest.raises(PayloadError, match="sign scale"):
            decode_update(_reseal(bytes(mutant)))
    sparse_at = _body(payload, "fc.weight")
    index_start = sparse_at + 4 * 7
    mutant = bytearray(content)
    mutant[index_start] ^= 0x3F  # first index changes: order or range breaks, or the padding does
    with pytest.raises(PayloadError):
        decode_update(_reseal(bytes(mutant)))
    mutant = bytearray(content)
    mutant[index_start + 5] |= 0x80  # 42 index bits: the top 6 bits of byte 5 are padding
    with pytest.raises(PayloadError, match="padding"):
        decode_update(_reseal(bytes(mutant)))
    mutant = bytearray(content)
    mutant[sparse_at : sparse_at + 4] = torch.tensor([float("nan")]).numpy().tobytes()
    with pytest.raises(PayloadError, match="non-finite"):
        decode_update(_reseal(bytes(mutant)))


def test_roles_are_checked_against_the_servers_manifest():
    payload = encode_update(_update())
    wrong = expected_manifest(
        {"conv.weight": (4, 3, 3, 3)}, {"fc.bias": (6,)},
        compressed={"rotated.weight": ("sign_scale", (128,)), "fc.weight": ("sparse", (6, 10))},
    )  # fmt: skip
    with pytest.raises(PayloadError, match="sent as sign_scale but the server expects mask"):
        decode_update(payload, wrong)
    with pytest.raises(PayloadError, match="shape"):
        decode_update(payload, {**_expected(), "rotated.weight": _expected()["conv.weight"]})


def test_a_version_2_payload_is_refused_by_its_version():
    payload = bytearray(encode_update(_update()))
    payload[4:6] = (2).to_bytes(2, "little")
    with pytest.raises(PayloadError, match="unsupported format version 2"):
        decode_update(_reseal(bytes(payload[:-CHECKSUM_SIZE])))
    assert HEADER_SIZE == 58
