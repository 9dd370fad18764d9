"""Top-k sparsification with error feedback: each tensor's largest-magnitude entries, as values + packed indices."""

from __future__ import annotations

from dataclasses import dataclass

from fedmrn_pl.methods.plugin import FederatedMethod, MethodContext, MethodParts, RunFacts


@dataclass
class TopKSettings:
    """Top-k's settings (``method.name=topk``)."""

    fraction: float = 0.01  # fraction of each tensor's entries uploaded


def _check(settings: TopKSettings, run: RunFacts) -> None:
    if not 0 < settings.fraction <= 1:
        raise ValueError(f"method.topk.fraction={settings.fraction} is not valid; it must be in (0, 1]")


def _build(context: MethodContext) -> MethodParts:
    from fedmrn_pl.methods.compression import compressed_method
    from fedmrn_pl.methods.compressors import TopK

    return compressed_method("topk", TopK(context.settings.fraction, error_feedback=True), context.selected_names())


METHOD = FederatedMethod(
    "topk", _build, summary="top-k values + bit-packed indices, with error feedback", settings=TopKSettings, check=_check
)
