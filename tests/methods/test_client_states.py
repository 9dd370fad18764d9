"""Error-feedback residuals on the server: files named by digest beside the checkpoint, never rewritten unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fedmrn_pl.callbacks.checkpoint import CheckpointError, load_checkpoint
from fedmrn_pl.experiment import run_experiment
from fedmrn_pl.client_states import ClientStateError, ClientStateStore
from fedmrn_pl.run_directory import STATES_DIRNAME

MANY = ["method.name=ef_signsgd", "data.num_clients=12", "train.clients_per_round=3"]


def test_the_store_moves_states_to_files_writes_each_once_and_prunes_what_no_state_names(tmp_path):
    store = ClientStateStore()
    store.put(3, b"three")
    assert store.get(3) == b"three" and store.get(4) is None and list(store) == [3]
    store.attach(tmp_path / "states")
    assert store.get(3) == b"three" and len(list((tmp_path / "states").iterdir())) == 1
    first = next((tmp_path / "states").iterdir())
    before = first.stat().st_mtime_ns
    store.put(3, b"three")  # unchanged: the same file, not rewritten
    assert first.stat().st_mtime_ns == before
    store.put(3, b"new three")
    store.put(5, b"five")
    assert store.of_clients([3, 4, 5]) == {3: b"new three", 5: b"five"}
    assert store.prune() == [first]
    assert sorted(store.state_dict()) == ["3", "5"] and all(len(d) == 64 for d in store.state_dict().values())


def test_a_changed_state_file_is_refused_naming_it(tmp_path):
    store = ClientStateStore()
    store.attach(tmp_path)
    store.put(1, b"residual")
    path = next(tmp_path.iterdir())
    path.write_bytes(b"residuaL")
    with pytest.raises(ClientStateError, match=f"client 1's state file {path} was changed"):
        store.get(1)


def _sampled(metrics: dict, server_round: int) -> set[int]:
    return set(metrics["per_round"][server_round - 1]["clients"])


def test_checkpoints_name_residual_files_and_a_resume_rewrites_only_the_sampled_clients(tiny_config, tmp_path):
    full = run_experiment(tiny_config(*MANY, out="full"))
    first_config = tiny_config(*MANY, "train.rounds=2", out="part")
    run_experiment(first_config)
    folder = Path(first_config.output_dir) / STATES_DIRNAME
    raw = torch.load(Path(first_config.output_dir) / "checkpoint.pt", weights_only=True)["client_states"]
    assert raw and all(isinstance(digest, str) for digest in raw.values())  # digests, not the residuals
    assert {path.name for path in folder.iterdir()} == {f"{c}-{d}.bin" for c, d in raw.items()}
    seen = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    resumed = run_experiment(tiny_config(*MANY, f"resume={first_config.output_dir}", out="part"))
    assert resumed["global_model_sha256"] == full["global_model_sha256"]
    metrics = json.loads((Path(first_config.output_dir) / "metrics.json").read_text())
    round_three = _sampled(metrics, 3)
    for path in folder.iterdir():
        client_id = int(path.name.partition("-")[0])
        if client_id not in round_three:  # kept as it was: same file, not written again
            assert seen[path.name] == path.stat().st_mtime_ns
    assert {int(p.name.partition("-")[0]) for p in folder.iterdir()} == _sampled(metrics, 1) | _sampled(metrics, 2) | round_three
    named = torch.load(Path(first_config.output_dir) / "checkpoint.pt", weights_only=True)["client_states"]
    assert {path.name for path in folder.iterdir()} == {f"{c}-{d}.bin" for c, d in named.items()}  # the rest pruned


@pytest.mark.parametrize("damage", ["remove", "change"])
def test_a_checkpoint_whose_state_file_is_missing_or_changed_is_refused(tiny_config, damage):
    config = tiny_config(*MANY, "train.rounds=1")
    run_experiment(config)
    path = next((Path(config.output_dir) / STATES_DIRNAME).iterdir())
    if damage == "remove":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:-1] + b"\0")
    words = "cannot be read" if damage == "remove" else "was changed"
    with pytest.raises(CheckpointError, match=f"'client_states'.*{words}"):
        load_checkpoint(config.output_dir)
