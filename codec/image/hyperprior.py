"""Factorized-prior, scale-hyperprior and mean-scale-hyperprior image models, all variable-rate.

- Ballé, Minnen, Singh, Hwang, Johnston, "Variational image compression with a scale hyperprior" (ICLR 2018)
- Minnen, Ballé, Toderici, "Joint autoregressive and hierarchical priors for learned image compression"
  (NeurIPS 2018): the mean-scale hyperprior, used here without the autoregressive context.

    x -> pad -> g_a -> y * gain -> h_a -> z -> [factorized tables] -> z_hat -> exact h_s -> scale index, mean
                              y -> round(y - mean) -> [gaussian tables] -> y_hat / gain -> g_s -> crop -> x_hat

Each is g_a / g_s + gain units + a latent codec from codec.entropy (factorized, or hyperprior).
"""
from __future__ import annotations

from fractions import Fraction

import torch

from codec.entropy.factorized import FACTORIZED_LEGACY_KEYS, FactorizedLatentCodec
from codec.entropy.hyper import HYPERPRIOR_LEGACY_KEYS, HyperpriorLatentCodec
from codec.image import transforms
from codec.image.base import VariableRateImageModel


class FactorizedPrior(VariableRateImageModel):
    """Ballé et al. (ICLR 2017 / 2018) factorized prior: y coded with one learned density per channel."""

    stride = 16
    LEGACY_KEYS = FACTORIZED_LEGACY_KEYS
    ARCHITECTURE = "Ballé et al. 2018 factorized prior: g_a/g_s 4x (5x5 stride-2 conv + GDN), gain units"
    ENTROPY_CODING = "constriction ANS; y: per-channel factorized tables"

    def __init__(self, lambdas: tuple[float, ...], n: int = 128, m: int = 192) -> None:
        super().__init__(lambdas, m)
        self.g_a = transforms.analysis_transform(n, m)
        self.g_s = transforms.synthesis_transform(n, m)
        self.latent_codec = FactorizedLatentCodec(m)

    def latent_shapes(self, height: int, width: int) -> list[tuple[int, ...]]:
        rows, cols = -(-height // 16), -(-width // 16)
        return [(1, self.latent_codec.channels, rows, cols)]


class ScaleHyperprior(VariableRateImageModel):
    """Ballé et al. (ICLR 2018): a hyper-latent z predicts the scale of each y element; z is factorized."""

    stride = 64
    LEGACY_KEYS = HYPERPRIOR_LEGACY_KEYS
    ARCHITECTURE = "Ballé et al. 2018 scale hyperprior: g_a/g_s with GDN, h_a/h_s 3 conv layers, gain units"
    ENTROPY_CODING = ("constriction ANS; z: per-channel factorized tables; y: 64 Gaussian scale tables, means outside "
                      "the CDF; h_s evaluated exactly in integer-valued float64")
    MEAN_SCALE = False

    def __init__(self, lambdas: tuple[float, ...], n: int = 128, m: int = 192,
                 analysis_widths: tuple[int, ...] | None = None,
                 synthesis_widths: tuple[int, ...] | None = None) -> None:
        """`n`: the hyperprior's width and z's channels, and g_a / g_s's hidden widths unless `analysis_widths` /
        `synthesis_widths` set them (three each); `m`: y's channels."""
        super().__init__(lambdas, m)
        self.n, self.m = n, m
        self.g_a = transforms.analysis_transform(n, m, analysis_widths)
        self.g_s = transforms.synthesis_transform(n, m, synthesis_widths)
        self.latent_codec = HyperpriorLatentCodec(*self._hyper_transforms(n, m), n, mean_scale=self.MEAN_SCALE,
                                                  abs_input=not self.MEAN_SCALE, upscale=Fraction(4))

    def _hyper_transforms(self, n: int, m: int) -> tuple[torch.nn.Module, torch.nn.Module]:
        return transforms.scale_hyper_analysis(n, m), transforms.scale_hyper_synthesis(n, m)

    def latent_shapes(self, height: int, width: int) -> list[tuple[int, ...]]:
        rows, cols = -(-height // 64), -(-width // 64)
        return [(1, self.m, rows * 4, cols * 4), (1, self.n, rows, cols)]


class MeanScaleHyperprior(ScaleHyperprior):
    """Minnen et al. (NeurIPS 2018) without context: h_s predicts a mean and a scale for every y element."""

    ARCHITECTURE = ("Minnen et al. 2018 mean-scale hyperprior without context: g_a/g_s with GDN, h_a/h_s 3 conv "
                    "layers with LeakyReLU predicting mean and scale, gain units (Cui et al. 2021)")
    MEAN_SCALE = True

    def _hyper_transforms(self, n: int, m: int) -> tuple[torch.nn.Module, torch.nn.Module]:
        return transforms.mean_scale_hyper_analysis(n, m), transforms.mean_scale_hyper_synthesis(n, m)
