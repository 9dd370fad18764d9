"""Failing clients are dropped with a reason; the round goes on with the rest."""

import time

import pytest
import torch

from fedmrn_pl import (
    ClassificationTask,
    FedAvg,
    FederatedDataModule,
    FederatedTrainer,
    FedMRN,
    MaskingConfig,
    build_model,
)
from fedmrn_pl.callbacks import FederatedCallback
from fedmrn_pl.report import run_summary


class FaultyTask(ClassificationTask):
    """A classifier whose training can be made to raise or to produce NaN."""

    fault: str | None = None

    def training_step(self, batch, batch_idx):
        if self.fault == "raise":
            raise RuntimeError("simulated client crash")
        if self.fault == "slow":
            time.sleep(1.0)
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.fault == "nan" else loss


class InjectFault(FederatedCallback):
    """Turns a fault on for the chosen clients while they train."""

    def __init__(self, fault, client_ids):
        self.fault = fault
        self.client_ids = set(client_ids)

    def on_client_fit_start(self, trainer, request):
        trainer.module.fault = self.fault if request.client_id in self.client_ids else None

    def on_client_fit_end(self, trainer, result):
        trainer.module.fault = None


class CorruptPayload(FederatedCallback):
    """Flips one body byte of the chosen clients' payloads on the way to the server."""

    def __init__(self, client_ids):
        self.client_ids = set(client_ids)

    def on_aggregate_start(self, trainer, server_round, results):
        for result in results:
            if result.client_id in self.client_ids and result.payload is not None:
                corrupted = bytearray(result.payload)
                corrupted[len(corrupted) // 2] ^= 0x10
                result.payload = bytes(corrupted)


def _trainer(callbacks, dense=False, min_clients=1, rounds=1, client_timeout=None):
    data = FederatedDataModule("digits", num_clients=6, seed=0)
    data.setup()
    model = build_model("cnn4", in_channels=1, num_classes=10, image_size=8, seed=0)
    module = FaultyTask(model, 10, lr=0.05)
    return FederatedTrainer(
        module,
        data,
        FedAvg() if dense else FedMRN(),
        None if dense else MaskingConfig(),
        rounds=rounds,
        clients_per_round=3,
        local_epochs=1,
        batch_size=32,
        min_clients=min_clients,
        callbacks=callbacks,
        client_timeout=client_timeout,
    )


def _first_clients(trainer):
    from fedmrn_pl.federated import sample_clients

    return sample_clients(trainer.run_seed, 1, trainer.data.num_clients, trainer.clients_per_round)


def _drops(metrics):
    return {d["client_id"]: d["reason"] for d in metrics["dropped_clients"]}


def test_a_client_whose_training_raises_is_dropped_and_the_rest_aggregate():
    probe = _trainer([])
    victim = _first_clients(probe)[0]
    trainer = _trainer([InjectFault("raise", [victim])])
    before = {k: v.clone() for k, v in trainer.global_state.items()}
    metrics = trainer.fit()[0]
    assert _drops(metrics) == {victim: "training failed: RuntimeError: simulated client crash"}
    assert metrics["accepted_clients"] == 2 and not metrics["kept_previous_model"]
    assert any(not torch.equal(before[k], trainer.global_state[k]) for k in trainer.masked_names)


def test_a_client_past_its_time_limit_is_dropped_with_the_reason_and_the_round_goes_on():
    probe = _trainer([])
    victim = _first_clients(probe)[0]
    started = time.perf_counter()
    metrics = _trainer([InjectFault("slow", [victim])], client_timeout=3.0).fit()[0]
    assert time.perf_counter() - started < 60  # the slow client (1 s a step, 8 steps) was stopped early
    reason = _drops(metrics)[victim]
    assert reason.startswith("timed out after") and "client_timeout=3 s" in reason
    assert metrics["accepted_clients"] == 2


@pytest.mark.parametrize("dense", [False, True])
def test_a_client_with_non_finite_values_is_dropped(dense):
    victim = _first_clients(_trainer([]))[1]
    trainer = _trainer([InjectFault("nan", [victim])], dense=dense)
    metrics = trainer.fit()[0]
    reason = _drops(metrics)[victim]
    assert "non-finite" in reason
    assert metrics["accepted_clients"] == 2
    assert all(torch.isfinite(t.float()).all() for t in trainer.global_state.values())


def test_a_client_whose_payload_fails_validation_is_dropped():
    victim = _first_clients(_trainer([]))[2]
    trainer = _trainer([CorruptPayload([victim])])
    metrics = trainer.fit()[0]
    assert _drops(metrics)[victim].startswith("invalid payload:")
    assert "checksum" in _drops(metrics)[victim]
    assert metrics["accepted_clients"] == 2


def test_too_few_valid_updates_keep_the_previous_global_model(caplog):
    clients = _first_clients(_trainer([]))
    trainer = _trainer([InjectFault("raise", clients[:2])], min_clients=2)
    before = {k: v.clone() for k, v in trainer.global_state.items()}
    metrics = trainer.fit()[0]
    assert metrics["kept_previous_model"] and metrics["accepted_clients"] == 1
    assert all(torch.equal(before[k], trainer.global_state[k]) for k in before)
    assert "keeping the previous global model" in caplog.text
    summary = run_summary("fedmrn-binary", trainer.history, trainer.global_state, 1.0)
    assert summary["dropped_clients"] == 2
