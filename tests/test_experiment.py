"""run_experiment refuses bad output dirs and resumes before writing anything, and writes no secrets."""

import pytest

from fedmrn_pl.callbacks import load_checkpoint, save_checkpoint
from fedmrn_pl.callbacks.checkpoint import CheckpointError
from fedmrn_pl.config import ConfigError, load_config
from fedmrn_pl.experiment import run_experiment

SMALL = [
    "data.name=digits",
    "data.num_clients=4",
    "train.clients_per_round=2",
    "train.rounds=1",
    "train.local_epochs=1",
    "model.name=mlp",
    "progress=false",
]


def _files(root):
    """Every file under ``root`` with its bytes: a byte-for-byte picture of a run directory."""
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def _resume(out, *overrides):
    return load_config(out / "config.yaml", [*overrides, f"resume={out}", f"output_dir={out}"])


@pytest.fixture
def finished_run(tmp_path):
    out = tmp_path / "run"
    run_experiment(load_config(None, [*SMALL, f"output_dir={out}"]))
    return out


@pytest.mark.parametrize("below", ["", "sub/run"])
def test_an_output_dir_that_is_or_lies_under_a_file_is_refused_before_writing(tmp_path, below):
    blocker = tmp_path / "taken"
    blocker.write_text("mine")
    output_dir = blocker / below if below else blocker
    with pytest.raises(ConfigError, match=f"output_dir='{output_dir}' is not valid: {blocker} is a file"):
        run_experiment(load_config(None, [*SMALL, f"output_dir={output_dir}"]))
    assert _files(tmp_path) == {"taken": b"mine"}


def test_a_refused_resume_leaves_the_run_directory_byte_for_byte_and_resumable(finished_run):
    before = _files(finished_run)
    with pytest.raises(ConfigError, match="config differs from the checkpoint"):
        run_experiment(_resume(finished_run, "train.lr=0.5", "train.rounds=2"))
    assert _files(finished_run) == before
    assert run_experiment(_resume(finished_run, "train.rounds=2"))["rounds"] == 2


@pytest.mark.parametrize(
    "completed, words",
    [(-5, "'completed_rounds'=-5 must be an int >= 0"), (1000, "holds 1000 completed rounds but train.rounds=4")],
)
def test_a_checkpoint_with_impossible_rounds_refuses_resume_and_changes_nothing(finished_run, completed, words):
    state = load_checkpoint(finished_run)
    state["completed_rounds"] = completed
    state["history"] = state["history"] * max(completed, 0)
    save_checkpoint(state, finished_run / "checkpoint.pt")  # a valid digest: only the meaning is wrong
    before = _files(finished_run)
    with pytest.raises(CheckpointError, match=words):
        run_experiment(_resume(finished_run, "train.rounds=4"))
    assert _files(finished_run) == before


def test_a_resume_removes_temp_files_of_killed_saves(finished_run):
    stale = finished_run / ".checkpoint.pt.4999999.tmp"
    stale.write_bytes(b"PK half a zip")
    run_experiment(_resume(finished_run, "train.rounds=2"))
    assert not stale.exists()


def test_an_environment_value_is_used_but_never_written_into_the_run(tmp_path, monkeypatch):
    secret = "s3cret-token-0451"
    monkeypatch.setenv("FEDMRN_TEST_SECRET", secret)
    out = tmp_path / "run"
    run_experiment(load_config(None, [*SMALL, f"output_dir={out}", "data.root=/data/${oc.env:FEDMRN_TEST_SECRET}"]))
    written = _files(out)
    assert {"config.yaml", "metrics.json", "checkpoint.pt"} <= set(written)
    assert not [name for name, data in written.items() if secret.encode() in data]
    assert b"${oc.env:FEDMRN_TEST_SECRET}" in written["metrics.json"]
    run_experiment(_resume(out, "train.rounds=2"))  # the fingerprint resolves the same value again


def test_the_digits_mlp_preset_learns_with_its_default_init(tmp_path):
    """With the paper's N(0, 0.01) the bias-free MLP stays near chance (0.21 after 10 rounds)."""
    config = load_config(
        None,
        [
            "data.name=digits", "model.name=mlp", "train.rounds=3", "progress=false", "checkpoint_every=0",
            f"output_dir={tmp_path}",
        ],
    )
    assert config.model.init is None
    assert run_experiment(config)["final_test_accuracy"] > 0.3


def test_a_resumed_run_may_be_judged_by_another_metric():
    from fedmrn_pl.experiment import run_fingerprint

    judged = load_config(None, [*SMALL, "train.monitor=test/loss", "train.monitor_mode=min"])
    assert run_fingerprint(judged) == run_fingerprint(load_config(None, SMALL))
