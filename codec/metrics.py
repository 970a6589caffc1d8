"""Metrics as CompressAI computes them: 8-bit images, PSNR over all RGB values, MS-SSIM (data_range=255)."""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image


def _as_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def psnr(reference: Image.Image, decoded: Image.Image) -> float:
    mse = float(np.mean((_as_array(reference) - _as_array(decoded)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ms_ssim(reference: Image.Image, decoded: Image.Image) -> float:
    from pytorch_msssim import ms_ssim as _ms_ssim

    def tensor(image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(_as_array(image)).permute(2, 0, 1)[None].float()

    return float(_ms_ssim(tensor(reference), tensor(decoded), data_range=255.0))


def bpp(num_bytes: int, image: Image.Image) -> float:
    """Bits per pixel from the real size on disk (header included)."""
    return num_bytes * 8.0 / (image.width * image.height)


def bd_rate(anchor_rate, anchor_quality, test_rate, test_quality) -> float:
    """Bjøntegaard delta rate in percent of `test` against `anchor` (negative = test needs fewer bits).

    Log-rate is interpolated as a function of quality with monotone PCHIP (as in recent Bjøntegaard tools) and the
    average difference taken over the quality interval both curves cover.
    """
    from scipy.interpolate import PchipInterpolator

    def curve(rate, quality):
        order = np.argsort(quality)
        quality = np.asarray(quality, dtype=np.float64)[order]
        log_rate = np.log(np.asarray(rate, dtype=np.float64)[order])
        keep = np.concatenate(([True], np.diff(quality) > 0))
        return quality[keep], log_rate[keep]

    anchor_q, anchor_r = curve(anchor_rate, anchor_quality)
    test_q, test_r = curve(test_rate, test_quality)
    if len(anchor_q) < 2 or len(test_q) < 2:
        raise ValueError("each curve needs at least two distinct points")
    low, high = max(anchor_q[0], test_q[0]), min(anchor_q[-1], test_q[-1])
    if low >= high:
        raise ValueError("the curves do not overlap in quality")
    anchor_integral = PchipInterpolator(anchor_q, anchor_r).integrate(low, high)
    test_integral = PchipInterpolator(test_q, test_r).integrate(low, high)
    return float((np.exp((test_integral - anchor_integral) / (high - low)) - 1) * 100)
