"""The federated loop end to end on real (scikit-learn digits) data."""

import json

import pytest
import torch

from fedmrn_pl.callbacks import FederatedCallback
from fedmrn_pl.experiment import build_trainer, run_experiment
from fedmrn_pl.report import global_model_sha256
from fedmrn_pl.wire import decode_update

LEARNING = ("train.rounds=4", "train.local_epochs=3")


class PayloadTap(FederatedCallback):
    """Keeps every payload the clients send."""

    def __init__(self):
        self.payloads = []

    def on_client_fit_end(self, trainer, result):
        self.payloads.append(result)  # its payload is filled in by MaskPacking, which runs last


@pytest.mark.slow
def test_fedmrn_learns_digits_well_above_chance(small_config):
    summary = run_experiment(small_config(*LEARNING))
    assert summary["final_test_accuracy"] > 0.6  # chance is 0.1
    assert summary["rounds"] == 4 and len(summary["per_round"]) == 4


@pytest.mark.slow
def test_fedavg_learns_digits_well_above_chance(small_config):
    summary = run_experiment(small_config(*LEARNING, "method.name=fedavg", "train.lr=0.03", "method.dense_encoding=raw"))
    assert summary["final_test_accuracy"] > 0.6
    assert summary["uplink_compression"] < 1.01


def test_metrics_json_has_the_documented_fields(small_config, tmp_path):
    config = small_config("train.rounds=2")
    summary = run_experiment(config)
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in (
        "method",
        "final_test_accuracy",
        "best_test_accuracy",
        "rounds",
        "uplink_bytes",
        "dense_uplink_bytes",
        "uplink_compression",
        "downlink_bytes",
        "wall_seconds",
        "global_model_sha256",
        "per_round",
    ):
        assert key in written, key
    assert written["method"] == "fedmrn-binary"
    assert written["uplink_bytes"] == sum(r["uplink/bytes"] for r in written["per_round"])
    assert written["global_model_sha256"] == summary["global_model_sha256"]
    assert written["partition"]["num_clients"] == 10 and sum(written["partition"]["client_sizes"]) == 1437


def test_uplink_bytes_are_the_real_payload_sizes_and_near_the_bound(small_config):
    tap = PayloadTap()
    trainer = build_trainer(small_config("train.rounds=1"), callbacks=[tap])
    history = trainer.fit()
    assert history[0]["uplink/bytes"] == sum(len(job.payload) for job in tap.payloads)
    masked = sum(trainer.global_state[name].numel() for name in trainer.masked_names)
    dense = sum(t.numel() * t.element_size() for n, t in trainer.global_state.items() if n not in trainer.masked_names)
    bound = (masked * 4 + dense) / (masked / 8 + dense)
    assert history[0]["uplink/compression"] > 0.97 * bound
    update = decode_update(tap.payloads[0].payload, trainer.expected_manifest, server_round=1)
    assert set(update.masks) == set(trainer.masked_names)


def test_float16_dense_option_shrinks_the_payload(small_config):
    full = build_trainer(small_config("train.rounds=1")).fit()[0]
    half = build_trainer(small_config("train.rounds=1", "method.dense_dtype=float16")).fit()[0]
    assert half["uplink/bytes"] < full["uplink/bytes"]
    assert half["uplink/compression"] > full["uplink/compression"]


def test_same_config_and_seed_give_the_same_global_model(small_config):
    first = build_trainer(small_config("train.rounds=2"))
    first.fit()
    second = build_trainer(small_config("train.rounds=2"))
    second.fit()
    third = build_trainer(small_config("train.rounds=2", "seed=1"))
    third.fit()
    assert global_model_sha256(first.global_state) == global_model_sha256(second.global_state)
    assert global_model_sha256(first.global_state) != global_model_sha256(third.global_state)


@pytest.mark.parametrize(
    "overrides",
    [
        ("method.mask=signed",),
        ("method.noise=gauss",),
        ("method.noise=bernoulli",),
        ("method.schedule=cosine",),
        ("data.partition=dirichlet", "data.beta=0.3", "data.min_size=5"),
        ("data.partition=label_count", "data.labels_per_client=2"),
        ("model.name=mlp",),
    ],
)
def test_variants_run_and_change_the_model(small_config, overrides):
    trainer = build_trainer(small_config("train.rounds=1", *overrides))
    before = {k: v.clone() for k, v in trainer.global_state.items()}
    history = trainer.fit()
    assert history[0]["accepted_clients"] == 4
    changed = [k for k in trainer.masked_names if not torch.equal(before[k], trainer.global_state[k])]
    assert changed == trainer.masked_names


class AcceptedTap(FederatedCallback):
    """Keeps the results the server aggregated, per round."""

    def __init__(self):
        self.rounds = []

    def on_aggregate_end(self, trainer, server_round, accepted):
        self.rounds.append(list(accepted))


def test_per_client_figures_are_weighted_by_sample_counts_like_aggregation(small_config):
    tap = AcceptedTap()
    trainer = build_trainer(small_config("data.partition=dirichlet", "data.beta=0.3", "train.rounds=2"), [tap])
    history = trainer.fit()
    for accepted, metrics in zip(tap.rounds, history):
        counts = [result.request.num_examples for result in accepted]
        assert len(set(counts)) > 1  # unequal clients, or the test shows nothing
        for key, values in (
            ("train/loss", [result.train_loss for result in accepted]),
            ("mask/mask_ones_fraction", [result.stats["mask_ones_fraction"] for result in accepted]),
        ):
            weighted = sum(v * n for v, n in zip(values, counts)) / sum(counts)
            assert metrics[key] == pytest.approx(weighted, rel=1e-9)
            assert metrics[key] != pytest.approx(sum(values) / len(values), rel=1e-9)
