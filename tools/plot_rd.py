#!/usr/bin/env python
"""Plot PSNR and MS-SSIM vs bpp (0-2 bpp) from CompressAI-format result files.

    python tools/plot_rd.py tools/results/rd_curves/kodak-metrics/*.json --published -o tools/results/kodak_rd.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bdrate import load_curves, quality_values  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="+")
    parser.add_argument("--published", action="store_true")
    parser.add_argument("--title", default="Kodak")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    curves = load_curves(args.results, args.published)
    figure, axes = plt.subplots(1, 2, figsize=(13, 5))
    for name, curve in curves.items():
        style = "--" if "published" in name else "-"
        for axis, metric in zip(axes, ("psnr-rgb", "ms-ssim-rgb")):
            axis.plot(curve["bpp"], quality_values(curve, metric), style, marker="o", markersize=3, label=name)
    for axis, label in zip(axes, ("PSNR (dB)", "MS-SSIM (dB, -10 log10(1 - MS-SSIM))")):
        axis.set_xlim(0, 2)
        axis.set_xlabel("bits per pixel")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.set_title(f"{args.title}: {label.split(' ')[0]}")
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
