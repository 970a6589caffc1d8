"""Hyperprior coding of a latent y: a factorized hyper-latent z, then y with Gaussian tables whose scale index and
mean come from z_hat through an exactly evaluated h_s (Ballé et al. ICLR 2018; Minnen et al. NeurIPS 2018).

Shared by the image hyperprior models and the split-computing students; the model supplies `h_s`,
`entropy_bottleneck` (for z) and `_split_parameters` (h_s output -> scales, means).
"""
from __future__ import annotations

from fractions import Fraction

import torch

from codec.entropy.coder import decode_symbols, encode_symbols
from codec.entropy.factorized import build_factorized_tables, decode_factorized, encode_factorized
from codec.entropy.gaussian import build_gaussian_tables, default_scale_table, scale_indices
from codec.errors import CodecError
from codec.nn.tiling import tiled
from codec.nn.exact import ExactSequential


class HyperLatent:
    """Mixin: sections [y ANS, y escapes, z ANS, z escapes]; tables "y" (Gaussian) and "z" (factorized)."""

    table_names = ("y", "z")
    hyper_upscale = Fraction(4)  # y positions per z position along each side
    exact_tile = 32  # on large latents h_s runs in tiles of 32x32 z positions ...
    exact_halo = 4  # ... with this many z positions of context (exact arithmetic: identical numbers)

    def aux_loss(self) -> torch.Tensor:
        return self.entropy_bottleneck.loss()

    def _split_parameters(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scales, means) from the h_s output."""
        raise NotImplementedError

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
    def hyper_parameters(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scales and means (float64) for y, computed exactly from z_hat (see codec.nn.exact)."""
        self.check_ready()
        if z_hat.shape[-2] * z_hat.shape[-1] > self.exact_tile**2:
            params = tiled(self._exact_h_s, z_hat, self.hyper_upscale, self.exact_tile, self.exact_halo)
        else:
            params = self._exact_h_s(z_hat)
        return self._split_parameters(params)

    @torch.no_grad()
    def entropy_parameters(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale-table indices and means (float64) for y, computed exactly from z_hat."""
        scales, means = self.hyper_parameters(z_hat)
        return scale_indices(scales, self.table_tensors["scale_table"]), means

    @torch.no_grad()
    def encode_hyper(self, y: torch.Tensor, z: torch.Tensor) -> list[bytes]:
        """Code z (factorized), then y given z_hat; returns the four sections."""
        z_hat, z_stream, z_escapes = encode_factorized(z, self.tables["z"], self.table_tensors["z_medians"])
        return [*self.encode_y(y, z_hat), z_stream, z_escapes]

    @torch.no_grad()
    def encode_y(self, y: torch.Tensor, z_hat: torch.Tensor) -> tuple[bytes, bytes]:
        """y's ANS stream and escapes, each element under the Gaussian of its exact scale index and mean."""
        indices, means = self.entropy_parameters(z_hat)
        y_symbols = torch.round(y.double() - means).long().numpy()
        return encode_symbols(y_symbols, indices.numpy(), self.tables["y"])

    @torch.no_grad()
    def decode_hyper(self, sections: list[bytes], y_shape: tuple[int, ...], z_shape: tuple[int, ...]) -> torch.Tensor:
        """Inverse of `encode_hyper`: y_hat (float32) of `y_shape`."""
        y_stream, y_escapes, z_stream, z_escapes = sections
        z_hat = decode_factorized(z_stream, z_escapes, z_shape, self.tables["z"], self.table_tensors["z_medians"])
        return self.decode_y(y_stream, y_escapes, z_hat, y_shape)

    @torch.no_grad()
    def decode_y(self, stream: bytes, escapes: bytes, z_hat: torch.Tensor, y_shape: tuple[int, ...]) -> torch.Tensor:
        """Inverse of `encode_y`."""
        indices, means = self.entropy_parameters(z_hat)
        if tuple(indices.shape) != tuple(y_shape):
            raise CodecError(f"corrupt bitstream: latent shapes {y_shape} and {tuple(z_hat.shape)} do not fit together")
        y_symbols = decode_symbols(stream, escapes, indices.numpy(), self.tables["y"])
        return (torch.from_numpy(y_symbols).double() + means).float()
