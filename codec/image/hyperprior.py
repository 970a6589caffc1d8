"""Factorized-prior, scale-hyperprior and mean-scale-hyperprior image models, all variable-rate.

- Ballé, Minnen, Singh, Hwang, Johnston, "Variational image compression with a scale hyperprior" (ICLR 2018)
- Minnen, Ballé, Toderici, "Joint autoregressive and hierarchical priors for learned image compression"
  (NeurIPS 2018): the mean-scale hyperprior, used here without the autoregressive context.

    x -> pad -> g_a -> y * gain -> h_a -> z -> [factorized tables] -> z_hat -> exact h_s -> scale index, mean
                              y -> round(y - mean) -> [gaussian tables] -> y_hat / gain -> g_s -> crop -> x_hat
"""
from __future__ import annotations

import torch
from codec._compressai import entropy_bottleneck, gaussian_conditional

from codec.errors import CodecError
from codec.entropy.factorized import FactorizedLatent, decode_factorized, encode_factorized
from codec.entropy.hyper import HyperLatent
from codec.image import transforms
from codec.entropy.streams import LatentStreams
from codec.image.base import VariableRateImageModel
from codec.nn.quantize import ste_round


class FactorizedPrior(FactorizedLatent, VariableRateImageModel):
    """Ballé et al. (ICLR 2017 / 2018) factorized prior: y coded with one learned density per channel."""

    stride = 16
    ARCHITECTURE = "Ballé et al. 2018 factorized prior: g_a/g_s 4x (5x5 stride-2 conv + GDN), gain units"
    ENTROPY_CODING = "constriction ANS; y: per-channel factorized tables"

    def __init__(self, lambdas: tuple[float, ...], n: int = 128, m: int = 192) -> None:
        super().__init__(lambdas, m)
        self.g_a = transforms.analysis_transform(n, m)
        self.g_s = transforms.synthesis_transform(n, m)
        self.entropy_bottleneck = entropy_bottleneck(m)

    def forward(self, x: torch.Tensor, quality: torch.Tensor) -> dict:
        gain, inverse_gain = self.gains(quality)
        y = self.analysis(x) * gain
        _, y_likelihoods = self.entropy_bottleneck(y)
        medians = self.entropy_bottleneck._get_medians().detach().view(1, -1, 1, 1)
        y_hat = ste_round(y - medians) + medians
        return {"x_hat": self.synthesis(y_hat * inverse_gain), "likelihoods": {"y": y_likelihoods}}

    @torch.no_grad()
    def compress(self, x: torch.Tensor, quality: float) -> LatentStreams:
        self.check_ready()
        gain, _ = self.gains(self.quality_tensor(quality))
        y = self.analysis(self.pad(x)) * gain
        _, stream, escapes = encode_factorized(y, self.tables["y"], self.table_tensors["y_medians"])
        return LatentStreams([stream, escapes], [tuple(y.shape)])

    @torch.no_grad()
    def decompress(self, streams: LatentStreams, quality: float, height: int, width: int) -> torch.Tensor:
        self.check_ready()
        shape = self.latent_shapes(height, width)[0]
        self.expect_shapes(streams, [shape])
        y_hat = decode_factorized(*streams.sections[:2], shape, self.tables["y"], self.table_tensors["y_medians"])
        _, inverse_gain = self.gains(self.quality_tensor(quality))
        return self.synthesis(y_hat * inverse_gain)[..., :height, :width].clamp(0, 1)

    def latent_shapes(self, height: int, width: int) -> list[tuple[int, ...]]:
        rows, cols = -(-height // 16), -(-width // 16)
        return [(1, self.gains.log_gain.shape[1], rows, cols)]


class ScaleHyperprior(HyperLatent, VariableRateImageModel):
    """Ballé et al. (ICLR 2018): a hyper-latent z predicts the scale of each y element; z is factorized."""

    stride = 64
    ARCHITECTURE = "Ballé et al. 2018 scale hyperprior: g_a/g_s with GDN, h_a/h_s 3 conv layers, gain units"
    ENTROPY_CODING = ("constriction ANS; z: per-channel factorized tables; y: 64 Gaussian scale tables, means outside "
                      "the CDF; h_s evaluated exactly in integer-valued float64")

    def __init__(self, lambdas: tuple[float, ...], n: int = 128, m: int = 192) -> None:
        super().__init__(lambdas, m)
        self.n, self.m = n, m
        self.g_a = transforms.analysis_transform(n, m)
        self.g_s = transforms.synthesis_transform(n, m)
        self.h_a, self.h_s = self._hyper_transforms(n, m)
        self.entropy_bottleneck = entropy_bottleneck(n)
        self.gaussian_conditional = gaussian_conditional()

    def _hyper_transforms(self, n: int, m: int) -> tuple[torch.nn.Module, torch.nn.Module]:
        return transforms.scale_hyper_analysis(n, m), transforms.scale_hyper_synthesis(n, m)

    def _hyper_input(self, y: torch.Tensor) -> torch.Tensor:
        return torch.abs(y)

    def _split_parameters(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scales, means) from the h_s output."""
        return params, torch.zeros_like(params)

    def forward(self, x: torch.Tensor, quality: torch.Tensor) -> dict:
        gain, inverse_gain = self.gains(quality)
        y = self.analysis(x) * gain
        z = self.h_a(self._hyper_input(y))
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        scales, means = self._split_parameters(self.h_s(z_hat))
        _, y_likelihoods = self.gaussian_conditional(y, scales, means=means)
        y_hat = ste_round(y - means) + means  # "mixed" quantization: noise for the rate, rounding for g_s
        x_hat = self.synthesis(y_hat * inverse_gain)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    # --- inference (coding: codec.entropy.hyper.HyperLatent) -------------------------------------------------
    @torch.no_grad()
    def compress(self, x: torch.Tensor, quality: float) -> LatentStreams:
        self.check_ready()
        gain, _ = self.gains(self.quality_tensor(quality))
        y = self.analysis(self.pad(x)) * gain
        z = self.h_a(self._hyper_input(y))
        return LatentStreams(self.encode_hyper(y, z), [tuple(y.shape), tuple(z.shape)])

    @torch.no_grad()
    def decompress(self, streams: LatentStreams, quality: float, height: int, width: int) -> torch.Tensor:
        self.check_ready()
        y_shape, z_shape = self.latent_shapes(height, width)
        self.expect_shapes(streams, [y_shape, z_shape])
        if len(streams.sections) != 4:
            raise CodecError(f"corrupt bitstream: {len(streams.sections)} sections, this model writes 4")
        y_hat = self.decode_hyper(streams.sections, y_shape, z_shape)
        _, inverse_gain = self.gains(self.quality_tensor(quality))
        return self.synthesis(y_hat * inverse_gain)[..., :height, :width].clamp(0, 1)

    def latent_shapes(self, height: int, width: int) -> list[tuple[int, ...]]:
        rows, cols = -(-height // 64), -(-width // 64)
        return [(1, self.m, rows * 4, cols * 4), (1, self.n, rows, cols)]


class MeanScaleHyperprior(ScaleHyperprior):
    """Minnen et al. (NeurIPS 2018) without context: h_s predicts a mean and a scale for every y element."""

    ARCHITECTURE = ("Minnen et al. 2018 mean-scale hyperprior without context: g_a/g_s with GDN, h_a/h_s 3 conv "
                    "layers with LeakyReLU predicting mean and scale, gain units (Cui et al. 2021)")

    def _hyper_transforms(self, n: int, m: int) -> tuple[torch.nn.Module, torch.nn.Module]:
        return transforms.mean_scale_hyper_analysis(n, m), transforms.mean_scale_hyper_synthesis(n, m)

    def _hyper_input(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def _split_parameters(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scales, means = params.chunk(2, 1)
        return scales, means

