"""Seed sync: the server issues each client's noise seed for the round."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedmrn_pl.seeding import derive_seed

from .base import FederatedCallback

if TYPE_CHECKING:
    from fedmrn_pl.federated.job import ClientJob
    from fedmrn_pl.federated.trainer import FederatedTrainer

__all__ = ["SeedSync"]


class SeedSync(FederatedCallback):
    """Issue ``derive_seed(run_seed, round, client_id, "noise")`` to every client.

    The server later accepts a payload only if it carries the seed issued here, so
    it can regenerate exactly the noise the client trained with.
    """

    def on_client_fit_start(self, trainer: FederatedTrainer, job: ClientJob) -> None:
        job.seed = derive_seed(trainer.run_seed, job.server_round, job.client_id, "noise")
