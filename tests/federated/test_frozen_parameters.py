"""A parameter no client can change (``requires_grad=False``) is never uploaded; buffers still are."""

import torch
from torch import nn

from fedmrn_pl import FedAvg, FederatedTrainer, FedMRN, MaskingConfig
from fedmrn_pl.wire import decode_update
from tests.federated.test_one_mask_per_step import VOCAB, Payloads, ReadRecorder, TokenClients


class FrozenEmbeddingLSTM(ReadRecorder):
    """A pretrained-style frozen embedding, a trainable LSTM, and BatchNorm whose running stats change."""

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 64)
        self.embed.weight.requires_grad_(False)
        self.encoder = nn.LSTM(64, hidden, batch_first=True)
        self.norm = nn.BatchNorm1d(hidden)
        self.head = nn.Linear(hidden, VOCAB)

    def forward(self, tokens):
        return self.head(self.norm(self.encoder(self.embed(tokens))[0][:, -1]))  # (B, V)

    def configure_optimizers(self):
        return torch.optim.Adam([p for p in self.parameters() if p.requires_grad], lr=0.02)


def _fit(strategy, masking):
    torch.manual_seed(0)
    module = FrozenEmbeddingLSTM()
    frozen = module.embed.weight.detach().clone()
    tap = Payloads()
    trainer = FederatedTrainer(
        module, TokenClients(), strategy, masking, rounds=2, clients_per_round=2, batch_size=32, callbacks=[tap]
    )
    history = trainer.fit()
    return trainer, history, tap, frozen


def test_a_frozen_parameter_is_not_uploaded_and_keeps_its_value_under_fedmrn():
    trainer, history, tap, frozen = _fit(FedMRN(), MaskingConfig())
    assert trainer.frozen_names == ["embed.weight"]
    assert "embed.weight" not in trainer.masked_names
    update = decode_update(tap.payloads[0])
    assert "embed.weight" not in update.masks and "embed.weight" not in update.dense
    assert {"norm.running_mean", "norm.running_var", "norm.num_batches_tracked"} <= set(update.dense)
    assert torch.equal(trainer.global_state["embed.weight"], frozen)
    assert not torch.equal(trainer.global_state["norm.running_mean"], torch.zeros(16))  # buffers aggregated
    # The dense reference counts only what FedAvg would upload, so the frozen table inflates neither side.
    sent = sum(t.numel() * t.element_size() for n, t in trainer.global_state.items() if n != "embed.weight")
    assert history[0]["uplink/dense_bytes"] == 2 * sent
    assert history[0]["uplink/compression"] > 10  # 11.2x; 7.3x when the frozen table went as float32


def test_a_frozen_parameter_is_not_uploaded_by_fedavg():
    trainer, history, tap, frozen = _fit(FedAvg(), None)
    assert "embed.weight" not in decode_update(tap.payloads[0]).dense
    assert torch.equal(trainer.global_state["embed.weight"], frozen)
    assert "embed.weight" not in trainer.expected_manifest  # not counted as uploaded either
    assert 0.95 < history[-1]["uplink/compression"] < 1.3  # dense float32, deflated where that is shorter


def test_a_frozen_tied_parameter_is_one_frozen_tensor():
    class Tied(FrozenEmbeddingLSTM):
        def __init__(self):
            super().__init__(hidden=64)
            self.head = nn.Linear(64, VOCAB, bias=False)
            self.head.weight = self.embed.weight  # tied and frozen

    trainer = FederatedTrainer(Tied(), TokenClients(), FedMRN(), MaskingConfig(), rounds=1, clients_per_round=1)
    assert trainer.frozen_names == ["embed.weight"]
    assert "head.weight" not in trainer.expected_manifest and "embed.weight" not in trainer.expected_manifest
