"""One client round as two messages: the server's request and the client's result.

As Flower's ``FitIns``/``FitRes``: the server issues a :class:`FitRequest` per sampled
client, and one :class:`FitResult` comes back. Callbacks read and fill these in at
the named moments of a round; nothing else is passed between client and server.
Plain data, so both cross process boundaries as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fedmrn_pl.update import ClientUpdate

__all__ = ["FitRequest", "FitResult"]


@dataclass
class FitRequest:
    """What the server sends a client for one round."""

    server_round: int
    client_id: int
    num_examples: int  # the server's own count of the client's samples: the aggregation weight
    seed: int | None = None  # noise seed, issued by the SeedSync callback before the client trains
    client_state: bytes | None = None  # the client's private state from its last round (an EF residual), or None
    noise_scales: dict[str, float] | None = None  # FedMRN: per masked tensor, the noise magnitude (None: alpha)


@dataclass
class FitResult:
    """What one client round produced, as the server sees it.

    ``update`` is the client's update while it is still on the client; the
    mask-packing callback turns it into ``payload`` (the uplink bytes) and clears it,
    so the server only ever reads bytes. After the server validates the payload,
    ``update`` holds the decoded update that is aggregated.
    """

    request: FitRequest
    update: ClientUpdate | None = None
    payload: bytes | None = None
    train_loss: float | None = None  # the loss the client's module logged, if it did
    logged: list[str] = field(default_factory=list)  # every metric key the client's module logged
    stats: dict[str, float] = field(default_factory=dict)  # mask statistics of the client's update
    seconds: float = 0.0  # local training wall time
    dropped: str | None = None  # why the client failed or the server refused its payload
    # The client's private state after this round (an error-feedback residual): kept by the
    # server for the client's next request, never counted as uplink (it stands in for the client's disk).
    client_state: bytes | None = None

    @property
    def client_id(self) -> int:
        """The client this result is from."""
        return self.request.client_id

    @property
    def server_round(self) -> int:
        """The round this result belongs to."""
        return self.request.server_round
