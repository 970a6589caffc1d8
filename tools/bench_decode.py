#!/usr/bin/env python
"""Encode and decode time of an image model next to a reference model at the same bpp, side by side in one process.

    python tools/bench_decode.py --model mean-scale-context --reference ms-hyperprior [--threads 2] [--repeats 5]

Every level of --model on a 768x512 Kodak image (kodim23), each next to --reference at the quality (0.25 steps)
whose bpp is closest; whole API calls (container parse, entropy coding, transforms). Writes
tools/results/<model>_decode.{json,md}. The context model's goal: decode at most 2x the mean-scale hyperprior's.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from photos import kodak_photos  # noqa: E402
from timing import cpu_description, speed_report  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mean-scale-context")
    parser.add_argument("--reference", default="ms-hyperprior")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--image", type=Path, help="default: Kodak kodim23 (768x512)")
    parser.add_argument("--out", type=Path, help="default: tools/results/<model>_decode")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image = args.image or next((p for p in kodak_photos() if p.name == "kodim23.png"), None)
    if image is None:
        raise SystemExit("no sample image: pass --image")
    rows = speed_report(args.model, args.reference, image, args.repeats)
    out = args.out or RESULTS / f"{args.model}_decode"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    lines = [f"# {args.model} vs {args.reference}: encode / decode time at the same bpp", "",
             f"`python tools/bench_decode.py --model {args.model} --reference {args.reference}` ({image.name}, best of "
             f"{args.repeats}, {args.threads} threads, {cpu_description()}).", "",
             f"| level | bpp | encode s | decode s | {args.reference} quality | its bpp | its encode s | its decode s | "
             "decode time ratio |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['level']} | {row['bpp']:.3f} | {row['encode_s']:.3f} | {row['decode_s']:.3f} | "
                     f"{row['reference_quality']:g} | {row['reference_bpp']:.3f} | {row['reference_encode_s']:.3f} | "
                     f"{row['reference_decode_s']:.3f} | {row['decode_s'] / row['reference_decode_s']:.2f}x |")
    ratios = [row["decode_s"] / row["reference_decode_s"] for row in rows]
    lines += ["", f"decode time ratio {min(ratios):.2f}-{max(ratios):.2f}x ({args.model} / {args.reference})"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
