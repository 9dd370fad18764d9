"""The record of one client's work in one round, passed to the federated callbacks."""

from __future__ import annotations

from dataclasses import dataclass

from fedmrn_pl.client import ClientResult

__all__ = ["ClientJob"]


@dataclass
class ClientJob:
    """One client in one round; callbacks fill it in as the round goes.

    ``seed`` is issued by the seed-sync callback before the client trains, ``result``
    is the client's local output, ``payload`` the bytes the client uploads (set by
    the mask-packing callback). The server only ever reads ``payload``.
    """

    server_round: int
    client_id: int
    num_examples: int
    seed: int | None = None  # noise seed issued to the client
    result: ClientResult | None = None  # client-side only; the server never reads it
    payload: bytes | None = None  # the uplink message
    dropped: str | None = None  # why the server dropped this client, if it did
    seconds: float = 0.0  # local training wall time
