"""The keyed digest: with FEDMRN_PL_CHECKPOINT_KEY set, saves are tagged and loads verify the tag."""

from __future__ import annotations

import logging

import pytest
import torch

import fedmrn_pl.callbacks.checkpoint as checkpoint
from fedmrn_pl.callbacks import load_checkpoint, save_checkpoint
from fedmrn_pl.callbacks.checkpoint import DIGEST_KEY, KEY_ENV, TAG_KEY, CheckpointError, state_digest
from fedmrn_pl.cli import main
from tests.test_experiment import SMALL


def _state():
    history = [{"round": 1, "dropped_clients": [], "uplink/bytes": 10, "uplink/cumulative_bytes": 10,
                "uplink/dense_bytes": 80, "downlink/bytes": 80}]  # fmt: skip
    return {"global_state": {"w": torch.arange(6.0)}, "completed_rounds": 1, "history": history}


def _raw(path):
    return torch.load(path, weights_only=True)


@pytest.fixture
def keyed(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "correct horse battery staple")
    monkeypatch.setattr(checkpoint, "_unverified_noticed", False)
    return monkeypatch


def test_without_a_key_a_checkpoint_has_no_tag_and_loads_as_before(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    path = save_checkpoint(_state(), tmp_path / "checkpoint.pt")
    assert TAG_KEY not in _raw(path)
    assert load_checkpoint(path)["completed_rounds"] == 1


def test_with_a_key_the_tag_is_written_and_verified(tmp_path, keyed):
    path = save_checkpoint(_state(), tmp_path / "checkpoint.pt")
    assert len(_raw(path)[TAG_KEY]) == 64
    loaded = load_checkpoint(path)
    assert TAG_KEY not in loaded and DIGEST_KEY not in loaded and torch.equal(loaded["global_state"]["w"], torch.arange(6.0))


def test_another_key_is_refused_in_one_line(tmp_path, keyed):
    path = save_checkpoint(_state(), tmp_path / "checkpoint.pt")
    keyed.setenv(KEY_ENV, "another key")
    with pytest.raises(CheckpointError, match=f"keyed digest '{TAG_KEY}' does not verify with {KEY_ENV}") as error:
        load_checkpoint(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_a_forger_without_the_key_who_recomputes_the_digest_is_refused(tmp_path, keyed):
    path = save_checkpoint(_state(), tmp_path / "checkpoint.pt")
    raw = _raw(path)
    raw["global_state"]["w"][0] = 100.0
    content = {k: v for k, v in raw.items() if k not in (DIGEST_KEY, TAG_KEY)}
    raw[DIGEST_KEY] = state_digest(content)  # the plain digest verifies again
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="does not verify"):
        load_checkpoint(path)
    del raw[TAG_KEY]  # and without the tag it is refused too
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match=f"no keyed digest '{TAG_KEY}' but {KEY_ENV} is set"):
        load_checkpoint(path)


def test_a_checkpoint_saved_without_the_key_is_refused_when_one_is_set(tmp_path, keyed):
    keyed.delenv(KEY_ENV)
    path = save_checkpoint(_state(), tmp_path / "checkpoint.pt")
    keyed.setenv(KEY_ENV, "correct horse battery staple")
    with pytest.raises(CheckpointError, match="it was saved without the key"):
        load_checkpoint(path)


@pytest.mark.parametrize("tag", [12, "é" * 64, "0" * 64])
def test_a_malformed_or_wrong_tag_is_refused(tmp_path, keyed, tag):
    path = save_checkpoint(_state(), tmp_path / "checkpoint.pt")
    raw = _raw(path)
    raw[TAG_KEY] = tag
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="does not verify"):
        load_checkpoint(path)


def test_a_tagged_checkpoint_loads_without_the_key_with_a_notice_given_once(tmp_path, keyed, caplog):
    first = save_checkpoint(_state(), tmp_path / "a" / "checkpoint.pt")
    second = save_checkpoint(_state(), tmp_path / "b" / "checkpoint.pt")
    keyed.delenv(KEY_ENV)
    with caplog.at_level(logging.WARNING, logger="fedmrn_pl"):
        assert load_checkpoint(first)["completed_rounds"] == 1
        assert load_checkpoint(second)["completed_rounds"] == 1
    notices = [r.getMessage() for r in caplog.records if "not verified" in r.getMessage()]
    assert notices == [f"checkpoint {first} carries a keyed digest that was not verified: {KEY_ENV} is not set"]


def test_a_keyed_run_resumes_with_its_key_and_is_refused_with_another(tmp_path, keyed, capsys):
    out = tmp_path / "run"
    assert main(["fit", *SMALL, f"output_dir={out}"]) == 0
    assert TAG_KEY in _raw(out / "checkpoint.pt")
    config = (out / "config.yaml").read_bytes()
    keyed.setenv(KEY_ENV, "a guess")
    assert main(["fit", "--resume", str(out), "train.rounds=2"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: checkpoint {out / 'checkpoint.pt'}: its keyed digest")
    assert (out / "config.yaml").read_bytes() == config
    keyed.setenv(KEY_ENV, "correct horse battery staple")
    assert main(["fit", "--resume", str(out), "train.rounds=2"]) == 0
