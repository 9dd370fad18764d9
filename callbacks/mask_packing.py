"""Mask packing: each client's update becomes the bytes it uploads."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fedmrn_pl.config import DENSE_DTYPES
from fedmrn_pl.wire import encode_update
from fedmrn_pl.wire.format import MASK_ENCODING_OPTIONS

from .base import FederatedCallback

if TYPE_CHECKING:
    from fedmrn_pl.federated.job import ClientJob
    from fedmrn_pl.federated.trainer import FederatedTrainer

__all__ = ["DENSE_DTYPES", "MaskPacking"]


class MaskPacking(FederatedCallback):
    """Encode ``job.result.update`` to a wire payload (entropy-coded or packed masks + dense tensors).

    Args:
        dense_dtype: how dense float tensors travel, "float32" or "float16".
        mask_encoding: "coded" entropy-codes each mask where that is shorter, "packed"
            sends 8 mask bits per byte; both decode to the same masks.
        save_dir: if set, every payload is also written there as
            ``round_RRRR_client_CCCC.fmrn`` (inspect with ``fedmrn-pl inspect``).
    """

    def __init__(
        self, dense_dtype: str = "float32", save_dir: str | Path | None = None, mask_encoding: str = "coded"
    ) -> None:
        if dense_dtype not in DENSE_DTYPES:
            raise ValueError(f"dense_dtype {dense_dtype!r} is not valid; choose one of {list(DENSE_DTYPES)}")
        if mask_encoding not in MASK_ENCODING_OPTIONS:
            raise ValueError(
                f"mask_encoding {mask_encoding!r} is not valid; choose one of {list(MASK_ENCODING_OPTIONS)}"
            )
        self.dense_dtype = dense_dtype
        self.mask_encoding = mask_encoding
        self.save_dir = None if save_dir is None else Path(save_dir)

    def on_client_fit_end(self, trainer: FederatedTrainer, job: ClientJob) -> None:
        if job.result is None:
            return
        job.payload = encode_update(
            job.result.update,
            dense_dtype=None if self.dense_dtype == "float32" else self.dense_dtype,
            mask_encoding=self.mask_encoding,
        )
        if self.save_dir is not None:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            (self.save_dir / f"round_{job.server_round:04d}_client_{job.client_id:04d}.fmrn").write_bytes(job.payload)
