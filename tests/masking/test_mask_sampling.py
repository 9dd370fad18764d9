"""The deterministic-mask ablation: the uploaded mask is the thresholded expectation, not a sample."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedmrn_pl.config import ConfigError, load_config
from fedmrn_pl.experiment import masking_from_config
from fedmrn_pl.masking import (
    MaskingConfig,
    MaskSampling,
    apply_masked_noise,
    masked_parametrizations,
    sample_final_masks,
    threshold_mask,
)


def test_threshold_mask_rounds_the_expectation():
    ratio = torch.tensor([-0.5, 0.0, 0.49, 0.5, 0.9, 1.7])
    assert threshold_mask(ratio, "binary").tolist() == [0, 0, 0, 1, 1, 1]
    assert threshold_mask(ratio, "signed").tolist() == [-1, 1, 1, 1, 1, 1]


@pytest.mark.parametrize("kind", ["binary", "signed"])
def test_final_masks_thresholded_are_deterministic_and_match_clip_u_over_n(kind):
    model = nn.Linear(50, 40, bias=False)
    apply_masked_noise(model, seed=3, kind=kind)
    (parametrization,) = masked_parametrizations(model).values()
    with torch.no_grad():
        parametrization.update.copy_(torch.rand_like(parametrization.noise) * parametrization.noise * 1.2)
    a = sample_final_masks(model, torch.Generator().manual_seed(0), "threshold")["weight"]
    b = sample_final_masks(model, torch.Generator().manual_seed(1), "threshold")["weight"]
    assert torch.equal(a, b)
    ratio = parametrization.update / parametrization.noise
    expected = ratio.clamp(0, 1) >= 0.5 if kind == "binary" else ratio.clamp(-1, 1) >= 0
    assert torch.equal(a, expected)
    sampled = sample_final_masks(model, torch.Generator().manual_seed(0))["weight"]
    assert not torch.equal(sampled, a)  # the paper's default samples


def test_mask_sampling_is_configured_and_validated():
    config = load_config(None, ["method.mask_sampling=threshold"])
    assert masking_from_config(config).sampling is MaskSampling.threshold
    assert MaskingConfig().sampling is MaskSampling.stochastic
    with pytest.raises(ConfigError, match="stochastic"):
        load_config(None, ["method.mask_sampling=rounded"])
    with pytest.raises(ValueError, match="threshold"):
        MaskingConfig(sampling="rounded")
