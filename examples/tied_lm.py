"""A GRU language model whose output layer is its input embedding (tied weights).

    python -m examples.tied_lm              # 10 clients, 20 rounds
    python -m examples.tied_lm --tiny       # seconds: what the test suite runs

Shows: a tied tensor is one parameter (masked once, uploaded once, still tied after
training); sequence targets, so the labels used to partition are given
(``FederatedDataset.from_datasets(..., train_targets=...)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from examples.command import run_example
from examples.text_data import ALPHABET, sequence_pairs, speaker_text
from fedmrn_pl import FederatedDataModule, FederatedDataset, FederatedTrainer, FedMRN, MaskingConfig

LENGTH = 24  # characters per training sequence


class TiedGRULM(L.LightningModule):
    """Embedding -> GRU -> the embedding again as the output layer; predicts every next character."""

    def __init__(self, vocab: int = len(ALPHABET), hidden: int = 64, lr: float = 0.01) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.embed = nn.Embedding(vocab, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab, bias=False)
        self.head.weight = self.embed.weight  # tied: one tensor, two modules

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        states, _ = self.gru(self.embed(tokens))  # (B, T, H)
        return self.head(states)  # (B, T, V)

    def _loss_and_accuracy(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, targets = batch
        logits = self(tokens).flatten(0, 1)  # (B * T, V)
        return F.cross_entropy(logits, targets.flatten()), (logits.argmax(1) == targets.flatten()).float().mean()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _ = self._loss_and_accuracy(batch)
        self.log("train/loss", loss)
        return loss

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, accuracy = self._loss_and_accuracy(batch)
        self.log("test/loss", loss)
        self.log("test/acc", accuracy)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def main(tiny: bool = False, output_dir: str | Path | None = None, seed: int = 0, overwrite: bool = False) -> tuple[dict[str, Any], FederatedTrainer]:
    """Train federated; return the run summary and the trainer."""
    sentences = 40 if tiny else 1500
    train = sequence_pairs("".join(speaker_text(s, sentences // 6, seed) for s in range(6)), LENGTH)
    test = sequence_pairs(speaker_text(6, max(sentences // 6, 20), seed + 1), LENGTH)
    # Targets are whole sequences: label each sample by its first target character for the partitioner.
    data = FederatedDataset.from_datasets(
        train, test, train_targets=train.tensors[1][:, 0], test_targets=test.tensors[1][:, 0], name="speakers"
    )
    clients = 3 if tiny else 10
    datamodule = FederatedDataModule(data, num_clients=clients, partition="dirichlet", partition_kwargs={"beta": 0.5, "min_size": 2}, seed=seed)
    torch.manual_seed(seed)
    trainer = FederatedTrainer(
        TiedGRULM(),
        datamodule,
        FedMRN(),
        MaskingConfig(),
        rounds=2 if tiny else 20,
        clients_per_round=2 if tiny else 5,
        local_epochs=1 if tiny else 2,
        batch_size=16,
        run_seed=seed,
        output_dir=output_dir,
        overwrite=overwrite,
    )
    trainer.fit()
    assert trainer.summary is not None
    return trainer.summary, trainer


if __name__ == "__main__":
    (summary, trainer), output_dir = run_example("tied_lm", __doc__, main)
    print(
        f"masked (the tied tensor once): {trainer.masked_names}; next-character accuracy "
        f"{summary['final_test_accuracy']:.3f}; uplink {summary['uplink_compression']:.1f}x smaller than float32"
    )
