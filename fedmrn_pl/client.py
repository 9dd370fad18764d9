"""One client's local round on any user LightningModule.

The user's module is trained by a real ``lightning.Trainer`` with its own
``training_step``, ``configure_optimizers`` and metrics. For FedMRN the
``ProgressiveMasking`` Lightning callback turns the module's layers into
masked-noise layers for the duration of the fit and drives PSM; afterwards the
module is plain again and the client's update is read off it.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from fedmrn_pl.masking import (
    MaskingConfig,
    apply_masked_noise,
    is_masked,
    masked_parametrizations,
    psm_probability,
    remove_masked_noise,
    sample_final_masks,
    set_mask_generator,
    set_mask_probability,
)
from fedmrn_pl.seeding import derive_seed, make_generator
from fedmrn_pl.update import ClientUpdate, NoiseSpec

__all__ = ["ClientResult", "FederatedClient", "ProgressiveMasking", "cpu_state", "quiet_lightning"]


class ProgressiveMasking(L.Callback):
    """Lightning callback: masked noise on the module during one local fit, trained with PSM.

    Args:
        noise_seed: the client's noise seed for this round (sent in its payload).
        draw_seed: seed of the SM/PSM draws during training.
        final_seed: seed of the final mask sample.
        masking: mask kind, noise, schedule and parameter selection.
    """

    def __init__(self, noise_seed: int, draw_seed: int, final_seed: int, masking: MaskingConfig) -> None:
        self.noise_seed = noise_seed
        self.draw_seed = draw_seed
        self.final_seed = final_seed
        self.masking = masking
        self.total_steps = 0
        self.masks: dict[str, torch.Tensor] = {}
        self.stats: dict[str, float] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Wrap before ``configure_optimizers`` runs, so the optimizer sees the updates ``u``."""
        apply_masked_noise(pl_module, self.noise_seed, self.masking.kind, self.masking.noise, self.masking.selector)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Seed the draws on the module's device, now that it has been moved there."""
        set_mask_generator(pl_module, make_generator(self.draw_seed, pl_module.device))
        self.total_steps = (
            int(trainer.estimated_stepping_batches) if math.isfinite(trainer.estimated_stepping_batches) else 0
        )

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Advance PSM: the chance of sampled masks grows with the local step."""
        set_mask_probability(pl_module, psm_probability(self.masking.schedule, trainer.global_step, self.total_steps))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Sample the mask to upload (SM, p = 1) and record mask statistics."""
        for name, parametrization in masked_parametrizations(pl_module).items():
            if not bool(torch.isfinite(parametrization.update).all()):
                raise FloatingPointError(f"non-finite values in the trained update of {name!r}")
        # The uploaded mask is drawn on the CPU: the same u gives the same bits on any device.
        self.masks = sample_final_masks(pl_module, make_generator(self.final_seed))
        self.stats = _mask_stats(masked_parametrizations(pl_module), self.masks)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Give the user their plain module back."""
        if is_masked(pl_module):
            remove_masked_noise(pl_module)


@torch.no_grad()
def _mask_stats(parametrizations: Mapping[str, Any], masks: Mapping[str, torch.Tensor]) -> dict[str, float]:
    ones = sum(int(mask.sum()) for mask in masks.values())
    numel = sum(mask.numel() for mask in masks.values())
    update_sum = sum(float(p.update.abs().sum()) for p in parametrizations.values())
    noise_sum = sum(float(p.noise.abs().sum()) for p in parametrizations.values())
    return {"mask_ones_fraction": ones / max(numel, 1), "mean_abs_u_over_n": update_sum / max(noise_sum, 1e-30)}


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of ``module.state_dict()`` that later training cannot change."""
    return {name: tensor.detach().cpu().clone() for name, tensor in module.state_dict().items()}


@dataclass
class ClientResult:
    """What a local round produced: the update plus figures for logging."""

    update: ClientUpdate
    train_loss: float | None = None
    stats: dict[str, float] = field(default_factory=dict)


def quiet_lightning() -> None:
    """Silence Lightning's per-fit banners (GPU available, TPU ...), printed for every client."""
    for name in (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.pytorch.accelerators.cuda",
        "lightning.fabric.utilities.rank_zero",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=Warning)
    warnings.filterwarnings("ignore", message=r".*does not have many workers", category=Warning)


class FederatedClient:
    """Trains a user LightningModule for one client and round and returns its update.

    Args:
        module: any LightningModule; its state is replaced by the global state first.
        masking: FedMRN settings, or None for a dense (FedAvg) update.
        local_epochs: epochs of local training per round.
        run_seed: the run's seed, from which all client randomness is derived.
        trainer_kwargs: passed on to ``lightning.Trainer`` (accelerator, devices, precision ...).
        train_loss_key: the logged metric read as the client's training loss.
    """

    def __init__(
        self,
        module: L.LightningModule,
        masking: MaskingConfig | None,
        local_epochs: int = 1,
        run_seed: int = 0,
        trainer_kwargs: Mapping[str, Any] | None = None,
        train_loss_key: str = "train/loss",
    ) -> None:
        if local_epochs < 1:
            raise ValueError(f"local_epochs must be >= 1, got {local_epochs}")
        quiet_lightning()
        self.module = module
        self.masking = masking
        self.local_epochs = local_epochs
        self.run_seed = run_seed
        self.trainer_kwargs = dict(trainer_kwargs or {})
        self.train_loss_key = train_loss_key

    def fit(
        self,
        global_state: Mapping[str, torch.Tensor],
        server_round: int,
        client_id: int,
        noise_seed: int,
        train_loader: DataLoader,
        num_examples: int,
    ) -> ClientResult:
        """Load the global state, train locally, and return the client's update."""
        self.module.load_state_dict(global_state)
        callbacks: list[L.Callback] = []
        masking_callback = None
        if self.masking is not None:
            masking_callback = ProgressiveMasking(
                noise_seed,
                derive_seed(self.run_seed, server_round, client_id, "psm"),
                derive_seed(self.run_seed, server_round, client_id, "final_mask"),
                self.masking,
            )
            callbacks.append(masking_callback)
        trainer = L.Trainer(**self._trainer_settings(callbacks))
        try:
            trainer.fit(self.module, train_dataloaders=train_loader)
        finally:
            if is_masked(self.module):
                remove_masked_noise(self.module)
        train_loss = trainer.callback_metrics.get(self.train_loss_key)
        state = cpu_state(self.module)
        if masking_callback is None:
            update = ClientUpdate(server_round, client_id, noise_seed, "none", NoiseSpec(), num_examples, dense=state)
            stats = {}
        else:
            masks = masking_callback.masks
            if set(masks) - set(state):
                raise RuntimeError(
                    f"masked parameters {sorted(set(masks) - set(state))} are not in the module's state_dict"
                )
            dense = {name: tensor for name, tensor in state.items() if name not in masks}
            update = ClientUpdate(
                server_round,
                client_id,
                noise_seed,
                self.masking.kind,
                self.masking.noise,
                num_examples,
                masks=masks,
                dense=dense,
            )
            stats = masking_callback.stats
        return ClientResult(update, None if train_loss is None else float(train_loss), stats)

    def _trainer_settings(self, callbacks: list[L.Callback]) -> dict[str, Any]:
        settings: dict[str, Any] = dict(
            max_epochs=self.local_epochs,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
        )
        settings.update(self.trainer_kwargs)
        settings["callbacks"] = list(settings.get("callbacks", [])) + callbacks
        return settings
