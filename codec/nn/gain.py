"""Gain units for one variable-rate model.

Cui, Wang, Zhang, Chen, Bai, Li, "Asymmetric Gained Deep Image Compression With Continuous Rate Adaptation"
(CVPR 2021): a learned per-channel gain vector per rate level scales the latent before quantization and an inverse
gain undoes it before synthesis; interpolating the vectors geometrically between levels gives any rate in between.
"""
from __future__ import annotations

import torch
from torch import nn


class GainUnits(nn.Module):
    """Per-level gain and inverse-gain vectors, stored as logs, interpolated for fractional levels."""

    def __init__(self, num_levels: int, channels: int, initial_log_gains: torch.Tensor | None = None) -> None:
        super().__init__()
        init = torch.zeros(num_levels) if initial_log_gains is None else initial_log_gains.float()
        self.log_gain = nn.Parameter(init.view(-1, 1).repeat(1, channels).clone())
        self.log_inverse_gain = nn.Parameter(-init.view(-1, 1).repeat(1, channels).clone())

    @property
    def num_levels(self) -> int:
        return self.log_gain.shape[0]

    def forward(self, level: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gains for a batch of (possibly fractional) levels in [0, num_levels - 1], shaped [B, C, 1, 1]."""
        level = level.float().clamp(0, self.num_levels - 1)
        low = level.floor().long().clamp(max=self.num_levels - 2) if self.num_levels > 1 else level.long() * 0
        frac = (level - low.float()).view(-1, 1)
        high = (low + 1).clamp(max=self.num_levels - 1)

        def mix(table: torch.Tensor) -> torch.Tensor:
            return torch.exp(table[low] * (1 - frac) + table[high] * frac)[:, :, None, None]

        return mix(self.log_gain), mix(self.log_inverse_gain)
