"""fedmrn-pl: communication-efficient federated learning with masked random noise (FedMRN).

The public API, kept small:

* ``FederatedTrainer`` runs rounds over any LightningModule; ``FedMRN`` and ``FedAvg``
  are its aggregation strategies; ``MaskingConfig`` says how clients mask.
* ``FederatedDataModule`` partitions a dataset among clients (``FederatedDataset.from_datasets``
  wraps your own; ``FederatedDataModule.from_client_datasets`` keeps a natural split; ``from_datamodule``
  takes a plain LightningDataModule); ``build_model`` gives the paper's CNN4/CNN8/MLP;
  ``ClassificationTask`` wraps a model as a LightningModule.
* ``EvaluationError``: the server's evaluation failed; the run stopped after saving its completed rounds.
* ``RunDirectoryError``: the output directory is in use by another run, or holds one (``overwrite=True`` replaces it).
* ``apply_masked_noise`` / ``remove_masked_noise`` put masked noise on any module.
* ``encode_update`` / ``decode_update`` are the wire format; ``PayloadError`` its one error.
* ``load_config`` / ``run_experiment`` drive runs from OmegaConf YAML.
* ``FederatedMethod`` / ``register_method`` add a method (``method.name=...``) from one file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedmrn_pl._lazy import lazy_exports

# Public name -> the module that defines it. Importing the package loads none of them:
# each is imported on first use, so ``import fedmrn_pl.wire`` (or ``fedmrn-pl inspect``)
# never pays for Lightning, torchvision, scikit-learn or matplotlib.
_EXPORTS = {
    "ClassificationTask": "fedmrn_pl.task",
    "ClientUpdate": "fedmrn_pl.update",
    "ConfigError": "fedmrn_pl.config",
    "EvaluationError": "fedmrn_pl.federated",
    "FedAvg": "fedmrn_pl.federated",
    "FedMRN": "fedmrn_pl.federated",
    "FederatedDataModule": "fedmrn_pl.data",
    "FederatedDataset": "fedmrn_pl.data",
    "FederatedMethod": "fedmrn_pl.methods",
    "FederatedTrainer": "fedmrn_pl.federated",
    "FitRequest": "fedmrn_pl.messages",
    "FitResult": "fedmrn_pl.messages",
    "MaskingConfig": "fedmrn_pl.masking",
    "NoiseSpec": "fedmrn_pl.update",
    "ParameterSelector": "fedmrn_pl.masking",
    "PayloadError": "fedmrn_pl.wire",
    "RunDirectoryError": "fedmrn_pl.run_directory",
    "Strategy": "fedmrn_pl.federated",
    "apply_masked_noise": "fedmrn_pl.masking",
    "build_model": "fedmrn_pl.models",
    "build_trainer": "fedmrn_pl.experiment",
    "decode_update": "fedmrn_pl.wire",
    "encode_update": "fedmrn_pl.wire",
    "load_config": "fedmrn_pl.config",
    "load_dataset": "fedmrn_pl.data",
    "register_method": "fedmrn_pl.methods",
    "remove_masked_noise": "fedmrn_pl.masking",
    "run_experiment": "fedmrn_pl.experiment",
}

if TYPE_CHECKING:
    from fedmrn_pl.config import ConfigError, load_config
    from fedmrn_pl.data import FederatedDataModule, FederatedDataset, load_dataset
    from fedmrn_pl.experiment import build_trainer, run_experiment
    from fedmrn_pl.federated import EvaluationError, FedAvg, FederatedTrainer, FedMRN, Strategy
    from fedmrn_pl.masking import MaskingConfig, ParameterSelector, apply_masked_noise, remove_masked_noise
    from fedmrn_pl.messages import FitRequest, FitResult
    from fedmrn_pl.methods import FederatedMethod, register_method
    from fedmrn_pl.models import build_model
    from fedmrn_pl.run_directory import RunDirectoryError
    from fedmrn_pl.task import ClassificationTask
    from fedmrn_pl.update import ClientUpdate, NoiseSpec
    from fedmrn_pl.wire import PayloadError, decode_update, encode_update


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__version__ = "0.1.0"

__all__ = [
    "ClassificationTask",
    "ClientUpdate",
    "ConfigError",
    "EvaluationError",
    "FedAvg",
    "FedMRN",
    "FederatedDataModule",
    "FederatedDataset",
    "FederatedMethod",
    "FederatedTrainer",
    "FitRequest",
    "FitResult",
    "MaskingConfig",
    "NoiseSpec",
    "ParameterSelector",
    "PayloadError",
    "RunDirectoryError",
    "Strategy",
    "apply_masked_noise",
    "build_model",
    "build_trainer",
    "decode_update",
    "encode_update",
    "load_config",
    "load_dataset",
    "register_method",
    "remove_masked_noise",
    "run_experiment",
]
