"""A fully connected baseline model (the paper's MLP)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fedmrn_pl.models.initialization import InitScheme, initialize_weights

__all__ = ["MLP"]


class MLP(nn.Module):
    """Flatten -> (Linear -> ReLU) per hidden layer -> Linear head.

    Args:
        in_features: Size of the flattened input (e.g. ``C * H * W`` for images).
        num_classes: Number of logits produced by the head.
        hidden: Widths of the hidden layers, in order.
        bias: Whether the linears carry biases (the paper uses none).
        init: ``"default"`` (PyTorch init, which learns without normalisation layers) or
            ``"paper"`` (N(0, 0.01) weights).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: Sequence[int] = (200, 200),
        bias: bool = False,
        init: str = "default",
    ) -> None:
        super().__init__()
        InitScheme.parse(init, "init")  # early, so a typo never trains silently
        if in_features < 1 or num_classes < 1:
            raise ValueError(f"in_features and num_classes must be >= 1, got {in_features}, {num_classes}")
        layers: list[nn.Module] = []
        prev = in_features
        for width in hidden:
            layers += [nn.Linear(prev, width, bias=bias), nn.ReLU(inplace=True)]
            prev = width
        layers.append(nn.Linear(prev, num_classes, bias=bias))
        self.net = nn.Sequential(*layers)
        initialize_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.flatten(x, 1))  # (B, in_features) -> (B, num_classes)
