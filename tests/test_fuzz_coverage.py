"""A short coverage-guided campaign per target (CI's minute of fuzzing): no crash, no hang, the corpus grows."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("atheris", reason="atheris is a dev dependency (tools/setup.sh installs it)")


@pytest.mark.parametrize("target, seconds", [("container", 15), ("entropy", 15), ("decode", 25), ("roundtrip", 30)])
def test_short_campaign_finds_no_crash(tmp_path, target, seconds):
    corpus = tmp_path / "corpus"
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "fuzz_coverage.py"), target, "--seconds",
                             str(seconds), "--corpus", str(corpus)], capture_output=True, text=True, timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]  # libFuzzer exits non-zero on a crash, a timeout or over-RSS
    assert not list(tmp_path.glob(f"{target}-crash-*")) and not list(tmp_path.glob(f"{target}-timeout-*"))
    executed = int(log.split("stat::number_of_executed_units:")[1].split()[0])
    seeds = len(list(corpus.glob("seed-*")))
    assert executed > 100 and seeds > 0
    assert len(list(corpus.iterdir())) > seeds  # coverage feedback kept new inputs
