"""Weight initialisation schemes shared by the built-in models.

The paper initialises every conv/linear weight from N(0, 0.01) and trains
bias-free layers; ``"default"`` keeps PyTorch's own (Kaiming-uniform) init so the
models are also usable as ordinary baselines.
"""

from __future__ import annotations

from torch import nn

from fedmrn_pl.models.choices import InitScheme

__all__ = ["PAPER_INIT_STD", "InitScheme", "initialize_weights"]

PAPER_INIT_STD = 0.01  # std of the N(0, std) weight init used in the FedMRN paper


def initialize_weights(module: nn.Module, init: str = "paper") -> nn.Module:
    """Re-initialise conv/linear layers of ``module`` in place and return it.

    Args:
        module: Any module; only its ``nn.Conv*d`` and ``nn.Linear`` children change.
        init: ``"paper"`` draws weights from N(0, 0.01) and zeroes biases;
            ``"default"`` leaves PyTorch's init untouched. Normalisation layers
            always keep their usual (ones/zeros) affine init.

    Returns:
        The same module, for chaining.

    Raises:
        ValueError: If ``init`` is not an ``InitScheme``.
    """
    InitScheme.parse(init, "init")
    if init == "default":
        return module
    for layer in module.modules():
        if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.normal_(layer.weight, mean=0.0, std=PAPER_INIT_STD)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module
