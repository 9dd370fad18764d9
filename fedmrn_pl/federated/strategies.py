"""Aggregation strategies: how the server turns client updates into a new global model.

Thin classes over the pure functions in ``aggregate``. ``aggregate`` takes the
round first (as in Flower) and returns the new global state, or None to keep the
previous one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from fedmrn_pl.federated.aggregate import average_dense, example_weights, masked_noise_sum
from fedmrn_pl.masking.selection import padding_rows
from fedmrn_pl.update import ClientUpdate

__all__ = ["FedAvg", "FedMRN", "Strategy"]

State = dict[str, torch.Tensor]


class Strategy(ABC):
    """Base class: ``aggregate(server_round, global_state, updates) -> new state | None``."""

    name = "strategy"
    # True for a strategy whose clients upload masks over seeded noise (FedMRN): the trainer then needs a
    # MaskingConfig and issues noise; any other strategy gets dense (or compressed) updates and masking=None.
    aggregates_masked_noise = False

    @abstractmethod
    def aggregate(
        self, server_round: int, global_state: Mapping[str, torch.Tensor], updates: Sequence[ClientUpdate]
    ) -> State | None:
        """Return the next global state from this round's valid updates (None: keep the old one)."""

    def setup(self, module: nn.Module) -> None:
        """Called once by the trainer with the global model before the first round (read what you need of it)."""

    def compressed_manifest(self, global_state: Mapping[str, torch.Tensor]) -> dict[str, tuple[str, tuple[int, ...]]]:
        """``{name: (wire role, shape)}`` of the tensors clients upload compressed (none: masks and dense only)."""
        return {}

    @property
    def replayable(self) -> bool:
        """Whether ``aggregate`` depends only on the previous model and the round's updates.

        Clients replay it under ``downlink="masks"``; a strategy whose server keeps state
        across rounds that the round messages do not carry must say False.
        """
        return True

    @property
    def takes_server_optimizer(self) -> bool:
        """Whether ``aggregate`` returns a model whose difference from the previous one a server optimizer may
        apply (FedAvgM, FedAdam ...); False for a strategy whose state is not model weights (FedPM)."""
        return True

    def state_dict(self) -> dict:
        """Server-side state to checkpoint (none for the built-in strategies)."""
        return {}

    def load_state_dict(self, state: Mapping) -> None:
        """Restore what ``state_dict`` returned; a strategy that keeps none refuses any (override both together).

        Raises:
            ValueError: the state is not this strategy's.
        """
        if state:
            keys = sorted(map(str, state)) if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"{type(self).__name__} keeps no server state, but the checkpoint holds {keys}")


class FedAvg(Strategy):
    """Sample-weighted average of the clients' dense float32 weights."""

    name = "fedavg"

    def aggregate(
        self, server_round: int, global_state: Mapping[str, torch.Tensor], updates: Sequence[ClientUpdate]
    ) -> State | None:
        if not updates:
            return None
        weights = example_weights(updates)
        return {name: average_dense(name, updates, weights, like) for name, like in global_state.items()}


class FedMRN(Strategy):
    """``w <- w + sum_k (N_k / N) n_k * m_k`` for masked weights; dense tensors averaged."""

    name = "fedmrn"
    aggregates_masked_noise = True

    def __init__(self) -> None:
        self.fixed_rows: dict[str, tuple[int, ...]] = {}  # rows no mask may move (embedding padding rows)

    def setup(self, module: nn.Module) -> None:
        """Learn which rows of the model stay fixed: clients keep them, so the server must too."""
        self.fixed_rows = padding_rows(module)

    def aggregate(
        self, server_round: int, global_state: Mapping[str, torch.Tensor], updates: Sequence[ClientUpdate]
    ) -> State | None:
        if not updates:
            return None
        weights = example_weights(updates)
        masked = set(updates[0].masks)
        new_state = {}
        for name, like in global_state.items():
            if name in masked:
                new_state[name] = like + masked_noise_sum(name, updates, weights, like, self.fixed_rows.get(name, ()))
            else:
                new_state[name] = average_dense(name, updates, weights, like)
        return new_state
