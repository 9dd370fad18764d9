"""One run per directory: no second writer, no earlier run replaced without being asked."""

import json
import os
import subprocess
import sys

import pytest

from fedmrn_pl import FederatedDataModule, FederatedTrainer, FedMRN, MaskingConfig
from fedmrn_pl.cli import main
from fedmrn_pl.run_directory import RunDirectory, RunDirectoryError, run_files
from fedmrn_pl.task import ClassificationTask
from fedmrn_pl.models import MLP

SMALL = ["data.name=digits", "data.num_clients=6", "train.clients_per_round=2", "train.rounds=1", "progress=false"]


def _fit(out, *overrides):
    return main(["fit", *SMALL, f"output_dir={out}", *overrides])


def test_a_second_fit_into_a_finished_run_is_refused_in_one_line_and_changes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert _fit(out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    assert _fit(out, "seed=1") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds a run" in err
    assert f"--resume {out}" in err and "overwrite=true" in err and "output_dir=" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_overwrite_replaces_the_run_and_resume_continues_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert _fit(out, "save_payloads=true") == 0
    (out / "notes.txt").write_text("mine")
    first = json.loads((out / "metrics.json").read_text())
    assert _fit(out, "seed=1", "overwrite=true") == 0
    second = json.loads((out / "metrics.json").read_text())
    assert second["config"]["seed"] == 1 and second["global_model_sha256"] != first["global_model_sha256"]
    assert not (out / "payloads").exists()  # the replaced run's payloads are gone, not mixed with these
    assert (out / "notes.txt").read_text() == "mine"  # files the run did not write are left alone
    assert main(["fit", "--resume", str(out), "train.rounds=2"]) == 0
    assert json.loads((out / "metrics.json").read_text())["rounds"] == 2


def test_a_directory_with_only_a_config_from_a_run_stopped_early_can_be_reused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("seed: 0\n")
    assert run_files(out) == []
    assert _fit(out) == 0


def test_a_run_directory_in_use_refuses_a_second_writer_from_the_cli_and_the_api(tmp_path, capsys):
    out = tmp_path / "run"
    owner = RunDirectory(out)
    owner.claim(resuming=False)
    try:
        assert _fit(out) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "in use by another run" in err
        assert run_files(out) == [] and not (out / "config.yaml").exists()
        data = FederatedDataModule("digits", num_clients=4, seed=0)
        trainer = FederatedTrainer(
            ClassificationTask(MLP(64, 10, hidden=(16,)), 10), data, FedMRN(), MaskingConfig(),
            rounds=1, clients_per_round=2, output_dir=out,
        )  # fmt: skip
        with pytest.raises(RunDirectoryError, match="in use by another run"):
            trainer.fit()
        assert run_files(out) == []
    finally:
        owner.release()


def test_the_python_api_refuses_to_replace_a_run_unless_told(tmp_path):
    def run(**kwargs):
        data = FederatedDataModule("digits", num_clients=4, seed=0)
        module = ClassificationTask(MLP(64, 10, hidden=(16,)), 10)
        return FederatedTrainer(module, data, FedMRN(), MaskingConfig(), rounds=1, clients_per_round=2, **kwargs)

    out = tmp_path / "run"
    run(output_dir=out).fit()
    written = (out / "metrics.json").read_bytes()
    with pytest.raises(RunDirectoryError, match="already holds a run"):
        run(output_dir=out, run_seed=1).fit()
    assert (out / "metrics.json").read_bytes() == written


def test_a_killed_run_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "run"
    code = (
        "import os, signal; from fedmrn_pl.run_directory import RunDirectory; "
        f"RunDirectory({str(out)!r}).claim(resuming=False); os.kill(os.getpid(), signal.SIGKILL)"
    )
    process = subprocess.run([sys.executable, "-c", code], env={**os.environ}, timeout=120)
    assert process.returncode == -9
    directory = RunDirectory(out)
    directory.claim(resuming=False)  # the OS dropped the dead process's lock
    directory.release()


def test_temp_files_a_killed_run_left_beside_its_metrics_and_payloads_are_removed(tmp_path):
    from fedmrn_pl.run_directory import remove_stale_temp_files

    (tmp_path / "payloads").mkdir()
    dead = [tmp_path / ".metrics.json.4999999.tmp", tmp_path / "payloads" / ".round_0001_client_0003.fmrn.4999999.tmp"]
    kept = [tmp_path / f".metrics.json.{os.getpid()}.tmp", tmp_path / ".notes.4999999.tmp"]
    for path in (*dead, *kept):
        path.write_bytes(b"half")
    assert remove_stale_temp_files(tmp_path) == dead
    assert all(path.exists() for path in kept) and not any(path.exists() for path in dead)
