"""The ServerApp's clients: each round's ``FitRequest`` goes to a SuperNode, its ``FitResult`` comes back as bytes.

``FlowerClients`` stands in for the trainer's in-process ``FederatedClient``: the
trainer samples, issues seeds (``SeedSync``), validates payloads (``MaskPacking.unpack``),
aggregates, evaluates and writes its files exactly as in ``fedmrn-pl fit``; only the
local fit happens on a SuperNode. The round's requests are sent to all its SuperNodes
at once when the round starts, built by the trainer's ``round_requests`` (error-feedback
residuals included), so the nodes train in parallel; a request that differs from the one
sent is sent again when the trainer asks for it.

Which SuperNode trains which client: each node says which client it holds (its node
config's ``partition-id``); nodes that do not say take the remaining client ids in
the order of their node ids. A client without a node, a node that fails or does not
reply in time, and a reply that is not ours give a dropped client with the reason,
as a failing client does in ``fit``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import torch
from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from fedmrn_pl.callbacks import FederatedCallback, SeedSync
from fedmrn_pl.flower.client_app import NODE, PARTITION_ID
from fedmrn_pl.flower.records import encode_model, request_record, result_from_record
from fedmrn_pl.messages import FitRequest, FitResult

__all__ = ["FlowerClients", "assign_clients"]

log = logging.getLogger(__name__)


def assign_clients(held: dict[int, int], num_clients: int) -> dict[int, int]:
    """``{client_id: node_id}`` from ``{node_id: the client it holds, or -1}``.

    A node that names a client holds it (the lowest node id wins a client two nodes name);
    the others take the remaining client ids in node-id order. Nodes left over train nothing.
    """
    clients: dict[int, int] = {}
    for node_id in sorted(held):
        client_id = held[node_id]
        if 0 <= client_id < num_clients and client_id not in clients:
            clients[client_id] = node_id
        elif client_id >= 0:
            log.warning("SuperNode %d holds client %d, which %s", node_id, client_id,
                        "another node holds" if client_id in clients else f"is not among the {num_clients} clients")  # fmt: skip
    free = iter(c for c in range(num_clients) if c not in clients)
    for node_id in sorted(node for node, client_id in held.items() if client_id < 0):
        client_id = next(free, None)
        if client_id is None:
            break
        clients[client_id] = node_id
    return dict(sorted(clients.items()))


@dataclass
class _Sent:
    """A request on its way to a SuperNode."""

    request: FitRequest
    node_id: int
    message_id: str | None  # None: the SuperLink did not take the message
    deadline: float


class FlowerClients(FederatedCallback):
    """Train the round's clients on SuperNodes, through a Flower ``Grid``.

    Installed as a callback; when the run starts it takes the place of the trainer's
    ``client`` (whose ``fit(global_state, request) -> FitResult`` is the one seam used)
    and gives it back when the run ends.

    Args:
        grid: the ServerApp's grid.
        reply_timeout: seconds to wait for a client's reply; then it is dropped.
        node_timeout: seconds to wait for SuperNodes holding all clients to connect.
        poll_seconds: how often to look for replies.
    """

    def __init__(self, grid: Grid, reply_timeout: float = 600.0, node_timeout: float = 60.0, poll_seconds: float = 0.1) -> None:
        for name, value in (("reply_timeout", reply_timeout), ("node_timeout", node_timeout), ("poll_seconds", poll_seconds)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0 seconds, got {value!r}")
        self.grid = grid
        self.reply_timeout = reply_timeout
        self.node_timeout = node_timeout
        self.poll_seconds = poll_seconds
        self.nodes: dict[int, int] = {}  # client id -> node id
        self._trainer: Any = None
        self._local: Any = None  # the trainer's own FederatedClient, given back at the end
        self._sent: dict[int, _Sent] = {}
        self._sent_state: Any = None

    # -------------------------------------------------------------- hooks
    def on_fit_start(self, trainer: Any) -> None:
        """Find the SuperNodes and take the place of the trainer's local client."""
        self._trainer, self._local = trainer, trainer.client
        self.nodes = self._discover(trainer.data.num_clients)
        trainer.client = self

    def on_round_start(self, trainer: Any, server_round: int, client_ids: list[int]) -> None:
        """Send every sampled client its request at once (its private state included), with the seed ``SeedSync`` issues."""
        self._sent, self._sent_state = {}, trainer.global_state
        seeding = [callback for callback in trainer.callbacks if isinstance(callback, SeedSync)]
        requests = trainer.round_requests(server_round, client_ids, trainer.client_states.of_clients(client_ids))
        for request in requests:
            for callback in seeding:
                callback.on_client_fit_start(trainer, request)
        sent = self._send(requests, trainer.global_state)
        self._sent = {request.client_id: one for request, one in zip(requests, sent) if one is not None}

    def on_fit_end(self, trainer: Any) -> None:
        """Give the trainer its local client back."""
        self._restore()

    def on_exception(self, trainer: Any, exception: BaseException) -> None:
        """Give the trainer its local client back."""
        self._restore()

    # --------------------------------------------------- the client seam
    def fit(self, global_state: dict[str, torch.Tensor], request: FitRequest) -> FitResult:
        """The client's result from its SuperNode (``FederatedClient.fit``'s contract: failures are dropped results)."""
        started = time.perf_counter()
        sent = self._sent.pop(request.client_id, None)
        if sent is None or sent.request != request or global_state is not self._sent_state:
            (sent,) = self._send([request], global_state)  # the trainer asked for something other than what went out
        if sent is None:
            return FitResult(request, dropped=f"no SuperNode holds client {request.client_id}")
        result = self._receive(sent)
        result.seconds = result.seconds or time.perf_counter() - started
        return result

    # ----------------------------------------------------------- helpers
    def _send(self, requests: list[FitRequest], global_state: dict[str, torch.Tensor]) -> list[_Sent | None]:
        """Push one message per request whose client has a node, in one call; None for the others."""
        routed = [request for request in requests if request.client_id in self.nodes]
        messages = [
            Message(
                request_record(request, encode_model(global_state, request.server_round, request.client_id)),
                dst_node_id=self.nodes[request.client_id],
                message_type="train",
                group_id=str(request.server_round),
            )
            for request in routed
        ]
        deadline = time.monotonic() + self.reply_timeout
        sent = {
            request.client_id: _Sent(request, self.nodes[request.client_id], message_id, deadline)
            for request, message_id in zip(routed, self.grid.push_messages(messages) if messages else [], strict=True)
        }
        return [sent.get(request.client_id) for request in requests]

    def _receive(self, sent: _Sent) -> FitResult:
        request = sent.request
        if sent.message_id is None:
            return FitResult(request, dropped=f"the SuperLink refused the request for SuperNode {sent.node_id}")
        while True:
            replies = list(self.grid.pull_messages([sent.message_id]))
            if replies:
                break
            if time.monotonic() > sent.deadline:
                return FitResult(request, dropped=f"no reply from SuperNode {sent.node_id} within {self.reply_timeout:g} s")
            time.sleep(self.poll_seconds)
        reply = replies[0]
        if reply.has_error():
            return FitResult(request, dropped=f"SuperNode {sent.node_id} failed: {reply.error.reason}")
        try:
            return result_from_record(request, reply.content)
        except (KeyError, TypeError, ValueError) as error:
            return FitResult(request, dropped=f"malformed reply from SuperNode {sent.node_id}: {type(error).__name__}: {error}")

    def _discover(self, num_clients: int) -> dict[int, int]:
        """``{client_id: node_id}``: ask each connected SuperNode which client it holds, until all are held or time is up."""
        deadline, held = time.monotonic() + self.node_timeout, {}
        while True:
            new = [node_id for node_id in self.grid.get_node_ids() if node_id not in held]
            if new:
                asked = [Message(RecordDict(), dst_node_id=node_id, message_type="query", group_id="nodes") for node_id in new]
                for reply in self.grid.send_and_receive(asked, timeout=max(deadline - time.monotonic(), 1.0)):
                    if not reply.has_error() and NODE in reply.content.config_records:
                        held[reply.metadata.src_node_id] = int(reply.content.config_records[NODE][PARTITION_ID])
            clients = assign_clients(held, num_clients)
            if len(clients) == num_clients or time.monotonic() > deadline:
                break
            time.sleep(self.poll_seconds * 5)
        missing = [c for c in range(num_clients) if c not in clients]
        log.info("SuperNodes: %s", ", ".join(f"client {c} on node {n}" for c, n in clients.items()) or "none")
        if missing:
            log.warning("no SuperNode holds clients %s after %g s; they are dropped when sampled", missing, self.node_timeout)
        return clients

    def _restore(self) -> None:
        if self._trainer is not None and self._trainer.client is self:
            self._trainer.client = self._local
