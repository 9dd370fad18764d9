"""Noise contexts: which group of a mask's bits each element falls in, from the noise the reader regenerates.

The coder itself (``mask_coding.encode_in_contexts``) is pure; this module ties it to
FedMRN's noise: ``CONTEXTS`` groups by ``|n| / alpha`` cut at its octiles, from the noise
regenerated with the payload's seed, parameter name and noise spec.

Only uniform noise is coded this way. Its values come from ``torch.rand`` and exact float
arithmetic, the same on every CPU; ``torch.randn``'s differ in the last bits between CPU
kernels (AVX2 vs baseline), enough to move an element across a group boundary, so gauss
masks keep the per-kernel-position coder. The body carries the contexts' CRC-32 in any
case: a reader that derives other contexts refuses the mask instead of misreading it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedmrn_pl.masking.noise import generate_noise
from fedmrn_pl.update import NoiseFamily, NoiseSpec
from fedmrn_pl.wire.mask_coding import CONTEXTS

__all__ = ["noise_contexts", "uses_contexts"]

_EDGES = [c / CONTEXTS for c in range(1, CONTEXTS)]  # octiles of |n| / alpha, uniform on [0, 1]


def uses_contexts(noise: NoiseSpec) -> bool:
    """Whether masks over this noise are coded in noise contexts: uniform noise only (see the module docstring)."""
    return noise.family == NoiseFamily.uniform.value


def noise_contexts(seed: int, name: str, shape: Sequence[int], noise: NoiseSpec) -> np.ndarray:
    """Each element's context (uint8, flat): how many octiles its ``|n| / alpha`` reaches.

    About 6 bytes of memory per element (the float32 noise, the contexts, one comparison).
    """
    if not uses_contexts(noise):
        raise ValueError(f"masks over {noise.family} noise are not coded in noise contexts")
    scaled = generate_noise(seed, name, shape, noise).abs_().div_(noise.alpha).reshape(-1).numpy()
    contexts = np.zeros(scaled.size, dtype=np.uint8)
    for edge in np.array(_EDGES, dtype=np.float32):
        contexts += scaled >= edge
    return contexts
