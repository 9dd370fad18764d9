"""Which of the module's logged metrics the run reads as its training loss, test accuracy and test loss.

Summaries, the progress line, plots and W&B read ``train/loss``, ``test/acc`` and
``test/loss``. A module that logs other names (``train_loss``, ``val_acc``) maps them
here; its values are then also recorded under the standard names, and a key that the
module never logs is reported once instead of showing up as a silent ``nan``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from fedmrn_pl.messages import FitResult

__all__ = ["STANDARD_KEYS", "MetricKeys"]

log = logging.getLogger(__name__)

STANDARD_KEYS = ("train/loss", "test/acc", "test/loss")  # what summaries, progress, plots and W&B read


class MetricKeys:
    """Maps the standard keys to the names the module logs, and warns once per key never logged.

    Args:
        mapping: ``{standard key: the module's key}``, e.g. ``{"test/acc": "val_acc"}``;
            keys left out keep their standard name. ``test/acc`` is read as higher-is-better.

    Raises:
        ValueError: a key of ``mapping`` is not a standard key, or a value is not a non-empty str.
    """

    def __init__(self, mapping: Mapping[str, str] | None = None) -> None:
        mapping = dict(mapping or {})
        unknown = sorted(set(mapping) - set(STANDARD_KEYS))
        if unknown:
            raise ValueError(f"metric_keys has unknown keys {unknown}; map any of {list(STANDARD_KEYS)} to your names")
        for standard, name in mapping.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"metric_keys[{standard!r}] must be a non-empty str (a key your module logs), got {name!r}")
        self.names = {key: mapping.get(key, key) for key in STANDARD_KEYS}
        self._warned: set[str] = set()

    @property
    def train_loss(self) -> str:
        """The key the client reads as its training loss."""
        return self.names["train/loss"]

    def with_standard_keys(self, test_results: Mapping[str, float]) -> dict[str, float]:
        """``test_results`` plus the test metrics under their standard names; warn once for a missing one."""
        results = dict(test_results)
        for standard in ("test/acc", "test/loss"):
            name = self.names[standard]
            if name in results:
                results[standard] = results[name]
            else:
                self._warn_once(standard, "test_step", sorted(test_results))
        return results

    def check_clients(self, accepted: Sequence[FitResult]) -> None:
        """Warn once when clients trained and none of them logged the training-loss key."""
        if accepted and all(result.train_loss is None for result in accepted):
            self._warn_once("train/loss", "training_step", sorted({key for r in accepted for key in r.logged}))

    def _warn_once(self, standard: str, hook: str, logged: list[str]) -> None:
        if standard in self._warned:
            return
        self._warned.add(standard)
        name = self.names[standard]
        log.warning(
            "the module logged no %r in %s (it logged %s); %s reads as missing. Log it with self.log(%r, ...) "
            "or name your key: FederatedTrainer(..., metric_keys={%r: '<your key>'})",
            name,
            hook,
            logged or "nothing",
            standard,
            name,
            standard,
        )
