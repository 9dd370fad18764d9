"""FedPM (Isik et al., ICLR 2023): Bernoulli masks over a frozen random network, Beta-posterior aggregation.

The implementation is ``fedmrn_pl.methods.fedpm``; this module is its entry: the
``method.fedpm.*`` settings, the rules they must meet, and when clients can replay it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedmrn_pl.methods.fedpm_settings import FedPMEstimate, FedPMOptimizer, FedPMSettings
from fedmrn_pl.methods.plugin import FederatedMethod, MethodContext, MethodParts, RunFacts


@dataclass
class FedPMConfig:
    """FedPM's settings (``method.name=fedpm``); ``FedPMSettings`` says more of each."""

    prior: float = 1.0  # lambda_0 of the Beta(lambda_0, lambda_0) prior of each mask probability
    estimate: FedPMEstimate = FedPMEstimate.mode  # global theta = posterior mode (paper) or mean
    optimizer: FedPMOptimizer = FedPMOptimizer.task  # scores trained by the task's optimizer or Adam (paper)
    lr: float = 0.1  # optimizer=adam: Adam's learning rate on the score logits (the paper's 0.1)
    score_gain: float = 10.0  # optimizer=task: theta = sigmoid(gain * u / |w_rand|)
    reset_every: int | None = None  # rounds between posterior resets; null: ceil(num_clients / clients_per_round)

    def resolved(self, run: RunFacts) -> FedPMSettings:
        """The settings FedPM runs with; the posterior resets every ``1 / participation`` rounds unless set."""
        reset_every = self.reset_every or math.ceil(run.num_clients / run.clients_per_round)
        return FedPMSettings(
            prior=self.prior, reset_every=reset_every, estimate=self.estimate, optimizer=self.optimizer, lr=self.lr,
            gain=self.score_gain,
        )  # fmt: skip


def _check(config: FedPMConfig, run: RunFacts) -> None:
    for key in ("score_gain", "lr", "prior"):
        if not getattr(config, key) > 0:
            raise ValueError(f"method.fedpm.{key}={getattr(config, key)} is not valid; it must be > 0")
    if config.optimizer == FedPMOptimizer.adam and run.precision in ("16-true", "bf16-true"):
        raise ValueError(
            f"train.precision={run.precision} is not valid with method.fedpm.optimizer=adam: Adam's steps underflow "
            f"in half-precision scores; use a mixed precision (16-mixed, bf16-mixed) or method.fedpm.optimizer=task"
        )
    if config.estimate == FedPMEstimate.mode and config.prior < 1:
        raise ValueError(
            f"method.fedpm.prior={config.prior} is not valid with method.fedpm.estimate=mode: a Beta prior below 1 "
            f"has no mode; use method.fedpm.prior >= 1 or method.fedpm.estimate=mean"
        )
    if config.reset_every is not None and config.reset_every < 1:
        raise ValueError(f"method.fedpm.reset_every={config.reset_every} is not valid; it must be >= 1 (or null)")
    if run.downlink != "dense" and not _replayable(config, run):
        raise ValueError(
            f"method.downlink={run.downlink} is not valid with method.name=fedpm and a posterior kept for "
            f"{config.resolved(run).reset_every} rounds: the round messages do not carry it; set "
            f"method.fedpm.reset_every=1 (the authors' code) or use method.downlink=dense"
        )


def _replayable(config: FedPMConfig, run: RunFacts) -> bool:
    return config.resolved(run).replayable


def _build(context: MethodContext) -> MethodParts:
    from fedmrn_pl.methods.fedpm import FedPM, FedPMClient, init_fedpm

    settings = context.settings.resolved(context.run)
    names = context.selected_names()
    init_fedpm(context.module, names, context.run_seed)
    return MethodParts(FedPM(names, context.run_seed, settings), [FedPMClient(names, context.run_seed, settings)])


METHOD = FederatedMethod(
    "fedpm",
    _build,
    summary="Bernoulli masks over a frozen random network, Beta-posterior aggregation",
    settings=FedPMConfig,
    check=_check,
    replayable=_replayable,
    server_optimizer=False,
    variants={"fedpm": [], "fedpm_adam": ["method.fedpm.optimizer=adam"]},  # the paper's score optimizer: Adam, lr 0.1
)
