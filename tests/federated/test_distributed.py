"""Clients over torch.distributed ranks, launched by torchrun as users launch them.

Each test starts real processes: ``python -m torch.distributed.run --standalone
--nproc_per_node 2`` (gloo on 127.0.0.1, a free port per launch) against the same
job in one process. Equal thread counts (1) on both sides, so CPU sums match.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedmrn_pl.federated.sampling import sample_clients

ROOT = Path(__file__).resolve().parents[2]
JOB = str(Path(__file__).with_name("rank_job.py"))
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]

pytestmark = pytest.mark.slow


def _run(command: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    env.pop("PYTEST_XDIST_WORKER", None)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def _job(out: Path, *options: str, ranks: int) -> dict:
    completed = _run([*(TORCHRUN if ranks == 2 else [sys.executable]), JOB, str(out), *options])
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> dict:
    """The reference: the default job (3 rounds, 3 of 6 clients) in one process."""
    return _job(tmp_path_factory.mktemp("one"), ranks=1)


def test_the_readme_torchrun_command_gives_the_single_process_run(tmp_path):
    overrides = [
        "data.name=digits",
        "data.num_clients=10",
        "train.clients_per_round=3",
        "train.rounds=3",
        "train.local_epochs=1",
        "progress=false",
    ]
    distributed = _run([*TORCHRUN, "-m", "fedmrn_pl", "fit", *overrides, f"output_dir={tmp_path / 'ranks'}"])
    assert distributed.returncode == 0, distributed.stderr[-3000:]
    assert distributed.stdout.count("final test accuracy") == 1  # rank 0 alone prints
    single = _run([sys.executable, "-m", "fedmrn_pl", "fit", *overrides, f"output_dir={tmp_path / 'one'}"])
    assert single.returncode == 0, single.stderr[-3000:]
    ranks = json.loads((tmp_path / "ranks" / "metrics.json").read_text())
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert ranks["world_size"] == 2 and one["world_size"] == 1
    assert ranks["global_model_sha256"] == one["global_model_sha256"]
    strip = lambda rounds: [{k: v for k, v in r.items() if k != "round/seconds"} for r in rounds]  # noqa: E731
    assert strip(ranks["per_round"]) == strip(one["per_round"])


def test_two_ranks_train_the_same_run_as_one_process(tmp_path, one_process):
    ranks = _job(tmp_path, ranks=2)
    assert ranks["world_size"] == 2
    assert ranks["sha"] == one_process["sha"] and ranks["history"] == one_process["history"]


def test_a_rank_without_a_client_in_the_round_still_takes_part(tmp_path):
    ranks = _job(tmp_path / "ranks", "--clients-per-round", "1", "--rounds", "2", ranks=2)
    one = _job(tmp_path / "one", "--clients-per-round", "1", "--rounds", "2", ranks=1)
    assert [r["accepted_clients"] for r in ranks["history"]] == [1, 1]
    assert ranks["sha"] == one["sha"] and ranks["history"] == one["history"]


def test_a_client_that_raises_on_rank_1_is_dropped_and_counted_as_in_one_process(tmp_path):
    client = sample_clients(0, 1, 6, 3)[1]  # index 1 of round 1's sample: trained on rank 1
    ranks = _job(tmp_path / "ranks", "--raise-client", str(client), ranks=2)
    one = _job(tmp_path / "one", "--raise-client", str(client), ranks=1)
    dropped = ranks["history"][0]["dropped_clients"]
    assert [d["client_id"] for d in dropped] == [client] and "simulated client crash" in dropped[0]["reason"]
    assert ranks["sha"] == one["sha"] and ranks["history"] == one["history"]


def test_a_hung_rank_fails_the_job_in_time_and_its_checkpoint_resumes_on_one_process(tmp_path, one_process):
    hung = _run([*TORCHRUN, JOB, str(tmp_path), "--hang-rank", "1", "--hang-round", "2", "--timeout", "8"], timeout=120)
    assert hung.returncode != 0
    assert "rank 0 of 2" in hung.stderr and "did not answer in time" in hung.stderr
    assert not (tmp_path / "result.json").exists()
    resumed = _job(tmp_path, "--resume", ranks=1)  # round 1 was saved before the hang
    assert resumed["sha"] == one_process["sha"] and resumed["history"] == one_process["history"]


def test_a_client_timeout_the_ranks_timeout_cannot_wait_for_is_refused_before_any_round(tmp_path):
    overrides = ["data.name=digits", "data.num_clients=6", "train.clients_per_round=4", "train.rounds=1",
                 "train.client_timeout=20", "train.dist_timeout=30", f"output_dir={tmp_path / 'run'}"]  # fmt: skip
    refused = _run([*TORCHRUN, "-m", "fedmrn_pl", "fit", *overrides], timeout=120)
    assert refused.returncode != 0
    assert "2 client(s) per rank" in refused.stderr and "train.dist_timeout" in refused.stderr
    assert "fedmrn_pl/" not in refused.stderr  # torchrun prints its own traceback, ours none
    assert not (tmp_path / "run" / "metrics.json").exists()
