"""The server refuses payloads that do not match what it issued, and bad setups fail early."""

import dataclasses

import lightning as L
import pytest
import torch
from torch import nn

from fedmrn_pl import ClassificationTask, FederatedDataModule, FederatedTrainer, FedMRN, MaskingConfig, build_model
from fedmrn_pl.callbacks import FederatedCallback
from fedmrn_pl.wire import decode_update, encode_update


class Tamper(FederatedCallback):
    """Re-encodes the first client's payload with one field changed (a valid but lying payload)."""

    def __init__(self, dense=None, **changes):
        self.changes = changes
        self.dense = dense or {}  # {name: function of the tensor}: replaced dense tensors

    def on_aggregate_start(self, trainer, server_round, results):
        update = decode_update(results[0].payload)
        dense = {name: self.dense.get(name, lambda t: t)(tensor) for name, tensor in update.dense.items()}
        results[0].payload = encode_update(dataclasses.replace(update, dense=dense, **self.changes))


def _trainer(callbacks=(), module=None, **kwargs):
    data = FederatedDataModule("digits", num_clients=4, seed=0)
    data.setup()
    module = module or ClassificationTask(build_model("cnn4", in_channels=1, num_classes=10, image_size=8, seed=0), 10)
    return FederatedTrainer(
        module,
        data,
        FedMRN(),
        MaskingConfig(),
        rounds=1,
        clients_per_round=2,
        local_epochs=1,
        batch_size=64,
        callbacks=list(callbacks),
        **kwargs
    )


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"num_examples": 10**9}, "claims 1000000000 training examples"),
        ({"seed": 1}, "differs from the seed issued"),
        ({"client_id": 3}, "expected client"),
        ({"server_round": 7}, "round"),
        ({"mask_kind": "binary"}, "mask kind"),
        ({"noise_scales": {"model.features.0.weight": 0.5}}, "noise scales differ from those issued"),
    ],
)
def test_a_lying_payload_is_dropped_and_the_round_goes_on(changes, words):
    metrics = _trainer([Tamper(**changes)]).fit()[0]
    assert metrics["accepted_clients"] == 1
    [dropped] = metrics["dropped_clients"]
    assert dropped["reason"].startswith("invalid payload:") and words in dropped["reason"]


BUFFER = "model.features.1.num_batches_tracked"
BN_WEIGHT = "model.features.1.weight"


@pytest.mark.parametrize(
    "dense, words",
    [
        ({BN_WEIGHT: lambda t: t.to(torch.int64)}, f"tensor '{BN_WEIGHT}' is sent as int64, the server accepts ['float32']"),
        ({BN_WEIGHT: lambda t: t.to(torch.float16)}, "is sent as float16, the server accepts ['float32']"),
        ({BUFFER: lambda t: torch.full_like(t, 1e30, dtype=torch.float32)}, "is sent as float32, the server accepts ['int64']"),
        ({BUFFER: lambda t: torch.full_like(t, 1 << 60)}, "beyond +-2**53"),
    ],
)
def test_a_dense_tensor_in_the_wrong_dtype_or_range_is_dropped(dense, words):
    trainer = _trainer([Tamper(dense=dense)])
    assert BUFFER in trainer.global_state and BN_WEIGHT in trainer.global_state
    metrics = trainer.fit()[0]
    [dropped] = metrics["dropped_clients"]
    assert words in dropped["reason"]
    assert int(trainer.global_state[BUFFER]) >= 0  # the global buffer did not overflow


def test_a_module_without_test_step_is_refused_before_training():
    class NoTest(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(64, 10)

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0].flatten(1)).sum()

    with pytest.raises(TypeError, match="must define test_step"):
        _trainer(module=NoTest())


def test_a_buffer_the_wire_cannot_carry_is_refused_before_training():
    module = ClassificationTask(build_model("mlp", in_channels=1, num_classes=10, image_size=8, seed=0), 10)
    module.register_buffer("scale", torch.ones(3, dtype=torch.float64))
    with pytest.raises(TypeError, match="scale.*float64"):
        _trainer(module=module)


def test_invalid_lightning_settings_are_refused_before_training():
    with pytest.raises(ValueError, match="invalid lightning.Trainer settings"):
        _trainer(trainer_kwargs={"precision": "bogus"})
