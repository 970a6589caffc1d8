"""Factorized coder: one integer PMF per channel, from a trained CompressAI `EntropyBottleneck`.

Ballé, Laparra, Simoncelli, "End-to-end optimized image compression" (ICLR 2017) / Ballé et al. (ICLR 2018):
each channel has its own learned density; a symbol is round(z - median) of its channel.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from codec._compressai import EntropyBottleneck

from codec.entropy.coder import decode_symbols, encode_symbols
from codec.entropy.tables import TableSet

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


class FactorizedLatent:
    """Mixin for models whose latent "y" is coded with `self.entropy_bottleneck` (one table per channel)."""

    table_names = ("y",)

    def aux_loss(self) -> torch.Tensor:
        return self.entropy_bottleneck.loss()

    @torch.no_grad()
    def update(self) -> None:
        """Freeze the per-channel integer tables and the medians symbols are centred on."""
        tables, medians = build_factorized_tables(self.entropy_bottleneck)
        self.tables = {"y": tables}
        self.table_tensors = {"y_medians": medians}
