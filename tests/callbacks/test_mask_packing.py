"""MaskPacking: the mask_encoding option reaches the wire, and both encodings carry the same update."""

import pytest
import torch

from fedmrn_pl.callbacks import MaskPacking
from fedmrn_pl.messages import FitRequest, FitResult
from fedmrn_pl.update import ClientUpdate, NoiseSpec
from fedmrn_pl.wire import PayloadError, decode_update, describe_payload


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


# ----------------------------------------------------------------------------- the run's noise, on the server


def _run(masks: dict, dense: dict, masking=None, compressed: dict | None = None):
    """The narrow view of a run that ``MaskPacking.unpack`` reads."""
    from types import SimpleNamespace

    from fedmrn_pl.wire import DEFAULT_MAX_BYTES, expected_manifest

    shapes = {name: tuple(t.shape) for name, t in dense.items()}
    return SimpleNamespace(
        expected_manifest=expected_manifest({n: tuple(t.shape) for n, t in masks.items()}, shapes, compressed=compressed),
        max_payload_bytes=DEFAULT_MAX_BYTES,
        masking=masking,
        issued_noise_scales={},
    )


def _sent(update: ClientUpdate, family: int | None = None, alpha: float | None = None) -> FitResult:
    """``update``'s payload as a client would send it, with the header's noise family code or alpha rewritten (resealed)."""
    import struct

    from fedmrn_pl.wire import encode_update
    from fedmrn_pl.wire.layout import checksum

    content = bytearray(encode_update(update)[:-16])
    if family is not None:
        content[33] = family
    if alpha is not None:
        struct.pack_into("<d", content, 34, alpha)
    request = FitRequest(update.server_round, update.client_id, update.num_examples, update.seed)
    return FitResult(request, payload=bytes(content) + checksum(bytes(content)))


GAUSS = 1


def _fedpm_update(noise: NoiseSpec = NoiseSpec()) -> ClientUpdate:
    gen = torch.Generator().manual_seed(4)
    return ClientUpdate(2, 5, 11, "binary", noise, 30, {"fc.weight": torch.rand(40, 30, generator=gen) < 0.1},
                        {"fc.bias": torch.randn(40, generator=gen)})  # fmt: skip


def test_a_fedpm_payload_must_carry_the_unused_noise_the_run_issued():
    """FedPM's masks select from no noise: its header's noise family and alpha have one valid value, NoiseSpec()'s."""
    update = _fedpm_update()
    run = _run(update.masks, update.dense)  # no FedMRN masking: FedPM
    assert MaskPacking().unpack(run, _sent(update)).masks["fc.weight"].equal(update.masks["fc.weight"])
    with pytest.raises(PayloadError, match=r"payload noise family 'gauss' differs from the run's 'uniform' \(unused"):
        MaskPacking().unpack(run, _sent(_fedpm_update(NoiseSpec("gauss", 0.01))))  # coded by kernel phase, valid otherwise
    with pytest.raises(PayloadError, match=r"payload noise alpha 0.02 differs from the run's 0.01 \(unused"):
        MaskPacking().unpack(run, _sent(update, alpha=0.02))


@pytest.mark.parametrize(("family", "alpha", "words"), [(GAUSS, None, "noise family is 'gauss', expected 'uniform'"),
                                                        (None, 1e-3, "noise alpha is 0.001, expected 0.01")])  # fmt: skip
def test_dense_and_baseline_payloads_must_carry_the_unused_noise(family, alpha, words):
    from fedmrn_pl.compressed import SignScale

    dense = {"fc.bias": torch.ones(4)}
    fedavg = ClientUpdate(2, 5, 11, "none", NoiseSpec(), 30, dense=dense)
    baseline = ClientUpdate(2, 5, 11, "none", NoiseSpec(), 30, dense=dense,
                            compressed={"fc.weight": SignScale(torch.ones(4, 3, dtype=torch.bool), 0.5)})  # fmt: skip
    for update, run in ((fedavg, _run({}, dense)), (baseline, _run({}, dense, compressed={"fc.weight": ("sign_scale", (4, 3))}))):
        assert MaskPacking().unpack(run, _sent(update)).noise == NoiseSpec()
        with pytest.raises(PayloadError, match=words):
            MaskPacking().unpack(run, _sent(update, family, alpha))


def test_a_fedmrn_payload_must_carry_the_runs_noise_family_and_alpha():
    from types import SimpleNamespace

    update = _fedpm_update(NoiseSpec("uniform", 0.05))
    run = _run(update.masks, update.dense, masking=SimpleNamespace(kind="binary", noise=NoiseSpec("uniform", 0.05)))
    assert MaskPacking().unpack(run, _sent(update)).noise == NoiseSpec("uniform", 0.05)
    with pytest.raises(PayloadError, match=r"payload noise alpha 0.06 differs from the run's 0.05$"):
        MaskPacking().unpack(run, _sent(update, alpha=0.06))
    signed = _run(update.masks, update.dense, masking=SimpleNamespace(kind="signed", noise=update.noise))
    with pytest.raises(PayloadError, match=r"payload mask kind 'binary' differs from the run's 'signed'"):
        MaskPacking().unpack(signed, _sent(update))
