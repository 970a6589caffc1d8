"""Unlabelled photo thumbnails for head distillation (tools/photos.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from photos import random_thumbnails  # noqa: E402


def _photos(folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for index, (height, width) in enumerate([(80, 120), (200, 90)]):
        path = folder / f"photo{index}.png"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_thumbnails_have_the_asked_size_and_repeat_with_the_seed(tmp_path):
    photos = _photos(tmp_path)
    first = random_thumbnails(photos, 10, 32, seed=3)
    assert first.shape == (10, 32, 32, 3) and first.dtype == np.uint8
    assert np.array_equal(first, random_thumbnails(photos, 10, 32, seed=3))
    assert not np.array_equal(first, random_thumbnails(photos, 10, 32, seed=4))


def test_no_photos_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="needs photos"):
        random_thumbnails([], 4, 32, seed=0)
