"""Small, fast federated setups shared by the loop tests."""

import pytest

from fedmrn_pl.config import load_config


@pytest.fixture
def small_config(tmp_path):
    """FedMRN on the scikit-learn digits (8x8), CNN4, 10 clients, a few seconds per run."""

    def make(*overrides: str):
        return load_config(
            None,
            [
                "data.name=digits",
                "data.num_clients=10",
                "train.clients_per_round=4",
                "train.rounds=3",
                "train.local_epochs=1",
                "train.batch_size=16",
                f"output_dir={tmp_path / 'run'}",
                *overrides,
            ],
        )

    return make
