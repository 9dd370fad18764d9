"""The closed sets of the baselines' settings, torch-free so a config is checked without loading torch."""

from __future__ import annotations

from fedmrn_pl.choices import Choice

__all__ = ["Method", "QuantNorm"]


class QuantNorm(Choice):
    """The scale of stochastic 1-bit quantisation: ``linf`` (max |x|, lower variance) or ``l2`` (QSGD's norm)."""

    linf = "linf"
    l2 = "l2"


class Method(Choice):
    """The federated method: FedMRN's masked noise, dense FedAvg, or a low-bit uplink baseline (``fedmrn_pl.methods``)."""

    fedmrn = "fedmrn"
    fedavg = "fedavg"
    signsgd = "signsgd"  # sign bits x mean |delta| per tensor
    ef_signsgd = "ef_signsgd"  # the same with error feedback (the client's residual)
    stoch1bit = "stoch1bit"  # unbiased stochastic 1-bit quantisation (QSGD, one level)
    eden = "eden"  # random Hadamard rotation, sign bits, one scale (EDEN/DRIVE)
    topk = "topk"  # top-k values + bit-packed indices, with error feedback
    fedpm = "fedpm"  # FedPM: Bernoulli masks over a frozen random network, Beta-posterior aggregation
