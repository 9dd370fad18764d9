"""The fused masked weight equals the PSM rule written out op by op: same forward, same gradients, bit for bit."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from fedmrn_pl.masking import (
    apply_masked_noise,
    begin_mask_step,
    end_mask_step,
    masked_parametrizations,
    set_mask_generator,
    set_mask_probability,
)
from fedmrn_pl.seeding import make_generator

CASES = [(kind, p) for kind in ("binary", "signed") for p in (0.0, 0.5, 1.0)]


def _reference_weight(weight, update, noise, kind, p, generator):
    """``w + n * M(u, n)`` written out op by op: the PSM rule of ALGORITHM.md, one draw per element."""
    ratio = update / noise
    expected = ratio.clamp(0.0 if kind == "binary" else -1.0, 1.0)
    if p <= 0.0:
        mask = expected
    else:
        draw = torch.rand(ratio.shape, generator=generator)
        scale = p if kind == "binary" else 0.5 * p
        sampled = (torch.add(draw, ratio, alpha=scale) >= scale).to(ratio.dtype)  # r + draw / p >= 1
        if kind == "signed":
            sampled = sampled * 2.0 - 1.0
        mask = sampled if p >= 1.0 else torch.lerp(expected, sampled, (draw < p).to(ratio.dtype))
    return torch.addcmul(weight, mask, noise)


def _model(name):
    torch.manual_seed(0)
    return nn.Conv2d(3, 8, 3, bias=False) if name == "conv" else nn.Linear(12, 7, bias=False)


def _inputs(name):
    generator = torch.Generator().manual_seed(1)
    shape = (4, 3, 6, 6) if name == "conv" else (5, 12)
    return torch.randn(shape, generator=generator)


def _trained_update(parametrization, generator):
    """A mid-round update: some ratios inside the clip range, some outside, some exactly zero (u = 0 stays +0 / n)."""
    update = parametrization.noise * (torch.rand(parametrization.noise.shape, generator=generator) * 3.0 - 1.5)
    update.view(-1)[::7] = 0.0
    with torch.no_grad():
        parametrization.update.copy_(update)


@pytest.mark.parametrize("name", ["conv", "linear"])
@pytest.mark.parametrize("kind, p", CASES)
def test_forward_and_gradients_equal_the_reference_bit_for_bit(name, kind, p):
    model = _model(name)
    weight = model.weight.detach().clone()
    apply_masked_noise(model, seed=5, kind=kind)
    parametrization = masked_parametrizations(model)["weight"]
    _trained_update(parametrization, torch.Generator().manual_seed(2))
    set_mask_probability(model, p)
    set_mask_generator(model, make_generator(9))

    x = _inputs(name).requires_grad_(True)  # as inside a network: the input's gradient needs the weight
    out = model(x)
    out.square().sum().backward()

    reference = _reference_weight(
        weight, parametrization.update.detach(), parametrization.noise, kind, p, make_generator(9)
    ).requires_grad_(True)
    x_reference = x.detach().requires_grad_(True)
    expected = F.conv2d(x_reference, reference) if name == "conv" else F.linear(x_reference, reference)
    expected.square().sum().backward()
    assert torch.equal(out, expected)
    assert torch.equal(x.grad, x_reference.grad)
    assert torch.equal(parametrization.update.grad, reference.grad)  # straight-through: d w_eff / d u = 1


@pytest.mark.parametrize("kind, p", CASES)
def test_a_read_after_the_weight_was_freed_gives_it_again_without_taking_draws(kind, p):
    model = _model("linear")
    apply_masked_noise(model, seed=5, kind=kind)
    _trained_update(masked_parametrizations(model)["weight"], torch.Generator().manual_seed(2))
    set_mask_probability(model, p)
    generator = make_generator(9)
    set_mask_generator(model, generator)
    begin_mask_step(model)
    first = model.weight.detach().clone()  # the read's own tensor is freed: a later read draws it again
    state = generator.get_state()
    again = model.weight
    assert torch.equal(again, first) and torch.equal(generator.get_state(), state)
    assert model.weight is again  # held for the rest of the step
    end_mask_step(model)
