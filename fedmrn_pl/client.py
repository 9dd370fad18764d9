"""One client's local round on any user LightningModule.

The user's module is trained by a real ``lightning.Trainer`` with its own
``training_step``, ``configure_optimizers`` and metrics. For FedMRN the
``ProgressiveMasking`` Lightning callback turns the module's layers into
masked-noise layers for the duration of the fit and drives PSM; afterwards the
module is plain again and the client's update is read off it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import lightning as L
import torch
from torch.utils.data import DataLoader

from fedmrn_pl.masking import (
    MaskingConfig,
    apply_masked_noise,
    begin_mask_step,
    end_mask_step,
    is_masked,
    masked_parametrizations,
    psm_probability,
    remove_masked_noise,
    sample_final_masks,
    set_mask_generator,
    set_mask_probability,
    tensor_rms,
)
from fedmrn_pl.messages import FitRequest, FitResult
from fedmrn_pl.seeding import derive_seed, make_generator
from fedmrn_pl.state import load_module_state, uploaded_state
from fedmrn_pl.trainer_kwargs import client_loggers
from fedmrn_pl.update import DENSE_KIND, ClientUpdate, NoiseSpec

__all__ = [
    "ClientData",
    "ClientTimeout",
    "FederatedClient",
    "ProgressiveMasking",
    "check_client_data",
    "local_trainer",
    "quiet_lightning",
]


class ClientData(Protocol):
    """What federated training needs from data: per-client loaders and a test loader."""

    num_clients: int

    def client_num_examples(self, client_id: int) -> int: ...

    def client_dataloader(self, client_id: int, server_round: int, batch_size: int) -> DataLoader: ...

    def test_dataloader(self) -> DataLoader: ...


_CLIENT_DATA_MEMBERS = ("num_clients", "client_num_examples", "client_dataloader", "test_dataloader")


def check_client_data(data: object) -> None:
    """Refuse data that is not ``ClientData`` at once, in one line that says what to pass.

    Raises:
        TypeError: a plain ``LightningDataModule`` (which does not say which samples each client
            holds), or another object lacking members of ``ClientData``.
    """
    missing = [name for name in _CLIENT_DATA_MEMBERS if not hasattr(data, name)]
    if not missing:
        return
    kind = type(data).__name__
    if isinstance(data, L.LightningDataModule):
        raise TypeError(
            f"data: {kind} is a plain LightningDataModule, which does not say which samples each client holds; "
            f"pass FederatedDataModule.from_datamodule(datamodule, num_clients=N) (an iid split of its training set, "
            f"or its own split when train_dataloader() returns one loader per client)"
        )
    raise TypeError(
        f"data: {kind} lacks {missing}; pass a FederatedDataModule (from_datasets, from_client_datasets, "
        f"from_datamodule) or an object with {list(_CLIENT_DATA_MEMBERS)} (ClientData)"
    )


class ProgressiveMasking(L.Callback):
    """Lightning callback: masked noise on the module during one local fit, trained with PSM.

    Args:
        noise_seed: the client's noise seed for this round (sent in its payload).
        draw_seed: seed of the SM/PSM draws during training.
        final_seed: seed of the final mask sample.
        masking: mask kind, noise, schedule and parameter selection.
        noise_scales: per masked tensor, the noise magnitude the server issued (float32
            values); unlisted tensors use ``masking.noise.alpha``.
    """

    def __init__(
        self,
        noise_seed: int,
        draw_seed: int,
        final_seed: int,
        masking: MaskingConfig,
        noise_scales: Mapping[str, float] | None = None,
    ) -> None:
        self.noise_seed = noise_seed
        self.draw_seed = draw_seed
        self.final_seed = final_seed
        self.masking = masking
        self.noise_scales = dict(noise_scales or {})
        self.total_steps = 0
        self.masks: dict[str, torch.Tensor] = {}
        self.update_rms: dict[str, float] = {}
        self.stats: dict[str, float] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Wrap before ``configure_optimizers`` runs, so the optimizer sees the updates ``u``."""
        apply_masked_noise(
            pl_module, self.noise_seed, self.masking.kind, self.masking.noise, self.masking.selector, self.noise_scales
        )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Seed the draws on the module's device, now that it has been moved there."""
        set_mask_generator(pl_module, make_generator(self.draw_seed, pl_module.device))
        self.total_steps = (
            int(trainer.estimated_stepping_batches) if math.isfinite(trainer.estimated_stepping_batches) else 0
        )

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Advance PSM (the chance of sampled masks grows with the local step); one mask for the whole step."""
        set_mask_probability(pl_module, psm_probability(self.masking.schedule, trainer.global_step, self.total_steps))
        begin_mask_step(pl_module)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """The step is over: the next read of a masked weight draws a new mask."""
        end_mask_step(pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Sample the mask to upload (SM, p = 1, or thresholded) and record mask statistics."""
        parametrizations = masked_parametrizations(pl_module)
        for name, parametrization in parametrizations.items():
            if not bool(torch.isfinite(parametrization.update).all()):
                raise FloatingPointError(f"non-finite values in the trained update of {name!r}")
        # The uploaded mask is drawn on the CPU: the same u gives the same bits on any device.
        self.masks = sample_final_masks(pl_module, make_generator(self.final_seed), self.masking.sampling)
        self.update_rms = {name: tensor_rms(p.update) for name, p in parametrizations.items()}
        self.stats = _mask_stats(parametrizations, self.masks)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Give the user their plain module back."""
        if is_masked(pl_module):
            remove_masked_noise(pl_module)


class ClientTimeout(Exception):
    """A client's local fit ran past its time limit."""


class _Deadline(L.Callback):
    """Stops local training that runs past ``seconds``: checked after every batch, so one step is never cut short."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.perf_counter()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = time.perf_counter()  # training proper: Lightning's set-up is not the client's slowness

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        elapsed = time.perf_counter() - self.started
        if elapsed > self.seconds:
            raise ClientTimeout(f"timed out after {elapsed:.1f} s (client_timeout={self.seconds:g} s)")


@torch.no_grad()
def _mask_stats(parametrizations: Mapping[str, Any], masks: Mapping[str, torch.Tensor]) -> dict[str, float]:
    ones = sum(int(mask.sum()) for mask in masks.values())
    numel = sum(mask.numel() for mask in masks.values())
    update_sum = sum(float(p.update.abs().sum()) for p in parametrizations.values())
    noise_sum = sum(float(p.noise.abs().sum()) for p in parametrizations.values())
    # Elements whose update u left the noise's reach (|u| > |n|): the noise capped their step this round.
    clipped = sum(int((p.update.abs() > p.noise.abs()).sum()) for p in parametrizations.values())
    return {
        "mask_ones_fraction": ones / max(numel, 1),
        "mean_abs_u_over_n": update_sum / max(noise_sum, 1e-30),
        "clipped_fraction": clipped / max(numel, 1),
    }


# Lightning's per-fit banners ("GPU available ...", "TPU available ...") and warnings that
# are noise when a trainer is built for every client of every round.
_QUIET_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.pytorch.accelerators.cuda",
    "lightning.fabric.utilities.rank_zero",
    "lightning.pytorch.trainer.connectors.signal_connector",  # "Received SIGTERM": the run says it in its own words
)
_QUIET_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)",
    r".*does not have many workers",
    r".*defined a `validation_step` but have no `val_dataloader`",  # client fits never validate, by design
)


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's per-fit banners inside the block; levels and warning filters are restored after."""
    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        for pattern in _QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern, category=Warning)
        for logger in loggers:
            logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def local_trainer(trainer_kwargs: Mapping[str, Any], **settings: Any) -> L.Trainer:
    """A ``lightning.Trainer`` for one local fit or evaluation: no logger, bars, summary or checkpoints.

    ``settings`` are the caller's own (epochs, callbacks, logger); ``trainer_kwargs`` the user's
    (accelerator, devices, precision ...), whose callbacks are kept beside the caller's and
    whose logger the caller routes (see ``client_loggers``).
    """
    merged: dict[str, Any] = dict(
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    merged.update(settings)
    merged.update({key: value for key, value in trainer_kwargs.items() if key not in ("callbacks", "logger")})
    merged["callbacks"] = [*trainer_kwargs.get("callbacks", []), *settings.get("callbacks", [])]
    return L.Trainer(**merged)


class FederatedClient:
    """Trains a user LightningModule for one client and round and returns its result.

    Args:
        module: any LightningModule; its state is replaced by the global state first.
        data: the clients' training data.
        masking: FedMRN settings, or None for a dense (FedAvg) update.
        local_epochs: epochs of local training per round.
        batch_size: local batch size.
        run_seed: the run's seed, from which all client randomness is derived.
        trainer_kwargs: passed on to ``lightning.Trainer`` (accelerator, devices, precision ...).
        train_loss_key: the logged metric read as the client's training loss.
        timeout_seconds: a fit running longer is stopped after its current batch and the
            client dropped; None: no limit.
    """

    def __init__(
        self,
        module: L.LightningModule,
        data: ClientData,
        masking: MaskingConfig | None,
        local_epochs: int = 1,
        batch_size: int = 64,
        run_seed: int = 0,
        trainer_kwargs: Mapping[str, Any] | None = None,
        train_loss_key: str = "train/loss",
        timeout_seconds: float | None = None,
    ) -> None:
        if timeout_seconds is not None and not timeout_seconds > 0:
            raise ValueError(f"client timeout must be > 0 seconds or None, got {timeout_seconds!r}")
        if local_epochs < 1:
            raise ValueError(f"local_epochs must be >= 1, got {local_epochs}")
        self.module = module
        self.data = data
        self.masking = masking
        self.local_epochs = local_epochs
        self.batch_size = batch_size
        self.run_seed = run_seed
        self.trainer_kwargs = dict(trainer_kwargs or {})
        self.train_loss_key = train_loss_key
        self.timeout_seconds = timeout_seconds

    def fit(self, global_state: Mapping[str, torch.Tensor], request: FitRequest) -> FitResult:
        """Train on ``request``; a failing client gives ``FitResult.dropped`` instead of an exception."""
        started = time.perf_counter()
        # Global RNG too (dropout in user models): a pure function of (run, round, client),
        # inside fork_rng so the caller's own RNG state is left as it was.
        with torch.random.fork_rng(), quiet_lightning():
            torch.manual_seed(derive_seed(self.run_seed, request.server_round, request.client_id, "torch_global"))
            try:
                result = self._fit(global_state, request)
            except ClientTimeout as error:
                result = FitResult(request, dropped=str(error))
            except Exception as error:  # a failing client must not end the run
                result = FitResult(request, dropped=f"training failed: {type(error).__name__}: {error}")
        result.seconds = time.perf_counter() - started
        return result

    def _fit(self, global_state: Mapping[str, torch.Tensor], request: FitRequest) -> FitResult:
        if request.seed is None:
            raise RuntimeError("no seed was issued to the client; keep SeedSync among the callbacks")
        train_loader = self.data.client_dataloader(request.client_id, request.server_round, self.batch_size)
        load_module_state(self.module, global_state)
        masking_callback = None
        if self.masking is not None:
            masking_callback = ProgressiveMasking(
                request.seed,
                derive_seed(self.run_seed, request.server_round, request.client_id, "psm"),
                derive_seed(self.run_seed, request.server_round, request.client_id, "final_mask"),
                self.masking,
                request.noise_scales,
            )
        callbacks: list[L.Callback] = [] if masking_callback is None else [masking_callback]
        if self.timeout_seconds is not None:
            callbacks.append(_Deadline(self.timeout_seconds))
        trainer = local_trainer(
            self.trainer_kwargs,
            max_epochs=self.local_epochs,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            callbacks=callbacks,
            logger=client_loggers(self.trainer_kwargs, request.server_round, request.client_id),
        )
        try:
            trainer.fit(self.module, train_dataloaders=train_loader)
        finally:
            if is_masked(self.module):
                remove_masked_noise(self.module)
        train_loss = trainer.callback_metrics.get(self.train_loss_key)
        state = uploaded_state(self.module)  # frozen parameters stay on the server
        identity = (request.server_round, request.client_id, request.seed)
        if masking_callback is None:
            update = ClientUpdate(*identity, DENSE_KIND, NoiseSpec(), request.num_examples, dense=state)
        else:
            masks = masking_callback.masks
            if set(masks) - set(state):
                raise RuntimeError(
                    f"masked parameters {sorted(set(masks) - set(state))} are not in the module's state_dict"
                )
            dense = {name: tensor for name, tensor in state.items() if name not in masks}
            scales = {name: scale for name, scale in (request.noise_scales or {}).items() if name in masks}
            update = ClientUpdate(
                *identity, self.masking.kind, self.masking.noise, request.num_examples, masks=masks, dense=dense,
                noise_scales=scales, update_rms=masking_callback.update_rms,
            )  # fmt: skip
        return FitResult(
            request,
            update=update,
            train_loss=None if train_loss is None else float(train_loss),
            logged=sorted(trainer.callback_metrics),
            stats={} if masking_callback is None else masking_callback.stats,
        )
