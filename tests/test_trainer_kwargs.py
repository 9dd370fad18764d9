"""trainer_kwargs: a user's Lightning logger sees every client fit and round; conflicting keys are refused."""

import csv

import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from fedmrn_pl import FederatedTrainer, FedMRN, MaskingConfig
from fedmrn_pl.trainer_kwargs import check_trainer_kwargs
from tests.federated.test_one_mask_per_step import TiedLM, TokenClients


def test_a_user_csv_logger_gets_client_fits_under_a_prefix_and_rounds_at_step_round(tmp_path):
    torch.manual_seed(0)
    logger = CSVLogger(tmp_path, name="run")
    trainer = FederatedTrainer(
        TiedLM(), TokenClients(), FedMRN(), MaskingConfig(), rounds=2, clients_per_round=2, batch_size=32,
        trainer_kwargs={"logger": logger, "log_every_n_steps": 1},
    )
    history = trainer.fit()
    with open(f"{logger.log_dir}/metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    columns = set(rows[0])
    first_round = {f"round_1/client_{c}/train/loss" for c in history[0]["clients"]}
    assert first_round <= columns
    per_round = [row for row in rows if row.get("test/acc")]
    assert [int(row["step"]) for row in per_round] == [1, 2]
    assert float(per_round[-1]["test/acc"]) == pytest.approx(history[-1]["test/acc"])
    assert "uplink/bytes" in columns


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_epochs": 3}, r"trainer_kwargs\['max_epochs'\]=3 conflicts with FederatedTrainer's own setting; use local_epochs instead"),
        ({"limit_val_batches": 1.0}, r"use test_step on the server"),
        ({"logger": True}, r"must be a Lightning Logger .* got True: logger=True would start a new log for every client fit"),
        ({"logger": "csv"}, r"got 'csv'"),
    ],
)
def test_keys_that_conflict_with_the_trainers_own_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_trainer_kwargs(kwargs)
    with pytest.raises(ValueError, match=message):
        FederatedTrainer(TiedLM(), TokenClients(), FedMRN(), MaskingConfig(), clients_per_round=1, trainer_kwargs=kwargs)
