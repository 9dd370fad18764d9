"""Encode a :class:`ClientUpdate` to bytes and decode it back, validating everything.

The layout is documented in :mod:`fedmrn_pl.wire.layout`. Encoding is deterministic
(tensors in sorted-name order, no timestamps) and canonical except for deflated dense
bodies: a payload that decodes re-encodes, with the same ``mask_encoding``, to the very
same bytes; a deflated body is any DEFLATE stream of the tensor's bytes (see ``dense_coding``). Decoding checks sizes, magic, version and checksum, then the header and
manifest, then the manifest against the server's model, all before a tensor is
allocated; every violation raises :class:`PayloadError`.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from fedmrn_pl.compressed import SignScale, Sparse
from fedmrn_pl.update import ClientUpdate, DenseDtype
from fedmrn_pl.wire.bits import count_packed_ones, pack_bits, unpack_bits
from fedmrn_pl.wire.errors import PayloadError
from fedmrn_pl.wire.layout import (
    CHECKSUM_SIZE,
    COMPRESSED_ENCODINGS,
    DEFLATED,
    ENCODING_CODES,
    ENCODING_NDIM,
    FORMAT_VERSION,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    MASK_ENCODINGS,
    MASK_EXTRAS,
    MASK_KIND_CODES,
    MAX_NAME_BYTES,
    MAX_NDIM,
    MAX_NUMEL,
    NAME_LEN,
    NOISE_FAMILY_CODES,
    TORCH_DTYPES,
    UINT64,
    UINT64_LIMIT,
    UNUSED_NOISE,
    WIRE_NUMPY_DTYPES,
    body_size,
    checksum,
    dtype_name,
    extent,
)
from fedmrn_pl.wire.choices import MaskEncoding
from fedmrn_pl.wire.context_coding import noise_context_chunks, noise_contexts, uses_contexts
from fedmrn_pl.wire.dense_coding import DenseEncoding, check_deflated, deflate_planes, inflate_planes
from fedmrn_pl.wire.mask_coding import (
    MAX_ELEMENTS_PER_BYTE,
    count_mask_ones,
    count_ones_in_contexts,
    decode_in_contexts,
    decode_mask,
    encode_in_contexts,
    encode_mask,
)
from fedmrn_pl.wire.parse import Header, ManifestEntry, ParsedPayload, parse_payload
from fedmrn_pl.wire.value_coding import (
    check_sign_scale,
    decode_sign_scale,
    decode_sparse,
    encode_sign_scale,
    encode_sparse,
)

__all__ = [
    "DenseEncoding",
    "MaskEncoding",
    "ROLES",
    "TensorSpec",
    "decode_update",
    "describe_payload",
    "encode_update",
    "expected_manifest",
]

ROLES = ("mask", "dense", "sign_scale", "sparse")


DEFAULT_MAX_BYTES = 1 << 31  # the largest payload a server reads unless told otherwise


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """What the server expects of one tensor in a payload.

    ``role`` is ``"mask"`` (a packed or coded bool mask), ``"dense"`` (raw values), or a
    baseline's ``"sign_scale"`` / ``"sparse"`` (see ``fedmrn_pl.compressed``);
    ``dtypes`` lists the encodings a dense tensor may travel in (empty: any dense one).
    """

    shape: tuple[int, ...]
    role: str
    dtypes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"tensor role {self.role!r} is not valid; choose one of {list(ROLES)}")
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "dtypes", tuple(self.dtypes))


def expected_manifest(
    masks: Mapping[str, Sequence[int]],
    dense: Mapping[str, Sequence[int]],
    dense_dtypes: Mapping[str, Sequence[str]] | None = None,
    compressed: Mapping[str, tuple[str, Sequence[int]]] | None = None,
) -> dict[str, TensorSpec]:
    """Build the ``expected`` argument of :func:`decode_update` from ``{name: shape}`` maps.

    ``dense_dtypes`` gives, per dense tensor, the encodings it may use (e.g. the run's
    dense dtype for float tensors, ``("int64",)`` for integer buffers); unlisted: any.

    Raises:
        ValueError: if a name is both a mask and dense.
    """
    overlap = sorted(set(masks) & set(dense))
    if overlap:
        raise ValueError(f"tensors cannot be both masked and dense: {overlap}")
    overlap = sorted(set(compressed or {}) & (set(masks) | set(dense)))
    if overlap:
        raise ValueError(f"compressed tensors cannot also be masks or dense: {overlap}")
    allowed = dense_dtypes or {}
    specs = {name: TensorSpec(tuple(shape), "mask") for name, shape in masks.items()}
    specs.update({name: TensorSpec(tuple(shape), "dense", tuple(allowed.get(name, ()))) for name, shape in dense.items()})
    specs.update({name: TensorSpec(tuple(shape), role) for name, (role, shape) in (compressed or {}).items()})
    return specs


# --------------------------------------------------------------------------- encode


def encode_update(
    update: ClientUpdate, *, dense_dtype: str | None = None, mask_encoding: str = "coded", dense_encoding: str = "deflate"
) -> bytes:
    """Serialise ``update`` to the uplink payload (no pickle).

    Args:
        update: the client's update; tensors may live on any device, in any layout.
        dense_dtype: ``None`` sends dense tensors in their own dtype; ``"float16"`` (or
            ``"float32"``) sends every floating dense tensor in that dtype. Integer
            buffers are always sent as int64.
        mask_encoding: ``"coded"`` entropy-codes each mask whose coded body is shorter
            than its packed one and packs the others (over uniform noise by noise context,
            which the reader regenerates from the header, else by kernel position);
            ``"packed"`` packs every mask 8 per byte. Both decode to the same bits.
        dense_encoding: ``"deflate"`` deflates each dense body by byte plane where that
            is shorter and sends the others raw; ``"raw"`` sends every one raw. Lossless.

    Returns:
        The payload bytes, identical for identical updates.

    Raises:
        ValueError: if a field is out of range (ints must fit uint64), a tensor has
            an unsupported dtype, too many dims, or a name that is empty or too long,
            or the update itself is inconsistent (see :class:`ClientUpdate`).
        TypeError: if a mask is not a bool tensor.
    """
    if dense_dtype is not None:
        dense_dtype = DenseDtype.parse(dense_dtype, "dense_dtype").value
    mask_encoding = MaskEncoding.parse(mask_encoding, "mask_encoding")
    deflate = DenseEncoding.parse(dense_encoding, "dense_encoding") is DenseEncoding.deflate
    dataclasses.replace(update)  # re-runs ClientUpdate's checks, in case its dicts changed since
    if update.mask_kind == "none" and update.noise != UNUSED_NOISE:
        raise ValueError(
            f"update.noise is {update.noise}, expected {UNUSED_NOISE}: an update without masks (mask kind 'none') "
            "selects from no noise, and its payload carries the unused noise"
        )
    shapes = {name: tuple(t.shape) for name, t in {**update.masks, **update.dense}.items()}
    shapes.update({name: _compressed_shape(t) for name, t in update.compressed.items()})
    names = sorted(shapes, key=_name_bytes)  # UTF-8 byte order, what the reader checks
    manifest, bodies = [], []
    for name in names:
        deflated = False
        if name in update.masks:
            encoding, body = _mask_body(update, name, mask_encoding)
        elif name in update.compressed:
            encoding, body = _compressed_body(update.compressed[name])
        else:
            encoding, body = _dense_body(name, update.dense[name], dense_dtype)
            if deflate and body:
                coded = deflate_planes(body, TORCH_DTYPES[encoding].itemsize)
                deflated = len(coded) < len(body)
                body = coded if deflated else body
        extras = _mask_extras(update, name) if name in update.masks else b""
        manifest.append(_manifest_entry(name, encoding, shapes[name], len(body), deflated) + extras)
        bodies.append(body)
    manifest_bytes = b"".join(manifest)
    header = HEADER.pack(
        MAGIC,
        FORMAT_VERSION,
        0,  # flags
        _uint64(update.server_round, "server_round"),
        _uint64(update.client_id, "client_id"),
        _uint64(update.seed, "seed"),
        MASK_KIND_CODES[update.mask_kind],
        NOISE_FAMILY_CODES[update.noise.family],
        float(update.noise.alpha),
        _uint64(update.num_examples, "num_examples"),
        len(names),
        len(manifest_bytes),
    )
    content = b"".join([header, manifest_bytes, *bodies])
    return content + checksum(content)


def _mask_extras(update: ClientUpdate, name: str) -> bytes:
    """A mask entry's noise scale (0.0: the header's alpha) and update RMS, as float32.

    The scale a client trained with must be the one the server regenerates the noise at,
    so a per-tensor scale must be a float32 value from the start (``masking.as_wire_scale``).
    """
    scale = float(update.noise_scales.get(name, 0.0))
    rms = float(update.update_rms.get(name, 0.0))
    packed = MASK_EXTRAS.pack(scale, min(rms, 3.0e38))
    if MASK_EXTRAS.unpack(packed)[0] != scale:
        raise ValueError(
            f"noise scale {scale!r} of mask {name!r} is not a float32 value; the server would regenerate "
            f"other noise (round it with fedmrn_pl.masking.as_wire_scale)"
        )
    return packed


def _uint64(value: int, field: str) -> int:
    """``value`` as a Python int, checked to fit the wire's uint64."""
    number = -1 if isinstance(value, bool) else operator.index(value)
    if not 0 <= number < UINT64_LIMIT:
        raise ValueError(f"update.{field} must be an int in [0, 2**64), got {value!r}")
    return number


def _name_bytes(name: str) -> bytes:
    """A tensor name's UTF-8 bytes, checked to be non-empty and to fit a uint16 length."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"tensor names must be non-empty strings, got {name!r}")
    raw = name.encode("utf-8")
    if len(raw) > MAX_NAME_BYTES:
        raise ValueError(f"tensor name {name[:40]!r}... is {len(raw)} bytes as UTF-8, the limit is {MAX_NAME_BYTES}")
    return raw


def _manifest_entry(name: str, encoding: str, shape: tuple[int, ...], size: int, deflated: bool = False) -> bytes:
    """One manifest entry's bytes."""
    if len(shape) > MAX_NDIM:
        raise ValueError(f"tensor {name!r} has {len(shape)} dims, the wire format allows at most {MAX_NDIM}")
    if extent(shape) > MAX_NUMEL:
        raise ValueError(f"tensor {name!r} has shape {shape}, larger than the limit of {MAX_NUMEL} elements")
    raw = _name_bytes(name)
    return b"".join([
        NAME_LEN.pack(len(raw)),
        raw,
        ENCODING_NDIM.pack(ENCODING_CODES[encoding] | (DEFLATED if deflated else 0), len(shape)),
        *(UINT64.pack(dim) for dim in shape),
        UINT64.pack(size),
    ])  # fmt: skip


def _mask_body(update: ClientUpdate, name: str, mask_encoding: str) -> tuple[str, bytes]:
    """``(encoding, body)`` of one mask: coded only when strictly shorter, so the choice is canonical.

    Over uniform noise the coded form is the noise-context one, otherwise per-kernel phases:
    the header decides which, so the reader can check it.
    """
    mask = update.masks[name]
    packed = pack_bits(mask)
    if mask_encoding == "coded":
        if uses_contexts(update.noise):
            contexts = noise_contexts(update.seed, name, mask.shape, update.noise)
            encoding, coded = "noise_coded_mask", encode_in_contexts(mask, contexts)
        else:
            encoding, coded = "coded_mask", encode_mask(mask)
        if len(coded) < len(packed):
            return encoding, coded
    return "mask", packed


def _compressed_shape(tensor: SignScale | Sparse) -> tuple[int, ...]:
    """The manifest shape of a compressed tensor: its bits', or the dense tensor's the values belong to."""
    return tuple(tensor.signs.shape) if isinstance(tensor, SignScale) else tensor.shape


def _compressed_body(tensor: SignScale | Sparse) -> tuple[str, bytes]:
    """``(encoding, body)`` of a baseline's tensor."""
    if isinstance(tensor, SignScale):
        return "sign_scale", encode_sign_scale(tensor)
    if isinstance(tensor, Sparse):
        return "sparse", encode_sparse(tensor)
    raise TypeError(f"compressed tensors must be SignScale or Sparse, got {type(tensor).__name__}")


def _dense_body(name: str, tensor: torch.Tensor, dense_dtype: str | None) -> tuple[str, bytes]:
    """``(encoding, little-endian raw bytes)`` of one dense tensor."""
    if tensor.dtype not in TORCH_DTYPES.values():
        raise ValueError(f"dense tensor {name!r} has dtype {tensor.dtype}; the wire format sends {list(TORCH_DTYPES)}")
    encoding = dense_dtype if dense_dtype and tensor.is_floating_point() else dtype_name(tensor.dtype)
    array = tensor.detach().to("cpu", TORCH_DTYPES[encoding]).contiguous().numpy()
    return encoding, array.astype(WIRE_NUMPY_DTYPES[encoding], copy=False).tobytes()


# --------------------------------------------------------------------------- decode


def decode_update(
    payload: bytes | bytearray | memoryview,
    expected: Mapping[str, TensorSpec] | None = None,
    *,
    server_round: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ClientUpdate:
    """Validate a payload and rebuild the client's update from it.

    Checks, in order and before allocating any tensor: the size limit, magic,
    version, minimum length, checksum, header fields, every manifest entry (bounds,
    ndim, body lengths, no trailing bytes), the tensors against ``expected``, and the
    round against ``server_round``.

    Args:
        payload: the received bytes.
        expected: ``{name: TensorSpec}`` of the server's model (see
            :func:`expected_manifest`); ``None`` accepts any names and shapes.
        server_round: the round the server is in; a payload from another round is
            refused. ``None`` skips the check.
        max_bytes: the largest payload accepted.

    Returns:
        The update; its tensors are new, writeable CPU tensors (bool masks, dense
        tensors in the dtype they were sent in).

    Raises:
        PayloadError: if anything is wrong, with a message saying what.
    """
    parsed = parse_payload(payload, max_bytes)
    header = parsed.header
    if expected is not None:
        _check_expected(parsed.entries, expected)
    if server_round is not None and header.server_round != server_round:
        when = "stale payload" if header.server_round < server_round else "wrong round: payload"
        raise PayloadError(f"{when}: round {header.server_round}, server is at round {server_round}")
    masks = {e.name: _read_body(parsed, e) for e in parsed.entries if e.encoding in MASK_ENCODINGS}
    compressed = {e.name: _read_compressed(parsed, e) for e in parsed.entries if e.encoding in COMPRESSED_ENCODINGS}
    dense = {e.name: _read_body(parsed, e) for e in parsed.entries
             if e.encoding not in MASK_ENCODINGS and e.encoding not in COMPRESSED_ENCODINGS}  # fmt: skip
    try:
        mask_entries = [e for e in parsed.entries if e.encoding in MASK_ENCODINGS]
        return ClientUpdate(header.server_round, header.client_id, header.seed, header.mask_kind, header.noise,
                            header.num_examples, masks, dense, compressed,
                            noise_scales={e.name: e.noise_scale for e in mask_entries if e.noise_scale},
                            update_rms={e.name: e.update_rms for e in mask_entries})  # fmt: skip
    except ValueError as err:  # parse_payload already rules these out; keep the contract anyway
        raise PayloadError(f"payload does not form a valid update: {err}") from err


def _check_expected(entries: Sequence[ManifestEntry], expected: Mapping[str, TensorSpec]) -> None:
    """Names, roles, shapes and dense dtypes of the manifest against the server's model."""
    sent = {entry.name: entry for entry in entries}
    unknown = sorted(set(sent) - set(expected))
    if unknown:
        label = f"tensor {unknown[0]!r}" if len(unknown) == 1 else f"tensors {unknown}"
        raise PayloadError(f"unknown {label}: not in the server's model")
    missing = sorted(set(expected) - set(sent))
    if missing:
        raise PayloadError(f"missing tensors {missing}: the server's model expects them")
    for name, entry in sent.items():
        spec = expected[name]
        role = _role(entry.encoding)
        if role != spec.role:
            raise PayloadError(f"tensor {name!r} is sent as {role} but the server expects {spec.role}")
        if entry.shape != spec.shape:
            raise PayloadError(f"tensor {name!r} has shape {entry.shape}, expected {spec.shape}")
        if role == "dense" and spec.dtypes and entry.encoding not in spec.dtypes:
            raise PayloadError(f"tensor {name!r} is sent as {entry.encoding}, the server accepts {list(spec.dtypes)}")


def _role(encoding: str) -> str:
    """The role (see :class:`TensorSpec`) a manifest encoding plays."""
    if encoding in MASK_ENCODINGS:
        return "mask"
    return encoding if encoding in COMPRESSED_ENCODINGS else "dense"


def _read_compressed(parsed: ParsedPayload, entry: ManifestEntry) -> SignScale | Sparse:
    """One baseline tensor out of the payload (its body length already checked)."""
    body = parsed.view[entry.offset : entry.offset + entry.size]
    try:
        if entry.encoding == "sign_scale":
            return decode_sign_scale(body, entry.shape)
        return decode_sparse(body, entry.shape)
    except PayloadError as err:
        raise PayloadError(f"tensor {entry.name!r}: {err}") from err


def _read_mask(header: Header, entry: ManifestEntry, body: memoryview) -> torch.Tensor:
    """Decode one mask body; its coded form must be the one the header's noise calls for."""
    _check_mask_form(header, entry)
    if entry.encoding == "mask":
        return unpack_bits(body, entry.shape)
    if entry.encoding == "coded_mask":
        return decode_mask(body, entry.shape)
    return decode_in_contexts(
        body, entry.shape, lambda: noise_contexts(header.seed, entry.name, entry.shape, header.noise)
    )


def _count_mask_ones(header: Header, entry: ManifestEntry, body: memoryview) -> int:
    """The ones of one mask body, checked as :func:`_read_mask` checks it, in memory that does not grow with it."""
    _check_mask_form(header, entry)
    if entry.encoding == "mask":
        return count_packed_ones(body, entry.shape)
    if entry.encoding == "coded_mask":
        return count_mask_ones(body, entry.shape)
    return count_ones_in_contexts(
        body, entry.shape, lambda: noise_context_chunks(header.seed, entry.name, entry.shape, header.noise)
    )


def _check_mask_form(header: Header, entry: ManifestEntry) -> None:
    """A coded mask must take the coded form the header's noise calls for (packed is always allowed)."""
    expected = "noise_coded_mask" if uses_contexts(header.noise) else "coded_mask"
    if entry.encoding not in ("mask", expected):
        raise PayloadError(f"is {entry.encoding} but masks over {header.noise.family} noise are sent as {expected}")


def _read_body(parsed: ParsedPayload, entry: ManifestEntry) -> torch.Tensor:
    """Copy one tensor body out of the payload into a tensor that owns its memory."""
    body = parsed.view[entry.offset : entry.offset + entry.size]
    if entry.encoding in MASK_ENCODINGS:
        try:
            return _read_mask(parsed.header, entry, body)
        except PayloadError as err:
            raise PayloadError(f"tensor {entry.name!r}: {err}") from err
    if entry.numel == 0:
        return torch.empty(entry.shape, dtype=TORCH_DTYPES[entry.encoding])
    if entry.deflated:
        try:
            body = inflate_planes(body, TORCH_DTYPES[entry.encoding].itemsize, body_size(entry.encoding, entry.shape))
        except PayloadError as err:
            raise PayloadError(f"tensor {entry.name!r}: {err}") from err
    wire = np.frombuffer(body, dtype=WIRE_NUMPY_DTYPES[entry.encoding])
    native = wire.astype(wire.dtype.newbyteorder("="))  # always a copy, native byte order
    return torch.from_numpy(native).reshape(entry.shape)


# --------------------------------------------------------------------------- inspect


def describe_payload(
    payload: bytes | bytearray | memoryview, *, max_bytes: int = DEFAULT_MAX_BYTES, max_elements: int | None = None
) -> dict:
    """Validate a payload as :func:`decode_update` does and summarise it as plain data, for ``fedmrn-pl inspect``.

    Every check ``decode_update`` makes without an expected manifest runs here too (every
    body is decoded: deflate streams, coded masks, sign scales, sparse indices ...), so a
    payload described is one the server decodes; only what needs the run (its model's shapes,
    what it issued) is left to the server. No mask or dense tensor is held whole: masks are
    counted, their noise drawn and deflated bodies inflated a chunk at a time, so memory stays
    a small multiple of the payload's size whatever shapes it declares; time grows with the
    elements declared, which ``max_elements`` bounds before any body is read.

    Args:
        payload: the bytes.
        max_bytes: the largest payload accepted.
        max_elements: the most elements its tensors may declare in all (a sparse tensor's
            zeros, never decoded, aside). ``None``: ``MAX_ELEMENTS_PER_BYTE`` (1716) per
            payload byte, the most any valid payload holds (a coded mask's best case), so
            only payloads the server would refuse anyway are refused by it.

    Returns:
        A dict of ints, floats, strings and lists: the header fields, ``total_bytes``,
        ``overhead_bytes`` (header + manifest + checksum), ``mask_bits_per_element``
        (mask body bits over masked elements, 1.0 when packed; 0.0 without masks),
        and per tensor its name, shape, encoding, numel, body bytes and, for masks,
        the fraction of ones and the body bits per element.

    Raises:
        PayloadError: if the payload is invalid, or declares more than ``max_elements``.
    """
    parsed = parse_payload(payload, max_bytes)
    header = parsed.header
    _check_declared_elements(parsed, max_elements)
    ones = {entry.name: _check_body(parsed, entry) for entry in sorted(parsed.entries, key=_decode_order)}
    masks = [entry for entry in parsed.entries if entry.encoding in MASK_ENCODINGS]
    mask_numel = sum(entry.numel for entry in masks)
    return {
        "format_version": header.version,
        "server_round": header.server_round,
        "client_id": header.client_id,
        "seed": header.seed,
        "mask_kind": header.mask_kind,
        "noise_family": header.noise.family,
        "noise_alpha": header.noise.alpha,
        "num_examples": header.num_examples,
        "total_bytes": len(parsed.view),
        "header_bytes": HEADER_SIZE,
        "manifest_bytes": header.manifest_bytes,
        "checksum_bytes": CHECKSUM_SIZE,
        "overhead_bytes": HEADER_SIZE + header.manifest_bytes + CHECKSUM_SIZE,
        "mask_bits_per_element": 8 * sum(entry.size for entry in masks) / mask_numel if mask_numel else 0.0,
        "tensors": [_describe_tensor(entry, ones[entry.name]) for entry in parsed.entries],
    }


def _check_declared_elements(parsed: ParsedPayload, max_elements: int | None) -> None:
    """The elements the tensors declare (sparse zeros aside) against ``max_elements`` or the payload's size."""
    declared = sum(entry.numel for entry in parsed.entries if entry.encoding != "sparse")
    size = len(parsed.view)
    limit = MAX_ELEMENTS_PER_BYTE * size if max_elements is None else max_elements
    if declared > limit:
        if max_elements is None:
            raise PayloadError(
                f"its tensors declare {declared} elements, more than any valid payload of {size} bytes holds "
                f"({limit}: {MAX_ELEMENTS_PER_BYTE} per byte, a coded mask's best case)"
            )
        raise PayloadError(f"its tensors declare {declared} elements, more than max_elements={limit}")


def _decode_order(entry: ManifestEntry) -> int:
    """Bodies in :func:`decode_update`'s order (masks, compressed, dense): both report the same first error."""
    return 0 if entry.encoding in MASK_ENCODINGS else 1 if entry.encoding in COMPRESSED_ENCODINGS else 2


def _check_body(parsed: ParsedPayload, entry: ManifestEntry) -> int | None:
    """Run :func:`decode_update`'s checks on one body without holding its tensor; a mask's number of ones."""
    body = parsed.view[entry.offset : entry.offset + entry.size]
    try:
        if entry.encoding in MASK_ENCODINGS:
            return _count_mask_ones(parsed.header, entry, body)
        if entry.encoding == "sign_scale":
            check_sign_scale(body, entry.shape)
        elif entry.encoding == "sparse":
            decode_sparse(body, entry.shape)  # values and indices: a few times the body, never the dense tensor
        elif entry.deflated and entry.numel:
            check_deflated(body, body_size(entry.encoding, entry.shape))
    except PayloadError as err:
        raise PayloadError(f"tensor {entry.name!r}: {err}") from err
    return None


def _describe_tensor(entry: ManifestEntry, ones: int | None) -> dict:
    """One tensor's row of :func:`describe_payload`."""
    row = {
        "name": entry.name,
        "shape": list(entry.shape),
        "encoding": entry.encoding,
        "numel": entry.numel,
        "body_bytes": entry.size,
        "deflated": entry.deflated,
    }
    if entry.encoding in MASK_ENCODINGS:
        row["ones_fraction"] = ones / entry.numel if entry.numel else 0.0
        row["bits_per_element"] = 8 * entry.size / entry.numel if entry.numel else 0.0
        row["noise_scale"] = entry.noise_scale
        row["update_rms"] = entry.update_rms
    return row
