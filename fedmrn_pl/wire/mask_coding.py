"""Entropy-code bool masks: an interleaved rANS coder over the packed mask bytes.

Learned masks are far from fair coin flips (a round-10 conv mask is ~20% ones), so
they need well under the 1 bit per element that packing spends. The coder keeps the
packed byte layout of ``bits.py`` and codes each packed byte as one symbol of 256.
The model is static and sent in the body: one probability of a one per *phase*, the
position of an element within its kernel (flat index modulo the product of the dims
after the first two; 1 phase for matrices and vectors). A byte's probability is the
product of its eight bits' probabilities, computed in integers only, so every
machine builds the same frequency table from the same body.

Body layout::

    phases       P bytes, q_i in [1, 255]: P(bit = 1) at phase i is q_i / 256
    lane states  LANES x uint32: each rANS lane's final encoder state
    words        uint16 renormalisation words, in the order the decoder reads them

``P`` and ``LANES`` follow from the shape, so neither is sent. Symbol ``s`` (packed
byte ``s``) is lane ``s % LANES``'s symbol number ``s // LANES``; the lanes turn the
per-symbol loop into ~``numel / 8 / LANES`` numpy steps. Coding is canonical: the
probabilities must be the ones the mask's own bit counts give, each lane must end in
its initial state and every word must be read, so one mask has exactly one body.

A second model, :func:`encode_in_contexts`, takes one probability per *noise context*
instead of per phase (the section "noise contexts" below); same stream, same checks.
"""

from __future__ import annotations

import functools
import math
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from fedmrn_pl.wire.bits import POPCOUNT, check_padding, pack_bits, packed_size, unpack_bits
from fedmrn_pl.wire.errors import PayloadError

__all__ = [
    "CONTEXTS", "MAX_ELEMENTS_PER_BYTE", "MAX_SYMBOLS_PER_BYTE", "coded_overhead", "context_overhead",
    "count_mask_ones", "count_ones_in_contexts", "decode_in_contexts", "decode_mask", "encode_in_contexts",
    "encode_mask", "lane_count", "mask_phases",
]  # fmt: skip

MAX_PHASES = 64  # kernels with more elements are modelled with one phase
SCALE_BITS = 16  # symbol frequencies sum to 2**16
STATE_LOW = 1 << 16  # rANS state interval [2**16, 2**32), renormalised 16 bits at a time
WORD_BITS = 16
MAX_LANES = 32
SYMBOLS_PER_LANE = 2048  # lanes = ceil(symbols / 2048), at most MAX_LANES: 4 bytes of state per lane
# What a coded body can hold, proven rather than measured: no symbol's frequency exceeds 63775
# of 2**16 (8 factors of at most 255/256, plus < 256 units of rounding), and decoding one takes
# at least (2**16 - 63775) * (x >> 16) off a lane state x, so a state refilled to below 2**32
# decodes at most 429 symbols before it needs its next 16-bit word: at most 214.5 symbols, 1716
# mask elements, per body byte (an all-zero mask, the best case, reaches 1337). The parser refuses
# bodies claiming over 1024 symbols per byte before decoding them (a looser bound, kept as the
# format's); ``describe_payload`` refuses payloads declaring over MAX_ELEMENTS_PER_BYTE in all.
MAX_SYMBOLS_PER_BYTE = 1024
MAX_ELEMENTS_PER_BYTE = 1716
_CHUNK_SYMBOLS = 1 << 17  # symbols decoded at a time: decoding holds a few bytes per chunk symbol, none per mask symbol
CONTEXTS = 8  # noise-context groups (by rank: 8 gave 0.567 bits per element on the default run, 4: 0.573, 16: 0.565)
_WORD = np.dtype("<u2")
_CRC = struct.Struct("<I")
_STATE = np.dtype("<u4")


def mask_phases(shape: Sequence[int]) -> int:
    """Number of probability phases: the kernel size (dims after the first two), or 1."""
    kernel = math.prod(shape[2:]) if len(shape) >= 3 else 1
    return kernel if 1 <= kernel <= MAX_PHASES else 1


def lane_count(numel: int) -> int:
    """rANS lanes for a mask of ``numel`` elements: more lanes, fewer numpy steps, 4 bytes each."""
    return min(MAX_LANES, max(1, -(-packed_size(numel) // SYMBOLS_PER_LANE)))


def coded_overhead(shape: Sequence[int]) -> int:
    """Body bytes that carry no symbol: the phase probabilities and the lane states."""
    return mask_phases(shape) + _STATE.itemsize * lane_count(math.prod(shape))


def encode_mask(mask: torch.Tensor) -> bytes:
    """Entropy-code a bool mask; :func:`decode_mask` gives it back bit for bit.

    Args:
        mask: bool tensor of any shape, device or layout (flattened in C order).

    Returns:
        The body: phase probabilities, lane states, words (see the module docstring).

    Raises:
        TypeError: if ``mask`` is not a bool tensor.
    """
    shape = tuple(mask.shape)
    symbols = np.frombuffer(pack_bits(mask), dtype=np.uint8)
    probabilities = _phase_probabilities(np.unpackbits(symbols, count=math.prod(shape), bitorder="little"), shape)
    freq, start = _tables(probabilities)
    phase = _symbol_phases(0, symbols.size, len(probabilities))
    states, words = _rans_encode(freq[phase, symbols], start[phase, symbols], lane_count(math.prod(shape)))
    return b"".join([probabilities.tobytes(), states.astype(_STATE).tobytes(), words.astype(_WORD).tobytes()])


def decode_mask(data: bytes | bytearray | memoryview, shape: Sequence[int]) -> torch.Tensor:
    """Decode a body made by :func:`encode_mask` into a bool tensor of ``shape``.

    Every size is checked against ``shape`` before anything is allocated, the loop runs
    a fixed ``ceil(symbols / lanes)`` steps whatever the bytes say, and any deviation
    from the one canonical body of the decoded mask is refused.

    Args:
        data: the body bytes.
        shape: the mask's shape.

    Returns:
        A new, writeable CPU bool tensor.

    Raises:
        PayloadError: if the body is malformed, truncated, too long or not canonical.
    """
    shape = tuple(int(d) for d in shape)
    _, symbols = _read_phase_coded(data, shape, keep=True)
    return unpack_bits(symbols, shape)


def count_mask_ones(data: bytes | bytearray | memoryview, shape: Sequence[int]) -> int:
    """The ones of the mask in a :func:`encode_mask` body, checked as :func:`decode_mask` checks it.

    The mask is never held: symbols are decoded, counted and dropped a chunk at a time, so
    memory does not grow with the shape the body declares.

    Raises:
        PayloadError: if the body is malformed, truncated, too long or not canonical.
    """
    ones, _ = _read_phase_coded(data, tuple(int(d) for d in shape), keep=False)
    return ones


def _read_phase_coded(
    data: bytes | bytearray | memoryview, shape: tuple[int, ...], keep: bool
) -> tuple[int, np.ndarray | None]:
    """Decode and check a phase-coded body a chunk at a time: ``(ones, the packed mask if keep)``."""
    numel = math.prod(shape)
    phases, lanes = mask_phases(shape), lane_count(numel)
    probabilities, states, words = _split_body(data, shape, phases, lanes, "coded mask", "phase")
    freq, start = _tables(probabilities)
    out = np.empty(packed_size(numel), dtype=np.uint8) if keep else None
    ones, last = np.zeros(phases, dtype=np.int64), 0
    rows = functools.partial(_symbol_phases, phases=phases)
    for lo, symbols in _rans_decode(states, words, freq, start, packed_size(numel), rows):
        ones += _phase_ones(np.unpackbits(symbols, bitorder="little"), 8 * lo, phases)
        last = int(symbols[-1])
        if out is not None:
            out[lo : lo + symbols.size] = symbols
    check_padding(last, numel)
    expected = _probability_bytes(ones, _phase_counts(numel, phases))
    if not np.array_equal(expected, probabilities):
        raise PayloadError(
            f"coded mask probabilities {probabilities.tolist()} do not match its bit counts, "
            f"expected {expected.tolist()}"
        )
    return int(ones.sum()), out


# ------------------------------------------------------------------ noise contexts
#
# A FedMRN mask bit is 1 with probability ``clip(u / n)``: it saturates where ``|n|`` is
# small and stays uncertain where it is large. The reader regenerates the noise from the
# payload's seed, so the bits can be modelled by their ``|n|`` instead of their kernel
# position: CONTEXTS groups (``context_coding.noise_contexts``), each group's bits in index
# order packed from a byte boundary, one probability per group, all groups in one
# interleaved rANS stream. Body: the contexts' CRC-32, CONTEXTS probability bytes, lane
# states, words. On the default run 0.570 bits per element against 0.621 by kernel phase.


def context_overhead(shape: Sequence[int]) -> int:
    """Body bytes of a context-coded mask that carry no symbol: contexts' CRC, probabilities, lane states."""
    return _CRC.size + CONTEXTS + _STATE.itemsize * _context_lanes(math.prod(shape))


def encode_in_contexts(mask: torch.Tensor, contexts: np.ndarray) -> bytes:
    """Entropy-code a bool mask by context; :func:`decode_in_contexts` with the same contexts gives it back.

    The body starts with the CRC-32 of the contexts, so a reader that derives other
    contexts (other noise) is refused instead of decoding a scrambled mask.

    Args:
        mask: bool tensor of any shape, device or layout (flattened in C order).
        contexts: each element's context in ``[0, CONTEXTS)`` (flat, C order).
    """
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor, got {mask.dtype}")
    order, sizes = _context_order(contexts, mask.numel())
    grouped = np.split(mask.detach().to("cpu").reshape(-1).numpy()[order], np.cumsum(sizes)[:-1])
    symbols = np.concatenate([np.packbits(bits, bitorder="little") for bits in grouped])
    probabilities = _probability_bytes([int(bits.sum()) for bits in grouped], sizes)
    freq, start = _context_tables(probabilities)
    rows = _context_rows(sizes)
    states, words = _rans_encode(freq[rows, symbols], start[rows, symbols], _context_lanes(mask.numel()))
    crc = _CRC.pack(_contexts_crc(contexts))
    return b"".join([crc, probabilities.tobytes(), states.astype(_STATE).tobytes(), words.astype(_WORD).tobytes()])


def decode_in_contexts(
    data: bytes | bytearray | memoryview, shape: Sequence[int], contexts: Callable[[], np.ndarray]
) -> torch.Tensor:
    """Decode a body made by :func:`encode_in_contexts`; checked as :func:`decode_mask` checks its bodies.

    ``contexts`` is called only once the body's fixed part has passed its checks: deriving
    them (regenerating the noise) costs memory in proportion to the declared shape.

    Raises:
        PayloadError: if the body is malformed, truncated, too long or not canonical, or
            was written with other contexts than ``contexts()`` gives.
    """
    shape = tuple(int(d) for d in shape)
    numel = math.prod(shape)
    orders: list[np.ndarray] = []

    def census() -> tuple[list[int], int]:
        derived = np.asarray(contexts()).reshape(-1)
        order, sizes = _context_order(derived, numel)
        orders.append(order)
        return sizes, _contexts_crc(derived)

    sizes, _, symbols = _read_context_coded(data, shape, census, keep=True)
    order, ends = orders[0], np.cumsum(_context_bytes(sizes))
    grouped = [np.unpackbits(symbols[end - packed_size(size) : end], count=size, bitorder="little")
               for end, size in zip(ends, sizes, strict=True)]  # fmt: skip
    flat = np.empty(numel, dtype=np.uint8)
    flat[order] = np.concatenate(grouped) if grouped else flat[:0]
    return torch.from_numpy(flat.astype(bool)).reshape(shape)


def count_ones_in_contexts(
    data: bytes | bytearray | memoryview, shape: Sequence[int], contexts: Callable[[], Iterable[np.ndarray]]
) -> int:
    """The ones of the mask in a :func:`encode_in_contexts` body, checked as :func:`decode_in_contexts` checks it.

    ``contexts`` gives the contexts in consecutive chunks (``context_coding.noise_context_chunks``),
    and neither they nor the mask are ever held whole: memory does not grow with the declared shape.
    """
    numel = math.prod(int(d) for d in shape)
    _, ones, _ = _read_context_coded(data, tuple(int(d) for d in shape), lambda: _census(contexts(), numel), keep=False)
    return ones


def _read_context_coded(
    data: bytes | bytearray | memoryview,
    shape: tuple[int, ...],
    census: Callable[[], tuple[list[int], int]],
    keep: bool,
) -> tuple[list[int], int, np.ndarray | None]:
    """Decode and check a context-coded body a chunk at a time: ``(group sizes, ones, packed groups if keep)``.

    ``census()`` derives the contexts' group sizes and CRC-32; it is called once the fixed part has passed.
    """
    numel = math.prod(shape)
    view = memoryview(data)
    lanes = _context_lanes(numel)
    if len(view) < context_overhead(shape) or (len(view) - context_overhead(shape)) % _WORD.itemsize:
        raise PayloadError(
            f"noise-coded mask of shape {shape} needs a 4-byte contexts CRC, {CONTEXTS} probability bytes, "
            f"{lanes} lane states of 4 bytes and whole 2-byte words, got {len(view)} bytes"
        )
    probabilities, states, words = _split_body(view[_CRC.size :], shape, CONTEXTS, lanes, "noise-coded mask", "context")
    sizes, crc = census()
    (written,) = _CRC.unpack_from(view)
    if written != crc:
        raise PayloadError(
            f"noise-coded mask was written with other noise contexts (CRC-32 {written:08x}, here "
            f"{crc:08x}): this reader regenerates the noise differently"
        )
    freq, start = _context_tables(probabilities)
    ends = np.cumsum(_context_bytes(sizes))
    starts = ends - _context_bytes(sizes)
    out = np.empty(int(ends[-1]), dtype=np.uint8) if keep else None
    ones, bad_padding = np.zeros(CONTEXTS, dtype=np.int64), None

    def rows(lo: int, hi: int) -> np.ndarray:
        return np.repeat(np.arange(CONTEXTS), np.clip(ends, lo, hi) - np.clip(starts, lo, hi))

    for lo, symbols in _rans_decode(states, words, freq, start, int(ends[-1]), rows):
        hi, counts = lo + symbols.size, POPCOUNT[symbols]
        for context in range(CONTEXTS):
            first, end = max(int(starts[context]), lo), min(int(ends[context]), hi)
            if first < end:
                ones[context] += int(counts[first - lo : end - lo].sum(dtype=np.int64))
                if end == ends[context] and bad_padding is None and symbols[end - 1 - lo] >> (sizes[context] % 8 or 8):
                    bad_padding = context
        if out is not None:
            out[lo:hi] = symbols
    if bad_padding is not None:
        size = sizes[bad_padding]
        raise PayloadError(f"noise-coded mask context {bad_padding} has padding bits set after its {size} bits")
    expected = _probability_bytes(ones, sizes)
    if not np.array_equal(expected, probabilities):
        raise PayloadError(
            f"noise-coded mask probabilities {probabilities.tolist()} do not match its bit counts, "
            f"expected {expected.tolist()}"
        )
    return sizes, int(ones.sum()), out


def _census(chunks: Iterable[np.ndarray], numel: int) -> tuple[list[int], int]:
    """Group sizes and CRC-32 of contexts given in consecutive chunks, each checked to lie in ``[0, CONTEXTS)``."""
    sizes, crc, seen = np.zeros(CONTEXTS, dtype=np.int64), 0, 0
    for chunk in chunks:
        chunk = np.asarray(chunk).reshape(-1)
        if chunk.size and not 0 <= int(chunk.min()) <= int(chunk.max()) < CONTEXTS:
            seen = -1
            break
        for lo in range(0, chunk.size, 1 << 16):  # bincount copies to int64: a slice at a time
            sizes += np.bincount(chunk[lo : lo + (1 << 16)], minlength=CONTEXTS)
        crc, seen = _contexts_crc(chunk, crc), seen + chunk.size
    if seen != numel:
        raise ValueError(f"contexts must give each of the {numel} elements a context in [0, {CONTEXTS})")
    return [int(size) for size in sizes], crc


def _contexts_crc(contexts: np.ndarray, crc: int = 0) -> int:
    """CRC-32 of the contexts as bytes (one per element), continuing from ``crc`` (the CRC of earlier chunks)."""
    return zlib.crc32(np.ascontiguousarray(np.asarray(contexts).reshape(-1), dtype=np.uint8), crc)


def _context_order(contexts: np.ndarray, numel: int) -> tuple[np.ndarray, list[int]]:
    """Indices grouped by context (index order inside), and the group sizes."""
    contexts = np.asarray(contexts).reshape(-1)
    if contexts.size != numel or (contexts.size and not 0 <= int(contexts.min()) <= int(contexts.max()) < CONTEXTS):
        raise ValueError(f"contexts must give each of the {numel} elements a context in [0, {CONTEXTS})")
    groups = [np.flatnonzero(contexts == c) for c in range(CONTEXTS)]
    return np.concatenate(groups), [group.size for group in groups]


def _context_bytes(sizes: Sequence[int]) -> list[int]:
    return [packed_size(size) for size in sizes]


def _context_rows(sizes: Sequence[int]) -> np.ndarray:
    """Each symbol's table row: the context its byte belongs to."""
    return np.repeat(np.arange(CONTEXTS), _context_bytes(sizes))


def _context_lanes(numel: int) -> int:
    """Lanes from the element count alone (groups add at most CONTEXTS padding bytes): sizes are checked first."""
    return lane_count(numel + 8 * CONTEXTS)


def _context_tables(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One table row per context, all eight bits of a symbol at the context's probability."""
    rows = [_tables(probabilities[c : c + 1]) for c in range(CONTEXTS)]
    return np.concatenate([freq for freq, _ in rows]), np.concatenate([start for _, start in rows])


def _split_body(
    data: bytes | bytearray | memoryview, shape: tuple[int, ...], count: int, lanes: int, what: str, unit: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A coded body's ``count`` probability bytes, lane states and words, each checked for range and length."""
    body = np.frombuffer(data, dtype=np.uint8)
    fixed = count + _STATE.itemsize * lanes
    if body.size < fixed or (body.size - fixed) % _WORD.itemsize:
        raise PayloadError(
            f"{what} of shape {shape} needs {count} probability bytes, {lanes} lane states of 4 bytes "
            f"and whole 2-byte words, got {body.size} bytes"
        )
    probabilities = body[:count]
    if not probabilities.all():
        raise PayloadError(f"{what} probability of {unit} {int(np.argmin(probabilities))} is 0, expected 1 to 255")
    states = body[count:fixed].view(_STATE).astype(np.uint64)
    if (states < STATE_LOW).any():
        raise PayloadError(f"{what} lane state {int(states.min())} is below the minimum {STATE_LOW}")
    return probabilities, states, body[fixed:].view(_WORD)


def _phase_probabilities(bits: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``q_i = round(256 * ones_i / count_i)`` per phase, clipped to [1, 255]; 128 for an empty phase."""
    phases = mask_phases(shape)
    return _probability_bytes(_phase_ones(bits, 0, phases), _phase_counts(bits.size, phases))


def _phase_ones(bits: np.ndarray, first: int, phases: int) -> np.ndarray:
    """Ones per phase among ``bits`` (0/1 uint8), the first of which is element ``first`` of the mask."""
    if phases == 1:
        return np.array([np.count_nonzero(bits)], dtype=np.int64)
    lead = first % phases  # zeros in front, so that element ``first`` lands in column ``first % phases``
    padded = np.zeros(-(-(lead + bits.size) // phases) * phases, dtype=np.uint8)
    padded[lead : lead + bits.size] = bits
    return padded.reshape(-1, phases).sum(axis=0, dtype=np.int64)


def _phase_counts(numel: int, phases: int) -> np.ndarray:
    """Elements per phase of a mask of ``numel`` elements."""
    return np.full(phases, numel // phases) + (np.arange(phases) < numel % phases)


def _probability_bytes(ones: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``round(256 * ones / count)`` clipped to [1, 255]; 128 where the count is 0."""
    ones, counts = np.asarray(ones, dtype=np.int64), np.asarray(counts, dtype=np.int64)
    rounded = (512 * ones + counts) // np.maximum(2 * counts, 1)
    return np.where(counts > 0, np.clip(rounded, 1, 255), 128).astype(np.uint8)


def _tables(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per phase, each byte symbol's frequency (>= 1, summing to 2**16) and cumulative start.

    Row ``r`` is for a symbol whose bit 0 sits at phase ``r``. The exact byte probability
    is a product of eight factors ``q`` or ``256 - q``, out of ``256**8 = 2**64``;
    dropping its low 48 bits gives a frequency out of ``2**16``, and the few units lost
    to rounding go to the most probable symbol.
    """
    q = probabilities.astype(np.uint64)
    phases = q.size
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1  # (256, 8): bit k of symbol s
    bit_phase = (np.arange(phases)[:, None] + np.arange(8)) % phases  # (P, 8)
    one, zero = q[bit_phase], np.uint64(256) - q[bit_phase]
    factors = np.where(bits[None, :, :] == 1, one[:, None, :], zero[:, None, :])  # (P, 256, 8)
    product = np.prod(factors, axis=2, dtype=np.uint64)
    freq = np.maximum(product >> np.uint64(64 - SCALE_BITS), 1).astype(np.int64)
    top = np.argmax(freq, axis=1)
    freq[np.arange(phases), top] += (1 << SCALE_BITS) - freq.sum(axis=1)
    start = np.cumsum(freq, axis=1) - freq
    return freq.astype(np.uint64), start.astype(np.uint64)


def _symbol_phases(lo: int, hi: int, phases: int) -> np.ndarray:
    """The phase of bit 0 of symbols ``lo`` to ``hi``: ``8 * s mod P``."""
    return (8 * np.arange(lo, hi, dtype=np.int64)) % phases


def _lane_rows(values: np.ndarray, lanes: int) -> list[np.ndarray]:
    """``values`` cut into consecutive steps of ``lanes`` (the last step may be shorter)."""
    return [values[lo : lo + lanes] for lo in range(0, values.size, lanes)]


def _rans_encode(freq: np.ndarray, start: np.ndarray, lanes: int) -> tuple[np.ndarray, np.ndarray]:
    """Encode symbols given as their ``(freq, start)``, last step first; returns ``(states, words)``."""
    state = np.full(lanes, STATE_LOW, dtype=np.uint64)
    limits = freq << np.uint64(WORD_BITS)  # a state at or above its symbol's limit sheds one word first
    chunks = []
    for f, c, limit in zip(*(_lane_rows(a, lanes)[::-1] for a in (freq, start, limits))):
        x = state[: f.size]
        out = x >= limit
        chunks.append(x[out] & np.uint64(0xFFFF))
        x = np.where(out, x >> np.uint64(WORD_BITS), x)
        quotient, remainder = np.divmod(x, f)
        state[: f.size] = (quotient << np.uint64(SCALE_BITS)) + remainder + c
    words = np.concatenate(chunks[::-1]) if chunks else np.zeros(0, dtype=np.uint64)
    return state, words


def _rans_decode(
    state: np.ndarray,
    words: np.ndarray,
    freq: np.ndarray,
    start: np.ndarray,
    count: int,
    rows: Callable[[int, int], np.ndarray],
) -> Iterator[tuple[int, np.ndarray]]:
    """Decode ``count`` byte symbols from lane ``state`` and ``words``, ``(first index, symbols)`` a chunk at a time.

    ``rows(lo, hi)``: the table row of symbols ``lo`` to ``hi``. Once the last chunk is
    taken, every word must have been read and every lane be back in its initial state.
    """
    lanes, phases = state.size, freq.shape[0]
    offsets = np.arange(phases, dtype=np.uint64)[:, None] << np.uint64(SCALE_BITS)
    bounds = (start + offsets).reshape(-1)  # ascending: phase blocks of 2**16, symbol starts inside each
    freq, start = freq.reshape(-1), start.reshape(-1)
    state, words, read = state.copy(), words.astype(np.uint64), 0
    low, shift = np.uint64((1 << SCALE_BITS) - 1), np.uint64(SCALE_BITS)
    step = max(1, _CHUNK_SYMBOLS // lanes) * lanes  # whole lane steps per chunk
    for first in range(0, count, step):
        base = rows(first, min(first + step, count)).astype(np.uint32) << np.uint32(SCALE_BITS)
        found = np.empty(base.size, dtype=np.uint16)  # phase * 256 + symbol, per decoded symbol
        for lo, b in zip(range(0, base.size, lanes), _lane_rows(base, lanes)):
            x = state[: b.size]
            slot = x & low
            index = np.searchsorted(bounds, slot + b, side="right") - 1
            found[lo : lo + b.size] = index
            x = freq[index] * (x >> shift) + slot - start[index]
            refill = np.flatnonzero(x < STATE_LOW)
            if refill.size:
                if read + refill.size > words.size:
                    raise PayloadError(f"coded mask stream truncated: needs word {read + refill.size} at symbol "
                                       f"{first + lo}, only {words.size} words")  # fmt: skip
                x[refill] = (x[refill] << shift) | words[read : read + refill.size]
                read += refill.size
            state[: b.size] = x
        yield first, (found & 0xFF).astype(np.uint8)
    if read != words.size:
        raise PayloadError(f"coded mask has {words.size - read} words left after its {count} symbols, expected 0")
    if (state != STATE_LOW).any():
        lane = int(np.flatnonzero(state != STATE_LOW)[0])
        raise PayloadError(f"coded mask lane {lane} ends in state {int(state[lane])}, expected {STATE_LOW}: corrupt")
