"""Deflated dense bodies (format version 3): lossless, shorter only, validated, fuzzed."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch

from fedmrn_pl.update import ClientUpdate, NoiseSpec
from fedmrn_pl.wire import DenseEncoding, PayloadError, decode_update, describe_payload, encode_update, payload_size
from fedmrn_pl.wire.dense_coding import deflate_planes, inflate_planes
from fedmrn_pl.wire.parse import parse_payload
from tests.wire.test_format import assert_same_update, make_update, raw_payload, reseal, specs_of

F32, I64, MASK = 1, 3, 0
DEFLATED = 0x80
VALUES = torch.linspace(0.5, 0.75, 64)  # one exponent, slowly moving mantissas: compresses well
RAW = VALUES.numpy().astype("<f4").tobytes()
BODY = deflate_planes(RAW, 4)


def bn_update() -> ClientUpdate:
    """An update whose BatchNorm-like dense tensors deflate, plus an incompressible one."""
    gen = torch.Generator().manual_seed(3)
    dense = {
        "bn.running_var": VALUES.clone(),
        "bn.weight": torch.ones(64),
        "bn.num_batches_tracked": torch.tensor(17),
        "noise": torch.randint(0, 2**62, (4,), generator=gen),  # random int64 bytes: stays raw
        "half": VALUES.half(),
    }
    masks = {"w": torch.rand(8, 4, 3, 3, generator=gen) < 0.2}
    return ClientUpdate(4, 2, 99, "binary", NoiseSpec(), 50, masks, dense)


def test_deflated_payload_decodes_bit_exact_and_is_smaller_than_raw():
    update = bn_update()
    payload = encode_update(update)
    assert_same_update(decode_update(payload, specs_of(update), server_round=4), update)
    assert len(payload) < len(encode_update(update, dense_encoding="raw"))
    rows = {row["name"]: row for row in describe_payload(payload)["tensors"]}
    assert rows["bn.running_var"]["deflated"] and rows["bn.weight"]["deflated"] and rows["half"]["deflated"]
    assert not rows["noise"]["deflated"] and not rows["w"]["deflated"]
    assert rows["bn.running_var"]["encoding"] == "float32"  # the dtype, as the server's manifest checks it


def test_raw_dense_encoding_writes_the_version_2_body_sizes():
    update = bn_update()
    dense = {name: (t.shape, t.dtype) for name, t in update.dense.items()}
    payload = encode_update(update, mask_encoding="packed", dense_encoding="raw")
    assert len(payload) == payload_size({"w": (8, 4, 3, 3)}, dense)
    assert not any(row["deflated"] for row in describe_payload(payload)["tensors"])


def test_every_dense_dtype_round_trips_deflated():
    update = make_update("none")
    for dtype in (None, "float16"):
        payload = encode_update(update, dense_dtype=dtype)
        decoded = decode_update(payload, specs_of(update))
        for name, tensor in update.dense.items():
            want = tensor.half() if dtype and tensor.is_floating_point() else tensor
            assert decoded.dense[name].numpy().tobytes() == want.numpy().tobytes(), name


def test_encoder_refuses_unknown_dense_encoding():
    with pytest.raises(ValueError, match=r"dense_encoding 'lzma' is not valid; choose one of \['deflate', 'raw'\]"):
        encode_update(bn_update(), dense_encoding="lzma")
    assert DenseEncoding.values() == ["deflate", "raw"]


def test_hand_built_deflated_body_decodes():
    update = decode_update(raw_payload([(b"v", F32 | DEFLATED, (64,), len(BODY))], [BODY]))
    assert torch.equal(update.dense["v"], VALUES)


def test_any_valid_deflate_stream_is_accepted_not_only_ours():
    planes = np.frombuffer(RAW, dtype=np.uint8).reshape(-1, 4).T.tobytes()
    other = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_FIXED)  # two blocks: another valid stream
    body = other.compress(planes[:128]) + other.flush(zlib.Z_FULL_FLUSH) + other.compress(planes[128:]) + other.flush()
    assert body != BODY and len(body) < len(RAW)
    update = decode_update(raw_payload([(b"v", F32 | DEFLATED, (64,), len(body))], [body]))
    assert torch.equal(update.dense["v"], VALUES)


@pytest.mark.parametrize(
    ("code", "shape", "body", "message"),
    [
        (MASK | DEFLATED, (16,), b"\x00\x00", "tensor 'v' is a mask marked deflated; only dense bodies"),
        (F32 | DEFLATED, (64,), RAW, "deflated body length is 256 bytes, expected at least 1 and fewer than the 256"),
        (F32 | DEFLATED, (2**20,), b"\x03\x00", "deflated body length is 2 bytes, expected at least 4065 and fewer"),
        (F32 | DEFLATED, (0,), b"", "deflated body length is 0 bytes, expected at least 1 and fewer than the 0"),
        (F32 | DEFLATED, (64,), b"\xff" * 20, "tensor 'v': deflated body is corrupt"),
        (F32 | DEFLATED, (64,), BODY + b"\x00", "tensor 'v': deflated body has 1 bytes after the end of its stream"),
        (F32 | DEFLATED, (64,), BODY[:-3], "tensor 'v': deflated body inflates to only"),
        (F32 | DEFLATED, (63,), BODY, "tensor 'v': deflated body inflates to more than 252 bytes"),
        (I64 | DEFLATED, (32,), deflate_planes(RAW, 4), None),  # 256 raw bytes of int64: valid
        (0x7F | DEFLATED, (4,), b"\x00", "unknown encoding code 255"),
    ],
)
def test_bad_deflated_bodies_raise_payload_error(code, shape, body, message):
    payload = raw_payload([(b"v", code, shape, len(body))], [body])
    if message is None:
        assert decode_update(payload).dense["v"].dtype == torch.int64
        return
    with pytest.raises(PayloadError, match=message):
        decode_update(payload)


def test_inflate_never_returns_more_than_the_declared_size():
    bomb = deflate_planes(bytes(4 * 1_000_000), 4)  # 4 MB of zeros in ~4 kB
    with pytest.raises(PayloadError, match="inflates to more than 400 bytes"):
        inflate_planes(bomb, 4, 400)


def test_version_2_payloads_are_refused_by_version():
    payload = bytearray(encode_update(bn_update()))
    struct.pack_into("<H", payload, 4, 2)
    with pytest.raises(PayloadError, match="unsupported format version 2; this reader supports 6"):
        decode_update(reseal(bytes(payload[:-16])))


def _oracle(payload: bytes) -> dict[str, bytes]:
    """Each dense tensor's bytes as the payload's bodies say, inflated here with zlib independently."""
    parsed = parse_payload(payload, 1 << 30)
    out = {}
    for entry in parsed.entries:
        if entry.encoding in ("mask", "coded_mask"):
            continue
        body = bytes(parsed.view[entry.offset : entry.offset + entry.size])
        if entry.deflated:
            itemsize = {"float32": 4, "float16": 2, "int64": 8}[entry.encoding]
            body = np.frombuffer(zlib.decompress(body, -15), dtype=np.uint8).reshape(itemsize, -1).T.tobytes()
        out[entry.name] = body
    return out


def test_resealed_body_flips_are_refused_or_decoded_as_the_bytes_say():
    update = bn_update()
    payload = encode_update(update)
    parsed = parse_payload(payload, 1 << 30)
    deflated = [e for e in parsed.entries if e.deflated]
    rng = np.random.default_rng(20240612)
    outcomes = {"refused": 0, "decoded": 0}
    for _ in range(600):
        entry = deflated[rng.integers(len(deflated))]
        mutant = bytearray(payload[:-16])
        for pos in rng.integers(entry.offset, entry.offset + entry.size, size=rng.integers(1, 3)):
            mutant[pos] ^= 1 << int(rng.integers(8))
        mutant = reseal(bytes(mutant))
        try:
            decoded = decode_update(mutant, specs_of(update))
        except PayloadError:
            outcomes["refused"] += 1
            continue
        outcomes["decoded"] += 1
        said = _oracle(mutant)
        for name, tensor in decoded.dense.items():
            assert tensor.numpy().astype(tensor.numpy().dtype.newbyteorder("<")).tobytes() == said[name], name
        assert_same_update(decode_update(encode_update(decoded)), decoded)  # and it re-encodes losslessly
    assert outcomes["refused"] > 0 and outcomes["decoded"] > 0
