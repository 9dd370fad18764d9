"""Masked noise on any module: wrapping, training only u and dense params, unwrapping."""

import pytest
import torch
from torch import nn

from fedmrn_pl.masking import (
    MaskedNoise,
    ParameterSelector,
    apply_masked_noise,
    begin_mask_step,
    end_mask_step,
    generate_noise,
    is_masked,
    masked_parametrizations,
    reconstruct_delta,
    remove_masked_noise,
    sample_final_masks,
    set_mask_generator,
    set_mask_probability,
)
from fedmrn_pl.seeding import make_generator
from fedmrn_pl.update import NoiseSpec


class Mixed(nn.Module):
    """Conv, BatchNorm, Linear, Embedding, LSTM and attention in one model."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.embed = nn.Embedding(10, 8)
        self.lstm = nn.LSTM(8, 8, batch_first=True)
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(4 * 4 * 4 + 8, 3)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.norm(self.conv(images))).flatten(1)  # (B, 64)
        sequence, _ = self.lstm(self.embed(tokens))  # (B, T, 8)
        attended, _ = self.attention(sequence, sequence, sequence)
        return self.head(torch.cat([features, attended.mean(1)], dim=1))


def _batch():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(6, 1, 4, 4, generator=generator)
    tokens = torch.randint(0, 10, (6, 5), generator=generator)
    labels = torch.randint(0, 3, (6,), generator=generator)
    return images, tokens, labels


EXPECTED_MASKED = {
    "conv.weight",
    "embed.weight",
    "lstm.weight_ih_l0",
    "lstm.weight_hh_l0",
    "attention.in_proj_weight",
    "attention.out_proj.weight",
    "head.weight",
}


def test_default_selection_masks_every_weight_matrix_and_no_bias_or_norm():
    chosen = {name for name, _, _ in ParameterSelector().select(Mixed())}
    assert chosen == EXPECTED_MASKED


def test_selection_by_module_type_and_patterns():
    selector = ParameterSelector(module_types=(nn.Conv2d, nn.Linear), exclude=("head.*",), include=("norm.weight",))
    chosen = {name for name, _, _ in selector.select(Mixed())}
    assert chosen == {"conv.weight", "attention.out_proj.weight", "norm.weight"}


def test_wrapped_model_trains_only_updates_and_dense_parameters():
    torch.manual_seed(0)
    model = Mixed()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    wrapped = apply_masked_noise(model, seed=11)
    assert set(wrapped) == EXPECTED_MASKED
    set_mask_generator(model, make_generator(5))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.5)
    images, tokens, labels = _batch()
    for step in range(4):
        set_mask_probability(model, step / 4)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(images, tokens), labels).backward()
        optimizer.step()

    for name, parametrization in wrapped.items():
        module_name, _, attr = name.rpartition(".")
        original = model.get_submodule(module_name).parametrizations[attr].original
        assert torch.equal(original, before[name]), f"frozen weight {name} changed"
        assert parametrization.update.abs().sum() > 0, f"update of {name} did not train"
    remove_masked_noise(model)
    after = model.state_dict()
    for name in EXPECTED_MASKED:
        assert torch.equal(after[name], before[name])
    changed_dense = {
        name for name in after if name not in EXPECTED_MASKED and not torch.equal(after[name], before[name])
    }
    # conv.bias is left out: it feeds BatchNorm, so its true gradient is zero and whether
    # rounding moves it depends on the thread count.
    assert {"head.bias", "norm.weight", "norm.running_mean", "lstm.bias_ih_l0"} <= changed_dense


def test_frozen_weight_gets_no_gradient_and_update_gets_the_weight_gradient():
    model = nn.Linear(4, 2, bias=False)
    wrapped = apply_masked_noise(model, seed=1)["weight"]
    x = torch.randn(3, 4)
    model(x).sum().backward()
    assert model.parametrizations.weight.original.grad is None
    assert torch.allclose(wrapped.update.grad, torch.ones(3, 2).t() @ x)


def test_unwrapping_gives_back_a_plain_module_with_the_original_weights():
    model = Mixed()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    apply_masked_noise(model, seed=3)
    assert is_masked(model) and type(model.conv) is not nn.Conv2d
    remove_masked_noise(model)
    assert not is_masked(model)
    assert type(model.conv) is nn.Conv2d and type(model.head) is nn.Linear
    assert set(model.state_dict()) == set(before)
    assert all(torch.equal(model.state_dict()[k], before[k]) for k in before)
    assert all(p.requires_grad for p in model.parameters())


def test_wrapping_twice_is_refused():
    model = nn.Linear(3, 3)
    apply_masked_noise(model, seed=0)
    with pytest.raises(ValueError, match="already"):
        apply_masked_noise(model, seed=0)


def test_nothing_selected_is_an_error():
    with pytest.raises(ValueError, match="nothing would be masked"):
        apply_masked_noise(nn.BatchNorm1d(3), seed=0)


def test_new_tensors_are_only_noise_and_update_per_masked_parameter():
    model = nn.Sequential(nn.Linear(100, 50), nn.Linear(50, 10))
    params_before = sum(p.numel() for p in model.parameters())
    apply_masked_noise(model, seed=0)
    parametrizations = masked_parametrizations(model)
    extra = sum(p.update.numel() + p.noise.numel() for p in parametrizations.values())
    assert extra == 2 * (100 * 50 + 50 * 10)
    assert sum(p.numel() for p in model.parameters()) == params_before + extra // 2
    assert all(isinstance(p, MaskedNoise) for p in parametrizations.values())


@pytest.mark.parametrize("kind", ["binary", "signed"])
def test_server_reconstruction_matches_the_client_noise(kind):
    spec = NoiseSpec("uniform", 0.01)
    model = nn.Linear(30, 20)
    wrapped = apply_masked_noise(model, seed=77, kind=kind, noise=spec)
    with torch.no_grad():
        wrapped["weight"].update.copy_(wrapped["weight"].noise * 0.6)
    masks = sample_final_masks(model, make_generator(0))
    delta = reconstruct_delta(77, "weight", masks["weight"], kind, spec)
    values = masks["weight"].float() if kind == "binary" else masks["weight"].float() * 2 - 1
    assert torch.equal(delta, wrapped["weight"].noise * values)
    assert torch.equal(wrapped["weight"].noise, generate_noise(77, "weight", (20, 30), spec))


def test_final_masks_follow_the_learned_ratio():
    model = nn.Linear(400, 250, bias=False)
    wrapped = apply_masked_noise(model, seed=1)["weight"]
    with torch.no_grad():
        wrapped.update.copy_(wrapped.noise * 0.25)
    masks = sample_final_masks(model, make_generator(2))
    assert masks["weight"].dtype == torch.bool and masks["weight"].device.type == "cpu"
    assert abs(masks["weight"].float().mean().item() - 0.25) < 0.01


def test_frozen_parameters_are_left_alone():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)
    wrapped = apply_masked_noise(model, seed=0)
    assert set(wrapped) == {"1.weight"}
    remove_masked_noise(model)
    assert not model[0].weight.requires_grad


def _tied_model() -> nn.ModuleDict:
    embed = nn.Embedding(10, 4)
    head = nn.Linear(4, 10, bias=False)
    head.weight = embed.weight
    return nn.ModuleDict({"embed": embed, "head": head})


def test_a_tied_weight_is_one_masked_parameter_with_one_mask_per_step():
    model = _tied_model()
    wrapped = apply_masked_noise(model, seed=0)
    assert list(wrapped) == ["embed.weight"]  # one parameter, under its first name
    assert list(masked_parametrizations(model)) == ["embed.weight"]
    assert model.head.parametrizations.weight[0] is wrapped["embed.weight"]
    set_mask_generator(model, make_generator(3))
    set_mask_probability(model, 1.0)
    with torch.no_grad():
        wrapped["embed.weight"].update.copy_(wrapped["embed.weight"].noise * 0.5)
    assert not torch.equal(model.embed.weight, model.head.weight)  # outside a step: a draw per read
    begin_mask_step(model)
    first = model.embed.weight
    assert model.head.weight is first and model.embed.weight is first  # inside a step: one draw
    end_mask_step(model)
    assert not torch.equal(model.embed.weight, first)
    remove_masked_noise(model)
    assert model.head.weight is model.embed.weight and model.embed.weight.requires_grad
    assert not is_masked(model)


def test_a_tied_weight_is_not_masked_when_one_of_its_names_is_excluded():
    assert ParameterSelector(exclude=("head.weight",)).select(_tied_model()) == []


def test_signed_masks_reconstruct_the_clipped_update_on_average():
    spec = NoiseSpec("uniform", 0.005)
    model = nn.Linear(200, 200, bias=False)
    wrapped = apply_masked_noise(model, seed=9, kind="signed", noise=spec)["weight"]
    ratio = torch.linspace(-1.5, 1.5, 200 * 200).reshape(200, 200)
    with torch.no_grad():
        wrapped.update.copy_(wrapped.noise * ratio)
    generator = make_generator(4)
    total = torch.zeros(200, 200)
    draws = 400
    for _ in range(draws):
        masks = sample_final_masks(model, generator)
        total += reconstruct_delta(9, "weight", masks["weight"], "signed", spec)
    mean = total / draws
    # Per element the std of the mean is <= |n| / sqrt(draws) <= 2.5e-4, about 6e-5 on average.
    error = (mean - wrapped.noise * ratio.clamp(-1, 1)).abs()
    assert error.mean() < 8e-5 and error.max() < 6 * 0.005 / draws**0.5
    unclipped = (mean - wrapped.noise * ratio).abs()  # what a formula without the clip would give
    binary_read = (mean - wrapped.noise * ratio.clamp(0, 1)).abs()  # signed bits read as binary
    assert unclipped.mean() > 2 * error.mean() and binary_read.mean() > 5 * error.mean()


class _ForwardingWrapper(nn.Module):
    """Forwards unknown attributes to the wrapped layer, as peft's ModulesToSaveWrapper does."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.frozen_copy = layer
        self.trainable = nn.Linear(layer.in_features, layer.out_features)
        layer.requires_grad_(False)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.trainable, name)

    def forward(self, x):
        return self.trainable(x)


def test_a_wrapper_that_forwards_attributes_is_masked_and_unmasked_cleanly():
    model = nn.Sequential(nn.Linear(4, 8), _ForwardingWrapper(nn.Linear(8, 3)))
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    wrapped = apply_masked_noise(model, seed=1, kind="signed")
    assert sorted(wrapped) == ["0.weight", "1.trainable.weight"]
    assert sorted(masked_parametrizations(model)) == ["0.weight", "1.trainable.weight"]  # not also "1.weight"
    remove_masked_noise(model)
    after = model.state_dict()
    assert not is_masked(model) and sorted(after) == sorted(before)
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert model[1].trainable.weight.requires_grad and not model[1].frozen_copy.weight.requires_grad


def test_a_failing_apply_leaves_the_module_as_it_was(monkeypatch):
    from fedmrn_pl.masking import parametrization

    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 3))
    model[2].weight = model[1].weight  # tied: two places to undo
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    real, calls = parametrization.generate_noise, []

    def fail_on_the_third(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 3:
            raise MemoryError("no room for the noise")
        return real(*args, **kwargs)

    monkeypatch.setattr(parametrization, "generate_noise", fail_on_the_third)
    model[2].weight  # noqa: B018
    with pytest.raises(MemoryError):
        apply_masked_noise(model, seed=1, selector=ParameterSelector(min_dims=1))
    assert not is_masked(model) and type(model[1]) is nn.Linear and type(model[2]) is nn.Linear
    assert model[2].weight is model[1].weight
    assert sorted(model.state_dict()) == sorted(before)
    assert all(torch.equal(before[n], t) for n, t in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())
