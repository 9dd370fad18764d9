"""The built-in model names and weight inits, torch-free so a config is checked without loading torch.

Adding a model: a member here and its builder in ``registry.py`` (a test checks both agree).
"""

from __future__ import annotations

from fedmrn_pl.choices import Choice

__all__ = ["InitScheme", "ModelName"]


class ModelName(Choice):
    """The built-in models ``build_model`` constructs."""

    cnn4 = "cnn4"
    cnn8 = "cnn8"
    mlp = "mlp"


class InitScheme(Choice):
    """How the built-in models initialise conv/linear weights."""

    default = "default"  # PyTorch's own (Kaiming-uniform)
    paper = "paper"  # N(0, PAPER_INIT_STD) weights, zero biases
