#!/usr/bin/env python
"""What encoder-side latent refinement (codec.image.refine, `codec encode --refine STEPS`) buys: one model with and
without refinement on the same Kodak images, beside JPEG / WebP / AVIF on those images, all in one run.

    python tools/eval_refine.py [--model mean-scale-context] [--images 6] [--steps 60]

Writes the curves to tools/results/rd_curves/kodak-first<N>-refine-metrics/, BD-rate tables (PSNR, MS-SSIM) to
tools/results/kodak-first<N>-refine_bdrate.md and the RD plot beside them; prints the mean encode time per image
with and without refinement. Refinement costs `steps` passes of the latent codec and g_s per image, so this uses the
first N Kodak images (all 24 at 60 steps: about 2 hours on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", category=FutureWarning)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from codec.image.refine import DEFAULT_STEPS  # noqa: E402
from eval_image import RESULTS, baseline_files, model_file, write_report  # noqa: E402
from photos import kodak_photos  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mean-scale-context")
    parser.add_argument("--images", type=int, default=6, help="first N Kodak images")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="refinement steps per image")
    parser.add_argument("--qualities", type=float, nargs="+", help="default: every level")
    args = parser.parse_args()
    if args.images < 1 or args.steps < 1:
        parser.error("--images and --steps must be positive")
    paths = kodak_photos()[: args.images]
    label = f"kodak-first{len(paths)}-refine"
    folder = RESULTS / "rd_curves" / f"{label}-metrics"
    folder.mkdir(parents=True, exist_ok=True)
    files = baseline_files(label, paths, folder, reuse=False)
    files[args.model] = model_file(args.model, label, paths, folder, args.qualities)
    refined = f"{args.model}+refine{args.steps}"
    files[refined] = model_file(args.model, label, paths, folder, args.qualities, args.steps, refined)
    write_report(label, files, len(paths), published=False)
    for series in (args.model, refined):
        times = json.loads(files[series].read_text())["results"]["encoding_time"]
        print(f"{series}: mean encode time {sum(times) / len(times):.2f} s per image")


if __name__ == "__main__":
    main()
