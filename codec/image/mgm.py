"""Multi-codebook vector-quantized prior, after "Unified Multivariate Gaussian Mixture for Efficient Neural Image
Compression" (Zhu, Yang, Cohen; CVPR 2022).

Each latent vector is split across m codebooks (product quantization); every codeword is the mean of one mixture
component, so the index of the nearest codeword is the symbol to code. Two cascaded levels, no autoregressive
context:

    x -> pad -> g_a -> y * gain_q -> PQ_q (m_q codebooks, K codewords) -> fine indices --+
                 y -> h_a -> z -> PQ_z (m_z codebooks, K_z codewords) -> coarse indices |
    coarse indices: one learned PMF per codebook (only the min(m_z, m_q) codebooks level q conditions on are coded)
    fine indices:   PMF of codebook j given the coarse code of codebook j mod m_z at the parent cell
    decoder: indices -> codewords / gain_q -> g_s -> crop -> x_hat

With `residual=True` each codeword is a full Gaussian mixture component (mean and diagonal scale, both fitted to the
vectors assigned to it): the index picks the component, then round(y - mean) is coded under that component's
Gaussian, so y_hat = mean + round(y - mean). The encoder is then free to write any index (the decoder only reads
it): of the CANDIDATES nearest components it writes the one of least rate-distortion cost, index bits + residual
bits + DISTORTION_WEIGHT x the squared error left in y, in training (the hard path) and at inference. Pure VQ (the
default, as in the paper) is the zero-variance limit and caps quality at the codebooks' fixed-length rate; the
residual lifts that cap at the cost of one more ANS pass, still with no network between the indices and g_s.

Every PMF is a fixed table chosen by integers already decoded (codebook, parent code), so encoder and decoder cannot
disagree, and decoding runs no network besides g_s. Rate levels q differ in their number of codebooks (one
variable-rate model, one g_a / g_s). Training: softmax over negative distances for the gradient with a
straight-through hard path (the nearest codeword, or the rate-distortion choice in residual mode), an expected-bits
rate term (under PMFs kept as decayed index counts, so they track the codes at once instead of waiting for a
learning rate) so the PMFs really save bits, VQ commitment loss with codewords updated as exponential moving
averages of their assigned vectors, and re-assignment of dead codewords to random latent vectors.

The coarse codes only choose fine PMF tables, so nothing in the rate-distortion loss spreads them: trained that way
they collapse onto one or two codewords and condition nothing. With `coarse_probe=True` h_a (fed a detached y) is
trained instead to make z predictive of the fine indices: a linear probe per fine codebook reads the z sub-vector
of its parent codebook and is scored by the cross-entropy of the fine indices (in bits per pixel). The coarse PQ then
clusters an informative z (k-means by EMA, without a commitment loss: no codeword value is ever decoded, and
commitment alone pulls every z onto one codeword), and the transition tables conditioned on those clusters save
bits. The probe is a training device: coding never runs it.

The model is g_a / g_s + gain units + `codec.entropy.cascade.MultiCodebookLatentCodec` (the prior and its coding).
"""
from __future__ import annotations

import torch

from codec.entropy.cascade import MultiCodebookLatentCodec
from codec.entropy.streams import LatentStreams
from codec.image import transforms
from codec.image.base import VariableRateImageModel, transform_note


class MultiCodebookModel(VariableRateImageModel):
    """Variable-rate image model with a two-level cascaded multi-codebook (vector-quantized) prior."""

    stride = 64
    continuous_quality = False  # rate levels are discrete (a fractional quality is rounded)
    LEGACY_KEYS = {name: "latent_codec." + name for name in (
        "h_a.", "coarse.", "fine.", "coarse_probe.", "gaussian_conditional.", "coarse_counts", "transition_counts_")}
    ARCHITECTURE = (
        "multi-codebook vector-quantized prior (Zhu et al. CVPR 2022): g_a/g_s with GDN, product quantization of y "
        "(one codebook count per rate level), a coarse PQ level from h_a conditioning the fine index PMFs")
    RESIDUAL_ARCHITECTURE = (
        "multivariate Gaussian mixture prior after Zhu et al. CVPR 2022: g_a/g_s with GDN, product quantization of y "
        "(one codebook count per rate level) whose codewords are mixture components (mean + diagonal scale); the "
        "index picks the component, round(y - mean) is coded under its Gaussian; the encoder writes, of the 16 "
        "nearest components, the one of least index + residual bits + 16 x squared latent error; a coarse PQ level "
        "from h_a conditions the fine index PMFs; no network between the indices and g_s")
    COARSE_PROBE = ("; h_a is trained (on a detached y) through a linear probe per fine codebook to predict the fine "
                    "indices, without a commitment loss, so the coarse codes are informative clusters of z (the probe "
                    "is shipped but never run when coding)")
    ENTROPY_CODING = ("constriction ANS; coarse indices: one table per codebook; fine indices: one table per "
                      "(codebook, parent code)")
    RESIDUAL_CODING = ENTROPY_CODING + "; residual: 64 Gaussian scale tables, each codeword's scale index fixed at export"

    @classmethod
    def card_text(cls, config: dict) -> dict[str, str]:
        residual = bool(config.get("residual"))
        description = (cls.RESIDUAL_ARCHITECTURE if residual else cls.ARCHITECTURE) + (
            cls.COARSE_PROBE if config.get("coarse_probe") else "") + transform_note(config)
        return {"description": description, "entropy_coding": cls.RESIDUAL_CODING if residual else cls.ENTROPY_CODING}

    def __init__(self, lambdas: tuple[float, ...], n: int = 128, m: int = 192, groups: tuple[int, ...] | None = None,
                 codewords: int = 256, hyper_channels: int = 64, hyper_groups: int = 4, hyper_codewords: int = 64,
                 residual: bool = False, coarse_probe: bool = False,
                 synthesis_widths: tuple[int, ...] | None = None,
                 synthesis_kernels: tuple[int, ...] | None = None) -> None:
        super().__init__(lambdas, m)
        groups = tuple(2 ** (level + 1) for level in range(len(lambdas))) if groups is None else groups
        if len(groups) != len(lambdas):
            raise ValueError("one codebook count per rate level (len(groups) == len(lambdas))")
        self.n, self.m = n, m
        self.g_a = transforms.analysis_transform(n, m)
        self.g_s = transforms.synthesis_transform(n, m, synthesis_widths, synthesis_kernels)
        self.latent_codec = MultiCodebookLatentCodec(n, m, tuple(groups), codewords, hyper_channels, hyper_groups,
                                                     hyper_codewords, residual, coarse_probe)

    @property
    def groups(self) -> tuple[int, ...]:
        """Fine codebooks per rate level."""
        return self.latent_codec.groups

    def forward(self, x: torch.Tensor, quality: torch.Tensor) -> dict:
        """Per-sample rate level (quality rounded); "bits" per sample is the expected code length under the soft
        assignment (training) or the exact one of the hard assignment (evaluation)."""
        levels = quality.round().long().clamp(0, len(self.groups) - 1)
        gain, inverse_gain = self.gains(levels.float())
        coded = self.latent_codec(self.analysis(x) * gain, levels, x.shape[-2] * x.shape[-1])
        return {"x_hat": self.synthesis(coded["y_hat"] * inverse_gain), "likelihoods": {},
                "extra_loss": coded["extra_loss"], "bits": coded["bits"]}

    def level(self, quality: float) -> int:
        """Rate levels are discrete: a fractional quality is rounded to the nearest level."""
        self.quality_tensor(quality)
        return int(round(quality))

    @torch.no_grad()
    def compress(self, x: torch.Tensor, quality: float) -> LatentStreams:
        self.check_ready()
        level = self.level(quality)
        gain, _ = self.gains(torch.tensor([float(level)]))
        return self.latent_codec.compress(self.analysis(self.pad(x)) * gain, level)

    @torch.no_grad()
    def decompress(self, streams: LatentStreams, quality: float, height: int, width: int) -> torch.Tensor:
        self.check_ready()
        level = self.level(quality)
        fine_shape, coarse_shape = self.latent_shapes(height, width, level)
        coarse_groups = self.latent_codec.coarse.groups
        if len(streams.shapes) == 2 and streams.shapes[1][1:2] == (coarse_groups,):
            coarse_shape = (1, coarse_groups, *coarse_shape[2:])  # written before unused codebooks were dropped
        self.expect_shapes(streams, [fine_shape, coarse_shape])
        y_hat = self.latent_codec.decompress(streams, level)
        _, inverse_gain = self.gains(torch.tensor([float(level)]))
        return self.synthesis(y_hat * inverse_gain)[..., :height, :width].clamp(0, 1)

    def latent_shapes(self, height: int, width: int, level: int = 0) -> list[tuple[int, ...]]:
        """[fine indices shape, coarse indices shape] for an image of this size at this level."""
        rows, cols = -(-height // 64), -(-width // 64)
        return [(1, self.groups[level], rows * 4, cols * 4), (1, self.latent_codec.coarse_used(level), rows, cols)]
