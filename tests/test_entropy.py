"""Entropy core: PMF quantization, round trips over random parameters, escapes, pinned bytes, ideal bits."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.entropy import PRECISION, TableSet, decode_symbols, encode_symbols, ideal_bits, quantize_pmf
from codec.entropy.escape import decode_escapes, encode_escapes
from codec.entropy.gaussian import build_gaussian_tables, default_scale_table, scale_indices
from codec.errors import CodecError


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=300), st.floats(0, 1))
def test_quantize_pmf_sums_to_total_and_keeps_every_symbol(pmf, tail):
    counts = quantize_pmf(np.array(pmf), tail)
    assert counts.sum() == 1 << PRECISION
    assert counts.min() >= 1
    assert len(counts) == len(pmf) + 1


def test_quantize_pmf_is_close_to_the_float_pmf():
    pmf = np.array([0.5, 0.25, 0.125, 0.125])
    counts = quantize_pmf(pmf, 0.0)
    assert np.allclose(counts[:-1] / (1 << PRECISION), pmf, atol=1e-4)


def _random_tables(rng: np.random.Generator, count: int) -> TableSet:
    pmfs = [rng.random(rng.integers(1, 40)) ** 3 for _ in range(count)]
    offsets = [int(rng.integers(-20, 5)) for _ in range(count)]
    return TableSet.from_pmfs(pmfs, offsets, [float(rng.random()) * 0.01 for _ in range(count)])


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 500), st.integers(1, 12))
def test_round_trip_random_tables_and_symbols(seed, size, num_tables):
    rng = np.random.default_rng(seed)
    tables = _random_tables(rng, num_tables)
    table_index = rng.integers(0, num_tables, size)
    low = tables.offsets[table_index] - 3
    high = tables.offsets[table_index] + tables.lengths[table_index] + 3
    symbols = rng.integers(low, high) if size else np.zeros(0, dtype=np.int64)
    if size and rng.random() < 0.3:
        symbols[rng.integers(0, size)] = int(rng.integers(-(2**31) + 1, 2**31 - 1))  # far escape
    stream, escapes = encode_symbols(symbols, table_index, tables)
    decoded = decode_symbols(stream, escapes, table_index, tables)
    np.testing.assert_array_equal(decoded, symbols)


def test_gaussian_round_trip_with_escapes_and_means():
    rng = np.random.default_rng(1)
    scale_table = default_scale_table()
    tables = build_gaussian_tables(scale_table)
    import torch

    scales = torch.from_numpy(rng.uniform(0.05, 300, size=(2, 8, 16, 16)))
    indices = scale_indices(scales, torch.from_numpy(scale_table)).numpy()
    symbols = np.round(rng.normal(0, scales.numpy())).astype(np.int64)
    symbols.flat[::97] = 100000  # far outside every table: escapes
    stream, escapes = encode_symbols(symbols, indices, tables)
    assert len(escapes) > 0
    np.testing.assert_array_equal(decode_symbols(stream, escapes, indices, tables), symbols)


def test_scale_indices_pick_the_smallest_table_scale_not_below():
    import torch

    table = torch.tensor([0.5, 1.0, 2.0])
    got = scale_indices(torch.tensor([0.1, 0.5, 0.7, 1.0, 1.5, 9.0]), table)
    assert got.tolist() == [0, 0, 1, 1, 2, 2]


def test_pinned_bytes():
    """The format must not drift: these exact bytes come from this input (change only with a version bump)."""
    tables = TableSet.from_pmfs([np.array([0.6, 0.3, 0.1]), np.array([0.1, 0.2, 0.3, 0.4])], [0, -2], [0.01, 0.0])
    symbols = np.array([0, 1, 2, 0, -2, -1, 0, 1, 7, 0])
    table_index = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 0])
    stream, escapes = encode_symbols(symbols, table_index, tables)
    assert stream.hex() == PINNED_STREAM
    assert escapes == bytes([14])
    assert hashlib.sha256(tables.counts.tobytes()).hexdigest()[:16] == PINNED_TABLES


PINNED_STREAM = "8b911b4ac31b"  # version 4: the last word's zero high bytes dropped (v3: ...0000)
PINNED_TABLES = "ed9cff5186904b47"


def test_ideal_bits_match_actual_size():
    rng = np.random.default_rng(3)
    tables = build_gaussian_tables(default_scale_table())
    indices = rng.integers(0, 64, 50000)
    symbols = np.round(rng.normal(0, default_scale_table()[indices])).astype(np.int64)
    stream, escapes = encode_symbols(symbols, indices, tables)
    ideal = ideal_bits(symbols, indices, tables)
    actual = 8 * (len(stream) + len(escapes))
    assert ideal <= actual <= ideal * 1.001 + 64


def test_random_bytes_are_refused_where_the_ans_stream_does_not_end_with_its_symbols():
    """ANS decoding is the exact inverse of encoding: an honest stream ends in the encoder's initial (empty) state.
    Random words decode to symbols of the table but do not end there, and are refused; the empty stream is the honest
    coding of symbols that all sit at quantile 0. Pinned for this seed."""
    tables = TableSet.from_pmfs([np.array([0.5, 0.5])], [0], [0.01])
    index = np.zeros(100, dtype=np.int64)
    rng = np.random.default_rng(0)
    outcomes = {}
    for length in (0, 1, 3, 4, 7, 8, 400):  # any length: a partial last word is padded (version 4 trims them)
        data = rng.bytes(length)
        try:
            decoded = decode_symbols(data, b"", index, tables)
        except CodecError as error:
            outcomes[length] = "escapes" if "escape stream ends early" in str(error) else "refused"
            assert outcomes[length] == "escapes" or "does not end where its symbols do" in str(error)
            continue
        assert np.array_equal(decoded, np.zeros(100))  # quantile 0 throughout
        assert encode_symbols(decoded, index, tables) == (b"", b"")
        outcomes[length] = "decoded"
    assert outcomes == {0: "decoded", 1: "refused", 3: "refused", 4: "refused", 7: "refused", 8: "refused",
                        400: "escapes"}


def test_escape_stream_round_trip_and_errors():
    values = np.array([0, -1, 1, 2**31 - 1, -(2**31) + 1, 300])
    np.testing.assert_array_equal(decode_escapes(encode_escapes(values), len(values)), values)
    with pytest.raises(CodecError):
        decode_escapes(b"\x80", 1)
    with pytest.raises(CodecError):
        decode_escapes(b"\x01\x01", 1)
    with pytest.raises(CodecError):
        decode_escapes(b"\xff\xff\xff\xff\xff\x01", 1)


def test_table_index_out_of_range_is_refused():
    tables = TableSet.from_pmfs([np.array([1.0])], [0], [0.0])
    with pytest.raises(CodecError):
        encode_symbols(np.zeros(3), np.array([0, 1, 0]), tables)


def test_streams_drop_the_last_word_zero_high_bytes_and_whole_word_streams_still_decode():
    from codec.entropy.coder import pad_words, trim_last_word

    tables = TableSet.from_pmfs([np.array([0.6, 0.3, 0.1])], [0], [0.0])
    rng = np.random.default_rng(5)
    trimmed = 0
    for count in range(1, 200, 7):
        symbols = rng.integers(0, 3, count)
        index = np.zeros(count, dtype=np.int64)
        stream, escapes = encode_symbols(symbols, index, tables)
        whole = pad_words(stream)
        assert len(whole) % 4 == 0 and len(whole) - len(stream) <= 3 and whole.startswith(stream)
        trimmed += len(whole) - len(stream)
        for data in (stream, whole):  # version 4 and versions 1-3 (whole words)
            np.testing.assert_array_equal(decode_symbols(data, escapes, index, tables), symbols)
    assert trimmed > 0  # the saving is real on this data
    assert trim_last_word(bytes(8)) == bytes(5)  # never more than 3 bytes, even of an all-zero word
    assert trim_last_word(b"") == b""
