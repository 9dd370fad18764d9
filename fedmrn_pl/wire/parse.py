"""Read and validate a payload's header and manifest without touching the bodies.

Everything here is bounds-checked against the payload's real length before it is
used, so a hostile or corrupt payload can only ever cost a PayloadError, never a
large allocation or another exception type.
"""

from __future__ import annotations

import hmac
import math
import struct
from dataclasses import dataclass

from fedmrn_pl.update import NoiseSpec
from fedmrn_pl.wire.dense_coding import MAX_DEFLATE_RATIO
from fedmrn_pl.wire.encodings import ENCODINGS, MASK, Encoding
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
    MAX_NDIM,
    MAX_NUMEL,
    NAME_LEN,
    NOISE_FAMILY_CODES,
    UINT64,
    UNUSED_NOISE,
    checksum,
    extent,
)

__all__ = ["Header", "ManifestEntry", "ParsedPayload", "parse_payload"]

_VERSION = struct.Struct("<H")
_MASK_KINDS = {code: kind for kind, code in MASK_KIND_CODES.items()}
_NOISE_FAMILIES = {code: family for family, code in NOISE_FAMILY_CODES.items()}
_ENCODING_NAMES = {encoding.code: name for name, encoding in ENCODINGS.items()}


@dataclass(frozen=True)
class Header:
    """The decoded fixed header."""

    version: int
    server_round: int
    client_id: int
    seed: int
    mask_kind: str
    noise: NoiseSpec
    num_examples: int
    tensor_count: int
    manifest_bytes: int


@dataclass(frozen=True)
class ManifestEntry:
    """One tensor's manifest entry and where its body lies in the payload."""

    name: str
    encoding: str  # a name in ``ENCODINGS`` ("mask" is packed; "float32" ... are dense)
    shape: tuple[int, ...]
    offset: int
    size: int
    deflated: bool = False  # a dense body deflated by byte plane (see ``dense_coding``)
    noise_scale: float | None = None  # masks: the magnitude of the noise the mask selects from (0.0: header alpha)
    update_rms: float | None = None  # masks: RMS of the client's trained update for this tensor

    @property
    def numel(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def role(self) -> str:
        """What the tensor is to the server: its encoding's role (``"mask"``, ``"dense"``, a compressed kind)."""
        return ENCODINGS[self.encoding].role


@dataclass(frozen=True)
class ParsedPayload:
    """A validated header and manifest over the payload's bytes."""

    view: memoryview
    header: Header
    entries: tuple[ManifestEntry, ...]


class _Reader:
    """A cursor over ``view[pos:end]`` that refuses to read past ``end``."""

    def __init__(self, view: memoryview, pos: int, end: int, section: str) -> None:
        self.view, self.pos, self.end, self.section = view, pos, end, section

    def take(self, n: int, what: str) -> memoryview:
        """The next ``n`` bytes; PayloadError if the section has fewer left."""
        if n > self.end - self.pos:
            raise PayloadError(
                f"{self.section} truncated at byte {self.pos}: need {n} bytes for {what}, "
                f"only {self.end - self.pos} left"
            )
        chunk = self.view[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: struct.Struct, what: str) -> tuple:
        """The next ``fmt.size`` bytes unpacked with ``fmt``."""
        return fmt.unpack(self.take(fmt.size, what))


def parse_payload(payload: bytes | bytearray | memoryview, max_bytes: int) -> ParsedPayload:
    """Validate a payload's size, magic, version, checksum, header and manifest.

    Args:
        payload: the received bytes.
        max_bytes: payloads longer than this are refused before anything is read.

    Returns:
        The header and manifest; bodies are located but not read.

    Raises:
        PayloadError: on any violation of the format.
    """
    view = memoryview(payload).cast("B")
    if len(view) > max_bytes:
        raise PayloadError(f"payload of {len(view)} bytes exceeds the limit of {max_bytes} bytes")
    _check_preamble(view)
    header = _parse_header(view)
    manifest_end = HEADER_SIZE + header.manifest_bytes
    bodies_end = len(view) - CHECKSUM_SIZE
    if manifest_end > bodies_end:
        raise PayloadError(
            f"manifest length {header.manifest_bytes} runs past the end of the payload: "
            f"at most {bodies_end - HEADER_SIZE} bytes are left for manifest and bodies"
        )
    manifest = _Reader(view, HEADER_SIZE, manifest_end, "manifest")
    entries = _parse_manifest(manifest, header.tensor_count, body_start=manifest_end)
    _check_bodies_fit(entries, manifest_end, bodies_end)
    if header.mask_kind == "none" and any(e.role == MASK for e in entries):
        masked = [e.name for e in entries if e.role == MASK]
        raise PayloadError(f"mask kind 'none' (dense update) cannot carry mask tensors {masked}")
    if header.mask_kind == "none":
        _check_unused_noise(header.noise)
    return ParsedPayload(view, header, entries)


def _check_unused_noise(noise: NoiseSpec) -> None:
    """An update without masks selects from no noise: its header's must be UNUSED_NOISE, so it has one valid form."""
    for field in ("family", "alpha"):
        value, expected = getattr(noise, field), getattr(UNUSED_NOISE, field)
        if value != expected:
            raise PayloadError(
                f"noise {field} is {value!r}, expected {expected!r}: mask kind 'none' (an update without masks) "
                f"selects from no noise, and its header carries the unused noise {UNUSED_NOISE}"
            )


def _check_preamble(view: memoryview) -> None:
    """Magic, version, minimum length and checksum, in that order."""
    reader = _Reader(view, 0, len(view), "payload")
    (magic,) = reader.unpack(struct.Struct("4s"), "magic")
    if magic != MAGIC:
        raise PayloadError(f"bad magic {magic!r}, expected {MAGIC!r}")
    (version,) = reader.unpack(_VERSION, "format version")
    if version != FORMAT_VERSION:
        raise PayloadError(f"unsupported format version {version}; this reader supports {FORMAT_VERSION}")
    if len(view) < HEADER_SIZE + CHECKSUM_SIZE:
        raise PayloadError(
            f"payload truncated at byte {len(view)}: need at least {HEADER_SIZE + CHECKSUM_SIZE} bytes "
            f"for header and checksum"
        )
    stored, computed = bytes(view[-CHECKSUM_SIZE:]), checksum(view[:-CHECKSUM_SIZE])
    if not hmac.compare_digest(stored, computed):
        raise PayloadError(f"checksum mismatch: stored {stored.hex()}, computed {computed.hex()}; payload is corrupt")


def _parse_header(view: memoryview) -> Header:
    """Decode the fixed header and its enum codes."""
    (_, version, flags, server_round, client_id, seed, kind_code, family_code, alpha, num_examples, count,
     manifest_bytes) = HEADER.unpack(view[:HEADER_SIZE])  # fmt: skip
    if flags:
        raise PayloadError(f"unsupported flags 0x{flags:04x}; this reader supports 0x0000")
    if kind_code not in _MASK_KINDS:
        raise PayloadError(f"unknown mask kind code {kind_code}; expected one of {_MASK_KINDS}")
    if family_code not in _NOISE_FAMILIES:
        raise PayloadError(f"unknown noise family code {family_code}; expected one of {_NOISE_FAMILIES}")
    try:
        noise = NoiseSpec(_NOISE_FAMILIES[family_code], alpha)
    except ValueError as err:
        raise PayloadError(f"invalid noise spec in header: {err}") from err
    return Header(version, server_round, client_id, seed, _MASK_KINDS[kind_code], noise, num_examples, count,
                  manifest_bytes)  # fmt: skip


def _parse_manifest(reader: _Reader, count: int, body_start: int) -> tuple[ManifestEntry, ...]:
    """``count`` entries filling the manifest exactly; bodies placed back to back from ``body_start``."""
    entries, previous, offset = [], b"", body_start
    for index in range(count):  # each entry takes >= 13 bytes, so a huge count fails fast
        raw_name, name = _read_name(reader, index, previous)
        flagged_code, ndim = reader.unpack(ENCODING_NDIM, f"tensor {name!r} encoding and ndim")
        encoding_code, deflated = flagged_code & ~DEFLATED, bool(flagged_code & DEFLATED)
        if encoding_code not in _ENCODING_NAMES:
            raise PayloadError(
                f"tensor {name!r} has unknown encoding code {flagged_code}; expected one of {_ENCODING_NAMES}"
                f" (+{DEFLATED} for a deflated dense body)"
            )
        if ndim > MAX_NDIM:
            raise PayloadError(f"tensor {name!r} has {ndim} dims, expected at most {MAX_NDIM}")
        shape = struct.unpack(f"<{ndim}Q", reader.take(UINT64.size * ndim, f"tensor {name!r} dims"))
        if extent(shape) > MAX_NUMEL:
            raise PayloadError(f"tensor {name!r} has shape {shape}, larger than the limit of {MAX_NUMEL} elements")
        (size,) = reader.unpack(UINT64, f"tensor {name!r} body length")
        encoding = ENCODINGS[_ENCODING_NAMES[encoding_code]]
        if deflated:
            _check_deflated_size(name, encoding, shape, size)
        else:
            encoding.check_size(name, shape, size)
        scale = rms = None
        if encoding.role == MASK:
            scale, rms = reader.unpack(MASK_EXTRAS, f"tensor {name!r} noise scale and update RMS")
            if not (math.isfinite(scale) and scale >= 0) or math.copysign(1.0, scale) < 0:
                raise PayloadError(
                    f"tensor {name!r} noise scale is {scale!r}, expected a finite number > 0 (or 0.0: the header's alpha)"
                )
            if not (math.isfinite(rms) and rms >= 0):
                raise PayloadError(f"tensor {name!r} update RMS is {rms!r}, expected a finite number >= 0")
        entries.append(ManifestEntry(name, encoding.name, shape, offset, size, deflated, scale, rms))
        previous, offset = raw_name, offset + size
    if reader.pos != reader.end:
        raise PayloadError(
            f"manifest has {reader.end - reader.pos} trailing bytes after its {count} tensors, expected 0"
        )
    return tuple(entries)


def _check_deflated_size(name: str, encoding: Encoding, shape: tuple[int, ...], size: int) -> None:
    """A deflated body: of a dense encoding, shorter than its raw bytes, and at most MAX_DEFLATE_RATIO times shorter."""
    if encoding.dtype is None:
        raise PayloadError(f"tensor {name!r} is a {encoding.name} marked deflated; only dense bodies can be deflated")
    raw = encoding.raw_size(shape)
    low = -(-raw // MAX_DEFLATE_RATIO)
    if not 1 <= low <= size < raw:
        raise PayloadError(
            f"tensor {name!r} deflated body length is {size} bytes, expected at least {max(low, 1)} and fewer than "
            f"the {raw} raw bytes of shape {shape} as {encoding.name} (a body is only deflated when that is shorter)"
        )


def _read_name(reader: _Reader, index: int, previous: bytes) -> tuple[bytes, str]:
    """Read tensor ``index``'s name, raw and decoded: non-empty UTF-8, strictly after ``previous``."""
    (length,) = reader.unpack(NAME_LEN, f"tensor #{index} name length")
    if length == 0:
        raise PayloadError(f"tensor #{index} has an empty name, expected at least 1 byte")
    raw = bytes(reader.take(length, f"tensor #{index} name"))
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PayloadError(f"tensor #{index} name {raw!r} is not valid UTF-8") from err
    if index and raw <= previous:
        problem = "duplicate tensor name" if raw == previous else "tensor names out of order"
        raise PayloadError(f"{problem}: {name!r} after {previous.decode()!r}, expected ascending names")
    return raw, name


def _check_bodies_fit(entries: tuple[ManifestEntry, ...], start: int, end: int) -> None:
    """The bodies must fill ``[start, end)``, the space between manifest and checksum, exactly."""
    for entry in entries:
        if entry.offset + entry.size > end:
            raise PayloadError(
                f"payload truncated at byte {entry.offset}: need {entry.size} bytes for tensor {entry.name!r} body, "
                f"only {end - entry.offset} left before the checksum"
            )
    used_end = entries[-1].offset + entries[-1].size if entries else start
    if used_end != end:
        raise PayloadError(f"{end - used_end} trailing bytes after the last tensor body, expected 0")
