"""Tests for fedmrn_pl.wire.format: round trips, exact sizes, the layout, every refusal."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import math
import pathlib
import re
import struct

import numpy as np
import pytest
import torch

import fedmrn_pl.wire
from fedmrn_pl.update import MASK_KINDS, ClientUpdate, NoiseFamily, NoiseSpec
from fedmrn_pl.wire import (
    CHECKSUM_SIZE,
    FORMAT_VERSION,
    HEADER_SIZE,
    PayloadError,
    TensorSpec,
    decode_update,
    describe_payload,
    encode_update,
    expected_manifest,
    manifest_size,
    payload_size,
)

# the documented layout, written out independently of the package
HEADER_FMT = "<4sHHQQQBBdQII"
KIND_CODE = {"binary": 0, "signed": 1, "none": 2}
FAMILY_CODE = {"uniform": 0, "gauss": 1, "bernoulli": 2}
ENCODING_CODE = {"mask": 0, "float32": 1, "float16": 2, "int64": 3, "coded_mask": 4}
MASK_SHAPES = {"conv1.weight": (5, 3, 3, 3), "conv2.weight": (16, 5, 3, 3), "fc.weight": (10, 37)}
DENSE_SHAPES = {
    "conv1.bias": (5,),
    "bn.weight": (16,),
    "bn.bias": (16,),
    "bn.running_mean": (16,),
    "bn.running_var": (16,),
    "bn.num_batches_tracked": (),
    "fc.bias": (10,),
}


def make_update(mask_kind: str = "binary", family: str = "uniform", seed: int = 0) -> ClientUpdate:
    """A CNN-like update: conv/linear masks, float32 biases and BN stats, an int64 counter."""
    gen = torch.Generator().manual_seed(seed)
    shapes = {**MASK_SHAPES, **DENSE_SHAPES} if mask_kind == "none" else DENSE_SHAPES
    dense = {name: torch.randn(shape, generator=gen) for name, shape in shapes.items()}
    dense["bn.num_batches_tracked"] = torch.tensor(1234, dtype=torch.int64)
    masks = {} if mask_kind == "none" else {n: torch.rand(s, generator=gen) < 0.3 for n, s in MASK_SHAPES.items()}
    noise = NoiseSpec() if mask_kind == "none" else NoiseSpec(family, 0.0123)  # a dense update's noise is unused: one value
    return ClientUpdate(
        server_round=3, client_id=17, seed=2**63 - 5, mask_kind=mask_kind, noise=noise,
        num_examples=600, masks=masks, dense=dense,
    )  # fmt: skip


def assert_same_update(actual: ClientUpdate, expected: ClientUpdate) -> None:
    """Every field equal and every tensor equal bit for bit, with the same dtype and shape."""
    for field in ("server_round", "client_id", "seed", "mask_kind", "noise", "num_examples"):
        assert getattr(actual, field) == getattr(expected, field), field
    for group in ("masks", "dense"):
        got, want = getattr(actual, group), getattr(expected, group)
        assert sorted(got) == sorted(want)
        for name, tensor in want.items():
            assert got[name].dtype == tensor.dtype and got[name].shape == tensor.shape, name
            assert got[name].numpy().tobytes() == tensor.detach().contiguous().numpy().tobytes(), name


def reseal(content: bytes) -> bytes:
    """``content`` with a fresh checksum trailer, so only the parser's own checks can refuse it."""
    return content + hashlib.blake2b(content, digest_size=16).digest()


MASK_EXTRAS_DEFAULT = struct.pack("<ff", 0.0, 0.0)


def raw_payload(
    entries: list[tuple],
    bodies: list[bytes],
    *,
    kind: int = 0,
    family: int = 0,
    alpha: float = 0.5,
    version: int = FORMAT_VERSION,
    flags: int = 0,
    count: int | None = None,
    manifest_delta: int = 0,
) -> bytes:
    """Hand-build a payload: ``entries`` are ``(name bytes, encoding code, shape, body length[, mask extras])``.

    A mask entry (codes 0, 4, 7) carries its noise scale and update RMS: by default 0.0
    (the header's alpha) and 0.0, else the given bytes.
    """
    manifest = b"".join(
        struct.pack("<H", len(name)) + name + struct.pack(f"<BB{len(shape)}QQ", code, len(shape), *shape, size)
        + (entry[4] if len(entry) > 4 else (MASK_EXTRAS_DEFAULT if code in (0, 4, 7) else b""))
        for entry in entries
        for name, code, shape, size in [entry[:4]]
    )
    count = len(entries) if count is None else count
    header = struct.pack(HEADER_FMT, b"FMRN", version, flags, 3, 17, 99, kind, family, alpha, 600, count,
                         len(manifest) + manifest_delta)  # fmt: skip
    return reseal(header + manifest + b"".join(bodies))


def specs_of(update: ClientUpdate) -> dict[str, TensorSpec]:
    masks = {name: t.shape for name, t in update.masks.items()}
    return expected_manifest(masks, {name: t.shape for name, t in update.dense.items()})


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("family", NoiseFamily.values())
@pytest.mark.parametrize("mask_kind", MASK_KINDS)
def test_decode_of_encode_is_bit_exact_for_every_kind_and_noise_family(mask_kind, family):
    update = make_update(mask_kind, family)
    decoded = decode_update(encode_update(update), specs_of(update), server_round=3)
    assert_same_update(decoded, update)


def test_float16_option_sends_float32_dense_tensors_as_float16_only():
    update = make_update()
    payload = encode_update(update, dense_dtype="float16", dense_encoding="raw")
    decoded = decode_update(payload, specs_of(update))
    assert decoded.dense["bn.running_var"].dtype == torch.float16
    assert torch.equal(decoded.dense["bn.running_var"], update.dense["bn.running_var"].half())
    assert decoded.dense["bn.num_batches_tracked"].dtype == torch.int64
    assert decoded.dense["bn.num_batches_tracked"].item() == 1234
    for name, mask in update.masks.items():
        assert torch.equal(decoded.masks[name], mask)
    assert len(payload) == len(encode_update(update, dense_encoding="raw")) - 2 * sum(math.prod(DENSE_SHAPES[n]) for n in DENSE_SHAPES
                                                                 if n != "bn.num_batches_tracked")  # fmt: skip


def test_float16_dense_tensors_round_trip_as_float16():
    update = make_update()
    update.dense["fc.bias"] = update.dense["fc.bias"].half()
    assert_same_update(decode_update(encode_update(update)), update)


def test_non_contiguous_tensors_encode_like_their_contiguous_copies():
    update = make_update()
    strided = make_update()
    strided.masks["fc.weight"] = update.masks["fc.weight"].t().contiguous().t()
    strided.dense["bn.bias"] = torch.stack([update.dense["bn.bias"], update.dense["bn.bias"]], 1)[:, 0]
    assert not strided.masks["fc.weight"].is_contiguous() and not strided.dense["bn.bias"].is_contiguous()
    assert encode_update(strided) == encode_update(update)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_encode_like_cpu_tensors():
    update = make_update()
    on_gpu = make_update()
    on_gpu.masks = {n: t.cuda() for n, t in update.masks.items()}
    on_gpu.dense = {n: t.cuda() for n, t in update.dense.items()}
    assert encode_update(on_gpu) == encode_update(update)


def test_encoding_is_deterministic_and_ignores_dict_order():
    update = make_update()
    shuffled = make_update()
    shuffled.masks = dict(reversed(list(update.masks.items())))
    shuffled.dense = dict(reversed(list(update.dense.items())))
    assert encode_update(update) == encode_update(update) == encode_update(shuffled)


def test_decoded_tensors_own_writeable_memory():
    update = make_update()
    payload = bytearray(encode_update(update))
    decoded = decode_update(payload)
    payload[:] = bytes(len(payload))
    assert_same_update(decoded, update)
    decoded.dense["bn.bias"] += 1  # fails or warns on a read-only view
    decoded.masks["fc.weight"][0, 0] = True


def test_payload_accepts_a_memoryview():
    update = make_update()
    assert_same_update(decode_update(memoryview(encode_update(update))), update)


# --------------------------------------------------------------------------- layout and size


def test_payload_size_matches_the_documented_formula_exactly():
    update = make_update()
    names = {**MASK_SHAPES, **DENSE_SHAPES}
    manifest = sum(2 + len(name) + 1 + 1 + 8 * len(shape) + 8 + (8 if name in MASK_SHAPES else 0)
                   for name, shape in names.items())  # fmt: skip
    masks = sum(math.ceil(math.prod(s) / 8) for s in MASK_SHAPES.values())
    dense = sum(4 * math.prod(s) for n, s in DENSE_SHAPES.items() if n != "bn.num_batches_tracked") + 8
    formula = 58 + manifest + masks + dense + 16
    assert len(encode_update(update, dense_encoding="raw")) == formula
    assert (HEADER_SIZE, CHECKSUM_SIZE, manifest_size(names, list(MASK_SHAPES))) == (58, 16, manifest)
    dense_specs = {n: (t.shape, t.dtype) for n, t in update.dense.items()}
    assert payload_size(MASK_SHAPES, dense_specs) == formula


def test_payload_size_counts_float16_and_string_dtypes():
    update = make_update("none")
    payload = encode_update(update, dense_dtype="float16", dense_encoding="raw")
    dense = {n: (t.shape, "int64" if t.dtype == torch.int64 else "float16") for n, t in update.dense.items()}
    assert payload_size({}, dense) == len(payload)


def test_encoder_writes_the_documented_byte_layout():
    update = ClientUpdate(
        server_round=3, client_id=17, seed=99, mask_kind="binary", noise=NoiseSpec("uniform", 0.5), num_examples=600,
        masks={"w": torch.tensor([[True, False, True], [True, False, False], [False, False, True]])},
        dense={"b": torch.tensor([1.5, -2.0]), "n": torch.tensor(7)},
    )  # fmt: skip
    expected = raw_payload(
        [(b"b", 1, (2,), 8), (b"n", 3, (), 8), (b"w", 0, (3, 3), 2)],
        [struct.pack("<2f", 1.5, -2.0), struct.pack("<q", 7), bytes([0b00001101, 0b00000001])],
    )
    assert encode_update(update, dense_encoding="raw") == expected


def test_describe_payload_reports_header_overhead_and_tensors():
    update = make_update("signed", "bernoulli")
    payload = encode_update(update)
    info = describe_payload(payload)
    assert info["format_version"] == FORMAT_VERSION
    assert (info["server_round"], info["client_id"], info["seed"], info["num_examples"]) == (3, 17, 2**63 - 5, 600)
    assert (info["mask_kind"], info["noise_family"], info["noise_alpha"]) == ("signed", "bernoulli", 0.0123)
    assert info["total_bytes"] == len(payload)
    assert info["overhead_bytes"] == len(payload) - sum(row["body_bytes"] for row in info["tensors"])
    rows = {row["name"]: row for row in info["tensors"]}
    assert [row["name"] for row in info["tensors"]] == sorted(rows)
    fc = rows["fc.weight"]
    assert (fc["shape"], fc["encoding"], fc["numel"], fc["body_bytes"]) == ([10, 37], "mask", 370, 47)
    assert fc["ones_fraction"] == pytest.approx(update.masks["fc.weight"].float().mean().item())
    assert rows["bn.num_batches_tracked"]["encoding"] == "int64" and "ones_fraction" not in rows["fc.bias"]


def test_wire_package_never_imports_pickle_or_torch_serialisation():
    for path in pathlib.Path(fedmrn_pl.wire.__file__).parent.glob("*.py"):
        source = path.read_text()
        imported = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported |= {node.module or ""} | {alias.name for alias in node.names}
        assert not {"pickle", "cPickle", "dill", "marshal"} & imported, path
        assert "torch.load" not in source and "torch.save" not in source, path


# --------------------------------------------------------------------------- refusals


def edit(payload: bytes, offset: int, fmt: str, value) -> bytes:
    """Overwrite one field and reseal, so the checksum does not hide the field check."""
    content = bytearray(payload[:-16])
    struct.pack_into(fmt, content, offset, value)
    return reseal(bytes(content))


@pytest.fixture(scope="module")
def payload() -> bytes:
    return encode_update(make_update())


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "message"),
    [
        (0, "4s", b"XXXX", r"bad magic b'XXXX', expected b'FMRN'"),
        (4, "<H", 7, f"unsupported format version 7; this reader supports {FORMAT_VERSION}"),
        (6, "<H", 4, "unsupported flags 0x0004"),
        (32, "B", 3, "unknown mask kind code 3"),
        (33, "B", 9, "unknown noise family code 9"),
        (34, "<d", float("nan"), "noise alpha must be a finite number > 0"),
        (34, "<d", -1.0, "noise alpha must be a finite number > 0"),
        (34, "<d", float("inf"), "noise alpha must be a finite number > 0"),
        (50, "<I", 2**32 - 1, "manifest truncated at byte"),
        (50, "<I", 1, "manifest has .* trailing bytes"),
        (54, "<I", 2**32 - 1, "manifest length 4294967295 runs past the end"),
        (54, "<I", 3, "manifest truncated at byte 60: need 7 bytes for tensor #0 name, only 1 left"),
    ],
)
def test_bad_header_fields_raise_payload_error(payload, offset, fmt, value, message):
    with pytest.raises(PayloadError, match=message):
        decode_update(edit(payload, offset, fmt, value))


def test_oversized_payload_is_refused_before_reading(payload):
    with pytest.raises(PayloadError, match=f"payload of {len(payload)} bytes exceeds the limit of 100 bytes"):
        decode_update(payload, max_bytes=100)
    with pytest.raises(PayloadError, match="exceeds the limit"):
        decode_update(b"\x00" * 10, max_bytes=9)


@pytest.mark.parametrize("length", [0, 3, 5, 40, HEADER_SIZE + CHECKSUM_SIZE - 1])
def test_short_payload_is_reported_as_truncated(payload, length):
    with pytest.raises(PayloadError, match="truncated"):
        decode_update(payload[:length])


def test_corrupt_byte_is_a_checksum_mismatch(payload):
    corrupt = bytearray(payload)
    corrupt[len(payload) // 2] ^= 0x10
    with pytest.raises(PayloadError, match="checksum mismatch"):
        decode_update(bytes(corrupt))


def test_missing_body_bytes_name_the_truncated_tensor(payload):
    with pytest.raises(PayloadError, match=r"payload truncated at byte \d+: need 47 bytes for tensor 'fc.weight' body"):
        decode_update(reseal(payload[:-17]))


def test_trailing_bytes_are_refused(payload):
    with pytest.raises(PayloadError, match="3 trailing bytes after the last tensor body"):
        decode_update(reseal(payload[:-16] + b"abc"))
    with pytest.raises(PayloadError, match="checksum mismatch"):
        decode_update(payload + b"\x00")


def test_tensors_are_checked_against_the_servers_manifest(payload):
    specs = specs_of(make_update())
    without_fc = {n: s for n, s in specs.items() if n != "fc.weight"}
    with pytest.raises(PayloadError, match="unknown tensor 'fc.weight'"):
        decode_update(payload, without_fc)
    extra = {**specs, "a": TensorSpec((1,), "dense"), "b": TensorSpec((2,), "mask")}
    with pytest.raises(PayloadError, match=r"missing tensors \['a', 'b'\]"):
        decode_update(payload, extra)
    swapped = {**specs, "fc.weight": TensorSpec((37, 10), "mask")}
    with pytest.raises(PayloadError, match=r"tensor 'fc.weight' has shape \(10, 37\), expected \(37, 10\)"):
        decode_update(payload, swapped)
    as_dense = {**specs, "fc.weight": TensorSpec((10, 37), "dense")}
    with pytest.raises(PayloadError, match="tensor 'fc.weight' is sent as mask but the server expects dense"):
        decode_update(payload, as_dense)
    as_mask = {**specs, "fc.bias": TensorSpec((10,), "mask")}
    with pytest.raises(PayloadError, match="tensor 'fc.bias' is sent as dense but the server expects mask"):
        decode_update(payload, as_mask)


def test_payload_from_another_round_is_refused(payload):
    with pytest.raises(PayloadError, match="stale payload: round 3, server is at round 5"):
        decode_update(payload, server_round=5)
    with pytest.raises(PayloadError, match="wrong round: payload: round 3, server is at round 2"):
        decode_update(payload, server_round=2)


@pytest.mark.parametrize(
    ("entries", "bodies", "message"),
    [
        ([(b"w", 0, (1,) * 9, 1)], [b"\x01"], "has 9 dims, expected at most 8"),
        ([(b"w", 1, (3,), 8)], [bytes(8)], "body length is 8 bytes, expected 12 for shape \\(3,\\) encoded as float32"),
        ([(b"w", 0, (10,), 1)], [b"\x01"], "body length is 1 bytes, expected 2"),
        ([(b"w", 8, (1,), 1)], [b"\x01"], "unknown encoding code 8"),
        ([(b"", 1, (1,), 4)], [bytes(4)], "empty name"),
        ([(b"\xff\xfe", 1, (1,), 4)], [bytes(4)], "not valid UTF-8"),
        ([(b"a", 1, (1,), 4), (b"a", 1, (1,), 4)], [bytes(4)] * 2, "duplicate tensor name: 'a' after 'a'"),
        ([(b"b", 1, (1,), 4), (b"a", 1, (1,), 4)], [bytes(4)] * 2, "tensor names out of order: 'a' after 'b'"),
        ([(b"w", 0, (3,), 1)], [b"\x0f"], "tensor 'w': non-zero padding bits"),
        ([(b"w", 1, (0, 2**40, 2**40), 0)], [], "larger than the limit"),
    ],
)
def test_bad_manifest_entries_raise_payload_error(entries, bodies, message):
    with pytest.raises(PayloadError, match=message):
        decode_update(raw_payload(entries, bodies))


def test_dense_update_cannot_carry_masks():
    with pytest.raises(PayloadError, match="mask kind 'none' .* cannot carry mask tensors \\['w'\\]"):
        decode_update(raw_payload([(b"w", 0, (8,), 1)], [b"\x01"], kind=2))


def test_zero_sized_tensors_with_large_dims_decode():
    update = decode_update(raw_payload([(b"e", 1, (0, 2**30), 0), (b"m", 0, (2**20, 0), 0)], []))
    assert update.dense["e"].shape == (0, 2**30) and update.masks["m"].shape == (2**20, 0)


def test_describe_payload_validates_too(payload):
    with pytest.raises(PayloadError, match="checksum mismatch"):
        describe_payload(payload[:-1] + bytes([payload[-1] ^ 1]))


# --------------------------------------------------------------------------- encoder input checks


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda u: setattr(u, "client_id", -1), "client_id must be an int in"),
        (lambda u: setattr(u, "seed", 2**64), "seed must be an int in"),
        (lambda u: u.dense.__setitem__("x", torch.zeros(2, dtype=torch.float64)), "dtype torch.float64"),
        (lambda u: u.dense.__setitem__("", torch.zeros(2)), "non-empty strings"),
        (lambda u: u.masks.__setitem__("deep", torch.zeros((1,) * 9, dtype=torch.bool)), "at most 8"),
        (lambda u: u.masks.__setitem__("fc.bias", torch.zeros(10, dtype=torch.bool)), "both masked and dense"),
    ],
)
def test_encoder_refuses_updates_the_format_cannot_carry(change, message):
    update = make_update()
    change(update)
    with pytest.raises(ValueError, match=message):
        encode_update(update)


def test_encoder_refuses_unknown_dense_dtype_option():
    with pytest.raises(ValueError, match="dense_dtype 'bfloat16' is not valid"):
        encode_update(make_update(), dense_dtype="bfloat16")


def test_tensor_spec_rejects_unknown_roles_and_overlaps():
    with pytest.raises(ValueError, match="choose one of \\['mask', 'dense', 'sign_scale', 'sparse'\\]"):
        TensorSpec((1,), "ternary")
    with pytest.raises(ValueError, match="both masked and dense"):
        expected_manifest({"w": (1,)}, {"w": (1,)})


def test_big_mask_round_trips(payload):
    mask = torch.from_numpy(np.random.default_rng(0).random(1_000_003) < 0.5)
    update = ClientUpdate(1, 2, 3, "signed", NoiseSpec(), 4, masks={"big": mask})
    assert len(encode_update(update)) == payload_size({"big": (1_000_003,)}, {})
    assert_same_update(decode_update(encode_update(update)), update)


# --------------------------------------------------------------------------- per-mask noise scales (version 5)


def test_per_mask_noise_scales_and_update_rms_round_trip_bit_for_bit():
    update = make_update("signed")
    names = sorted(update.masks)
    update.noise_scales = {names[0]: float(np.float32(0.0371))}  # the other masks: the header's alpha
    update.update_rms = {name: float(np.float32(0.5 + i)) for i, name in enumerate(names)}
    decoded = decode_update(encode_update(update), specs_of(update))
    assert decoded.noise_scales == update.noise_scales and decoded.update_rms == update.update_rms
    assert decoded.noise_for(names[0]).alpha == update.noise_scales[names[0]]
    assert decoded.noise_for(names[1]) == update.noise
    assert encode_update(decoded) == encode_update(update)


def test_a_noise_scale_that_float32_cannot_hold_is_refused_at_encoding():
    update = make_update("signed")
    update.noise_scales = {sorted(update.masks)[0]: 0.1}  # 0.1 is no float32 value
    with pytest.raises(ValueError, match="not a float32 value.*as_wire_scale"):
        encode_update(update)


@pytest.mark.parametrize(
    "scale, rms, words",
    [
        (float("nan"), 0.0, "noise scale is nan"),
        (float("inf"), 0.0, "noise scale is inf"),
        (-0.5, 0.0, "noise scale is -0.5"),
        (-0.0, 0.0, "noise scale is -0.0"),
        (0.5, float("nan"), "update RMS is nan"),
        (0.5, -1.0, "update RMS is -1.0"),
        (0.5, float("inf"), "update RMS is inf"),
    ],
)
def test_a_corrupt_noise_scale_or_update_rms_raises_payload_error(scale, rms, words):
    extras = struct.pack("<ff", scale, rms)
    payload = raw_payload([(b"w", 0, (3, 3), 2, extras)], [bytes([0b00001101, 0b00000001])])
    with pytest.raises(PayloadError, match=re.escape(words)):
        decode_update(payload)


def test_update_rejects_scales_for_tensors_that_are_not_masks():
    update = make_update("signed")
    with pytest.raises(ValueError, match="noise_scales names tensors that are not masks"):
        dataclasses.replace(update, noise_scales={"fc.bias": 0.5})
    with pytest.raises(ValueError, match="update_rms"):
        dataclasses.replace(update, update_rms={sorted(update.masks)[0]: -1.0})
