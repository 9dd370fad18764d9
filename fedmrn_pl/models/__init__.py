"""Plain ``nn.Module`` models from the FedMRN paper; nothing federated in here."""

from fedmrn_pl.models.cnn import CNN4, CNN8, ConvNet
from fedmrn_pl.models.initialization import PAPER_INIT_STD, InitScheme, initialize_weights
from fedmrn_pl.models.mlp import MLP
from fedmrn_pl.models.registry import DEFAULT_INIT, ModelName, build_model

__all__ = [
    "CNN4",
    "CNN8",
    "ConvNet",
    "DEFAULT_INIT",
    "InitScheme",
    "MLP",
    "ModelName",
    "PAPER_INIT_STD",
    "build_model",
    "initialize_weights",
]
