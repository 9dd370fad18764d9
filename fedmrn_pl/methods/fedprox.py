"""FedProx's proximal term (Li et al., MLSys 2020) as a Lightning callback on the client's local fit.

Each client minimises ``loss + mu/2 ||w - w_global||^2``, which keeps its weights near the
global model it started from (less client drift under non-IID data). The user's
``training_step`` stays as it is: just before Lightning's backward of each step's loss,
the callback backpropagates the proximal term of the weights as the forward pass used
them, so the gradients are those of the sum.

It composes with any uplink method. For FedMRN the weights are the masked ones,
``w + n * M(u, n)`` (the step's own mask, cached for the step, so no extra random draw),
and ``w_global`` the frozen ``w``: the term pulls the mask's contribution toward zero
through the same mask gradient as the loss. Under gradient accumulation the term is
divided like the loss; under mixed precision it is scaled by the same loss scaler.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import lightning as L
import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = ["ProximalTerm"]


class ProximalTerm(L.Callback):
    """Adds ``mu/2 ||w - w_global||^2`` to every local step's objective.

    Args:
        mu: the proximal weight, finite and >= 0 (0: no term; FedProx tried 0.001 to 1).
    """

    def __init__(self, mu: float) -> None:
        if isinstance(mu, bool) or not isinstance(mu, (int, float)) or not math.isfinite(mu) or mu < 0:
            raise ValueError(f"mu must be a finite number >= 0, got {mu!r}")
        self.mu = float(mu)
        self._anchors: dict[tuple[int, str], torch.Tensor] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A new local fit: the global model it starts from is read at its first step."""
        self._anchors = {}

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        """Backpropagate the proximal term of this step's weights, scaled as Lightning scales the loss."""
        if self.mu == 0:
            return
        terms = []
        for key, weight, anchor in _weights(pl_module):
            start = self._anchors.setdefault(key, anchor.detach().clone())
            terms.append((weight - start.to(weight.dtype)).pow(2).sum(dtype=torch.float32))
        if not terms:
            return
        term = (self.mu / 2) * torch.stack(terms).sum()
        if pl_module.automatic_optimization:
            term = term / trainer.accumulate_grad_batches
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if scaler is not None:
            term = scaler.scale(term)
        term.backward(retain_graph=True)  # the loss's own backward follows through the same step weights


def _weights(module: nn.Module) -> Iterator[tuple[tuple[int, str], torch.Tensor, torch.Tensor]]:
    """``(key, weight as the step uses it, its value in the global model)`` for every trained tensor."""
    inside_parametrizations = set()
    for owner in module.modules():
        if parametrize.is_parametrized(owner):
            inside_parametrizations.update(id(part) for part in owner.parametrizations.modules())
            for name, chain in owner.parametrizations.items():
                if any(p.requires_grad for p in chain.parameters()):  # FedMRN: the update u; w itself is frozen
                    yield (id(owner), name), getattr(owner, name), chain.original
    for owner in module.modules():
        if id(owner) in inside_parametrizations:
            continue
        for name, parameter in owner.named_parameters(recurse=False):
            if parameter.requires_grad:
                yield (id(owner), name), parameter, parameter
