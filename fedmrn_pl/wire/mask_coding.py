"""Entropy-code bool masks: the packed mask bytes as symbols of one rANS stack, coded by constriction.

Learned masks are far from fair coin flips (a round-10 conv mask is ~20% ones), so they
need well under the 1 bit per element that packing spends. The coder keeps the packed
byte layout of ``bits.py`` and codes each packed byte as one symbol of 256 under a static
model sent in the body: one probability of a one per *phase*, the position of an element
within its kernel (flat index modulo the product of the dims after the first two; 1 phase
for matrices and vectors). A byte's probability is the product of its eight bits', in
integers only (:func:`_frequencies`), so every machine builds the same frequencies.

Body layout::

    phases   P bytes, q_i in [1, 255]: P(bit = 1) at phase i is q_i / 256
    words    uint32 little-endian: the rANS stack, bottom first, its final state last

The symbols are coded in *groups*, one frequency table each, first group first: here the
packed bytes ``j, j + T, j + 2T, ...`` for ``j = 0 .. T - 1``, ``T = P / gcd(8, P)``, all of
whose bit 0 sits at phase ``8j mod P``. The stream (what the C++ or Rust of another reader
must reproduce; ``constriction`` 0.5's ``AnsCoder`` is this algorithm, a test pins it to a
Python transcription of these lines):

- frequencies ``f[s] >= 1`` summing to ``2**24`` per table; ``c[s]`` their prefix sums;
- the writer starts from state ``x = 2**32`` and no words, and codes the symbols *last first*:
  if ``x >> 40 >= f[s]`` it pushes the word ``x mod 2**32`` and sets ``x = x >> 32``; then
  ``x = (x // f[s]) * 2**24 + c[s] + x mod f[s]``. It ends by pushing ``x``'s low, then high word;
- the reader pops ``x = high << 32 | low`` (``high > 0``) and decodes first symbol first:
  ``s`` is the symbol with ``c[s] <= x mod 2**24 < c[s] + f[s]``, ``x = (x >> 24) * f[s] +
  x mod 2**24 - c[s]``, and if ``x < 2**32`` and words are left, ``x = x << 32 | pop``.

Coding is canonical: the probabilities must be the ones the mask's own bit counts give,
every word must be read and the reader must end in the writer's start state ``2**32``; as
every state of such a stream is ``>= 2**32``, reading is then the exact inverse of writing,
so one mask has exactly one body. The work is a few nanoseconds per packed byte in compiled
code (``constriction``, Rust), where the numpy lanes of format 5 took ~2,000 numpy steps for a
294,912-element mask.

A second model, :func:`encode_in_contexts`, takes one probability per *noise context*
instead of per phase (the section "noise contexts" below); same stream, same checks.
"""

from __future__ import annotations

import functools
import math
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence

import constriction
import numpy as np
import torch

from fedmrn_pl.wire.bits import POPCOUNT, check_padding, pack_bits, packed_size, unpack_bits
from fedmrn_pl.wire.errors import PayloadError

__all__ = [
    "CONTEXTS", "MAX_ELEMENTS_PER_BYTE", "MAX_SYMBOLS_PER_BYTE", "coded_overhead", "context_overhead",
    "count_mask_ones", "count_ones_in_contexts", "decode_in_contexts", "decode_mask", "encode_in_contexts",
    "encode_mask", "mask_phases",
]  # fmt: skip

MAX_PHASES = 64  # kernels with more elements are modelled with one phase
PRECISION = 24  # symbol frequencies sum to 2**24 (constriction's default categorical models)
INITIAL_STATE = 1 << 32  # the writer's start state, the reader's required end state
# What a coded body can hold, proven rather than measured: no symbol's frequency exceeds
# 16,260,295 of 2**24 (8 factors of at most 255/256, plus < 256 units of rounding), and decoding
# one maps a state x to at most (x >> 24) * f + f - 1, so from any state below 2**64 the reader
# decodes at most 711 symbols before its state falls below 2**32 and it pops its next 32-bit
# word (or, with none left, can no longer end in 2**32). A body of W >= 2 words thus holds at
# most 711 * (W - 1) symbols: under 177.75 packed bytes, 1422 mask elements, per body byte (an
# all-zero mask, the best case, reaches ~1410). The parser refuses bodies claiming more packed
# bytes per byte before decoding them; ``describe_payload`` refuses payloads declaring over
# MAX_ELEMENTS_PER_BYTE elements per payload byte.
MAX_SYMBOLS_PER_BYTE = 178
MAX_ELEMENTS_PER_BYTE = 1422
_ORDER_CHUNK = 1 << 16  # elements sorted by context at a time: the sort stays in cache
_CHUNK_SYMBOLS = 1 << 17  # symbols decoded at a time: decoding holds a few bytes per chunk symbol, none per mask symbol
CONTEXTS = 8  # noise-context groups (by rank: 8 gave 0.567 bits per element on the default run, 4: 0.573, 16: 0.565)
_WORD = np.dtype("<u4")
_STATE_WORDS = 2  # the final state: low word, high word
_CRC = struct.Struct("<I")
_BITS = (np.arange(256)[:, None] >> np.arange(8)) & 1  # (256, 8): bit k of byte symbol s
_POPCOUNT = POPCOUNT.astype(np.int64)  # ones per byte symbol
_AnsCoder = constriction.stream.stack.AnsCoder
_Categorical = constriction.stream.model.Categorical


def mask_phases(shape: Sequence[int]) -> int:
    """Number of probability phases: the kernel size (dims after the first two), or 1."""
    kernel = math.prod(shape[2:]) if len(shape) >= 3 else 1
    return kernel if 1 <= kernel <= MAX_PHASES else 1


def coded_overhead(shape: Sequence[int]) -> int:
    """Body bytes that carry no symbol: the phase probabilities and the final state's two words."""
    return mask_phases(shape) + _WORD.itemsize * _STATE_WORDS


def encode_mask(mask: torch.Tensor) -> bytes:
    """Entropy-code a bool mask; :func:`decode_mask` gives it back bit for bit.

    Args:
        mask: bool tensor of any shape, device or layout (flattened in C order).

    Returns:
        The body: phase probabilities, then words (see the module docstring).

    Raises:
        TypeError: if ``mask`` is not a bool tensor.
    """
    shape = tuple(mask.shape)
    symbols = np.frombuffer(pack_bits(mask), dtype=np.uint8)
    probabilities = _phase_probabilities(np.unpackbits(symbols, count=math.prod(shape), bitorder="little"), shape)
    period = _phase_period(probabilities.size)
    groups = [(symbols[j::period], _phase_row(probabilities, 8 * j)) for j in range(period)]
    return probabilities.tobytes() + _encode_stream(groups)


def decode_mask(data: bytes | bytearray | memoryview, shape: Sequence[int]) -> torch.Tensor:
    """Decode a body made by :func:`encode_mask` into a bool tensor of ``shape``.

    Every size is checked against ``shape`` before anything is allocated, the reader
    decodes the ``ceil(numel / 8)`` symbols the shape gives whatever the bytes say, and
    any deviation from the one canonical body of the decoded mask is refused.

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
    phases, count = mask_phases(shape), packed_size(numel)
    probabilities, words = _split_body(data, shape, phases, "coded mask", "phase")
    period = _phase_period(phases)
    sizes = [len(range(j, count, period)) for j in range(period)]
    out = np.empty(count, dtype=np.uint8) if keep else None
    ones, last = np.zeros(phases, dtype=np.int64), 0
    groups = [(size, _phase_row(probabilities, 8 * j)) for j, size in enumerate(sizes)]
    for j, lo, symbols in _decode_stream(words, groups):
        np.add.at(ones, (8 * j + np.arange(8)) % phases, np.bincount(symbols, minlength=256) @ _BITS)
        if j == (count - 1) % period and lo + symbols.size == sizes[j]:
            last = int(symbols[-1])
        if out is not None:
            out[j + period * lo : j + period * (lo + symbols.size) : period] = symbols
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
# order packed from a byte boundary, one probability per group, the groups in context order
# as the stream's groups. Body: the contexts' CRC-32, CONTEXTS probability bytes, words.
# On the default run 0.57 bits per element against 0.62 by kernel phase.


def context_overhead(shape: Sequence[int]) -> int:
    """Body bytes of a context-coded mask that carry no symbol: contexts' CRC, probabilities, final state."""
    return _CRC.size + CONTEXTS + _WORD.itemsize * _STATE_WORDS


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
    contexts = _checked_contexts(contexts, mask.numel())
    grouped = _group(mask.detach().to("cpu").contiguous().reshape(-1).numpy().view(np.uint8), contexts)
    sizes = [bits.size for bits in grouped]
    probabilities = _probability_bytes([np.count_nonzero(bits) for bits in grouped], sizes)
    rows = [bytes([q]) * 8 for q in probabilities.tolist()]
    words = _encode_stream([(np.packbits(bits, bitorder="little"), row) for bits, row in zip(grouped, rows)])
    return b"".join([_CRC.pack(_contexts_crc(contexts)), probabilities.tobytes(), words])


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
    chunks: list[tuple[int, np.ndarray, np.ndarray]] = []

    def census() -> tuple[list[int], int]:
        derived = _checked_contexts(contexts(), math.prod(shape))
        chunks.extend(_chunk_orders(derived))
        return sum((counts for _, _, counts in chunks), np.zeros(CONTEXTS, np.int64)).tolist(), _contexts_crc(derived)

    sizes, _, symbols = _read_context_coded(data, shape, census, keep=True)
    ends = np.cumsum(_context_bytes(sizes))
    grouped = [np.unpackbits(symbols[end - packed_size(size) : end], count=size, bitorder="little")
               for end, size in zip(ends, sizes, strict=True)]  # fmt: skip
    return torch.from_numpy(_ungroup(grouped, chunks, math.prod(shape)).view(np.bool_)).reshape(shape)


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
    view = memoryview(data)
    if len(view) < context_overhead(shape) or (len(view) - context_overhead(shape)) % _WORD.itemsize:
        raise PayloadError(
            f"noise-coded mask of shape {shape} needs a 4-byte contexts CRC, {CONTEXTS} probability bytes "
            f"and whole 4-byte words, at least {_STATE_WORDS}, got {len(view)} bytes"
        )
    probabilities, words = _split_body(view[_CRC.size :], shape, CONTEXTS, "noise-coded mask", "context")
    sizes, crc = census()
    (written,) = _CRC.unpack_from(view)
    if written != crc:
        raise PayloadError(
            f"noise-coded mask was written with other noise contexts (CRC-32 {written:08x}, here "
            f"{crc:08x}): this reader regenerates the noise differently"
        )
    counts, rows = _context_bytes(sizes), [bytes([q]) * 8 for q in probabilities.tolist()]
    starts = np.cumsum(counts) - counts
    out = np.empty(sum(counts), dtype=np.uint8) if keep else None
    ones, bad_padding = np.zeros(CONTEXTS, dtype=np.int64), None
    for context, lo, symbols in _decode_stream(words, list(zip(counts, rows))):
        ones[context] += int(np.bincount(symbols, minlength=256) @ _POPCOUNT)
        end = lo + symbols.size
        if end == counts[context] and bad_padding is None and symbols[-1] >> (sizes[context] % 8 or 8):
            bad_padding = context
        if out is not None:
            out[starts[context] + lo : starts[context] + end] = symbols
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


def _checked_contexts(contexts: np.ndarray, numel: int) -> np.ndarray:
    """``contexts`` flat as uint8, checked to give each of ``numel`` elements a context in ``[0, CONTEXTS)``."""
    contexts = np.asarray(contexts).reshape(-1)
    if contexts.size != numel or (contexts.size and not 0 <= int(contexts.min()) <= int(contexts.max()) < CONTEXTS):
        raise ValueError(f"contexts must give each of the {numel} elements a context in [0, {CONTEXTS})")
    return contexts.astype(np.uint8, copy=False)


def _chunk_orders(contexts: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(first index, stable order by context, elements per context)`` of each chunk of ``_ORDER_CHUNK`` elements.

    Grouping a chunk at a time keeps the sort and the moves in cache (a whole-mask sort of a
    2.4M-element conv took 5x longer), and gives the same groups: each chunk's context-``c``
    elements are in index order, and so are the chunks.
    """
    for lo in range(0, contexts.size, _ORDER_CHUNK):
        chunk = contexts[lo : lo + _ORDER_CHUNK]
        counts = np.array([np.count_nonzero(chunk == c) for c in range(CONTEXTS)])  # 2x bincount's speed on uint8
        yield lo, np.argsort(chunk, kind="stable"), counts  # a radix sort: linear


def _group(bits: np.ndarray, contexts: np.ndarray) -> list[np.ndarray]:
    """Each context's ``bits`` (uint8 0/1, flat) in index order."""
    pieces: list[list[np.ndarray]] = [[] for _ in range(CONTEXTS)]
    for lo, order, counts in _chunk_orders(contexts):
        moved, ends = bits[lo : lo + order.size][order], np.cumsum(counts)
        for context in range(CONTEXTS):
            pieces[context].append(moved[ends[context] - counts[context] : ends[context]])
    return [np.concatenate(group) if group else np.zeros(0, dtype=np.uint8) for group in pieces]


def _ungroup(
    grouped: Sequence[np.ndarray], chunks: Iterable[tuple[int, np.ndarray, np.ndarray]], numel: int
) -> np.ndarray:
    """The inverse of :func:`_group`: the flat bits from each context's bits in index order (``chunks``: the
    contexts' :func:`_chunk_orders`)."""
    flat, taken = np.empty(numel, dtype=np.uint8), np.zeros(CONTEXTS, dtype=np.int64)
    for lo, order, counts in chunks:
        pieces = [grouped[c][taken[c] : taken[c] + counts[c]] for c in range(CONTEXTS)]
        flat[lo : lo + order.size][order] = np.concatenate(pieces)
        taken += counts
    return flat


def _context_bytes(sizes: Sequence[int]) -> list[int]:
    return [packed_size(size) for size in sizes]


def _split_body(
    data: bytes | bytearray | memoryview, shape: tuple[int, ...], count: int, what: str, unit: str
) -> tuple[np.ndarray, np.ndarray]:
    """A coded body's ``count`` probability bytes and its words, each checked for range and length."""
    body = np.frombuffer(data, dtype=np.uint8)
    fixed = count + _WORD.itemsize * _STATE_WORDS
    if body.size < fixed or (body.size - count) % _WORD.itemsize:
        raise PayloadError(
            f"{what} of shape {shape} needs {count} probability bytes and whole 4-byte words, "
            f"at least {_STATE_WORDS}, got {body.size} bytes"
        )
    probabilities = body[:count]
    if not probabilities.all():
        raise PayloadError(f"{what} probability of {unit} {int(np.argmin(probabilities))} is 0, expected 1 to 255")
    words = body[count:].view(_WORD).astype(np.uint32)  # native order, aligned: what constriction reads
    if words[-1] == 0:
        state = int(words[-2])
        raise PayloadError(f"{what} starts in state {state}, below the minimum {INITIAL_STATE}: its top word is 0")
    return probabilities, words


def _phase_probabilities(bits: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``q_i = round(256 * ones_i / count_i)`` per phase, clipped to [1, 255]; 128 for an empty phase."""
    phases = mask_phases(shape)
    if phases == 1:
        return _probability_bytes([np.count_nonzero(bits)], [bits.size])
    padded = np.zeros(-(-bits.size // phases) * phases, dtype=np.uint8)
    padded[: bits.size] = bits
    return _probability_bytes(padded.reshape(-1, phases).sum(axis=0, dtype=np.int64), _phase_counts(bits.size, phases))


def _phase_counts(numel: int, phases: int) -> np.ndarray:
    """Elements per phase of a mask of ``numel`` elements."""
    return np.full(phases, numel // phases) + (np.arange(phases) < numel % phases)


def _phase_period(phases: int) -> int:
    """Packed bytes ``s`` and ``s + T`` have their bit 0 at the same phase: ``T = P / gcd(8, P)``."""
    return phases // math.gcd(8, phases)


def _probability_bytes(ones: Sequence[int] | np.ndarray, counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """``round(256 * ones / count)`` clipped to [1, 255]; 128 where the count is 0."""
    ones, counts = np.asarray(ones, dtype=np.int64), np.asarray(counts, dtype=np.int64)
    rounded = (512 * ones + counts) // np.maximum(2 * counts, 1)
    return np.where(counts > 0, np.clip(rounded, 1, 255), 128).astype(np.uint8)


def _frequencies(bit_q: np.ndarray) -> np.ndarray:
    """Each byte symbol's frequency (int64, >= 1, summing to 2**24); bit ``k`` is 1 with probability ``bit_q[k] / 256``.

    ``bit_q``: uint8 of shape ``(..., 8)``; returns shape ``(..., 256)``. The exact byte
    probability is a product of eight factors ``q`` or ``256 - q``, out of ``256**8 = 2**64``;
    dropping its low 40 bits gives a frequency out of ``2**24``, and the few units lost to
    rounding go to the most probable symbol (the first of equals).
    """
    q = bit_q.astype(np.uint64)[..., None, :]  # (..., 1, 8)
    factors = np.where(_BITS == 1, q, np.uint64(256) - q)  # (..., 256, 8)
    freq = np.maximum(np.prod(factors, axis=-1, dtype=np.uint64) >> np.uint64(64 - PRECISION), 1).astype(np.int64)
    top = np.argmax(freq, axis=-1)[..., None]
    np.put_along_axis(freq, top, np.take_along_axis(freq, top, -1) + (1 << PRECISION) - freq.sum(-1, keepdims=True), -1)
    return freq


@functools.lru_cache(maxsize=4096)
def _model(bit_q: bytes) -> constriction.stream.model.Categorical:
    """constriction's model of a byte whose bit ``k`` is 1 with probability ``bit_q[k] / 256``: :func:`_frequencies`.

    Its quantiser gives symbol ``i`` the frequency ``1 + floor(w_i * (2**24 - 256) / sum(w))``
    with integer left ends; weights ``w = freq - 1`` summing to ``2**24 - 256`` make that scale
    exactly 1.0 and every sum an exact float, so the table is ``freq`` on every machine.
    """
    freq = _frequencies(np.frombuffer(bit_q, dtype=np.uint8))
    return _Categorical((freq - 1).astype(np.float64), perfect=False)


def _phase_row(probabilities: np.ndarray, first: int) -> bytes:
    """The bit probabilities of a packed byte whose bit 0 sits at phase ``first``."""
    return probabilities[(first + np.arange(8)) % probabilities.size].tobytes()


def _encode_stream(groups: Sequence[tuple[np.ndarray, bytes]]) -> bytes:
    """The words (little-endian bytes) coding each group's uint8 symbols under its bit probabilities, first first."""
    coder = _AnsCoder(np.array([INITIAL_STATE & 0xFFFFFFFF, INITIAL_STATE >> 32], dtype=np.uint32))
    for symbols, bit_q in reversed(groups):  # a stack: the last group in is the first out
        if symbols.size:
            coder.encode_reverse(symbols.astype(np.int32), _model(bit_q))
    return coder.get_compressed().astype(_WORD).tobytes()


def _decode_stream(
    words: np.ndarray, groups: Sequence[tuple[int, bytes]]
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Decode groups of ``(symbol count, bit probabilities)`` from ``words``: ``(group, first index, uint8 symbols)``.

    A chunk at a time; once the last chunk is taken, every word must have been read and the
    state be back at ``INITIAL_STATE``.
    """
    coder = _AnsCoder(words)  # its top word is nonzero (checked), so it starts in a state >= 2**32
    total = sum(count for count, _ in groups)
    for group, (count, bit_q) in enumerate(groups):
        for lo in range(0, count, _CHUNK_SYMBOLS):
            yield group, lo, coder.decode(_model(bit_q), min(_CHUNK_SYMBOLS, count - lo)).astype(np.uint8)
    left, state = coder.pos()
    if left:
        raise PayloadError(f"coded mask has {left} words left after its {total} symbols, expected 0")
    if state != INITIAL_STATE:
        raise PayloadError(f"coded mask ends in state {state}, expected {INITIAL_STATE}: truncated or corrupt")
