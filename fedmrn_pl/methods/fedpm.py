"""FedPM (Isik et al., ICLR 2023): clients learn Bernoulli mask probabilities over a frozen random network.

Every masked tensor ``w`` is replaced by ``w_rand * m`` with ``w_rand`` frozen signed
Kaiming constants (``+-gain / sqrt(fan_in)``, never zero) drawn from the run seed, so
every rank and the server regenerate them, and ``m ~ Bernoulli(theta)``.

- Client (:class:`FedPMTraining`, a Lightning callback in each local fit): starts from the
  global ``theta``, trains scores through a sampled mask with a straight-through gradient
  (``m + theta - theta.detach()``), then samples one binary mask ``m ~ Bernoulli(theta)`` to
  upload: 1 bit per masked parameter, packed or entropy-coded as a wire ``mask``. By default
  the module's own optimizer trains the scores, in weight units
  (``theta = sigmoid(gain * u / |w_rand|)``); ``optimizer=adam`` trains logits
  (``theta = sigmoid(s)``) with their own Adam as the paper (lr 0.1), stepped from a gradient
  hook so the module's optimizer keeps training everything else.
- Server (:class:`FedPM`): a Beta posterior per parameter. ``alpha += sum_k v_k``,
  ``beta += sum_k (1 - v_k)`` with ``v_k`` client k's vote ``m_k`` clipped to
  ``[vote_clip, 1 - vote_clip]`` (one vote per client, as in the paper and the authors'
  code), reset to ``Beta(prior, prior)`` every ``reset_every`` rounds (the paper resets every
  ``1 / participation`` rounds, our default). The global probability is the posterior mode
  (the paper's), or its mean.

The global model holds ``w_rand * theta`` (the expected mask): clients read ``theta`` back
as ``global / w_rand``, so the plain dense downlink carries the probabilities. The
*evaluated* model uses the threshold mask ``w_rand * 1[theta >= 0.5]`` (see
:class:`FedPMTraining`, which applies it in every ``test`` run of the local trainers).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.hooks import RemovableHandle

from fedmrn_pl.callbacks.base import FederatedRun, UpdateTransform
from fedmrn_pl.federated.aggregate import example_weights, weighted_average
from fedmrn_pl.federated.strategies import State, Strategy
from fedmrn_pl.messages import FitRequest, FitResult
from fedmrn_pl.methods.fedpm_settings import FedPMEstimate, FedPMOptimizer, FedPMSettings
from fedmrn_pl.seeding import derive_seed, make_generator
from fedmrn_pl.update import ClientUpdate, MaskKind, NoiseSpec

__all__ = [
    "BernoulliMask", "FedPM", "FedPMClient", "FedPMSettings", "FedPMTraining", "frozen_random_weights", "init_fedpm"
]

EPS = 1e-4  # theta is kept in [EPS, 1 - EPS] so the scores stay finite


def frozen_random_weights(run_seed: int, name: str, shape: Sequence[int]) -> torch.Tensor:
    """The frozen signed Kaiming constants of tensor ``name``: ``+-sqrt(2 / fan_in)``, from the run seed."""
    shape = tuple(int(d) for d in shape)
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else max(shape[0] if shape else 1, 1)
    generator = make_generator(derive_seed(run_seed, purpose=f"fedpm_weights:{name}"))
    signs = torch.randint(0, 2, shape, generator=generator, dtype=torch.float32).mul_(2).sub_(1)
    return signs * math.sqrt(2.0 / max(fan_in, 1))


def probabilities(global_weight: torch.Tensor, frozen: torch.Tensor) -> torch.Tensor:
    """``theta = global / w_rand`` clipped to ``[EPS, 1 - EPS]``: the probabilities the global model holds."""
    return (global_weight.detach().to(torch.float32).cpu() / frozen).clamp_(EPS, 1.0 - EPS)


@torch.no_grad()
def init_fedpm(module: nn.Module, names: Sequence[str], run_seed: int, theta: float = 0.5) -> None:
    """Set each named tensor of ``module`` to ``w_rand * theta``: the first global model (uniform probabilities)."""
    tensors = dict(module.named_parameters())
    for name in names:
        tensor = tensors[name]
        tensor.copy_((frozen_random_weights(run_seed, name, tensor.shape) * theta).to(tensor))


class _FixedMask(nn.Module):
    """Parametrization ``w -> w_fixed``: the evaluated model's masked random weights."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("fixed", weight, persistent=False)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.fixed.to(weight.dtype)


class BernoulliMask(nn.Module):
    """Parametrization ``w -> w_rand * m``, ``m ~ Bernoulli(sigmoid(scores / scale))``, straight-through to the scores.

    ``scale`` 1 makes the scores logits (the paper's); ``|w_rand| / gain`` puts them in weight units.
    """

    def __init__(self, frozen: torch.Tensor, theta: torch.Tensor, scale: torch.Tensor | float = 1.0) -> None:
        super().__init__()
        scale = torch.as_tensor(scale, dtype=frozen.dtype).expand_as(frozen).clone()
        self.register_buffer("frozen", frozen, persistent=False)
        self.register_buffer("scale", scale, persistent=False)
        self.scores = nn.Parameter(torch.logit(theta) * self.scale)
        self.generator: torch.Generator | None = None

    def probability(self) -> torch.Tensor:
        """``theta = sigmoid(scores / scale)``."""
        return torch.sigmoid(self.scores / self.scale)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        theta = self.probability()
        if not self.training:
            return self.frozen * theta  # the expected mask
        draw = torch.rand(theta.shape, generator=self.generator, device=theta.device, dtype=theta.dtype)
        sampled = (draw < theta).to(theta.dtype)
        return self.frozen * (sampled + theta - theta.detach())


class FedPMTraining(L.Callback):
    """Lightning callback: Bernoulli masks on the named tensors in a local fit, a fixed mask in evaluation.

    In a fit the masks are sampled afresh each forward and trained; the binary mask to
    upload is sampled at the end. In evaluation (``test``) the model uses the threshold
    mask ``theta >= 0.5`` of the global ``theta``: BatchNorm statistics are gathered under
    binary masks, which the expected mask ``w_rand * theta`` does not match (digits: chance
    accuracy with the expected mask, 0.74 with the threshold after 4 rounds).

    Scores: with ``settings.optimizer=task`` (default) the module's optimizer trains them, in
    weight units (``theta = sigmoid(gain * u / |w_rand|)``: SGD at lr 0.1 with gain 1 barely
    moves them); with ``adam`` (the paper's) they are logits stepped by one Adam each, from a
    post-accumulate-grad hook (PyTorch's optimizer-in-backward pattern), which leaves their
    gradient empty so the module's own optimizer skips them and still trains every other
    parameter.
    """

    def __init__(self, names: Sequence[str], run_seed: int, settings: FedPMSettings | None = None) -> None:
        self.names = tuple(names)
        self.run_seed = int(run_seed)
        self.settings = settings or FedPMSettings()
        self.request: tuple[int, int] | None = None  # (server_round, client_id) of the next fit
        self.masks: dict[str, torch.Tensor] = {}
        self._hooks: list[RemovableHandle] = []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Wrap before ``configure_optimizers`` runs, so the optimizer sees the scores."""
        if stage == "fit" and self.request is None:
            return  # a fit FedPMClient did not announce (not a federated client)
        tensors = dict(pl_module.named_parameters())
        for name in self.names:
            weight = tensors[name]
            frozen = frozen_random_weights(self.run_seed, name, weight.shape)
            theta = probabilities(weight, frozen)
            module_name, _, attr = name.rpartition(".")
            owner = pl_module.get_submodule(module_name)
            if stage == "fit":
                adam = self.settings.optimizer is FedPMOptimizer.adam
                mask: nn.Module = BernoulliMask(frozen, theta, 1.0 if adam else frozen.abs() / self.settings.gain)
            else:
                mask = _FixedMask(frozen * (theta >= 0.5).float())
            parametrize.register_parametrization(owner, attr, mask.to(weight.device), unsafe=True)
            weight.requires_grad_(False)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Seed the training draws on the module's device; give each score tensor its Adam (on that device)."""
        assert self.request is not None
        generator = make_generator(derive_seed(self.run_seed, *self.request, "fedpm_train"), pl_module.device)
        adam = self.settings.optimizer is FedPMOptimizer.adam
        if adam and trainer.accumulate_grad_batches != 1:
            raise ValueError(
                f"FedPM's Adam steps the scores on every backward pass, so accumulate_grad_batches="
                f"{trainer.accumulate_grad_batches} is not supported; use 1 or method.fedpm_optimizer=task"
            )
        scaled = getattr(trainer.precision_plugin, "scaler", None) is not None  # mixed precision: grads may overflow
        for name, mask in self._trained(pl_module).items():
            mask.generator = generator
            if adam:
                if mask.scores.dtype not in (torch.float32, torch.float64):
                    raise ValueError(
                        f"FedPM's Adam needs float32 scores, {name!r} has {mask.scores.dtype} (precision "
                        f"{trainer.precision!r}); use a mixed precision such as 16-mixed, or optimizer=task"
                    )
                optimizer = torch.optim.Adam([mask.scores], lr=self.settings.lr)
                self._hooks.append(mask.scores.register_post_accumulate_grad_hook(_stepper(optimizer, scaled)))

    @torch.no_grad()
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Sample the binary mask to upload, ``m ~ Bernoulli(theta)``, on the CPU (same bits on any device)."""
        assert self.request is not None
        generator = make_generator(derive_seed(self.run_seed, *self.request, "fedpm_upload"))
        self.masks = {}
        for name, mask in self._trained(pl_module).items():
            theta = mask.probability().float().cpu()
            if not bool(torch.isfinite(theta).all()):
                raise FloatingPointError(f"non-finite mask probabilities in {name!r}")
            self.masks[name] = torch.rand(theta.shape, generator=generator) < theta

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Give the user their plain module back, with its global weights."""
        self._restore(pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """A fit that raises skips ``teardown``: restore here, or the next client finds a wrapped module."""
        self._restore(pl_module)

    def _restore(self, pl_module: nn.Module) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        for name in self._masks(pl_module):
            module_name, _, attr = name.rpartition(".")
            owner = pl_module.get_submodule(module_name)
            parametrize.remove_parametrizations(owner, attr, leave_parametrized=False)
            getattr(owner, attr).requires_grad_(True)

    def _masks(self, pl_module: nn.Module) -> dict[str, nn.Module]:
        found = {}
        for name in self.names:
            module_name, _, attr = name.rpartition(".")
            owner = pl_module.get_submodule(module_name)
            if parametrize.is_parametrized(owner, attr):
                found.update({name: p for p in owner.parametrizations[attr] if isinstance(p, (BernoulliMask, _FixedMask))})
        return found

    def _trained(self, pl_module: nn.Module) -> dict[str, BernoulliMask]:
        return {n: p for n, p in self._masks(pl_module).items() if isinstance(p, BernoulliMask)}


def _stepper(optimizer: torch.optim.Optimizer, check_finite: bool = False) -> Callable[[torch.Tensor], None]:
    """A post-accumulate-grad hook: step ``optimizer`` on the fresh gradient, then drop it.

    ``check_finite`` (mixed precision, where a grad scaler runs): a non-finite gradient, an
    overflowing step the scaler skips for the module's optimizer, is dropped without a step.
    Checked only then, since the check costs a device sync per backward.
    """

    def step(parameter: torch.Tensor) -> None:
        grad = parameter.grad
        if grad is not None and (not check_finite or bool(torch.isfinite(grad).all())):
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


class FedPMClient(UpdateTransform):
    """Client side of FedPM: tells the local fit which client trains, then uploads its sampled masks.

    Declares its ``FedPMTraining`` for every local ``lightning.Trainer`` (``configure_local_callbacks``);
    an ``UpdateTransform``, so it runs right before ``MaskPacking``.
    """

    def __init__(self, names: Sequence[str], run_seed: int, settings: FedPMSettings | None = None) -> None:
        self.names = tuple(names)
        self.training = FedPMTraining(self.names, run_seed, settings)

    def configure_local_callbacks(self) -> list[L.Callback]:
        """The local fits train scores and evaluate threshold masks through ``FedPMTraining``."""
        return [self.training]

    def on_client_fit_start(self, trainer: FederatedRun, request: FitRequest) -> None:
        """Seed the client's draws from (run, round, client)."""
        self.training.request = (request.server_round, request.client_id)
        self.training.masks = {}

    def on_client_fit_end(self, trainer: FederatedRun, result: FitResult) -> None:
        """Replace the masked tensors' dense values by the sampled binary masks."""
        update = result.update
        self.training.request = None
        if update is None:
            return
        masks = self.training.masks
        if set(masks) != set(self.names):
            raise RuntimeError(f"FedPM sampled masks for {sorted(masks)}, expected {sorted(self.names)}")
        dense = {name: tensor for name, tensor in update.dense.items() if name not in masks}
        result.update = ClientUpdate(
            update.server_round, update.client_id, update.seed, MaskKind.binary.value, NoiseSpec(),
            update.num_examples, masks=dict(masks), dense=dense,
        )  # fmt: skip


class FedPM(Strategy):
    """Beta-posterior aggregation of binary masks; the global model is ``w_rand * E[theta]``.

    Args:
        names: the tensors uploaded as masks (the rest travel dense, averaged as in FedAvg).
        run_seed: the run's seed (the frozen random weights come from it).
        settings: prior, reset period, estimate and vote clipping (:class:`FedPMSettings`).
    """

    name = "fedpm"

    def __init__(self, names: Sequence[str], run_seed: int, settings: FedPMSettings | None = None) -> None:
        self.names = tuple(names)
        self.run_seed = int(run_seed)
        self.settings = settings or FedPMSettings()
        self.alpha: dict[str, torch.Tensor] = {}
        self.beta: dict[str, torch.Tensor] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}  # of the masked tensors, once setup() saw the model

    def setup(self, module: nn.Module) -> None:
        """Note the masked tensors' shapes, which a restored posterior must have."""
        tensors = dict(module.named_parameters())
        self.shapes = {name: tuple(tensors[name].shape) for name in self.names if name in tensors}

    def compressed_manifest(self, global_state: Mapping[str, torch.Tensor]) -> dict[str, tuple[str, tuple[int, ...]]]:
        return {name: ("mask", tuple(global_state[name].shape)) for name in self.names}

    def aggregate(
        self, server_round: int, global_state: Mapping[str, torch.Tensor], updates: Sequence[ClientUpdate]
    ) -> State | None:
        if not updates:
            return None
        settings = self.settings
        reset = (server_round - 1) % settings.reset_every == 0
        weights = example_weights(updates)
        new_state = {}
        for name, like in global_state.items():
            if name in self.names:
                clip = settings.vote_clip
                masks = torch.stack([u.masks[name].to(torch.float32) for u in updates])
                votes = masks.mul_(1 - 2 * clip).add_(clip).sum(0)
                if reset or name not in self.alpha:
                    self.alpha[name] = torch.full_like(votes, settings.prior)
                    self.beta[name] = torch.full_like(votes, settings.prior)
                self.alpha[name] += votes
                self.beta[name] += len(updates) - votes
                theta = self.estimate(name).clamp_(EPS, 1.0 - EPS)
                new_state[name] = (frozen_random_weights(self.run_seed, name, like.shape) * theta).to(like.dtype)
            elif name in updates[0].dense:
                new_state[name] = weighted_average([u.dense[name] for u in updates], weights, like)
            else:
                new_state[name] = like  # frozen: not uploaded, the server keeps its value
        return new_state

    @property
    def takes_server_optimizer(self) -> bool:
        """The global tensors are ``w_rand * theta``, a posterior estimate: not a model update to step."""
        return False

    @property
    def replayable(self) -> bool:
        """Clients can replay the aggregate only if the posterior resets every round (``FedPMSettings.replayable``)."""
        return self.settings.replayable

    def estimate(self, name: str) -> torch.Tensor:
        """The global probability of tensor ``name``: the posterior's mode or mean."""
        alpha, beta = self.alpha[name], self.beta[name]
        if self.settings.estimate is FedPMEstimate.mode:
            return (alpha - 1) / (alpha + beta - 2)
        return alpha / (alpha + beta)

    def state_dict(self) -> dict[str, Any]:
        """The Beta posterior's counts, and how they were made (votes clipping and estimate must match on resume)."""
        made = {"estimate": self.settings.estimate.value, "vote_clip": self.settings.vote_clip}
        return {"alpha": dict(self.alpha), "beta": dict(self.beta), **made}

    def load_state_dict(self, state: Mapping) -> None:
        """Restore the counts, checked first; refuse a posterior made with another estimate or vote clipping.

        Raises:
            ValueError: unknown keys, counts that are not finite positive float32 tensors of every masked
                tensor's shape, or other settings.
        """
        unknown = sorted(map(str, set(state) - {"alpha", "beta", "estimate", "vote_clip"}))
        if unknown:
            raise ValueError(f"unexpected FedPM state {unknown}")
        alpha, beta = state.get("alpha", {}), state.get("beta", {})
        for key, counts in (("alpha", alpha), ("beta", beta)):
            self._check_counts(key, counts)
        if set(alpha) != set(beta) or any(alpha[name].shape != beta[name].shape for name in alpha):
            raise ValueError("FedPM 'alpha' and 'beta' counts must cover the same tensors, in the same shapes")
        if alpha:
            # a checkpoint from before either setting existed was made with the mean of unclipped votes
            made = (state.get("estimate", FedPMEstimate.mean.value), state.get("vote_clip", 0.0))
            here = (self.settings.estimate.value, self.settings.vote_clip)
            if made != here:
                raise ValueError(
                    f"the checkpoint's FedPM posterior was made with estimate={made[0]}, vote_clip={made[1]}; this run "
                    f"uses estimate={here[0]}, vote_clip={here[1]}: resume with the run's own settings"
                )
        self.alpha = {k: v.clone() for k, v in alpha.items()}
        self.beta = {k: v.clone() for k, v in beta.items()}

    def _check_counts(self, key: str, counts: Any) -> None:
        """Posterior counts: none yet, or a finite positive float32 tensor for every masked tensor."""
        if not isinstance(counts, Mapping):
            raise ValueError(f"FedPM {key!r} must be a dict of tensors, got {type(counts).__name__}")
        if counts and set(counts) != set(self.names):
            raise ValueError(f"FedPM {key!r} counts are for {sorted(map(str, counts))}, expected {sorted(self.names)}")
        for name, tensor in counts.items():
            shape = self.shapes.get(name)
            if not isinstance(tensor, torch.Tensor) or tensor.dtype != torch.float32:
                raise ValueError(f"FedPM {key!r} counts of {name!r} must be a float32 tensor")
            if shape is not None and tuple(tensor.shape) != shape:
                raise ValueError(f"FedPM {key!r} counts of {name!r} have shape {tuple(tensor.shape)}, the model's is {shape}")
            if not bool((torch.isfinite(tensor) & (tensor > 0)).all()):
                raise ValueError(f"FedPM {key!r} counts of {name!r} must be finite and > 0")
