"""Analysis / synthesis transforms of Ballé et al. (ICLR 2017/2018), built from CompressAI's layers."""
from __future__ import annotations

from codec._compressai import GDN, conv, deconv
from torch import nn


def analysis_transform(n: int, m: int, widths: tuple[int, ...] | None = None) -> nn.Sequential:
    """g_a: four stride-2 5x5 convolutions with GDN, 3 -> m channels, 16x downsampling; `widths` sets the three
    hidden widths (default n, n, n). A wider g_a costs encoding time only."""
    widths = hidden_widths(n, widths, "g_a")
    layers: list[nn.Module] = []
    channels = 3
    for width in widths:
        layers += [conv(channels, width), GDN(width)]
        channels = width
    return nn.Sequential(*layers, conv(channels, m))


def hidden_widths(n: int, widths: tuple[int, ...] | None, transform: str) -> tuple[int, int, int]:
    """A transform's three hidden widths: `widths` checked, or (n, n, n)."""
    widths = (n, n, n) if widths is None else tuple(int(width) for width in widths)
    if len(widths) != 3 or min(widths) < 1:
        raise ValueError(f"{transform} takes three positive hidden widths, not {widths}")
    return widths


def synthesis_transform(n: int, m: int, widths: tuple[int, ...] | None = None,
                        kernels: tuple[int, ...] | None = None) -> nn.Sequential:
    """g_s: four stride-2 transposed convolutions (5x5 by default) with inverse GDN, m -> 3 channels.

    `widths` sets the three hidden widths (default n, n, n) and `kernels` the four kernel sizes (default 5, 5, 5, 5).
    The last two layers run at half and full output resolution and cost about 75 % of g_s's multiply-adds, so
    narrowing them (widths n, n, n // 2) or shrinking their kernels (5, 5, 3, 3) halves decode time.
    """
    widths = hidden_widths(n, widths, "g_s")
    kernels = (5, 5, 5, 5) if kernels is None else tuple(int(kernel) for kernel in kernels)
    if len(kernels) != 4 or any(kernel < 1 or kernel % 2 == 0 for kernel in kernels):
        raise ValueError(f"g_s takes four odd kernel sizes, not {kernels}")
    layers: list[nn.Module] = []
    channels = m
    for width, kernel in zip(widths, kernels):
        layers += [deconv(channels, width, kernel), GDN(width, inverse=True)]
        channels = width
    return nn.Sequential(*layers, deconv(channels, 3, kernels[-1]))


def scale_hyper_analysis(n: int, m: int) -> nn.Sequential:
    """h_a of the scale hyperprior (Ballé 2018); applied to |y|."""
    return nn.Sequential(conv(m, n, 3, 1), nn.ReLU(), conv(n, n), nn.ReLU(), conv(n, n))


def scale_hyper_synthesis(n: int, m: int) -> nn.Sequential:
    """h_s of the scale hyperprior: z_hat -> scales."""
    return nn.Sequential(deconv(n, n), nn.ReLU(), deconv(n, n), nn.ReLU(), conv(n, m, 3, 1), nn.ReLU())


def mean_scale_hyper_analysis(n: int, m: int) -> nn.Sequential:
    """h_a of the mean-scale hyperprior (Minnen 2018)."""
    return nn.Sequential(conv(m, n, 3, 1), nn.LeakyReLU(inplace=True), conv(n, n), nn.LeakyReLU(inplace=True), conv(n, n))


def mean_scale_hyper_synthesis(n: int, m: int) -> nn.Sequential:
    """h_s of the mean-scale hyperprior: z_hat -> (scales, means) stacked on channels."""
    return nn.Sequential(
        deconv(n, m), nn.LeakyReLU(inplace=True), deconv(m, m * 3 // 2), nn.LeakyReLU(inplace=True),
        conv(m * 3 // 2, m * 2, 3, 1),
    )
