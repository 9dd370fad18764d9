"""A client round as Flower messages: a ``FitRequest`` down, a ``FitResult`` up.

The request carries the global model as one byte array in our wire format (a dense
update, raw little-endian values), so the SuperNode validates it as the server validates
payloads; the reply carries the client's uplink payload as the one byte array the
``MaskPacking`` callback produced, untouched, beside a few small figures. Nothing is
pickled and no tensor travels as Flower's per-tensor arrays.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from flwr.app import ConfigRecord, RecordDict

from fedmrn_pl.messages import FitRequest, FitResult
from fedmrn_pl.update import DENSE_KIND, ClientUpdate
from fedmrn_pl.wire import UNUSED_NOISE, decode_update, encode_update, expected_manifest

__all__ = [
    "FIT",
    "MODEL",
    "PAYLOAD",
    "decode_model",
    "encode_model",
    "request_from_record",
    "request_record",
    "result_from_record",
    "result_record",
]

FIT = "fit"  # the ConfigRecord that holds a round's request or reply: one record, so one object on the wire
STAT = "stat/"  # reply: the prefix of the mask statistics' keys
MODEL = "model"  # request: the global model, wire-format bytes
PAYLOAD = "payload"  # reply: the uplink payload, wire-format bytes


def encode_model(state: Mapping[str, torch.Tensor], server_round: int, client_id: int) -> bytes:
    """The global model as wire-format bytes: a dense update of every tensor, in its own dtype, raw."""
    update = ClientUpdate(server_round, client_id, 0, DENSE_KIND, UNUSED_NOISE, 0, dense=dict(state))
    return encode_update(update, dense_encoding="raw")


def decode_model(data: bytes, like: Mapping[str, torch.Tensor], server_round: int) -> dict[str, torch.Tensor]:
    """The global model from ``encode_model``'s bytes, validated against the names, shapes and dtypes of ``like``.

    Raises:
        PayloadError: the bytes are not this model's, or not this round's.
    """
    expected = expected_manifest(
        masks={},
        dense={name: tuple(t.shape) for name, t in like.items()},
        dense_dtypes={name: (str(t.dtype).removeprefix("torch."),) for name, t in like.items()},
    )
    limit = 2 * sum(t.numel() * t.element_size() for t in like.values()) + (1 << 20)
    return decode_update(data, expected, server_round=server_round, max_bytes=limit).dense


def request_record(request: FitRequest, model: bytes) -> RecordDict:
    """The message content that asks a SuperNode to train ``request.client_id``."""
    fields: dict = {
        "server-round": request.server_round,
        "client-id": request.client_id,
        "num-examples": request.num_examples,
        "seed": request.seed,
        MODEL: model,
    }
    if request.client_state is not None:
        fields["client-state"] = request.client_state
    if request.noise_scales is not None:
        fields["noise-scale-names"] = list(request.noise_scales)
        fields["noise-scale-values"] = [float(v) for v in request.noise_scales.values()]
    return RecordDict({FIT: ConfigRecord(fields)})


def request_from_record(content: RecordDict) -> tuple[FitRequest, bytes]:
    """The request and the model bytes of a ``request_record``."""
    fields = content.config_records[FIT]
    request = FitRequest(
        int(fields["server-round"]), int(fields["client-id"]), int(fields["num-examples"]), int(fields["seed"])
    )
    request.client_state = fields.get("client-state")
    if "noise-scale-names" in fields:
        request.noise_scales = dict(zip(fields["noise-scale-names"], fields["noise-scale-values"], strict=True))
    return request, bytes(fields[MODEL])


def result_record(result: FitResult) -> RecordDict:
    """The reply's content: the payload bytes as they are, and the client's figures."""
    fields: dict = {"logged": list(result.logged), "seconds": float(result.seconds)}
    for key, value in ((PAYLOAD, result.payload), ("client-state", result.client_state), ("dropped", result.dropped)):
        if value is not None:
            fields[key] = value
    if result.train_loss is not None:
        fields["train-loss"] = float(result.train_loss)
    fields.update({STAT + key: float(value) for key, value in result.stats.items()})
    return RecordDict({FIT: ConfigRecord(fields)})


def result_from_record(request: FitRequest, content: RecordDict) -> FitResult:
    """The server's ``FitResult`` for ``request`` from a reply's content (the payload is checked later, by the wire)."""
    fields = content.config_records[FIT]
    return FitResult(
        request,
        payload=None if PAYLOAD not in fields else bytes(fields[PAYLOAD]),
        train_loss=fields.get("train-loss"),
        logged=list(fields.get("logged", [])),
        stats={key.removeprefix(STAT): float(value) for key, value in fields.items() if key.startswith(STAT)},
        seconds=float(fields.get("seconds", 0.0)),
        dropped=fields.get("dropped"),
        client_state=None if "client-state" not in fields else bytes(fields["client-state"]),
    )
