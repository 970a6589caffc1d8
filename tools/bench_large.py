#!/usr/bin/env python
"""Time and peak memory of `codec encode` / `codec decode` against image size (tiled coding), plotted.

    python tools/bench_large.py                 # 1, 4, 12, 24 MP; writes tools/results/large_images.{json,md,png}

Test pictures are a Kodak photo resized (Lanczos) to each size at 3:2. Each encode / decode runs as its own
process; peak memory is that process's maximum resident set size (wait4). Seams: on sizes small enough to code
untiled as well, the PSNR of tiled and untiled coding is compared in-process.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from codec.metrics import psnr  # noqa: E402
from timing import run_measured  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
Image.MAX_IMAGE_PIXELS = None


def run_measured_ok(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one child process; raises if it fails."""
    result = run_measured(command)
    if result["exit"] != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result['error']}")
    return result["seconds"], result["peak_rss_mib"]


def seam_check(source: Path, quality: float) -> dict:
    """PSNR of the same picture coded untiled and tiled (1024-pixel tiles forced), in one process."""
    from codec.api import prepared_model
    from codec.imageio import load_image

    model, _ = prepared_model("ms-hyperprior")
    pixels = load_image(source, 1 << 30).pixels
    height, width = pixels.shape[-2:]
    results = {}
    for label, threshold in (("untiled", 1 << 40), ("tiled", 0)):
        model.tile_threshold = threshold
        decoded = model.decompress(model.compress(pixels, quality), quality, height, width)
        results[label] = float(-10 * np.log10(float(((decoded - pixels) ** 2).mean())))
    model.tile_threshold = type(model).tile_threshold
    return {"psnr_untiled": results["untiled"], "psnr_tiled": results["tiled"],
            "difference_db": results["tiled"] - results["untiled"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megapixels", type=float, nargs="+", default=[1, 4, 12, 24])
    parser.add_argument("--seam-check-up-to", type=float, default=4, help="largest size also coded untiled (MP)")
    parser.add_argument("--quality", type=float, default=3.0)
    parser.add_argument("--source", type=Path, default=KODAK / "kodim23.png")
    parser.add_argument("--out", type=Path, default=RESULTS / "large_images")
    args = parser.parse_args()
    codec = [sys.executable, "-m", "codec"]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for megapixels in args.megapixels:
            width = int(round((megapixels * 1e6 * 1.5) ** 0.5))
            height = int(round(megapixels * 1e6 / width))
            picture = Path(folder) / f"{megapixels:g}mp.png"
            Image.open(args.source).convert("RGB").resize((width, height), Image.Resampling.LANCZOS).save(picture)
            coded, restored = Path(folder) / "coded.bin", Path(folder) / "restored.png"
            encode_s, encode_mib = run_measured_ok([*codec, "encode", str(picture), "-o", str(coded), "--force",
                                                 "--quality", str(args.quality)])
            decode_s, decode_mib = run_measured_ok([*codec, "decode", str(coded), "-o", str(restored), "--force"])
            row = {"megapixels": width * height / 1e6, "width": width, "height": height,
                   "bpp": coded.stat().st_size * 8 / (width * height),
                   "psnr": psnr(Image.open(picture).convert("RGB"), Image.open(restored).convert("RGB")),
                   "encode_seconds": encode_s, "encode_peak_mib": encode_mib,
                   "decode_seconds": decode_s, "decode_peak_mib": decode_mib}
            if megapixels <= args.seam_check_up_to:
                row["seams"] = seam_check(picture, args.quality)
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    lines = ["# Large images: tiled coding, time and peak memory", "",
             f"Produced by `python tools/bench_large.py` (ms-hyperprior, quality {args.quality:g}, "
             f"{os.cpu_count()}-core CPU). Peak memory = maximum RSS of the encode / decode process.", "",
             "| size | MP | bpp | PSNR dB | encode s | encode peak MiB | decode s | decode peak MiB | tiled - untiled dB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        seams = f"{row['seams']['difference_db']:+.4f}" if "seams" in row else "-"
        lines.append(f"| {row['width']}x{row['height']} | {row['megapixels']:.1f} | {row['bpp']:.3f} | "
                     f"{row['psnr']:.2f} | {row['encode_seconds']:.1f} | {row['encode_peak_mib']:.0f} | "
                     f"{row['decode_seconds']:.1f} | {row['decode_peak_mib']:.0f} | {seams} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    sizes = [row["megapixels"] for row in rows]
    for key, label in (("encode", "encode"), ("decode", "decode")):
        left.plot(sizes, [row[f"{key}_seconds"] for row in rows], "o-", label=label)
        right.plot(sizes, [row[f"{key}_peak_mib"] / 1024 for row in rows], "o-", label=label)
    right.axhline(4, color="red", ls="--", label="4 GB goal")
    left.set(xlabel="megapixels", ylabel="seconds", title="time")
    right.set(xlabel="megapixels", ylabel="peak RSS (GiB)", title="peak memory")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(args.out.with_suffix(".png"), dpi=120)
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
