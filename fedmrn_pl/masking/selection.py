"""Which parameters of a model are masked and which stay dense."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from torch import nn

__all__ = ["ParameterSelector", "padding_rows", "parameter_places"]


@dataclass(frozen=True)
class ParameterSelector:
    """Chooses the masked parameters of any ``nn.Module``.

    Default: every parameter with at least ``min_dims`` dimensions (the weights of
    Linear, ConvNd, Embedding, LSTM/GRU matrices, attention projections). Biases,
    norm affine parameters and buffers stay dense.
    """

    min_dims: int = 2  # parameters with fewer dims stay dense
    module_types: tuple[type[nn.Module], ...] | None = None  # restrict to these module classes
    include: tuple[str, ...] = ()  # fnmatch patterns of names always masked
    exclude: tuple[str, ...] = ()  # fnmatch patterns of names never masked (wins over include)

    def __post_init__(self) -> None:
        if not isinstance(self.min_dims, int) or self.min_dims < 1:
            raise ValueError(f"min_dims must be an int >= 1, got {self.min_dims!r}")
        for label in ("include", "exclude"):
            patterns = getattr(self, label)
            if isinstance(patterns, str) or not all(isinstance(p, str) for p in patterns):
                raise ValueError(f"{label} must be a tuple of name patterns such as ('*.weight',), got {patterns!r}")

    def is_masked(self, name: str, module: nn.Module, parameter: nn.Parameter) -> bool:
        """Whether parameter ``name`` (its full dotted name) of ``module`` is masked."""
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.exclude):
            return False
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.include):
            return True
        if self.module_types is not None and not isinstance(module, self.module_types):
            return False
        return parameter.dim() >= self.min_dims

    def select(self, model: nn.Module) -> list[tuple[str, nn.Module, str]]:
        """``(name, owning module, attribute)`` of every masked parameter, in model order.

        A tied tensor (one ``nn.Parameter`` at several places, e.g. an embedding shared
        with the output layer) is one parameter: it appears once, under its first name,
        and is masked unless one of its names is excluded.
        """
        chosen = []
        for places in parameter_places(model).values():
            name, module, attr = places[0]
            parameter = getattr(module, attr)
            if not parameter.requires_grad:  # frozen by the user: leave it alone
                continue
            names = [place[0] for place in places]
            if any(fnmatch.fnmatchcase(n, pattern) for n in names for pattern in self.exclude):
                continue
            if any(self.is_masked(n, owner, parameter) for n, owner, _ in places):
                chosen.append((name, module, attr))
        return chosen


def parameter_places(model: nn.Module) -> dict[int, list[tuple[str, nn.Module, str]]]:
    """Every place each parameter of ``model`` is registered, keyed by the parameter's identity.

    Most parameters have one place; a tied parameter has one per module that holds it.
    Places are in model order, so the first is the parameter's canonical name.
    """
    places: dict[int, list[tuple[str, nn.Module, str]]] = {}
    for module_name, module in model.named_modules(remove_duplicate=False):
        for attr, parameter in module.named_parameters(recurse=False):
            if parameter is None:
                continue
            name = f"{module_name}.{attr}" if module_name else attr
            entries = places.setdefault(id(parameter), [])
            if all(owner is not module or owner_attr != attr for _, owner, owner_attr in entries):
                entries.append((name, module, attr))
    return places


def padding_rows(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Rows PyTorch never changes, per parameter name: an embedding's ``padding_idx`` row.

    ``nn.Embedding``/``nn.EmbeddingBag`` give that row no gradient, so training keeps it
    as it is. A signed mask cannot say "no change", so masking must skip such rows
    explicitly. A weight tied to another layer (an output head) is left out: the
    head does train the row.
    """
    rows = {}
    for places in parameter_places(model).values():
        owners = [owner for _, owner, _ in places]
        if not all(isinstance(owner, (nn.Embedding, nn.EmbeddingBag)) for owner in owners):
            continue
        indices = {owner.padding_idx for owner in owners}
        if len(indices) == 1 and None not in indices:
            (index,) = indices
            weight = getattr(owners[0], places[0][2])
            rows[places[0][0]] = (int(index) % weight.shape[0],)  # a negative padding_idx counts from the end
    return rows
