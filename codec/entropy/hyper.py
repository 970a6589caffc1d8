"""Hyperprior latent codec: a factorized hyper-latent z, then y under Gaussians whose scale (and mean) come from
z_hat through an exactly evaluated h_s (Ballé et al. ICLR 2018; Minnen et al. NeurIPS 2018).

    y -> h_a -> z -> [factorized tables] -> z_hat -> exact h_s -> scale, mean -> y codec (Gaussian, or context)

Used by the image hyperprior models (the context model plugs its own y codec in) and the split-computing students.
"""
from __future__ import annotations

from fractions import Fraction

import torch
from torch import nn

from codec.entropy.factorized import FactorizedLatentCodec
from codec.entropy.gaussian import GaussianConditionalLatentCodec
from codec.entropy.latent_codec import LatentCodec
from codec.entropy.streams import LatentStreams
from codec.errors import CodecError
from codec.nn.exact import ExactSequential
from codec.nn.quantize import Quantizer, round_around
from codec.nn.tiling import tiled


# a model's state-dict names from before its latent codec was a module (see LatentCodecHost.LEGACY_KEYS)
HYPERPRIOR_LEGACY_KEYS = {
    "h_a.": "latent_codec.h_a.", "h_s.": "latent_codec.h_s.",
    "entropy_bottleneck.": "latent_codec.z.entropy_bottleneck.",
    "gaussian_conditional.": "latent_codec.y.gaussian_conditional.",
}


class HyperpriorLatentCodec(LatentCodec):
    """Sections [y ANS, y escapes, z ANS, z escapes]; tables "y" (Gaussian) and "z" (factorized).

    `mean_scale`: h_s predicts (scale, mean) stacked on channels (Minnen 2018), else scales alone (Ballé 2018, means
    zero); `abs_input`: h_a reads |y| (Ballé 2018). `upscale`: y positions per z position along each side."""

    section_names = ("y", "y_escapes", "z", "z_escapes")
    exact_tile = 32  # on large latents h_s runs in tiles of 32x32 z positions ...
    exact_halo = 4  # ... with this many z positions of context (exact arithmetic: identical numbers)

    def __init__(self, h_a: nn.Module, h_s: nn.Module, z_channels: int, y: GaussianConditionalLatentCodec | None = None,
                 mean_scale: bool = True, abs_input: bool = False, upscale: Fraction = Fraction(4)) -> None:
        super().__init__()
        self.h_a = h_a
        self.h_s = h_s
        self.z = FactorizedLatentCodec(z_channels, name="z", straight_through=False)
        self.y = GaussianConditionalLatentCodec() if y is None else y
        self.mean_scale, self.abs_input, self.upscale = mean_scale, abs_input, Fraction(upscale)
        self._exact_h_s: ExactSequential | None = None

    # --- tables: the parts' ---------------------------------------------------------------------------------------
    def init_tables(self) -> None:
        """A composite keeps no tables of its own."""

    @property
    def tables(self) -> dict:
        return {**self.z.tables, **self.y.tables}

    @property
    def table_tensors(self) -> dict[str, torch.Tensor]:
        return {**self.z.table_tensors, **self.y.table_tensors}

    def check_ready(self) -> None:
        self.z.check_ready()
        self.y.check_ready()

    def load_table_state(self, state: dict[str, torch.Tensor]) -> None:
        self.z.load_table_state(state)
        self.y.load_table_state(state)
        self._after_tables_loaded()

    @torch.no_grad()
    def update(self) -> None:
        """Freeze z's factorized tables and y's Gaussian tables; build the exact h_s."""
        self.z.update()
        self.y.update()
        self._after_tables_loaded()

    def _after_tables_loaded(self) -> None:
        self._exact_h_s = ExactSequential(self.h_s)

    # --- training -------------------------------------------------------------------------------------------------
    def hyper_input(self, y: torch.Tensor) -> torch.Tensor:
        return torch.abs(y) if self.abs_input else y

    def split_parameters(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scales, means) from the h_s output."""
        if self.mean_scale:
            scales, means = params.chunk(2, 1)
            return scales, means
        return params, torch.zeros_like(params)

    def forward(self, y: torch.Tensor) -> dict:
        z = self.h_a(self.hyper_input(y))
        hyper = self.z(z)
        scales, means = self.split_parameters(self.h_s(hyper["y_hat"]))
        coded = self.y(y, scales, means)
        return {"y_hat": coded["y_hat"], "likelihoods": {**coded["likelihoods"], **hyper["likelihoods"]}}

    def estimate(self, y: torch.Tensor, quantize: Quantizer = round_around) -> tuple[torch.Tensor, torch.Tensor]:
        """(y_hat, bits) with z and y quantized by `quantize(value, centre)`: by default as `compress` rounds them
        (h_s in float), with straight-through gradients; what encoder-side refinement (codec.image.refine) minimises."""
        z_hat, z_bits = self.z.estimate(self.h_a(self.hyper_input(y)), quantize)
        y_hat, y_bits = self.y.estimate(y, *self.split_parameters(self.h_s(z_hat)), quantize)
        return y_hat, y_bits + z_bits

    # --- exact coding ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def hyper_parameters(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scales and means (float64) for y, computed exactly from z_hat (see codec.nn.exact)."""
        self.check_ready()
        if z_hat.shape[-2] * z_hat.shape[-1] > self.exact_tile**2:
            params = tiled(self._exact_h_s, z_hat, self.upscale, self.exact_tile, self.exact_halo)
        else:
            params = self._exact_h_s(z_hat)
        return self.split_parameters(params)

    @torch.no_grad()
    def entropy_parameters(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale-table indices and means (float64) of the hyperprior, computed exactly from z_hat."""
        scales, means = self.hyper_parameters(z_hat)
        return self.y.scale_indices(scales), means

    @torch.no_grad()
    def compress(self, y: torch.Tensor) -> LatentStreams:
        z = self.h_a(self.hyper_input(y))
        z_hat, z_sections = self.z.encode(z)
        y_sections = self.y.encode(y, *self.hyper_parameters(z_hat))
        return LatentStreams([*y_sections, *z_sections], [tuple(y.shape), tuple(z.shape)])

    @torch.no_grad()
    def decompress(self, streams: LatentStreams) -> torch.Tensor:
        """Inverse of `compress`: y_hat (float32)."""
        if len(streams.sections) != 4 or len(streams.shapes) != 2:
            raise CodecError(f"corrupt bitstream: {len(streams.sections)} sections, a hyperprior latent writes 4")
        y_shape, z_shape = (tuple(shape) for shape in streams.shapes)
        z_hat = self.z.decode(streams.sections[2:], z_shape)
        scales, means = self.hyper_parameters(z_hat)
        if tuple(means.shape) != y_shape:
            raise CodecError(f"corrupt bitstream: latent shapes {y_shape} and {z_shape} do not fit together")
        return self.y.decode(streams.sections[:2], scales, means)

    def latent_shapes(self, y_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
        """[y shape, z shape] for a y of `y_shape` (z: y's size over `upscale`, rounded up)."""
        batch, _, height, width = y_shape
        return [tuple(y_shape), (batch, self.z.channels, -(-height // int(self.upscale)), -(-width // int(self.upscale)))]
