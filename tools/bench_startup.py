#!/usr/bin/env python
"""Whole-process start-up of the `codec` command: best of N cold processes per command, as a user runs them.

    python tools/bench_startup.py [--repeats 5] [--image ../shared/data/kodak/kodim23.png] [--out FILE.md]

Goals (issue 24): `codec --help` / `models` / `info` under 0.5 s (they import no torch), `codec encode` of a
768x512 PNG under 3.5 s from a cold process. Also reports which heavy modules each command imported.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from photos import kodak_photos  # noqa: E402
from timing import cpu_description  # noqa: E402

HEAVY = ("torch", "compressai.datasets", "torch_geometric")


def best_of(repeats: int, command: list[str]) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        best = min(best, time.perf_counter() - started)
    return best


def imported(args: list[str]) -> list[str]:
    """Which of HEAVY the command's process imported (run in-process through codec.cli.main)."""
    probe = ("import sys, contextlib, io\nfrom codec.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()): main(sys.argv[1:])\n"
             f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, check=True)
    return [name for name in result.stdout.strip().split(",") if name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--image", type=Path, help="a 768x512 PNG (default: Kodak kodim23)")
    parser.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = parser.parse_args()
    image = args.image or next((p for p in kodak_photos() if p.name == "kodim23.png"), None)
    if image is None or not image.exists():
        raise SystemExit("no sample image: pass --image (a 768x512 PNG)")
    codec = [sys.executable, "-m", "codec"]
    with tempfile.TemporaryDirectory() as folder:
        coded = Path(folder) / "x.bin"
        subprocess.run([*codec, "encode", str(image), "-o", str(coded)], check=True, capture_output=True)
        commands = {
            "codec --help": ["--help"],
            "codec models": ["models"],
            "codec info x.bin": ["info", str(coded)],
            f"codec encode {image.name}": ["encode", str(image), "-o", str(Path(folder) / "y.bin"), "--force"],
            "codec decode x.bin": ["decode", str(coded), "-o", str(Path(folder) / "y.png"), "--force"],
        }
        rows = [f"whole-process start-up, best of {args.repeats} ({cpu_description()}, python -m codec)", "",
                "| command | seconds | heavy modules imported |", "|---|---|---|"]
        for label, command in commands.items():
            seconds = best_of(args.repeats, [*codec, *command])
            heavy = imported(command) if command != ["--help"] else []
            rows.append(f"| `{label}` | {seconds:.2f} | {', '.join(heavy) or 'none'} |")
    print("\n".join(rows))
    if args.out:
        args.out.write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
