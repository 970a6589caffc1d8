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
