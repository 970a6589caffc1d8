#!/usr/bin/env python
"""Validation of a training run against shipped models: real coded bytes and PSNR on BSDS500 test, BD-rate.

    python tools/validate_image.py --run ~/.cache/codec/runs/mean-scale-context --against ms-hyperprior
    python tools/validate_image.py --run RUN --against mean-scale-context --json-out ledger.json

Every rate level of each model codes every image (compress / decompress, the bytes of all sections counted;
the container's fixed header is left out for all alike). Validation decides whether a run's weights ship; Kodak is
never used for that.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

warnings.filterwarnings("ignore", category=FutureWarning)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from codec.metrics import bd_rate  # noqa: E402
from codec.precision import use_bf16  # noqa: E402
from codec.zoo import load_model  # noqa: E402
from photos import validation_photos  # noqa: E402
from run_model import model_from_run  # noqa: E402
from train_image import load_photo  # noqa: E402


@torch.no_grad()
def rd_curve(model, images: list[torch.Tensor], label: str) -> dict:
    """Mean bpp (sections' bytes) and PSNR (8-bit) per integer rate level."""
    model.set_fast_transforms(use_bf16())
    levels = [float(level) for level in range(int(model.max_quality) + 1)]
    bpps, psnrs = [], []
    for level in tqdm(levels, desc=f"validate {label}", leave=False):
        level_bpp, level_psnr = [], []
        for image in images:
            x = image.float().div(255)[None]
            height, width = x.shape[-2:]
            streams = model.compress(x, level)
            x_hat = model.decompress(streams, level, height, width)
            x_hat = torch.round(x_hat * 255) / 255
            level_bpp.append(8 * sum(map(len, streams.sections)) / (height * width))
            level_psnr.append(float(-10 * torch.log10((x_hat - x).pow(2).mean())))
        bpps.append(float(np.mean(level_bpp)))
        psnrs.append(float(np.mean(level_psnr)))
    return {"quality": levels, "bpp": bpps, "psnr": psnrs}


WITHOUT_RESIDUAL = "run without residual prediction"


def without_residual_prediction(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of a context model whose latent residual prediction adds nothing (its last layer zeroed)."""
    predictor = getattr(model.latent_codec.y, "residual_prediction", None)
    if predictor is None:
        raise SystemExit("--ablate-residual-prediction: the run's model has no residual prediction")
    ablated = copy.deepcopy(model)
    predictor = ablated.latent_codec.y.residual_prediction
    with torch.no_grad():
        predictor.net[-1].weight.zero_()
        predictor.net[-1].bias.zero_()
    predictor.freeze()
    return ablated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a training run folder (checkpoint.pt, config.json)")
    parser.add_argument("--against", nargs="+", default=["ms-hyperprior"], help="shipped models to compare with")
    parser.add_argument("--images", type=int, default=24, help="BSDS500 test images (the first N, sorted)")
    parser.add_argument("--json-out", type=Path, help="write the curves and BD-rates here")
    parser.add_argument("--raw", action="store_true",
                        help="validate the run's raw parameters, not its parameter average (train_image --ema)")
    parser.add_argument("--ablate-residual-prediction", action="store_true",
                        help="also code with the run's latent residual prediction switched off (same bytes, its "
                             "pixels): the BD-rate against that is what the residual prediction brings")
    args = parser.parse_args()

    paths = validation_photos()[: args.images]
    if not paths:
        raise SystemExit("no BSDS500 test photos found (../shared/data/bsds500/test)")
    images = [load_photo(path) for path in paths]
    candidate, state = model_from_run(args.run, average=not args.raw)
    step = int(state["step"])
    curves = {"run": rd_curve(candidate, images, "run")}
    against = list(args.against)
    if args.ablate_residual_prediction:
        curves[WITHOUT_RESIDUAL] = rd_curve(without_residual_prediction(candidate), images, WITHOUT_RESIDUAL)
        against.append(WITHOUT_RESIDUAL)
    for name in args.against:
        curves[name] = rd_curve(load_model(name)[0], images, name)
    weights = "average" if "ema" in state and not args.raw else "raw"
    report = {"run": str(args.run), "step": step, "weights": weights,
              "cpu_hours": float(state.get("cpu_seconds", 0.0)) / 3600,
              "images": len(images), "curves": curves, "bd_rate_psnr": {}}
    ours = curves["run"]
    for name in against:
        theirs = curves[name]
        try:
            report["bd_rate_psnr"][name] = round(bd_rate(theirs["bpp"], theirs["psnr"], ours["bpp"], ours["psnr"]), 2)
        except ValueError as error:  # e.g. an untrained run whose PSNR range does not reach the other's
            print(f"no BD-rate against {name}: {error}")
    for name, curve in curves.items():
        points = ", ".join(f"{b:.3f}/{p:.2f}" for b, p in zip(curve["bpp"], curve["psnr"]))
        print(f"{name:>22}: bpp/PSNR {points}")
    for name, value in report["bd_rate_psnr"].items():
        print(f"BD-rate (PSNR) of the run at step {step} ({weights} parameters) vs {name}: {value:+.2f} % on "
              f"{len(images)} BSDS500 test images")
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
