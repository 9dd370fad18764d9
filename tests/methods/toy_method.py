"""A method written outside the package, through its public API only: what a user's plugin file looks like.

``toy_sign`` uploads one stochastic sign bit per element, ``+s`` with probability
``(1 + delta / s) / 2`` for ``s = scale x max |delta|`` per tensor, so the upload is
unbiased. It has its own settings (``method.toy_sign.scale``) with a check, two compare rows, and a
Lightning callback for the local fits declared by its client transform. Registered in
process by the tests, or found by the CLI and every torchrun rank through a
``fedmrn_pl.methods`` entry point naming ``tests.methods.toy_method:METHOD``.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import torch

from fedmrn_pl.compressed import SignScale
from fedmrn_pl.methods import (
    CompressedDeltas,
    Compressor,
    FederatedMethod,
    MethodContext,
    MethodParts,
    RunFacts,
    UpdateCompression,
)


@dataclass
class ToySettings:
    scale: float = 1.0  # s = scale x max |delta|; >= 1 so that every probability is in [0, 1]


class WideStochasticSign(Compressor):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def compress(self, name: str, delta: torch.Tensor, seed: int, generator: torch.Generator) -> SignScale:
        s = self.scale * float(delta.abs().max()) if delta.numel() else 0.0
        if s == 0:
            return SignScale(torch.ones_like(delta, dtype=torch.bool), 0.0)
        up = torch.rand(delta.shape, generator=generator) < (1 + delta / s) / 2
        return SignScale(up, s)


class LocalSteps(L.Callback):
    """Counts the local training batches of this process's clients."""

    def __init__(self) -> None:
        self.batches = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        self.batches += 1


class ToyCompression(UpdateCompression):
    def __init__(self, compressor: Compressor, names: list[str]) -> None:
        super().__init__(compressor, names)
        self.steps = LocalSteps()

    def configure_local_callbacks(self) -> list[L.Callback]:
        return [self.steps]


def check(settings: ToySettings, run: RunFacts) -> None:
    if not settings.scale >= 1:
        raise ValueError(f"method.toy_sign.scale={settings.scale} is not valid; it must be >= 1")


def build(context: MethodContext) -> MethodParts:
    names = context.selected_names()
    compressor = WideStochasticSign(context.settings.scale)
    return MethodParts(CompressedDeltas("toy_sign", compressor, names), [ToyCompression(compressor, names)])


METHOD = FederatedMethod(
    "toy_sign",
    build,
    summary="unbiased stochastic sign bits, s = scale x max |delta| (a test's plugin)",
    settings=ToySettings,
    check=check,
    variants={"toy_sign": [], "toy_sign_wide": ["method.toy_sign.scale=2"]},
)
