"""The ClientApp: a SuperNode trains one client's round through the same client code as ``fedmrn-pl fit``.

A ``train`` message carries a ``FitRequest`` (seed issued by the server) and the global
model; the node builds the run's trainer from the run config (model, partition, method
callbacks, ``MaskPacking``), trains the requested client with ``FederatedClient.fit``
between the client hooks, and replies with the payload bytes ``MaskPacking`` produced.
A ``query`` message asks which client the node holds: its node config's ``partition-id``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fedmrn_pl.messages import FitRequest, FitResult

if TYPE_CHECKING:
    from fedmrn_pl.federated import FederatedTrainer

__all__ = ["NODE", "PARTITION_ID", "app", "held_client", "train_client"]

log = logging.getLogger(__name__)

PARTITION_ID = "partition-id"  # the node config key naming the client (data partition) a SuperNode holds
NODE = "node"  # the ConfigRecord of a query reply

app = ClientApp()

_trainers: dict[int, FederatedTrainer] = {}  # per run id: a ClientApp process may serve several messages of a run


def held_client(node_config: Mapping[str, Any]) -> int | None:
    """The client id a SuperNode holds (its ``partition-id``), or None when its node config does not say."""
    value = node_config.get(PARTITION_ID)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"node config {PARTITION_ID}={value!r} must be an int >= 0 (the client id this node holds)")
    return value


@app.query()
def query(message: Message, context: Context) -> Message:
    """Say which client this node holds (-1: any, the server assigns one by node order)."""
    held = held_client(context.node_config)
    return Message(RecordDict({NODE: ConfigRecord({PARTITION_ID: -1 if held is None else held})}), reply_to=message)


@app.train()
def train(message: Message, context: Context) -> Message:
    """Train the requested client on the global model in the message; reply with its payload bytes."""
    from fedmrn_pl.flower.records import request_from_record, result_record

    request, model = request_from_record(message.content)
    held = held_client(context.node_config)
    if held is not None and held != request.client_id:
        result = FitResult(request, dropped=f"SuperNode holds client {held}, was asked to train client {request.client_id}")
    else:
        trainer = _node_trainer(context)
        result = train_client(trainer, model, request)
    return Message(result_record(result), reply_to=message)


def _node_trainer(context: Context) -> FederatedTrainer:
    """The run's trainer on this node, built once per run from the run config (as the ServerApp builds its own)."""
    if context.run_id not in _trainers:
        from fedmrn_pl.experiment import build_trainer
        from fedmrn_pl.flower.run_config import experiment_config

        _trainers[context.run_id] = build_trainer(experiment_config(context.run_config))
    return _trainers[context.run_id]


def train_client(trainer: FederatedTrainer, model: bytes, request: FitRequest) -> FitResult:
    """One client round as ``FederatedTrainer`` runs it in its own process: client hooks, local fit, packing.

    The global model arrives as wire-format bytes and is validated against the node's own
    model first; a model that fails validation gives a dropped result, not an exception.
    """
    import torch

    from fedmrn_pl.flower.records import decode_model
    from fedmrn_pl.wire import PayloadError

    try:
        state = decode_model(model, trainer.global_state, request.server_round)
    except PayloadError as error:
        return FitResult(request, dropped=f"invalid global model from the server: {error}")
    # The node's trainer holds the server's model for this round, as a torchrun rank does after the round's
    # broadcast: client hooks read it (a compressor's delta is w_k minus the global model).
    trainer.global_state = state
    threads = torch.get_num_threads()
    if trainer.threads is not None:  # as FederatedTrainer.fit: CPU sums depend on the thread count
        torch.set_num_threads(trainer.threads)
    try:
        for callback in trainer.callbacks:
            callback.on_client_fit_start(trainer, request)
        result = trainer.client.fit(state, request)
        if result.dropped is not None:
            log.warning("round %d: client %d dropped, %s", request.server_round, request.client_id, result.dropped)
        for callback in trainer.callbacks:
            callback.on_client_fit_end(trainer, result)
    finally:
        torch.set_num_threads(threads)
    return result
