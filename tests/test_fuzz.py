"""A short fuzzing run: hostile containers either decode or raise CodecError, never crash or hang."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))


def test_short_fuzz_run_has_no_crash_or_hang():
    from fuzz_decode import run_api

    from codec.zoo import model_cards

    outcomes, crashes, _ = run_api(count=300, models=sorted(model_cards()), seconds=20.0, seed=1)
    assert outcomes["CRASH"] == 0 and outcomes["HANG"] == 0, crashes[:5]
    assert sum(value for key, value in outcomes.items() if key.endswith("CodecError")) > 100


REGRESSIONS = Path(__file__).resolve().parent / "fuzz_regressions"


def test_every_input_fuzzing_found_replays_cleanly():
    """Each file in tests/fuzz_regressions/ (named TARGET-what) is an input a campaign once failed on; its harness
    must now pass it (decoders: a result or CodecError; round trips: encoder and decoder agree)."""
    import fuzz_coverage

    inputs = sorted(REGRESSIONS.iterdir())
    assert inputs
    for path in inputs:
        fuzz_coverage.RUNNERS[path.name.split("-")[0]](path.read_bytes())  # any exception fails the test


def test_escape_values_the_decoder_refuses_are_refused_by_the_encoder():
    import numpy as np
    import pytest

    from codec.entropy.escape import MAX_ESCAPE, decode_escapes, encode_escapes
    from codec.errors import CodecError

    edge = np.array([MAX_ESCAPE, -MAX_ESCAPE, 0])
    assert np.array_equal(decode_escapes(encode_escapes(edge), 3), edge)
    with pytest.raises(CodecError, match="codable range"):
        encode_escapes(np.array([-(2**31)]))  # found by the round-trip fuzzer: once written, then refused
    with pytest.raises(CodecError, match="codable range"):
        encode_escapes(np.array([np.iinfo(np.int64).min]))  # what NaN becomes as int64; abs() would overflow
