"""Mask packing: both directions of the uplink wire format.

On the client side an update becomes the bytes it uploads; on the server side the
bytes are validated and become an update again. One component owns both, so what
is packed and what is accepted cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fedmrn_pl.messages import FitResult
from fedmrn_pl.saving import atomic_write
from fedmrn_pl.update import DENSE_KIND, ClientUpdate, DenseDtype, MaskKind
from fedmrn_pl.wire import UNUSED_NOISE, DenseEncoding, MaskEncoding, PayloadError, decode_update, encode_update

from .base import FederatedCallback, FederatedRun

__all__ = ["MaskPacking"]

_EXACT_INTEGERS = 1 << 53  # integers float64 represents exactly


class MaskPacking(FederatedCallback):
    """Pack each client's update into a payload (entropy-coded or packed masks + dense tensors), and unpack it on the server.

    Args:
        dense_dtype: how dense float tensors travel, "float32" or "float16".
        mask_encoding: "coded" entropy-codes each mask where that is shorter, "packed"
            sends 8 mask bits per byte; both decode to the same masks.
        save_dir: if set, every payload is also written there as
            ``round_RRRR_client_CCCC.fmrn`` (inspect with ``fedmrn-pl inspect``).
        dense_encoding: "deflate" deflates each dense tensor by byte plane where that is
            shorter, "raw" sends raw bytes; both decode to the same values.
    """

    def __init__(
        self,
        dense_dtype: str = "float32",
        save_dir: str | Path | None = None,
        mask_encoding: str = "coded",
        dense_encoding: str = "deflate",
    ) -> None:
        self.dense_dtype = DenseDtype.parse(dense_dtype, "dense_dtype")
        self.mask_encoding = MaskEncoding.parse(mask_encoding, "mask_encoding")
        self.dense_encoding = DenseEncoding.parse(dense_encoding, "dense_encoding")
        self.save_dir = None if save_dir is None else Path(save_dir)

    def on_client_fit_end(self, trainer: FederatedRun, result: FitResult) -> None:
        """Client side: encode ``result.update`` into ``result.payload``; only the bytes go on."""
        if result.update is None:
            return
        # float32: each dense tensor in its own dtype; float16: every floating one as float16.
        dense_dtype = None if self.dense_dtype is DenseDtype.float32 else self.dense_dtype.value
        result.payload = encode_update(
            result.update, dense_dtype=dense_dtype, mask_encoding=self.mask_encoding, dense_encoding=self.dense_encoding
        )
        result.update = None
        if self.save_dir is not None:  # whole or not at all: a full disk raises SaveError, leaving no partial file
            name = f"round_{result.server_round:04d}_client_{result.client_id:04d}.fmrn"
            with atomic_write(self.save_dir / name) as handle:
                handle.write(result.payload)

    def dense_encodings(self, dtype: torch.dtype) -> tuple[str, ...]:
        """The wire encodings this packer sends a dense tensor of ``dtype`` in (what the server accepts)."""
        if not dtype.is_floating_point:
            return ("int64",)
        own = str(dtype).removeprefix("torch.")
        return (own,) if self.dense_dtype is DenseDtype.float32 else (self.dense_dtype.value,)

    def unpack(self, trainer: FederatedRun, result: FitResult) -> ClientUpdate:
        """Server side: the update in ``result.payload``, validated against what the server issued and holds.

        Raises:
            PayloadError: the payload is missing, malformed, or disagrees with the
                request (client, seed, sample count) or the run (mask kind, noise).
        """
        if result.payload is None:
            raise PayloadError("the client sent no payload (is MaskPacking among the callbacks?)")
        request = result.request
        update = decode_update(
            result.payload,
            trainer.expected_manifest,
            server_round=request.server_round,
            max_bytes=trainer.max_payload_bytes,
        )
        if update.client_id != request.client_id:
            raise PayloadError(f"payload is from client {update.client_id}, expected client {request.client_id}")
        if update.seed != request.seed:
            raise PayloadError(f"payload seed {update.seed} differs from the seed issued to the client ({request.seed})")
        if update.num_examples != request.num_examples:
            # The aggregation weight is the server's own count, never a client's claim.
            raise PayloadError(
                f"payload claims {update.num_examples} training examples, the client holds {request.num_examples}"
            )
        masking = trainer.masking
        if masking is None:  # dense, baselines, FedPM: masks, if any, are FedPM's binary ones and select from no noise
            with_masks = any(spec.role == "mask" for spec in trainer.expected_manifest.values())
            kind = MaskKind.binary.value if with_masks else DENSE_KIND
            noise, unused = UNUSED_NOISE, " (unused: this run's payloads all carry that one value)"
        else:
            kind, noise, unused = masking.kind, masking.noise, ""
        if update.mask_kind != kind:
            raise PayloadError(f"payload mask kind {update.mask_kind!r} differs from the run's {kind!r}")
        for field in ("family", "alpha"):
            sent, run_value = getattr(update.noise, field), getattr(noise, field)
            if sent != run_value:
                raise PayloadError(f"payload noise {field} {sent!r} differs from the run's {run_value!r}{unused}")
        issued = {name: trainer.issued_noise_scales[name] for name in update.masks if name in trainer.issued_noise_scales}
        if update.noise_scales != issued:
            wrong = sorted(n for n in set(update.noise_scales) | set(issued) if update.noise_scales.get(n) != issued.get(n))
            raise PayloadError(
                f"payload noise scales differ from those issued for this round at {wrong[:3]}: "
                f"sent {[update.noise_scales.get(n) for n in wrong[:3]]}, issued {[issued.get(n) for n in wrong[:3]]} "
                "(None: the run's alpha)"
            )
        for name, tensor in update.dense.items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise PayloadError(f"tensor {name!r} has non-finite values")
            # Integer buffers are averaged in float64: beyond 2**53 they would no longer be exact.
            if not tensor.is_floating_point() and tensor.numel() and not -_EXACT_INTEGERS <= int(tensor.min()) <= int(tensor.max()) <= _EXACT_INTEGERS:
                raise PayloadError(f"integer tensor {name!r} holds values beyond +-2**53, which cannot be averaged exactly")
        return update
