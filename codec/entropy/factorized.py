"""Factorized coder: one integer PMF per channel, from a trained CompressAI `EntropyBottleneck`.

Ballé, Laparra, Simoncelli, "End-to-end optimized image compression" (ICLR 2017) / Ballé et al. (ICLR 2018):
each channel has its own learned density; a symbol is round(z - median) of its channel.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from codec._compressai import EntropyBottleneck, entropy_bottleneck

from codec.entropy.coder import decode_symbols, encode_symbols
from codec.entropy.latent_codec import LatentCodec
from codec.entropy.streams import LatentStreams
from codec.entropy.tables import TableSet
from codec.errors import CodecError
from codec.nn.quantize import Quantizer, round_around

MAX_HALF_WIDTH = 1024


@torch.no_grad()
def build_factorized_tables(bottleneck: EntropyBottleneck) -> tuple[TableSet, torch.Tensor]:
    """Per-channel tables and the medians to subtract before coding (shape [C])."""
    quantiles = bottleneck.quantiles.detach().float().cpu()  # [C, 1, 3]: low, median, high
    medians = quantiles[:, 0, 1]
    pmfs, offsets, tails = [], [], []
    for channel in range(quantiles.shape[0]):
        median = float(medians[channel])
        low = max(-MAX_HALF_WIDTH, math.floor(float(quantiles[channel, 0, 0]) - median))
        high = min(MAX_HALF_WIDTH, math.ceil(float(quantiles[channel, 0, 2]) - median))
        support = torch.arange(low, high + 1, dtype=torch.float32)
        points = (support + median).view(1, 1, -1).expand(quantiles.shape[0], 1, -1)
        likelihood, _, _ = bottleneck._likelihood(points)
        pmf = likelihood[channel, 0].double().numpy()
        pmfs.append(pmf)
        offsets.append(low)
        tails.append(max(0.0, 1.0 - float(pmf.sum())))
    return TableSet.from_pmfs(pmfs, offsets, tails), medians


def bits_of(entropy_model: torch.nn.Module, likelihood: torch.Tensor) -> torch.Tensor:
    """Total information content (bits) of `likelihood`, under the model's lower bound as in training."""
    if entropy_model.use_likelihood_bound:
        likelihood = entropy_model.likelihood_lower_bound(likelihood)
    return -torch.log2(likelihood).sum()


def channel_index(shape: tuple[int, ...]) -> np.ndarray:
    """Table index = channel, for a [B, C, H, W] latent."""
    return np.broadcast_to(np.arange(shape[1]).reshape(1, -1, 1, 1), shape)


def encode_factorized(latent: torch.Tensor, tables: TableSet, medians: torch.Tensor) -> tuple[torch.Tensor, bytes, bytes]:
    """Quantize a [B, C, H, W] latent around its channel medians and code it; returns (dequantized, ANS, escapes)."""
    medians = medians.view(1, -1, 1, 1)
    symbols = torch.round(latent - medians)
    stream, escapes = encode_symbols(symbols.long().numpy(), channel_index(tuple(latent.shape)), tables)
    return symbols + medians, stream, escapes


def decode_factorized(stream: bytes, escapes: bytes, shape: tuple[int, ...], tables: TableSet,
                      medians: torch.Tensor) -> torch.Tensor:
    """Inverse of `encode_factorized`: the dequantized latent of `shape`."""
    symbols = decode_symbols(stream, escapes, channel_index(shape), tables)
    return torch.from_numpy(symbols).float() + medians.view(1, -1, 1, 1)


# a model's state-dict names from before its latent codec was a module (see LatentCodecHost.LEGACY_KEYS)
FACTORIZED_LEGACY_KEYS = {"entropy_bottleneck.": "latent_codec.entropy_bottleneck."}


class FactorizedLatentCodec(LatentCodec):
    """A latent coded with one learned density per channel (Ballé et al. 2017 / 2018): CompressAI's
    `EntropyBottleneck` in training, per-channel integer tables (named `name`) and medians when coding.

    `straight_through`: the training-time y_hat is round(y - median) + median with a straight-through gradient (a
    latent the decoder reconstructs from); otherwise the bottleneck's own noisy / rounded output (a hyper-latent)."""

    section_names = ("ans", "escapes")

    def __init__(self, channels: int, name: str = "y", straight_through: bool = True) -> None:
        super().__init__()
        self.name = name
        self.table_names = (name,)
        self.table_tensor_names = (f"{name}_medians",)
        self.straight_through = straight_through
        self.entropy_bottleneck = entropy_bottleneck(channels)

    @property
    def channels(self) -> int:
        return self.entropy_bottleneck.channels

    def medians(self) -> torch.Tensor:
        """[1, C, 1, 1] training-time medians (detached): the centres y is rounded around."""
        return self.entropy_bottleneck._get_medians().detach().view(1, -1, 1, 1)

    def forward(self, y: torch.Tensor) -> dict:
        y_hat, likelihoods = self.entropy_bottleneck(y)
        if self.straight_through:
            y_hat = round_around(y, self.medians())
        return {"y_hat": y_hat, "likelihoods": {self.name: likelihoods}}

    def aux_loss(self) -> torch.Tensor:
        return self.entropy_bottleneck.loss()

    def estimate(self, y: torch.Tensor, quantize: Quantizer = round_around) -> tuple[torch.Tensor, torch.Tensor]:
        """(y_hat, bits) with y_hat = quantize(y, medians): by default as the coder makes them (rounding around the
        medians, straight-through gradients); what encoder-side refinement (codec.image.refine) minimises."""
        y_hat = quantize(y, self.medians())
        values = y_hat.transpose(0, 1).reshape(y.shape[1], 1, -1)  # the bottleneck's [C, 1, N] layout
        likelihood, _, _ = self.entropy_bottleneck._likelihood(values)
        return y_hat, bits_of(self.entropy_bottleneck, likelihood)

    @torch.no_grad()
    def update(self) -> None:
        """Freeze the per-channel integer tables and the medians symbols are centred on."""
        tables, medians = build_factorized_tables(self.entropy_bottleneck)
        self.tables = {self.name: tables}
        self.table_tensors = {f"{self.name}_medians": medians}

    @torch.no_grad()
    def encode(self, y: torch.Tensor) -> tuple[torch.Tensor, list[bytes]]:
        """(y_hat, [ANS stream, escapes])."""
        self.check_ready()
        y_hat, stream, escapes = encode_factorized(y, self.tables[self.name], self.table_tensors[f"{self.name}_medians"])
        return y_hat, [stream, escapes]

    @torch.no_grad()
    def decode(self, sections: list[bytes], shape: tuple[int, ...]) -> torch.Tensor:
        self.check_ready()
        return decode_factorized(*sections, shape, self.tables[self.name], self.table_tensors[f"{self.name}_medians"])

    def compress(self, y: torch.Tensor) -> LatentStreams:
        return LatentStreams(self.encode(y)[1], [tuple(y.shape)])

    def decompress(self, streams: LatentStreams) -> torch.Tensor:
        if len(streams.sections) != 2 or len(streams.shapes) != 1:
            raise CodecError(f"corrupt bitstream: {len(streams.sections)} sections, a factorized latent writes 2")
        return self.decode(streams.sections, tuple(streams.shapes[0]))
