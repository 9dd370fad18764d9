"""Ctrl-C: the first press stops a run after its round, the second at once; one line says what was kept."""

import json
import os
import signal
import subprocess
import sys

import pytest

from fedmrn_pl.cli import main

pytestmark = pytest.mark.slow

RUN = ["data.name=digits", "data.num_clients=6", "train.clients_per_round=3", "train.rounds=4",
       "train.local_epochs=3", "train.batch_size=8"]  # fmt: skip  (a few seconds per round)


def _start(out, *overrides):
    command = [sys.executable, "-m", "fedmrn_pl", "fit", *RUN, f"output_dir={out}", *overrides]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _interrupt_after(process, marker, presses=1):
    """Press Ctrl-C once ``marker`` shows on stdout (a second time once the run acknowledged the first)."""
    seen, told = [], []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            process.send_signal(signal.SIGINT)
            break
    if presses == 2:
        for line in process.stderr:
            told.append(line)
            if "Ctrl-C again" in line:
                process.send_signal(signal.SIGINT)
                break
    out, err = process.communicate(timeout=300)
    return process.returncode, "".join(seen) + out, "".join(told) + err


def test_ctrl_c_stops_after_the_round_saves_it_and_resume_ends_where_an_uninterrupted_run_does(tmp_path, capsys):
    out = tmp_path / "run"
    rc, stdout, stderr = _interrupt_after(_start(out), "round 1/4")
    assert rc == 130, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr and "Ctrl-C again" in stderr
    assert "after round" in lines[-1] and f"fedmrn-pl fit --resume {out}" in lines[-1]
    stopped = json.loads((out / "metrics.json").read_text())
    assert stopped["stopped_by"].startswith("RunInterrupted") and 1 <= stopped["rounds"] < 4

    assert main(["fit", "--resume", str(out)]) == 0
    resumed = json.loads((out / "metrics.json").read_text())
    assert main(["fit", *RUN, "progress=false", f"output_dir={tmp_path / 'whole'}"]) == 0
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert resumed["rounds"] == 4 and resumed["global_model_sha256"] == whole["global_model_sha256"]


def test_a_second_ctrl_c_stops_at_once_and_a_run_without_a_checkpoint_leaves_no_half_made_folder(tmp_path):
    out = tmp_path / "run"
    rc, _, stderr = _interrupt_after(_start(out), "client   size", presses=2)  # the partition table: round 1 is next
    assert rc == 130
    assert "Traceback" not in stderr and "nothing to resume" in stderr.splitlines()[-1]
    assert not (out / "config.yaml").exists() and not (out / "checkpoint.pt").exists()
