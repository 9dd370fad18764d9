"""The federated loop: trainer, client sampling, aggregation strategies and run figures."""

from fedmrn_pl.federated.job import ClientJob
from fedmrn_pl.federated.report import global_model_sha256, run_summary, state_bytes, write_metrics_json
from fedmrn_pl.federated.sampling import sample_clients
from fedmrn_pl.federated.strategies import FedAvg, FedMRN, Strategy
from fedmrn_pl.federated.trainer import ClientData, FederatedTrainer

__all__ = [
    "ClientData",
    "ClientJob",
    "FedAvg",
    "FedMRN",
    "FederatedTrainer",
    "Strategy",
    "global_model_sha256",
    "run_summary",
    "sample_clients",
    "state_bytes",
    "write_metrics_json",
]
