#!/usr/bin/env python
"""Encode / decode speed of our models next to CompressAI's equivalent model with the same weights, in one run.

    python tools/bench_speed.py [--image kodim23.png] [--model ms-hyperprior] [--quality 3] [--repeats 3]

CompressAI's `MeanScaleHyperprior` (or `ScaleHyperprior`) gets our weights with the gain vectors of the chosen
quality folded into g_a's last and g_s's first layer, so both compute the same function; it codes with its own
rANS and float entropy parameters. We time ours with fp32 transforms and with bf16 autocast (where the CPU has it),
and report bpp, PSNR (the bf16 cost) and the speed ratios.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch

warnings.filterwarnings("ignore", category=FutureWarning)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from codec.api import decode_image, encode_image  # noqa: E402
from codec.entropy.latent_codec import rename_keys  # noqa: E402
from codec.imageio import load_image, to_pil  # noqa: E402
from codec.metrics import psnr  # noqa: E402
from codec.precision import cpu_has_bf16  # noqa: E402
from codec.zoo import load_model  # noqa: E402
from photos import kodak_photos  # noqa: E402
from timing import best_of  # noqa: E402


TWIN_OWN_BUFFERS = ("entropy_bottleneck._", "gaussian_conditional._")  # CompressAI's coder tables: update() fills them


def compressai_twin(name: str, quality: float) -> torch.nn.Module:
    """CompressAI's model of the same family with our weights, gains folded in."""
    from compressai.models import MeanScaleHyperprior, ScaleHyperprior

    model, card = load_model(name)
    twin_class = {"mean-scale": MeanScaleHyperprior, "hyperprior": ScaleHyperprior}[card.family]
    twin = twin_class(card.config["n"], card.config["m"])
    state = {key: value.clone() for key, value in model.state_dict().items() if not key.startswith("gains.")}
    rename_keys(state, {new: old for old, new in model.legacy_keys().items()})  # CompressAI's names: h_a., h_s., ...
    gain, inverse_gain = model.gains(model.quality_tensor(quality))
    gain, inverse_gain = gain.detach().view(-1), inverse_gain.detach().view(-1)
    state["g_a.6.weight"] = state["g_a.6.weight"] * gain.view(-1, 1, 1, 1)
    state["g_a.6.bias"] = state["g_a.6.bias"] * gain
    state["g_s.0.weight"] = state["g_s.0.weight"] * inverse_gain.view(-1, 1, 1, 1)
    result = twin.load_state_dict(state, strict=False)
    if result.unexpected_keys or [key for key in result.missing_keys if not key.startswith(TWIN_OWN_BUFFERS)]:
        raise SystemExit(f"CompressAI's model does not take these weights: {result}")
    twin.eval().update(force=True)
    return twin


def timed(repeats: int, function):
    return best_of(repeats, function, warm_up=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, default=None)
    parser.add_argument("--model", default="ms-hyperprior")
    parser.add_argument("--quality", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = args.image or kodak_photos()[22]
    loaded = load_image(path, 1 << 26)
    original = to_pil(loaded.pixels, 3)
    pixels = original.width * original.height
    rows = []
    paths = [("codec fp32", False)] + ([("codec bf16", True)] if cpu_has_bf16() else [])
    for label, fast in paths:
        encode_s, data = timed(args.repeats, lambda: encode_image(loaded, args.model, args.quality, fast=fast))
        decode_s, decoded = timed(args.repeats, lambda: decode_image(data, fast=fast))
        rows.append((label, len(data) * 8 / pixels, psnr(original, decoded), encode_s, decode_s))

    twin = compressai_twin(args.model, args.quality)
    model, _ = load_model(args.model)
    x = model.pad(loaded.pixels)
    with torch.no_grad():
        encode_s, compressed = timed(args.repeats, lambda: twin.compress(x))
        decode_s, result = timed(args.repeats, lambda: twin.decompress(compressed["strings"], compressed["shape"]))
    size = sum(len(s[0]) for s in compressed["strings"])
    x_hat = result["x_hat"][..., : original.height, : original.width]
    rows.append(("compressai fp32", size * 8 / pixels, psnr(original, to_pil(x_hat, 3)), encode_s, decode_s))

    print(f"{path.name} {original.width}x{original.height}, model {args.model}, quality {args.quality:g}, "
          f"{args.threads} threads, best of {args.repeats}")
    print(f"{'path':<18}{'bpp':>8}{'PSNR dB':>9}{'encode s':>10}{'decode s':>10}")
    for label, bpp, quality_db, enc, dec in rows:
        print(f"{label:<18}{bpp:>8.4f}{quality_db:>9.3f}{enc:>10.3f}{dec:>10.3f}")
    print("(codec bpp includes its container header; compressai's counts payload strings only)")
    reference = rows[-1]
    for label, _, quality_db, enc, dec in rows[:-1]:
        print(f"{label} vs compressai: encode {reference[3] / enc:.2f}x faster, decode {reference[4] / dec:.2f}x "
              f"faster, PSNR {quality_db - reference[2]:+.3f} dB")
    if len(rows) == 3:
        print(f"bf16 PSNR cost vs fp32: {rows[1][2] - rows[0][2]:+.3f} dB")


if __name__ == "__main__":
    main()
