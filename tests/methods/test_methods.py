"""Every baseline end to end: it learns, its payload bits match its formula, EF state survives resumes and ranks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from fedmrn_pl.callbacks import FederatedCallback
from fedmrn_pl.callbacks.checkpoint import load_checkpoint
from fedmrn_pl.compressed import SignScale, Sparse
from fedmrn_pl.experiment import build_trainer, run_experiment
from fedmrn_pl.methods.compression import decode_residual, encode_residual
from fedmrn_pl.methods.functional import padded_length

from .conftest import fit_on_two_ranks_and_one
from fedmrn_pl.wire import decode_update, describe_payload
from fedmrn_pl.wire.value_coding import index_bits

ROOT = Path(__file__).resolve().parents[2]

# (method, extra overrides, accuracy it must beat; chance is 0.1). Fixed seeds: the runs are deterministic.
LEARNS = [
    ("signsgd", [], 0.15),
    ("ef_signsgd", [], 0.15),
    ("stoch1bit", [], 0.5),
    ("eden", [], 0.6),
    ("topk", ["method.topk.fraction=0.1"], 0.2),
]


@pytest.mark.slow
@pytest.mark.parametrize("method, extra, floor", LEARNS, ids=[m for m, _, _ in LEARNS])
def test_each_baseline_learns_above_chance(tiny_config, method, extra, floor):
    summary = run_experiment(tiny_config(f"method.name={method}", "train.rounds=4", "train.local_epochs=3", *extra))
    assert summary["method"] == method
    assert summary["final_test_accuracy"] > floor
    assert summary["uplink_compression"] > 5  # dense float32 is 32 bits per parameter


class PayloadTap(FederatedCallback):
    """Keeps the real payloads (MaskPacking runs last, so they are filled in by now on the server)."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []

    def on_aggregate_start(self, trainer, server_round, results):
        self.payloads += [r.payload for r in results if r.payload is not None]


def _payloads(tiny_config, *overrides: str) -> tuple[list[bytes], dict[str, torch.Tensor]]:
    tap = PayloadTap()
    trainer = build_trainer(tiny_config("train.rounds=1", *overrides), [tap])
    state = dict(trainer.global_state)
    trainer.fit()
    return tap.payloads, state


def _body_bits(payload: bytes) -> float:
    """Bits of a payload's compressed or mask bodies: no header, manifest, checksum or dense tensors (BN)."""
    dense = set(decode_update(payload).dense)
    return 8 * sum(t["body_bytes"] for t in describe_payload(payload)["tensors"] if t["name"] not in dense)


@pytest.mark.parametrize("method", ["signsgd", "ef_signsgd", "stoch1bit"])
def test_sign_methods_spend_one_bit_per_parameter_plus_a_float_per_tensor(tiny_config, method):
    payloads, state = _payloads(tiny_config, f"method.name={method}")
    update = decode_update(payloads[0])
    params = sum(state[name].numel() for name in update.compressed)
    tensors = len(update.compressed)
    assert update.compressed and all(isinstance(t, SignScale) for t in update.compressed.values())
    assert not set(update.dense) & {n for n in state if n.endswith(".weight") and state[n].dim() > 1}
    expected = params + sum(7 - (state[n].numel() - 1) % 8 for n in update.compressed) + 32 * tensors  # byte padding
    assert _body_bits(payloads[0]) == expected
    assert _body_bits(payloads[0]) / params == pytest.approx(1 + 32 * tensors / params, abs=8 * tensors / params)


def test_eden_spends_one_bit_per_rotated_coordinate_plus_a_scale(tiny_config):
    payloads, state = _payloads(tiny_config, "method.name=eden")
    update = decode_update(payloads[0])
    rotated = sum(padded_length(state[name].numel()) for name in update.compressed)  # whole bytes: powers of 2 >= 8
    assert _body_bits(payloads[0]) == rotated + 32 * len(update.compressed)


@pytest.mark.parametrize("fraction", [0.01, 0.1])
def test_topk_spends_k_times_32_plus_index_bits(tiny_config, fraction):
    payloads, state = _payloads(tiny_config, "method.name=topk", f"method.topk.fraction={fraction}")
    update = decode_update(payloads[0])
    expected = 0
    for name, tensor in update.compressed.items():
        assert isinstance(tensor, Sparse)
        numel = state[name].numel()
        k = max(1, math.ceil(fraction * numel))
        assert tensor.values.numel() == k
        expected += 8 * math.ceil(k * (32 + index_bits(numel)) / 8) - 0  # values 32 bits, indices packed
    # the values fill whole bytes; only the index bits are padded to a byte
    assert _body_bits(payloads[0]) == sum(
        32 * t.values.numel() + 8 * math.ceil(t.values.numel() * index_bits(state[n].numel()) / 8)
        for n, t in update.compressed.items()
    )
    assert _body_bits(payloads[0]) == pytest.approx(expected, abs=8 * len(update.compressed))


def test_fedmrn_spends_about_one_bit_per_parameter(tiny_config):
    payloads, state = _payloads(tiny_config, "method.name=fedmrn", "method.mask_encoding=packed")
    update = decode_update(payloads[0])
    params = sum(state[n].numel() for n in update.masks)
    assert 1.0 <= _body_bits(payloads[0]) / params < 1.0 + 8 * len(update.masks) / params


def test_residuals_round_trip_through_the_wire_format():
    residual = {"a.weight": torch.randn(3, 4), "b.weight": torch.randn(5)}
    back = decode_residual(encode_residual(residual))
    assert all(torch.equal(back[n], residual[n]) for n in residual)
    assert decode_residual(None) == {}


def test_error_feedback_residuals_are_kept_by_the_server_and_survive_a_resume(tiny_config):
    full = build_trainer(tiny_config("method.name=ef_signsgd", "train.rounds=3", out="full"))
    full.fit()
    assert len(full.client_states) and all(isinstance(full.client_states.get(c), bytes) for c in full.client_states)
    first_config = tiny_config("method.name=ef_signsgd", "train.rounds=2", out="first")
    run_experiment(first_config)
    resumed = build_trainer(tiny_config("method.name=ef_signsgd", "train.rounds=3", out="resumed"))
    resumed.load_state_dict(load_checkpoint(first_config.output_dir))
    resumed.fit()
    assert set(resumed.client_states) == set(full.client_states)
    for name, tensor in full.global_state.items():
        assert torch.equal(resumed.global_state[name], tensor), name


def test_error_feedback_changes_what_is_sent(tiny_config):
    plain = build_trainer(tiny_config("method.name=signsgd", out="plain"))
    plain.fit()
    ef = build_trainer(tiny_config("method.name=ef_signsgd", out="ef"))
    ef.fit()
    assert not plain.client_states
    assert any(not torch.equal(plain.global_state[n], ef.global_state[n]) for n in plain.global_state)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ef_signsgd", "fedpm"])
def test_method_under_torchrun_equals_one_process(tmp_path, method):
    """Clients change ranks between rounds; EF residuals travel with the requests and FedPM's
    frozen weights come from the run seed on every rank, so results match."""
    overrides = ["data.name=digits", "data.num_clients=6", "train.clients_per_round=4", "train.rounds=3",
                 "train.local_epochs=1", "progress=false", f"method.name={method}"]  # fmt: skip
    ranks, one = fit_on_two_ranks_and_one(tmp_path, overrides)
    assert ranks["world_size"] == 2 and ranks["global_model_sha256"] == one["global_model_sha256"]


def test_a_mask_packing_listed_before_the_compressor_still_encodes_last():
    """The wire's order is the trainer's: a MaskPacking given first runs after the compressor anyway, and a
    user's hook listed after the compressor still sees the trained weights, before the compressor."""
    from fedmrn_pl import ClassificationTask, FederatedDataModule, FederatedTrainer, build_model
    from fedmrn_pl.callbacks import FederatedCallback, MaskPacking, SeedSync
    from fedmrn_pl.methods import build_method

    class SeesWeights(FederatedCallback):
        seen: list = []

        def on_client_fit_end(self, trainer, result):
            self.seen.append(sorted(result.update.compressed) if result.update.compressed else "dense")

    data = FederatedDataModule("digits", num_clients=4, seed=0)
    data.setup()
    module = ClassificationTask(build_model("cnn4", in_channels=1, num_classes=10, image_size=8, seed=0), 10)
    parts = build_method("signsgd", module)
    packing, seeds, user = MaskPacking(), SeedSync(), SeesWeights()
    trainer = FederatedTrainer(module, data, parts.strategy, None, rounds=1, clients_per_round=2,
                               callbacks=[packing, *parts.callbacks, user, seeds])  # fmt: skip
    assert trainer.callbacks[0] is seeds and trainer.callbacks[-1] is packing
    assert trainer.callbacks.index(user) < trainer.callbacks.index(parts.callbacks[0])
    (metrics,) = trainer.fit()
    assert metrics["accepted_clients"] == 2 and not metrics["dropped_clients"]
    assert user.seen == ["dense", "dense"]
