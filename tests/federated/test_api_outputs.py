"""The Python API gives a run's outputs as the CLI does: progress on a terminal, metrics.json and plots."""

import json
import logging

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from fedmrn_pl import FedAvg, FederatedDataModule, FederatedTrainer, FedMRN, MaskingConfig
from fedmrn_pl.callbacks import ProgressDisplay
from fedmrn_pl.seeding import make_generator
from tests.federated.test_one_mask_per_step import TiedLM, TokenClients


def _trainer(**kwargs):
    torch.manual_seed(0)
    return FederatedTrainer(
        TiedLM(), TokenClients(), FedMRN(), MaskingConfig(), rounds=2, clients_per_round=2, batch_size=32, **kwargs
    )


@pytest.mark.parametrize("terminal", [True, False])
def test_progress_shows_bars_on_a_terminal_and_lines_elsewhere(terminal, monkeypatch):
    monkeypatch.setattr("fedmrn_pl.callbacks.progress.is_interactive", lambda: terminal)
    displays = [c for c in _trainer().callbacks if isinstance(c, ProgressDisplay)]
    assert len(displays) == 1 and displays[0].bars is terminal and displays[0].enabled


def test_a_given_progress_display_is_the_only_one():
    mine = ProgressDisplay(interactive=False)
    assert [c for c in _trainer(callbacks=[mine]).callbacks if isinstance(c, ProgressDisplay)] == [mine]


def test_output_dir_gets_metrics_json_and_plots(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="fedmrn_pl")
    trainer = _trainer(output_dir=tmp_path / "run", callbacks=[ProgressDisplay(interactive=False)])
    history = trainer.fit()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["method"] == "fedmrn-signed" and metrics["rounds"] == 2
    assert metrics["final_test_accuracy"] == pytest.approx(history[-1]["test/acc"])
    assert metrics["uplink_compression"] > 1 and len(metrics["per_round"]) == 2
    assert (tmp_path / "run" / "accuracy_vs_round.png").stat().st_size > 0
    assert (tmp_path / "run" / "accuracy_vs_uplink.png").stat().st_size > 0
    assert caplog.text.count("round ") == 2  # one progress line per round off a terminal


def regression_data(num_clients: int = 4, per_client: int = 64) -> FederatedDataModule:
    """Noisy linear targets ``y = x . w`` split over clients: float targets, nothing to count as accuracy."""
    generator = make_generator(0)
    weights = torch.randn(4, generator=generator)

    def draw(count: int) -> TensorDataset:
        x = torch.randn(count, 4, generator=generator)
        return TensorDataset(x, x @ weights + 0.1 * torch.randn(count, generator=generator))

    clients = [draw(per_client) for _ in range(num_clients)]
    return FederatedDataModule.from_client_datasets(clients, draw(128), test_batch_size=128)


class Regressor(L.LightningModule):
    """A regression module as users write one: it logs ``test_mse`` and ``test_mae``, lower is better."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self(x), y)
        self.log("train/loss", loss)
        return loss

    def test_step(self, batch, batch_idx):
        x, y = batch
        prediction = self(x)
        self.log("test_mse", F.mse_loss(prediction, y))
        self.log("test_mae", F.l1_loss(prediction, y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def regression_trainer(**kwargs) -> FederatedTrainer:
    """Judged by its test MSE, lower is better; ``test/loss`` is that MSE too."""
    torch.manual_seed(0)
    return FederatedTrainer(
        Regressor(), regression_data(), FedAvg(), rounds=3, clients_per_round=2, batch_size=16,
        metric_keys={"test/loss": "test_mse"}, monitor="test_mse", monitor_mode="min", **kwargs,
    )  # fmt: skip


def test_a_regression_run_reads_as_one(tmp_path, caplog):
    run_dir = tmp_path / "run"
    trainer = regression_trainer(output_dir=run_dir, callbacks=[ProgressDisplay(interactive=False)])
    with caplog.at_level(logging.INFO, logger="fedmrn_pl"):
        history = trainer.fit()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # no accuracy asked of a module that has none
    mse = [metrics["test_mse"] for metrics in history]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (metrics["monitor"], metrics["monitor_mode"]) == ("test_mse", "min")
    assert metrics["best_value"] == pytest.approx(min(mse)) and metrics["final_value"] == pytest.approx(mse[-1])
    assert metrics["best_round"] == 1 + mse.index(min(mse))
    assert metrics["final_test_accuracy"] is None and metrics["best_test_accuracy"] is None
    lines = [r.getMessage() for r in caplog.records if r.name == "fedmrn_pl.progress"]
    assert [line.split("  uplink")[0] for line in lines] == [f"round {r}/3  test_mse {v:.4f}" for r, v in enumerate(mse, 1)]
    assert all((run_dir / name).stat().st_size > 0 for name in ("accuracy_vs_round.png", "accuracy_vs_uplink.png"))


def test_a_monitor_without_a_direction_is_refused_at_construction():
    with pytest.raises(ValueError, match=r"^monitor='test_mae' needs monitor_mode='max' \(higher is better\) or 'min'"):
        FederatedTrainer(Regressor(), regression_data(), FedAvg(), clients_per_round=2, monitor="test_mae")
