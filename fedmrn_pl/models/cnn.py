"""The paper's convolutional networks: CNN4 and CNN8.

Plain ``nn.Module``s with bias-free 3x3 convolutions, BatchNorm, ReLU and 2x2 max
pooling. They know nothing about federation or masking; FedMRN wraps their
parameters from the outside.
"""

from __future__ import annotations

import torch
from torch import nn

from fedmrn_pl.models.initialization import InitScheme, initialize_weights

__all__ = ["CNN4", "CNN8", "ConvNet"]


class ConvNet(nn.Module):
    """A stack of conv3x3 -> BN -> ReLU blocks with 2x2 max pools and a linear head.

    Subclasses pick the depth by setting ``channels`` and ``pool_every``. Pools that
    would shrink the feature map below 1x1 are skipped, so one architecture runs on
    8x8 digits as well as 28x28 and 32x32 images; the head's input size is computed
    from ``image_size`` at construction.

    Args:
        in_channels: Channels of the input images.
        num_classes: Number of logits produced by the head.
        image_size: Height (= width) of the square input images.
        bias: Whether convs and the head carry biases (the paper uses none).
        init: ``"paper"`` (N(0, 0.01) weights) or ``"default"`` (PyTorch init).
    """

    channels: tuple[int, ...] = ()  # output channels of each conv, in order
    pool_every: int = 1  # max pool after every ``pool_every``-th conv

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        bias: bool = False,
        init: str = "paper",
    ) -> None:
        super().__init__()
        InitScheme.parse(init, "init")  # early, so a typo never trains silently
        if image_size < 1 or in_channels < 1 or num_classes < 1:
            raise ValueError(
                f"image_size, in_channels and num_classes must be >= 1, got "
                f"{image_size}, {in_channels}, {num_classes}"
            )
        layers: list[nn.Module] = []
        size, prev = image_size, in_channels
        for index, out in enumerate(self.channels, start=1):
            layers += [
                nn.Conv2d(prev, out, kernel_size=3, padding=1, bias=bias),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            if index % self.pool_every == 0 and size >= 2:  # pooling a 1x1 map would leave nothing
                layers.append(nn.MaxPool2d(2))
                size //= 2
            prev = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(prev * size * size, num_classes, bias=bias)
        initialize_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, C, s, s)
        return self.head(torch.flatten(x, 1))  # (B, num_classes)


class CNN4(ConvNet):
    """The paper's CNN4: four conv blocks (32-64-128-256), each followed by a max pool."""

    channels = (32, 64, 128, 256)
    pool_every = 1


class CNN8(ConvNet):
    """The paper's CNN8: eight conv blocks (32,32,64,64,128,128,256,256), a max pool after every second."""

    channels = (32, 32, 64, 64, 128, 128, 256, 256)
    pool_every = 2
