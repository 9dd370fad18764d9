"""Your own data: batches that are not tensors (graphs with their own collate_fn) and plain LightningDataModules."""

import math

import pytest

from fedmrn_pl import FedAvg, FederatedDataModule, FederatedDataset, FederatedTrainer, FedMRN, MaskingConfig
from tests.graphs import GraphClassifier, MotifDM, MotifGraphs, collate_graphs


def _fit(data, dense, rounds=2):
    trainer = FederatedTrainer(
        GraphClassifier(),
        data,
        FedAvg() if dense else FedMRN(),
        None if dense else MaskingConfig(),
        rounds=rounds,
        clients_per_round=data.num_clients,
        batch_size=8,
    )
    return trainer.fit()


@pytest.mark.parametrize("dense", [False, True], ids=["fedmrn", "fedavg"])
def test_graph_batches_with_their_own_collate_fn_train_every_client_and_evaluate(dense):
    graphs = FederatedDataset.from_datasets(MotifGraphs(96, seed=0), MotifGraphs(32, seed=1))  # labels read from .y
    data = FederatedDataModule(graphs, num_clients=4, collate_fn=collate_graphs)
    history = _fit(data, dense)
    assert [m["dropped_clients"] for m in history] == [[], []]
    assert [m["accepted_clients"] for m in history] == [4, 4]
    assert all(0.0 <= m["test/acc"] <= 1.0 and math.isfinite(m["test/loss"]) for m in history)


def test_a_plain_lightning_datamodule_is_refused_in_one_line_naming_the_adapter():
    with pytest.raises(TypeError) as refused:
        FederatedTrainer(GraphClassifier(), MotifDM(), FedAvg(), rounds=1, clients_per_round=2)
    message = str(refused.value)
    assert "\n" not in message
    assert "MotifDM is a plain LightningDataModule" in message
    assert "FederatedDataModule.from_datamodule(datamodule, num_clients=N)" in message


def test_from_datamodule_partitions_a_plain_datamodule_and_keeps_its_collate_fn():
    source = MotifDM()
    data = FederatedDataModule.from_datamodule(source, num_clients=4, seed=3)
    assert source.stages == ["fit", "test"]
    assert data.num_clients == 4 and data.collate_fn is collate_graphs and data.test_batch_size == 8
    assert sum(data.client_num_examples(c) for c in range(4)) == 96
    history = _fit(data, dense=True, rounds=1)
    assert history[0]["accepted_clients"] == 4 and 0.0 <= history[0]["test/acc"] <= 1.0


def test_from_datamodule_keeps_one_client_per_train_loader():
    data = FederatedDataModule.from_datamodule(MotifDM(clients=3))
    assert data.num_clients == 3 and data.partition == "natural"
    assert [data.client_num_examples(c) for c in range(3)] == [32, 32, 32]
    assert data.partition_stats["label_counts"][0] == [16, 16]  # read from each graph's .y
    with pytest.raises(ValueError, match=r"returns 3 client loaders but num_clients=4"):
        FederatedDataModule.from_datamodule(MotifDM(clients=3), num_clients=4)
