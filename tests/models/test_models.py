"""The paper's models: shapes on every image size, bias-free layers, N(0, 0.01) init, seeding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedmrn_pl.models import CNN4, CNN8, DEFAULT_INIT, MLP, PAPER_INIT_STD, ModelName, build_model


def _weighted_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@pytest.mark.parametrize("name", ["cnn4", "cnn8", "mlp"])
@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("image_size", [8, 28, 32])
def test_models_output_one_logit_per_class_for_every_input_shape(name: str, in_channels: int, image_size: int) -> None:
    model = build_model(name, in_channels=in_channels, num_classes=7, image_size=image_size)
    logits = model(torch.randn(3, in_channels, image_size, image_size))
    assert logits.shape == (3, 7)
    assert torch.isfinite(logits).all()


def test_model_names_lists_every_buildable_model() -> None:
    assert ModelName.values() == ["cnn4", "cnn8", "mlp"]


def test_every_model_name_has_a_builder_and_every_builder_a_name() -> None:
    from fedmrn_pl.models.registry import _BUILDERS

    assert sorted(_BUILDERS) == ModelName.values()  # models/choices.py (torch-free) and the registry agree


@pytest.mark.parametrize(
    ("model", "expected_convs", "expected_pools"),
    [
        (CNN4(image_size=32), 4, 4),
        (CNN4(image_size=8), 4, 3),  # 8 -> 4 -> 2 -> 1, the fourth pool would leave nothing
        (CNN8(image_size=28), 8, 4),
    ],
)
def test_cnns_have_the_paper_depth_and_skip_pools_below_one_pixel(
    model: nn.Module, expected_convs: int, expected_pools: int
) -> None:
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == expected_convs
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == expected_pools
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == expected_convs
    assert convs[-1].out_channels == 256


def test_cnn4_channels_follow_32_64_128_256() -> None:
    convs = [m for m in CNN4(in_channels=3).modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 256]
    assert convs[0].in_channels == 3
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)


def test_mlp_has_two_hidden_layers_of_200_by_default() -> None:
    linears = [m for m in MLP(784, 10).modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 200), (200, 200), (200, 10)]


@pytest.mark.parametrize("name", ModelName.values())
def test_models_are_bias_free_by_default_and_biased_on_request(name: str) -> None:
    kwargs = {"in_channels": 1, "num_classes": 10, "image_size": 28}
    assert all(m.bias is None for m in _weighted_layers(build_model(name, **kwargs)))
    assert all(m.bias is not None for m in _weighted_layers(build_model(name, bias=True, **kwargs)))


@pytest.mark.parametrize("name", ModelName.values())
def test_paper_init_draws_weights_with_std_close_to_0_01(name: str) -> None:
    model = build_model(name, in_channels=3, num_classes=10, image_size=32, bias=True, init="paper", seed=0)
    weights = torch.cat([m.weight.detach().flatten() for m in _weighted_layers(model)])
    assert weights.std().item() == pytest.approx(PAPER_INIT_STD, rel=0.02)
    assert abs(weights.mean().item()) < 1e-3
    assert all(torch.count_nonzero(m.bias) == 0 for m in _weighted_layers(model))


def test_paper_init_keeps_batchnorm_affine_defaults() -> None:
    bns = [m for m in CNN4().modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.equal(bn.weight, torch.ones_like(bn.weight)) for bn in bns)
    assert all(torch.equal(bn.bias, torch.zeros_like(bn.bias)) for bn in bns)


def test_default_init_keeps_pytorch_initialisation() -> None:
    model = build_model("cnn4", in_channels=1, num_classes=10, image_size=28, init="default", seed=0)
    first_conv = _weighted_layers(model)[0]  # kaiming-uniform on fan_in 9 has std ~ 0.19
    assert first_conv.weight.std().item() > 10 * PAPER_INIT_STD


@pytest.mark.parametrize("name", ModelName.values())
def test_seeded_builds_are_identical_and_leave_global_rng_alone(name: str) -> None:
    kwargs = {"in_channels": 1, "num_classes": 10, "image_size": 28}
    state = torch.random.get_rng_state()
    first = build_model(name, seed=123, **kwargs).state_dict()
    second = build_model(name, seed=123, **kwargs).state_dict()
    other = build_model(name, seed=124, **kwargs).state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert not all(torch.equal(first[key], other[key]) for key in first)


def test_unknown_model_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"choose one of \['cnn4', 'cnn8', 'mlp'\]"):
        build_model("resnet", in_channels=1, num_classes=10, image_size=28)


def test_unknown_init_lists_valid_schemes() -> None:
    with pytest.raises(ValueError, match=r"init 'xavier' is not valid; choose one of \['default', 'paper'\]"):
        build_model("cnn4", in_channels=1, num_classes=10, image_size=28, init="xavier")


def test_model_names_are_case_insensitive() -> None:
    assert isinstance(build_model("CNN4", in_channels=1, num_classes=10, image_size=28), CNN4)


def test_each_model_defaults_to_an_init_that_learns():
    """The CNNs keep the paper's N(0, 0.01) (BatchNorm rescales it); the MLP, with no normalisation, keeps PyTorch's."""
    assert DEFAULT_INIT == {"cnn4": "paper", "cnn8": "paper", "mlp": "default"}
    mlp = build_model("mlp", in_channels=1, num_classes=10, image_size=8, seed=0)
    cnn = build_model("cnn4", in_channels=1, num_classes=10, image_size=8, seed=0)
    assert mlp.net[0].weight.std() > 0.05  # Kaiming-uniform over 64 inputs: ~0.07
    assert abs(float(cnn.head.weight.std()) - 0.01) < 0.002
    paper = build_model("mlp", in_channels=1, num_classes=10, image_size=8, init="paper", seed=0)
    assert abs(float(paper.net[0].weight.std()) - 0.01) < 0.002
