"""Rate control: find the quality that meets a bpp budget or a PSNR target, by bisection over the continuous
quality of a variable-rate model (rate and distortion are monotone in quality for gain-unit models), or by trying
each level of a model with discrete levels."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tqdm import tqdm

from codec.api import decode_image, encode_image, prepared_model
from codec.errors import CodecError
from codec.imageio import LoadedImage, to_pil
from codec.metrics import psnr

BISECTION_STEPS = 10  # quality resolution: range / 2**10


@dataclass
class TargetResult:
    data: bytes
    quality: float
    bpp: float
    psnr: float | None
    met: bool


def encode_to_target(
    image: LoadedImage, model: str, target_bpp: float | None = None, target_psnr: float | None = None
) -> TargetResult:
    """Largest quality whose bpp <= target_bpp, or smallest quality whose PSNR >= target_psnr."""
    if (target_bpp is None) == (target_psnr is None):
        raise ValueError("give exactly one of target_bpp and target_psnr")
    if target_bpp is not None and not target_bpp > 0:
        raise CodecError(f"--target-bpp must be positive, got {target_bpp:g}")
    if target_psnr is not None and not 0 < target_psnr < 200:
        raise CodecError(f"--target-psnr must be between 0 and 200 dB, got {target_psnr:g}")
    network, _ = prepared_model(model)
    pixels = image.pixels.shape[-1] * image.pixels.shape[-2]
    original = to_pil(image.pixels, image.channels)

    progress = tqdm(desc="rate control", unit="try", leave=False,
                    total=int(network.max_quality) + 1 if not network.continuous_quality else BISECTION_STEPS + 2)

    def attempt(quality: float) -> TargetResult:
        progress.update(1)
        data = encode_image(image, model, quality)
        bpp = len(data) * 8 / pixels
        if target_bpp is not None:
            return TargetResult(data, quality, bpp, None, bpp <= target_bpp)
        quality_db = psnr(original, decode_image(data))
        return TargetResult(data, quality, bpp, quality_db, quality_db >= target_psnr)

    try:
        if not network.continuous_quality:
            return _best_level(attempt, int(network.max_quality), target_bpp is not None)
        return _bisect(attempt, network.max_quality, target_bpp is not None)
    finally:
        progress.close()


def _best_level(attempt: Callable[[float], TargetResult], max_level: int, budget: bool) -> TargetResult:
    """Discrete levels: the highest level within a bpp budget, or the lowest reaching a PSNR target (else the
    closest: level 0 for a budget, the top level for a PSNR)."""
    levels = range(max_level + 1) if budget else range(max_level, -1, -1)
    best = None
    for level in levels:
        result = attempt(float(level))
        if result.met or best is None:
            best = result
        if not result.met:
            break
    return best


def _bisect(attempt: Callable[[float], TargetResult], max_quality: float, budget: bool) -> TargetResult:
    """Continuous quality: bisection, then the top quality tried for a budget (it may pass outright)."""
    low, high = 0.0, max_quality
    # for a bpp budget we want the best passing quality; for a PSNR target the cheapest passing one
    best = attempt(low) if budget else attempt(high)
    if not best.met:
        return best
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        result = attempt(middle)
        if result.met:
            best = result
        if budget == result.met:
            low = middle
        else:
            high = middle
    if budget:
        top = attempt(max_quality)
        if top.met:
            best = top
    return best
