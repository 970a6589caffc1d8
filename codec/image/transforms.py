"""Analysis / synthesis transforms of Ballé et al. (ICLR 2017/2018), built from CompressAI's layers."""
from __future__ import annotations

from compressai.layers import GDN
from compressai.models.utils import conv, deconv
from torch import nn


def analysis_transform(n: int, m: int) -> nn.Sequential:
    """g_a: four stride-2 5x5 convolutions with GDN, 3 -> m channels, 16x downsampling."""
    return nn.Sequential(conv(3, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m))


def synthesis_transform(n: int, m: int) -> nn.Sequential:
    """g_s: four stride-2 5x5 transposed convolutions with inverse GDN, m -> 3 channels."""
    return nn.Sequential(
        deconv(m, n), GDN(n, inverse=True), deconv(n, n), GDN(n, inverse=True), deconv(n, n), GDN(n, inverse=True),
        deconv(n, 3),
    )


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
