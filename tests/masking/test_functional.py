"""SM unbiasedness, value sets, PSM mixing and the straight-through gradient."""

import math

import pytest
import torch

from fedmrn_pl.masking import expected_mask, mask_values, masked_noise, psm_probability, stochastic_mask
from fedmrn_pl.seeding import make_generator

DRAWS = 4000


def _mean_of_masks(ratio: torch.Tensor, kind: str) -> torch.Tensor:
    generator = make_generator(123)
    total = torch.zeros_like(ratio)
    for _ in range(DRAWS):
        total += stochastic_mask(ratio, kind, generator)
    return total / DRAWS


@pytest.mark.parametrize("kind, low, high", [("binary", 0.0, 1.0), ("signed", -1.0, 1.0)])
def test_stochastic_mask_is_unbiased_inside_the_clip_range(kind, low, high):
    ratio = torch.linspace(low, high, 41)
    mean = _mean_of_masks(ratio, kind)
    # Bernoulli std of a mean of DRAWS samples is <= (high-low)/2/sqrt(DRAWS) ~ 0.016; 5 sigma.
    bound = 5 * (high - low) / 2 / math.sqrt(DRAWS)
    assert (mean - ratio).abs().max().item() < bound


@pytest.mark.parametrize("kind, low, high", [("binary", 0.0, 1.0), ("signed", -1.0, 1.0)])
def test_stochastic_mask_clips_outside_the_range(kind, low, high):
    ratio = torch.tensor([low - 3.0, low - 0.01, high + 0.01, high + 5.0])
    mean = _mean_of_masks(ratio, kind)
    assert torch.equal(mean, torch.tensor([low, low, high, high]))


def test_binary_masks_take_values_zero_and_one():
    values = stochastic_mask(torch.randn(10000), "binary", make_generator(0))
    assert set(values.unique().tolist()) == {0.0, 1.0}


def test_signed_masks_take_values_minus_one_and_one():
    values = stochastic_mask(torch.randn(10000), "signed", make_generator(0))
    assert set(values.unique().tolist()) == {-1.0, 1.0}


def test_expected_mask_is_the_clipped_ratio():
    ratio = torch.tensor([-2.0, -0.5, 0.25, 0.75, 3.0])
    assert torch.equal(expected_mask(ratio, "binary"), torch.tensor([0.0, 0.0, 0.25, 0.75, 1.0]))
    assert torch.equal(expected_mask(ratio, "signed"), torch.tensor([-1.0, -0.5, 0.25, 0.75, 1.0]))


def test_unknown_mask_kind_is_rejected_with_valid_values():
    with pytest.raises(ValueError, match="binary.*signed"):
        stochastic_mask(torch.zeros(3), "ternary")


@pytest.mark.parametrize("p", [0.0, 0.3, 0.8, 1.0])
def test_psm_uses_the_sampled_mask_with_probability_p(p):
    # r = 0.5 everywhere: the expectation branch gives exactly 0.5, SM gives 0 or 1.
    n = 200_000
    noise = torch.ones(n)
    update = torch.full((n,), 0.5)
    values = mask_values(update, noise, "binary", p, make_generator(7))
    sampled_fraction = (values != 0.5).float().mean().item()
    assert abs(sampled_fraction - p) < 0.01


def test_psm_mixture_stays_unbiased():
    noise = torch.full((100_000,), 0.01)
    update = noise * 0.3
    values = mask_values(update, noise, "binary", 0.5, make_generator(3))
    assert abs(values.mean().item() - 0.3) < 0.01


def test_straight_through_gradient_equals_the_dense_gradient():
    torch.manual_seed(0)
    weight = torch.randn(5, 4)
    noise = torch.rand(5, 4) * 0.02 - 0.01
    update = (torch.rand(5, 4) * noise).requires_grad_(True)
    x = torch.randn(3, 4)
    target = torch.randn(3, 5)

    effective = weight + masked_noise(update, noise, "binary", 0.5, make_generator(1))
    loss = ((x @ effective.t() - target) ** 2).sum()
    loss.backward()

    dense = effective.detach().clone().requires_grad_(True)
    ((x @ dense.t() - target) ** 2).sum().backward()
    assert torch.allclose(update.grad, dense.grad)


def test_linear_schedule_grows_from_zero_to_one():
    assert psm_probability("linear", 0, 10) == 0.0
    assert psm_probability("linear", 5, 10) == 0.5
    assert psm_probability("linear", 10, 10) == 1.0


def test_cosine_schedule_is_monotone_between_zero_and_one():
    values = [psm_probability("cosine", step, 20) for step in range(21)]
    assert values[0] == 0.0 and abs(values[-1] - 1.0) < 1e-12
    assert all(a <= b for a, b in zip(values, values[1:]))
    assert abs(values[10] - 0.5) < 1e-12


def test_constant_schedule_is_plain_sm():
    assert all(psm_probability("constant", step, 10) == 1.0 for step in range(11))


def test_unknown_schedule_lists_the_valid_ones():
    with pytest.raises(ValueError, match="linear.*cosine.*constant"):
        psm_probability("exponential", 1, 10)
