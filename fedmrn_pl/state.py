"""A module's state as the federation sees it: one entry per tensor, tied tensors once.

``state_dict()`` lists a tied tensor (an embedding shared with the output layer)
under each of its names; the federation treats it as one tensor everywhere (masking,
payload, aggregation, the global model), so it is kept under its first name only.
A frozen parameter (``requires_grad=False``) is part of the global model but never
uploaded: no client can change it, so the server keeps its value.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["frozen_names", "load_module_state", "module_state", "uploaded_state"]


def module_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of ``module``'s state, each tensor once (tied ones under their first name)."""
    return {name: tensor.detach().cpu().clone() for name, tensor in _distinct_state(module).items()}


def frozen_names(module: nn.Module) -> set[str]:
    """Names (as in ``module_state``) of the parameters no client can change: ``requires_grad=False``."""
    return {
        name
        for name, tensor in _distinct_state(module).items()
        if isinstance(tensor, nn.Parameter) and not tensor.requires_grad
    }


def uploaded_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module_state`` without the frozen parameters: what a client's update carries (buffers included)."""
    frozen = frozen_names(module)
    return {name: tensor for name, tensor in module_state(module).items() if name not in frozen}


def load_module_state(module: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Load a ``module_state`` into ``module``; a tied tensor's other names share the loaded values.

    Raises:
        ValueError: ``state`` lacks a tensor of the module or has one it does not know.
    """
    result = module.load_state_dict(state, strict=False)
    missing = sorted(set(_distinct_state(module)) - set(state))
    if missing or result.unexpected_keys:
        raise ValueError(
            f"state does not match {type(module).__name__}: missing {missing}, unexpected {sorted(result.unexpected_keys)}"
        )


def _distinct_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """``state_dict(keep_vars=True)`` with each tensor object once, under its first name."""
    distinct: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in module.state_dict(keep_vars=True).items():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            distinct[name] = tensor
    return distinct
