"""Assemble and run a federated experiment from an ``ExperimentConfig``."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn
from omegaconf import DictConfig, OmegaConf

from fedmrn_pl.callbacks import (
    FederatedCallback,
    FederatedCheckpoint,
    MaskPacking,
    ProgressDisplay,
    RunArtifacts,
    WandbLogger,
    load_checkpoint,
)
from fedmrn_pl.callbacks.checkpoint import CheckpointError, checkpoint_path
from fedmrn_pl.config import ConfigError, method_settings, run_facts, to_container
from fedmrn_pl.data import FederatedDataModule, FederatedDataset
from fedmrn_pl.federated import FederatedTrainer
from fedmrn_pl.federated.choices import ServerOptimizerName
from fedmrn_pl.federated.server_optimizers import ServerOptimizer, build_server_optimizer
from fedmrn_pl.masking import MaskingConfig, ParameterSelector, default_alpha
from fedmrn_pl.methods.fedprox import ProximalTerm
from fedmrn_pl.methods.registry import build_method, get_method
from fedmrn_pl.models import build_model
from fedmrn_pl.run_directory import RunDirectory, remove_stale_temp_files
from fedmrn_pl.seeding import derive_seed
from fedmrn_pl.task import ClassificationTask
from fedmrn_pl.update import NoiseSpec

__all__ = ["build_datamodule", "build_trainer", "masking_from_config", "model_from_config", "run_experiment"]

log = logging.getLogger(__name__)


def masking_from_config(config: DictConfig) -> MaskingConfig | None:
    """The run's ``MaskingConfig`` (None for FedAvg)."""
    method = config.method
    if not get_method(method.name).masked:
        return None
    alpha = method.alpha if method.alpha is not None else default_alpha(method.mask)
    selector = _selector(config)
    return MaskingConfig(
        kind=method.mask, noise=NoiseSpec(method.noise, float(alpha)), schedule=method.schedule, selector=selector,
        sampling=method.mask_sampling, noise_scale=method.noise_scale, scale_factor=float(method.scale_factor),
        scale_cap=float(method.scale_cap),
    )


def _selector(config: DictConfig) -> ParameterSelector:
    """The tensors FedMRN masks, and that the compressed baselines compress (the rest travel dense)."""
    return ParameterSelector(include=tuple(config.method.mask_include), exclude=tuple(config.method.mask_exclude))


def build_datamodule(config: DictConfig) -> FederatedDataModule:
    """Load and partition the configured dataset."""
    data = config.data
    partition_kwargs: dict[str, Any] = {
        "iid": {},
        "dirichlet": {"beta": data.beta, "min_size": data.min_size},
        "label_count": {"labels_per_client": data.labels_per_client},
        "label_count_balanced": {"labels_per_client": data.labels_per_client},
    }[data.partition]
    datamodule = FederatedDataModule(
        data.name,
        num_clients=data.num_clients,
        partition=data.partition,
        partition_kwargs=partition_kwargs,
        seed=config.seed,
        root=data.root,
        download=data.download,
        augment=data.augment,
        batch_size=config.train.batch_size,
        test_batch_size=data.test_batch_size,
    )
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule


def model_from_config(config: DictConfig, data: FederatedDataset) -> nn.Module:
    """The configured built-in model for ``data``'s image shape, initialised from the run seed."""
    return build_model(
        config.model.name,
        in_channels=data.in_channels,
        num_classes=data.num_classes,
        image_size=data.image_size,
        bias=config.model.bias,
        init=config.model.init,
        seed=derive_seed(config.seed, purpose="model_init"),
    )


def build_trainer(
    config: DictConfig, callbacks: Sequence[FederatedCallback] = (), datamodule: FederatedDataModule | None = None
) -> FederatedTrainer:
    """A ``FederatedTrainer`` for ``config`` with the built-in model and task."""
    datamodule = datamodule or build_datamodule(config)
    info = datamodule.data
    model = model_from_config(config, info)
    train = config.train
    module = ClassificationTask(
        model, info.num_classes, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay
    )
    masking = masking_from_config(config)
    parts = build_method(
        config.method.name, module, _selector(config), settings=method_settings(config), run=run_facts(config)
    )
    local_callbacks = [ProximalTerm(train.proximal_mu)] if train.proximal_mu > 0 else []
    save_dir = Path(config.output_dir) / "payloads" if config.save_payloads else None
    packing = MaskPacking(
        dense_dtype=config.method.dense_dtype,
        save_dir=save_dir,
        mask_encoding=config.method.mask_encoding,
        dense_encoding=config.method.dense_encoding,
    )
    return FederatedTrainer(
        module,
        datamodule,
        parts.strategy,
        masking,
        rounds=train.rounds,
        clients_per_round=train.clients_per_round,
        local_epochs=train.local_epochs,
        batch_size=train.batch_size,
        run_seed=config.seed,
        min_clients=train.min_clients,
        callbacks=[*callbacks, *parts.callbacks, packing],  # the trainer runs them in the protocol's order
        trainer_kwargs={"accelerator": train.accelerator, "devices": 1, "precision": train.precision,
                        **({"callbacks": local_callbacks} if local_callbacks else {})},  # fmt: skip
        threads=train.threads,
        timeout_seconds=train.dist_timeout,
        client_timeout=train.client_timeout,
        monitor=train.monitor,
        monitor_mode=train.monitor_mode,
        downlink=config.method.downlink,
        dense_sync_every=config.method.dense_sync_every,
        server_optimizer=server_optimizer_from_config(config),
    )


def server_optimizer_from_config(config: DictConfig) -> ServerOptimizer | None:
    """The ``server`` section's optimizer; None for the plain update."""
    server = config.server
    if server.optimizer == ServerOptimizerName.plain:
        return None
    return build_server_optimizer(
        server.optimizer, lr=server.lr, momentum=server.momentum, beta1=server.beta1, beta2=server.beta2, tau=server.tau
    )


# Settings a resumed run may change; everything else must match the checkpoint's run.
_RESUMABLE_KEYS = (
    "resume",
    "output_dir",
    "overwrite",
    "progress",
    "checkpoint_every",
    "save_payloads",
    "wandb",
    "train.rounds",
    "train.dist_timeout",
    "train.monitor",  # how the run is judged, not how it trains
    "train.monitor_mode",
)


def fixed_config(config: DictConfig, resolve: bool = True) -> dict[str, Any]:
    """The config minus what a resume may change (``_RESUMABLE_KEYS``), as plain data."""
    fixed = to_container(config, resolve=resolve)
    for key in _RESUMABLE_KEYS:
        section, _, leaf = key.rpartition(".")
        (fixed[section] if section else fixed).pop(leaf, None)
    return _own_method_section_only(fixed)


def _own_method_section_only(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without the other methods' sections: they do not shape this run, and a plugin installed or
    removed since must neither change its fingerprint nor stop its config.yaml from loading."""
    method = config["method"]
    for name in [key for key, value in method.items() if isinstance(value, dict) and key != method.get("name")]:
        del method[name]
    return config


def run_fingerprint(config: DictConfig) -> str:
    """SHA-256 of the resolved config minus what a resume may change, as canonical YAML.

    A digest of the resolved values, so no resolved ``${oc.env:...}`` value lands in the
    checkpoint; beside it the checkpoint keeps ``fixed_config(config, resolve=False)``, the
    values as written, so a refused resume can name what differs.
    """
    fixed = fixed_config(config)
    return hashlib.sha256(OmegaConf.to_yaml(OmegaConf.create(fixed), sort_keys=True).encode()).hexdigest()


def _check_same_run(checkpoint: dict[str, Any], config: DictConfig) -> None:
    saved = checkpoint.get("run_fingerprint")
    if not isinstance(saved, str):
        raise CheckpointError(f"checkpoint in {config.resume} has no run fingerprint: not written by fedmrn-pl fit")
    if saved == run_fingerprint(config):
        return
    written = checkpoint.get("run_config")  # absent in checkpoints of older versions
    if isinstance(written, dict):
        changed = _differences(written, fixed_config(config, resolve=False))
        shown = "; ".join(changed[:10]) + (f"; and {len(changed) - 10} more" if len(changed) > 10 else "")
        raise ConfigError(
            f"cannot resume {config.resume}: "
            + (f"the config differs from the checkpoint's run in {shown}" if changed else
               "a value written as an interpolation (${...}) resolves differently than in the checkpoint's run")
            + f"; only {list(_RESUMABLE_KEYS)} may change on resume"
        )  # fmt: skip
    raise ConfigError(
        f"cannot resume {config.resume}: the config differs from the checkpoint's run in more than "
        f"{list(_RESUMABLE_KEYS)}; resume with the run's own config.yaml"
    )


def _differences(run: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: <run's value> in the run, <value> now`` for each leaf that differs, in key order."""
    found = []
    for key in sorted(set(run) | set(now)):
        old, new = run.get(key, _ABSENT), now.get(key, _ABSENT)
        if isinstance(old, dict) and isinstance(new, dict):
            found += _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            shown = ["absent" if value is _ABSENT else json.dumps(value) for value in (old, new)]
            found.append(f"{prefix}{key}: {shown[0]} in the run, {shown[1]} now")
    return found


_ABSENT = object()  # a key one side of a comparison does not have (a config from another version)


def run_callbacks(config: DictConfig) -> list[FederatedCallback]:
    """The callbacks a configured run adds on its own (progress, tracking)."""
    callbacks: list[FederatedCallback] = [ProgressDisplay(enabled=config.progress)]
    settings = config.wandb
    if settings.enabled:
        callbacks.append(
            WandbLogger(
                project=settings.project,
                entity=settings.entity,
                name=settings.name,
                group=settings.group,
                tags=list(settings.tags),
                mode=settings.mode,
                dir=config.output_dir,
                config=to_container(config, resolve=False),
                log_model=settings.log_model,
            )
        )
    return callbacks


def _check_output_dir(output_dir: Path) -> None:
    """Refuse an output_dir that is a file or lies under one, before anything is written."""
    for path in (output_dir, *output_dir.parents):
        if path.exists():
            if not path.is_dir():
                raise ConfigError(f"output_dir={str(output_dir)!r} is not valid: {path} is a file; name a directory")
            return


def _start_output_dir(config: DictConfig, output_dir: Path) -> None:
    """Create the run directory, drop temp files of killed saves and write config.yaml."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"output_dir={str(output_dir)!r} cannot be created: {error.strerror}") from None
    remove_stale_temp_files(output_dir)
    saved = _own_method_section_only(to_container(config, resolve=False))
    saved["resume"] = None  # config.yaml describes the run; resuming is a choice of each invocation
    OmegaConf.save(OmegaConf.create(saved), output_dir / "config.yaml")


def run_experiment(config: DictConfig, callbacks: Sequence[FederatedCallback] = ()) -> dict[str, Any]:
    """Run ``config`` end to end; write ``<output_dir>/metrics.json`` and return its content.

    Nothing is written until every check has passed. Progress goes to the ``fedmrn_pl``
    logger (the CLI shows it on stdout).
    """
    output_dir = Path(config.output_dir)
    _check_output_dir(output_dir)
    resume_advice = (
        f"continue it with `fedmrn-pl fit --resume {output_dir}`, write to another output_dir=, or replace it with overwrite=true"
    )
    RunDirectory(output_dir, config.overwrite).check(bool(config.resume), resume_advice)  # before the data loads
    try:
        datamodule = build_datamodule(config)
    except ValueError as error:  # partition settings that the data cannot satisfy
        raise ConfigError(f"data settings: {error}") from None
    log.info("data: %s, %d clients, partition %s", config.data.name, config.data.num_clients, config.data.partition)
    fingerprint = {"run_fingerprint": run_fingerprint(config), "run_config": fixed_config(config, resolve=False)}
    saving = [FederatedCheckpoint(output_dir, config.checkpoint_every, fingerprint)] if config.checkpoint_every else []
    artifacts = RunArtifacts(
        output_dir,
        overwrite=config.overwrite,
        extra={
            "dense_dtype": str(config.method.dense_dtype),
            "mask_encoding": str(config.method.mask_encoding),
            "dense_encoding": str(config.method.dense_encoding),
            "downlink": str(config.method.downlink),
            "partition": {**datamodule.partition_stats["summary"], "client_sizes": datamodule.partition_stats["sizes"]},
            "config": to_container(config, resolve=False),
        },
    )
    try:
        # RunArtifacts first: the plots exist when the W&B logger uploads them.
        trainer = build_trainer(config, [artifacts, *run_callbacks(config), *callbacks, *saving], datamodule)
    except (ValueError, TypeError) as error:  # model/masking/trainer settings that cannot work
        raise ConfigError(str(error)) from None
    if config.resume:
        checkpoint = load_checkpoint(config.resume, model_state=trainer.global_state, rounds=trainer.rounds)
        _check_same_run(checkpoint, config)
        try:  # every section checked against this run (client states and round messages decoded) before any write
            trainer.load_state_dict(checkpoint)
        except CheckpointError as error:
            raise CheckpointError(f"checkpoint {checkpoint_path(config.resume)}: {error}") from None
        log.info("resumed from %s after round %d of %d", config.resume, trainer.completed_rounds, trainer.rounds)
    try:
        if trainer.is_global_zero:  # under torchrun, rank 0 alone writes the run's files
            artifacts.directory.claim(bool(config.resume), resume_advice)  # refuses a run started meanwhile
            _start_output_dir(config, output_dir)  # only now, when nothing can refuse the run any more
        trainer.fit()
    finally:
        artifacts.directory.release()  # released already when the run ended; not when it never started
    return artifacts.written if artifacts.written is not None else dict(trainer.summary or {})
