"""Masked random noise: noise generation, SM/PSM and the parametrization of any module.

Names load on first use, so the config (which types fields with ``Schedule``,
``MaskSampling`` and ``NoiseScale``) does not pull in torch.
"""

from __future__ import annotations

from fedmrn_pl._lazy import lazy_exports

_EXPORTS = {
    "MAX_NOISE_SCALE": "fedmrn_pl.masking.scales",
    "MIN_NOISE_MAGNITUDE": "fedmrn_pl.masking.noise",
    "MaskSampling": "fedmrn_pl.masking.choices",
    "MaskedNoise": "fedmrn_pl.masking.parametrization",
    "MaskingConfig": "fedmrn_pl.masking.config",
    "NoiseScale": "fedmrn_pl.masking.choices",
    "ParameterSelector": "fedmrn_pl.masking.selection",
    "Schedule": "fedmrn_pl.masking.choices",
    "apply_masked_noise": "fedmrn_pl.masking.parametrization",
    "as_wire_scale": "fedmrn_pl.masking.scales",
    "begin_mask_step": "fedmrn_pl.masking.parametrization",
    "default_alpha": "fedmrn_pl.masking.config",
    "end_mask_step": "fedmrn_pl.masking.parametrization",
    "expected_mask": "fedmrn_pl.masking.functional",
    "generate_noise": "fedmrn_pl.masking.noise",
    "is_masked": "fedmrn_pl.masking.parametrization",
    "mask_to_values": "fedmrn_pl.masking.reconstruct",
    "mask_values": "fedmrn_pl.masking.functional",
    "masked_noise": "fedmrn_pl.masking.functional",
    "masked_parametrizations": "fedmrn_pl.masking.parametrization",
    "next_noise_scales": "fedmrn_pl.masking.scales",
    "psm_probability": "fedmrn_pl.masking.functional",
    "reconstruct_delta": "fedmrn_pl.masking.reconstruct",
    "remove_masked_noise": "fedmrn_pl.masking.parametrization",
    "sample_final_masks": "fedmrn_pl.masking.parametrization",
    "set_mask_generator": "fedmrn_pl.masking.parametrization",
    "set_mask_probability": "fedmrn_pl.masking.parametrization",
    "stochastic_mask": "fedmrn_pl.masking.functional",
    "tensor_rms": "fedmrn_pl.masking.scales",
    "threshold_mask": "fedmrn_pl.masking.functional",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
