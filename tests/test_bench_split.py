"""tools/bench_split.py labels: a table never calls a subset of a test set the whole set."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from bench_split import set_label  # noqa: E402


def test_a_subset_is_labelled_with_its_size_and_the_whole_set_as_full():
    assert set_label("val (mostly ImageNet-train)", 1000, 3925) == \
        "val (mostly ImageNet-train), 1000 of 3925 spread over the classes"
    assert set_label("test set (JPEG q75 copy)", 10000, 10000) == "full test set (JPEG q75 copy)"
