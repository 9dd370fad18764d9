"""The downlink: what each sampled client downloads before it trains, and how it rebuilds the model.

``dense`` sends every sampled client the global model as float tensors. ``masks`` sends
a client that holds an earlier global model the round messages it missed (each round's
aggregated uplink payloads, see ``wire.round_message``); the client replays the
aggregation with :func:`rebuild_global`, the very function the server aggregates with,
so its model equals the server's bit for bit. A client gets the dense model instead when
it never synced, when it missed more than ``dense_sync_every`` rounds, or when the
messages it missed would be no smaller than the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from fedmrn_pl.federated.choices import DownlinkMode
from fedmrn_pl.federated.strategies import Strategy
from fedmrn_pl.report import global_model_sha256, state_bytes
from fedmrn_pl.update import ClientUpdate
from fedmrn_pl.wire import DEFAULT_MAX_BYTES, PayloadError, TensorSpec, decode_update
from fedmrn_pl.wire.round_message import RoundMessage, decode_round_message, encode_round_message

__all__ = ["Delivery", "DownlinkError", "DownlinkMode", "DownlinkReceiver", "ServerDownlink", "rebuild_global"]

State = dict[str, torch.Tensor]


class DownlinkError(RuntimeError):
    """A client's rebuilt model differs from the server's, or a message does not follow the model it holds."""


def rebuild_global(
    strategy: Strategy, server_round: int, previous: Mapping[str, torch.Tensor], updates: Sequence[ClientUpdate]
) -> State:
    """The round's new global model from the previous one and the aggregated updates (none: unchanged).

    The server aggregates through this function and clients replay it, so both run the
    same float operations in the same order.
    """
    new_state = strategy.aggregate(server_round, previous, updates) if updates else None
    return dict(previous) if new_state is None else new_state


@dataclass
class Delivery:
    """What one sampled client downloads at the start of a round."""

    client_id: int
    server_round: int  # the round the client is about to train in
    num_bytes: int
    dense_state: Mapping[str, torch.Tensor] | None = None  # the model itself (dense sync)
    messages: list[bytes] = field(default_factory=list)  # otherwise: the round messages it missed, in order


class ServerDownlink:
    """The server's side: which client holds which round's model, and the recent round messages.

    Args:
        mode: ``"dense"`` or ``"masks"``.
        dense_sync_every: in ``masks`` mode, a client that missed more rounds than this gets the dense model.
    """

    def __init__(self, mode: str = "dense", dense_sync_every: int = 10) -> None:
        self.mode = DownlinkMode.parse(mode, "downlink")
        if isinstance(dense_sync_every, bool) or not isinstance(dense_sync_every, int) or dense_sync_every < 1:
            raise ValueError(f"dense_sync_every must be an int >= 1, got {dense_sync_every!r}")
        self.dense_sync_every = dense_sync_every
        self.synced: dict[int, int] = {}  # client id -> the round whose global model it holds
        self.messages: dict[int, bytes] = {}  # round -> its round message, the last dense_sync_every rounds
        self.deliveries: list[Delivery] = []  # this round's, for the round metrics and callbacks

    def deliver(self, server_round: int, client_ids: Sequence[int], global_state: Mapping[str, torch.Tensor]) -> int:
        """Decide what each sampled client downloads for ``server_round``; returns the round's downlink bytes."""
        dense_bytes = state_bytes(global_state)
        self.deliveries = []
        for client_id in client_ids:
            missed = self._missed_messages(client_id, server_round)
            if missed is None or sum(map(len, missed)) >= dense_bytes:
                delivery = Delivery(client_id, server_round, dense_bytes, dense_state=global_state)
            else:
                delivery = Delivery(client_id, server_round, sum(map(len, missed)), messages=missed)
            self.deliveries.append(delivery)
            if self.mode is DownlinkMode.masks:
                self.synced[client_id] = server_round - 1
        return sum(delivery.num_bytes for delivery in self.deliveries)

    def _missed_messages(self, client_id: int, server_round: int) -> list[bytes] | None:
        """The messages that bring the client's model to round ``server_round - 1``; None: send it dense."""
        held = self.synced.get(client_id)
        if self.mode is DownlinkMode.dense or held is None or server_round - 1 - held > self.dense_sync_every:
            return None
        needed = range(held + 1, server_round)
        if any(number not in self.messages for number in needed):
            return None
        return [self.messages[number] for number in needed]

    def record(self, server_round: int, payloads: Sequence[bytes], new_state: Mapping[str, torch.Tensor]) -> bytes | None:
        """Store the round's message (``masks`` mode): the aggregated payloads and the new model's digest."""
        if self.mode is DownlinkMode.dense:
            return None
        message = encode_round_message(server_round, bytes.fromhex(global_model_sha256(new_state)), list(payloads))
        self.messages[server_round] = message
        for number in [n for n in self.messages if n <= server_round - self.dense_sync_every]:
            del self.messages[number]
        return message

    def state_dict(self) -> dict[str, Any]:
        """Plain data and uint8 tensors (``weights_only`` loadable): who holds what, the recent messages."""
        return {
            "synced": dict(self.synced),
            "messages": {number: torch.frombuffer(bytearray(m), dtype=torch.uint8) for number, m in self.messages.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned, checked first: ids and rounds, each message's framing and round.

        Raises:
            ValueError: the state is malformed, a message is damaged or filed under another round, or
                ``dense`` mode would restore messages it never keeps.
        """
        if not isinstance(state, Mapping) or set(state) - {"synced", "messages"}:
            raise ValueError("the downlink state must be a dict with 'synced' and 'messages'")
        synced, stored = state.get("synced", {}), state.get("messages", {})
        if not isinstance(synced, Mapping) or not all(_count(k) and _count(v) for k, v in synced.items()):
            raise ValueError("'synced' must map client ids to rounds (ints >= 0)")
        if not isinstance(stored, Mapping) or not all(_count(k) and _is_bytes(t) for k, t in stored.items()):
            raise ValueError("'messages' must map rounds (ints >= 0) to uint8 tensors")
        if self.mode is DownlinkMode.dense and (synced or stored):
            raise ValueError("downlink='dense' keeps no clients' rounds or round messages, but the state holds some")
        messages = {number: tensor.numpy().tobytes() for number, tensor in stored.items()}
        for number, message in messages.items():
            try:
                decoded = decode_round_message(message)
            except PayloadError as error:
                raise ValueError(f"the round message of round {number} is damaged: {error}") from None
            if decoded.server_round != number:
                raise ValueError(f"the round message stored for round {number} is round {decoded.server_round}'s")
        self.synced, self.messages = dict(synced), messages


class DownlinkReceiver:
    """A client's side: its copy of the global model, kept current from what it downloads.

    Args:
        strategy: the run's strategy; its ``aggregate`` is replayed, so it must be
            ``replayable``: depend only on the previous model and the round's updates (every
            built-in strategy does, FedPM when its posterior resets every round).
        expected: the server's payload manifest (``FederatedTrainer.expected_manifest``).
        max_payload_bytes: the largest message or payload accepted.
    """

    def __init__(
        self, strategy: Strategy, expected: Mapping[str, TensorSpec], max_payload_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self.strategy = strategy
        self.expected = expected
        self.max_payload_bytes = max_payload_bytes
        self.state: State | None = None
        self.server_round: int | None = None  # the round whose global model ``state`` is

    def sync(self, state: Mapping[str, torch.Tensor], server_round: int) -> None:
        """Take the dense model of round ``server_round``."""
        self.state = {name: tensor.detach().cpu().clone() for name, tensor in state.items()}
        self.server_round = server_round

    def receive(self, delivery: Delivery) -> State:
        """Apply a delivery; returns the model the client trains from (round ``delivery.server_round - 1``)."""
        if delivery.dense_state is not None:
            self.sync(delivery.dense_state, delivery.server_round - 1)
        for message in delivery.messages:
            self.apply(message)
        if self.server_round != delivery.server_round - 1:
            raise DownlinkError(
                f"client {delivery.client_id} holds the model of round {self.server_round}, "
                f"round {delivery.server_round} needs round {delivery.server_round - 1}'s"
            )
        assert self.state is not None
        return self.state

    def apply(self, message: bytes) -> None:
        """Rebuild the next round's model from its message, and check it against the server's digest.

        Raises:
            DownlinkError: the message is not for the next round, or the rebuilt model differs.
            PayloadError: the message or one of its payloads is malformed.
        """
        decoded = decode_round_message(message, max_bytes=self.max_payload_bytes)
        if self.state is None or self.server_round is None or decoded.server_round != self.server_round + 1:
            raise DownlinkError(
                f"round message for round {decoded.server_round} does not follow the held model (round {self.server_round})"
            )
        updates = self._updates(decoded)
        rebuilt = rebuild_global(self.strategy, decoded.server_round, self.state, updates)
        digest = global_model_sha256(rebuilt)
        if digest != decoded.model_sha256.hex():
            raise DownlinkError(
                f"round {decoded.server_round}: the rebuilt model's sha256 {digest[:12]} differs from the "
                f"server's {decoded.model_sha256.hex()[:12]}"
            )
        self.state, self.server_round = rebuilt, decoded.server_round

    def check(self, message: bytes) -> RoundMessage:
        """Validate a round message and decode its payloads against the manifest, without applying it (on resume).

        Raises:
            PayloadError: the message or one of its payloads is malformed.
        """
        decoded = decode_round_message(message, max_bytes=self.max_payload_bytes)
        self._updates(decoded)
        return decoded

    def _updates(self, decoded: RoundMessage) -> list[ClientUpdate]:
        """The message's payloads, each decoded and checked against the manifest and the message's round."""
        return [
            decode_update(payload, self.expected, server_round=decoded.server_round, max_bytes=self.max_payload_bytes)
            for payload in decoded.payloads
        ]


def _count(value: Any) -> bool:
    """An int >= 0 that is not a bool."""
    return type(value) is int and value >= 0


def _is_bytes(value: Any) -> bool:
    """A 1-d uint8 tensor: bytes as a checkpoint holds them."""
    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.ndim == 1
