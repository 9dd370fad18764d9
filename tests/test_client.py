"""One client's local fit: PSM schedule, fresh updates, the plain module afterwards."""

import lightning as L
import torch

from fedmrn_pl import ClassificationTask, FederatedDataModule, MaskingConfig, build_model
from fedmrn_pl.client import FederatedClient
from fedmrn_pl.masking import is_masked, masked_parametrizations
from fedmrn_pl.messages import FitRequest


class Recorder(L.Callback):
    """Records p and the update norms at every training step."""

    def __init__(self):
        self.probabilities, self.first_update_norms, self.optimizers = [], [], []

    def on_train_start(self, trainer, pl_module):
        self.optimizers.append(id(trainer.optimizers[0]))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        parametrizations = masked_parametrizations(pl_module)
        self.probabilities.append(next(iter(parametrizations.values())).probability)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0 and trainer.current_epoch == 0:
            self.first_update_norms.append(
                sum(float(p.update.abs().sum()) for p in masked_parametrizations(pl_module).values())
            )


def _client(recorder, schedule="linear"):
    module = ClassificationTask(build_model("cnn4", in_channels=1, num_classes=10, image_size=8, seed=0), 10)
    data = FederatedDataModule("digits", num_clients=4, seed=0)
    client = FederatedClient(
        module, data, MaskingConfig(schedule=schedule), local_epochs=2, trainer_kwargs={"callbacks": [recorder]}
    )
    return client, data


def _request(data, server_round, client_id, seed):
    return FitRequest(server_round, client_id, data.client_num_examples(client_id), seed)


def test_psm_probability_rises_linearly_over_the_local_steps_and_updates_start_at_zero():
    recorder = Recorder()
    client, data = _client(recorder)
    state = {k: v.clone() for k, v in client.module.state_dict().items()}
    for server_round in (1, 2):
        loader = data.client_dataloader(0, server_round, 64)
        assert client.fit(state, _request(data, server_round, 0, 123)).dropped is None
    steps = len(recorder.probabilities) // 2
    assert steps == 2 * len(loader)
    expected = [step / steps for step in range(steps)] * 2
    assert recorder.probabilities == expected
    assert recorder.first_update_norms == [0.0, 0.0]  # u = 0 at the start of every round
    assert len(recorder.optimizers) == 2 and not is_masked(client.module)


def test_constant_schedule_uses_plain_sm_throughout():
    recorder = Recorder()
    client, data = _client(recorder, schedule="constant")
    assert client.fit(client.module.state_dict(), _request(data, 1, 1, 5)).dropped is None
    assert recorder.probabilities and set(recorder.probabilities) == {1.0}


def test_the_update_carries_every_masked_weight_and_the_dense_rest():
    client, data = _client(Recorder())
    state = {k: v.clone() for k, v in client.module.state_dict().items()}
    result = client.fit(state, _request(data, 1, 2, 77))
    update = result.update
    assert set(update.masks) | set(update.dense) == set(state)
    assert all(state[name].dim() >= 2 for name in update.masks)
    assert update.seed == 77 and update.num_examples == data.client_num_examples(2)
    assert 0.0 < result.stats["mask_ones_fraction"] < 1.0
    assert torch.isfinite(torch.tensor(result.train_loss))
