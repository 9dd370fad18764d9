"""A ready-made classification LightningModule for the built-in models.

Nothing here knows about federation: it is the kind of module a user would write,
and the federated loop treats it exactly like one of theirs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning import LightningModule
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

__all__ = ["ClassificationTask"]


class ClassificationTask(LightningModule):
    """Cross-entropy classifier trained with SGD.

    Args:
        model: the network mapping images to logits.
        num_classes: number of classes, for the accuracy metric.
        lr: SGD learning rate (paper: 0.1 for FedMRN, 0.03 for FedAvg).
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
    """

    def __init__(
        self, model: nn.Module, num_classes: int, lr: float = 0.1, momentum: float = 0.0, weight_decay: float = 0.0
    ) -> None:
        super().__init__()
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.model = model
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.test_accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.test_accuracy(logits, y)
        self.log("test/loss", F.cross_entropy(logits, y), on_step=False, on_epoch=True, batch_size=len(y))
        self.log("test/acc", self.test_accuracy, on_step=False, on_epoch=True, batch_size=len(y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
