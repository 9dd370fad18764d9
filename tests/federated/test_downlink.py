"""Masks downlink: clients rebuild the server's model bit for bit from round messages."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from fedmrn_pl.callbacks import FederatedCallback
from fedmrn_pl.config import load_config
from fedmrn_pl.experiment import build_trainer
from fedmrn_pl.federated.downlink import Delivery, DownlinkError, DownlinkReceiver, ServerDownlink, rebuild_global
from fedmrn_pl.federated.strategies import FedMRN
from fedmrn_pl.report import global_model_sha256
from fedmrn_pl.wire import PayloadError
from fedmrn_pl.wire.round_message import ROUND_HEADER_SIZE, decode_round_message, encode_round_message

SHA = bytes(range(32))
STATE = {"w": torch.zeros(100)}  # 400 dense bytes


# ------------------------------------------------------------------ round message


def test_round_message_round_trips():
    message = encode_round_message(7, SHA, [b"abc", b"", b"x" * 100])
    decoded = decode_round_message(message)
    assert (decoded.server_round, decoded.model_sha256, decoded.payloads) == (7, SHA, (b"abc", b"", b"x" * 100))
    assert len(message) == ROUND_HEADER_SIZE + 3 * 8 + 103 + 16
    assert decode_round_message(encode_round_message(3, SHA, [])).payloads == ()


def _reseal(content: bytes) -> bytes:
    return content + hashlib.blake2b(content, digest_size=16).digest()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: m[:-1], "checksum mismatch"),
        (lambda m: m[:20], "truncated at byte 20"),
        (lambda m: b"XXXX" + m[4:], "bad round message magic"),
        (lambda m: _reseal(m[:4] + b"\x02\x00" + m[6:-16]), "unsupported round message version 2"),
        (lambda m: _reseal(m[:6] + b"\x01\x00" + m[8:-16]), "unsupported round message flags 0x0001"),
        (lambda m: _reseal(m[:-16] + b"\x00"), "1 trailing bytes after its 1 payloads"),
        (lambda m: _reseal(m[:-17]), "payload #0 needs 3 bytes, only 2 left"),
        (lambda m: _reseal(m[:48] + b"\x05\x00\x00\x00" + m[52:-16]), "need 8 bytes for payload #1's length"),
    ],
)
def test_bad_round_messages_raise_payload_error(mutate, message):
    with pytest.raises(PayloadError, match=message):
        decode_round_message(mutate(encode_round_message(1, SHA, [b"abc"])))


def test_round_message_size_limit_and_field_checks():
    with pytest.raises(PayloadError, match="exceeds the limit of 10 bytes"):
        decode_round_message(encode_round_message(1, SHA, []), max_bytes=10)
    with pytest.raises(ValueError, match="model_sha256 must be 32 raw bytes, got 3"):
        encode_round_message(1, b"abc", [])
    with pytest.raises(ValueError, match=r"server_round must be an int in \[0, 2\*\*64\), got -1"):
        encode_round_message(-1, SHA, [])


def test_round_message_byte_flips_are_refused_or_harmless():
    message = encode_round_message(2, SHA, [b"payload-one", b"two"])
    rng = np.random.default_rng(5)
    for _ in range(300):
        data = bytearray(message)
        data[int(rng.integers(len(data)))] ^= int(rng.integers(1, 256))
        with pytest.raises(PayloadError):
            decode_round_message(bytes(data))


# ------------------------------------------------------------------ server decisions


def test_clients_get_dense_first_then_only_the_messages_they_missed():
    server = ServerDownlink("masks", dense_sync_every=2)
    assert server.deliver(1, [0, 1], STATE) == 800  # nobody synced yet
    server.record(1, [b"a" * 10], STATE)
    assert server.deliver(2, [0, 2], STATE) == len(server.messages[1]) + 400
    assert [len(d.messages) for d in server.deliveries] == [1, 0] and server.deliveries[1].dense_state is STATE
    server.record(2, [], STATE)
    server.record(3, [b"b"], STATE)
    server.deliver(4, [0, 1], STATE)  # client 0 holds round 1 (missed 2), client 1 round 0 (missed 3 > 2)
    assert [len(d.messages) for d in server.deliveries] == [2, 0]
    assert server.deliveries[1].dense_state is STATE
    assert sorted(server.messages) == [2, 3]  # older messages are no longer needed


def test_messages_larger_than_the_model_are_replaced_by_the_model():
    server = ServerDownlink("masks", dense_sync_every=5)
    server.deliver(1, [0], STATE)
    server.record(1, [b"x" * 500], STATE)
    assert server.deliver(2, [0], STATE) == 400 and server.deliveries[0].dense_state is STATE


def test_dense_mode_always_sends_the_model_and_keeps_nothing():
    server = ServerDownlink("dense")
    assert server.deliver(1, [0, 1, 2], STATE) == 1200
    assert server.record(1, [b"a"], STATE) is None
    assert server.deliver(2, [0], STATE) == 400 and server.synced == {} and server.messages == {}


def test_server_state_survives_a_weights_only_checkpoint(tmp_path):
    server = ServerDownlink("masks", dense_sync_every=3)
    server.deliver(1, [4, 7], STATE)
    server.record(1, [b"abc"], STATE)
    torch.save(server.state_dict(), tmp_path / "s.pt")
    restored = ServerDownlink("masks", dense_sync_every=3)
    restored.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert (restored.synced, restored.messages) == (server.synced, server.messages)


def test_bad_settings_name_the_valid_values():
    with pytest.raises(ValueError, match=r"downlink 'sparse' is not valid; choose one of \['dense', 'masks'\]"):
        ServerDownlink("sparse")
    with pytest.raises(ValueError, match="dense_sync_every must be an int >= 1, got 0"):
        ServerDownlink("masks", dense_sync_every=0)


def test_receiver_keeps_the_model_on_an_empty_round_and_refuses_gaps_and_wrong_digests():
    receiver = DownlinkReceiver(FedMRN(), {})
    receiver.sync(STATE, 3)
    receiver.apply(encode_round_message(4, bytes.fromhex(global_model_sha256(STATE)), []))
    assert receiver.server_round == 4 and torch.equal(receiver.state["w"], STATE["w"])
    assert rebuild_global(FedMRN(), 5, STATE, []) == STATE
    with pytest.raises(DownlinkError, match=r"round message for round 6 does not follow the held model \(round 4\)"):
        receiver.apply(encode_round_message(6, SHA, []))
    with pytest.raises(DownlinkError, match="round 5: the rebuilt model's sha256 .* differs from the server's"):
        receiver.apply(encode_round_message(5, SHA, []))
    with pytest.raises(DownlinkError, match="client 9 holds the model of round 4, round 7 needs round 6's"):
        receiver.receive(Delivery(9, 7, 0))


# ------------------------------------------------------------------ end to end


class ClientReplicas(FederatedCallback):
    """Every client's own model copy, kept only from its downloads; checked against the server's each round."""

    def __init__(self):
        self.receivers: dict[int, DownlinkReceiver] = {}
        self.checked = {"dense": 0, "messages": 0}

    def on_round_start(self, trainer, server_round, client_ids):
        assert [d.client_id for d in trainer.downlink.deliveries] == client_ids
        for delivery in trainer.downlink.deliveries:
            receiver = self.receivers.setdefault(
                delivery.client_id, DownlinkReceiver(trainer.strategy, trainer.expected_manifest)
            )
            rebuilt = receiver.receive(delivery)
            assert global_model_sha256(rebuilt) == global_model_sha256(trainer.global_state)
            self.checked["dense" if delivery.dense_state is not None else "messages"] += 1


FAST = ("train.rounds=5", "data.num_clients=6", "train.clients_per_round=3", "method.dense_sync_every=2")


def _config(tmp_path, *overrides):
    return load_config(None, ["data.name=digits", "train.local_epochs=1", "train.batch_size=16",
                              f"output_dir={tmp_path}", *FAST, *overrides])  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same 5 rounds with dense and with masks downlink (the latter with per-client replicas)."""
    dense = build_trainer(_config(tmp_path_factory.mktemp("dense")))
    dense.fit()
    replicas = ClientReplicas()
    masks = build_trainer(_config(tmp_path_factory.mktemp("masks"), "method.downlink=masks"), callbacks=[replicas])
    masks.fit()
    return dense, masks, replicas


def test_masks_downlink_rebuilds_the_servers_model_and_sends_fewer_bytes(runs):
    dense, masks, replicas = runs
    assert global_model_sha256(masks.global_state) == global_model_sha256(dense.global_state)
    assert replicas.checked["messages"] > 0 and replicas.checked["dense"] > 0
    model_bytes = sum(t.numel() * t.element_size() for t in masks.global_state.values())
    assert [r["downlink/bytes"] for r in dense.history] == [3 * model_bytes] * 5
    assert masks.history[0]["downlink/bytes"] == 3 * model_bytes  # nobody holds a model yet
    assert masks.summary["downlink_bytes"] == sum(r["downlink/bytes"] for r in masks.history)
    assert masks.summary["downlink_bytes"] < dense.summary["downlink_bytes"]
    assert [r["test/acc"] for r in masks.history] == [r["test/acc"] for r in dense.history]


def test_resumed_masks_run_sends_the_same_bytes_and_rebuilds_the_same_model(runs, tmp_path):
    dense, masks, _ = runs
    replicas = ClientReplicas()  # the clients keep their models while the server restarts
    first = build_trainer(_config(tmp_path, "method.downlink=masks", "train.rounds=3"), callbacks=[replicas])
    first.fit()
    torch.save(first.state_dict(), tmp_path / "checkpoint.pt")
    resumed = build_trainer(_config(tmp_path, "method.downlink=masks"), callbacks=[replicas])
    resumed.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=True))
    resumed.fit()
    assert global_model_sha256(resumed.global_state) == global_model_sha256(dense.global_state)
    assert [r["downlink/bytes"] for r in resumed.history] == [r["downlink/bytes"] for r in masks.history]
    assert replicas.checked["messages"] > 0


def test_fedpm_with_a_per_round_posterior_goes_through_the_masks_downlink(tmp_path):
    """With the posterior reset every round (the authors' code) FedPM's aggregate needs only the round's masks."""
    replicas = ClientReplicas()
    settings = ("method.name=fedpm", "method.downlink=masks", "method.fedpm.reset_every=1")
    trainer = build_trainer(_config(tmp_path, *settings), callbacks=[replicas])
    trainer.fit()
    assert replicas.checked["messages"] > 0  # clients rebuilt theta from round messages, sha checked each round
    model_bytes = trainer.history[0]["downlink/bytes"] // 3
    assert trainer.summary["downlink_bytes"] < 5 * 3 * model_bytes


def test_adaptive_noise_scales_go_through_the_masks_downlink_and_give_the_dense_runs_model(tmp_path):
    """Per-tensor scales ride in each payload, so replaying the round messages rebuilds the server's model."""
    adaptive = ("method.mask=signed", "method.noise_scale=adaptive", "train.rounds=4")
    dense = build_trainer(_config(tmp_path / "dense", *adaptive))
    dense.fit()
    replicas = ClientReplicas()
    masks = build_trainer(_config(tmp_path / "masks", *adaptive, "method.downlink=masks"), callbacks=[replicas])
    masks.fit()
    assert replicas.checked["messages"] > 0
    assert "next_noise_scales" in masks.history[0] and masks.issued_noise_scales
    assert global_model_sha256(masks.global_state) == global_model_sha256(dense.global_state)
