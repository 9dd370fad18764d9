"""The baselines' math, without a Trainer: unbiasedness, inverses, and the bits each method spends."""

from __future__ import annotations

import math

import pytest
import torch

from fedmrn_pl.methods.functional import (
    MAX_ROTATION_BLOCK,
    eden_compress,
    eden_decompress,
    fwht,
    padded_length,
    rotate,
    sign_compress,
    stochastic_sign_compress,
    topk_compress,
    topk_count,
    unrotate,
)


def _delta(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_sign_compress_keeps_signs_and_mean_magnitude():
    delta = torch.tensor([0.5, -1.5, 0.0, 2.0])
    out = sign_compress(delta)
    assert out.signs.tolist() == [True, False, True, True]
    assert out.scale == pytest.approx(1.0)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_stochastic_sign_is_unbiased(norm):
    delta = _delta(64)
    generator = torch.Generator().manual_seed(1)
    mean = torch.stack([stochastic_sign_compress(delta, generator, norm).dequantize() for _ in range(4000)]).mean(0)
    scale = float(delta.abs().max() if norm == "linf" else delta.norm())
    assert (mean - delta).abs().max() < 5 * scale / math.sqrt(4000)


def test_stochastic_sign_of_zero_is_zero():
    out = stochastic_sign_compress(torch.zeros(5), torch.Generator().manual_seed(0))
    assert out.scale == 0.0 and torch.equal(out.dequantize(), torch.zeros(5))


def test_fwht_is_orthonormal_and_its_own_inverse():
    x = _delta(3, 16)
    assert torch.allclose(fwht(fwht(x)), x, atol=1e-5)
    assert torch.allclose(fwht(x).norm(dim=-1), x.norm(dim=-1), atol=1e-5)
    with pytest.raises(ValueError, match="power-of-two"):
        fwht(torch.zeros(6))


@pytest.mark.parametrize("shape", [(5,), (4, 3, 3, 3), (300, 70)])
def test_rotation_round_trips_and_pads_little(shape):
    x = _delta(*shape)
    z = rotate(x, seed=7, name="w")
    assert z.numel() == padded_length(x.numel())
    assert torch.allclose(unrotate(z, 7, "w", shape), x, atol=1e-5)
    assert padded_length(x.numel()) - x.numel() < min(MAX_ROTATION_BLOCK, 2 * x.numel())


def test_eden_is_unbiased_over_rotations_and_the_server_inverts_it():
    x = _delta(100)
    estimates = torch.stack([eden_decompress(eden_compress(x, s, "w"), s, "w", (100,)) for s in range(3000)])
    assert (estimates.mean(0) - x).norm() < 0.1 * x.norm()
    one = eden_decompress(eden_compress(x, 3, "w"), 3, "w", (100,))
    assert torch.nn.functional.cosine_similarity(one, x, dim=0) > 0.7  # 1 bit, yet well aligned


def test_topk_keeps_the_largest_entries_at_ascending_indices():
    delta = torch.tensor([[0.1, -3.0, 0.2], [2.0, 0.0, -0.5]])
    out = topk_compress(delta, 2 / 6)
    assert out.indices.tolist() == [1, 3] and out.values.tolist() == [-3.0, 2.0]
    assert torch.equal(out.densify(), torch.tensor([[0.0, -3.0, 0.0], [2.0, 0.0, 0.0]]))
    assert topk_count(1000, 0.01) == 10 and topk_count(10, 0.01) == 1 and topk_count(0, 0.5) == 0
