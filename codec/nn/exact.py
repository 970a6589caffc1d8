"""Exact evaluation of the hyper-synthesis transform, so encoder and decoder agree bit for bit.

Ballé, Johnston, Minnen, "Integer networks for data compression with latent-variable models" (ICLR 2019):
entropy parameters computed in floating point can differ between machines, thread counts and batch sizes, and a
decoder that picks another probability table than the encoder decodes garbage. Here weights and activations are
rounded to fixed point and each convolution runs in float64 on integer values. Every product and partial sum is an
integer below 2**53, so float64 adds them exactly in any order: the result is the same for any thread count, batch
size or device. Elementwise steps (rescale, bias, activation) are single IEEE operations and equally reproducible.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATION_FRACTION_BITS = 12  # activations are multiples of 2**-12
ACTIVATION_LIMIT = float(2**24)  # |activation| * 2**12 is clamped to this (a deterministic op on both sides)
WEIGHT_MAGNITUDE_BITS = 14  # |integer weight| <= 2**14
EXACT_LIMIT = 2.0**53


def _weight_shift(weight: torch.Tensor) -> int:
    """Power of two that brings the largest weight just under 2**WEIGHT_MAGNITUDE_BITS."""
    peak = float(weight.detach().abs().max())
    if peak == 0.0:
        return 0
    return WEIGHT_MAGNITUDE_BITS - math.ceil(math.log2(peak)) - 1


def _check_exactness(layer: nn.Module) -> None:
    fan_in = layer.weight[0].numel() if isinstance(layer, nn.Conv2d) else layer.weight[:, 0].numel()
    bound = ACTIVATION_LIMIT * 2.0**WEIGHT_MAGNITUDE_BITS * fan_in
    if bound >= EXACT_LIMIT:
        raise ValueError(f"layer {layer} is too wide for exact float64 evaluation")


class ExactSequential:
    """Runs an `nn.Sequential` of Conv2d / ConvTranspose2d / ReLU / LeakyReLU exactly (see module docstring)."""

    def __init__(self, layers: nn.Sequential) -> None:
        self.steps: list[tuple[str, object]] = []
        for layer in layers:
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
                shift = _weight_shift(layer.weight)
                _check_exactness(layer)
                weight = torch.round(layer.weight.detach().double() * 2.0**shift)
                bias = layer.bias.detach().double() if layer.bias is not None else None
                self.steps.append(("conv", (layer, weight, bias, shift)))
            elif isinstance(layer, nn.ReLU):
                self.steps.append(("relu", None))
            elif isinstance(layer, nn.LeakyReLU):
                self.steps.append(("leaky", layer.negative_slope))
            else:
                raise TypeError(f"exact evaluation does not support {type(layer).__name__}")

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.double()
        for kind, arg in self.steps:
            if kind == "conv":
                layer, weight, bias, shift = arg
                x = _exact_conv(layer, x, weight.to(x.device), shift)
                if bias is not None:
                    x = x + bias.to(x.device).view(1, -1, 1, 1)
            elif kind == "relu":
                x = torch.clamp_min(x, 0.0)
            else:
                x = torch.where(x >= 0, x, x * arg)
        return x


class ExactConvAt:
    """A stride-1 Conv2d with "same" zero padding, evaluated exactly (the numbers `ExactSequential` gives) at chosen
    output positions only, from chosen kernel taps only: a caller that knows the other taps only ever see zeros
    (a checkerboard context) skips them. Output [B, out channels, P] for P positions."""

    def __init__(self, layer: nn.Conv2d, taps: torch.Tensor | None = None) -> None:
        height, width = layer.kernel_size
        if layer.stride != (1, 1) or layer.dilation != (1, 1) or layer.groups != 1 or \
                layer.padding != (height // 2, width // 2) or height % 2 == 0 or width % 2 == 0:
            raise ValueError(f"{layer} is not a stride-1, odd-kernel, same-padded convolution")
        self.shift = _weight_shift(layer.weight)  # of the whole kernel: the same grid as the dense evaluation
        _check_exactness(layer)
        taps = torch.ones(height, width, dtype=torch.bool) if taps is None else taps
        self.offsets = [(int(dy), int(dx)) for dy, dx in taps.nonzero()]
        weight = torch.round(layer.weight.detach().double() * 2.0**self.shift)[:, :, taps]  # [out, in, taps]
        self.weight = weight.reshape(weight.shape[0], -1)
        self.bias = layer.bias.detach().double().view(1, -1, 1) if layer.bias is not None else None
        self.padding = (width // 2, width // 2, height // 2, height // 2)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """The convolution of x [B, C, H, W] at positions (rows[i], cols[i]), `chunk` positions at a time (the
        gathered inputs are taps x chunk x C floats)."""
        scale = 2.0**ACTIVATION_FRACTION_BITS
        x_int = F.pad(torch.clamp(torch.round(x.double() * scale), -ACTIVATION_LIMIT, ACTIVATION_LIMIT), self.padding)
        padded_width = x_int.shape[-1]
        x_int = x_int.flatten(2)
        weight = self.weight.to(x.device)
        taps = torch.tensor([dy * padded_width + dx for dy, dx in self.offsets], device=x.device).view(-1, 1)
        pieces = []
        for start in range(0, len(rows), chunk):
            where = taps + (rows[start : start + chunk] * padded_width + cols[start : start + chunk]).view(1, -1)
            columns = x_int[:, :, where]  # [B, C, taps, P]
            pieces.append(torch.matmul(weight, columns.flatten(1, 2)))  # integer sums below 2**53: exact
        out = torch.cat(pieces, -1) * (2.0 ** -(ACTIVATION_FRACTION_BITS + self.shift))
        return out + self.bias.to(x.device) if self.bias is not None else out


def _exact_conv(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor, shift: int) -> torch.Tensor:
    scale = 2.0**ACTIVATION_FRACTION_BITS
    x_int = torch.clamp(torch.round(x * scale), -ACTIVATION_LIMIT, ACTIVATION_LIMIT).contiguous()
    if isinstance(layer, nn.ConvTranspose2d):
        out = F.conv_transpose2d(
            x_int, weight, None, layer.stride, layer.padding, layer.output_padding, layer.groups, layer.dilation
        )
    else:
        out = F.conv2d(x_int, weight, None, layer.stride, layer.padding, layer.dilation, layer.groups)
    return out * (2.0 ** -(ACTIVATION_FRACTION_BITS + shift))
