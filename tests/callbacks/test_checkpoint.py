"""Checkpoint and resume: a resumed run equals the uninterrupted one."""

import json
import math

import pytest
import torch

from fedmrn_pl.callbacks import FederatedCallback, load_checkpoint, save_checkpoint
from fedmrn_pl.experiment import run_experiment

TIMINGS = ("round/seconds",)


class StopAfter(FederatedCallback):
    """Interrupts the run as the round after ``server_round`` starts (like a kill)."""

    def __init__(self, server_round):
        self.server_round = server_round

    def on_round_start(self, trainer, server_round, client_ids):
        if server_round == self.server_round + 1:
            raise KeyboardInterrupt


def _comparable(per_round):
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in per_round]


@pytest.mark.parametrize("method", ["fedmrn", "fedavg"])
def test_stopped_and_resumed_run_equals_the_uninterrupted_run(small_config, tmp_path, method):
    overrides = ("train.rounds=3", f"method.name={method}", "train.lr=0.05")
    full = run_experiment(small_config(*overrides, f"output_dir={tmp_path / 'full'}"))

    interrupted = small_config(*overrides, f"output_dir={tmp_path / 'split'}")
    with pytest.raises(KeyboardInterrupt):
        run_experiment(interrupted, callbacks=[StopAfter(2)])
    assert load_checkpoint(tmp_path / "split")["completed_rounds"] == 2

    resumed = run_experiment(
        small_config(*overrides, f"output_dir={tmp_path / 'split'}", f"resume={tmp_path / 'split'}")
    )
    assert resumed["global_model_sha256"] == full["global_model_sha256"]
    assert _comparable(resumed["per_round"]) == _comparable(full["per_round"])
    written = json.loads((tmp_path / "split" / "metrics.json").read_text())
    assert written["rounds"] == 3


def test_checkpoint_loads_with_weights_only_and_holds_the_federated_state(small_config, tmp_path):
    run_experiment(small_config("train.rounds=2", "checkpoint_every=1"))
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["completed_rounds"] == 2
    assert len(state["history"]) == 2
    assert all(isinstance(t, torch.Tensor) for t in state["global_state"].values())
    assert "SeedSync" in state["callbacks"] and "MaskPacking" in state["callbacks"]
    assert math.isfinite(state["elapsed_seconds"])


def test_a_save_killed_midway_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"global_state": {"w": torch.ones(3)}, "completed_rounds": 1}, path)

    def dying_save(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"global_state": {"w": torch.zeros(3)}, "completed_rounds": 2}, path)
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["completed_rounds"] == 1 and torch.equal(state["global_state"]["w"], torch.ones(3))
    assert list(tmp_path.iterdir()) == [path]


def test_damaged_or_missing_checkpoints_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path)
