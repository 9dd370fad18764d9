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

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from fedmrn_pl.masking.noise import MIN_NOISE_MAGNITUDE
from fedmrn_pl.seeding import derive_seed, make_generator
from fedmrn_pl.update import NoiseFamily, NoiseSpec
from fedmrn_pl.wire.mask_coding import CONTEXTS

__all__ = ["noise_context_chunks", "noise_contexts", "uses_contexts"]

_EDGES = [c / CONTEXTS for c in range(1, CONTEXTS)]  # octiles of |n| / alpha, uniform on [0, 1]; contexts count them
_CHUNK = 1 << 21  # elements whose noise is drawn at a time: ~12 MB, whatever the shape


def uses_contexts(noise: NoiseSpec) -> bool:
    """Whether masks over this noise are coded in noise contexts: uniform noise only (see the module docstring)."""
    return noise.family == NoiseFamily.uniform.value


def noise_contexts(seed: int, name: str, shape: Sequence[int], noise: NoiseSpec) -> np.ndarray:
    """Each element's context (uint8, flat): how many octiles its ``|n| / alpha`` reaches.

    The noise is ``masking.generate_noise(seed, name, shape, noise)``'s; the result takes one
    byte per element.
    """
    return np.concatenate([np.zeros(0, dtype=np.uint8), *noise_context_chunks(seed, name, shape, noise)])


def noise_context_chunks(seed: int, name: str, shape: Sequence[int], noise: NoiseSpec) -> Iterator[np.ndarray]:
    """:func:`noise_contexts` in consecutive chunks, so a reader that only counts never holds them whole.

    ``torch.rand`` on the CPU draws its floats one after another from the generator, so
    drawing the noise in chunks gives the floats of one draw; the arithmetic is
    ``generate_noise``'s uniform branch, element by element (a test pins the two together).
    """
    if not uses_contexts(noise):
        raise ValueError(f"masks over {noise.family} noise are not coded in noise contexts")
    numel = math.prod(int(d) for d in shape)
    generator = make_generator(derive_seed(seed, purpose=f"noise:{name}"))
    for lo in range(0, numel, _CHUNK):
        drawn = torch.rand(min(_CHUNK, numel - lo), generator=generator).mul_(2.0).sub_(1.0).mul_(noise.alpha)
        # |where(|n| < MIN, MIN, n)| is max(|n|, MIN), both at float32's MIN: in place, one float per element
        scaled = drawn.abs_().clamp_min_(MIN_NOISE_MAGNITUDE).div_(noise.alpha)
        # octiles reached: scaled >= c / 8 exactly when floor(8 * scaled) >= c (times 8 is exact in float32)
        yield scaled.mul_(CONTEXTS).clamp_max_(CONTEXTS - 1).to(torch.uint8).numpy()
