"""Masked random noise on any module's parameters via ``torch.nn.utils.parametrize``.

``apply_masked_noise`` turns each selected weight ``w`` into the computed property
``w + n * M(u, n)``: ``w`` is frozen, the noise ``n`` is a non-persistent buffer and
the update ``u`` (zero at the start of a round) is the only new trainable tensor.
The user's layers and forward code stay as they are.

One mask per weight per training step: between ``begin_mask_step`` and
``end_mask_step`` each masked weight is computed once and reused at every read (a
hand-written RNN reading its matrix at each time step, a tied embedding read by two
layers), as ``parametrize.cached()`` does per module, but shared by every place a
tied tensor is registered.

The step's cache holds the weight weakly (the layers that read it keep it for their
backward, and free it there), with the generator state of its draw: a read after the
weight was freed draws it again from that state (the same mask, with ``u`` as it is
then, no draw taken from the shared stream) and holds it for the rest of the step.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize

from fedmrn_pl.masking.functional import MaskSampling, masked_weight, stochastic_mask, threshold_mask
from fedmrn_pl.masking.noise import generate_noise
from fedmrn_pl.masking.selection import ParameterSelector, padding_rows, parameter_places
from fedmrn_pl.update import MaskKind, NoiseSpec

__all__ = [
    "MaskedNoise",
    "apply_masked_noise",
    "begin_mask_step",
    "end_mask_step",
    "is_masked",
    "masked_parametrizations",
    "remove_masked_noise",
    "sample_final_masks",
    "set_mask_generator",
    "set_mask_probability",
]


class MaskedNoise(nn.Module):
    """Parametrization ``w -> w + n * M(u, n)`` with a trainable update ``u``."""

    def __init__(self, noise: torch.Tensor, kind: str, fixed_rows: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.kind = MaskKind.parse(kind, "mask kind")
        self.register_buffer("noise", noise, persistent=False)
        # Rows kept as they are (an embedding's padding row): the weight, whatever the mask says.
        fixed = torch.tensor(fixed_rows, dtype=torch.long, device=noise.device) if fixed_rows else None
        self.register_buffer("fixed_rows", fixed, persistent=False)
        self.update = nn.Parameter(torch.zeros_like(noise))
        self.probability = 0.0  # PSM: chance of using the sampled mask per element
        self.generator: torch.Generator | None = None  # stream of the SM/PSM draws
        self.caching = False  # inside a training step: compute once, reuse at every read
        self._step_weight: torch.Tensor | None = None  # the step's value, held
        self._step_ref: weakref.ref[torch.Tensor] | None = None  # ... or referenced while a layer holds it
        self._step_state: torch.Tensor | None = None  # the generator state its draw started from
        self._read_again = False  # a step read the weight after it had been freed: hold it from the start

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self._step_weight is not None:
            return self._step_weight
        if self._step_ref is not None:
            value = self._step_ref()
            if value is None:  # freed by backward, read again in the same step: the same draws again
                generator = torch.Generator(device=self.generator.device).set_state(self._step_state)
                value = self._masked(weight, generator)
                self._step_weight, self._read_again = value, True
            return value
        draw_from = self.generator.get_state() if self.caching and self.generator is not None else None
        value = self._masked(weight, self.generator)
        if self.caching:
            if draw_from is None or self._read_again:
                self._step_weight = value
            else:
                self._step_ref, self._step_state = weakref.ref(value), draw_from
        return value

    def _masked(self, weight: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """``w + n * M(u, n)`` with draws from ``generator``; fixed rows keep the weight."""
        value = masked_weight(weight, self.update, self.noise, self.kind, self.probability, generator)
        if self.fixed_rows is not None:  # in place: the masked weight's backward saves nothing
            value.index_copy_(0, self.fixed_rows, weight.index_select(0, self.fixed_rows))
        return value

    def forget_step(self) -> None:
        """Drop the step's weight; the next read draws afresh."""
        self._step_weight = self._step_ref = self._step_state = None


def masked_parametrizations(model: nn.Module) -> dict[str, MaskedNoise]:
    """Every ``MaskedNoise`` in ``model`` keyed by its parameter's name (a tied one once, first name)."""
    found: dict[str, MaskedNoise] = {}
    seen: set[int] = set()
    for name, _, _, parametrization in _masked_places(model):
        if id(parametrization) not in seen:
            seen.add(id(parametrization))
            found[name] = parametrization
    return found


def _masked_places(model: nn.Module) -> list[tuple[str, nn.Module, str, MaskedNoise]]:
    """``(name, owner, attribute, parametrization)`` at every place a masked weight is registered, tied ones at each."""
    places = []
    for module_name, module in model.named_modules():
        # The module's own registry: ``is_parametrized`` would also see a wrapper that forwards
        # attribute lookups to a wrapped module (peft's ModulesToSaveWrapper), which owns nothing.
        registry = module._modules.get("parametrizations")
        if not isinstance(registry, nn.ModuleDict):
            continue
        for attr, plist in registry.items():
            for parametrization in plist:
                if isinstance(parametrization, MaskedNoise):
                    places.append((f"{module_name}.{attr}" if module_name else attr, module, attr, parametrization))
    return places


def is_masked(model: nn.Module) -> bool:
    """Whether ``model`` currently carries masked-noise parametrizations."""
    return bool(_masked_places(model))


def apply_masked_noise(
    model: nn.Module,
    seed: int,
    kind: str = "binary",
    noise: NoiseSpec = NoiseSpec(),
    selector: ParameterSelector = ParameterSelector(),
    scales: Mapping[str, float] | None = None,
) -> dict[str, MaskedNoise]:
    """Wrap the selected parameters of ``model`` with masked noise for one round.

    Args:
        model: any module; it is modified in place (undo with ``remove_masked_noise``).
        seed: the client's noise seed for this round.
        kind: "binary" or "signed" masks.
        noise: noise family and magnitude.
        selector: which parameters are masked.
        scales: per parameter name, a magnitude that replaces ``noise.alpha`` (unlisted: alpha).

    Returns:
        The new parametrizations keyed by parameter name; their ``update`` tensors are
        the parameters to train in place of the frozen weights.

    Raises:
        ValueError: the model is already wrapped, or nothing in it is selected.
    """
    if is_masked(model):
        raise ValueError("model already carries masked noise; call remove_masked_noise() first")
    targets = selector.select(model)
    if not targets:
        raise ValueError(f"no parameter of {type(model).__name__} matches {selector}; nothing would be masked")
    places = parameter_places(model)
    fixed = padding_rows(model)
    wrapped = {}
    registered: list[tuple[nn.Module, str, nn.Parameter]] = []
    try:
        for name, module, attr in targets:
            weight = getattr(module, attr)
            spec = noise if scales is None or name not in scales else NoiseSpec(noise.family, scales[name])
            noise_tensor = generate_noise(seed, name, weight.shape, spec, device=weight.device)
            parametrization = MaskedNoise(noise_tensor, kind, fixed.get(name, ()))
            parametrization.to(dtype=weight.dtype)
            # A tied weight gets the same parametrization at each of its places: one u, one noise, one mask.
            for _, owner, owner_attr in places[id(weight)]:
                # unsafe=True skips parametrize's registration-time check, which evaluates the
                # parametrization once: that draw would come from the global RNG (no generator
                # is set yet) and the check is moot, the output has the weight's shape and dtype.
                parametrize.register_parametrization(owner, owner_attr, parametrization, unsafe=True)
                registered.append((owner, owner_attr, weight))
            weight.requires_grad_(False)
            wrapped[name] = parametrization
    except BaseException:
        _unregister(registered)  # the module is shared by every client: leave it as it was
        raise
    return wrapped


def _unregister(registered: list[tuple[nn.Module, str, nn.Parameter]]) -> None:
    """Undo registrations made by a failed ``apply_masked_noise``, newest first."""
    for owner, attr, weight in reversed(registered):
        if attr in getattr(owner._modules.get("parametrizations"), "_modules", {}):
            parametrize.remove_parametrizations(owner, attr, leave_parametrized=False)
        weight.requires_grad_(True)


def remove_masked_noise(model: nn.Module) -> None:
    """Drop the masked noise and give back the plain module with its original weights."""
    for _, owner, attr, _ in _masked_places(model):
        parametrize.remove_parametrizations(owner, attr, leave_parametrized=False)
        getattr(owner, attr).requires_grad_(True)  # only trainable weights are ever masked


def begin_mask_step(model: nn.Module) -> None:
    """Start a training step: each masked weight is drawn once, at its first read, until ``end_mask_step``."""
    for parametrization in masked_parametrizations(model).values():
        parametrization.caching = True
        parametrization.forget_step()


def end_mask_step(model: nn.Module) -> None:
    """End a training step: forget the step's masked weights; later reads draw afresh."""
    for parametrization in masked_parametrizations(model).values():
        parametrization.caching = False
        parametrization.forget_step()


def set_mask_probability(model: nn.Module, probability: float) -> None:
    """Set the PSM probability ``p`` of every masked parameter."""
    for parametrization in masked_parametrizations(model).values():
        parametrization.probability = float(probability)


def set_mask_generator(model: nn.Module, generator: torch.Generator | None) -> None:
    """Share one seeded generator for the SM/PSM draws of every masked parameter."""
    for parametrization in masked_parametrizations(model).values():
        parametrization.generator = generator


@torch.no_grad()
def sample_final_masks(
    model: nn.Module, generator: torch.Generator | None = None, sampling: str = "stochastic"
) -> dict[str, torch.Tensor]:
    """Sample the mask each client uploads (SM, ``p = 1``; or thresholded) as CPU bool tensors.

    For binary masks True means 1; for signed masks True means +1 and False -1.
    ``sampling="threshold"`` is the deterministic ablation: ``clip(u / n) >= 0.5`` (binary).
    """
    sampling = MaskSampling.parse(sampling, "mask sampling")
    masks = {}
    for name, parametrization in masked_parametrizations(model).items():
        ratio = parametrization.update / parametrization.noise
        if generator is not None and generator.device != ratio.device:
            ratio = ratio.to(generator.device)
        if sampling is MaskSampling.threshold:
            sampled = threshold_mask(ratio, parametrization.kind)
        else:
            sampled = stochastic_mask(ratio, parametrization.kind, generator)
        masks[name] = (sampled > 0).cpu()
    return masks
