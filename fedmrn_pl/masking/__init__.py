"""Masked random noise: noise generation, SM/PSM and the parametrization of any module."""

from fedmrn_pl.masking.config import MaskingConfig, default_alpha
from fedmrn_pl.masking.functional import (
    MASKED_KINDS,
    SCHEDULES,
    expected_mask,
    mask_values,
    masked_noise,
    psm_probability,
    stochastic_mask,
)
from fedmrn_pl.masking.noise import MIN_NOISE_MAGNITUDE, generate_noise
from fedmrn_pl.masking.parametrization import (
    MaskedNoise,
    apply_masked_noise,
    is_masked,
    masked_parametrizations,
    remove_masked_noise,
    sample_final_masks,
    set_mask_generator,
    set_mask_probability,
)
from fedmrn_pl.masking.reconstruct import mask_to_values, reconstruct_delta
from fedmrn_pl.masking.selection import ParameterSelector

__all__ = [
    "MASKED_KINDS",
    "MIN_NOISE_MAGNITUDE",
    "MaskedNoise",
    "MaskingConfig",
    "ParameterSelector",
    "SCHEDULES",
    "apply_masked_noise",
    "default_alpha",
    "expected_mask",
    "generate_noise",
    "is_masked",
    "mask_to_values",
    "mask_values",
    "masked_noise",
    "masked_parametrizations",
    "psm_probability",
    "reconstruct_delta",
    "remove_masked_noise",
    "sample_final_masks",
    "set_mask_generator",
    "set_mask_probability",
    "stochastic_mask",
]
