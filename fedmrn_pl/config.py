"""Experiment configuration: OmegaConf structured configs, validated on load.

A run is described by one ``ExperimentConfig``. YAML files in ``configs/`` and
``key=value`` overrides are merged onto it; unknown keys, invalid values and
interpolations that cannot be resolved raise ``ConfigError`` with the valid choices.
Every closed set of values is a ``Choice`` (a str Enum) owned by the code that uses
it; OmegaConf checks those fields itself.
"""

from __future__ import annotations

import math
import re
import textwrap
from dataclasses import dataclass, field, is_dataclass
from importlib import resources
from pathlib import Path
from typing import Any, get_args, get_type_hints

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

# Choice lists only, each from a torch-free module next to its owner: a config is read and
# checked without loading torch or Lightning (tests/test_lean_core.py).
from fedmrn_pl.callbacks.choices import WandbMode
from fedmrn_pl.choices import Choice
from fedmrn_pl.data.choices import DatasetName, PartitionName
from fedmrn_pl.federated.choices import DownlinkMode, ServerOptimizerName
from fedmrn_pl.masking.choices import MaskSampling, NoiseScale, Schedule
from fedmrn_pl.methods.plugin import RunFacts
from fedmrn_pl.methods.registry import get_method, method_names, registered_methods
from fedmrn_pl.models.choices import InitScheme, ModelName
from fedmrn_pl.monitor import STANDARD_MODES, MonitorMode
from fedmrn_pl.update import DenseDtype, MaskKind, NoiseFamily
from fedmrn_pl.wire.choices import DenseEncoding, MaskEncoding

__all__ = [
    "ConfigError", "ExperimentConfig", "bundled_config_path", "config_schema", "describe_keys", "load_config", "method_settings",
    "run_facts", "to_container", "validate",
]  # fmt: skip


class ConfigError(ValueError):
    """A config key or value is not valid; the message says which and what is."""


@dataclass
class DataConfig:
    """Dataset, partition among clients, and where torchvision files live."""

    name: DatasetName = DatasetName["mnist5k"]
    root: str = "data"  # where torchvision datasets live
    download: bool = False  # let torchvision download missing files (needs internet)
    augment: bool = True  # cifar10/cifar100: RandomCrop(32, padding=4) + horizontal flip on training images; ignored elsewhere
    num_clients: int = 20
    partition: PartitionName = PartitionName["iid"]
    beta: float = 0.3  # Dirichlet concentration (partition=dirichlet)
    min_size: int = 10  # smallest client under Dirichlet
    labels_per_client: int = 2  # partition=label_count or label_count_balanced (least-used labels first, the authors' rule)
    test_batch_size: int = 256


@dataclass
class ModelConfig:
    """Which built-in network and how it is initialised."""

    name: ModelName = ModelName["cnn4"]
    bias: bool = False  # the paper's models are bias-free
    init: InitScheme | None = None  # null: the model's own (paper for cnn4/cnn8, default for mlp); paper: N(0, 0.01)


@dataclass
class MethodConfig:
    """The federated method, FedMRN's masking, and how tensors travel.

    Each registered method with settings of its own also has a section here under its
    name (``method.topk.fraction``, ``method.fedpm.prior``), added by ``load_config``.
    """

    name: str = "fedmrn"  # a registered method: fedmrn, fedavg, signsgd, ... (fedmrn_pl.methods.method_names())
    mask: MaskKind = MaskKind.binary
    noise: NoiseFamily = NoiseFamily.uniform
    alpha: float | None = None  # noise magnitude (adaptive: round 1's); None: 0.01 binary / 0.005 signed
    noise_scale: NoiseScale = NoiseScale.absolute  # absolute: alpha everywhere (paper); adaptive: per tensor and round
    scale_factor: float = 5.0  # noise_scale=adaptive: magnitude = scale_factor x the clients' last update RMS
    scale_cap: float = 2.0  # noise_scale=adaptive: at most scale_cap x the tensor's RMS (or alpha, if larger)
    schedule: Schedule = Schedule.linear  # PSM schedule; constant = plain SM
    mask_sampling: MaskSampling = MaskSampling.stochastic  # uploaded mask: sampled (paper) or threshold: clip(u/n) >= 0.5 (ablation)
    dense_dtype: DenseDtype = DenseDtype.float32  # dense tensors on the wire
    mask_encoding: MaskEncoding = MaskEncoding.coded  # masks on the wire: entropy-coded where shorter, or packed
    dense_encoding: DenseEncoding = DenseEncoding.deflate  # dense tensors on the wire: deflated where shorter, or raw
    downlink: DownlinkMode = DownlinkMode.dense  # what clients download: the dense model, or the round messages they missed
    dense_sync_every: int = 10  # downlink=masks: a client that missed more rounds than this gets the dense model
    mask_include: list[str] = field(default_factory=list)  # name patterns always masked
    mask_exclude: list[str] = field(default_factory=list)  # name patterns never masked



@dataclass
class TrainConfig:
    """Rounds, local training and where clients run."""

    rounds: int = 10
    clients_per_round: int = 5
    local_epochs: int = 2
    batch_size: int = 32
    lr: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0
    min_clients: int = 1  # fewest valid updates that may change the global model
    accelerator: str = "cpu"  # passed to lightning.Trainer: cpu, gpu, auto; under torchrun rank r uses GPU LOCAL_RANK
    precision: str = "32-true"
    threads: int | None = 1  # torch intra-op threads per process; CPU sums depend on it (null: torch's default)
    dist_timeout: float = 1800.0  # seconds a rank waits for its peers under torchrun before failing
    client_timeout: float | None = None  # seconds a client's local fit may take; slower ones are dropped
    monitor: str = "test/acc"  # the metric the run is judged by: test/acc, test/loss or train/loss
    monitor_mode: MonitorMode | None = None  # max: higher is better; null: max for accuracy, min for losses
    proximal_mu: float = 0.0  # FedProx: mu/2 ||w - w_global||^2 added to each client's loss (0: off)


@dataclass
class ServerConfig:
    """How the server applies each round's aggregate (Reddi et al., ICLR 2021)."""

    optimizer: ServerOptimizerName = ServerOptimizerName.plain  # plain: the aggregate is the model; avgm, adagrad, adam, yogi
    lr: float | None = None  # server learning rate; null: 1.0 for avgm, 0.01 for adagrad/adam/yogi
    momentum: float = 0.9  # avgm: server momentum
    beta1: float = 0.9  # adagrad/adam/yogi: first-moment decay
    beta2: float = 0.99  # adam/yogi: second-moment decay
    tau: float = 1e-3  # adagrad/adam/yogi: adaptivity; the second moment starts at tau^2


@dataclass
class WandbConfig:
    """Weights & Biases tracking (offline unless asked for online)."""

    enabled: bool = False
    project: str = "fedmrn-pl"
    entity: str | None = None
    name: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    mode: WandbMode = WandbMode.offline  # offline unless you ask for online; "disabled" turns it off
    log_model: bool = True  # upload the final global model as an artifact


@dataclass
class ExperimentConfig:
    """One run: seed, output, checkpointing, and the sections above."""

    seed: int = 0
    output_dir: str = "runs/default"
    save_payloads: bool = False  # also write every uplink payload to <output_dir>/payloads
    checkpoint_every: int = 1  # rounds between checkpoints; 0 disables
    resume: str | None = None  # a run directory to continue
    overwrite: bool = False  # replace a run already in output_dir (default: refuse to start)
    progress: bool = True  # progress display on interactive terminals
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)


_MAX_COUNT = 2**31 - 1  # counts and sizes beyond this break samplers and loaders deep inside a run
_POSITIVE = (
    "data.num_clients",
    "data.min_size",
    "data.labels_per_client",
    "data.test_batch_size",
    "train.rounds",
    "train.clients_per_round",
    "train.local_epochs",
    "train.batch_size",
    "train.min_clients",
    "method.dense_sync_every",
)
# Values published as the W&B run's identity (names, debug.log): no interpolation, so
# an ${oc.env:...} secret can never leave the machine through them.
_PUBLISHED = ("wandb.project", "wandb.entity", "wandb.name", "wandb.group", "wandb.tags")


def bundled_config_path(name: str = "default") -> Path:
    """Path of a YAML config shipped with the package (``configs/<name>.yaml``)."""
    path = Path(str(resources.files("fedmrn_pl.configs").joinpath(f"{name}.yaml")))
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"no bundled config {name!r}; available: {available}")
    return path


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> DictConfig:
    """Merge the schema, a YAML file (default: the bundled default) and ``key=value`` overrides."""
    schema = config_schema()
    source = Path(path) if path is not None else bundled_config_path("default")
    if not source.is_file():
        raise ConfigError(f"config file {source} does not exist; bundled configs are in {bundled_config_path().parent}")
    try:
        layers = [OmegaConf.load(source)]
    except Exception as error:  # YAML syntax errors come in several types
        raise ConfigError(f"config file {source} is not valid YAML: {error}") from None
    if not isinstance(layers[0], DictConfig):
        raise ConfigError(f"config file {source} must hold a mapping of keys (e.g. 'train: {{rounds: 5}}'), not a list")
    if not layers[0]:  # an empty file, or null: most likely the wrong file
        raise ConfigError(
            f"config file {source} is empty; it must hold a mapping of keys (e.g. 'train: {{rounds: 5}}'); "
            "to run with the defaults, give no --config"
        )
    for override in overrides or []:
        if "=" not in override:
            raise ConfigError(f"override {override!r} must look like key=value, e.g. train.rounds=5")
        try:
            layers.append(OmegaConf.from_dotlist([override]))
        except Exception as error:
            raise ConfigError(f"override {override!r} is not valid: {str(error).splitlines()[0]}") from None
    try:
        config = OmegaConf.merge(schema, *layers)
    except OmegaConfBaseException as error:
        raise ConfigError(_explain(error, schema)) from None
    _check_resolvable(config)
    validate(config)
    return config


def config_schema() -> DictConfig:
    """``ExperimentConfig`` plus a ``method.<name>`` section for each registered method with settings."""
    schema = OmegaConf.structured(ExperimentConfig)
    with open_dict(schema.method):
        for method in registered_methods().values():
            if method.settings is not None:
                schema.method[method.name] = OmegaConf.structured(method.settings)
    return schema


def method_settings(config: DictConfig) -> Any:
    """The configured method's settings (its dataclass, from ``method.<name>``), or None if it has none."""
    method = get_method(config.method.name)
    if method.settings is None:
        return None
    if method.name not in config.method:
        raise ConfigError(
            f"the config has no method.{method.name} section: it was loaded before method {method.name!r} was "
            "registered; call load_config after register_method"
        )
    return OmegaConf.to_object(config.method[method.name])


def run_facts(config: DictConfig) -> RunFacts:
    """What a method's checks and builder may read of the rest of the config."""
    return RunFacts(
        seed=config.seed, num_clients=config.data.num_clients, clients_per_round=config.train.clients_per_round,
        precision=config.train.precision, downlink=str(config.method.downlink), server_optimizer=str(config.server.optimizer),
    )  # fmt: skip


def _check_method(config: DictConfig) -> None:
    """The method is registered, and its settings can work with this run (``FederatedMethod.validate``)."""
    try:
        method = get_method(config.method.name)
    except ValueError as error:
        raise ConfigError(f"method.name: {error}") from None
    try:
        method.validate(method_settings(config), run_facts(config))
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _check_resolvable(config: DictConfig) -> None:
    """Resolve every interpolation once now, so a bad one stops the run before anything is written."""
    try:
        OmegaConf.to_container(config, resolve=True)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None)
        where = f" at {key!r}" if key else ""
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raw = _raw_value(config, key)
        # What it resolved to may be a secret (a token in the environment): keep the failure, not the value.
        if "${" in raw:
            message = re.sub(r"([Vv]alue) '.*?'", r"\1 (not shown)", message)
        raise ConfigError(f"cannot resolve the config{where}: {message}") from None


def _raw_value(config: DictConfig, key: str | None) -> str:
    """The text a key was given, interpolations unresolved (``''`` when there is no such key)."""
    if not key:
        return ""
    section, _, leaf = key.rpartition(".")
    node = OmegaConf.select(config, section, throw_on_resolution_failure=False) if section else config
    if not isinstance(node, DictConfig) or leaf not in node:
        return ""
    return str(node._get_node(leaf)._value())  # noqa: SLF001 (OmegaConf has no public unresolved accessor)


def _check_server(config: DictConfig) -> None:
    """The server optimizer's settings, and the methods and downlink it cannot work with."""
    server = config.server
    if server.optimizer == ServerOptimizerName.plain:
        if server.lr is not None:
            raise ConfigError(
                f"server.lr={server.lr} has no effect with server.optimizer=plain (the aggregate is the next model); "
                f"choose one of {ServerOptimizerName.values()[1:]} or leave server.lr null"
            )
        return
    if server.lr is not None and not server.lr > 0:
        raise ConfigError(f"server.lr={server.lr} is not valid; it must be > 0 (or null for the optimizer's default)")
    for key in ("momentum", "beta1", "beta2"):
        if not 0 <= server[key] < 1:
            raise ConfigError(f"server.{key}={server[key]} is not valid; it must be in [0, 1)")
    if not server.tau > 0:
        raise ConfigError(f"server.tau={server.tau} is not valid; it must be > 0")
    if config.method.downlink == DownlinkMode.masks:
        raise ConfigError(
            f"server.optimizer={server.optimizer} is not valid with method.downlink=masks: clients replaying the round "
            f"messages would need the server's moments (the model's size again, per client); use method.downlink=dense"
        )


def validate(config: DictConfig) -> None:
    """Check ranges and cross-field rules; raise ``ConfigError`` naming the key (OmegaConf checks choices)."""
    _check_finite(to_container(config))
    _check_published(config)
    for key in _POSITIVE:
        value = OmegaConf.select(config, key)
        if not 1 <= value <= _MAX_COUNT:
            raise ConfigError(f"{key}={value} is not valid; it must be an int in [1, {_MAX_COUNT}]")
    if config.train.clients_per_round > config.data.num_clients:
        raise ConfigError(
            f"train.clients_per_round={config.train.clients_per_round} exceeds data.num_clients={config.data.num_clients}"
        )
    if config.train.min_clients > config.train.clients_per_round:
        raise ConfigError(
            f"train.min_clients={config.train.min_clients} exceeds train.clients_per_round={config.train.clients_per_round}"
        )
    for key in ("train.lr", "data.beta"):
        if not OmegaConf.select(config, key) > 0:
            raise ConfigError(f"{key} must be > 0")
    for key in ("train.momentum", "train.weight_decay"):
        if not OmegaConf.select(config, key) >= 0:
            raise ConfigError(f"{key} must be >= 0")
    if config.method.alpha is not None and not config.method.alpha < 1:
        raise ConfigError(
            f"method.alpha={config.method.alpha} is not valid; noise magnitudes are small, e.g. 0.01 (binary) or 0.005 (signed)"
        )
    if config.method.alpha is not None and not config.method.alpha > 0:
        raise ConfigError(f"method.alpha={config.method.alpha} must be > 0 (or null for the paper's default)")
    for key in ("scale_factor", "scale_cap"):
        value = config.method[key]
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"method.{key}={value} must be a finite number > 0 (defaults: scale_factor 5, scale_cap 2)")
    _check_method(config)
    _check_server(config)
    if not config.train.proximal_mu >= 0:
        raise ConfigError(f"train.proximal_mu={config.train.proximal_mu} is not valid; it must be >= 0 (0: no proximal term)")
    if config.train.threads is not None and config.train.threads < 1:
        raise ConfigError(f"train.threads={config.train.threads} is not valid; it must be >= 1 (or null)")
    if config.train.client_timeout is not None and not config.train.client_timeout > 0:
        raise ConfigError(f"train.client_timeout={config.train.client_timeout} is not valid; it must be > 0 seconds or null")
    if not config.train.dist_timeout > 0:
        raise ConfigError(f"train.dist_timeout={config.train.dist_timeout} is not valid; it must be > 0 seconds")
    if config.checkpoint_every < 0:
        raise ConfigError("checkpoint_every must be >= 0 (0 disables checkpoints)")
    if config.train.monitor not in STANDARD_MODES:  # what the built-in task logs
        raise ConfigError(
            f"train.monitor={config.train.monitor!r} is not valid; choose one of {list(STANDARD_MODES)} "
            "(what the built-in task logs)"
        )


def _explain(error: OmegaConfBaseException, schema: DictConfig) -> str:
    """Turn OmegaConf's message into one that lists the valid keys of the section."""
    key = getattr(error, "full_key", None) or ""
    parent = key.rpartition(".")[0]
    section = OmegaConf.select(schema, parent) if parent else schema
    valid = sorted(section.keys()) if isinstance(section, DictConfig) else []
    message = str(error).splitlines()[0]
    if message.startswith("Invalid value"):  # a Choice field: OmegaConf's message lists the valid values
        return f"{key}: {message}"
    if key in _MOVED:
        return f"{key} is now {_MOVED[key]} (each method's settings are nested under its name)"
    if parent == "method" and key.count(".") == 1:
        valid = [k for k in valid if k not in registered_methods()]
        sections = [name for name, method in registered_methods().items() if method.settings is not None]
        return (
            f"invalid config at {key!r}: neither a method setting nor the section of a registered method with "
            f"settings (if it is a plugin's, is the package that provides method {key.partition('.')[2]!r} "
            f"installed?); valid keys here: {valid}, sections: {sections}"
        )
    return f"invalid config at {key!r}: {message}" + (f"; valid keys here: {valid}" if valid else "")


# Keys of earlier versions whose settings moved into their method's section.
_MOVED = {
    "method.topk_fraction": "method.topk.fraction",
    "method.quant_norm": "method.stoch1bit.quant_norm",
    **{f"method.fedpm_{key}": f"method.fedpm.{key}" for key in ("prior", "estimate", "optimizer", "lr", "score_gain", "reset_every")},
}


def _check_finite(value: Any, key: str = "") -> None:
    """Reject inf and nan anywhere: they pass range checks like ``lr > 0`` and ruin every client."""
    if isinstance(value, dict):
        for name, item in value.items():
            _check_finite(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_finite(item, f"{key}[{index}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}={value} is not valid; it must be a finite number")


def _check_published(config: DictConfig) -> None:
    """Refuse interpolations in the W&B identity keys, whose resolved values are published."""
    written = to_container(config, resolve=False)
    for key in _PUBLISHED:
        section, _, leaf = key.partition(".")
        value = written[section][leaf]
        if any(isinstance(item, str) and "${" in item for item in (value if isinstance(value, list) else [value])):
            raise ConfigError(
                f"{key}={value!r} is not valid: its value is published to W&B, so it may not hold an "
                "interpolation such as ${oc.env:...}; write the value itself"
            )


def to_container(config: DictConfig, resolve: bool = True) -> dict[str, Any]:
    """The config as plain data; ``resolve=False`` keeps interpolations as written.

    Run records (metrics.json, ``wandb.config``) use ``resolve=False`` so that a value
    read with ``${oc.env:...}`` is never written out.
    """
    return OmegaConf.to_container(config, resolve=resolve, enum_to_str=True)  # type: ignore[return-value]


def describe_keys(config: DictConfig | None = None, width: int = 100) -> str:
    """Every key of ``config`` (default: the bundled default) by section, as ``key=value``, for ``fit --help``.

    Read from the schema, so it cannot drift from what ``load_config`` accepts; a
    ``Choice`` field lists its other values after ``|`` (``mask=binary|signed``).
    """
    values = to_container(config if config is not None else load_config(), resolve=False)
    hints = get_type_hints(ExperimentConfig)
    sections = [("(top)", ExperimentConfig, values)]
    for key, hint in hints.items():
        if is_dataclass(hint):
            sections.append((f"{key}.", hint, values[key]))
        if hint is MethodConfig:  # each method's own section right after the shared method keys
            sections += [
                (f"method.{name}.", method.settings, values["method"][name])
                for name, method in registered_methods().items()
                if method.settings is not None and name in values["method"]
            ]
    lines = []
    for label, schema, section in sections:
        types = get_type_hints(schema)
        items = [
            f"{key}=" + "|".join([_shown(section[key]), *(c for c in _choices(hint, key, schema) if c != section[key])])
            for key, hint in types.items()
            if not is_dataclass(hint)
        ]
        wrapped = textwrap.wrap("  ".join(items), width - 12, break_on_hyphens=False, break_long_words=False)
        if label.startswith("method.") and label != "method.":  # a method's section: its label on a line of its own
            lines.append(f"  {label}")
            label = ""
        lines += [f"  {label if index == 0 else '':<9} {line}" for index, line in enumerate(wrapped)]
    return "\n".join(lines)


def _choices(hint: Any, key: str = "", schema: Any = None) -> list[str]:
    """The values of the ``Choice`` in a field's type hint (``X`` or ``X | None``), or the registered methods
    for ``method.name``; none for other fields."""
    if schema is MethodConfig and key == "name":
        return method_names()
    for arg in (hint, *get_args(hint)):
        if isinstance(arg, type) and issubclass(arg, Choice):
            return arg.values()
    return []


def _shown(value: Any) -> str:
    """A value as it is written in an override: ``null``, ``true``, ``[a,b]``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(_shown(item) for item in value) + "]"
    return str(value)
