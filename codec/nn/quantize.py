"""Quantization in training: rounding whose gradient passes straight through (Bengio et al. 2013; used for the
"mixed" quantization of Minnen & Singh 2020: noise for the rate term, rounding for the synthesis)."""
from __future__ import annotations

import torch


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()
