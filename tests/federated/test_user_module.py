"""A researcher's own LightningModule (an LSTM over image rows, a module with only validation_step) runs unchanged."""

import warnings

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedmrn_pl import FedAvg, FederatedDataModule, FederatedTrainer, FedMRN, MaskingConfig


class RowLSTM(L.LightningModule):
    """Reads an 8x8 digit row by row; logs its own metric names; counts its own hooks."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.LSTM(8, 32, batch_first=True)
        self.head = nn.Linear(32, 10)
        self.epochs_seen = 0

    def forward(self, images):
        rows = images.squeeze(1)  # (B, 8, 8): 8 steps of 8 features
        return self.head(self.encoder(rows)[0][:, -1])

    def training_step(self, batch, batch_idx):
        images, labels = batch
        loss = F.cross_entropy(self(images), labels)
        self.log("train/loss", loss)
        return loss

    def on_train_epoch_end(self):
        self.epochs_seen += 1

    def test_step(self, batch, batch_idx):
        images, labels = batch
        self.log("test/acc", (self(images).argmax(1) == labels).float().mean())
        self.log("test/my_metric", torch.tensor(1.0))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


def test_a_user_lstm_module_trains_federated_without_changes():
    data = FederatedDataModule("digits", num_clients=5, seed=0)
    data.setup()
    torch.manual_seed(0)  # the user's own init, made repeatable for the test
    module = RowLSTM()
    trainer = FederatedTrainer(
        module, data, FedMRN(), MaskingConfig(), rounds=6, clients_per_round=3, local_epochs=2, batch_size=32
    )
    assert set(trainer.masked_names) == {"encoder.weight_ih_l0", "encoder.weight_hh_l0", "head.weight"}
    history = trainer.fit()
    assert type(module) is RowLSTM and type(module.encoder) is nn.LSTM  # plain again
    assert module.epochs_seen == 6 * 3 * 2  # the user's own hooks ran for every local epoch
    assert history[-1]["test/my_metric"] == 1.0
    assert history[-1]["test/acc"] > 0.3  # chance is 0.1; this seed reaches ~0.41
    assert history[-1]["train/loss"] < history[0]["train/loss"]


class ValidatedMLP(L.LightningModule):
    """Like most Lightning modules: a ``validation_step`` and no ``test_step``."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    def training_step(self, batch, batch_idx):
        images, labels = batch
        loss = F.cross_entropy(self.net(images), labels)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        logits = self.net(images)
        self.log("val_loss", F.cross_entropy(logits, labels))
        self.log("val_acc", (logits.argmax(1) == labels).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class ValidatedAndTestedMLP(ValidatedMLP):
    """Both steps: the server tests with ``test_step``."""

    def test_step(self, batch, batch_idx):
        images, labels = batch
        self.log("test/acc", (self.net(images).argmax(1) == labels).float().mean())


def _run_recording_warnings(module, caplog, **kwargs):
    data = FederatedDataModule("digits", num_clients=4, seed=0)
    data.setup()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = FederatedTrainer(
            module, data, FedAvg(), rounds=2, clients_per_round=3, batch_size=64, **kwargs
        ).fit()
    said = [str(w.message) for w in caught] + [record.getMessage() for record in caplog.records]
    return history, said


def test_a_module_with_only_validation_step_is_evaluated_with_it(caplog):
    history, said = _run_recording_warnings(
        ValidatedMLP(), caplog, metric_keys={"test/acc": "val_acc", "test/loss": "val_loss"}
    )
    assert [sorted(k for k in m if k.startswith(("val", "test"))) for m in history] == [
        ["test/acc", "test/loss", "val_acc", "val_loss"]
    ] * 2
    assert history[-1]["test/acc"] == history[-1]["val_acc"] and 0.0 <= history[-1]["val_acc"] <= 1.0
    assert not [line for line in said if "logged no" in line]  # the mapped keys were found


@pytest.mark.parametrize("module", [ValidatedMLP, ValidatedAndTestedMLP])
def test_lightnings_no_val_dataloader_warning_appears_at_most_once_per_run(module, caplog):
    _, said = _run_recording_warnings(module(), caplog)
    assert len([line for line in said if "val_dataloader" in line]) <= 1  # 6 client fits
