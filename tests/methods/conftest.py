"""Tiny federated runs for the method tests (digits, CNN4, a few seconds each)."""

import pytest

from fedmrn_pl.config import load_config

TINY = ["data.name=digits", "data.num_clients=10", "train.clients_per_round=4", "train.batch_size=16", "progress=false"]


@pytest.fixture
def tiny_config(tmp_path):
    def make(*overrides: str, out: str = "run"):
        return load_config(None, [*TINY, "train.rounds=3", "train.local_epochs=1", f"output_dir={tmp_path / out}", *overrides])

    return make
