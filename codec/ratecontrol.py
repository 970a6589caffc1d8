"""Rate control: find the quality that meets a bpp budget or a PSNR target by bisection over the continuous
quality of a variable-rate model (rate and distortion are monotone in quality for gain-unit models)."""
from __future__ import annotations

from dataclasses import dataclass

from codec.api import decode_image, encode_image, prepared_model
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
    network, _ = prepared_model(model)
    pixels = image.pixels.shape[-1] * image.pixels.shape[-2]
    original = to_pil(image.pixels, image.channels)

    def attempt(quality: float) -> TargetResult:
        data = encode_image(image, model, quality)
        bpp = len(data) * 8 / pixels
        if target_bpp is not None:
            return TargetResult(data, quality, bpp, None, bpp <= target_bpp)
        quality_db = psnr(original, decode_image(data))
        return TargetResult(data, quality, bpp, quality_db, quality_db >= target_psnr)

    low, high = 0.0, network.max_quality
    # for a bpp budget we want the best passing quality; for a PSNR target the cheapest passing one
    best = attempt(low) if target_bpp is not None else attempt(high)
    if not best.met:
        return best
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        result = attempt(middle)
        if result.met:
            best = result
        if (target_bpp is not None) == result.met:
            low = middle
        else:
            high = middle
    if target_bpp is not None:
        top = attempt(network.max_quality)
        if top.met:
            best = top
    return best
