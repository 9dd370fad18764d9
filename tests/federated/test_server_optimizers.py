"""Server optimizers: the step each applies, their checkpointed moments, and where they are refused."""

from __future__ import annotations

import math

import pytest
import torch

from fedmrn_pl.config import ConfigError, load_config
from fedmrn_pl.experiment import run_experiment
from fedmrn_pl.federated.server_optimizers import (
    FedAdagrad,
    FedAdam,
    FedAvgM,
    FedYogi,
    PlainUpdate,
    build_server_optimizer,
)

PREVIOUS = {"w": torch.tensor([1.0, -2.0, 0.5]), "bn.running_mean": torch.tensor([0.0, 0.0])}
ROUNDS = [  # two rounds of aggregates
    {"w": torch.tensor([1.5, -2.0, 0.25]), "bn.running_mean": torch.tensor([1.0, 2.0])},
    {"w": torch.tensor([1.0, -1.0, 0.5]), "bn.running_mean": torch.tensor([3.0, 4.0])},
]


@pytest.mark.parametrize(
    "optimizer, kind, lr",
    [(FedAvgM(lr=0.5), "avgm", 0.5), (FedAdagrad(lr=0.1), "adagrad", 0.1), (FedAdam(lr=0.1), "adam", 0.1), (FedYogi(lr=0.1), "yogi", 0.1)],
)
def test_each_optimizer_steps_as_the_paper_writes_it_and_leaves_buffers_to_the_aggregate(optimizer, kind, lr):
    optimizer.setup(["w"])
    state = dict(PREVIOUS)
    for aggregate in ROUNDS:
        # A strategy's aggregate is a model: the pseudo-gradient is its difference from the current one.
        state = optimizer.step(state, dict(aggregate))
        assert torch.equal(state["bn.running_mean"], aggregate["bn.running_mean"])
    expected = _reference_from_states(kind, lr)
    assert torch.allclose(state["w"], torch.tensor(expected), rtol=1e-5, atol=1e-6)


def _reference_from_states(kind: str, lr: float) -> list[float]:
    """The paper's update in plain Python floats, each round's delta taken from the current model."""
    x, m, v, tau = [1.0, -2.0, 0.5], [0.0] * 3, [1e-6] * 3, 1e-3
    for aggregate in ROUNDS:
        for i, target in enumerate(aggregate["w"].tolist()):
            delta = target - x[i]
            if kind == "avgm":
                m[i] = 0.9 * m[i] + delta
                x[i] += lr * m[i]
                continue
            m[i] = 0.9 * m[i] + 0.1 * delta
            if kind == "adagrad":
                v[i] += delta**2
            elif kind == "adam":
                v[i] = 0.99 * v[i] + 0.01 * delta**2
            else:
                difference = v[i] - delta**2
                v[i] -= 0.01 * delta**2 * (difference > 0) - 0.01 * delta**2 * (difference < 0)
            x[i] += lr * m[i] / (math.sqrt(v[i]) + tau)
    return x


def test_the_plain_update_returns_the_aggregate_itself():
    plain = PlainUpdate()
    plain.setup(["w"])
    aggregate = dict(ROUNDS[0])
    assert plain.step(PREVIOUS, aggregate) is aggregate and plain.state_dict() == {}


def test_moments_round_trip_and_bad_ones_are_refused():
    adam = FedAdam(lr=0.1)
    adam.setup(["w"])
    adam.step(PREVIOUS, dict(ROUNDS[0]))
    again = FedAdam(lr=0.1)
    again.setup(["w"])
    again.load_state_dict(adam.state_dict())
    assert torch.equal(adam.step(PREVIOUS, dict(ROUNDS[1]))["w"], again.step(PREVIOUS, dict(ROUNDS[1]))["w"])
    bad = [
        ({"momentum": {"w": torch.zeros(3)}}, "'momentum' is not a moment of the adam server optimizer"),
        ({"m": {"x": torch.zeros(3)}}, "'x', which is not a trainable tensor"),
        ({"m": {"w": torch.zeros(3, dtype=torch.float64)}}, "must be a float32 tensor"),
        ({"m": {"w": torch.tensor([0.0, math.nan, 0.0])}}, "non-finite"),
    ]
    for state, words in bad:
        with pytest.raises(ValueError, match=words):
            _fresh_adam().load_state_dict(state)
    shaped = _fresh_adam()
    shaped.load_state_dict({"m": {"w": torch.zeros(4)}})
    with pytest.raises(ValueError, match=r"shape \(4,\), the model's tensor \(3,\)"):
        shaped.check_shapes(PREVIOUS)
    with pytest.raises(ValueError, match="keeps no state"):
        PlainUpdate().load_state_dict({"m": {}})


def _fresh_adam() -> FedAdam:
    adam = FedAdam()
    adam.setup(["w"])
    return adam


@pytest.mark.parametrize(
    "settings, words",
    [({"lr": 0.0}, "server lr must be a finite number > 0"), ({"beta1": 1.0}, r"server beta1 must be in \[0, 1\)"),
     ({"tau": -1.0}, "server tau must be a finite number > 0"), ({"momentum": 1.5}, "momentum")],
)  # fmt: skip
def test_bad_settings_are_refused_naming_them(settings, words):
    name = "avgm" if "momentum" in settings else "adam"
    with pytest.raises(ValueError, match=words):
        build_server_optimizer(name, **settings)
    with pytest.raises(ValueError, match="server optimizer 'sgd' is not valid; choose one of"):
        build_server_optimizer("sgd")


TINY = ["data.name=digits", "data.num_clients=6", "train.clients_per_round=3", "train.local_epochs=1", "progress=false"]


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["server.lr=0.1"], "server.lr=0.1 has no effect with server.optimizer=plain"),
        (["server.optimizer=adam", "server.beta2=1.0"], r"server.beta2=1.0 is not valid; it must be in \[0, 1\)"),
        (["server.optimizer=adam", "server.lr=-1"], "server.lr=-1.0 is not valid"),
        (["server.optimizer=adam", "method.name=fedpm"], "not valid with method.name=fedpm"),
        (["server.optimizer=yogi", "method.downlink=masks"], "not valid with method.downlink=masks"),
        (["server.optimizer=rmsprop"], "rmsprop"),
        (["train.proximal_mu=-0.1"], "train.proximal_mu=-0.1 is not valid"),
    ],
)
def test_configs_the_server_optimizer_cannot_run_are_refused_in_one_line(overrides, words):
    with pytest.raises(ConfigError, match=words) as error:
        load_config(None, [*TINY, *overrides])
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("method", ["fedmrn", "fedavg", "topk"])
def test_a_resumed_run_with_server_moments_equals_an_uninterrupted_one(tmp_path, method):
    common = [*TINY, f"method.name={method}", "server.optimizer=adam", "server.lr=0.01"]
    full = run_experiment(load_config(None, [*common, "train.rounds=3", f"output_dir={tmp_path / 'full'}"]))
    run_experiment(load_config(None, [*common, "train.rounds=2", f"output_dir={tmp_path / 'part'}"]))
    saved = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)["server_optimizer"]
    assert set(saved) == {"m", "v"} and saved["v"]
    resumed = run_experiment(load_config(None, [*common, "train.rounds=3", f"output_dir={tmp_path / 'part'}", f"resume={tmp_path / 'part'}"]))
    assert resumed["global_model_sha256"] == full["global_model_sha256"]
    plain = run_experiment(load_config(None, [*TINY, f"method.name={method}", "train.rounds=3", f"output_dir={tmp_path / 'plain'}"]))
    assert plain["global_model_sha256"] != full["global_model_sha256"]  # the optimizer did change the model
