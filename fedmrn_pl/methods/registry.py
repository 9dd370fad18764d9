"""The federated methods by name: the built-in ones, yours, and those installed packages declare.

A method is a :class:`~fedmrn_pl.methods.plugin.FederatedMethod`. The built-in ones live
one per module in ``fedmrn_pl.methods.builtin``; yours join with :func:`register_method`
(call it before ``load_config``), or, for the CLI and every ``torchrun`` rank, through an
entry point of an installed package::

    [options.entry_points]
    fedmrn_pl.methods =
        rms_sign = my_package.rms_sign:METHOD

The config's ``method.name`` choices, its ``method.<name>`` sections and compare's rows
all come from here. Torch-free: nothing is built until :func:`build_method` is called.
"""

from __future__ import annotations

import importlib
from dataclasses import fields
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from fedmrn_pl.methods.plugin import FederatedMethod, MethodContext, MethodParts, RunFacts

if TYPE_CHECKING:
    from torch import nn

    from fedmrn_pl.masking.selection import ParameterSelector

__all__ = [
    "ENTRY_POINT_GROUP", "build_method", "compare_variants", "get_method", "method_names", "register_method",
    "registered_methods", "unregister_method",
]  # fmt: skip

ENTRY_POINT_GROUP = "fedmrn_pl.methods"
# Modules of fedmrn_pl.methods.builtin, each defining METHOD, in the order compare lists them.
_BUILTIN = ("fedavg", "fedmrn", "signsgd", "ef_signsgd", "stoch1bit", "eden", "topk", "fedpm")
# Keys of the config's method section that a method's name cannot shadow.
_RESERVED = frozenset({
    "name", "mask", "noise", "alpha", "noise_scale", "scale_factor", "scale_cap", "schedule", "mask_sampling",
    "dense_dtype", "mask_encoding", "dense_encoding", "downlink", "dense_sync_every", "mask_include", "mask_exclude",
})  # fmt: skip

_registry: dict[str, FederatedMethod] = {}
_builtin_loaded = False
_plugins_loaded = False
_broken: dict[str, str] = {}  # entry points that failed to load: name -> why (refused when that method is asked for)


def register_method(method: FederatedMethod, *, replace: bool = False) -> FederatedMethod:
    """Make ``method`` available as ``method.name=<name>`` (config, CLI, compare) and to ``build_method``.

    Returns ``method``, so a module can write ``METHOD = register_method(FederatedMethod(...))``.
    A method registered here wins over an installed entry point of the same name (a script
    that registers the method its own package also declares).

    Raises:
        TypeError: ``method`` is not a ``FederatedMethod``.
        ValueError: the name is taken (pass ``replace=True`` to swap in a new version), is a
            setting of the config's method section or another method's compare row.
    """
    _load_builtin()  # not the entry points: a plugin module registering itself may be one of them, mid-import
    return _add(method, replace)


def unregister_method(name: str) -> FederatedMethod:
    """Remove a method registered with ``register_method`` (a test's, a notebook's); returns it.

    Raises:
        ValueError: no such method, or a built-in one.
    """
    method = get_method(name)  # an unknown name is refused with the registered ones
    if method.build.__module__.startswith("fedmrn_pl.methods.builtin."):
        raise ValueError(f"method {name!r} is built in and cannot be unregistered")
    return _registry.pop(name)


def _add(method: Any, replace: bool, source: str = "register_method") -> FederatedMethod:
    if not isinstance(method, FederatedMethod):
        raise TypeError(f"{source} takes a fedmrn_pl.methods.FederatedMethod, got {type(method).__name__}")
    if method.name in _RESERVED:
        raise ValueError(f"method name {method.name!r} is taken by the setting method.{method.name}; choose another name")
    existing = _registry.get(method.name)
    if existing is not None and existing is not method and not replace:
        raise ValueError(f"a method named {method.name!r} is already registered; choose another name or pass replace=True")
    rows = {row for other in _registry.values() if other.name != method.name for row in other.compare_rows()}
    taken = sorted(rows & {method.name, *method.compare_rows()})
    if taken:
        raise ValueError(f"method {method.name!r}: {taken} already name another method's compare rows; rename them")
    _registry[method.name] = method
    return method


def _load_builtin() -> None:
    global _builtin_loaded
    if not _builtin_loaded:
        for module in _BUILTIN:
            _add(importlib.import_module(f"fedmrn_pl.methods.builtin.{module}").METHOD, replace=False)
        _builtin_loaded = True


def _load() -> None:
    """Register the built-in methods, then the installed packages' entry points, once.

    An entry point that fails to load is remembered with its reason, which the registry
    gives when that method is asked for; the other methods still run.
    """
    global _plugins_loaded
    _load_builtin()
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name in _registry:  # registered in this process already (by itself, or by a script)
            continue
        try:
            _add(point.load(), replace=False, source=f"the {ENTRY_POINT_GROUP} entry point {point.name!r}")
        except Exception as error:  # a broken plugin is named, not a traceback deep in an import
            _broken[point.name] = (
                f"the {ENTRY_POINT_GROUP} entry point {point.name!r} ({point.value}) failed to load: "
                f"{type(error).__name__}: {error}"
            )


def registered_methods() -> dict[str, FederatedMethod]:
    """Every method by name: built-in first, then plugins in the order they registered."""
    _load()
    return dict(_registry)


def method_names() -> list[str]:
    """The valid values of ``method.name``."""
    return list(registered_methods())


def get_method(name: str) -> FederatedMethod:
    """The method registered as ``name``.

    Raises:
        ValueError: no method has that name; the message lists those that do.
    """
    methods = registered_methods()
    if name in _broken and name not in methods:
        raise ValueError(f"method {name!r} is not available: {_broken[name]}")
    if name not in methods:
        raise ValueError(
            f"method {name!r} is not valid; choose one of {list(methods)} "
            f"(or register yours: fedmrn_pl.methods.register_method, or a {ENTRY_POINT_GROUP!r} entry point)"
        )
    return methods[name]


def compare_variants() -> dict[str, list[str]]:
    """Every row ``fedmrn-pl compare`` knows, as config overrides, from every registered method."""
    return {row: overrides for method in registered_methods().values() for row, overrides in method.compare_rows().items()}


def build_method(
    name: str,
    module: nn.Module,
    selector: ParameterSelector | None = None,
    *,
    settings: Any = None,
    run: RunFacts | None = None,
    **overrides: Any,
) -> MethodParts:
    """The server strategy and client-side callbacks of method ``name`` for ``module``.

    Args:
        name: a registered method (:func:`method_names`).
        module: the global model (a LightningModule).
        selector: the tensors to compress (default: those FedMRN would mask).
        settings: the method's settings instance; default its dataclass's defaults with
            ``overrides`` applied (``build_method("topk", module, fraction=0.05)``).
        run: the run facts (seed, participation ...) the method depends on.

    Raises:
        ValueError: an unknown method or setting, or settings its ``check`` refuses.
    """
    from fedmrn_pl.masking.selection import ParameterSelector

    method = get_method(name)
    run = run or RunFacts()
    if settings is None:
        settings = _settings_with(method, overrides)
    elif overrides:
        raise ValueError(f"give either settings= or keyword settings for method {name!r}, not both")
    method.validate(settings, run)
    parts = method.build(MethodContext(module, selector or ParameterSelector(), settings, run))
    if not isinstance(parts, MethodParts):
        raise TypeError(f"method {name!r}: build returned {type(parts).__name__}, expected MethodParts")
    return parts


def _settings_with(method: FederatedMethod, overrides: dict[str, Any]) -> Any:
    """The method's default settings with ``overrides``, unknown keys refused with the valid ones."""
    if method.settings is None:
        if overrides:
            raise ValueError(f"method {method.name!r} has no settings; got {sorted(overrides)}")
        return None
    valid = [f.name for f in fields(method.settings)]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ValueError(f"method {method.name!r} has no setting {unknown}; its settings are {valid}")
    return method.settings(**overrides)
