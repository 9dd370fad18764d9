"""Seed sync: the server issues each client's noise seed for the round."""

from __future__ import annotations

from fedmrn_pl.messages import FitRequest
from fedmrn_pl.seeding import derive_seed

from .base import FederatedCallback, FederatedRun

__all__ = ["SeedSync"]


class SeedSync(FederatedCallback):
    """Issue ``derive_seed(run_seed, round, client_id, "noise")`` to every client.

    The server later accepts a payload only if it carries the seed issued here, so
    it can regenerate exactly the noise the client trained with.
    """

    def on_client_fit_start(self, trainer: FederatedRun, request: FitRequest) -> None:
        """Issue the client's noise seed for this round."""
        request.seed = derive_seed(trainer.run_seed, request.server_round, request.client_id, "noise")
