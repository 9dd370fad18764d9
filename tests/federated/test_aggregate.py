"""Server arithmetic: sample-weighted FedMRN and FedAvg aggregation, client sampling."""

import pytest
import torch

from fedmrn_pl.federated import FedAvg, FedMRN, sample_clients
from fedmrn_pl.masking import generate_noise
from fedmrn_pl.update import ClientUpdate, NoiseSpec

SPEC = NoiseSpec("uniform", 0.01)


def _state():
    return {
        "layer.weight": torch.randn(6, 4, generator=torch.Generator().manual_seed(0)),
        "layer.bias": torch.zeros(6),
        "norm.num_batches_tracked": torch.tensor(10),
    }


def _masked_update(client_id, seed, num_examples, kind="binary"):
    generator = torch.Generator().manual_seed(client_id)
    return ClientUpdate(
        server_round=1,
        client_id=client_id,
        seed=seed,
        mask_kind=kind,
        noise=SPEC,
        num_examples=num_examples,
        masks={"layer.weight": torch.rand(6, 4, generator=generator) < 0.5},
        dense={
            "layer.bias": torch.full((6,), float(client_id)),
            "norm.num_batches_tracked": torch.tensor(10 + client_id),
        },
    )


@pytest.mark.parametrize("kind", ["binary", "signed"])
def test_fedmrn_adds_the_sample_weighted_masked_noise(kind):
    state = _state()
    updates = [_masked_update(1, 111, 30, kind), _masked_update(2, 222, 10, kind)]
    new = FedMRN().aggregate(1, state, updates)

    expected = state["layer.weight"].clone()
    for update, weight in zip(updates, (0.75, 0.25)):
        values = update.masks["layer.weight"].float()
        if kind == "signed":
            values = values * 2 - 1
        expected += weight * generate_noise(update.seed, "layer.weight", (6, 4), SPEC) * values
    assert torch.allclose(new["layer.weight"], expected, atol=1e-7)
    assert torch.allclose(new["layer.bias"], torch.full((6,), 0.75 * 1 + 0.25 * 2))
    assert new["norm.num_batches_tracked"].dtype == torch.int64
    assert new["norm.num_batches_tracked"].item() == round(0.75 * 11 + 0.25 * 12)


def test_fedavg_weights_by_samples_not_by_clients():
    state = {"w": torch.zeros(3)}
    updates = [
        ClientUpdate(1, 0, 0, "none", SPEC, 90, dense={"w": torch.ones(3)}),
        ClientUpdate(1, 1, 0, "none", SPEC, 10, dense={"w": torch.full((3,), 11.0)}),
    ]
    new = FedAvg().aggregate(1, state, updates)
    assert torch.allclose(new["w"], torch.full((3,), 0.9 * 1 + 0.1 * 11))


def test_no_updates_keeps_the_previous_model():
    assert FedMRN().aggregate(3, _state(), []) is None
    assert FedAvg().aggregate(3, _state(), []) is None


def test_client_sampling_is_seeded_distinct_and_in_range():
    first = sample_clients(7, 3, 100, 10)
    assert first == sample_clients(7, 3, 100, 10)
    assert len(set(first)) == 10 and all(0 <= c < 100 for c in first)
    assert first != sample_clients(7, 4, 100, 10)
    assert first != sample_clients(8, 3, 100, 10)


def test_client_sampling_rejects_impossible_counts():
    with pytest.raises(ValueError, match=r"clients_per_round must be in \[1, num_clients=5\]"):
        sample_clients(0, 1, 5, 6)
