"""Per-tensor noise scales: the server sets them from the clients' reports, clients train with them, payloads carry them."""

import logging
import math

import numpy as np
import pytest
import torch

from fedmrn_pl import ClassificationTask, FederatedDataModule, FederatedTrainer, FedMRN, MaskingConfig, NoiseSpec, build_model
from fedmrn_pl.callbacks import FederatedCallback
from fedmrn_pl.masking import MAX_NOISE_SCALE, as_wire_scale, next_noise_scales, tensor_rms
from fedmrn_pl.wire import decode_update


def test_next_scales_are_the_factor_times_the_weighted_mean_report_capped_and_float32():
    reports = [{"a": 1.0, "b": 0.5}, {"a": 3.0}]
    scales = next_noise_scales(reports, [0.25, 0.75], factor=2.0, previous={"c": 0.125}, caps={"b": 0.1})
    assert scales["a"] == as_wire_scale(2.0 * (0.25 * 1.0 + 0.75 * 3.0))  # both clients report a
    assert scales["b"] == as_wire_scale(0.1)  # only the first reports b (2 x 0.5 = 1.0), capped at 0.1
    assert scales["c"] == 0.125  # nobody reported c: kept
    assert all(float(np.float32(value)) == value for value in scales.values())


def test_scales_stay_in_range_and_bad_factors_are_refused():
    assert next_noise_scales([{"a": 0.0}], [1.0], factor=5.0)["a"] > 0  # a tensor nobody moved keeps a tiny scale
    assert as_wire_scale(1e30) == as_wire_scale(MAX_NOISE_SCALE)
    with pytest.raises(ValueError, match="scale factor must be a finite number > 0"):
        next_noise_scales([], [], factor=0.0)
    with pytest.raises(ValueError, match="scale_cap must be a finite number > 0"):
        MaskingConfig(scale_cap=float("nan"))
    with pytest.raises(ValueError, match="noise scale 'relative' is not valid; choose one of"):
        MaskingConfig(noise_scale="relative")
    assert tensor_rms(torch.tensor([3.0, -4.0])) == pytest.approx(math.sqrt(12.5))


class Payloads(FederatedCallback):
    def __init__(self):
        self.by_round: dict[int, list[bytes]] = {}

    def on_aggregate_start(self, trainer, server_round, results):
        self.by_round[server_round] = [r.payload for r in results if r.payload is not None]


def _trainer(masking, rounds=3, callbacks=()):
    data = FederatedDataModule("digits", num_clients=4, seed=0)
    data.setup()
    module = ClassificationTask(build_model("mlp", in_channels=1, num_classes=10, image_size=8, seed=0), 10, lr=0.1)
    return FederatedTrainer(module, data, FedMRN(), masking, rounds=rounds, clients_per_round=2, local_epochs=1,
                            batch_size=32, callbacks=list(callbacks), threads=1)  # fmt: skip


def test_adaptive_runs_issue_each_tensor_its_own_scale_and_payloads_carry_it():
    tap = Payloads()
    trainer = _trainer(MaskingConfig(), callbacks=[tap])
    history = trainer.fit()
    first = [decode_update(p) for p in tap.by_round[1]]
    assert all(update.noise_scales == {} for update in first)  # round 1: alpha
    issued = history[0]["next_noise_scales"]
    assert set(issued) == set(trainer.masked_names) and len(set(issued.values())) == len(issued)  # one per tensor
    for update in first:  # the server's rule, recomputed from what the payloads say
        assert all(update.update_rms[name] > 0 for name in trainer.masked_names)
    weights = [u.num_examples / sum(v.num_examples for v in first) for u in first]
    uncapped = next_noise_scales([u.update_rms for u in first], weights, factor=5.0)
    assert all(issued[n] <= uncapped[n] for n in issued)
    second = [decode_update(p) for p in tap.by_round[2]]
    assert all(update.noise_scales == issued for update in second)
    assert history[-1]["mask/relative_update"] > 0


def test_absolute_runs_keep_alpha_everywhere():
    tap = Payloads()
    history = _trainer(MaskingConfig(kind="binary", noise_scale="absolute"), callbacks=[tap]).fit()
    assert all("next_noise_scales" not in record for record in history)
    assert all(decode_update(p).noise_scales == {} for p in tap.by_round[3])


def test_noise_too_small_for_the_steps_is_warned_about_once(caplog):
    tiny = MaskingConfig(kind="binary", noise=NoiseSpec("uniform", 1e-5), noise_scale="absolute")
    with caplog.at_level(logging.WARNING, logger="fedmrn_pl"):
        history = _trainer(tiny).fit()
    warnings = [r.getMessage() for r in caplog.records if "further than the noise allows" in r.getMessage()]
    assert len(warnings) == 1 and "noise_scale='adaptive'" in warnings[0]
    assert history[0]["mask/clipped_fraction"] > 0.5 and history[0]["mask/relative_update"] < 1e-3
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fedmrn_pl"):
        _trainer(MaskingConfig()).fit()  # adaptive noise follows the steps: no warning
    assert not [r for r in caplog.records if "further than the noise allows" in r.getMessage()]
