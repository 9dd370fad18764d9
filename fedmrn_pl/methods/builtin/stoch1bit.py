"""Unbiased stochastic 1-bit quantisation (QSGD with one level): ``+-s`` per element with expectation ``delta``."""

from __future__ import annotations

from dataclasses import dataclass

from fedmrn_pl.methods.choices import QuantNorm
from fedmrn_pl.methods.plugin import FederatedMethod, MethodContext, MethodParts


@dataclass
class Stoch1BitSettings:
    """Stochastic 1-bit quantisation's settings (``method.name=stoch1bit``)."""

    quant_norm: QuantNorm = QuantNorm.linf  # scale by max |delta| (linf, lower variance) or ||delta||_2 (l2, QSGD's)


def _build(context: MethodContext) -> MethodParts:
    from fedmrn_pl.methods.compression import compressed_method
    from fedmrn_pl.methods.compressors import StochasticSign

    return compressed_method("stoch1bit", StochasticSign(context.settings.quant_norm), context.selected_names())


METHOD = FederatedMethod(
    "stoch1bit", _build, summary="unbiased stochastic 1-bit quantisation (QSGD, one level)", settings=Stoch1BitSettings
)
