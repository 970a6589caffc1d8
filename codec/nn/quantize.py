"""Quantization in training: rounding whose gradient passes straight through (Bengio et al. 2013; used for the
"mixed" quantization of Minnen & Singh 2020: noise for the rate term, rounding for the synthesis)."""
from __future__ import annotations

from typing import Callable

import torch

Quantizer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (values, centres) -> quantized values


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


def round_around(values: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """round(values - centres) + centres with a straight-through gradient: what the coders do to a latent."""
    return ste_round(values - centres) + centres
