"""Weights & Biases logging: per-round metrics, the run summary, plots and the final model.

A real ``wandb`` run, offline unless asked otherwise: nothing leaves the machine until
``wandb sync``. The run id is part of the callback's checkpoint state, so a resumed
fedmrn-pl run continues the same W&B run instead of starting a second one.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .base import FederatedCallback, FederatedRun
from .choices import WandbMode

__all__ = ["MODEL_NAME", "WandbLogger", "WandbMode", "resolve_mode", "round_scalars"]

MODEL_NAME = "global_model.pt"

log = logging.getLogger(__name__)


def resolve_mode(mode: str | None) -> str | None:
    """The mode to give ``wandb.init``: "disabled" wins, then ``WANDB_MODE``, then offline.

    Returns None when ``WANDB_MODE`` is set, so wandb reads it itself.
    """
    if mode is not None:
        mode = WandbMode.parse(mode, "wandb mode")
    if mode == "disabled" or os.environ.get("WANDB_MODE") == "disabled":
        return "disabled"
    if os.environ.get("WANDB_MODE"):
        return None
    return "online" if mode == "online" else "offline"


class WandbLogger(FederatedCallback):
    """Logs a federated run to W&B, with the server round as the x axis.

    Args:
        project: W&B project.
        entity: W&B user or team; None uses the default of the logged-in account.
        name: run name shown in the UI; None lets W&B pick one.
        group: groups runs (e.g. the seeds of one setting).
        tags: run tags.
        mode: "offline" (default), "online" or "disabled"; ``WANDB_MODE`` overrides
            offline/online, and "disabled" from either turns logging off.
        dir: where W&B writes its files (``<dir>/wandb/``), the plots and the model
            file; default the config's ``output_dir``, else the working directory.
        config: the experiment config as plain data (``wandb.config``); default: the trainer's
            ``run_config()`` (module hparams, masking and trainer settings).
        log_model: save the final global model and log it as a ``model`` artifact.
    """

    def __init__(
        self,
        project: str = "fedmrn-pl",
        entity: str | None = None,
        name: str | None = None,
        group: str | None = None,
        tags: Sequence[str] = (),
        mode: str | None = "offline",
        dir: str | Path | None = None,
        config: Mapping[str, Any] | None = None,
        log_model: bool = True,
    ) -> None:
        resolve_mode(mode)  # fail at construction on an invalid mode
        self.project = project
        self.entity = entity
        self.name = name
        self.group = group
        self.tags = list(tags)
        self.mode = mode
        self.config = dict(config or {})
        default_dir = self.config.get("output_dir") or Path.cwd()
        self.dir = Path(dir if dir is not None else default_dir)
        self.log_model = log_model
        self.run_id: str | None = None  # checkpointed: a resumed run continues this W&B run
        self.run: Any = None

    # ------------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: FederatedRun) -> None:
        """Start (or, after a resume, continue) the W&B run."""
        mode = resolve_mode(self.mode)
        if mode == "disabled":
            return
        import wandb

        self.dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=self.project,
            entity=self.entity,
            name=self.name,
            group=self.group,
            tags=self.tags,
            config=self.config or trainer.run_config(),
            dir=str(self.dir),
            mode=mode,
            id=self.run_id,
            resume="allow" if self.run_id else None,
            reinit="create_new",
            settings=_quiet_settings(wandb, mode),
        )
        self.run_id = self.run.id
        self.run.define_metric("round")
        self.run.define_metric("*", step_metric="round")

    def on_round_end(self, trainer: FederatedRun, server_round: int, metrics: dict[str, Any]) -> None:
        """Log the round's scalar metrics at ``step=server_round``."""
        if self.run is not None:
            self.run.log(round_scalars(metrics), step=server_round)

    def on_fit_end(self, trainer: FederatedRun) -> None:
        """Write the run summary, the plots the run drew, and the model artifact, then finish the run."""
        if self.run is None:
            return
        import wandb

        from fedmrn_pl.plots import PLOT_NAMES

        summary = trainer.summary or {}
        self.run.summary.update(
            {key: value for key, value in summary.items() if key != "per_round" and value is not None}
        )
        # The plots are drawn once per run, by RunArtifacts into the run directory.
        images = {
            f"plots/{Path(name).stem}": wandb.Image(str(self.dir / name))
            for name in PLOT_NAMES
            if (self.dir / name).is_file()
        }
        if images:
            self.run.log(images, step=trainer.completed_rounds)
        if self.log_model:
            self.run.log_artifact(self._model_artifact(trainer, summary), aliases=["latest", "final"])
        self._finish(exit_code=0)

    def on_exception(self, trainer: FederatedRun, exception: BaseException) -> None:
        """Finish the run as failed, so W&B does not show it as still running."""
        if self.run is not None:
            self._finish(exit_code=1)

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The W&B run id (plain data)."""
        return {"run_id": self.run_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Remember the run id to resume.

        Raises:
            ValueError: the saved run id is not one W&B accepts (1 to 128 printable characters, none of ``/\\#?%:``).
        """
        run_id = state.get("run_id")
        valid = isinstance(run_id, str) and run_id.isprintable() and re.fullmatch(r"[^/\\#?%:\s]{1,128}", run_id)
        if run_id is not None and not valid:
            raise ValueError(f"{run_id!r:.60} is not a W&B run id")
        self.run_id = run_id

    # ---------------------------------------------------------------- helpers
    def _model_artifact(self, trainer: FederatedRun, summary: Mapping[str, Any]) -> Any:
        import wandb

        path = self.dir / MODEL_NAME
        torch.save({name: tensor.detach().cpu() for name, tensor in trainer.global_state.items()}, path)
        keys = ("method", "rounds", "final_test_accuracy", "monitor", "best_value", "global_model_sha256")
        metadata = {key: summary.get(key) for key in keys}
        artifact = wandb.Artifact(f"model-{self.run.id}", type="model", metadata=metadata)
        artifact.add_file(str(path), name=MODEL_NAME)
        return artifact

    def _finish(self, exit_code: int) -> None:
        run, self.run = self.run, None
        offline = run.settings.mode in ("offline", "dryrun")
        run_dir = Path(run.dir).parent
        run.finish(exit_code=exit_code)
        if offline:
            log.info("W&B run saved offline in %s; upload it with: wandb sync %s", run_dir, run_dir)
        elif run.url:
            log.info("W&B run: %s", run.url)


def _quiet_settings(wandb: Any, mode: str | None) -> Any:
    """Offline: silent (our closing line says where the run is); online: no banners, only problems."""
    offline = (mode or os.environ.get("WANDB_MODE", "")) in ("offline", "dryrun")
    return wandb.Settings(silent=True) if offline else wandb.Settings(quiet=True)


# Round bookkeeping logged under grouped names below (counts, a 0/1 flag); the client lists are not numbers.
_RENAMED = ("accepted_clients", "dropped_clients", "kept_previous_model", "clients")


def round_scalars(metrics: Mapping[str, Any]) -> dict[str, float | int]:
    """The loggable numbers of a round: every finite number in it, client counts and the round.

    The module's own keys go as logged, ``test_mse`` as well as ``test/acc``.
    """
    scalars: dict[str, float | int] = {"round": int(metrics["round"])}
    for key, value in metrics.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key not in _RENAMED and number and math.isfinite(value):
            scalars[key] = value
    scalars["clients/accepted"] = int(metrics.get("accepted_clients", 0))
    scalars["clients/dropped"] = len(metrics.get("dropped_clients", ()))
    scalars["round/kept_previous_model"] = int(bool(metrics.get("kept_previous_model", False)))
    return scalars
