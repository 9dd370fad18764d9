"""The encoding table: what every record must hold so that the format stays canonical and decodable."""

from __future__ import annotations

import pytest
import torch

from fedmrn_pl.update import NoiseFamily, NoiseSpec
from fedmrn_pl.wire import TensorSpec
from fedmrn_pl.wire.encodings import DENSE, DENSE_DTYPES, ENCODINGS, MASK, ROLES, dtype_name
from fedmrn_pl.wire.layout import DEFLATED


def test_codes_are_the_format_s_own_distinct_and_below_the_deflated_bit():
    codes = {name: encoding.code for name, encoding in ENCODINGS.items()}
    assert codes == {"mask": 0, "float32": 1, "float16": 2, "int64": 3, "coded_mask": 4, "sign_scale": 5,
                     "sparse": 6, "noise_coded_mask": 7}  # fmt: skip
    assert list(codes.values()) == sorted(set(codes.values()))  # the table lists them in code order
    assert max(codes.values()) < DEFLATED


def test_roles_follow_from_the_table_and_are_what_tensor_specs_accept():
    assert ROLES == ("mask", "dense", "sign_scale", "sparse")
    assert DENSE_DTYPES == ("float32", "float16", "int64")
    for role in ROLES:
        assert TensorSpec((2,), role).role == role
    with pytest.raises(ValueError, match="choose one of"):
        TensorSpec((2,), "coded_mask")


@pytest.mark.parametrize("family", NoiseFamily.values())
def test_exactly_one_coded_mask_form_fits_each_noise_so_a_mask_has_one_valid_body(family):
    noise = NoiseSpec(family, 0.1)
    masks = [encoding for encoding in ENCODINGS.values() if encoding.role == MASK]
    assert [encoding.name for encoding in masks if encoding.for_noise is None] == ["mask"]  # packed: always
    assert len([encoding for encoding in masks if encoding.for_noise and encoding.for_noise(noise)]) == 1


def test_dense_encodings_and_only_they_carry_a_dtype_and_compressed_ones_a_dataclass():
    for encoding in ENCODINGS.values():
        assert (encoding.dtype is not None) == (encoding.role == DENSE)
        assert (encoding.value_type is not None) == (encoding.role not in (MASK, DENSE))
    types = [encoding.value_type for encoding in ENCODINGS.values() if encoding.value_type is not None]
    assert len(set(types)) == len(types)  # a writer picks the encoding by the value's type


def test_dtype_name_accepts_the_dense_encodings_only():
    assert dtype_name(torch.float16) == dtype_name("float16") == "float16"
    with pytest.raises(ValueError, match=r"dense dtype torch.bfloat16 cannot be sent; choose one of \['float32'"):
        dtype_name(torch.bfloat16)
