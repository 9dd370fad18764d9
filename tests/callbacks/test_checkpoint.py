"""Checkpoint and resume: a resumed run equals the uninterrupted one."""

import json
import math
import os

import pytest
import torch

from fedmrn_pl.callbacks import FederatedCallback, load_checkpoint, save_checkpoint
from fedmrn_pl.callbacks.checkpoint import CheckpointError, remove_stale_temp_files
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
    save_checkpoint({"global_state": {"w": torch.ones(3)}, "completed_rounds": 1, "history": _history(1)}, path)

    def dying_save(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"global_state": {"w": torch.zeros(3)}, "completed_rounds": 2, "history": _history(2)}, path)
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["completed_rounds"] == 1 and torch.equal(state["global_state"]["w"], torch.ones(3))
    assert list(tmp_path.iterdir()) == [path]


def test_damaged_or_missing_checkpoints_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read") as error:
        load_checkpoint(tmp_path)
    assert isinstance(error.value, ValueError) and "\n" not in str(error.value)


def _history(rounds, **changes):
    """``rounds`` well-formed round records (100 uplink bytes each), with ``changes`` in the last one."""
    records = [
        {"round": r, "dropped_clients": [], "uplink/bytes": 100, "uplink/cumulative_bytes": 100 * r,
         "uplink/dense_bytes": 800, "downlink/bytes": 800, "test/acc": 0.5}
        for r in range(1, rounds + 1)
    ]  # fmt: skip
    if changes:
        records[-1].update(changes)
    return records


def _state(**changes):
    """A small well-formed checkpoint state, with ``changes`` applied."""
    state = {
        "global_state": {"fc.weight": torch.arange(12.0).reshape(3, 4), "bn.num_batches_tracked": torch.tensor(7)},
        "completed_rounds": 2,
        "elapsed_seconds": 1.5,
        "history": _history(2),
        "strategy": {},
        "callbacks": {},
        "run_fingerprint": "ab" * 32,
    }
    state.update(changes)
    return state


def test_a_flipped_byte_inside_tensor_data_is_refused_by_the_digest(tmp_path):
    path = save_checkpoint(_state(), tmp_path / "checkpoint.pt")
    data = bytearray(path.read_bytes())
    offset = bytes(data).index(torch.tensor(5.0).numpy().tobytes())  # fc.weight[1, 1] as stored
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="digest mismatch"):
        load_checkpoint(path)


def test_a_pickled_object_is_refused_in_one_line_without_advice_to_disable_weights_only(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"global_state": {}, "payload": StopAfter(1)}, path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert "StopAfter" in message and str(path) in message
    assert "\n" not in message and "weights_only" not in message and "\x1b" not in message


def test_a_checkpoint_without_digest_is_refused(tmp_path):
    torch.save(_state(), tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="no 'state_sha256' digest"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"completed_rounds": -5}, "'completed_rounds'=-5 must be an int >= 0"),
        ({"completed_rounds": True}, "'completed_rounds'=True must be an int"),
        ({"completed_rounds": 2.0}, "'completed_rounds'=2.0 must be an int"),
        ({"history": {"test/acc": 0.5}}, "'history' must be a list, got dict"),
        ({"history": [1, 2]}, "'history'[0] must be a dict, got int"),
        ({"history": _history(1)}, "'history' has 1 rounds but 'completed_rounds' is 2"),
        ({"history": [{}, {}]}, "'history'[0] lacks 'round'"),
        ({"history": _history(2, round=7)}, "'history'[1]['round']=7 must be 2 (rounds in order)"),
        ({"history": _history(2, **{"uplink/bytes": "abc"})}, "'history'[1]['uplink/bytes']='abc' must be an int >= 0"),
        ({"history": _history(2, **{"uplink/cumulative_bytes": 5})}, "['uplink/cumulative_bytes']=5 must be 200, the sum"),
        ({"history": _history(2, **{"test/acc": torch.ones(2)})}, "'history'[1]['test/acc']=tensor([1., 1.]) must be a number"),
        ({"history": _history(2, mine={"a": torch.ones(1)})}, "'history'[1]['mine']['a'] must be plain data"),
        ({"history": _history(2, next_noise_scales={"w": -1.0})}, "['next_noise_scales']['w']=-1.0 must be a finite number in"),
        ({"global_state": {}}, "'global_state' must be a non-empty dict"),
        ({"global_state": {"w": [1.0]}}, "'global_state'['w'] must be a tensor, got list"),
        ({"global_state": {3: torch.ones(1)}}, "'global_state' key=3 must be a str"),
        ({"global_state": {"w": torch.tensor([1.0, float("nan")])}}, "'global_state'['w'] holds non-finite values"),
        ({"global_state": {"w": torch.tensor([float("inf")])}}, "'global_state'['w'] holds non-finite values"),
        ({"elapsed_seconds": float("nan")}, "'elapsed_seconds'=nan must be a finite number"),
        ({"elapsed_seconds": True}, "'elapsed_seconds'=True must be a finite number"),
        ({"callbacks": [1]}, "'callbacks' must be a dict, got list"),
        ({"callbacks": {"SeedSync": "abc"}}, "'callbacks'['SeedSync'] must be a dict, got str"),
        ({"strategy": "abc"}, "'strategy' must be a dict, got str"),
        ({"client_states": "abc"}, "'client_states' must be a dict, got str"),
        ({"client_states": {"x": torch.zeros(3, dtype=torch.uint8)}}, "'client_states' key='x' must be a client id"),
        ({"client_states": {"01": torch.zeros(3, dtype=torch.uint8)}}, "'client_states' key='01' must be a client id"),
        ({"client_states": {"1": torch.zeros(3)}}, "'client_states'['1'] must be a 1-d torch.uint8 tensor, got torch.float32"),
        ({"downlink": "abc"}, "'downlink' must be a dict, got str"),
        ({"downlink": {"synced": {"a": "b"}}}, "'downlink'['synced'] key='a' must be an int >= 0"),
        ({"downlink": {"messages": {1: [1, 2]}}}, "'downlink'['messages'][1] must be a 1-d torch.uint8 tensor, got list"),
        ({"downlink": {"other": {}}}, "'downlink' has an unexpected key 'other'"),
        ({"run_fingerprint": "abc"}, "'run_fingerprint'='abc' must be a hex SHA-256"),
        ({"run_config": "abc"}, "'run_config' must be a dict, got str"),
    ],
)
def test_a_checkpoint_with_a_bad_field_is_refused_naming_the_field(tmp_path, changes, words):
    save_checkpoint(_state(**changes), tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(tmp_path)
    assert words in str(error.value) and str(tmp_path) in str(error.value)


@pytest.mark.parametrize(
    "model_state, rounds, words",
    [
        ({"fc.weight": torch.zeros(3, 4)}, 4, "unexpected ['bn.num_batches_tracked']"),
        ({"fc.weight": torch.zeros(4, 3), "bn.num_batches_tracked": torch.tensor(0)}, 4, "(3, 4), the model has"),
        ({"fc.weight": torch.zeros(3, 4).half(), "bn.num_batches_tracked": torch.tensor(0)}, 4, "torch.float16"),
        ({"fc.weight": torch.zeros(3, 4), "bn.num_batches_tracked": torch.tensor(0)}, 1, "train.rounds >= 2"),
    ],
)
def test_a_checkpoint_that_does_not_fit_the_model_or_rounds_is_refused(tmp_path, model_state, rounds, words):
    save_checkpoint(_state(), tmp_path / "checkpoint.pt")
    assert load_checkpoint(tmp_path, model_state=_state()["global_state"], rounds=2)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(tmp_path, model_state=model_state, rounds=rounds)
    assert words in str(error.value)


def test_temp_files_of_killed_saves_are_removed_and_live_ones_kept(tmp_path):
    dead = tmp_path / ".checkpoint.pt.4999999.tmp"  # above Linux's largest pid_max: no such process
    live = tmp_path / f".checkpoint.pt.{os.getpid()}.tmp"
    other = tmp_path / ".notes.4999999.tmp"
    for path in (dead, live, other):
        path.write_bytes(b"half")
    assert remove_stale_temp_files(tmp_path) == [dead]
    assert sorted(tmp_path.iterdir()) == sorted([live, other])
