"""A failing server evaluation stops the run in one line, after the completed rounds are saved."""

import json

import pytest
import torch

from fedmrn_pl import (
    ClassificationTask,
    EvaluationError,
    FederatedDataModule,
    FederatedTrainer,
    FedMRN,
    MaskingConfig,
    build_model,
)
from fedmrn_pl.callbacks import FederatedCheckpoint, load_checkpoint
from fedmrn_pl.report import global_model_sha256


class FailingTask(ClassificationTask):
    """Its ``test_step`` raises while it tests the global model of round ``fail_at``."""

    fail_at = 2

    def on_test_start(self):
        self.evaluations = getattr(self, "evaluations", 0) + 1

    def test_step(self, batch, batch_idx):
        if self.evaluations == self.fail_at:
            raise ValueError("target 10 is out of bounds\n(a second line)")
        return super().test_step(batch, batch_idx)


def test_a_failing_test_step_stops_the_run_in_one_line_after_saving_the_completed_rounds(tmp_path):
    data = FederatedDataModule("digits", num_clients=4, seed=0)
    data.setup()
    module = FailingTask(build_model("mlp", in_channels=1, num_classes=10, image_size=8, seed=0), 10)
    trainer = FederatedTrainer(
        module, data, FedMRN(), MaskingConfig(), rounds=3, clients_per_round=2, batch_size=64,
        output_dir=tmp_path, callbacks=[FederatedCheckpoint(tmp_path)],
    )  # fmt: skip
    with pytest.raises(EvaluationError) as failed:
        trainer.fit()
    assert str(failed.value) == (
        "round 2: evaluating the global model with FailingTask.test_step failed: "
        "ValueError: target 10 is out of bounds (a second line)"
    )
    assert (failed.value.module_name, failed.value.hook, failed.value.server_round) == ("FailingTask", "test_step", 2)
    assert isinstance(failed.value.__cause__, ValueError)  # the original traceback stays reachable
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["rounds"] == 1 and [r["round"] for r in metrics["per_round"]] == [1]
    assert metrics["stopped_by"].startswith("EvaluationError: round 2: evaluating")
    checkpoint = load_checkpoint(tmp_path, model_state=trainer.global_state)
    assert checkpoint["completed_rounds"] == 1 and trainer.completed_rounds == 1
    # The run keeps the model it evaluated last: the checkpoint's, whose hash metrics.json records.
    assert all(torch.equal(checkpoint["global_state"][name], t) for name, t in trainer.global_state.items())
    assert metrics["global_model_sha256"] == global_model_sha256(checkpoint["global_state"])


def test_a_failing_first_evaluation_writes_no_metrics(tmp_path):
    data = FederatedDataModule("digits", num_clients=4, seed=0)
    data.setup()
    module = FailingTask(build_model("mlp", in_channels=1, num_classes=10, image_size=8, seed=0), 10)
    module.fail_at = 1
    trainer = FederatedTrainer(
        module, data, FedMRN(), MaskingConfig(), rounds=2, clients_per_round=2, output_dir=tmp_path
    )
    with pytest.raises(EvaluationError, match=r"^round 1: evaluating the global model with FailingTask.test_step"):
        trainer.fit()
    assert not (tmp_path / "metrics.json").exists()  # no round was completed
