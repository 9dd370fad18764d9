"""Ctrl-C: the first press stops a run after its round, the second at once; one line says what was kept."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fedmrn_pl.callbacks.checkpoint import load_checkpoint
from fedmrn_pl.cli import main
from fedmrn_pl.client import FederatedClient
from fedmrn_pl.task import ClassificationTask

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


STUCK_CLIENTS = '''
import sys, time
from torch.utils.data import DataLoader, Dataset
from fedmrn_pl.cli import main
from fedmrn_pl.data.datamodule import FederatedDataModule

loader = FederatedDataModule.client_dataloader

class Stuck(Dataset):  # from round 2 on, a client's data never comes
    def __len__(self):
        return 64
    def __getitem__(self, index):
        print("stuck in the data loader", flush=True)
        time.sleep(600)

def client_dataloader(self, client_id, server_round, batch_size=None):
    if server_round >= 2:
        return DataLoader(Stuck(), batch_size=batch_size)
    return loader(self, client_id, server_round, batch_size)

FederatedDataModule.client_dataloader = client_dataloader
sys.exit(main(sys.argv[1:]))
'''


def test_sigterm_stops_a_client_stuck_in_its_data_loader_within_seconds_keeping_the_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    script = tmp_path / "stuck.py"
    script.write_text(STUCK_CLIENTS)
    command = [sys.executable, str(script), "fit", *RUN, "train.client_timeout=5", f"output_dir={out}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    for line in process.stdout:
        if "stuck in the data loader" in line:
            break
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()  # a run that ignored SIGTERM must not outlive the test
    assert time.monotonic() - started < 15 and process.returncode == 143, stderr
    assert stderr == (
        f"interrupted by SIGTERM during round 2 of 4; {out} keeps its checkpoint of round 1; "
        f"continue with: fedmrn-pl fit --resume {out}\n"
    )  # one line: no "Received SIGTERM", no traceback
    assert load_checkpoint(out)["completed_rounds"] == 1
    assert json.loads((out / "metrics.json").read_text())["stopped_by"].startswith("RunInterrupted")


@pytest.mark.parametrize(
    "raised, code, by",
    [(SystemExit(5), 5, "SystemExit(5)"), (KeyboardInterrupt(), 130, "KeyboardInterrupt")],
    ids=["SystemExit", "KeyboardInterrupt"],
)
def test_a_training_step_raising_an_interrupt_ends_the_run_as_the_users_interrupt_in_one_line(
    tmp_path, monkeypatch, capsys, raised, code, by
):
    out = tmp_path / "run"
    server_round = {}
    fit, training_step = FederatedClient.fit, ClassificationTask.training_step

    def client_fit(self, global_state, request):
        server_round["now"] = request.server_round
        return fit(self, global_state, request)

    def failing_step(self, *args, **kwargs):
        if server_round["now"] == 2:
            raise raised
        return training_step(self, *args, **kwargs)

    monkeypatch.setattr(FederatedClient, "fit", client_fit)
    monkeypatch.setattr(ClassificationTask, "training_step", failing_step)
    assert main(["fit", *RUN, "train.local_epochs=1", f"output_dir={out}"]) == code
    assert capsys.readouterr().err == (
        f"interrupted by {by} during round 2 of 4; {out} keeps its checkpoint of round 1; "
        f"continue with: fedmrn-pl fit --resume {out}\n"
    )
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Lightning's SIG_IGN undone
