"""What a federated method is: one ``FederatedMethod`` record, registered by name.

A method bundles everything the rest of the package needs to run it, so adding one is
one module plus one :func:`~fedmrn_pl.methods.registry.register_method` call (or an
entry point in the ``fedmrn_pl.methods`` group):

- ``build(context)``: its server ``Strategy`` and its client-side ``FederatedCallback``s
  (an ``UpdateTransform`` that turns the trained weights into what is uploaded; Lightning
  callbacks for the local fits, declared by ``configure_local_callbacks``, as a
  LightningModule declares ``configure_callbacks``).
- ``settings``: its own dataclass, nested in the config under its name
  (``method.topk.fraction``), and ``check``, which refuses settings that cannot work.
- ``replayable``: whether clients can rebuild its aggregate from the round messages
  (``method.downlink=masks``); ``server_optimizer``: whether FedAdam & co. may step its
  aggregate.
- ``variants``: its rows in ``fedmrn-pl compare``.

This module is torch-free: the config imports it to read a method's settings and check
them without loading the training stack; ``build`` imports what it needs when called.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from fedmrn_pl.callbacks.base import FederatedCallback
    from fedmrn_pl.federated.strategies import Strategy
    from fedmrn_pl.masking.selection import ParameterSelector

__all__ = ["FederatedMethod", "MethodContext", "MethodParts", "RunFacts"]

_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class RunFacts:
    """The run settings a method's checks and builder may depend on (not the method's own)."""

    seed: int = 0
    num_clients: int = 1  # with clients_per_round: full participation unless told (FedPM's reset period follows it)
    clients_per_round: int = 1
    precision: str = "32-true"
    downlink: str = "dense"  # "dense" or "masks": masks means clients replay the aggregate
    server_optimizer: str = "plain"


@dataclass(frozen=True)
class MethodContext:
    """What ``FederatedMethod.build`` gets: the global model, the tensors to compress, and settings.

    ``selector`` picks the tensors FedMRN masks; a compressing method compresses the same
    ones and sends the rest dense, so every method's bytes are comparable.
    """

    module: nn.Module
    selector: ParameterSelector
    settings: Any  # the method's settings dataclass instance, or None when it has none
    run: RunFacts = RunFacts()

    @property
    def run_seed(self) -> int:
        """The seed every random stream of the run derives from."""
        return self.run.seed

    def selected_names(self) -> list[str]:
        """The names of the tensors ``selector`` picks in ``module``.

        Raises:
            ValueError: it picks none (nothing would be compressed).
        """
        names = [name for name, _, _ in self.selector.select(self.module)]
        if not names:
            raise ValueError(
                f"the parameter selector {self.selector} selects no parameter of {type(self.module).__name__} to compress"
            )
        return names


@dataclass
class MethodParts:
    """What a method puts into a run: the server strategy and the client-side callbacks.

    ``callbacks`` go to ``FederatedTrainer(callbacks=...)``; the trainer runs an
    ``UpdateTransform`` among them after the user's hooks and right before the wire
    encodes the update, and adds each callback's ``configure_local_callbacks()`` to every
    local ``lightning.Trainer``.
    """

    strategy: Strategy
    callbacks: list[FederatedCallback] = field(default_factory=list)


@dataclass(frozen=True)
class FederatedMethod:
    """One federated method, as the registry, the config and ``compare`` see it.

    Args:
        name: ``method.name`` in the config; lowercase letters, digits and ``_``.
        build: ``context -> MethodParts``; imports its implementation when called.
        summary: one line saying what a client uploads (``fedmrn-pl fit --help`` lists it).
        settings: a dataclass of the method's own knobs (a default for each), nested in the
            config under ``method.<name>``; None when it has none.
        check: ``(settings, run) -> None``; raises ``ValueError`` naming the config key
            (``method.<name>.<key>``) when the settings cannot work with this run.
        replayable: ``(settings, run) -> bool``: whether the aggregate depends only on the
            previous model and the round's updates, so clients can replay it
            (``method.downlink=masks``); None: always.
        server_optimizer: whether a server optimizer (``server.optimizer``) may step the
            aggregate; False for a strategy whose state is not a model (FedPM).
        masked: clients train FedMRN's masked noise: the config's masking settings apply, and
            the strategy must aggregate masked noise (``Strategy.aggregates_masked_noise``).
        variants: its rows in ``fedmrn-pl compare``, ``{row name: overrides}``, each on top of
            ``method.name=<name>``; None: one row named after the method.
    """

    name: str
    build: Callable[[MethodContext], MethodParts]
    summary: str = ""
    settings: type | None = None
    check: Callable[[Any, RunFacts], None] | None = None
    replayable: Callable[[Any, RunFacts], bool] | None = None
    server_optimizer: bool = True
    masked: bool = False
    variants: Mapping[str, Sequence[str]] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(f"method name {self.name!r} is not valid: use lowercase letters, digits and _, e.g. 'rms_sign'")
        if not callable(self.build):
            raise TypeError(f"method {self.name!r}: build must be callable (context -> MethodParts)")
        for hook in ("check", "replayable"):
            if getattr(self, hook) is not None and not callable(getattr(self, hook)):
                raise TypeError(f"method {self.name!r}: {hook} must be callable (settings, run) or None")
        if self.settings is not None:
            _check_settings_type(self.name, self.settings)
        for row, overrides in (self.variants or {}).items():
            if not _NAME.fullmatch(row) or isinstance(overrides, str) or not all("=" in o for o in overrides):
                raise ValueError(
                    f"method {self.name!r}: compare row {row!r} must be a lowercase name with a list of key=value overrides"
                )

    def compare_rows(self) -> dict[str, list[str]]:
        """``{row: overrides}`` for ``fedmrn-pl compare``, each starting with ``method.name=<name>``."""
        rows = self.variants if self.variants is not None else {self.name: ()}
        return {row: [f"method.name={self.name}", *overrides] for row, overrides in rows.items()}

    def can_replay(self, settings: Any, run: RunFacts) -> bool:
        """Whether clients can rebuild this method's aggregate from the round messages."""
        return True if self.replayable is None else bool(self.replayable(settings, run))

    def validate(self, settings: Any, run: RunFacts) -> None:
        """Its own ``check``, then the rules every method shares (the masks downlink, a server optimizer).

        Raises:
            ValueError: naming the config key and what would work.
        """
        if self.check is not None:
            self.check(settings, run)
        if run.downlink != "dense" and not self.can_replay(settings, run):
            raise ValueError(
                f"method.downlink={run.downlink} is not valid with method.name={self.name}: clients cannot replay "
                f"its aggregate from the round messages; use method.downlink=dense"
            )
        if run.server_optimizer != "plain" and not self.server_optimizer:
            raise ValueError(
                f"server.optimizer={run.server_optimizer} is not valid with method.name={self.name}: its aggregate "
                f"is not a model update a server optimizer can step; use server.optimizer=plain"
            )


def _check_settings_type(name: str, settings: Any) -> None:
    """A method's settings must be a config section: a dataclass whose every field has a default and a config type."""
    if not (isinstance(settings, type) and dataclasses.is_dataclass(settings)):
        raise TypeError(f"method {name!r}: settings must be a dataclass type, got {settings!r}")
    missing = [f.name for f in dataclasses.fields(settings) if f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise ValueError(f"method {name!r}: settings {settings.__name__} fields {missing} need defaults (a run may set none)")
    from omegaconf import OmegaConf  # the config's own check of the field types, here so a bad plugin is named

    try:
        OmegaConf.structured(settings)
    except Exception as error:
        first = str(error).splitlines()[0]
        raise ValueError(f"method {name!r}: settings {settings.__name__} cannot be a config section: {first}") from None
