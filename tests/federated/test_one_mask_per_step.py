"""One mask per weight per training step, whatever reads it how often; tied weights are one tensor."""

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedmrn_pl import FedAvg, FederatedTrainer, FedMRN, MaskingConfig
from fedmrn_pl.callbacks import FederatedCallback
from fedmrn_pl.seeding import make_generator
from fedmrn_pl.wire import decode_update

VOCAB = 12


class TokenClients:
    """Next-token pairs ``(t, (3 t + 1) mod V)`` split over clients: the data protocol the trainer needs."""

    def __init__(self, num_clients: int = 4, per_client: int = 96, context: int = 4) -> None:
        generator = make_generator(0)
        self.num_clients = num_clients
        self.clients = [self._pairs(per_client, context, generator) for _ in range(num_clients)]
        self.test = self._pairs(256, context, generator)

    @staticmethod
    def _pairs(count: int, context: int, generator: torch.Generator) -> TensorDataset:
        start = torch.randint(0, VOCAB, (count, 1), generator=generator)
        sequence = [start]
        for _ in range(context):
            sequence.append((3 * sequence[-1] + 1) % VOCAB)
        tokens = torch.cat(sequence, dim=1)  # (N, context + 1)
        return TensorDataset(tokens[:, :-1], tokens[:, -1])

    def client_num_examples(self, client_id: int) -> int:
        return len(self.clients[client_id])

    def client_dataloader(self, client_id: int, server_round: int, batch_size: int) -> DataLoader:
        generator = make_generator(1000 * server_round + client_id)
        return DataLoader(self.clients[client_id], batch_size=batch_size, shuffle=True, generator=generator)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test, batch_size=256)


class ReadRecorder(L.LightningModule):
    """Base for the test modules: records every read of the weights under test, per training step."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[list[torch.Tensor]] = []

    def record(self, weight: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.steps[-1].append(weight.detach().clone())
        return weight

    def training_step(self, batch, batch_idx):
        self.steps.append([])
        tokens, target = batch
        loss = F.cross_entropy(self(tokens), target)
        self.log("train/loss", loss)
        return loss

    def test_step(self, batch, batch_idx):
        tokens, target = batch
        self.log("test/acc", (self(tokens).argmax(1) == target).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.05)


class Cell(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.w_hh = nn.Parameter(torch.randn(hidden, hidden) * 0.1)


class LoopRNN(ReadRecorder):
    """A hand-written RNN: the recurrent matrix is read once per time step."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, hidden)
        self.cell = Cell(hidden)
        self.head = nn.Linear(hidden, VOCAB)

    def forward(self, tokens):
        inputs = self.embed(tokens)  # (B, T, H)
        state = torch.zeros_like(inputs[:, 0])
        for step in range(tokens.shape[1]):
            state = torch.tanh(inputs[:, step] + state @ self.record(self.cell.w_hh).T)
        return self.head(state)


class TiedLM(ReadRecorder):
    """A language model whose output layer is its input embedding (one tensor, two modules)."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, hidden)
        self.mix = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, VOCAB, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens):
        embedding, output = self.record(self.embed.weight), self.record(self.head.weight)
        last = F.embedding(tokens[:, -1], embedding)  # (B, H): the next token depends on the last one
        return F.linear(torch.tanh(self.mix(last)), output)


class Payloads(FederatedCallback):
    def __init__(self) -> None:
        self.payloads: list[bytes] = []

    def on_aggregate_start(self, trainer, server_round, results):
        self.payloads += [result.payload for result in results if result.payload is not None]


def _fit(module, strategy=None, masking=MaskingConfig(), rounds=3):
    torch.manual_seed(0)
    tap = Payloads()
    trainer = FederatedTrainer(
        module,
        TokenClients(),
        strategy or FedMRN(),
        masking,
        rounds=rounds,
        clients_per_round=3,
        local_epochs=2,
        batch_size=16,
        callbacks=[tap],
    )
    return trainer, trainer.fit(), tap


def _assert_one_mask_per_step(steps: list[list[torch.Tensor]], reads_per_step: int) -> None:
    assert len(steps) > 10
    for reads in steps:
        assert len(reads) == reads_per_step
        assert all(torch.equal(read, reads[0]) for read in reads[1:])
    firsts = [reads[0] for reads in steps]
    assert any(not torch.equal(a, b) for a, b in zip(firsts, firsts[1:]))  # a new mask each step


def test_a_hand_written_rnn_reads_one_mask_per_step_and_trains_federated():
    module = LoopRNN()
    trainer, history, _ = _fit(module)
    assert "cell.w_hh" in trainer.masked_names
    _assert_one_mask_per_step(module.steps, reads_per_step=4)  # 4 time steps, 4 reads, one mask
    assert history[-1]["train/loss"] < history[0]["train/loss"]


def test_a_tied_embedding_is_masked_once_uploaded_once_and_learns():
    module = TiedLM()
    trainer, history, tap = _fit(module, rounds=6)
    assert trainer.masked_names == ["embed.weight", "mix.weight"]
    assert "head.weight" not in trainer.global_state  # one tensor, under its first name
    _assert_one_mask_per_step(module.steps, reads_per_step=2)  # read as embedding and as output layer
    manifest = decode_update(tap.payloads[0]).masks
    assert set(manifest) == {"embed.weight", "mix.weight"}
    assert module.head.weight is module.embed.weight  # still tied after training
    # The next token is a function of the last one; the unigram baseline is about 1 / VOCAB.
    assert history[-1]["test/acc"] > 3 / VOCAB


def test_a_tied_embedding_is_sent_once_by_fedavg_and_learns():
    module = TiedLM()
    trainer, history, tap = _fit(module, strategy=FedAvg(), masking=None, rounds=4)
    assert set(decode_update(tap.payloads[0]).dense) == set(trainer.global_state)
    assert "head.weight" not in trainer.global_state
    assert history[-1]["test/acc"] > 3 / VOCAB
