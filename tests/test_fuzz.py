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
