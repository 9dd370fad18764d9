"""A module's own metric names: mapped to the standard keys, or reported once when never logged; the monitored one."""

import logging
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedmrn_pl import FederatedTrainer, FedMRN, MaskingConfig
from fedmrn_pl.callbacks.progress import format_round
from fedmrn_pl.federated.metric_keys import MetricKeys
from fedmrn_pl.monitor import Monitor
from tests.federated.test_one_mask_per_step import VOCAB, ReadRecorder, TokenClients


class OwnNames(ReadRecorder):
    """Logs ``train_loss``, ``val_acc`` and ``val_loss``, as many Lightning tutorials do."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 16)
        self.head = nn.Linear(16, VOCAB)

    def forward(self, tokens):
        return self.head(self.embed(tokens[:, -1]))

    def training_step(self, batch, batch_idx):
        tokens, target = batch
        loss = F.cross_entropy(self(tokens), target)
        self.log("train_loss", loss)
        return loss

    def test_step(self, batch, batch_idx):
        tokens, target = batch
        logits = self(tokens)
        self.log("val_acc", (logits.argmax(1) == target).float().mean())
        self.log("val_loss", F.cross_entropy(logits, target))


def _fit(**kwargs):
    torch.manual_seed(0)
    trainer = FederatedTrainer(
        OwnNames(), TokenClients(), FedMRN(), MaskingConfig(), rounds=2, clients_per_round=2, batch_size=32, **kwargs
    )
    return trainer, trainer.fit()


def test_mapped_keys_feed_the_summary_and_the_progress_line(caplog):
    keys = {"train/loss": "train_loss", "test/acc": "val_acc", "test/loss": "val_loss"}
    with caplog.at_level(logging.WARNING, logger="fedmrn_pl"):
        trainer, history = _fit(metric_keys=keys)
    assert not caplog.records
    last = history[-1]
    assert last["test/acc"] == last["val_acc"] and last["test/loss"] == last["val_loss"]
    assert math.isfinite(last["train/loss"])
    assert trainer.summary["final_test_accuracy"] == last["val_acc"]
    line = format_round(last, trainer.rounds, history)
    assert "acc -" not in line and "loss -" not in line


def test_keys_never_logged_are_reported_once_each(caplog):
    with caplog.at_level(logging.WARNING, logger="fedmrn_pl"):
        _, history = _fit()
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 3  # train/loss, test/acc, test/loss: once each over two rounds
    assert any("no 'test/acc' in test_step (it logged ['val_acc', 'val_loss'])" in m for m in messages)
    assert any("no 'train/loss' in training_step (it logged ['train_loss'])" in m for m in messages)
    assert all("metric_keys=" in m for m in messages)
    assert math.isnan(history[-1]["train/loss"]) and "test/acc" not in history[-1]


def test_unknown_metric_keys_are_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown keys \['val/acc'\]; map any of \['train/loss', 'test/acc', 'test/loss'\]"):
        MetricKeys({"val/acc": "val_acc"})
    with pytest.raises(ValueError, match=r"metric_keys\['test/acc'\] must be a non-empty str"):
        MetricKeys({"test/acc": ""})


def test_a_mapped_name_is_monitored_with_its_standard_keys_direction():
    assert MetricKeys({"test/loss": "val_loss"}, "val_loss").monitor == Monitor("val_loss", "min", "test/loss")
    assert MetricKeys({"test/acc": "val_acc"}, "val_acc").monitor.mode == "max"
    assert MetricKeys({"test/acc": "val_acc"}, "val_acc", "min").monitor.mode == "min"  # the user's word wins


def test_the_training_loss_is_monitored_by_its_recorded_key():
    with pytest.raises(ValueError, match=r"monitor='train_loss' is the training loss, recorded per round as 'train/loss'"):
        MetricKeys({"train/loss": "train_loss"}, "train_loss")


def test_a_monitored_key_never_logged_is_reported_once(caplog):
    keys = {"train/loss": "train_loss", "test/acc": "val_acc", "test/loss": "val_loss"}
    with caplog.at_level(logging.WARNING, logger="fedmrn_pl"):
        trainer, _ = _fit(metric_keys=keys, monitor="val_mse", monitor_mode="min")
    (message,) = [record.getMessage() for record in caplog.records]
    assert "no 'val_mse' in test_step (it logged ['val_acc', 'val_loss']), the metric the run is judged by" in message
    assert trainer.summary["monitor"] == "val_mse" and trainer.summary["best_value"] is None
