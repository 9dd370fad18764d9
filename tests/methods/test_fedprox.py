"""FedProx's proximal term: the gradients of loss + mu/2 ||w - w_global||^2, under any uplink method."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedmrn_pl.config import load_config
from fedmrn_pl.experiment import run_experiment
from fedmrn_pl.methods.fedprox import ProximalTerm

MU, LR, STEPS = 0.7, 0.2, 4


class Regression(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = nn.Linear(3, 2)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR)


def _data() -> DataLoader:
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(STEPS * 4, 3, generator=generator), torch.randn(STEPS * 4, 2, generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=4)


def _fit(module: L.LightningModule, callbacks: list[L.Callback], **kwargs) -> None:
    trainer = L.Trainer(max_epochs=1, callbacks=callbacks, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", **kwargs)  # fmt: skip
    trainer.fit(module, _data())


def test_the_callback_trains_on_loss_plus_the_proximal_term():
    module = Regression()
    start = {name: p.detach().clone() for name, p in module.named_parameters()}
    _fit(module, [ProximalTerm(MU)])
    reference = Regression()
    optimizer = torch.optim.SGD(reference.parameters(), lr=LR)
    for x, y in _data():  # the same steps, the term written into the loss by hand
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(reference.layer(x), y)
        loss = loss + MU / 2 * sum(((p - start[n]) ** 2).sum() for n, p in reference.named_parameters())
        loss.backward()
        optimizer.step()
    plain = Regression()
    _fit(plain, [])
    for name, parameter in module.named_parameters():
        assert torch.allclose(parameter, dict(reference.named_parameters())[name], atol=1e-6), name
        assert not torch.allclose(parameter, dict(plain.named_parameters())[name], atol=1e-4), name


def test_under_gradient_accumulation_the_term_is_divided_like_the_loss():
    accumulated, reference = Regression(), Regression()
    start = {name: p.detach().clone() for name, p in reference.named_parameters()}
    _fit(accumulated, [ProximalTerm(MU)], accumulate_grad_batches=2)
    optimizer = torch.optim.SGD(reference.parameters(), lr=LR)
    batches = list(_data())
    for first, second in zip(batches[::2], batches[1::2]):
        optimizer.zero_grad()
        for x, y in (first, second):
            term = MU / 2 * sum(((p - start[n]) ** 2).sum() for n, p in reference.named_parameters())
            ((nn.functional.mse_loss(reference.layer(x), y) + term) / 2).backward()
        optimizer.step()
    for name, parameter in accumulated.named_parameters():
        assert torch.allclose(parameter, dict(reference.named_parameters())[name], atol=1e-6), name


@pytest.mark.parametrize("mu", [-1.0, float("nan"), "0.1"])
def test_a_bad_mu_is_refused(mu):
    with pytest.raises(ValueError, match="mu must be a finite number >= 0"):
        ProximalTerm(mu)


TINY = ["data.name=digits", "data.num_clients=4", "train.clients_per_round=2", "train.rounds=2", "train.local_epochs=1",
        "progress=false"]  # fmt: skip


def test_with_fedmrn_a_strong_term_keeps_the_masks_near_the_global_model(tmp_path):
    """FedMRN's weights are w + n * M: the term pulls the masks' ones (the move away from w) down."""
    runs = {}
    for mu in (0.0, 5.0):
        config = load_config(None, [*TINY, f"train.proximal_mu={mu}", f"output_dir={tmp_path / str(mu)}"])
        runs[mu] = run_experiment(config)["per_round"][-1]["mask/mask_ones_fraction"]
    assert runs[5.0] < 0.8 * runs[0.0], runs


@pytest.mark.parametrize("method", ["fedavg", "ef_signsgd"])
def test_the_term_composes_with_the_dense_and_compressed_methods(tmp_path, method):
    summaries = [
        run_experiment(load_config(None, [*TINY, f"method.name={method}", f"train.proximal_mu={mu}", f"output_dir={tmp_path / str(mu)}"]))
        for mu in (0.0, 1.0)
    ]
    assert all(not s["dropped_clients"] for s in summaries)
    assert summaries[0]["global_model_sha256"] != summaries[1]["global_model_sha256"]
