"""Rows PyTorch never trains (an embedding's ``padding_idx``) stay exactly as they are under FedMRN."""

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from fedmrn_pl import FederatedDataModule, FederatedTrainer, FedMRN, MaskingConfig
from fedmrn_pl.masking import apply_masked_noise, masked_parametrizations, remove_masked_noise, set_mask_probability
from fedmrn_pl.masking.selection import padding_rows

PAD = 0


class BagOfTokens(L.LightningModule):
    """Mean of token embeddings (padding included) -> class; token 0 pads."""

    def __init__(self, vocab: int = 32, width: int = 32, padding_idx: int | None = PAD) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width, padding_idx=padding_idx)
        self.head = nn.Linear(width, 4)

    def forward(self, tokens):
        return self.head(self.embed(tokens).mean(1))

    def training_step(self, batch, batch_idx):
        tokens, labels = batch
        loss = F.cross_entropy(self(tokens), labels)
        self.log("train/loss", loss)
        return loss

    def test_step(self, batch, batch_idx):
        tokens, labels = batch
        self.log("test/acc", (self(tokens).argmax(1) == labels).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


def _token_data(samples: int = 240, seed: int = 0) -> TensorDataset:
    """Class c sentences use tokens 8c+1..8c+7, padded with 0 to length 12."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (samples,), generator=generator)
    tokens = labels[:, None] * 8 + torch.randint(1, 8, (samples, 12), generator=generator)
    lengths = torch.randint(3, 12, (samples,), generator=generator)
    tokens[torch.arange(12)[None, :] >= lengths[:, None]] = PAD
    return TensorDataset(tokens, labels)


def test_signed_masks_keep_the_padding_row_bit_for_bit_and_still_learn():
    data = FederatedDataModule.from_client_datasets([_token_data(seed=s) for s in range(4)], _token_data(seed=9))
    torch.manual_seed(0)
    module = BagOfTokens()
    with torch.no_grad():
        module.embed.weight[PAD] = 0.25  # any value: PyTorch never changes it
    trainer = FederatedTrainer(
        module, data, FedMRN(), MaskingConfig(kind="signed"), rounds=8, clients_per_round=2, batch_size=16, threads=1
    )
    history = trainer.fit()
    embedding = trainer.global_state["embed.weight"]
    assert torch.equal(embedding[PAD], torch.full((32,), 0.25))
    assert not torch.equal(embedding[1:], module.embed.weight.new_zeros(31, 32))  # the other rows moved
    assert history[-1]["test/acc"] > 0.5  # four classes


def test_a_masked_embedding_reads_its_padding_row_unmasked_during_local_training():
    module = BagOfTokens()
    original = module.embed.weight.detach().clone()
    apply_masked_noise(module, seed=3, kind="signed")
    set_mask_probability(module, 1.0)  # sampled signed masks: every other row moves by +-n
    masked = module.embed.weight
    assert torch.equal(masked[PAD], original[PAD])
    assert not torch.equal(masked[1:], original[1:])
    masked.sum().backward()
    update = masked_parametrizations(module)["embed.weight"].update
    assert torch.count_nonzero(update.grad[PAD]) == 0 and torch.count_nonzero(update.grad[1:]) > 0
    remove_masked_noise(module)
    assert torch.equal(module.embed.weight, original)


def test_padding_rows_are_found_only_where_pytorch_keeps_them():
    assert padding_rows(BagOfTokens()) == {"embed.weight": (0,)}
    assert padding_rows(BagOfTokens(padding_idx=None)) == {}
    assert padding_rows(nn.Embedding(10, 4, padding_idx=-1)) == {"weight": (9,)}
    tied = BagOfTokens(width=4)
    tied.out = nn.Linear(4, 32, bias=False)
    tied.out.weight = tied.embed.weight  # an output head trains the padding row too
    assert padding_rows(tied) == {}


@pytest.mark.parametrize("kind", ["binary", "signed"])
def test_fedavg_and_both_mask_kinds_agree_that_the_padding_row_is_fixed(kind):
    data = FederatedDataModule.from_client_datasets([_token_data(seed=s) for s in range(2)], _token_data(seed=9))
    module = BagOfTokens()
    before = module.embed.weight.detach()[PAD].clone()
    trainer = FederatedTrainer(module, data, FedMRN(), MaskingConfig(kind=kind), rounds=2, clients_per_round=2, threads=1)
    trainer.fit()
    assert torch.equal(trainer.global_state["embed.weight"][PAD], before)
