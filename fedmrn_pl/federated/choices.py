"""The closed sets of the federated loop's settings, torch-free so a config is checked without loading torch."""

from __future__ import annotations

from fedmrn_pl.choices import Choice

__all__ = ["DownlinkMode", "ServerOptimizerName"]


class DownlinkMode(Choice):
    """How the global model reaches the sampled clients."""

    dense = "dense"  # the model's tensors, every round
    masks = "masks"  # the round messages a client missed (dense when it never synced or missed too many)


class ServerOptimizerName(Choice):
    """How the server applies the round's aggregate (``federated.server_optimizers``)."""

    plain = "plain"  # the aggregate is the next model
    avgm = "avgm"  # FedAvgM: server momentum
    adagrad = "adagrad"  # FedAdagrad
    adam = "adam"  # FedAdam
    yogi = "yogi"  # FedYogi
