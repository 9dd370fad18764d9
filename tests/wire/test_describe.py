"""describe_payload (``fedmrn-pl inspect``) refuses exactly what decode_update refuses, in memory bounded by the payload."""

from __future__ import annotations

import math
import struct
import tracemalloc

import numpy as np
import pytest
import torch

import fedmrn_pl.wire.context_coding as context_coding
import fedmrn_pl.wire.mask_coding as mask_coding
from fedmrn_pl.compressed import SignScale, Sparse
from fedmrn_pl.masking.noise import generate_noise
from fedmrn_pl.update import ClientUpdate, NoiseSpec
from fedmrn_pl.wire import CHECKSUM_SIZE, UNUSED_NOISE, PayloadError, decode_update, describe_payload, encode_update
from fedmrn_pl.wire.dense_coding import deflate_planes
from fedmrn_pl.wire.mask_coding import MAX_ELEMENTS_PER_BYTE, encode_in_contexts, encode_mask
from fedmrn_pl.wire.parse import parse_payload
from tests.wire.test_format import raw_payload, reseal
from tests.wire.test_fuzz import CASES

MASK, F32, F16, CODED, SIGN_SCALE, SPARSE, NOISE_CODED = 0, 1, 2, 4, 5, 6, 7
DEFLATED = 0x80
UNIFORM, GAUSS, DENSE_KIND = 0, 1, 2
VALUES = torch.linspace(0.5, 0.75, 64)
RAW = VALUES.numpy().astype("<f4").tobytes()
GOOD = deflate_planes(RAW, 4)
F32_BYTES = {name: struct.pack("<f", value) for name, value in
             {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "-1": -1.0, "-0.0": -0.0}.items()}  # fmt: skip


def _refusal(call, *args, **kwargs) -> str | None:
    """The PayloadError message ``call`` raises, or None when it accepts."""
    try:
        call(*args, **kwargs)
    except PayloadError as error:
        return str(error)
    return None


def _sparse_body(values: list[float], indices: list[int], numel: int) -> bytes:
    """A ``sparse`` body written by hand: float32 values, then indices of ``index_bits`` bits, LSB-first."""
    bits = max(1, (numel - 1).bit_length())
    packed = sum(index << (bits * i) for i, index in enumerate(indices))
    return struct.pack(f"<{len(values)}f", *values) + packed.to_bytes(-(-len(indices) * bits // 8), "little")


# The bodies the server refuses and inspect used to call valid: it never decoded dense or compressed bodies.
BAD_BODIES = {
    "deflate: not a stream": ((b"v", F32 | DEFLATED, (64,)), b"\xff" * 20, "deflated body is corrupt"),
    "deflate: cut short": ((b"v", F32 | DEFLATED, (64,)), GOOD[:-3], "inflates to only"),
    "deflate: too long": ((b"v", F32 | DEFLATED, (63,)), GOOD, "inflates to more than 252 bytes"),
    "deflate: bytes after its end": ((b"v", F32 | DEFLATED, (64,)), GOOD + b"\x00", "1 bytes after the end of its stream"),
    "deflate: bad stored block": ((b"v", F32 | DEFLATED, (64,)), b"\x01\x05\x00\x00\x00" + RAW[:5], "invalid stored block"),
    "deflate: float16 too long": ((b"h", F16 | DEFLATED, (110,)), GOOD, "inflates to more than 220 bytes"),
    "sparse: indices out of order": ((b"s", SPARSE, (100,)), _sparse_body([1.0, 2.0], [9, 3], 100), "strictly ascending"),
    "sparse: index repeated": ((b"s", SPARSE, (100,)), _sparse_body([1.0, 2.0], [9, 9], 100), "strictly ascending"),
    "sparse: index past the end": ((b"s", SPARSE, (100,)), _sparse_body([1.0], [120], 100), "strictly ascending and below 100"),
    **{f"sign scale {name}": ((b"q", SIGN_SCALE, (16,)), raw + b"\x00\x00", "sign scale is")
       for name, raw in F32_BYTES.items()},
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_BODIES)
def test_inspect_refuses_every_body_the_server_refuses(case):
    (name, code, shape), body, words = BAD_BODIES[case]
    payload = raw_payload([(name, code, shape, len(body))], [body], kind=DENSE_KIND, alpha=0.01)
    refused = _refusal(decode_update, payload)
    assert refused is not None and words in refused
    assert _refusal(describe_payload, payload) == refused  # the same check, the same words


@pytest.mark.parametrize("case", CASES)
def test_inspect_and_decode_agree_on_every_resealed_body_flip(case):
    """Bodies mutated and resealed: describe_payload refuses exactly those decode_update refuses, in the same words."""
    _, payload, _ = CASES[case]
    parsed = parse_payload(payload, len(payload))
    start = parsed.entries[0].offset
    rng = np.random.default_rng(20261201)
    outcomes = set()
    for _ in range(300):
        mutant = bytearray(payload[:-CHECKSUM_SIZE])
        for position in rng.integers(start, len(mutant), size=rng.integers(1, 3)):
            mutant[position] ^= int(rng.integers(1, 256))
        resealed = reseal(bytes(mutant))
        refused = _refusal(decode_update, resealed)
        assert _refusal(describe_payload, resealed) == refused
        outcomes.add(refused is None)
    assert False in outcomes  # the flips did reach the body checks


def coded_body(numel: int, code: int) -> bytes:
    """A mask body of the fewest bytes the parser allows for ``numel`` elements: plausible probabilities, zero
    words, and on top the start state 2**32, so that it passes every check made before decoding."""
    prefix = (struct.pack("<I", 0x12345678) + bytes([1] * 8)) if code == NOISE_CODED else bytes([1])
    size = -(-((numel + 7) // 8) // mask_coding.MAX_SYMBOLS_PER_BYTE)
    size += (len(prefix) - size) % 4  # whole 4-byte words
    return prefix + bytes(size - len(prefix) - 4) + struct.pack("<I", 1)


def _coded_payload(numel: int, code: int, family: int) -> bytes:
    body = coded_body(numel, code)
    return raw_payload([(b"w", code, (numel,), len(body))], [body], family=family)


@pytest.mark.parametrize(("numel", "code", "family"), [(2**30, NOISE_CODED, UNIFORM), (2**27, NOISE_CODED, UNIFORM),
                                                       (2**30, CODED, GAUSS)])  # fmt: skip
def test_a_mask_declaring_more_than_its_bytes_can_hold_is_refused_before_decoding(numel, code, family, monkeypatch):
    """The issue's files (16 to 131 KB in format 5, 94 to 754 KB now) declaring 2**27 to 2**30 mask elements cost
    inspect 2.2 to 14 GB."""
    payload = _coded_payload(numel, code, family)
    monkeypatch.setattr(context_coding, "noise_context_chunks", lambda *a: pytest.fail("derived the noise"))
    monkeypatch.setattr(mask_coding, "_decode_stream", lambda *a: pytest.fail("decoded the stream"))
    with pytest.raises(PayloadError, match=rf"declare {numel} elements, more than any valid payload of "
                                           rf"{len(payload)} bytes holds \({MAX_ELEMENTS_PER_BYTE * len(payload)}: "):
        describe_payload(payload)
    with pytest.raises(PayloadError, match=rf"declare {numel} elements, more than max_elements=1000"):
        describe_payload(payload, max_elements=1000)


def test_the_element_bound_holds_for_every_coder_table():
    """MAX_ELEMENTS_PER_BYTE is a proof, not a guess: no frequency above 16,260,295 of 2**24, so at most 711 symbols
    between two 32-bit words (module docstring of mask_coding)."""
    every_q = np.repeat(np.arange(1, 256, dtype=np.uint8)[:, None], 8, axis=1)
    mixed = np.random.default_rng(0).choice(np.array([1, 2, 3, 128, 253, 254, 255], dtype=np.uint8), size=(3000, 8))
    tables = np.concatenate([mask_coding._frequencies(every_q), mask_coding._frequencies(mixed)])
    assert (tables >= 1).all() and (tables.sum(axis=1) == 2**24).all()
    top = int(tables.max())
    assert top <= (255**8 >> 40) + 255  # 2**24 * (255/256)**8, plus fewer than 256 units of rounding
    state, steps = 2**64 - 1, 0
    while state >= 2**32:  # the slowest a state can fall: the top symbol and the largest remainder every time
        state = (state >> 24) * top + top - 1
        steps += 1
    assert steps <= 711 and 8 * steps / 4 <= MAX_ELEMENTS_PER_BYTE and steps / 4 <= mask_coding.MAX_SYMBOLS_PER_BYTE
    best = torch.zeros(1 << 22, dtype=torch.bool)  # the most compressible mask there is
    for body in (encode_mask(best), encode_in_contexts(best, np.zeros(best.numel(), dtype=np.uint8))):
        assert 1300 < best.numel() / len(body) < MAX_ELEMENTS_PER_BYTE


@pytest.mark.parametrize("shape", [(60, 5, 7), (40, 9, 5, 5), (1000, 33), (17, 4, 3, 3)])
def test_counting_a_coded_mask_in_chunks_checks_and_counts_what_decoding_gives(shape, monkeypatch):
    monkeypatch.setattr(mask_coding, "_CHUNK_SYMBOLS", 40)  # many chunks, boundaries inside groups
    monkeypatch.setattr(context_coding, "_CHUNK", 333)
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(1)) < 0.15
    for family in ("uniform", "gauss"):
        update = ClientUpdate(1, 2, 3, "binary", NoiseSpec(family, 0.01), 4, masks={"w": mask})
        payload = encode_update(update)
        assert torch.equal(decode_update(payload).masks["w"], mask)
        [row] = describe_payload(payload)["tensors"]
        assert row["encoding"] != "mask" and row["ones_fraction"] == int(mask.sum()) / mask.numel()


def test_noise_contexts_drawn_in_chunks_are_those_of_generate_noise(monkeypatch):
    """Drawing the noise a chunk at a time must not move an element to another context (the CRC would refuse it)."""
    for alpha in (0.01, 1.0, 5e-8, 1e-9, 1e30):  # tiny alphas: |n| is clamped to 1e-8 before it is scaled
        noise = NoiseSpec("uniform", alpha)
        scaled = generate_noise(3, "w", (4001,), noise).abs_().div_(alpha).numpy()
        whole = sum((scaled >= edge).astype(np.uint8) for edge in np.array(context_coding._EDGES, dtype=np.float32))
        monkeypatch.setattr(context_coding, "_CHUNK", 1000)
        assert np.array_equal(context_coding.noise_contexts(3, "w", (4001,), noise), whole)
        monkeypatch.undo()


def test_describing_holds_no_mask_whole():
    """Numpy's allocations while describing a 2**22-element coded mask: a small multiple of its body, not of its mask."""
    mask = torch.rand(2048, 2048, generator=torch.Generator().manual_seed(2)) < 0.02
    payload = encode_update(ClientUpdate(1, 2, 3, "binary", NoiseSpec(), 4, masks={"w": mask}))
    tracemalloc.start()
    row = describe_payload(payload)["tensors"][0]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert row["encoding"] == "noise_coded_mask" and len(payload) < mask.numel() / 40
    assert peak < 8 * len(payload) + 24 * 2**20  # the mask alone is 4 MiB as bool, its noise 16 MiB as float32


def test_an_update_without_masks_carries_the_unused_noise():
    """Its header's noise family and alpha select nothing: one value each, so such a payload has one valid form."""
    body = RAW
    for family, alpha, words in ((GAUSS, 0.01, "noise family is 'gauss', expected 'uniform'"),
                                 (UNIFORM, 0.5, "noise alpha is 0.5, expected 0.01")):  # fmt: skip
        payload = raw_payload([(b"v", F32, (64,), len(body))], [body], kind=DENSE_KIND, family=family, alpha=alpha)
        for read in (decode_update, describe_payload):
            with pytest.raises(PayloadError, match=rf"{words}: mask kind 'none' \(an update without masks\)"):
                read(payload)
    accepted = raw_payload([(b"v", F32, (64,), len(body))], [body], kind=DENSE_KIND, family=UNIFORM, alpha=0.01)
    assert decode_update(accepted).noise == UNUSED_NOISE
    compressed = {"q": SignScale(torch.ones(8, dtype=torch.bool), 0.5), "s": Sparse(torch.ones(1), torch.tensor([3]), (9,))}
    for noise in (NoiseSpec("gauss", 0.01), NoiseSpec("uniform", 0.02)):
        with pytest.raises(ValueError, match=r"update.noise is .*, expected NoiseSpec\(family='uniform', alpha=0.01\)"):
            encode_update(ClientUpdate(1, 2, 3, "none", noise, 4, dense={"v": VALUES}, compressed=compressed))
