#!/usr/bin/env python
"""The full rate-distortion evaluation: our shipped model(s) and JPEG / WebP / AVIF on Kodak and BSDS500 test.

    python tools/eval_image.py [--models ms-hyperprior] [--bsds-images 24] [--reuse-baselines]
                               [--reuse-models mgm]

--reuse-models takes a model's curve from an earlier run instead of measuring it again (its pixels and bits are
deterministic; only its timings would move); a curve that records other weights than the card's is refused.

Writes CompressAI-format JSON to tools/results/<dataset>/, the RD plot (tools/results/<dataset>_rd.png), BD-rate
tables (tools/results/<dataset>_bdrate.md, PSNR and MS-SSIM), and the Kodak / BSDS figures into each model card.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", category=FutureWarning)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bdrate import load_curves, markdown, quality_values, table  # noqa: E402
from codec.api import decode_image, encode_image, prepared_model  # noqa: E402
from codec.baselines import BASELINE_QUALITIES, baseline_encoder, decode_bytes  # noqa: E402
from codec.evaluate import evaluate  # noqa: E402
from codec.errors import CodecError  # noqa: E402
from codec.metrics import bd_rate  # noqa: E402
from codec.zoo import get_card  # noqa: E402
from model_card import read_card, write_card  # noqa: E402
from photos import kodak_photos, validation_photos  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def baseline_files(label: str, paths: list[Path], folder: Path, reuse: bool) -> dict[str, Path]:
    """JPEG / WebP / AVIF curves of `paths` in `folder` (measured, or reused where asked and present)."""
    files = {}
    for codec_name in ("jpeg", "webp", "avif"):
        path = folder / f"{codec_name}.json"
        if not (reuse and path.exists()):
            result = evaluate(codec_name, f"Pillow {codec_name}, {label}", paths, list(BASELINE_QUALITIES),
                              baseline_encoder(codec_name), decode_bytes)
            path.write_text(json.dumps(result, indent=1))
        files[codec_name] = path
    return files


def model_file(name: str, label: str, paths: list[Path], folder: Path, qualities: list[float] | None,
               refine_steps: int = 0, series: str | None = None) -> Path:
    """Measure shipped model `name` on `paths` (every level unless `qualities`), written as `series` (default:
    the model's name) in `folder`."""
    model, card = prepared_model(name)
    model_qualities = qualities or [float(q) for q in range(int(model.max_quality) + 1)]
    series = series or name
    result = evaluate(series, f"codec {card.family}, {label}", paths, model_qualities,
                      lambda image, q: encode_image(image, name, q, refine_steps=refine_steps), decode_image)
    result["weights_sha256"] = card.sha256
    path = folder / f"{series}.json"
    path.write_text(json.dumps(result, indent=1))
    return path


def reused_model_file(name: str, folder: Path) -> Path:
    """Model `name`'s curve from an earlier run in `folder`, refused where it was measured with other weights."""
    path = folder / f"{name}.json"
    if not path.exists():
        raise SystemExit(f"--reuse-models {name}: no earlier curve {path}; measure it with --models {name}")
    recorded = json.loads(path.read_text()).get("weights_sha256")
    shipped = get_card(name).sha256
    if recorded is None:
        print(f"note: {path} predates curves that record their weights; reused as is", file=sys.stderr)
    elif recorded != shipped:
        raise SystemExit(f"--reuse-models {name}: {path} was measured with weights {recorded[:12]}..., the card "
                         f"ships {shipped[:12]}...; measure it again with --models {name}")
    return path


def write_report(label: str, files: dict[str, Path], images: int, published: bool) -> dict:
    """BD-rate tables (PSNR, MS-SSIM) as tools/results/<label>_bdrate.md and the RD plot <label>_rd.png; returns
    the curves."""
    curves = load_curves(list(files.values()), published)
    report = [f"# BD-rate on {label} ({images} images), rows vs columns, 0-2 bpp", ""]
    for metric in ("psnr-rgb", "ms-ssim-rgb"):
        report += [f"## {metric}", "", markdown(*table(curves, metric)), ""]
    (RESULTS / f"{label}_bdrate.md").write_text("\n".join(report))
    command = [sys.executable, str(Path(__file__).parent / "plot_rd.py"), *map(str, files.values()),
               "--title", label, "-o", str(RESULTS / f"{label}_rd.png")] + (["--published"] if published else [])
    subprocess.run(command, check=True)
    print("\n".join(report))
    return curves


def run_dataset(label: str, paths: list[Path], models: list[str], reuse: bool, qualities: list[float] | None,
                reused_models: tuple[str, ...] = ()) -> dict:
    folder = RESULTS / "rd_curves" / f"{label}-metrics"  # our measured curves (JSON), not copies of the data
    folder.mkdir(parents=True, exist_ok=True)
    files = baseline_files(label, paths, folder, reuse)
    for name in reused_models:
        files[name] = reused_model_file(name, folder)
    for name in models:
        files[name] = model_file(name, label, paths, folder, qualities)
    return write_report(label, files, len(paths), published=label == "kodak")


def record_in_cards(label: str, curves: dict, models: list[str], images: int) -> None:
    for name in models:
        card = read_card(name)
        ours = curves[name]
        entry = {
            "images": images,
            "quality": ours["quality"],
            "bpp": [round(v, 4) for v in ours["bpp"]],
            "psnr": [round(v, 3) for v in ours["psnr-rgb"]],
            "ms_ssim": [round(v, 5) for v in ours["ms-ssim-rgb"]],
            "encode_seconds": [round(v, 3) for v in ours["encoding_time"]],
            "decode_seconds": [round(v, 3) for v in ours["decoding_time"]],
            "command": "python tools/eval_image.py",
        }
        for anchor in ("jpeg", "webp", "avif") + tuple(k for k in curves if "published" in k):
            for metric in ("psnr-rgb", "ms-ssim-rgb"):
                key = f"bd_rate_{metric.split('-')[0].replace('ms', 'msssim')}_vs_{anchor.split(' ')[0]}_percent"
                try:
                    value = bd_rate(curves[anchor]["bpp"], quality_values(curves[anchor], metric), ours["bpp"],
                                    quality_values(ours, metric))
                    entry[key] = round(value, 2)
                except ValueError:
                    entry[key] = "no overlap"
        card.setdefault("results", {})[label] = entry
        write_card(name, card)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=["ms-hyperprior"], help="none: baselines only")
    parser.add_argument("--bsds-images", type=int, default=24, help="first N BSDS500 test images (0 = skip)")
    parser.add_argument("--qualities", type=float, nargs="+")
    parser.add_argument("--reuse-baselines", action="store_true")
    parser.add_argument("--skip-kodak", action="store_true")
    parser.add_argument("--reuse-models", nargs="+", default=[], metavar="NAME",
                        help="shipped models whose earlier curves go into the tables and plots unmeasured")
    args = parser.parse_args()
    both = set(args.models) & set(args.reuse_models)
    if both:
        parser.error(f"{', '.join(sorted(both))}: in --models and --reuse-models")
    for name in args.reuse_models:
        try:
            get_card(name)  # an unknown name fails here, before any measuring
        except CodecError as error:
            parser.error(str(error))
    if not args.skip_kodak:
        kodak = kodak_photos()
        curves = run_dataset("kodak", kodak, args.models, args.reuse_baselines, args.qualities,
                             tuple(args.reuse_models))
        record_in_cards("kodak", curves, args.models, len(kodak))
    if args.bsds_images:
        bsds = validation_photos()[: args.bsds_images]
        curves = run_dataset("bsds500-test", bsds, args.models, args.reuse_baselines, args.qualities,
                             tuple(args.reuse_models))
        record_in_cards("bsds500-test", curves, args.models, len(bsds))


if __name__ == "__main__":
    main()
