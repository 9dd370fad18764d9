"""The federated loop: trainer, client sampling and aggregation strategies."""

from fedmrn_pl.federated.evaluation import EvaluationError
from fedmrn_pl.federated.sampling import sample_clients
from fedmrn_pl.federated.strategies import FedAvg, FedMRN, Strategy
from fedmrn_pl.federated.trainer import ClientData, FederatedTrainer

__all__ = ["ClientData", "EvaluationError", "FedAvg", "FedMRN", "FederatedTrainer", "Strategy", "sample_clients"]
