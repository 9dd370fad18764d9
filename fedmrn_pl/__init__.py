"""fedmrn-pl: communication-efficient federated learning with masked random noise (FedMRN).

The public API, kept small:

* ``FederatedTrainer`` runs rounds over any LightningModule; ``FedMRN`` and ``FedAvg``
  are its aggregation strategies; ``MaskingConfig`` says how clients mask.
* ``FederatedDataModule`` partitions a dataset among clients; ``build_model`` gives the
  paper's CNN4/CNN8/MLP; ``ClassificationTask`` wraps a model as a LightningModule.
* ``apply_masked_noise`` / ``remove_masked_noise`` put masked noise on any module.
* ``encode_update`` / ``decode_update`` are the wire format; ``PayloadError`` its one error.
* ``load_config`` / ``run_experiment`` drive runs from OmegaConf YAML.
"""

from fedmrn_pl.config import ConfigError, load_config
from fedmrn_pl.data import FederatedDataModule, load_dataset
from fedmrn_pl.experiment import build_trainer, run_experiment
from fedmrn_pl.federated import FedAvg, FederatedTrainer, FedMRN, Strategy
from fedmrn_pl.masking import MaskingConfig, ParameterSelector, apply_masked_noise, remove_masked_noise
from fedmrn_pl.models import build_model
from fedmrn_pl.task import ClassificationTask
from fedmrn_pl.update import ClientUpdate, NoiseSpec
from fedmrn_pl.wire import PayloadError, decode_update, encode_update

__version__ = "0.1.0"

__all__ = [
    "ClassificationTask",
    "ClientUpdate",
    "ConfigError",
    "FedAvg",
    "FedMRN",
    "FederatedDataModule",
    "FederatedTrainer",
    "MaskingConfig",
    "NoiseSpec",
    "ParameterSelector",
    "PayloadError",
    "Strategy",
    "apply_masked_noise",
    "build_model",
    "build_trainer",
    "decode_update",
    "encode_update",
    "load_config",
    "load_dataset",
    "remove_masked_noise",
    "run_experiment",
]
