"""Table-indexed ANS coding with constriction (Bamler, constriction).

Symbols are grouped by table; the groups go onto one ANS stack in descending table order so the decoder, which
knows every symbol's table from what it decoded before, pops them in ascending order without any side information.

The stream is constriction's uint32 words, little-endian, without the zero high bytes of the last word (the top of
the ANS state, often small: ~1.5 bytes saved on average, which counts in a 150-byte feature payload); the decoder
pads them back. Streams of whole words (container versions 1-3) decode unchanged.
"""
from __future__ import annotations

import constriction
import numpy as np

from codec.entropy.escape import EscapeReader, encode_escapes
from codec.entropy.tables import PRECISION, TableSet
from codec.errors import CodecError


def _model(tables: TableSet, table: int) -> constriction.stream.model.Categorical:
    counts = tables.counts[table, : tables.lengths[table]].astype(np.float64)
    return constriction.stream.model.Categorical(counts, perfect=False)


def _groups(table_index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions sorted by table (stable), the tables present, and where each table's run starts/ends."""
    small = table_index.astype(np.uint16)  # numpy sorts 16-bit integers stably with a radix sort
    order = np.argsort(small, kind="stable")
    counts = np.bincount(small, minlength=1)
    present = np.flatnonzero(counts)
    starts = np.concatenate(([0], np.cumsum(counts[present])))
    return order, present, starts


def _check_index(table_index: np.ndarray, tables: TableSet) -> None:
    if table_index.size and (table_index.min() < 0 or table_index.max() >= tables.num_tables):
        raise CodecError("table index out of range")


def _prepare(symbols: np.ndarray, table_index: np.ndarray, tables: TableSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(in-table values with escapes marked, table indices, out-of-range mask), all flat."""
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    table_index = np.asarray(table_index, dtype=np.int64).ravel()
    _check_index(table_index, tables)
    values = symbols - tables.offsets[table_index]
    escape = tables.lengths[table_index] - 1
    out_of_range = (values < 0) | (values >= escape)
    return np.where(out_of_range, escape, values).astype(np.int32), table_index, out_of_range


def encode_passes(passes: list[tuple[np.ndarray, np.ndarray]], tables: TableSet) -> tuple[bytes, bytes]:
    """Code several (symbols, table_index) passes onto one ANS stack, so that `PassDecoder` pops them in order.

    A context model needs this: the table index of pass k depends on the symbols of passes < k, so the decoder
    learns each pass's tables only after decoding the passes before it. Returns (ANS stream, escape stream)."""
    prepared = [_prepare(symbols, table_index, tables) for symbols, table_index in passes]
    encoder = constriction.stream.stack.AnsCoder()
    for values, table_index, _ in reversed(prepared):
        order, present, starts = _groups(table_index)
        for group in range(len(present) - 1, -1, -1):
            positions = order[starts[group] : starts[group + 1]]
            encoder.encode_reverse(values[positions], _model(tables, int(present[group])))
    words = encoder.get_compressed().astype("<u4").tobytes()
    escaped = [np.asarray(symbols, dtype=np.int64).ravel()[mask] for (symbols, _), (_, _, mask) in zip(passes, prepared)]
    return trim_last_word(words), encode_escapes(np.concatenate(escaped) if escaped else np.zeros(0, np.int64))


def encode_symbols(symbols: np.ndarray, table_index: np.ndarray, tables: TableSet) -> tuple[bytes, bytes]:
    """Code integer `symbols` (any shape) each with table `table_index` (same shape).

    Returns (ANS stream as little-endian uint32 words, escape stream)."""
    return encode_passes([(symbols, table_index)], tables)


def trim_last_word(words: bytes) -> bytes:
    """Drop up to 3 trailing zero bytes (the high bytes of the last little-endian word); `pad_words` restores them."""
    keep = len(words)
    while keep > len(words) - 3 and keep > 0 and words[keep - 1] == 0:
        keep -= 1
    return words[:keep]


def pad_words(stream: bytes) -> bytes:
    """Inverse of `trim_last_word`: zero bytes up to a whole number of 32-bit words."""
    return bytes(stream) + b"\0" * (-len(stream) % 4)


class PassDecoder:
    """Decodes the passes `encode_passes` wrote, one call per pass, in the order they were given to it."""

    def __init__(self, stream: bytes, escapes: bytes, tables: TableSet) -> None:
        words = np.frombuffer(pad_words(stream), dtype="<u4").astype(np.uint32)
        try:
            self.decoder = constriction.stream.stack.AnsCoder(words)
        except (ValueError, RuntimeError, AssertionError) as error:
            raise CodecError(f"corrupt bitstream: entropy decoding failed ({error})") from None
        self.escapes = EscapeReader(escapes)
        self.tables = tables

    def decode(self, table_index: np.ndarray) -> np.ndarray:
        """The next pass's int64 symbols, shaped like `table_index`."""
        tables = self.tables
        shape = np.shape(table_index)
        table_index = np.asarray(table_index, dtype=np.int64).ravel()
        _check_index(table_index, tables)
        values = np.empty(len(table_index), dtype=np.int64)
        order, present, starts = _groups(table_index)
        try:
            for group in range(len(present)):
                positions = order[starts[group] : starts[group + 1]]
                values[positions] = self.decoder.decode(_model(tables, int(present[group])), len(positions))
        except (ValueError, RuntimeError, AssertionError) as error:
            raise CodecError(f"corrupt bitstream: entropy decoding failed ({error})") from None
        escape = tables.lengths[table_index] - 1
        is_escape = values == escape
        symbols = values + tables.offsets[table_index]
        symbols[is_escape] = self.escapes.read(int(is_escape.sum()))
        return symbols.reshape(shape)

    def finish(self) -> None:
        """Refuse a stream `encode_passes` did not write: ANS words or escape bytes left over, or a decoder that did
        not end in the encoder's initial state (ANS decoding is the exact inverse of encoding, so an honest stream
        always does; an empty or made-up one, e.g. a tiny file claiming a huge image, does not)."""
        if not self.decoder.is_empty():
            raise CodecError("corrupt bitstream: the entropy-coded stream does not end where its symbols do")
        self.escapes.finish()


def decode_symbols(stream: bytes, escapes: bytes, table_index: np.ndarray, tables: TableSet) -> np.ndarray:
    """Inverse of `encode_symbols`; returns int64 symbols shaped like `table_index`."""
    decoder = PassDecoder(stream, escapes, tables)
    symbols = decoder.decode(table_index)
    decoder.finish()
    return symbols


def ideal_bits(symbols: np.ndarray, table_index: np.ndarray, tables: TableSet) -> float:
    """-log2 p of the symbols under the integer tables, plus 8 bits per escape-stream byte."""
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    table_index = np.asarray(table_index, dtype=np.int64).ravel()
    values = symbols - tables.offsets[table_index]
    escape = tables.lengths[table_index] - 1
    out_of_range = (values < 0) | (values >= escape)
    values = np.where(out_of_range, escape, values)
    counts = tables.counts[table_index, values].astype(np.float64)
    bits = float(np.sum(PRECISION - np.log2(counts)))
    return bits + 8 * len(encode_escapes(symbols[out_of_range]))
