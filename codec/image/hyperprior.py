"""Factorized-prior, scale-hyperprior and mean-scale-hyperprior image models, all variable-rate.

- Ballé, Minnen, Singh, Hwang, Johnston, "Variational image compression with a scale hyperprior" (ICLR 2018)
- Minnen, Ballé, Toderici, "Joint autoregressive and hierarchical priors for learned image compression"
  (NeurIPS 2018): the mean-scale hyperprior, used here without the autoregressive context.

    x -> pad -> g_a -> y * gain -> h_a -> z -> [factorized tables] -> z_hat -> exact h_s -> scale index, mean
                              y -> round(y - mean) -> [gaussian tables] -> y_hat / gain -> g_s -> crop -> x_hat
"""
from __future__ import annotations

from fractions import Fraction

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional

from codec.errors import CodecError
from codec.entropy.coder import decode_symbols, encode_symbols
from codec.entropy.factorized import FactorizedLatent, build_factorized_tables, decode_factorized, encode_factorized
from codec.entropy.gaussian import build_gaussian_tables, default_scale_table, scale_indices
from codec.image import transforms
from codec.image.base import LatentStreams, VariableRateImageModel, ste_round
from codec.image.tiling import tiled
from codec.nn.exact import ExactSequential


class FactorizedPrior(FactorizedLatent, VariableRateImageModel):
    """Ballé et al. (ICLR 2017 / 2018) factorized prior: y coded with one learned density per channel."""

    stride = 16

    def __init__(self, lambdas: tuple[float, ...], n: int = 128, m: int = 192) -> None:
        super().__init__(lambdas, m)
        self.g_a = transforms.analysis_transform(n, m)
        self.g_s = transforms.synthesis_transform(n, m)
        self.entropy_bottleneck = EntropyBottleneck(m)

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


class ScaleHyperprior(VariableRateImageModel):
    """Ballé et al. (ICLR 2018): a hyper-latent z predicts the scale of each y element; z is factorized."""

    stride = 64
    table_names = ("y", "z")
    exact_tile = 32  # h_s runs in tiles of 32x32 z positions (128x128 y positions) on large images
    exact_halo = 4  # z positions of context around each tile (h_s reaches 2)

    def __init__(self, lambdas: tuple[float, ...], n: int = 128, m: int = 192) -> None:
        super().__init__(lambdas, m)
        self.n, self.m = n, m
        self.g_a = transforms.analysis_transform(n, m)
        self.g_s = transforms.synthesis_transform(n, m)
        self.h_a, self.h_s = self._hyper_transforms(n, m)
        self.entropy_bottleneck = EntropyBottleneck(n)
        self.gaussian_conditional = GaussianConditional(None)
        self._exact_h_s: ExactSequential | None = None

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

    def aux_loss(self) -> torch.Tensor:
        return self.entropy_bottleneck.loss()

    # --- inference --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def update(self) -> None:
        """Freeze the probability tables (factorized for z, Gaussian for y) used by compress / decompress."""
        z_tables, medians = build_factorized_tables(self.entropy_bottleneck)
        scale_table = default_scale_table()
        self.tables = {"y": build_gaussian_tables(scale_table), "z": z_tables}
        self.table_tensors = {"z_medians": medians, "scale_table": torch.from_numpy(scale_table)}
        self._after_tables_loaded()

    def _after_tables_loaded(self) -> None:
        self._exact_h_s = ExactSequential(self.h_s)

    @torch.no_grad()
    def entropy_parameters(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale-table indices and means (float64) for y, computed exactly from z_hat (see codec.nn.exact)."""
        self.check_ready()
        if z_hat.shape[-2] * z_hat.shape[-1] > self.exact_tile**2:
            # exact arithmetic: tiles with a halo give the very same numbers with a fraction of the float64 memory
            params = tiled(self._exact_h_s, z_hat, Fraction(4), self.exact_tile, self.exact_halo)
        else:
            params = self._exact_h_s(z_hat)
        scales, means = self._split_parameters(params)
        return scale_indices(scales, self.table_tensors["scale_table"]), means

    @torch.no_grad()
    def compress(self, x: torch.Tensor, quality: float) -> LatentStreams:
        self.check_ready()
        gain, _ = self.gains(self.quality_tensor(quality))
        y = self.analysis(self.pad(x)) * gain
        z = self.h_a(self._hyper_input(y))
        z_hat, z_stream, z_escapes = encode_factorized(z, self.tables["z"], self.table_tensors["z_medians"])
        indices, means = self.entropy_parameters(z_hat)
        y_symbols = torch.round(y.double() - means).long().numpy()
        y_stream, y_escapes = encode_symbols(y_symbols, indices.numpy(), self.tables["y"])
        return LatentStreams([y_stream, y_escapes, z_stream, z_escapes], [tuple(y.shape), tuple(z.shape)])

    @torch.no_grad()
    def decompress(self, streams: LatentStreams, quality: float, height: int, width: int) -> torch.Tensor:
        self.check_ready()
        y_shape, z_shape = self.latent_shapes(height, width)
        self.expect_shapes(streams, [y_shape, z_shape])
        if len(streams.sections) != 4:
            raise CodecError(f"corrupt bitstream: {len(streams.sections)} sections, this model writes 4")
        y_stream, y_escapes, z_stream, z_escapes = streams.sections
        z_hat = decode_factorized(z_stream, z_escapes, z_shape, self.tables["z"], self.table_tensors["z_medians"])
        indices, means = self.entropy_parameters(z_hat)
        y_symbols = decode_symbols(y_stream, y_escapes, indices.numpy(), self.tables["y"])
        y_hat = (torch.from_numpy(y_symbols).double() + means).float()
        _, inverse_gain = self.gains(self.quality_tensor(quality))
        return self.synthesis(y_hat * inverse_gain)[..., :height, :width].clamp(0, 1)

    def latent_shapes(self, height: int, width: int) -> list[tuple[int, ...]]:
        rows, cols = -(-height // 64), -(-width // 64)
        return [(1, self.m, rows * 4, cols * 4), (1, self.n, rows, cols)]


class MeanScaleHyperprior(ScaleHyperprior):
    """Minnen et al. (NeurIPS 2018) without context: h_s predicts a mean and a scale for every y element."""


    def _hyper_transforms(self, n: int, m: int) -> tuple[torch.nn.Module, torch.nn.Module]:
        return transforms.mean_scale_hyper_analysis(n, m), transforms.mean_scale_hyper_synthesis(n, m)

    def _hyper_input(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def _split_parameters(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scales, means = params.chunk(2, 1)
        return scales, means

