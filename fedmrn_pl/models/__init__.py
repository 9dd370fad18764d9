"""Plain ``nn.Module`` models from the FedMRN paper; nothing federated in here."""

from fedmrn_pl.models.cnn import CNN4, CNN8, ConvNet
from fedmrn_pl.models.initialization import INIT_SCHEMES, PAPER_INIT_STD, initialize_weights
from fedmrn_pl.models.mlp import MLP
from fedmrn_pl.models.registry import MODEL_NAMES, build_model

__all__ = [
    "CNN4",
    "CNN8",
    "ConvNet",
    "INIT_SCHEMES",
    "MLP",
    "MODEL_NAMES",
    "PAPER_INIT_STD",
    "build_model",
    "initialize_weights",
]
