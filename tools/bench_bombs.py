#!/usr/bin/env python
"""Decompression bombs: the smallest valid containers that claim the largest images, decoded by `codec decode`.

    python tools/bench_bombs.py                      # every shipped image model, 1 / 4 / 16 / 67 MP claims
    python tools/bench_bombs.py --sides 1024 --models ms-hyperprior

A container whose entropy-coded sections are empty is valid: it is the honest coding of latents that sit at
quantile 0 of every table, so a decoder cannot refuse it and must do the whole decode (a few dozen bytes for any
size). For each model and each claimed side (square images up to the default limit of 2^26 pixels) this writes that
container, decodes it in its own process and records wall time and peak RSS (wait4); then the largest claim again
with `--max-pixels` below it, which must be refused before any model is loaded. Writes tools/results/bombs.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from PIL import Image
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from codec import bitstream  # noqa: E402
from timing import run_measured  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SIDES = (1024, 2048, 4096, 8192)  # 8192^2 = 2^26, the default --max-pixels
BLOCK = 64  # every shipped image model pads to multiples of 64 pixels


def bomb(model: str, side: int) -> bytes:
    """A valid container for a side x side image with empty entropy-coded sections (from a coded 64x64 image,
    its latent shapes scaled to the claimed size)."""
    from codec.api import encode_image

    small = bitstream.parse(encode_image(Image.new("RGB", (BLOCK, BLOCK), (128, 128, 128)), model=model))
    blocks = -(-side // BLOCK)
    shapes = [(*shape[:-2], shape[-2] * blocks, shape[-1] * blocks) for shape in small.shapes]
    claim = bitstream.Container("image", small.model, small.weights_digest, small.quality, side, side,
                                shapes=shapes, sections=[b""] * len(small.sections))
    return bitstream.write(claim)


def decode_measured(container: Path, output: Path, max_pixels: int | None = None) -> dict:
    """`codec decode` in its own process: exit status, wall seconds, peak RSS (MiB), the error line if any."""
    command = [sys.executable, "-m", "codec", "decode", str(container), "-o", str(output), "--force"]
    if max_pixels is not None:
        command += ["--max-pixels", str(max_pixels)]
    return run_measured(command, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def measure(models: list[str], sides: tuple[int, ...]) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for model in tqdm(models, desc="models"):
            for side in sides:
                path = Path(folder) / f"{model}-{side}.bin"
                path.write_bytes(bomb(model, side))
                result = decode_measured(path, Path(folder) / "out.png")
                rows.append({"model": model, "side": side, "megapixels": round(side * side / 1e6, 1),
                             "container_bytes": path.stat().st_size, **result})
            refused = decode_measured(path, Path(folder) / "refused.png", max_pixels=side * side - 1)
            rows.append({"model": model, "side": side, "megapixels": round(side * side / 1e6, 1),
                         "container_bytes": path.stat().st_size, "max_pixels": side * side - 1, **refused})
            (Path(folder) / "out.png").unlink(missing_ok=True)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| model | claimed image | container | --max-pixels | exit | seconds | peak RSS |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        limit = f"{row['max_pixels']:,}" if "max_pixels" in row else "default (2^26)"
        lines.append(f"| {row['model']} | {row['side']}x{row['side']} ({row['megapixels']} MP) | "
                     f"{row['container_bytes']} B | {limit} | {row['exit']} | {row['seconds']} | "
                     f"{row['peak_rss_mib']} MiB |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from codec.zoo import model_cards

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", help="default: every shipped image model")
    parser.add_argument("--sides", type=int, nargs="+", default=list(SIDES), help="claimed square image sides")
    parser.add_argument("--out", type=Path, default=RESULTS / "bombs.json")
    args = parser.parse_args()
    if max(args.sides) ** 2 > bitstream.DEFAULT_MAX_PIXELS:
        parser.error(f"claims above the default limit of {bitstream.DEFAULT_MAX_PIXELS} pixels are refused anyway")
    models = args.models or sorted(name for name, card in model_cards().items() if card.kind == "image")
    rows = measure(models, tuple(sorted(args.sides)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(rows))
    print(markdown(rows))
    decoded = [row for row in rows if "max_pixels" not in row]
    refused = [row for row in rows if "max_pixels" in row]
    sys.exit(0 if all(row["exit"] == 0 for row in decoded) and all(row["exit"] == 1 for row in refused) else 1)


if __name__ == "__main__":
    main()
