"""Golden files: each shipped image model codes a fixed picture to pinned container bytes and decodes them to pinned
pixels (re-pinned deliberately with tools/make_golden.py when weights change)."""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
sys.path.insert(0, str(ROOT / "tools"))

from make_golden import golden_picture, machine  # noqa: E402

from codec.api import decode_image, encode_image  # noqa: E402
from codec.zoo import model_cards  # noqa: E402

INDEX = json.loads((GOLDEN / "golden.json").read_text())
IMAGE_MODELS = sorted(name for name, card in model_cards().items() if card.kind == "image")


def test_every_shipped_image_model_has_golden_files():
    assert set(IMAGE_MODELS) <= set(INDEX), "run tools/make_golden.py for the new model"
    for name in IMAGE_MODELS:
        assert INDEX[name]["weights_sha256"] == model_cards()[name].sha256, \
            f"{name}'s weights changed: re-pin with tools/make_golden.py --models {name}"


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_golden_container_and_pixels(name):
    pinned = INDEX[name]
    golden_bytes = (GOLDEN / f"{name}.bin").read_bytes()
    assert hashlib.sha256(golden_bytes).hexdigest() == pinned["container_sha256"]
    decoded = decode_image(golden_bytes, fast=False)
    reference = Image.open(GOLDEN / f"{name}.png")
    assert decoded.size == reference.size == (96, 64)
    if machine() == pinned["machine"]:  # the CPU and torch build that pinned them: bit for bit
        assert hashlib.sha256(decoded.tobytes()).hexdigest() == pinned["pixels_sha256"]
        assert encode_image(golden_picture(), name, pinned["quality"], fast=False) == golden_bytes
    else:  # other float rounding in g_s: the same picture, not the same bits
        difference = np.asarray(decoded, np.float64) - np.asarray(reference, np.float64)
        assert 10 * np.log10(255.0**2 / max(np.mean(difference**2), 1e-12)) > 45
