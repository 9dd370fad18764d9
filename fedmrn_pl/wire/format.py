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

import torch

from fedmrn_pl.compressed import CompressedTensor
from fedmrn_pl.update import ClientUpdate, DenseDtype
from fedmrn_pl.wire.choices import MaskEncoding
from fedmrn_pl.wire.dense_coding import DenseEncoding, check_deflated, deflate_planes, inflate_planes
from fedmrn_pl.wire.encodings import DENSE, DENSE_DTYPES, ENCODINGS, MASK, ROLES, BodyContext, Encoding, dtype_name
from fedmrn_pl.wire.errors import PayloadError
from fedmrn_pl.wire.layout import (
    CHECKSUM_SIZE,
    DEFLATED,
    ENCODING_NDIM,
    FORMAT_VERSION,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    MASK_EXTRAS,
    MASK_KIND_CODES,
    MAX_NAME_BYTES,
    MAX_NDIM,
    MAX_NUMEL,
    NAME_LEN,
    NOISE_FAMILY_CODES,
    UINT64,
    UINT64_LIMIT,
    UNUSED_NOISE,
    checksum,
    extent,
)
from fedmrn_pl.wire.mask_coding import MAX_ELEMENTS_PER_BYTE
from fedmrn_pl.wire.parse import Header, ManifestEntry, ParsedPayload, parse_payload

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

DEFAULT_MAX_BYTES = 1 << 31  # the largest payload a server reads unless told otherwise
_MASK_FORMS = tuple(encoding for encoding in ENCODINGS.values() if encoding.role == MASK)  # packed first: wins ties
_COMPRESSED_FORMS = tuple(encoding for encoding in ENCODINGS.values() if encoding.value_type is not None)
_DENSE_TORCH_DTYPES = {encoding.dtype for encoding in ENCODINGS.values() if encoding.role == DENSE}


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
    values = {**update.masks, **update.dense, **update.compressed}
    names = sorted(values, key=_name_bytes)  # UTF-8 byte order, what the reader checks
    manifest, bodies = [], []
    for name in names:
        if name in update.masks:
            encoding, body = _mask_body(update, name, mask_encoding)
        elif name in update.compressed:
            encoding, body = _compressed_body(update, name)
        else:
            encoding, body = _dense_body(update, name, dense_dtype)
        deflated = False
        if deflate and encoding.dtype is not None and body:
            coded = deflate_planes(body, encoding.dtype.itemsize)
            deflated = len(coded) < len(body)
            body = coded if deflated else body
        extras = _mask_extras(update, name) if encoding.role == MASK else b""
        shape = encoding.shape_of(values[name])
        manifest.append(_manifest_entry(name, encoding, shape, len(body), deflated) + extras)
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


def _manifest_entry(name: str, encoding: Encoding, shape: tuple[int, ...], size: int, deflated: bool) -> bytes:
    """One manifest entry's bytes."""
    if len(shape) > MAX_NDIM:
        raise ValueError(f"tensor {name!r} has {len(shape)} dims, the wire format allows at most {MAX_NDIM}")
    if extent(shape) > MAX_NUMEL:
        raise ValueError(f"tensor {name!r} has shape {shape}, larger than the limit of {MAX_NUMEL} elements")
    raw = _name_bytes(name)
    return b"".join([
        NAME_LEN.pack(len(raw)),
        raw,
        ENCODING_NDIM.pack(encoding.code | (DEFLATED if deflated else 0), len(shape)),
        *(UINT64.pack(dim) for dim in shape),
        UINT64.pack(size),
    ])  # fmt: skip


def _mask_body(update: ClientUpdate, name: str, mask_encoding: str) -> tuple[Encoding, bytes]:
    """``(encoding, body)`` of one mask: the shortest form offered, packed on a tie, so the choice is canonical.

    Packed is always offered; ``"coded"`` offers too the coded form that fits the header's noise
    (per noise context over uniform noise, per kernel position otherwise), so the reader can check it.
    """
    mask = update.masks[name]
    at = BodyContext(name, tuple(mask.shape), update.seed, update.noise)
    offered = [encoding for encoding in _MASK_FORMS
               if encoding.for_noise is None or (mask_encoding == "coded" and encoding.for_noise(update.noise))]
    return min(((encoding, encoding.encode(mask, at)) for encoding in offered), key=lambda pair: len(pair[1]))


def _compressed_body(update: ClientUpdate, name: str) -> tuple[Encoding, bytes]:
    """``(encoding, body)`` of a baseline's tensor: the encoding written for its dataclass."""
    value = update.compressed[name]
    for encoding in _COMPRESSED_FORMS:
        if isinstance(value, encoding.value_type):
            at = BodyContext(name, encoding.shape_of(value), update.seed, update.noise)
            return encoding, encoding.encode(value, at)
    kinds = " or ".join(encoding.value_type.__name__ for encoding in _COMPRESSED_FORMS)
    raise TypeError(f"compressed tensors must be {kinds}, got {type(value).__name__}")


def _dense_body(update: ClientUpdate, name: str, dense_dtype: str | None) -> tuple[Encoding, bytes]:
    """``(encoding, little-endian raw bytes)`` of one dense tensor."""
    tensor = update.dense[name]
    if tensor.dtype not in _DENSE_TORCH_DTYPES:
        raise ValueError(f"dense tensor {name!r} has dtype {tensor.dtype}; the wire format sends {list(DENSE_DTYPES)}")
    encoding = ENCODINGS[dense_dtype if dense_dtype and tensor.is_floating_point() else dtype_name(tensor.dtype)]
    return encoding, encoding.encode(tensor, BodyContext(name, tuple(tensor.shape), update.seed, update.noise))


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
    masks, compressed, dense = read = ({}, {}, {})  # in this order, so the first error is describe_payload's too
    for entry in sorted(parsed.entries, key=_decode_order):
        read[_decode_order(entry)][entry.name] = _read_body(parsed, entry)
    try:
        mask_entries = [e for e in parsed.entries if e.role == MASK]
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
        role = entry.role
        if role != spec.role:
            raise PayloadError(f"tensor {name!r} is sent as {role} but the server expects {spec.role}")
        if entry.shape != spec.shape:
            raise PayloadError(f"tensor {name!r} has shape {entry.shape}, expected {spec.shape}")
        if role == DENSE and spec.dtypes and entry.encoding not in spec.dtypes:
            raise PayloadError(f"tensor {name!r} is sent as {entry.encoding}, the server accepts {list(spec.dtypes)}")


def _decode_order(entry: ManifestEntry) -> int:
    """Masks are read first, then compressed tensors, then dense ones (0, 1, 2).

    :func:`describe_payload` checks bodies in this order too, so both report the same first error.
    """
    return 0 if entry.role == MASK else 2 if entry.role == DENSE else 1


def _context(header: Header, entry: ManifestEntry) -> BodyContext:
    """What a codec may need besides the body, from the payload's header and the tensor's entry."""
    return BodyContext(entry.name, entry.shape, header.seed, header.noise)


def _check_form(header: Header, encoding: Encoding) -> None:
    """A coded mask must take the coded form the header's noise calls for (packed is always allowed)."""
    if encoding.for_noise is not None and not encoding.for_noise(header.noise):
        expected = " or ".join(form.name for form in _MASK_FORMS if form.for_noise and form.for_noise(header.noise))
        raise PayloadError(f"is {encoding.name} but masks over {header.noise.family} noise are sent as {expected}")


def _read_body(parsed: ParsedPayload, entry: ManifestEntry) -> torch.Tensor | CompressedTensor:
    """Decode one tensor body into a value that owns its memory (its length already checked)."""
    encoding = ENCODINGS[entry.encoding]
    body = parsed.view[entry.offset : entry.offset + entry.size]
    try:
        _check_form(parsed.header, encoding)
        if entry.deflated:
            body = inflate_planes(body, encoding.dtype.itemsize, encoding.raw_size(entry.shape))
        return encoding.decode(body, _context(parsed.header, entry))
    except PayloadError as err:
        raise PayloadError(f"tensor {entry.name!r}: {err}") from err


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
    masks = [entry for entry in parsed.entries if entry.role == MASK]
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
    declared = sum(entry.numel for entry in parsed.entries if ENCODINGS[entry.encoding].counts_elements)
    size = len(parsed.view)
    limit = MAX_ELEMENTS_PER_BYTE * size if max_elements is None else max_elements
    if declared > limit:
        if max_elements is None:
            raise PayloadError(
                f"its tensors declare {declared} elements, more than any valid payload of {size} bytes holds "
                f"({limit}: {MAX_ELEMENTS_PER_BYTE} per byte, a coded mask's best case)"
            )
        raise PayloadError(f"its tensors declare {declared} elements, more than max_elements={limit}")


def _check_body(parsed: ParsedPayload, entry: ManifestEntry) -> int | None:
    """Run :func:`decode_update`'s checks on one body without holding its tensor; a mask's number of ones."""
    encoding = ENCODINGS[entry.encoding]
    body = parsed.view[entry.offset : entry.offset + entry.size]
    try:
        _check_form(parsed.header, encoding)
        if entry.deflated:  # dense values: any inflated bytes are valid ones
            check_deflated(body, encoding.raw_size(entry.shape))
            return None
        return encoding.check(body, _context(parsed.header, entry))
    except PayloadError as err:
        raise PayloadError(f"tensor {entry.name!r}: {err}") from err


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
    if entry.role == MASK:
        row["ones_fraction"] = ones / entry.numel if entry.numel else 0.0
        row["bits_per_element"] = 8 * entry.size / entry.numel if entry.numel else 0.0
        row["noise_scale"] = entry.noise_scale
        row["update_rms"] = entry.update_rms
    return row
