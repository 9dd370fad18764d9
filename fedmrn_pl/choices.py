"""``Choice``: the base of every closed set of string settings (mask kinds, dtypes, modes ...).

Each set is a str Enum defined once, next to the code that owns it. Members compare
equal to their strings, so ``kind == "binary"`` keeps working; OmegaConf validates a
config field typed with one and prints the valid values itself; the Python API
parses plain strings with :meth:`Choice.parse`, which names the valid values too.
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

__all__ = ["Choice"]

C = TypeVar("C", bound="Choice")


class Choice(str, Enum):
    """A str Enum whose ``str()`` is its value (names equal values, as OmegaConf matches names)."""

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def parse(cls: type[C], value: object, what: str) -> C:
        """``value`` as a member; ``ValueError`` naming ``what`` and the valid values otherwise."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"{what} {value!r} is not valid; choose one of {cls.values()}") from None

    @classmethod
    def values(cls) -> list[str]:
        """The valid values, in definition order."""
        return [member.value for member in cls]
