"""Server optimizers: how the round's aggregated model becomes the next global model.

A strategy aggregates the clients' updates (FedMRN's masked noise, FedAvg's weights, a
baseline's decompressed deltas) into ``x_agg``; its difference from the current model,
``delta = x_agg - x``, is the round's pseudo-gradient (Reddi et al., "Adaptive Federated
Optimization", ICLR 2021). A ``ServerOptimizer`` turns it into the next model:

- :class:`PlainUpdate`: ``x <- x_agg`` (every method's own rule, bit for bit);
- :class:`FedAvgM`: server momentum, ``m <- beta m + delta``, ``x <- x + lr m`` (Hsu et al., 2019);
- :class:`FedAdagrad`, :class:`FedAdam`, :class:`FedYogi`: ``m <- b1 m + (1 - b1) delta``, a
  second moment ``v`` per coordinate (sum, EMA, or Yogi's sign-controlled update of
  ``delta^2``), ``x <- x + lr m / (sqrt(v) + tau)``, with ``v`` starting at ``tau^2`` as in the paper.

Only the model's trainable parameters move by the optimizer; buffers (BatchNorm's running
statistics, counters) and frozen tensors take the aggregated values as they are. Moments
are float32 tensors, checkpointed with the run (``state_dict``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping

import torch

from fedmrn_pl.federated.choices import ServerOptimizerName

__all__ = ["FedAdagrad", "FedAdam", "FedAvgM", "FedYogi", "PlainUpdate", "ServerOptimizer", "build_server_optimizer"]

State = dict[str, torch.Tensor]


class ServerOptimizer:
    """Base class: ``step(previous, aggregated) -> next global state``; the plain update by default."""

    name = ServerOptimizerName.plain.value

    def __init__(self) -> None:
        self.names: tuple[str, ...] = ()  # the tensors the optimizer moves (trainable float parameters)

    def setup(self, names: Iterable[str]) -> None:
        """Called once by the trainer with the names of the trainable floating-point tensors."""
        self.names = tuple(sorted(names))

    @property
    def replayable(self) -> bool:
        """Whether clients holding only the round messages can replay this step (no server state)."""
        return True

    def step(self, previous: Mapping[str, torch.Tensor], aggregated: State) -> State:
        """The next global model from the current one and the strategy's aggregate."""
        return aggregated

    def check_shapes(self, global_state: Mapping[str, torch.Tensor]) -> None:
        """Called after a restore: raise ValueError if the loaded state does not fit the model's tensors."""

    def state_dict(self) -> dict:
        """Server-side state to checkpoint (moments); none for the plain update."""
        return {}

    def load_state_dict(self, state: Mapping) -> None:
        """Restore ``state_dict``; the plain update refuses any state.

        Raises:
            ValueError: the state is not this optimizer's.
        """
        if state:
            raise ValueError(f"the {self.name} server update keeps no state, but the checkpoint holds {sorted(map(str, state))}")


class PlainUpdate(ServerOptimizer):
    """``x <- x_agg``: the strategy's aggregate is the next model (FedAvg, FedMRN as published)."""


class _Moments(ServerOptimizer, ABC):
    """An optimizer with per-tensor float32 moments, created at its first step."""

    moments: tuple[str, ...] = ()

    def __init__(self, lr: float) -> None:
        super().__init__()
        _check_positive("lr", lr)
        self.lr = lr
        self.state: dict[str, State] = {}

    @property
    def replayable(self) -> bool:
        return False

    def step(self, previous: Mapping[str, torch.Tensor], aggregated: State) -> State:
        result = dict(aggregated)
        for name in self.names:
            old = previous[name].to(torch.float32)
            moved = self._move(name, aggregated[name].to(torch.float32) - old)
            result[name] = (old + moved).to(previous[name].dtype)
        return result

    @abstractmethod
    def _move(self, name: str, delta: torch.Tensor) -> torch.Tensor:
        """The step added to tensor ``name`` for pseudo-gradient ``delta`` (updating the moments)."""

    def _moment(self, kind: str, name: str, like: torch.Tensor, start: float = 0.0) -> torch.Tensor:
        tensors = self.state.setdefault(kind, {})
        if name not in tensors:
            tensors[name] = torch.full_like(like, start, dtype=torch.float32)
        return tensors[name]

    def state_dict(self) -> dict:
        return {kind: {name: tensor.clone() for name, tensor in tensors.items()} for kind, tensors in self.state.items()}

    def load_state_dict(self, state: Mapping) -> None:
        """Moments for this run's tensors: float32, finite, one per optimized tensor.

        Raises:
            ValueError: an unknown moment, tensor name, shape or dtype, or non-finite values.
        """
        loaded: dict[str, State] = {}
        for kind, tensors in state.items():
            if kind not in self.moments:
                raise ValueError(f"{kind!r} is not a moment of the {self.name} server optimizer (it keeps {list(self.moments)})")
            if not isinstance(tensors, Mapping):
                raise ValueError(f"[{kind!r}] must map tensor names to tensors, got {type(tensors).__name__}")
            for name, tensor in tensors.items():
                if name not in self.names:
                    raise ValueError(f"[{kind!r}] holds {name!r}, which is not a trainable tensor of this model")
                if not isinstance(tensor, torch.Tensor) or tensor.dtype != torch.float32:
                    raise ValueError(f"[{kind!r}][{name!r}] must be a float32 tensor")
                if not bool(torch.isfinite(tensor).all()):
                    raise ValueError(f"[{kind!r}][{name!r}] holds non-finite values")
            loaded[kind] = {name: tensor.clone() for name, tensor in tensors.items()}
        self.state = loaded

    def check_shapes(self, global_state: Mapping[str, torch.Tensor]) -> None:
        """Every loaded moment has its tensor's shape (called by the trainer after a restore)."""
        for kind, tensors in self.state.items():
            for name, tensor in tensors.items():
                if tuple(tensor.shape) != tuple(global_state[name].shape):
                    raise ValueError(
                        f"[{kind!r}][{name!r}] has shape {tuple(tensor.shape)}, the model's tensor {tuple(global_state[name].shape)}"
                    )


class FedAvgM(_Moments):
    """Server momentum: ``m <- momentum m + delta``, ``x <- x + lr m``.

    Args:
        lr: server learning rate (1.0: the aggregate's own step size).
        momentum: in [0, 1); 0.9 as in Hsu et al. and Reddi et al.
    """

    name = ServerOptimizerName.avgm.value
    moments = ("momentum",)

    def __init__(self, lr: float = 1.0, momentum: float = 0.9) -> None:
        super().__init__(lr)
        _check_fraction("momentum", momentum)
        self.momentum = momentum

    def _move(self, name: str, delta: torch.Tensor) -> torch.Tensor:
        m = self._moment("momentum", name, delta)
        m.mul_(self.momentum).add_(delta)
        return self.lr * m


class _Adaptive(_Moments):
    """``m <- b1 m + (1 - b1) delta``; ``v`` by the subclass; ``x <- x + lr m / (sqrt(v) + tau)``.

    Args:
        lr: server learning rate (Reddi et al. tune it per task; 0.01 here by default).
        beta1: first-moment decay in [0, 1) (0.9).
        beta2: second-moment decay in [0, 1) (0.99; unused by FedAdagrad).
        tau: adaptivity in (0, inf) (1e-3); ``v`` starts at ``tau ** 2``.
    """

    moments = ("m", "v")

    def __init__(self, lr: float = 0.01, beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3) -> None:
        super().__init__(lr)
        _check_fraction("beta1", beta1)
        _check_fraction("beta2", beta2)
        _check_positive("tau", tau)
        self.beta1, self.beta2, self.tau = beta1, beta2, tau

    def _move(self, name: str, delta: torch.Tensor) -> torch.Tensor:
        m = self._moment("m", name, delta)
        v = self._moment("v", name, delta, self.tau**2)
        m.mul_(self.beta1).add_(delta, alpha=1 - self.beta1)
        self._second_moment(v, delta * delta)
        return self.lr * m / (v.sqrt() + self.tau)

    @abstractmethod
    def _second_moment(self, v: torch.Tensor, squared: torch.Tensor) -> None:
        """Update the second moment ``v`` in place from ``delta ** 2``."""


class FedAdagrad(_Adaptive):
    """``v <- v + delta^2``."""

    name = ServerOptimizerName.adagrad.value

    def _second_moment(self, v: torch.Tensor, squared: torch.Tensor) -> None:
        v.add_(squared)


class FedAdam(_Adaptive):
    """``v <- b2 v + (1 - b2) delta^2``."""

    name = ServerOptimizerName.adam.value

    def _second_moment(self, v: torch.Tensor, squared: torch.Tensor) -> None:
        v.mul_(self.beta2).add_(squared, alpha=1 - self.beta2)


class FedYogi(_Adaptive):
    """``v <- v - (1 - b2) delta^2 sign(v - delta^2)``: ``v`` grows as Adam's but shrinks slower."""

    name = ServerOptimizerName.yogi.value

    def _second_moment(self, v: torch.Tensor, squared: torch.Tensor) -> None:
        v.sub_((1 - self.beta2) * squared * torch.sign(v - squared))


_OPTIMIZERS: dict[ServerOptimizerName, type[ServerOptimizer]] = {
    ServerOptimizerName.plain: PlainUpdate,
    ServerOptimizerName.avgm: FedAvgM,
    ServerOptimizerName.adagrad: FedAdagrad,
    ServerOptimizerName.adam: FedAdam,
    ServerOptimizerName.yogi: FedYogi,
}


def build_server_optimizer(
    name: str, *, lr: float | None = None, momentum: float = 0.9, beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3
) -> ServerOptimizer:
    """The server optimizer called ``name`` (``lr=None``: its default); each takes the settings it uses.

    Raises:
        ValueError: an unknown name, or a setting out of range (the message names it and the range).
    """
    kind = _OPTIMIZERS[ServerOptimizerName.parse(name, "server optimizer")]
    rate = {} if lr is None else {"lr": lr}
    if kind is FedAvgM:
        return FedAvgM(momentum=momentum, **rate)
    if issubclass(kind, _Adaptive):
        return kind(beta1=beta1, beta2=beta2, tau=tau, **rate)
    return kind()


def _check_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"server {name} must be a finite number > 0, got {value!r}")


def _check_fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"server {name} must be in [0, 1), got {value!r}")
