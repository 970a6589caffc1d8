"""Parallel context model for a Gaussian-coded latent: channel groups, each coded in two checkerboard passes.

- Minnen & Singh, "Channel-wise autoregressive entropy models for learned image compression" (ICIP 2020), and
  He, Yang, Peng, Ma, Qin, Wang, "ELIC" (CVPR 2022): y is split into uneven channel groups; each group's entropy
  parameters see every group decoded before it.
- He, Zheng, Sun, Wang, Qin, "Checkerboard context model for efficient learned image compression" (CVPR 2021):
  within a group the anchor half of the positions is coded first and conditions the other half.

        hyper (mean, scale from h_s) ─┬─► group 0 anchors ─► group 0 non-anchors ─► group 1 anchors ─► ...
        y_hat of groups < k ──────────┘      (5x5 conv over the anchors decoded so far)

Decoding takes 2 x groups network passes, never a per-position loop. Each group predicts a correction to the
hyperprior's mean and scale (its last layer starts at zero, so a fresh context model codes exactly like the
mean-scale hyperprior it starts from). On the coding path the context networks run exactly (codec.nn.exact): their
inputs are put on a fixed-point grid and every sum is an exact float64 integer, so the encoder and decoder derive
bit-identical scale indices and means at any thread count, batch or precision path.

Optional latent residual prediction (Minnen & Singh 2020, "LRP"): once every pass is decoded, a small network of
the decoded latent and its entropy parameters predicts the rounding residual y - y_hat (clamped to +-1/2) and adds
it before synthesis. It runs on the decoder only, after entropy decoding, so the bitstream is untouched; it is
evaluated exactly like the context nets, so the pixels do not depend on the thread count; it starts at zero, so a
model that gains it decodes exactly as before until it is trained.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from codec.entropy.coder import PassDecoder, encode_passes
from codec.entropy.gaussian import GaussianConditionalLatentCodec
from codec.errors import CodecError
from codec.nn.exact import ExactConvAt, ExactSequential
from codec.nn.quantize import Quantizer, round_around

DEFAULT_GROUPS = (16, 16, 32, 64, 64)  # ELIC's uneven split of 192 channels


def anchor_mask(height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """[1, 1, H, W] bool: True on the checkerboard's anchors ((row + column) even), decoded first."""
    rows = torch.arange(height, device=device).view(-1, 1)
    cols = torch.arange(width, device=device).view(1, -1)
    return ((rows + cols) % 2 == 0).view(1, 1, height, width)


class GroupParameters(nn.Module):
    """Entropy-parameter corrections for one channel group: hidden = W_h * hyper + W_c * previous groups +
    W_s * anchors (5x5), then two 1x1 layers to (delta scale, delta mean)."""

    def __init__(self, channels: int, previous: int, hidden: int) -> None:
        super().__init__()
        self.from_hyper = nn.Conv2d(2 * channels, hidden, 1)
        self.from_previous = nn.Conv2d(previous, hidden, 3, padding=1, bias=False) if previous else None
        self.from_anchors = nn.Conv2d(channels, hidden, 5, padding=2, bias=False)
        self.head = nn.Sequential(nn.LeakyReLU(), nn.Conv2d(hidden, hidden, 1), nn.LeakyReLU(),
                                  nn.Conv2d(hidden, 2 * channels, 1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)


def anchor_taps(size: int) -> torch.Tensor:
    """[size, size] bool: the kernel taps that reach anchors from a non-anchor position (odd row + column offset);
    in the second pass every other tap sees a position not yet decoded (zero)."""
    offsets = torch.arange(size) - size // 2
    return (offsets.view(-1, 1) + offsets.view(1, -1)) % 2 == 1


class ResidualPrediction(nn.Module):
    """Latent residual prediction (Minnen & Singh, ICIP 2020): the expected rounding residual given the whole
    decoded latent (it runs after the last pass, so every group sees every other) and its refined entropy
    parameters, clamped to +-1/2 (a clamp, not the paper's 0.5 tanh: exact on every machine). The last layer starts
    at zero."""

    def __init__(self, channels: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3 * channels, hidden, 1), nn.LeakyReLU(),
                                 nn.Conv2d(hidden, hidden, 3, padding=1), nn.LeakyReLU(),
                                 nn.Conv2d(hidden, channels, 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self._exact: ExactSequential | None = None

    @staticmethod
    def _inputs(y_hat: torch.Tensor, means: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        return torch.cat([y_hat, means, scales], 1)

    def forward(self, y_hat: torch.Tensor, means: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """y_hat plus the predicted residual (training)."""
        return y_hat + self.net(self._inputs(y_hat, means, scales)).clamp(-0.5, 0.5)

    def freeze(self) -> None:
        """Build the exact evaluator from the current weights."""
        self._exact = ExactSequential(self.net)

    def exact(self, y_hat: torch.Tensor, means: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """y_hat plus the predicted residual, evaluated exactly (float64 in, float32 out)."""
        return (y_hat + self._exact(self._inputs(y_hat, means, scales)).clamp(-0.5, 0.5)).float()


class ExactGroupParameters:
    """`GroupParameters` evaluated exactly (codec.nn.exact) at one pass's positions; float64 in and out."""

    def __init__(self, group: GroupParameters) -> None:
        self.from_hyper = ExactConvAt(group.from_hyper)
        self.from_previous = ExactConvAt(group.from_previous) if group.from_previous else None
        self.from_anchors = ExactConvAt(group.from_anchors, anchor_taps(group.from_anchors.kernel_size[0]))
        self.head = ExactSequential(group.head)

    def __call__(self, hyper: torch.Tensor, previous: torch.Tensor | None, group_hat: torch.Tensor | None,
                 rows: torch.Tensor, cols: torch.Tensor, chunk: int) -> torch.Tensor:
        """(delta scale, delta mean) [B, 2 x channels, P] at positions (rows, cols): the anchor pass sees the
        hyperprior and the groups before it, the second pass also the group's decoded anchors (sums in the same
        order as training; each layer of the head sees one position at a time). Convolutions gather their inputs
        `chunk` positions at a time."""
        hidden = self.from_hyper(hyper, rows, cols, chunk)
        if previous is not None:
            hidden = hidden + self.from_previous(previous, rows, cols, chunk)
        if group_hat is not None:
            hidden = hidden + self.from_anchors(group_hat, rows, cols, chunk)
        return self.head(hidden[..., None])[..., 0]


class ChannelCheckerboardLatentCodec(GaussianConditionalLatentCodec):
    """y of `sum(groups)` channels coded given the hyperprior's (scale, mean) and its own context; see the module
    docstring. Plugs into `HyperpriorLatentCodec` in place of the plain Gaussian conditional."""

    def __init__(self, groups: tuple[int, ...] = DEFAULT_GROUPS, hidden: int = 128,
                 residual_prediction: bool = False) -> None:
        super().__init__()
        self.groups = tuple(int(channels) for channels in groups)
        starts = np.concatenate(([0], np.cumsum(self.groups))).tolist()
        self.slices = [slice(starts[k], starts[k + 1]) for k in range(len(self.groups))]
        self.group_parameters = nn.ModuleList(
            GroupParameters(channels, starts[k], hidden) for k, channels in enumerate(self.groups))
        self.residual_prediction = ResidualPrediction(self.channels) if residual_prediction else None
        self._exact: list[ExactGroupParameters] | None = None

    @property
    def channels(self) -> int:
        return sum(self.groups)

    def _after_tables_loaded(self) -> None:
        """Build the exact evaluators from the current weights (after training: `update()` or loading tables)."""
        self._exact = [ExactGroupParameters(group) for group in self.group_parameters]
        if self.residual_prediction is not None:
            self.residual_prediction.freeze()

    # --- training ------------------------------------------------------------------------------------------
    def forward(self, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor) -> dict:
        """Likelihoods and y_hat (straight-through rounding around the refined means), every group conditioned on
        y_hat as the decoder will see it."""
        scales, means, y_hat = self.refine(y, scales, means, round_around)
        _, likelihoods = self.gaussian_conditional(y, scales, means=means)
        if self.residual_prediction is not None:
            y_hat = self.residual_prediction(y_hat, means, scales)
        return {"y_hat": y_hat, "likelihoods": {"y": likelihoods}}

    def estimate(self, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor,
                 quantize: Quantizer = round_around) -> tuple[torch.Tensor, torch.Tensor]:
        """(y_hat, bits), every group quantized by `quantize(y, means)` (by default as the coder does, with
        straight-through gradients) and conditioned on the groups before it; residual prediction included."""
        scales, means, y_hat = self.refine(y, scales, means, quantize)
        bits = self.bits(y_hat, scales, means)
        if self.residual_prediction is not None:
            y_hat = self.residual_prediction(y_hat, means, scales)
        return y_hat, bits

    def refine(self, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor,
               quantize: Quantizer) -> tuple[torch.Tensor, ...]:
        """(scales, means, y_hat) for the whole latent, every group conditioned as the decoder will see it.

        `quantize(y, means)` gives y_hat (e.g. straight-through rounding of y - means, plus means)."""
        anchors = anchor_mask(*y.shape[-2:], device=y.device)
        out_scales, out_means, out_hat = [], [], []
        for group, part in zip(self.group_parameters, self.slices):
            hyper = torch.cat([scales[:, part], means[:, part]], 1)
            hidden = group.from_hyper(hyper)
            if group.from_previous is not None:
                hidden = hidden + group.from_previous(torch.cat(out_hat, 1))
            scale_a, mean_a = self._refine(group.head(hidden), scales[:, part], means[:, part])
            y_hat_a = quantize(y[:, part], mean_a) * anchors
            scale_n, mean_n = self._refine(group.head(hidden + group.from_anchors(y_hat_a)), scales[:, part],
                                          means[:, part])
            scale_k = torch.where(anchors, scale_a, scale_n)
            mean_k = torch.where(anchors, mean_a, mean_n)
            out_scales.append(scale_k)
            out_means.append(mean_k)
            out_hat.append(quantize(y[:, part], mean_k))
        return torch.cat(out_scales, 1), torch.cat(out_means, 1), torch.cat(out_hat, 1)

    @staticmethod
    def _refine(delta: torch.Tensor, scales: torch.Tensor, means: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        delta_scale, delta_mean = delta.chunk(2, 1)
        return scales + delta_scale, means + delta_mean

    # --- exact coding ----------------------------------------------------------------------------------------
    exact_chunk = 64 * 64  # positions gathered at a time (bounds the float64 working set on large latents)

    @torch.no_grad()
    def _passes(self, scales: torch.Tensor, means: torch.Tensor,
                code: Callable[[np.ndarray, torch.Tensor, slice, torch.Tensor], np.ndarray]) -> torch.Tensor:
        """Walk the 2 x groups passes; `code(indices, means, part, positions)` codes one pass: the scale indices and
        means of channels `part` at `positions` ([H, W] bool), flattened in (batch, channel, row, column) order; it
        returns the symbols as the decoder reads them. Returns (y_hat, scales, means) with the refined parameters
        (float64)."""
        self.check_ready()
        if scales.shape[1] != self.channels:
            raise CodecError(f"corrupt bitstream: latent has {scales.shape[1]} channels, context model {self.channels}")
        scales, means = scales.double(), means.double()
        anchors = anchor_mask(*scales.shape[-2:], device=scales.device)[0, 0]
        y_hat = torch.zeros_like(means)
        refined_scales, refined_means = torch.empty_like(scales), torch.empty_like(means)
        for exact, part in zip(self._exact, self.slices):
            hyper = torch.cat([scales[:, part], means[:, part]], 1)
            previous = y_hat[:, : part.start] if part.start else None
            for positions in (anchors, ~anchors):
                group_hat = None if positions is anchors else y_hat[:, part]  # its anchors, zeros elsewhere
                rows, cols = positions.nonzero(as_tuple=True)
                delta = exact(hyper, previous, group_hat, rows, cols, self.exact_chunk)
                pass_scales, pass_means = self._refine(delta, scales[:, part][:, :, positions],
                                                       means[:, part][:, :, positions])
                symbols = code(self.scale_indices(pass_scales).flatten().numpy(), pass_means.flatten(), part, positions)
                y_hat[:, part][:, :, positions] = torch.from_numpy(symbols).double().view_as(pass_means) + pass_means
                refined_scales[:, part][:, :, positions] = pass_scales
                refined_means[:, part][:, :, positions] = pass_means
        return y_hat, refined_scales, refined_means

    @torch.no_grad()
    def encode(self, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor) -> list[bytes]:
        """[ANS stream, escapes] of y given the hyperprior's (float64, exact) scales and means."""
        y = y.double()
        passes: list[tuple[np.ndarray, np.ndarray]] = []

        def code(indices: np.ndarray, pass_means: torch.Tensor, part: slice, positions: torch.Tensor) -> np.ndarray:
            symbols = torch.round(y[:, part][:, :, positions].flatten() - pass_means).long().numpy()
            passes.append((symbols, indices))
            return symbols

        self._passes(scales, means, code)
        return list(encode_passes(passes, self.tables["y"]))

    @torch.no_grad()
    def decode(self, sections: list[bytes], scales: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
        """Inverse of `encode`: y_hat (float32), plus the predicted residual where the model has one."""
        self.check_ready()
        decoder = PassDecoder(*sections, self.tables["y"])
        y_hat, refined_scales, refined_means = self._passes(scales, means, lambda indices, *_: decoder.decode(indices))
        decoder.finish()
        if self.residual_prediction is not None:
            return self.residual_prediction.exact(y_hat, refined_means, refined_scales)
        return y_hat.float()
