"""MaskPacking: the mask_encoding option reaches the wire, and both encodings carry the same update."""

import pytest
import torch

from fedmrn_pl.callbacks import MaskPacking
from fedmrn_pl.messages import FitRequest, FitResult
from fedmrn_pl.update import ClientUpdate, NoiseSpec
from fedmrn_pl.wire import decode_update, describe_payload


def _job() -> FitResult:
    gen = torch.Generator().manual_seed(0)
    masks = {"conv.weight": torch.rand(32, 16, 3, 3, generator=gen) < 0.2}
    update = ClientUpdate(1, 3, 9, "binary", NoiseSpec(), 50, masks, {"bn.bias": torch.randn(32, generator=gen)})
    return FitResult(FitRequest(1, 3, 50, 9), update=update)


def _encodings(payload: bytes) -> list[str]:
    return [row["encoding"] for row in describe_payload(payload)["tensors"]]


def test_coded_is_the_default_and_packed_stays_available(tmp_path):
    coded, packed = _job(), _job()
    MaskPacking(save_dir=tmp_path).on_client_fit_end(None, coded)
    MaskPacking(mask_encoding="packed").on_client_fit_end(None, packed)
    assert _encodings(coded.payload) == ["float32", "noise_coded_mask"]  # uniform noise: coded by |n|
    assert _encodings(packed.payload) == ["float32", "mask"]
    assert coded.update is None and packed.update is None  # only the bytes go on to the server
    assert len(coded.payload) < len(packed.payload) - 100  # 20% ones: ~0.75 of the 576 mask bytes
    same = decode_update(coded.payload).masks["conv.weight"], decode_update(packed.payload).masks["conv.weight"]
    assert torch.equal(*same)
    assert (tmp_path / "round_0001_client_0003.fmrn").read_bytes() == coded.payload


def test_unknown_mask_encoding_is_refused_at_once():
    with pytest.raises(ValueError, match=r"mask_encoding 'lzma' is not valid; choose one of \['coded', 'packed'\]"):
        MaskPacking(mask_encoding="lzma")
