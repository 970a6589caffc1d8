#!/usr/bin/env python
"""Validation BD-rate against cumulative training CPU hours, from the ledgers of the model cards.

    python tools/plot_ledger.py [--anchor ms-hyperprior] [-o tools/results/training_ledger.png]

Each card's ledger has one line per session (tools/ledger.py): global step, CPU hours, BD-rate (PSNR) on BSDS500
test against the models it was validated against. One curve per model, one point per session.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_card import MODELS_DIR, read_card  # noqa: E402


def ledger_points(anchor: str, models_dir: Path = MODELS_DIR) -> dict[str, list[tuple[float, float, int]]]:
    """model -> [(CPU hours, BD-rate % vs anchor, global step)] for every ledger line that names the anchor."""
    key = f"bd_rate_psnr_vs_{anchor}_percent"
    points = {}
    for path in sorted(models_dir.glob("*.toml")):
        lines = [line for line in read_card(path.stem, models_dir).get("ledger", []) if key in line]
        if lines:
            points[path.stem] = [(line["cpu_hours"], line[key], line["global_step"]) for line in lines]
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--anchor", default="ms-hyperprior", help="BD-rate reference named in the ledgers")
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).parent / "results" / "training_ledger.png")
    args = parser.parse_args()
    points = ledger_points(args.anchor)
    if not points:
        raise SystemExit(f"no ledger line names {args.anchor}; write one with tools/ledger.py")
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, rows in points.items():
        hours, rates, steps = zip(*rows)
        axis.plot(hours, rates, marker="o", label=name)
        for hour, rate, step in rows:
            axis.annotate(f"{step:,}", (hour, rate), textcoords="offset points", xytext=(4, 4), fontsize=7)
    axis.axhline(0, color="grey", linewidth=0.8)
    axis.set_xlim(left=0)
    axis.set_xlabel("training CPU hours (cumulative, this model's run)")
    axis.set_ylabel(f"BD-rate PSNR vs {args.anchor} (%), BSDS500 test")
    axis.set_title("Validation after each session (labels: global step)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.output, dpi=120, bbox_inches="tight")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
