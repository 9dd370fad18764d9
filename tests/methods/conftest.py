"""Tiny federated runs for the method tests (digits, CNN4, a few seconds each)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedmrn_pl.config import load_config

TINY = ["data.name=digits", "data.num_clients=10", "train.clients_per_round=4", "train.batch_size=16", "progress=false"]


@pytest.fixture
def tiny_config(tmp_path):
    def make(*overrides: str, out: str = "run"):
        return load_config(None, [*TINY, "train.rounds=3", "train.local_epochs=1", f"output_dir={tmp_path / out}", *overrides])

    return make


def fit_on_two_ranks_and_one(where: Path, overrides: list[str], env: dict[str, str] | None = None) -> tuple[dict, dict]:
    """``fedmrn-pl fit`` under torchrun with 2 ranks and in one process: the two metrics.json."""
    env = dict(env or os.environ)
    env.update(OMP_NUM_THREADS="1", WANDB_MODE="offline")
    env.pop("PYTEST_XDIST_WORKER", None)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    for name, launcher in (("ranks", torchrun), ("one", [sys.executable])):
        done = subprocess.run([*launcher, "-m", "fedmrn_pl", "fit", *overrides, f"output_dir={where / name}"],
                              capture_output=True, text=True, timeout=300, env=env, cwd=where)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    return tuple(json.loads((where / name / "metrics.json").read_text()) for name in ("ranks", "one"))
