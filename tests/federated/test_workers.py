"""Clients trained in worker processes give bit-for-bit the in-process result."""

import pytest
import torch

from fedmrn_pl.config import ConfigError, load_config
from fedmrn_pl.experiment import build_trainer
from fedmrn_pl.report import global_model_sha256


@pytest.fixture
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # workers get the same count, so CPU sums match
    yield
    torch.set_num_threads(previous)


@pytest.mark.slow
def test_two_worker_processes_give_the_same_run_as_one_process(small_config, one_thread):
    in_process = build_trainer(small_config("train.rounds=2"))
    in_process.fit()
    in_workers = build_trainer(small_config("train.rounds=2", "train.client_workers=2"))
    in_workers.fit()
    assert in_workers._pool is None  # the pool is shut down after fit
    assert global_model_sha256(in_workers.global_state) == global_model_sha256(in_process.global_state)
    strip = lambda history: [{k: v for k, v in r.items() if k != "round/seconds"} for r in history]  # noqa: E731
    assert strip(in_workers.history) == strip(in_process.history)


def test_several_devices_need_as_many_client_workers():
    with pytest.raises(ConfigError, match="client_workers >= 4"):
        load_config(None, ["train.devices=4", "train.accelerator=gpu"])
