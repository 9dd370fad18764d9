"""The server's side of per-tensor noise: which scales to issue, how far the model moved, when to warn.

The scales issued for a round are recorded in the previous round's metrics
(``next_noise_scales``), so they reach every rank with the round's broadcast, survive a
resume with the history, and show in ``metrics.json``; no other state is kept.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from fedmrn_pl.federated.aggregate import example_weights
from fedmrn_pl.masking import MaskingConfig, NoiseScale, next_noise_scales, tensor_rms
from fedmrn_pl.update import ClientUpdate

__all__ = ["NEXT_SCALES_KEY", "NoiseScaleWatch", "issued_noise_scales", "relative_update", "scale_metrics"]

log = logging.getLogger("fedmrn_pl")

NEXT_SCALES_KEY = "next_noise_scales"  # a round's metrics: {tensor: scale} issued for the next round
CLIPPED_WARNING_FRACTION = 0.5  # more masked elements than this capped by the noise: the noise is too small


def issued_noise_scales(masking: MaskingConfig | None, history: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The per-tensor noise scales for the next round ({}: every tensor at ``masking.noise.alpha``)."""
    if masking is None or masking.noise_scale is NoiseScale.absolute or not history:
        return {}  # every adaptive round records the next scales, so the last round holds them
    return {str(name): float(scale) for name, scale in history[-1].get(NEXT_SCALES_KEY, {}).items()}


@torch.no_grad()
def relative_update(
    previous: Mapping[str, torch.Tensor], current: Mapping[str, torch.Tensor], names: Sequence[str]
) -> float:
    """``||w_new - w_old|| / ||w_old||`` over the masked tensors: how far a round moved them for their size."""
    moved = sum(float((current[n].double() - previous[n].double()).square().sum()) for n in names)
    size = sum(float(previous[n].double().square().sum()) for n in names)
    return math.sqrt(moved / size) if size > 0 else math.sqrt(moved)


def scale_metrics(
    masking: MaskingConfig | None,
    issued: Mapping[str, float],
    updates: Sequence[ClientUpdate],
    previous: Mapping[str, torch.Tensor],
    current: Mapping[str, torch.Tensor],
    masked_names: Sequence[str],
) -> dict[str, Any]:
    """The round's ``mask/relative_update`` and, for adaptive noise, the scales for the next round."""
    if masking is None:
        return {}
    metrics: dict[str, Any] = {"mask/relative_update": relative_update(previous, current, masked_names)}
    if masking.noise_scale is NoiseScale.adaptive:
        reports = [update.update_rms for update in updates]
        weights = example_weights(updates) if updates else []
        # Never far above the weight itself (alpha stands in for a zero tensor such as LoRA's B):
        # a large optimizer step must not turn every weight into noise.
        caps = {n: masking.scale_cap * max(tensor_rms(current[n]), masking.noise.alpha) for n in masked_names}
        metrics[NEXT_SCALES_KEY] = next_noise_scales(reports, weights, masking.scale_factor, previous=issued, caps=caps)
    return metrics


class NoiseScaleWatch:
    """Warns once, on the ``fedmrn_pl`` logger, when fixed noise caps most masked steps.

    ``mask/clipped_fraction`` is the share of masked elements whose trained update ``u``
    left the noise's reach (``|u| > |n|``): their step was cut to ``|n|``, whereas FedAvg
    would have taken it whole. Adaptive noise follows the updates and is not warned about.
    """

    def __init__(self) -> None:
        self.warned = False

    def check(self, masking: MaskingConfig | None, server_round: int, metrics: Mapping[str, Any]) -> None:
        clipped = metrics.get("mask/clipped_fraction")
        if self.warned or masking is None or masking.noise_scale is not NoiseScale.absolute or clipped is None:
            return
        if clipped > CLIPPED_WARNING_FRACTION:
            self.warned = True
            log.warning(
                "round %d: %.0f%% of masked weights wanted to move further than the noise allows "
                "(|u| > |n|, alpha=%g), so FedMRN takes smaller steps than FedAvg would; with weights or "
                "optimizer steps at other scales than the paper's CNNs use noise_scale='adaptive' "
                "(MaskingConfig(noise_scale='adaptive'), CLI method.noise_scale=adaptive)",
                server_round,
                100 * clipped,
                masking.noise.alpha,
            )
