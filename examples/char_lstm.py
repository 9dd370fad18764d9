"""A character-level LSTM, one client per speaker, with the module's own metric names.

    python -m examples.char_lstm            # 8 speakers, 20 rounds (about a minute on 2 cores)
    python -m examples.char_lstm --tiny     # seconds: what the test suite runs

Shows: per-client datasets kept as they are (``FederatedDataModule.from_client_datasets``),
a module that logs ``train_loss``/``val_acc``/``val_loss`` (``metric_keys``), and the
run outputs (``output_dir``: metrics.json and plots).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from examples.command import run_example
from examples.text_data import ALPHABET, next_char_pairs, speaker_text
from fedmrn_pl import FederatedDataModule, FederatedTrainer, FedMRN, MaskingConfig

CONTEXT = 12  # characters read before predicting the next one


class CharLSTM(L.LightningModule):
    """Reads ``CONTEXT`` characters and predicts the next; nothing in it knows about FedMRN."""

    def __init__(self, vocab: int = len(ALPHABET), embed: int = 16, hidden: int = 64, lr: float = 0.01) -> None:
        super().__init__()
        self.save_hyperparameters()  # logged to wandb.config when a WandbLogger is used
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        states, _ = self.lstm(self.embed(tokens))  # (B, T, H)
        return self.head(states[:, -1])  # (B, V)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        tokens, target = batch
        loss = F.cross_entropy(self(tokens), target)
        self.log("train_loss", loss)
        return loss

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        tokens, target = batch
        logits = self(tokens)
        self.log("val_acc", (logits.argmax(1) == target).float().mean())
        self.log("val_loss", F.cross_entropy(logits, target))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def main(tiny: bool = False, output_dir: str | Path | None = None, seed: int = 0, overwrite: bool = False) -> dict[str, Any]:
    """Train federated; return the run summary (what metrics.json holds)."""
    speakers, sentences = (3, 12) if tiny else (8, 150)
    clients = [next_char_pairs(speaker_text(s, sentences, seed), CONTEXT) for s in range(speakers)]
    test = next_char_pairs(speaker_text(speakers, sentences, seed + 1), CONTEXT)  # a speaker no client is
    data = FederatedDataModule.from_client_datasets(clients, test, seed=seed)
    torch.manual_seed(seed)
    trainer = FederatedTrainer(
        CharLSTM(),
        data,
        FedMRN(),
        MaskingConfig(),
        rounds=2 if tiny else 20,
        clients_per_round=2 if tiny else 4,
        local_epochs=1,
        batch_size=64,
        run_seed=seed,
        output_dir=output_dir,
        overwrite=overwrite,
        metric_keys={"train/loss": "train_loss", "test/acc": "val_acc", "test/loss": "val_loss"},
    )
    trainer.fit()
    assert trainer.summary is not None
    return trainer.summary


if __name__ == "__main__":
    summary, output_dir = run_example("char_lstm", __doc__, main)
    print(
        f"next-character accuracy {summary['final_test_accuracy']:.3f} on an unseen speaker; "
        f"uplink {summary['uplink_compression']:.1f}x smaller than float32; outputs in {output_dir}"
    )
