"""FedPM end to end: it learns, it uploads ~1 bit per masked parameter, its payload survives the wire."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from fedmrn_pl.callbacks import FederatedCallback
from fedmrn_pl.config import ConfigError, load_config
from fedmrn_pl.experiment import build_trainer, run_experiment
from fedmrn_pl.federated.sampling import sample_clients
from fedmrn_pl.methods.fedpm import (
    BernoulliMask, FedPM, FedPMSettings, FedPMTraining, frozen_random_weights, init_fedpm
)
from fedmrn_pl.update import ClientUpdate, NoiseSpec
from fedmrn_pl.wire import decode_update, describe_payload, encode_update


class PayloadTap(FederatedCallback):
    """Keeps the real payloads the server receives."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []

    def on_aggregate_start(self, trainer, server_round, results):
        self.payloads += [r.payload for r in results if r.payload is not None]


@pytest.mark.slow
@pytest.mark.parametrize(
    "optimizer, rounds, floor",
    [("task", 4, 0.5), ("adam", 6, 0.4)],  # chance is 0.1; measured 0.847 and 0.794
)
def test_fedpm_learns_above_chance(tiny_config, optimizer, rounds, floor):
    summary = run_experiment(
        tiny_config("method.name=fedpm", f"method.fedpm.optimizer={optimizer}", f"train.rounds={rounds}", "train.local_epochs=2")
    )
    assert summary["method"] == "fedpm"
    assert summary["final_test_accuracy"] > floor
    assert summary["uplink_compression"] > 20


def _run(tiny_config, *overrides: str) -> tuple[list[bytes], dict[str, torch.Tensor], object]:
    tap = PayloadTap()
    trainer = build_trainer(tiny_config("method.name=fedpm", "train.rounds=1", *overrides), [tap])
    state = dict(trainer.global_state)
    trainer.fit()
    return tap.payloads, state, trainer


def test_fedpm_uploads_one_bit_per_masked_parameter_packed(tiny_config):
    payloads, state, _ = _run(tiny_config, "method.mask_encoding=packed")
    update = decode_update(payloads[0])
    assert update.masks and not update.compressed
    params = sum(state[name].numel() for name in update.masks)
    bits = 8 * sum(t["body_bytes"] for t in describe_payload(payloads[0])["tensors"] if t["name"] in update.masks)
    assert bits / params == pytest.approx(1.0, abs=8 * len(update.masks) / params)  # byte padding per tensor


def test_fedpm_payload_round_trips_and_global_model_is_expected_mask(tiny_config):
    payloads, state, trainer = _run(tiny_config)
    for payload in payloads:
        update = decode_update(payload, trainer.expected_manifest)
        assert encode_update(update) == payload
    # the first global model holds w_rand * 0.5; after a round, w_rand * posterior mode: the clipped votes' mean
    name = next(iter(decode_update(payloads[0]).masks))
    frozen = frozen_random_weights(0, name, state[name].shape)
    assert torch.allclose(state[name], frozen * 0.5)
    theta = trainer.global_state[name] / frozen
    ones = sum(decode_update(payload).masks[name].float() for payload in payloads)
    votes = ones * 0.98 + 0.01 * len(payloads)
    assert torch.allclose(theta, votes / len(payloads), atol=1e-6)
    assert 0.0099 < float(theta.min()) and float(theta.max()) < 0.9901


def _mask_update(name: str, client: int, mask: torch.Tensor) -> ClientUpdate:
    return ClientUpdate(1, client, 0, "binary", NoiseSpec(), 10, masks={name: mask})


def test_fedpm_posterior_mean_counts_and_resets():
    shape, name = (2, 3), "w"
    strategy = FedPM([name], run_seed=3, settings=FedPMSettings(reset_every=2, estimate="mean", vote_clip=0.0))
    state = {name: torch.zeros(shape)}
    ones, zeros = torch.ones(shape, dtype=torch.bool), torch.zeros(shape, dtype=torch.bool)
    frozen = frozen_random_weights(3, name, shape)
    new = strategy.aggregate(1, state, [_mask_update(name, 0, ones), _mask_update(name, 1, zeros)])
    assert torch.allclose(new[name] / frozen, torch.full(shape, 0.5))  # (1 + 1) / (2 + 2)
    new = strategy.aggregate(2, new, [_mask_update(name, 0, ones), _mask_update(name, 1, ones)])
    assert torch.allclose(new[name] / frozen, torch.full(shape, 4 / 6))  # counts carry over: (2 + 2) / (4 + 2)
    new = strategy.aggregate(3, new, [_mask_update(name, 0, ones)])
    assert torch.allclose(new[name] / frozen, torch.full(shape, 2 / 3))  # reset: (1 + 1) / (2 + 1)
    restored = FedPM([name], run_seed=3, settings=FedPMSettings(reset_every=2, estimate="mean", vote_clip=0.0))
    restored.load_state_dict(strategy.state_dict())
    assert torch.equal(restored.alpha[name], strategy.alpha[name])
    with pytest.raises(ValueError, match="made with estimate=mean, vote_clip=0.0; this run uses estimate=mode, vote_clip=0.01"):
        FedPM([name], run_seed=3, settings=FedPMSettings(reset_every=2)).load_state_dict(strategy.state_dict())


def test_fedpm_posterior_mode_is_the_clipped_vote_frequency_since_the_reset():
    shape, name = (4,), "w"
    strategy = FedPM([name], run_seed=3, settings=FedPMSettings(reset_every=2))  # mode, votes clipped to 0.01/0.99
    frozen = frozen_random_weights(3, name, shape)
    a = torch.tensor([1, 1, 0, 0], dtype=torch.bool)
    b = torch.tensor([1, 0, 1, 0], dtype=torch.bool)
    new = strategy.aggregate(1, {name: torch.zeros(shape)}, [_mask_update(name, 0, a), _mask_update(name, 1, b)])
    assert torch.allclose(new[name] / frozen, torch.tensor([0.99, 0.5, 0.5, 0.01]))  # never 0 or 1: finite logits
    new = strategy.aggregate(2, new, [_mask_update(name, 0, a)])  # three votes since the reset
    assert torch.allclose(new[name] / frozen, torch.tensor([0.99, (0.99 * 2 + 0.01) / 3, (0.99 + 0.02) / 3, 0.01]))


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(prior=0.5), "no posterior mode"),
        (dict(estimate="median"), "FedPM estimate 'median' is not valid; choose one of \\['mode', 'mean'\\]"),
        (dict(optimizer="sgd"), "choose one of \\['task', 'adam'\\]"),
        (dict(lr=0.0), "lr must be a finite number > 0"),
        (dict(vote_clip=0.5), "vote_clip must be in"),
        (dict(reset_every=0), "reset_every must be an int >= 1"),
    ],
)
def test_fedpm_settings_refuse_bad_values(settings, message):
    with pytest.raises(ValueError, match=message):
        FedPMSettings(**settings)


def test_fedpm_config_refuses_a_prior_without_a_mode():
    with pytest.raises(ConfigError, match="has no mode"):
        load_config(None, ["method.name=fedpm", "method.fedpm.prior=0.5"])
    load_config(None, ["method.name=fedpm", "method.fedpm.prior=0.5", "method.fedpm.estimate=mean"])
    load_config(None, ["method.name=fedmrn", "method.fedpm.prior=0.5"])  # not a FedPM run: the prior is unused


def test_fedpm_config_refuses_adam_on_half_precision_scores():
    with pytest.raises(ConfigError, match="train.precision=16-true is not valid with method.fedpm.optimizer=adam"):
        load_config(None, ["method.name=fedpm", "method.fedpm.optimizer=adam", "train.precision=16-true"])
    load_config(None, ["method.name=fedpm", "method.fedpm.optimizer=adam", "train.precision=16-mixed"])


class TinyNet(L.LightningModule):
    """A linear layer (masked by FedPM) and a BatchNorm (trained by the module's own SGD)."""

    def __init__(self, lr: float) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(8, 4, bias=False)
        self.norm = torch.nn.BatchNorm1d(4)
        self.lr = lr

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.norm(self.lin(x)), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class ScoreTap(L.Callback):
    """Reads FedPM's scores when training ends (before FedPM's teardown unwraps the module)."""

    def on_train_end(self, trainer, pl_module):
        self.scores = pl_module.lin.parametrizations.weight[0].scores.detach().clone()


def _local_fit(optimizer: str, lr: float) -> tuple[torch.Tensor, torch.Tensor, TinyNet]:
    """One local FedPM fit of TinyNet: (scores at the start, scores at the end, module)."""
    torch.manual_seed(0)
    module = TinyNet(lr)
    init_fedpm(module, ["lin.weight"], run_seed=0)
    training = FedPMTraining(["lin.weight"], run_seed=0, settings=FedPMSettings(optimizer=optimizer))
    training.request = (1, 0)
    tap = ScoreTap()
    start = BernoulliMask(frozen_random_weights(0, "lin.weight", (4, 8)), torch.full((4, 8), 0.5)).scores.detach()
    if optimizer == "task":
        start = start * (frozen_random_weights(0, "lin.weight", (4, 8)).abs() / training.settings.gain)
    data = torch.utils.data.TensorDataset(torch.randn(64, 8), torch.randint(0, 4, (64,)))
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[training, tap],
    )  # fmt: skip
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=16))
    return start, tap.scores, module


def test_fedpm_adam_trains_the_scores_and_the_module_optimizer_the_rest():
    """Module SGD at lr 1e-12: only Adam can move the scores; BatchNorm's weight still moves under SGD at 0.1."""
    start, end, _ = _local_fit("adam", lr=1e-12)
    assert float((end - start).abs().max()) > 0.1  # ~lr 0.1 per Adam step, 4 steps
    start, end, _ = _local_fit("task", lr=1e-12)
    assert float((end - start).abs().max()) < 1e-9  # control: without the Adam the scores stay put
    norm_before = torch.ones(4)
    _, _, module = _local_fit("adam", lr=0.1)
    assert not torch.equal(module.norm.weight.detach(), norm_before)
    assert not torch.nn.utils.parametrize.is_parametrized(module.lin) and module.lin.weight.requires_grad  # unwrapped


def test_frozen_weights_come_from_the_run_seed():
    a = frozen_random_weights(0, "layer.weight", (4, 3, 3, 3))
    assert torch.equal(a, frozen_random_weights(0, "layer.weight", (4, 3, 3, 3)))
    assert not torch.equal(a, frozen_random_weights(1, "layer.weight", (4, 3, 3, 3)))
    assert bool((a != 0).all())


def test_fedpm_refuses_the_masks_downlink_while_its_posterior_spans_rounds():
    # default: 20 clients, 5 per round -> the posterior lives 4 rounds, which no round message carries
    with pytest.raises(ConfigError, match="kept for 4 rounds: the round messages do not carry it; set method.fedpm.reset_every=1"):
        load_config(None, ["method.name=fedpm", "method.downlink=masks"])
    load_config(None, ["method.name=fedpm", "method.downlink=masks", "method.fedpm.reset_every=1"])
    load_config(None, ["method.name=fedpm", "method.downlink=masks", "data.num_clients=5"])  # full participation


def test_fedpm_posterior_survives_a_resume(tiny_config):
    # reset every 3 rounds: round 3 uses the counts of rounds 1-2, which only the checkpoint holds
    settings = ("method.name=fedpm", "method.fedpm.reset_every=3")
    full = build_trainer(tiny_config(*settings, "train.rounds=3", out="full"))
    full.fit()
    first = build_trainer(tiny_config(*settings, "train.rounds=2", out="first"))
    first.fit()
    resumed = build_trainer(tiny_config(*settings, "train.rounds=3", out="resumed"))
    resumed.load_state_dict(first.state_dict())
    resumed.fit()
    for name, tensor in full.global_state.items():
        assert torch.equal(resumed.global_state[name], tensor), name


def test_fedpm_adam_hook_skips_a_non_finite_gradient():
    from fedmrn_pl.methods.fedpm import _stepper

    scores = torch.nn.Parameter(torch.zeros(3))
    step = _stepper(torch.optim.Adam([scores], lr=0.1), check_finite=True)
    scores.grad = torch.tensor([1.0, float("inf"), 0.0])
    step(scores)
    assert torch.equal(scores.detach(), torch.zeros(3)) and scores.grad is None
    scores.grad = torch.tensor([1.0, -1.0, 0.0])
    step(scores)
    assert torch.allclose(scores.detach(), torch.tensor([-0.1, 0.1, 0.0])) and scores.grad is None


class CrashClient(FederatedCallback):
    """Makes one client's local training raise, once."""

    def __init__(self, client_id: int) -> None:
        self.client_id = client_id
        self.crashed = False

    def on_client_fit_start(self, trainer, request):
        if request.client_id == self.client_id and not self.crashed:
            self.crashed = True

            def crash(batch, batch_idx):
                raise RuntimeError("simulated client crash")

            trainer.module.training_step = crash

    def on_client_fit_end(self, trainer, result):
        trainer.module.__dict__.pop("training_step", None)


def test_a_crashing_fedpm_client_leaves_the_module_clean_for_the_next(tiny_config):
    """A fit that raises skips Lightning's teardown; FedPM must still remove its masks and hooks."""
    config = tiny_config("method.name=fedpm", "method.fedpm.optimizer=adam", "train.rounds=2")
    first_client = sample_clients(config.seed, 1, config.data.num_clients, config.train.clients_per_round)[0]
    crash = CrashClient(first_client)
    trainer = build_trainer(config, [crash])
    history = trainer.fit()
    assert crash.crashed
    assert [[d["client_id"] for d in r["dropped_clients"]] for r in history] == [[first_client], []]
    assert not any("parametrizations" in name for name in trainer.module.state_dict())


@pytest.mark.parametrize("reset_every, refused", [(3, True), (1, False)])
def test_the_python_api_refuses_the_masks_downlink_for_a_posterior_spanning_rounds(reset_every, refused):
    from fedmrn_pl import ClassificationTask, FederatedDataModule, FederatedTrainer, build_model
    from fedmrn_pl.methods import build_method

    data = FederatedDataModule("digits", num_clients=6, seed=0)
    data.setup()
    module = ClassificationTask(build_model("cnn4", in_channels=1, num_classes=10, image_size=8, seed=0), 10)
    parts = build_method("fedpm", module, reset_every=reset_every)

    def make() -> FederatedTrainer:
        return FederatedTrainer(module, data, parts.strategy, None, clients_per_round=2, callbacks=parts.callbacks, downlink="masks")

    if refused:
        with pytest.raises(ValueError, match="FedPM keeps server state across rounds .*set reset_every=1.*downlink='dense'"):
            make()
    else:
        assert make().downlink.mode == "masks"
