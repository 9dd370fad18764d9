"""The server's evaluation of the global model, with the module's own ``test_step`` or ``validation_step``.

Most Lightning modules have a ``validation_step``; one without a ``test_step`` is
evaluated with it (``trainer.validate``) on the test set, and the run's test metrics
are whatever it logs. A failing evaluation stops the run with one ``EvaluationError``
that names the module, the hook and the round.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch.utils.data import DataLoader

from fedmrn_pl.client import local_trainer, quiet_lightning

__all__ = ["EVALUATION_HOOKS", "EvaluationError", "evaluate_module", "evaluation_hook"]

EVALUATION_HOOKS = ("test_step", "validation_step")  # in order of preference


class EvaluationError(RuntimeError):
    """Evaluating the global model failed; the run stopped after its callbacks saved the completed rounds.

    Attributes:
        module_name: the LightningModule's class name.
        hook: the step that failed (``test_step`` or ``validation_step``).
        server_round: the round whose model was being evaluated.
    """

    def __init__(
        self, message: str, *, module_name: str = "", hook: str = "", server_round: int | None = None
    ) -> None:
        super().__init__(message)
        self.module_name = module_name
        self.hook = hook
        self.server_round = server_round

    @classmethod
    def of(cls, module: L.LightningModule, server_round: int, error: BaseException) -> EvaluationError:
        """The error for ``error`` raised while evaluating ``module`` in ``server_round``, as one line."""
        name, hook = type(module).__name__, evaluation_hook(module) or "test_step"
        detail = " ".join(str(error).split()) or "(no message)"
        return cls(
            f"round {server_round}: evaluating the global model with {name}.{hook} failed: "
            f"{type(error).__name__}: {detail}",
            module_name=name,
            hook=hook,
            server_round=server_round,
        )


def evaluation_hook(module: L.LightningModule) -> str | None:
    """The step the server evaluates with: ``test_step``, else ``validation_step``; None if neither exists."""
    return next((hook for hook in EVALUATION_HOOKS if is_overridden(hook, module, L.LightningModule)), None)


def evaluate_module(
    module: L.LightningModule, loader: DataLoader, trainer_kwargs: Mapping[str, Any]
) -> dict[str, float]:
    """Run ``module``'s evaluation step over ``loader`` in a fresh local trainer; return what it logged."""
    with quiet_lightning():
        trainer = local_trainer(trainer_kwargs)
        run = trainer.test if evaluation_hook(module) == "test_step" else trainer.validate
        results = run(module, dataloaders=loader, verbose=False)
    return {key: float(value) for key, value in (results[0] if results else {}).items()}
