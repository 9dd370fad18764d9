"""LoRA adapters of a Hugging Face BERT trained federated with FedMRN, one client per speaker.

    python -m examples.peft_lora            # 6 speakers, 30 rounds (under a minute on 2 cores)
    python -m examples.peft_lora --tiny     # seconds: what the test suite runs

Needs the ``zoo`` extra (``pip install -e '.[zoo]'``: transformers and peft). The BERT is
built from a small config (random init, nothing downloaded). Shows: a peft model as it
comes from ``get_peft_model(..., task_type="SEQ_CLS")``, with no exclude pattern. Only
what peft leaves trainable is masked and uploaded (the LoRA matrices and the classifier
peft keeps in a ``ModulesToSaveWrapper``); the frozen encoder never leaves the server.
The task: say which verb a sentence uses, from its padded characters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from examples.command import run_example
from examples.text_data import ALPHABET, VERBS, encode, speaker_text
from fedmrn_pl import FederatedDataModule, FederatedTrainer, FedMRN, MaskingConfig

PAD = 0  # token 0 pads; character c is ALPHABET.index(c) + 1
LENGTH = 40  # characters per sentence, padded


def verb_sentences(text: str) -> TensorDataset:
    """(padded sentence tokens, index of its verb in ``VERBS``) for each sentence of ``text``."""
    sentences = [s.strip() + "." for s in text.split(".") if s.strip()]
    tokens = torch.full((len(sentences), LENGTH), PAD, dtype=torch.long)
    labels = torch.empty(len(sentences), dtype=torch.long)
    for row, sentence in enumerate(sentences):
        ids = encode(sentence[:LENGTH]) + 1
        tokens[row, : len(ids)] = ids
        labels[row] = next(k for k, verb in enumerate(VERBS) if f" {verb} " in sentence)
    return TensorDataset(tokens, labels)


class LoraVerbClassifier(L.LightningModule):
    """``BertForSequenceClassification`` with peft LoRA on the attention's query and value."""

    def __init__(self, rank: int = 4, lr: float = 3e-3) -> None:
        super().__init__()
        from peft import LoraConfig, get_peft_model
        from transformers import BertConfig, BertForSequenceClassification

        self.save_hyperparameters()
        config = BertConfig(
            vocab_size=len(ALPHABET) + 1, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=LENGTH, num_labels=len(VERBS), pad_token_id=PAD,
        )  # fmt: skip
        lora = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["query", "value"], task_type="SEQ_CLS")
        self.model = get_peft_model(BertForSequenceClassification(config), lora)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=tokens, attention_mask=tokens != PAD).logits

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        tokens, labels = batch
        loss = F.cross_entropy(self(tokens), labels)
        self.log("train/loss", loss)
        return loss

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        tokens, labels = batch
        logits = self(tokens)
        self.log("test/acc", (logits.argmax(1) == labels).float().mean())
        self.log("test/loss", F.cross_entropy(logits, labels))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam((p for p in self.parameters() if p.requires_grad), lr=self.hparams.lr)


def main(tiny: bool = False, output_dir: str | Path | None = None, seed: int = 0, overwrite: bool = False) -> tuple[dict[str, Any], FederatedTrainer]:
    """Train federated; return the run summary (what metrics.json holds) and the trainer."""
    speakers, sentences = (3, 40) if tiny else (6, 150)
    clients = [verb_sentences(speaker_text(s, sentences, seed)) for s in range(speakers)]
    test = verb_sentences(speaker_text(speakers, 100, seed + 1))  # a speaker no client is
    data = FederatedDataModule.from_client_datasets(clients, test, seed=seed)
    torch.manual_seed(seed)
    trainer = FederatedTrainer(
        LoraVerbClassifier(),
        data,
        FedMRN(),
        MaskingConfig(),
        rounds=2 if tiny else 30,
        clients_per_round=2 if tiny else 3,
        local_epochs=2,
        batch_size=16,
        run_seed=seed,
        output_dir=output_dir,
        overwrite=overwrite,
    )
    trainer.fit()
    assert trainer.summary is not None
    return trainer.summary, trainer


if __name__ == "__main__":
    (summary, _), output_dir = run_example("peft_lora", __doc__, main)
    print(
        f"verb accuracy {summary['final_test_accuracy']:.3f} on an unseen speaker (chance {1 / len(VERBS):.3f}); "
        f"uplink {summary['uplink_compression']:.1f}x smaller than float32; outputs in {output_dir}"
    )
