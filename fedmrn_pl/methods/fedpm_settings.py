"""FedPM's settings, in a module light enough for the config to import (no torch, no Lightning)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedmrn_pl.choices import Choice

__all__ = ["FedPMEstimate", "FedPMOptimizer", "FedPMSettings"]


class FedPMEstimate(Choice):
    """How the server turns a Beta posterior into the global probability ``theta``."""

    mode = "mode"  # (alpha - 1) / (alpha + beta - 2), the paper's and the authors' code
    mean = "mean"  # alpha / (alpha + beta): shrinks towards 1/2 with few votes


class FedPMOptimizer(Choice):
    """What trains a client's scores."""

    task = "task"  # the LightningModule's own optimizer, on u with theta = sigmoid(gain * u / |w_rand|)
    adam = "adam"  # Adam on the logits s, theta = sigmoid(s), as the paper (lr 0.1)


@dataclass(frozen=True)
class FedPMSettings:
    """FedPM's knobs, checked once.

    Args:
        prior: ``lambda_0`` of the ``Beta(lambda_0, lambda_0)`` prior.
        reset_every: rounds between resets of the posterior (the paper: ``1 / participation``).
        estimate: ``mode`` (paper) or ``mean`` of the posterior.
        vote_clip: each client's 0/1 vote counts as ``vote_clip`` / ``1 - vote_clip`` (the authors'
            ``epsilon``), so ``theta`` stays inside ``(0, 1)`` and the scores stay finite.
        optimizer: ``task`` (the module's optimizer, the default) or ``adam`` (the paper's). With
            the few local steps of a small client (mnist5k: ~14 per round) Adam at lr 0.1 moves a
            logit by about lr per step (~1.4 per round) and learns slower (README, "Comparing methods").
        lr: Adam's learning rate on the scores (``optimizer=adam``).
        gain: score gain for ``optimizer=task``: plain SGD moves ``theta`` about ``gain**2`` times faster.
    """

    prior: float = 1.0
    reset_every: int = 1
    estimate: FedPMEstimate = FedPMEstimate.mode
    vote_clip: float = 0.01
    optimizer: FedPMOptimizer = FedPMOptimizer.task
    lr: float = 0.1
    gain: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "estimate", FedPMEstimate.parse(self.estimate, "FedPM estimate"))
        object.__setattr__(self, "optimizer", FedPMOptimizer.parse(self.optimizer, "FedPM optimizer"))
        for key in ("prior", "lr", "gain"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"FedPM {key} must be a finite number > 0, got {value!r}")
        if self.estimate is FedPMEstimate.mode and self.prior < 1:
            raise ValueError(f"FedPM prior {self.prior} < 1 has no posterior mode; use prior >= 1 or estimate=mean")
        if not (isinstance(self.reset_every, int) and self.reset_every >= 1):
            raise ValueError(f"FedPM reset_every must be an int >= 1, got {self.reset_every!r}")
        if not 0 <= self.vote_clip < 0.5:
            raise ValueError(f"FedPM vote_clip must be in [0, 0.5), got {self.vote_clip!r}")

    @property
    def replayable(self) -> bool:
        """Only a posterior reset every round leaves the aggregate a function of the round's masks alone."""
        return self.reset_every == 1
