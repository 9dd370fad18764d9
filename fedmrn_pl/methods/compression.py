"""A compressed-update method: the client-side callback that encodes, and the server strategy that decodes.

Both halves hold the same :class:`Compressor` and the same tensor names, so what a
client uploads and what the server expects cannot drift apart:

- :class:`UpdateCompression` (a federated callback, runs where the client trained, before
  ``MaskPacking``) turns the client's dense weights into ``delta = w_k - w`` per selected
  tensor, adds the client's error-feedback residual, compresses, and keeps the rest dense.
- :class:`CompressedDeltas` (a ``Strategy``) decompresses every upload and applies
  ``w <- w + sum_k (N_k / N) delta_k``; dense tensors are averaged as in FedAvg.

Error-feedback residuals are the client's private state. Under torchrun a client may
train on another rank every round, so the residual cannot stay in a rank's memory: it
travels in ``FitResult.client_state`` to the server, which keeps it in its checkpointed
state and hands it back in the client's next ``FitRequest.client_state`` (see
``FederatedTrainer``). It is bytes in the wire format (a dense update), never counted as
uplink: in a real deployment it would never leave the client's disk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from fedmrn_pl.callbacks.base import FederatedRun, UpdateTransform
from fedmrn_pl.federated.aggregate import average_dense, example_weights, weighted_average
from fedmrn_pl.federated.strategies import State, Strategy
from fedmrn_pl.messages import FitResult
from fedmrn_pl.methods.compressors import Compressor
from fedmrn_pl.methods.plugin import MethodParts
from fedmrn_pl.seeding import derive_seed, make_generator
from fedmrn_pl.update import DENSE_KIND, ClientUpdate, NoiseSpec
from fedmrn_pl.wire import TensorSpec, decode_update, encode_update

__all__ = ["CompressedDeltas", "UpdateCompression", "compressed_method", "decode_residual", "encode_residual"]


class CompressedDeltas(Strategy):
    """``w <- w + sum_k (N_k / N) decompress(upload_k)`` for the compressed tensors; dense ones averaged.

    Args:
        name: the method's name (run label).
        compressor: the method's encoder/decoder.
        names: the tensors uploaded compressed (the rest travel dense).
    """

    def __init__(self, name: str, compressor: Compressor, names: Sequence[str]) -> None:
        self.name = name
        self.compressor = compressor
        self.names = tuple(names)

    def compressed_manifest(self, global_state: Mapping[str, torch.Tensor]) -> dict[str, tuple[str, tuple[int, ...]]]:
        """``{name: (role, shape)}`` the server expects in every payload."""
        return {n: (self.compressor.role, self.compressor.wire_shape(tuple(global_state[n].shape))) for n in self.names}

    def aggregate(
        self, server_round: int, global_state: Mapping[str, torch.Tensor], updates: Sequence[ClientUpdate]
    ) -> State | None:
        if not updates:
            return None
        weights = example_weights(updates)
        new_state = {}
        for name, like in global_state.items():
            if name in self.names:
                shape = tuple(like.shape)
                deltas = [self.compressor.decompress(name, u.compressed[name], u.seed, shape) for u in updates]
                new_state[name] = like + weighted_average(deltas, weights, torch.zeros_like(like, dtype=torch.float32)).to(like.dtype)
            else:
                new_state[name] = average_dense(name, updates, weights, like)
        return new_state


class UpdateCompression(UpdateTransform):
    """Client side of a compressed method: ``result.update`` (dense weights) becomes the compressed update.

    An ``UpdateTransform``: the trainer runs it after the user's client hooks and before
    ``MaskPacking`` encodes the update.
    """

    def __init__(self, compressor: Compressor, names: Sequence[str]) -> None:
        self.compressor = compressor
        self.names = tuple(names)

    def on_client_fit_end(self, trainer: FederatedRun, result: FitResult) -> None:
        """Compress the selected tensors' deltas; update the error-feedback residual."""
        update = result.update
        if update is None:
            return
        residual = decode_residual(result.request.client_state) if self.compressor.error_feedback else {}
        generator = make_generator(derive_seed(trainer.run_seed, update.server_round, update.client_id, "quantize"))
        compressed, new_residual = {}, {}
        for name in self.names:
            delta = update.dense[name].to(torch.float32) - trainer.global_state[name].to(torch.float32)
            if name in residual:
                delta = delta + residual[name]
            compressed[name] = self.compressor.compress(name, delta, update.seed, generator)
            if self.compressor.error_feedback:
                sent = self.compressor.decompress(name, compressed[name], update.seed, tuple(delta.shape))
                new_residual[name] = delta - sent
        dense = {name: tensor for name, tensor in update.dense.items() if name not in self.names}
        result.update = ClientUpdate(
            update.server_round, update.client_id, update.seed, DENSE_KIND, NoiseSpec(), update.num_examples,
            dense=dense, compressed=compressed,
        )  # fmt: skip
        if self.compressor.error_feedback:
            result.client_state = encode_residual(new_residual)

    @property
    def keeps_client_state(self) -> bool:
        """Error feedback keeps each client's residual between its rounds."""
        return self.compressor.error_feedback

    def check_client_state(self, trainer: FederatedRun, client_id: int, state: bytes) -> None:
        """A stored residual must decode to one finite float32 tensor per compressed name, in the model's shape."""
        expected = {name: TensorSpec(tuple(trainer.global_state[name].shape), "dense", ("float32",)) for name in self.names}
        for name, tensor in decode_update(state, expected).dense.items():
            if not bool(torch.isfinite(tensor).all()):
                raise ValueError(f"the residual of {name!r} holds non-finite values")


def compressed_method(name: str, compressor: Compressor, names: Sequence[str]) -> MethodParts:
    """A compressing method's two halves over one ``compressor`` and the same tensor ``names``."""
    return MethodParts(CompressedDeltas(name, compressor, names), [UpdateCompression(compressor, names)])


def encode_residual(residual: Mapping[str, torch.Tensor]) -> bytes:
    """A client's residual as bytes: a dense update in the wire format (no pickle, checksummed), not deflated.

    Never sent, so the raw float32 bytes: deflating a CNN4 residual took ~70 ms per
    client round to save ~15% of a file the server keeps (see ``client_states``).
    """
    update = ClientUpdate(0, 0, 0, DENSE_KIND, NoiseSpec(), 0, dense=dict(residual))
    return encode_update(update, dense_encoding="raw")


def decode_residual(data: bytes | None) -> dict[str, torch.Tensor]:
    """The residual ``encode_residual`` wrote; empty before the client's first round."""
    return {} if data is None else decode_update(data).dense
