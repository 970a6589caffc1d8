"""Gaussian conditional coder: a fixed table of scales, one integer PMF per scale, means kept out of the CDF.

The PMF of a symbol k = round(y - mean) under scale s is Phi((k + 1/2) / s) - Phi((k - 1/2) / s) (Ballé 2018;
Minnen 2018). The decoder maps each predicted scale to an index into the table; tables are built once by
`build_gaussian_tables` and stored with the weights.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import ndtr, ndtri

from codec._compressai import gaussian_conditional
from codec.entropy.coder import decode_symbols, encode_symbols
from codec.entropy.factorized import bits_of
from codec.entropy.latent_codec import LatentCodec
from codec.entropy.streams import LatentStreams
from codec.entropy.tables import TableSet
from codec.errors import CodecError
from codec.nn.quantize import Quantizer, round_around

SCALE_BOUND = 0.11
NUM_SCALES = 64
MAX_SCALE = 256.0
TAIL_MASS = 1e-9


def default_scale_table() -> np.ndarray:
    """The 64 log-spaced scales from 0.11 to 256 that CompressAI uses."""
    return np.exp(np.linspace(math.log(SCALE_BOUND), math.log(MAX_SCALE), NUM_SCALES))


def build_gaussian_tables(scales: np.ndarray, tail_mass: float = TAIL_MASS) -> TableSet:
    pmfs, offsets, tails = [], [], []
    multiplier = -ndtri(tail_mass / 2)
    for scale in np.asarray(scales, dtype=np.float64):
        half_width = int(math.ceil(scale * multiplier))
        support = np.arange(-half_width, half_width + 1, dtype=np.float64)
        pmf = ndtr((support + 0.5) / scale) - ndtr((support - 0.5) / scale)
        pmfs.append(pmf)
        offsets.append(-half_width)
        tails.append(max(0.0, 1.0 - float(pmf.sum())))
    return TableSet.from_pmfs(pmfs, offsets, tails)


def scale_indices(scales: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Index of the smallest table scale >= each predicted scale (clamped to the table); exact, elementwise."""
    scales = scales.double().contiguous()
    return torch.bucketize(scales, table.double().to(scales.device)).clamp_(max=len(table) - 1)


class GaussianConditionalLatentCodec(LatentCodec):
    """y coded given a scale and a mean per element from elsewhere (a hyperprior): CompressAI's `GaussianConditional`
    for training-time likelihoods; when coding, round(y - mean) under the table of the scale's index.

    Scales and means must be computed exactly (bit-identical on encoder and decoder), e.g. by an exact h_s."""

    section_names = ("ans", "escapes")
    table_names = ("y",)
    table_tensor_names = ("scale_table",)

    def __init__(self) -> None:
        super().__init__()
        self.gaussian_conditional = gaussian_conditional()

    def forward(self, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor) -> dict:
        """Likelihoods under noise (CompressAI) and y_hat = round(y - mean) + mean with a straight-through gradient
        (the "mixed" quantization: noise for the rate, rounding for the synthesis)."""
        _, likelihoods = self.gaussian_conditional(y, scales, means=means)
        return {"y_hat": round_around(y, means), "likelihoods": {"y": likelihoods}}

    def estimate(self, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor,
                 quantize: Quantizer = round_around) -> tuple[torch.Tensor, torch.Tensor]:
        """(y_hat, bits) with y_hat = quantize(y, means): by default as the coder makes them (round(y - mean) + mean,
        straight-through gradients)."""
        y_hat = quantize(y, means)
        return y_hat, self.bits(y_hat, scales, means)

    def bits(self, y_hat: torch.Tensor, scales: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
        """Information content (bits) of the rounded `y_hat` under Gaussians of `scales` around `means`."""
        return bits_of(self.gaussian_conditional, self.gaussian_conditional._likelihood(y_hat, scales, means))

    @torch.no_grad()
    def update(self) -> None:
        """The 64 Gaussian tables of `default_scale_table` (fixed: they do not depend on training)."""
        scale_table = default_scale_table()
        self.tables = {"y": build_gaussian_tables(scale_table)}
        self.table_tensors = {"scale_table": torch.from_numpy(scale_table)}
        self._after_tables_loaded()

    def scale_indices(self, scales: torch.Tensor) -> torch.Tensor:
        return scale_indices(scales, self.table_tensors["scale_table"])

    @torch.no_grad()
    def encode(self, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor) -> list[bytes]:
        """[ANS stream, escapes] of y, each element under the Gaussian of its scale index and mean (float64)."""
        self.check_ready()
        symbols = torch.round(y.double() - means).long().numpy()
        return list(encode_symbols(symbols, self.scale_indices(scales).numpy(), self.tables["y"]))

    @torch.no_grad()
    def decode(self, sections: list[bytes], scales: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
        """Inverse of `encode`: y_hat (float32) shaped like `means`."""
        self.check_ready()
        symbols = decode_symbols(*sections, self.scale_indices(scales).numpy(), self.tables["y"])
        return (torch.from_numpy(symbols).double() + means).float()

    def compress(self, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor) -> LatentStreams:
        return LatentStreams(self.encode(y, scales, means), [tuple(y.shape)])

    def decompress(self, streams: LatentStreams, scales: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
        if len(streams.sections) != 2:
            raise CodecError(f"corrupt bitstream: {len(streams.sections)} sections, a Gaussian latent writes 2")
        if [tuple(shape) for shape in streams.shapes] != [tuple(means.shape)]:
            raise CodecError(f"corrupt bitstream: latent shapes {streams.shapes} do not fit the parameters")
        return self.decode(streams.sections, scales, means)
