"""Masked random noise: noise generation, SM/PSM and the parametrization of any module."""

from fedmrn_pl.masking.config import MaskingConfig, default_alpha
from fedmrn_pl.masking.functional import (
    MaskSampling,
    Schedule,
    expected_mask,
    mask_values,
    masked_noise,
    psm_probability,
    stochastic_mask,
    threshold_mask,
)
from fedmrn_pl.masking.noise import MIN_NOISE_MAGNITUDE, generate_noise
from fedmrn_pl.masking.parametrization import (
    MaskedNoise,
    apply_masked_noise,
    begin_mask_step,
    end_mask_step,
    is_masked,
    masked_parametrizations,
    remove_masked_noise,
    sample_final_masks,
    set_mask_generator,
    set_mask_probability,
)
from fedmrn_pl.masking.reconstruct import mask_to_values, reconstruct_delta
from fedmrn_pl.masking.scales import MAX_NOISE_SCALE, NoiseScale, as_wire_scale, next_noise_scales, tensor_rms
from fedmrn_pl.masking.selection import ParameterSelector

__all__ = [
    "MAX_NOISE_SCALE",
    "MIN_NOISE_MAGNITUDE",
    "MaskSampling",
    "MaskedNoise",
    "MaskingConfig",
    "NoiseScale",
    "ParameterSelector",
    "Schedule",
    "apply_masked_noise",
    "as_wire_scale",
    "begin_mask_step",
    "default_alpha",
    "end_mask_step",
    "expected_mask",
    "generate_noise",
    "is_masked",
    "mask_to_values",
    "mask_values",
    "masked_noise",
    "masked_parametrizations",
    "next_noise_scales",
    "psm_probability",
    "reconstruct_delta",
    "remove_masked_noise",
    "sample_final_masks",
    "set_mask_generator",
    "set_mask_probability",
    "stochastic_mask",
    "tensor_rms",
    "threshold_mask",
]
