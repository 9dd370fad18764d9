"""Noise contexts: which group of a mask's bits each element falls in, from the noise the reader regenerates.

The coder itself (``mask_coding.encode_in_contexts``) is pure; this module ties it to
FedMRN's noise: ``CONTEXTS`` groups by ``|n| / alpha`` cut at the noise family's quantiles
(equal groups in expectation, no sort), from the noise regenerated with the payload's
seed, parameter name and noise spec, so client and server agree bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

from fedmrn_pl.masking.noise import generate_noise
from fedmrn_pl.update import NoiseFamily, NoiseSpec
from fedmrn_pl.wire.mask_coding import CONTEXTS

__all__ = ["noise_contexts", "uses_contexts"]

# Quantiles of |n| / alpha: uniform noise gives U(0, 1), gauss noise a half-normal.
_EDGES = {
    NoiseFamily.uniform.value: np.array([c / CONTEXTS for c in range(1, CONTEXTS)], dtype=np.float32),
    NoiseFamily.gauss.value: np.array(
        [NormalDist().inv_cdf((1 + c / CONTEXTS) / 2) for c in range(1, CONTEXTS)], dtype=np.float32
    ),
}


def uses_contexts(noise: NoiseSpec) -> bool:
    """Whether masks over this noise are coded in noise contexts: continuous families (Bernoulli has one ``|n|``)."""
    return noise.family in _EDGES


def noise_contexts(seed: int, name: str, shape: Sequence[int], noise: NoiseSpec) -> np.ndarray:
    """Each element's context (uint8, flat): how many of the family's quantiles its ``|n| / alpha`` reaches."""
    if not uses_contexts(noise):
        raise ValueError(f"masks over {noise.family} noise have no noise contexts (|n| is constant)")
    scaled = generate_noise(seed, name, shape, noise).abs().div_(noise.alpha).reshape(-1).numpy()
    return np.searchsorted(_EDGES[noise.family], scaled, side="right").astype(np.uint8)
