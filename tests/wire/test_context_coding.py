"""Masks coded in noise contexts: bit exact, smaller for FedMRN-like masks, corruption refused, form checked."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedmrn_pl.masking.noise import generate_noise
from fedmrn_pl.update import ClientUpdate, NoiseSpec
from fedmrn_pl.wire import PayloadError, decode_update, describe_payload, encode_update, packed_size
from fedmrn_pl.wire import mask_coding
from fedmrn_pl.wire.context_coding import noise_contexts
from fedmrn_pl.wire.mask_coding import CONTEXTS, context_overhead, decode_in_contexts, encode_in_contexts, encode_mask
from tests.wire.test_format import raw_payload

NOISE = NoiseSpec("uniform", 0.01)
NOISE_CODED, CODED, UNIFORM, GAUSS, BERNOULLI = 7, 4, 0, 1, 2


def fedmrn_like_mask(seed: int, name: str, shape: tuple[int, ...], noise: NoiseSpec = NOISE) -> torch.Tensor:
    """Ones mostly where ``|n|`` is small, as in a trained FedMRN mask (``clip(u / n)`` saturates there)."""
    gen = torch.Generator().manual_seed(5)
    small = 1 - generate_noise(seed, name, shape, noise).abs() / generate_noise(seed, name, shape, noise).abs().max()
    return torch.rand(shape, generator=gen) < 0.4 * small**2


@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (9,), (), (2, 0, 4), (3, 5, 7), (64, 3, 3, 3), (10, 1600)])
def test_masks_round_trip_bit_exact(shape):
    contexts = noise_contexts(3, "w", shape, NOISE)
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(1)) < 0.3
    body = encode_in_contexts(mask, contexts)
    decoded = decode_in_contexts(body, shape, lambda: contexts)
    assert decoded.shape == mask.shape and torch.equal(decoded, mask)
    assert len(body) >= context_overhead(shape)


@pytest.mark.parametrize("chunk", [1, 7, 100, 1 << 16])
def test_grouping_a_chunk_at_a_time_gives_the_whole_masks_stable_groups(chunk, monkeypatch):
    """Each context's bits in index order, however many chunks the sort by context takes (the wire's group order)."""
    monkeypatch.setattr(mask_coding, "_ORDER_CHUNK", chunk)
    shape = (7, 5, 3, 3)
    contexts = noise_contexts(9, "w", shape, NOISE)
    mask = fedmrn_like_mask(9, "w", shape)
    bits = mask.reshape(-1).numpy().astype(np.uint8)
    grouped = mask_coding._group(bits, contexts)
    assert all(np.array_equal(grouped[c], bits[contexts == c]) for c in range(CONTEXTS))
    body = encode_in_contexts(mask, contexts)
    monkeypatch.setattr(mask_coding, "_ORDER_CHUNK", 1 << 16)
    assert encode_in_contexts(mask, contexts) == body  # the bytes do not depend on the chunking
    monkeypatch.setattr(mask_coding, "_ORDER_CHUNK", chunk)
    assert torch.equal(decode_in_contexts(body, shape, lambda: contexts), mask)


def test_contexts_are_about_equal_groups_ordered_by_noise_magnitude():
    shape = (100_000,)
    contexts = noise_contexts(4, "w", shape, NOISE)
    magnitude = generate_noise(4, "w", shape, NOISE).abs().numpy()
    sizes = np.bincount(contexts, minlength=CONTEXTS)
    assert sizes.sum() == 100_000 and sizes.min() > 0.95 * 100_000 / CONTEXTS  # octiles of uniform |n| / alpha
    for c in range(CONTEXTS - 1):
        assert magnitude[contexts == c].max() <= magnitude[contexts == c + 1].min()
    assert not np.array_equal(contexts, noise_contexts(5, "w", shape, NOISE))  # another seed, another noise
    with pytest.raises(ValueError, match="masks over gauss noise are not coded in noise contexts"):
        noise_contexts(4, "w", shape, NoiseSpec("gauss", 0.01))


def test_a_reader_with_other_contexts_refuses_the_mask_instead_of_misreading_it():
    """As a reader whose noise generator differed in a few elements would (the CRC-32 catches it)."""
    shape = (64, 32, 3, 3)
    contexts = noise_contexts(6, "w", shape, NOISE)
    body = encode_in_contexts(fedmrn_like_mask(6, "w", shape), contexts)
    moved = contexts.copy()
    moved[:3] = (moved[:3] + 1) % CONTEXTS  # three elements in another group
    with pytest.raises(PayloadError, match="written with other noise contexts .*regenerates the noise differently"):
        decode_in_contexts(body, shape, lambda: moved)


def test_contexts_are_derived_only_once_the_body_passes_its_cheap_checks():
    """Deriving contexts regenerates the declared shape's noise; a garbage body must not cost that."""

    def never() -> np.ndarray:
        raise AssertionError("contexts were derived for a body that fails its fixed checks")

    shape = (2**27,)
    with pytest.raises(PayloadError, match="probability of context 0 is 0"):
        decode_in_contexts(bytes(context_overhead(shape)), shape, never)
    with pytest.raises(PayloadError, match="tensor .w.: noise-coded mask probability of context 0 is 0"):
        decode_update(raw_payload([(b"w", NOISE_CODED, shape, 94256)], [bytes(94256)], family=UNIFORM))


def test_a_fedmrn_like_mask_codes_smaller_in_noise_contexts_than_by_kernel_phase():
    shape = (64, 32, 3, 3)
    mask = fedmrn_like_mask(8, "conv.weight", shape)
    by_noise = len(encode_in_contexts(mask, noise_contexts(8, "conv.weight", shape, NOISE)))
    by_phase = len(encode_mask(mask))
    assert by_noise < 0.9 * by_phase < packed_size(mask.numel())


def _payload(noise: NoiseSpec) -> tuple[ClientUpdate, bytes]:
    shape = (64, 32, 3, 3)
    update = ClientUpdate(2, 4, 8, "binary", noise, 300, masks={"conv.weight": fedmrn_like_mask(8, "conv.weight", shape, noise)})
    return update, encode_update(update)


@pytest.mark.parametrize("family, form", [("uniform", "noise_coded_mask"), ("gauss", "coded_mask"), ("bernoulli", "coded_mask")])
def test_the_header_noise_decides_the_coded_form(family, form):
    update, payload = _payload(NoiseSpec(family, 0.01))
    assert describe_payload(payload)["tensors"][0]["encoding"] == form
    assert torch.equal(decode_update(payload).masks["conv.weight"], update.masks["conv.weight"])
    assert encode_update(decode_update(payload)) == payload  # canonical


def test_a_coded_form_the_header_does_not_call_for_is_refused():
    shape = (64, 32, 3, 3)
    mask = fedmrn_like_mask(99, "w", shape)
    phase_body = encode_mask(mask)
    with pytest.raises(PayloadError, match="tensor 'w': is coded_mask but masks over uniform noise are sent as noise_coded_mask"):
        decode_update(raw_payload([(b"w", CODED, shape, len(phase_body))], [phase_body], family=UNIFORM))
    noise_body = encode_in_contexts(mask, noise_contexts(99, "w", shape, NOISE))
    for family in (GAUSS, BERNOULLI):
        with pytest.raises(PayloadError, match="is noise_coded_mask but masks over .* noise are sent as coded_mask"):
            decode_update(raw_payload([(b"w", NOISE_CODED, shape, len(noise_body))], [noise_body], family=family))


def test_body_lengths_are_bounded_by_the_shape_before_decoding():
    shape = (64, 32, 3, 3)
    low, packed = context_overhead(shape), packed_size(math.prod(shape))
    for size in (low - 1, packed):
        with pytest.raises(PayloadError, match=f"coded mask body length is {size} bytes, expected at least {low} and fewer than the {packed}"):
            decode_update(raw_payload([(b"w", NOISE_CODED, shape, size)], [bytes(size)], family=UNIFORM))


def test_probabilities_other_than_the_bit_counts_and_short_bodies_are_refused():
    shape = (64, 32, 3, 3)
    contexts = noise_contexts(1, "w", shape, NOISE)
    body = bytearray(encode_in_contexts(fedmrn_like_mask(1, "w", shape), contexts))
    body[0] = 255 if body[0] != 255 else 254  # context 0 claims another probability
    with pytest.raises(PayloadError, match=r"coded mask"):
        decode_in_contexts(bytes(body), shape, lambda: contexts)
    with pytest.raises(PayloadError, match=r"4-byte contexts CRC, 8 probability bytes and whole 4-byte words, at least 2, got 5"):
        decode_in_contexts(bytes(5), shape, lambda: contexts)
    with pytest.raises(ValueError, match=r"contexts must give each of the 10 elements a context in \[0, 8\)"):
        encode_in_contexts(torch.zeros(10, dtype=torch.bool), np.full(10, 8))


def test_every_single_byte_corruption_is_refused_or_decodes_canonically():
    shape = (16, 8, 3, 3)
    contexts = noise_contexts(2, "w", shape, NOISE)
    mask = fedmrn_like_mask(2, "w", shape)
    body = encode_in_contexts(mask, contexts)
    refused = 0
    for position in range(len(body)):
        for flip in (0x01, 0x80, 0xFF):
            corrupted = bytearray(body)
            corrupted[position] ^= flip
            try:
                decoded = decode_in_contexts(bytes(corrupted), shape, lambda: contexts)
            except PayloadError as error:
                assert "coded mask" in str(error)
                refused += 1
                continue
            assert encode_in_contexts(decoded, contexts) == bytes(corrupted)  # accepted only as its own canonical body
    assert refused >= 0.95 * 3 * len(body)  # (the payload checksum stands before this in any case)


def test_uniform_noise_contexts_are_the_same_on_every_cpu_kernel():
    """The reader's contexts must equal the writer's on any machine (torch.randn's floats differ between kernels)."""
    import subprocess
    import sys
    import zlib

    shape = (300_000,)
    here = zlib.crc32(noise_contexts(7, "w", shape, NOISE).tobytes())
    code = (
        "import zlib; from fedmrn_pl.update import NoiseSpec; from fedmrn_pl.wire.context_coding import noise_contexts; "
        f"print(zlib.crc32(noise_contexts(7, 'w', {shape}, NoiseSpec('uniform', 0.01)).tobytes()))"
    )
    for capability in ("default", "avx2"):
        env = {**__import__("os").environ, "ATEN_CPU_CAPABILITY": capability}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert int(out.stdout.strip()) == here, capability
