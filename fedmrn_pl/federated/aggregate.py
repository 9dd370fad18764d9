"""The arithmetic of aggregation: pure functions on tensors and weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fedmrn_pl.masking import reconstruct_delta
from fedmrn_pl.update import ClientUpdate

__all__ = ["average_dense", "example_weights", "masked_noise_sum", "weighted_average"]


def example_weights(updates: Sequence[ClientUpdate]) -> list[float]:
    """Each client's share ``N_k / N`` of the round's training examples."""
    total = sum(update.num_examples for update in updates)
    if total <= 0:
        raise ValueError("updates carry no training examples; cannot weight them")
    return [update.num_examples / total for update in updates]


def weighted_average(tensors: Sequence[torch.Tensor], weights: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """``sum_k w_k t_k`` in float64, returned in the dtype of ``like`` (integers rounded)."""
    total = torch.zeros(like.shape, dtype=torch.float64)
    for tensor, weight in zip(tensors, weights, strict=True):
        total.add_(tensor.detach().to("cpu", torch.float64), alpha=weight)
    if not like.is_floating_point():
        total = total.round_()
    return total.to(like.dtype)


def average_dense(
    name: str, updates: Sequence[ClientUpdate], weights: Sequence[float], like: torch.Tensor
) -> torch.Tensor:
    """The new value of a dense tensor: the weighted average of the uploads, or ``like`` when none carries it.

    A tensor no client uploads is frozen (no client can change it): the server keeps its value.
    """
    if name not in updates[0].dense:
        return like
    return weighted_average([update.dense[name] for update in updates], weights, like)


def masked_noise_sum(
    name: str,
    updates: Sequence[ClientUpdate],
    weights: Sequence[float],
    like: torch.Tensor,
    fixed_rows: Sequence[int] = (),
) -> torch.Tensor:
    """``sum_k w_k n_k * m_k`` for one parameter, each client's noise regenerated from its seed.

    ``fixed_rows`` get no change, whatever the masks say there (clients trained with them fixed).
    """
    total = torch.zeros(like.shape, dtype=torch.float32)
    for update, weight in zip(updates, weights, strict=True):
        total.add_(
            reconstruct_delta(update.seed, name, update.masks[name], update.mask_kind, update.noise_for(name)), alpha=weight
        )
    if fixed_rows:
        total[list(fixed_rows)] = 0.0
    return total.to(like.dtype)
