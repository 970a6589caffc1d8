#!/usr/bin/env python
"""Append a session's line to a model card's training ledger, from a `tools/validate_image.py` report.

    python tools/validate_image.py --run RUN --against NAME --json-out /tmp/validation.json
    python tools/ledger.py --card NAME --validation /tmp/validation.json [--shipped]

One line per session: date, global step, cumulative CPU hours of the run, the BD-rate (PSNR, BSDS500 test) of the
run's weights against each model it was validated against, and whether those weights were exported.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from model_card import MODELS_DIR, read_card, write_card  # noqa: E402


def ledger_entry(report: dict, cpu_hours: float, shipped: bool) -> dict:
    return {
        "date": datetime.date.today().isoformat(),
        "global_step": int(report["step"]),
        "cpu_hours": round(cpu_hours, 3),
        "validation_images": int(report["images"]),
        **{f"bd_rate_psnr_vs_{name.replace(' ', '_')}_percent": value for name, value in report["bd_rate_psnr"].items()},
        **({"weights": report["weights"]} if "weights" in report else {}),
        "exported": shipped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--card", required=True, help="model card name (models/NAME.toml)")
    parser.add_argument("--validation", type=Path, required=True, help="JSON written by tools/validate_image.py")
    parser.add_argument("--shipped", action="store_true", help="the validated weights were exported this session")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="where the cards are (default models/)")
    args = parser.parse_args()
    report = json.loads(args.validation.read_text())
    card = read_card(args.card, args.models_dir)
    entry = ledger_entry(report, report["cpu_hours"], args.shipped)
    card["ledger"] = [*card.get("ledger", []), entry]
    write_card(args.card, card, args.models_dir)
    print(json.dumps(entry))


if __name__ == "__main__":
    main()
