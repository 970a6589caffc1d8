"""Tiled evaluation of a convolutional transform, so large images fit in memory without seams.

Each tile is computed with a halo of context on every side (wider than the transform's receptive field reaches
with any noticeable weight) and only its centre is kept, so the stitched output matches the untiled one up to
floating-point rounding. The tiling depends only on the input size, so a given file always decodes the same way.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Callable

import torch


def tiled(transform: Callable, x: torch.Tensor | tuple[torch.Tensor | None, ...], factor: Fraction, tile: int,
          halo: int) -> torch.Tensor:
    """Apply `transform` (which scales H and W by `factor`) tile by tile; `tile` and `halo` are in input units and
    must be multiples of 1 / factor when the transform downsamples. `x` may be a tuple of tensors of one size (None
    entries pass through): the transform then gets the tuple of their pieces."""
    inputs = x if isinstance(x, tuple) else (x,)
    height, width = next(t for t in inputs if t is not None).shape[-2:]
    output = None
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            context_top, context_left = max(0, top - halo), max(0, left - halo)
            window = (slice(context_top, min(height, bottom + halo)), slice(context_left, min(width, right + halo)))
            pieces = tuple(None if t is None else t[..., window[0], window[1]] for t in inputs)
            piece = transform(pieces if isinstance(x, tuple) else pieces[0])
            if output is None:
                shape = (*piece.shape[:2], int(height * factor), int(width * factor))
                output = torch.empty(shape, dtype=piece.dtype, device=piece.device)
            rows = slice(int((top - context_top) * factor), int((bottom - context_top) * factor))
            cols = slice(int((left - context_left) * factor), int((right - context_left) * factor))
            output[..., int(top * factor) : int(bottom * factor), int(left * factor) : int(right * factor)] = (
                piece[..., rows, cols])
            del piece
    return output
