#!/usr/bin/env python
"""Re-pin the golden files (deliberately, when shipped weights change): each shipped image model codes a fixed
synthetic picture on the fp32 path; tests/golden/ keeps the container, the decoded pixels (PNG) and their sha256.

    python tools/make_golden.py [--models ms-hyperprior mgm]

tests/test_golden.py then checks that every shipped image model still writes those exact bytes and decodes them to
those exact pixels (exactly on the CPU that pinned them; on another CPU the float transforms may round
differently, and the test asks for the same picture within 0.5 dB instead).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codec.api import decode_image, encode_image  # noqa: E402
from codec.precision import cpuinfo  # noqa: E402
from codec.zoo import model_cards  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden"


def golden_picture() -> Image.Image:
    """96x64 RGB with smooth gradients, edges and texture: deterministic, no data files needed."""
    rows, cols = np.mgrid[0:64, 0:96].astype(np.float64)
    red = 128 + 100 * np.sin(rows / 7.0) * np.cos(cols / 11.0)
    green = 40 + 2 * cols + 30 * ((rows // 8 + cols // 8) % 2)
    blue = 200 - 2.5 * rows + 20 * np.sin((rows + cols) / 3.0)
    return Image.fromarray(np.clip(np.stack([red, green, blue], axis=2), 0, 255).astype(np.uint8))


def machine() -> str:
    """What float rounding in the transforms depends on: the CPU model and the torch build."""
    import torch

    name = next((line.split(":", 1)[1].strip() for line in cpuinfo().splitlines() if line.startswith("model name")),
                platform.processor())
    return f"{name} / {platform.machine()} / torch {torch.__version__}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", help="default: every shipped image model")
    args = parser.parse_args()
    cards = {name: card for name, card in model_cards().items() if card.kind == "image"}
    GOLDEN.mkdir(parents=True, exist_ok=True)
    index_path = GOLDEN / "golden.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    for name in args.models or sorted(cards):
        card = cards[name]
        data = encode_image(golden_picture(), name, card.default_quality, fast=False)
        decoded = decode_image(data, fast=False)
        (GOLDEN / f"{name}.bin").write_bytes(data)
        decoded.save(GOLDEN / f"{name}.png")
        index[name] = {"quality": card.default_quality, "weights_sha256": card.sha256,
                       "container_sha256": sha256(data), "pixels_sha256": sha256(decoded.tobytes()),
                       "bytes": len(data), "machine": machine()}
        print(f"{name}: {len(data)} bytes, container {sha256(data)[:16]}..., pixels {index[name]['pixels_sha256'][:16]}...")
    index_path.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
