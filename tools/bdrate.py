#!/usr/bin/env python
"""BD-rate table (Bjøntegaard, PCHIP over log-rate) between CompressAI-format result files.

    python tools/bdrate.py tools/results/rd_curves/kodak-metrics/*.json [--published] [--metric psnr-rgb|ms-ssim-rgb]

Rows are the tested curves, columns the anchors; each cell is the rate change of the row against the column
(negative = fewer bits for the same quality). MS-SSIM is compared in dB: -10 log10(1 - MS-SSIM).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from codec.metrics import bd_rate  # noqa: E402
from published import PUBLISHED_KODAK  # noqa: E402


def load_curves(paths: list[Path], published: bool) -> dict[str, dict]:
    curves = {}
    for path in paths:
        data = json.loads(path.read_text())
        curves[data["name"]] = data["results"]
    if published:
        curves.update(PUBLISHED_KODAK)
    return curves


def quality_values(curve: dict, metric: str) -> list[float]:
    values = curve[metric]
    return [-10 * math.log10(max(1e-12, 1 - v)) for v in values] if metric == "ms-ssim-rgb" else values


def table(curves: dict[str, dict], metric: str, bpp_range: tuple[float, float] = (0.0, 2.0)) -> tuple[list[str], list[list[str]]]:
    names = list(curves)
    rows = []
    for test in names:
        row = []
        for anchor in names:
            if test == anchor:
                row.append("—")
                continue
            try:
                a, t = curves[anchor], curves[test]
                a_keep = [i for i, b in enumerate(a["bpp"]) if bpp_range[0] <= b <= bpp_range[1]]
                t_keep = [i for i, b in enumerate(t["bpp"]) if bpp_range[0] <= b <= bpp_range[1]]
                value = bd_rate([a["bpp"][i] for i in a_keep], [quality_values(a, metric)[i] for i in a_keep],
                                [t["bpp"][i] for i in t_keep], [quality_values(t, metric)[i] for i in t_keep])
                row.append(f"{value:+.1f} %")
            except ValueError:
                row.append("n/a")
        rows.append(row)
    return names, rows


def markdown(names: list[str], rows: list[list[str]]) -> str:
    lines = ["| test \\ anchor | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(row) + " |" for name, row in zip(names, rows)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="+")
    parser.add_argument("--published", action="store_true", help="add CompressAI's published Kodak curves")
    parser.add_argument("--metric", default="psnr-rgb", choices=("psnr-rgb", "ms-ssim-rgb"))
    args = parser.parse_args()
    print(markdown(*table(load_curves(args.results, args.published), args.metric)))


if __name__ == "__main__":
    main()
