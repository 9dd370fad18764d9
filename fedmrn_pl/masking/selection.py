"""Which parameters of a model are masked and which stay dense."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from torch import nn

__all__ = ["ParameterSelector"]


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
        """``(full name, owning module, attribute name)`` of every masked parameter, in model order."""
        chosen = []
        owners: dict[int, str] = {}
        for module_name, module in model.named_modules(remove_duplicate=False):
            for attr, parameter in module.named_parameters(recurse=False):
                if parameter is None or not parameter.requires_grad:  # frozen by the user: leave it alone
                    continue
                name = f"{module_name}.{attr}" if module_name else attr
                if not self.is_masked(name, module, parameter):
                    continue
                if id(parameter) in owners:
                    raise ValueError(
                        f"parameters {owners[id(parameter)]!r} and {name!r} are one tied tensor; masking it twice "
                        f"would apply two noises to one weight. Exclude one name, e.g. ParameterSelector(exclude=({name!r},))"
                    )
                owners[id(parameter)] = name
                chosen.append((name, module, attr))
        return chosen
