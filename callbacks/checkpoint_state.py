"""What a checkpoint holds: each section declared once, with its type and checks.

``SECTIONS`` lists every top-level entry ``FederatedTrainer.state_dict()`` and a
configured run write, as torchmetrics declares state: whether it must be there and how
its value is checked (types, keys, ranges). ``check_state`` walks it, then checks what
ties sections together (one history record per completed round, numbered in order).
Checks against a particular run (its model, clients, strategy and payload manifest)
are the trainer's, in ``FederatedTrainer.load_state_dict``.

A check is a function ``check(value, where)`` that raises :class:`CheckpointError`
naming where the value sits (``'history'[1]['uplink/bytes']``) and what it must be.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch

from fedmrn_pl.masking.scales import MAX_NOISE_SCALE, MIN_NOISE_SCALE

__all__ = ["ROUND_RECORD", "SECTIONS", "CheckpointError", "check_against_model", "check_state"]


class CheckpointError(ValueError):
    """A checkpoint cannot be used: unreadable, damaged, or not this run's; the message names the file and why."""


Check = Callable[[Any, str], None]


def _shown(value: Any) -> str:
    """A value for a one-line message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _at(where: str, key: Any) -> str:
    """Where ``key`` of the value at ``where`` sits: ``'history'[1]``; a top-level section is its quoted name."""
    return repr(key) if not where else f"{where}[{key!r}]"


def _type_error(where: str, what: str, value: Any) -> CheckpointError:
    return CheckpointError(f"{where} must be {what}, got {type(value).__name__}")


def anything(value: Any, where: str) -> None:
    """Any value ``weights_only`` loads: read by its owner, which checks it (a strategy's state)."""


def plain(value: Any, where: str) -> None:
    """JSON-like data (None, bool, int, float, str, lists, dicts with str keys): metrics.json holds it."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            plain(item, f"{where}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            text()(key, f"{where} key")
            plain(item, _at(where, key))
    else:
        raise _type_error(where, "plain data (numbers, strings, lists, dicts)", value)


def integer(low: int = 0, high: int | None = None) -> Check:
    """An int (not a bool) in ``[low, high]``."""

    def check(value: Any, where: str) -> None:
        if type(value) is not int or value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise CheckpointError(f"{where}={_shown(value)} must be an int {bounds}")

    return check


def number(low: float | None = None, high: float | None = None, *, finite: bool = True) -> Check:
    """An int or float (not a bool) in ``[low, high]``; ``finite=False`` also lets inf and nan through."""
    what = "a finite number" if finite else "a number"
    what += "" if low is None else f" >= {low:g}" if high is None else f" in [{low:g}, {high:g}]"

    def check(value: Any, where: str) -> None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and math.isfinite(value):
            ok = (low is None or value >= low) and (high is None or value <= high)
        elif ok:
            ok = not finite
        if not ok:
            raise CheckpointError(f"{where}={_shown(value)} must be {what}")

    return check


def flag(value: Any, where: str) -> None:
    """A bool."""
    if not isinstance(value, bool):
        raise _type_error(where, "a bool", value)


def text(pattern: str | None = None, what: str = "a str") -> Check:
    """A str, matching ``pattern`` in full if given."""

    def check(value: Any, where: str) -> None:
        if not isinstance(value, str) or (pattern is not None and re.fullmatch(pattern, value) is None):
            raise CheckpointError(f"{where}={_shown(value)} must be {what}")

    return check


def tensor(dtype: torch.dtype | None = None, ndim: int | None = None, *, finite: bool = False) -> Check:
    """A tensor, of ``dtype`` and ``ndim`` if given; ``finite``: no inf or nan in a float tensor."""
    what = "a " + " ".join(filter(None, [f"{ndim}-d" if ndim is not None else "", str(dtype) if dtype else "", "tensor"]))

    def check(value: Any, where: str) -> None:
        if not isinstance(value, torch.Tensor):
            raise _type_error(where, what, value)
        if (dtype is not None and value.dtype != dtype) or (ndim is not None and value.ndim != ndim):
            raise CheckpointError(f"{where} must be {what}, got {value.dtype} of shape {tuple(value.shape)}")
        if finite and not _all_finite(value):
            raise CheckpointError(f"{where} holds non-finite values")

    return check


def _all_finite(value: torch.Tensor) -> bool:
    """No inf or nan: one min/max pass over a float tensor (nan propagates), cheaper than ``isfinite().all()``."""
    if value.is_complex():
        return bool(torch.isfinite(value).all())
    if not value.is_floating_point() or value.numel() == 0:
        return True
    low, high = torch.aminmax(value.detach())
    return math.isfinite(float(low)) and math.isfinite(float(high))


def mapping(keys: Check, values: Check, *, nonempty: bool = False) -> Check:
    """A dict whose every key passes ``keys`` and every value ``values``."""
    what = "a non-empty dict" if nonempty else "a dict"

    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _type_error(where, what, value)
        if nonempty and not value:
            raise CheckpointError(f"{where} must be {what}")
        for key, item in value.items():
            keys(key, f"{where} key")
            values(item, _at(where, key))

    return check


def sequence(items: Check) -> Check:
    """A list whose every item passes ``items``."""

    def check(value: Any, where: str) -> None:
        if not isinstance(value, list):
            raise _type_error(where, "a list", value)
        for index, item in enumerate(value):
            items(item, f"{where}[{index}]")

    return check


def record(fields: Mapping[str, tuple[bool, Check]], rest: Check | None = None) -> Check:
    """A dict with named ``fields`` (``name: (required, check)``); other str keys pass ``rest``, or are refused."""

    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _type_error(where or "the checkpoint", "a dict", value)
        for name, (required, item) in fields.items():
            if name in value:
                item(value[name], _at(where, name))
            elif required:
                raise CheckpointError(f"{where or 'the checkpoint'} lacks {name!r}")
        for key in value.keys() - fields.keys():
            if rest is None or not isinstance(key, str):
                raise CheckpointError(f"{where or 'the checkpoint'} has an unexpected key {_shown(key)}")
            rest(value[key], _at(where, key))

    return check


def client_state(value: Any, where: str) -> None:
    """A client's state: its bytes (a 1-d uint8 tensor), or the hex SHA-256 naming its file in ``client_states/``."""
    if isinstance(value, str):
        text(r"[0-9a-f]{64}", "a hex SHA-256 (the state file's digest)")(value, where)
    else:
        tensor(torch.uint8, 1)(value, where)


# One round's metrics, as FederatedTrainer records them; callbacks may add plain entries (on_round_end).
ROUND_RECORD = record(
    {
        "round": (True, integer(1)),
        "clients": (False, sequence(integer(0))),
        "accepted_clients": (False, integer(0)),
        "dropped_clients": (True, sequence(record({"client_id": (True, integer(0)), "reason": (True, text())}))),
        "kept_previous_model": (False, flag),
        "train/loss": (False, number(finite=False)),  # nan when no client logged it
        "test/acc": (False, number(finite=False)),
        "test/loss": (False, number(finite=False)),
        "uplink/bytes": (True, integer(0)),
        "uplink/cumulative_bytes": (True, integer(0)),
        "uplink/dense_bytes": (True, integer(0)),
        "uplink/compression": (False, number(0, finite=False)),  # nan when nothing was sent
        "downlink/bytes": (True, integer(0)),
        "round/seconds": (False, number(0)),
        "next_noise_scales": (False, mapping(text(), number(MIN_NOISE_SCALE, MAX_NOISE_SCALE))),
    },
    rest=plain,
)

# Every section of a checkpoint: (required, check). Others (``FederatedCheckpoint(extra=...)``) are the saver's.
SECTIONS: dict[str, tuple[bool, Check]] = {
    "global_state": (True, mapping(text(), tensor(finite=True), nonempty=True)),
    "completed_rounds": (True, integer(0)),
    "elapsed_seconds": (False, number(0)),
    "history": (True, sequence(ROUND_RECORD)),
    "strategy": (False, mapping(text(), anything)),  # the strategy's own load_state_dict checks the values
    "server_optimizer": (False, mapping(text(), mapping(text(), tensor(torch.float32, finite=True)))),  # {moment: {name: tensor}}
    "downlink": (False, record({"synced": (False, mapping(integer(0), integer(0))),
                                "messages": (False, mapping(integer(1), tensor(torch.uint8, 1)))})),  # fmt: skip
    "callbacks": (False, mapping(text(), mapping(anything, anything))),  # {state_key: that callback's state}
    "client_states": (False, mapping(text(r"0|[1-9][0-9]*", "a client id in decimal"), client_state)),
    "run_fingerprint": (False, text(r"[0-9a-f]{64}", "a hex SHA-256")),
    "run_config": (False, mapping(text(), plain)),
}


def check_state(state: Any, rounds: int | None = None) -> None:
    """Check every declared section of ``state``, then how they fit together.

    Args:
        state: a checkpoint's content (without its digests).
        rounds: the run's ``train.rounds``, which the completed rounds must not exceed.

    Raises:
        CheckpointError: naming the section, the key and what it must be.
    """
    record(SECTIONS, rest=anything)(state, "")
    completed, history = state["completed_rounds"], state["history"]
    if rounds is not None and completed > rounds:
        raise CheckpointError(
            f"it holds {completed} completed rounds but train.rounds={rounds}; resume with train.rounds >= {completed}"
        )
    if len(history) != completed:
        raise CheckpointError(f"'history' has {len(history)} rounds but 'completed_rounds' is {completed}")
    cumulative = 0
    for index, metrics in enumerate(history):
        if metrics["round"] != index + 1:
            raise CheckpointError(f"'history'[{index}]['round']={metrics['round']} must be {index + 1} (rounds in order)")
        cumulative += metrics["uplink/bytes"]
        if metrics["uplink/cumulative_bytes"] != cumulative:
            raise CheckpointError(
                f"'history'[{index}]['uplink/cumulative_bytes']={metrics['uplink/cumulative_bytes']} must be "
                f"{cumulative}, the sum of 'uplink/bytes' so far"
            )


def check_against_model(weights: Mapping[str, torch.Tensor], model_state: Mapping[str, torch.Tensor]) -> None:
    """The checkpoint's model has the tensors of ``model_state``: the same names, shapes and dtypes."""
    missing, unexpected = sorted(set(model_state) - set(weights)), sorted(set(weights) - set(model_state))
    if missing or unexpected:
        raise CheckpointError(f"its model does not match: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, expected in model_state.items():
        tensor = weights[name]
        if tensor.shape != expected.shape or tensor.dtype != expected.dtype:
            raise CheckpointError(
                f"tensor {name!r} is {tensor.dtype} {tuple(tensor.shape)}, "
                f"the model has {expected.dtype} {tuple(expected.shape)}"
            )
