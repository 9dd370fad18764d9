"""Seeded client sampling."""

from __future__ import annotations

import numpy as np

from fedmrn_pl.seeding import derive_seed

__all__ = ["sample_clients"]


def sample_clients(run_seed: int, server_round: int, num_clients: int, clients_per_round: int) -> list[int]:
    """The sorted ids of the clients that train in ``server_round``.

    A pure function of its arguments (no RNG state to save), so resumed runs and
    runs split over processes sample the same clients.
    """
    if not 1 <= clients_per_round <= num_clients:
        raise ValueError(f"clients_per_round must be in [1, num_clients={num_clients}], got {clients_per_round}")
    rng = np.random.default_rng(derive_seed(run_seed, server_round, purpose="client_sampling"))
    return sorted(int(i) for i in rng.choice(num_clients, size=clients_per_round, replace=False))
