"""The federated methods by name: how a configured method becomes a strategy and its client-side callbacks."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from fedmrn_pl.callbacks.base import FederatedCallback
from fedmrn_pl.federated.strategies import FedAvg, FedMRN, Strategy
from fedmrn_pl.masking.selection import ParameterSelector
from fedmrn_pl.methods.choices import Method
from fedmrn_pl.methods.compression import CompressedDeltas, UpdateCompression
from fedmrn_pl.methods.compressors import Compressor, EdenSign, ScaledSign, StochasticSign, TopK
from fedmrn_pl.methods.fedpm import FedPM, FedPMClient, init_fedpm
from fedmrn_pl.methods.fedpm_settings import FedPMSettings

__all__ = ["COMPRESSED_METHODS", "build_method", "compressor_for"]


COMPRESSED_METHODS = (Method.signsgd, Method.ef_signsgd, Method.stoch1bit, Method.eden, Method.topk)


def compressor_for(method: Method | str, *, topk_fraction: float = 0.01, quant_norm: str = "linf") -> Compressor:
    """The encoder/decoder of a compressed-update method."""
    method = Method.parse(method, "method")
    if method is Method.signsgd:
        return ScaledSign()
    if method is Method.ef_signsgd:
        return ScaledSign(error_feedback=True)
    if method is Method.stoch1bit:
        return StochasticSign(quant_norm)
    if method is Method.eden:
        return EdenSign()
    if method is Method.topk:
        return TopK(topk_fraction, error_feedback=True)
    raise ValueError(f"method {method.value!r} is not a compressed-update method; those are {[m.value for m in COMPRESSED_METHODS]}")


def build_method(
    method: Method | str,
    module: nn.Module,
    selector: ParameterSelector | None = None,
    *,
    topk_fraction: float = 0.01,
    quant_norm: str = "linf",
    run_seed: int = 0,
    fedpm: FedPMSettings | None = None,
) -> tuple[Strategy, list[FederatedCallback]]:
    """The server strategy and the client-side callbacks of ``method`` for ``module``.

    Compressed methods compress the tensors FedMRN would mask (``selector``: weights of
    Linear/Conv/... layers by default) and send the rest dense, so every method's bytes
    are comparable. FedMRN's masking itself is configured by ``MaskingConfig``.
    """
    method = Method.parse(method, "method")
    if method is Method.fedmrn:
        return FedMRN(), []
    if method is Method.fedavg:
        return FedAvg(), []
    if method is Method.fedpm:
        names = _selected(module, selector or ParameterSelector())
        init_fedpm(module, names, run_seed)
        return FedPM(names, run_seed, fedpm), [FedPMClient(names, run_seed, fedpm)]
    compressor = compressor_for(method, topk_fraction=topk_fraction, quant_norm=quant_norm)
    names = _selected(module, selector or ParameterSelector())
    return CompressedDeltas(method.value, compressor, names), [UpdateCompression(compressor, names)]


def _selected(module: nn.Module, selector: ParameterSelector) -> Sequence[str]:
    names = [name for name, _, _ in selector.select(module)]
    if not names:
        raise ValueError(f"the parameter selector {selector} selects no parameter of {type(module).__name__} to compress")
    return names
