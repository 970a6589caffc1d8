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

from codec.entropy.tables import TableSet

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
