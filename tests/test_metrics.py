"""Metrics: PSNR, bpp and BD-rate on cases with known answers."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from codec.metrics import bd_rate, bpp, ms_ssim, psnr


def test_bd_rate_of_a_curve_needing_twenty_percent_fewer_bits():
    rate = np.array([0.1, 0.2, 0.4, 0.8, 1.6])
    quality = np.array([28.0, 30.5, 33.0, 35.5, 38.0])
    assert bd_rate(rate, quality, rate * 0.8, quality) == pytest.approx(-20.0, abs=1e-9)
    assert bd_rate(rate, quality, rate, quality) == pytest.approx(0.0, abs=1e-12)


def test_bd_rate_of_a_shifted_quality_curve_matches_the_slope():
    rate = np.exp(np.linspace(-2, 0.5, 6))
    quality = 30 + 4 * np.log2(rate)  # +1 dB costs 2**(1/4) in rate
    assert bd_rate(rate, quality, rate, quality + 1) == pytest.approx((2 ** (-1 / 4) - 1) * 100, rel=1e-6)


def test_bd_rate_refuses_disjoint_curves():
    with pytest.raises(ValueError):
        bd_rate([0.1, 0.2], [20, 21], [0.1, 0.2], [30, 31])


def test_psnr_msssim_bpp():
    array = np.full((64, 64, 3), 100, dtype=np.uint8)
    noisy = array.copy()
    noisy[0, 0, 0] = 110
    a, b = Image.fromarray(array), Image.fromarray(noisy)
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / (100 / (64 * 64 * 3))))
    assert psnr(a, a) == float("inf")
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8))
    assert ms_ssim(photo, photo) == pytest.approx(1.0)
    assert bpp(1000, a) == pytest.approx(8000 / 4096)
