"""The Python API gives a run's outputs as the CLI does: progress on a terminal, metrics.json and plots."""

import json

import pytest
import torch

from fedmrn_pl import FederatedTrainer, FedMRN, MaskingConfig
from fedmrn_pl.callbacks import ProgressDisplay
from tests.federated.test_one_mask_per_step import TiedLM, TokenClients


def _trainer(**kwargs):
    torch.manual_seed(0)
    return FederatedTrainer(
        TiedLM(), TokenClients(), FedMRN(), MaskingConfig(), rounds=2, clients_per_round=2, batch_size=32, **kwargs
    )


@pytest.mark.parametrize("terminal", [True, False])
def test_progress_is_on_by_default_in_a_terminal_only(terminal, monkeypatch):
    monkeypatch.setattr("fedmrn_pl.callbacks.progress.is_interactive", lambda: terminal)
    displays = [c for c in _trainer().callbacks if isinstance(c, ProgressDisplay)]
    assert len(displays) == 1 and displays[0].bars is terminal and displays[0].enabled is terminal


def test_a_given_progress_display_is_the_only_one():
    mine = ProgressDisplay(interactive=False)
    assert [c for c in _trainer(callbacks=[mine]).callbacks if isinstance(c, ProgressDisplay)] == [mine]


def test_output_dir_gets_metrics_json_and_plots(tmp_path, capsys):
    trainer = _trainer(output_dir=tmp_path / "run", callbacks=[ProgressDisplay(interactive=False)])
    history = trainer.fit()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["method"] == "fedmrn-signed" and metrics["rounds"] == 2
    assert metrics["final_test_accuracy"] == pytest.approx(history[-1]["test/acc"])
    assert metrics["uplink_compression"] > 1 and len(metrics["per_round"]) == 2
    assert (tmp_path / "run" / "accuracy_vs_round.png").stat().st_size > 0
    assert (tmp_path / "run" / "accuracy_vs_uplink.png").stat().st_size > 0
    assert capsys.readouterr().out.count("round ") == 2  # one progress line per round off a terminal
