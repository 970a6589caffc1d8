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
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from codec._compressai import conv, gaussian_conditional
from codec.entropy.coder import decode_symbols, encode_symbols
from codec.entropy.factorized import channel_index
from codec.entropy.gaussian import SCALE_BOUND, build_gaussian_tables, default_scale_table, scale_indices
from codec.entropy.tables import TableSet
from codec.errors import CodecError
from codec.image import transforms
from codec.entropy.streams import LatentStreams
from codec.image.base import VariableRateImageModel, synthesis_note
from codec.nn.quantize import ste_round

LOG2 = float(np.log(2.0))
DEAD_USAGE = 0.02  # a fine codeword used less than this fraction of its fair share gets re-assigned
# the coarse codes get no gradient that spreads them (they only pick the fine PMF tables), so their codewords
# collapse onto a few clusters unless under-used ones are re-assigned far more eagerly
COARSE_DEAD_USAGE = 0.25
LIKELIHOOD_BOUND = 1e-9  # as CompressAI's GaussianConditional bounds a likelihood
EMA_DECAY = 0.99  # codeword k-means averages
COUNT_DECAY = 0.999  # index statistics forget over ~1000 training steps
INDEX_SECTIONS = 4  # fine and coarse index streams with their escapes: the last sections of every mgm stream
POSITION_CHUNK = 4096  # positions per distance computation at inference (bounds memory on huge images)
# residual mode: the nearest codewords whose coded bits are compared when choosing an index; on 3 Kodak images 16
# candidates keep 97 % of the saving of trying all 256 (8.1 of 8.3 % of the bits at level 0, 8.6 of 8.9 % at level 2)
CANDIDATES = 16
# ... and what one unit of squared latent error costs against one bit when choosing (the rate-distortion choice):
# on 8 training photos (384x384 crops) 16 kept the 7-10 % bit saving of choosing on bits alone while giving back
# most of the 0.13-0.15 dB it lost (then -0.00 to -0.03 dB); 0 is the bits-only choice, larger values save fewer bits
DISTORTION_WEIGHT = 16.0
PROBE_WEIGHT = 1.0  # weight of the coarse probe's cross-entropy (bits per pixel) in the training loss


class ProductQuantizer(nn.Module):
    """m codebooks of K codewords; the channels of a [B, m*d, H, W] latent are split into m groups of d."""

    def __init__(self, groups: int, codewords: int, channels: int, mixture: bool = False,
                 dead_usage: float = DEAD_USAGE) -> None:
        super().__init__()
        self.mixture, self.dead_usage = mixture, dead_usage
        if channels % groups:
            raise ValueError(f"{channels} channels do not split into {groups} codebooks")
        self.groups, self.codewords, self.dims = groups, codewords, channels // groups
        self.codebooks = nn.Parameter(torch.randn(groups, codewords, self.dims), requires_grad=False)
        self.log_sharpness = nn.Parameter(torch.zeros(groups))
        # training-only statistics (not saved with the weights; a resumed run re-warms them in ~100 steps):
        # k-means by exponential moving averages (van den Oord et al. 2017, VQ-VAE appendix) so codewords follow the
        # latents at once instead of lagging behind a learning rate, and usage to find dead codewords
        self.register_buffer("usage", torch.full((groups, codewords), 1.0 / codewords), persistent=False)
        self.register_buffer("ema_counts", torch.ones(groups, codewords), persistent=False)
        self.register_buffer("ema_sums", self.codebooks.detach().clone(), persistent=False)
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        if mixture:  # the components' diagonal variances (for residual coding), fitted like the codewords
            self.register_buffer("variances", torch.ones(groups, codewords, self.dims))
            self.register_buffer("ema_square_sums", torch.ones(groups, codewords, self.dims), persistent=False)
        self.register_load_state_dict_post_hook(ProductQuantizer._restart_statistics)

    @torch.no_grad()
    def _restart_statistics(self, _incompatible_keys=None) -> None:
        """Restart the k-means averages from the loaded codewords (and variances): otherwise the first training
        step would pull every loaded codeword back toward its random initialisation."""
        self.ema_counts.fill_(1.0)
        self.ema_sums.copy_(self.codebooks.detach())
        if self.mixture:
            self.ema_square_sums.copy_(self.variances)

    def sub_vectors(self, y: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = y.shape
        return y.reshape(batch, self.groups, self.dims, height, width)

    def distances(self, y: torch.Tensor) -> torch.Tensor:
        """Squared distances [B, m, K, H, W] from each sub-vector to every codeword of its codebook."""
        vectors = self.sub_vectors(y)
        dots = torch.einsum("bmdhw,mkd->bmkhw", vectors, self.codebooks)
        norms = self.codebooks.pow(2).sum(-1)[None, :, :, None, None]
        return vectors.pow(2).sum(2, keepdim=True) - 2 * dots + norms

    def gather(self, table: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """[B, m, H, W] codeword indices -> the [B, m*d, H, W] latent of their rows of `table` [m, K, d]."""
        batch, _, height, width = indices.shape
        gathered = table[torch.arange(self.groups).view(1, -1, 1, 1), indices]  # [B, m, H, W, d]
        return gathered.permute(0, 1, 4, 2, 3).reshape(batch, self.groups * self.dims, height, width)

    def dequantize(self, indices: torch.Tensor) -> torch.Tensor:
        """[B, m, H, W] codeword indices -> the [B, m*d, H, W] latent of their codewords."""
        return self.gather(self.codebooks, indices)

    def scales(self, indices: torch.Tensor) -> torch.Tensor:
        """The standard deviations [B, m*d, H, W] of the components these indices pick."""
        return self.gather(self.variances.sqrt(), indices)

    @torch.no_grad()
    def quantize(self, y: torch.Tensor) -> torch.Tensor:
        """Nearest codeword per sub-vector (argmin), computed in chunks of rows; [B, m, H, W] int64."""
        rows_per_chunk = max(1, POSITION_CHUNK // max(1, y.shape[-1]))
        return torch.cat([self.distances(y[..., top : top + rows_per_chunk, :]).argmin(2)
                          for top in range(0, y.shape[-2], rows_per_chunk)], dim=-2)

    @torch.no_grad()
    def cheapest(self, y: torch.Tensor, log_pmf: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
        """Residual mode: per sub-vector, of its CANDIDATES nearest codewords the one of least rate-distortion cost
        (`choice_cost`); [B, m, H, W] int64. The index costs -log2 of `log_pmf` [m, K_z, K] (natural log) at its
        parent code `parents` [B, m, H, W]. Computed in float64, in chunks of rows. Any index decodes: this only
        chooses which one the encoder writes."""
        count = min(CANDIDATES, self.codewords)
        rows_per_chunk = max(1, POSITION_CHUNK // (count * max(1, y.shape[-1])))
        groups = torch.arange(self.groups, device=y.device).view(1, -1, 1, 1, 1)
        chosen = []
        for top in range(0, y.shape[-2], rows_per_chunk):
            part = y[..., top : top + rows_per_chunk, :]
            candidates = self.distances(part).topk(count, dim=2, largest=False).indices  # [B, m, C, h, w]
            parent = parents[:, :, None, top : top + rows_per_chunk, :]
            cost = self.choice_cost(part, candidates) - log_pmf.double()[groups, parent, candidates] / LOG2
            chosen.append(candidates.gather(2, cost.argmin(2, keepdim=True)).squeeze(2))
        return torch.cat(chosen, dim=-2)

    def choice_cost(self, y: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """[B, m, C, H, W]: the bits of round(y - mean) under each candidate component's Gaussian (scales clamped as
        the coder clamps them) plus DISTORTION_WEIGHT x the squared error it leaves in y."""
        groups = torch.arange(self.groups, device=y.device).view(1, -1, 1, 1, 1)
        means = self.codebooks.double()[groups, candidates]  # [B, m, C, h, w, d]
        scales = self.variances.double().sqrt().clamp_min(SCALE_BOUND)[groups, candidates]
        offsets = self.sub_vectors(y.double()).permute(0, 1, 3, 4, 2).unsqueeze(2) - means  # [B, m, C, h, w, d]
        symbols = torch.round(offsets)
        mass = torch.special.ndtr((symbols + 0.5) / scales) - torch.special.ndtr((symbols - 0.5) / scales)
        bits = -torch.log2(mass.clamp_min(LIKELIHOOD_BOUND))
        return (bits + DISTORTION_WEIGHT * (offsets - symbols).pow(2)).sum(-1)

    def forward(self, y: torch.Tensor, hard: torch.Tensor | None = None) -> dict:
        """Training: straight-through hard codewords (the nearest, or `hard` where the caller chose them), soft
        assignment probabilities (they carry the rate term's gradient to the encoder), the commitment loss;
        codewords follow their vectors by EMA."""
        if not bool(self.initialised):
            self._reassign(y, torch.ones_like(self.usage, dtype=torch.bool))
            self.initialised.fill_(True)
        distances = self.distances(y)
        hard = distances.argmin(2) if hard is None else hard
        if self.training:
            soft = torch.softmax(-distances * self.log_sharpness.exp().view(1, -1, 1, 1, 1), dim=2)
        else:  # evaluation: the hard assignment, so the bits counted are the bits coded
            soft = F.one_hot(hard, self.codewords).permute(0, 1, 4, 2, 3).float()
        y_hard = self.dequantize(hard)
        y_hat = y + (y_hard - y).detach()  # straight-through: the distortion's gradient reaches the encoder
        vq_loss = 0.25 * F.mse_loss(y, y_hard.detach())  # commitment; the codewords move by EMA below
        if not self.training:
            return {"y_hat": y_hard, "indices": hard, "soft": soft, "vq_loss": vq_loss}
        with torch.no_grad():
            one_hot = F.one_hot(hard, self.codewords).float()  # [B, m, H, W, K]
            counts = one_hot.sum(dim=(0, 2, 3))  # [m, K]
            vectors = self.sub_vectors(y.detach().float())
            sums = torch.einsum("bmhwk,bmdhw->mkd", one_hot, vectors)
            self.ema_counts.mul_(EMA_DECAY).add_((1 - EMA_DECAY) * counts)
            self.ema_sums.mul_(EMA_DECAY).add_((1 - EMA_DECAY) * sums)
            self.codebooks.data.copy_(self.ema_sums / self.ema_counts.clamp_min(1e-6).unsqueeze(-1))
            if self.mixture:
                squares = torch.einsum("bmhwk,bmdhw->mkd", one_hot, (vectors - self.sub_vectors(y_hard.detach())).pow(2))
                self.ema_square_sums.mul_(EMA_DECAY).add_((1 - EMA_DECAY) * squares)
                self.variances.copy_(self.ema_square_sums / self.ema_counts.clamp_min(1e-6).unsqueeze(-1))
            self.usage.mul_(0.99).add_(0.01 * counts / counts.sum(-1, keepdim=True))
            dead = self.usage < self.dead_usage / self.codewords
            if dead.any():
                self._reassign(y, dead)
        return {"y_hat": y_hat, "indices": hard, "soft": soft, "vq_loss": vq_loss}

    @torch.no_grad()
    def _reassign(self, y: torch.Tensor, which: torch.Tensor) -> None:
        """Move the selected codewords onto random sub-vectors of this batch (k-means++-free restart)."""
        vectors = self.sub_vectors(y.detach().float()).permute(1, 0, 3, 4, 2).reshape(self.groups, -1, self.dims)
        for group in range(self.groups):
            chosen = which[group].nonzero().flatten()
            if len(chosen) == 0:
                continue
            picks = torch.randint(0, vectors.shape[1], (len(chosen),), device=y.device)
            noise = 0.01 * torch.randn(len(chosen), self.dims, device=y.device)
            self.codebooks.data[group, chosen] = vectors[group, picks] + noise
            self.usage[group, chosen] = 1.0 / self.codewords
            self.ema_counts[group, chosen] = self.ema_counts[group].mean()
            self.ema_sums[group, chosen] = self.codebooks.data[group, chosen] * self.ema_counts[group, chosen, None]
            if self.mixture:
                self.variances[group, chosen] = self.variances[group].mean(0)
                self.ema_square_sums[group, chosen] = self.variances[group, chosen] * self.ema_counts[group, chosen, None]


def parent_codes(coarse: torch.Tensor, groups: int, height: int, width: int) -> torch.Tensor:
    """What each fine codebook j is conditioned on: coarse codebook j mod m_z at the parent cell.

    `coarse` is [B, m_z, ..., h, w] (codes, or z sub-vectors); the result [B, m_q, ..., height, width]."""
    parent = coarse[:, torch.arange(groups) % coarse.shape[1]]
    parent = parent.repeat_interleave(4, dim=-2).repeat_interleave(4, dim=-1)
    return parent[..., :height, :width]


class MultiCodebookModel(VariableRateImageModel):
    """Variable-rate image model with a two-level cascaded multi-codebook (vector-quantized) prior."""

    stride = 64
    table_names = ("codes",)
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
            cls.COARSE_PROBE if config.get("coarse_probe") else "") + synthesis_note(config)
        return {"description": description, "entropy_coding": cls.RESIDUAL_CODING if residual else cls.ENTROPY_CODING}

    def __init__(self, lambdas: tuple[float, ...], n: int = 128, m: int = 192, groups: tuple[int, ...] | None = None,
                 codewords: int = 256, hyper_channels: int = 64, hyper_groups: int = 4, hyper_codewords: int = 64,
                 residual: bool = False, coarse_probe: bool = False,
                 synthesis_widths: tuple[int, ...] | None = None,
                 synthesis_kernels: tuple[int, ...] | None = None) -> None:
        super().__init__(lambdas, m)
        self.residual = residual
        self.table_names = ("codes", "y") if residual else ("codes",)
        groups = tuple(2 ** (level + 1) for level in range(len(lambdas))) if groups is None else groups
        if len(groups) != len(lambdas):
            raise ValueError("one codebook count per rate level (len(groups) == len(lambdas))")
        self.n, self.m = n, m
        self.groups = tuple(int(g) for g in groups)
        self.codewords, self.hyper_codewords = codewords, hyper_codewords
        self.g_a = transforms.analysis_transform(n, m)
        self.g_s = transforms.synthesis_transform(n, m, synthesis_widths, synthesis_kernels)
        self.h_a = nn.Sequential(conv(m, n, 3, 1), nn.LeakyReLU(inplace=True), conv(n, n), nn.LeakyReLU(inplace=True),
                                 conv(n, hyper_channels))
        self.coarse = ProductQuantizer(hyper_groups, hyper_codewords, hyper_channels, dead_usage=COARSE_DEAD_USAGE)
        self.fine = nn.ModuleList(ProductQuantizer(g, codewords, m, mixture=residual) for g in self.groups)
        self.coarse_probe = None
        if coarse_probe:  # training only: per level, one linear map from each parent z sub-vector to K logits
            dims = self.coarse.dims
            self.coarse_probe = nn.ModuleList(nn.Conv2d(g * dims, g * codewords, 1, groups=g) for g in self.groups)
        if residual:
            self.gaussian_conditional = gaussian_conditional()  # training-time likelihoods of the residual
        # index statistics (decayed counts, +1 smoothing at the start): the PMFs the rate term and the tables use
        self.register_buffer("coarse_counts", torch.ones(hyper_groups, hyper_codewords))
        for level, g in enumerate(self.groups):
            self.register_buffer(f"transition_counts_{level}", torch.ones(g, hyper_codewords, codewords))

    def transition_counts(self, level: int) -> torch.Tensor:
        return getattr(self, f"transition_counts_{level}")

    def coarse_used(self, level: int) -> int:
        """Coarse codebooks that condition something at this level (fine codebook j uses j mod m_z)."""
        return min(self.coarse.groups, self.groups[level])

    def _probe_bits(self, level: int, z: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Per sample, the bits of the fine indices [b, m_q, H, W] under the probe's prediction from z."""
        batch, groups, height, width = indices.shape
        parents = parent_codes(self.coarse.sub_vectors(z), groups, height, width)  # [b, m_q, d_z, H, W]
        logits = self.coarse_probe[level](parents.flatten(1, 2)).view(batch, groups, self.codewords, height, width)
        cross_entropy = F.cross_entropy(logits.float().transpose(1, 2), indices, reduction="none")
        return cross_entropy.sum(dim=(1, 2, 3)) / LOG2

    @torch.no_grad()
    def fine_indices(self, level: int, y: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """The fine indices [B, m_q, H, W] the encoder writes for y given the coarse codes [B, >= m_z used, h, w]:
        in residual mode the one of the nearest few codewords that is cheapest in index + residual bits + weighted
        latent error (`ProductQuantizer.cheapest`), in pure VQ the nearest."""
        quantizer = self.fine[level]
        if not self.residual or not bool(quantizer.initialised):
            return quantizer.quantize(y)
        parents = parent_codes(coarse, self.groups[level], *y.shape[-2:])
        return quantizer.cheapest(y, self._log_pmf(self.transition_counts(level)), parents)

    @staticmethod
    def _log_pmf(counts: torch.Tensor) -> torch.Tensor:
        return counts.log() - counts.sum(-1, keepdim=True).log()

    @torch.no_grad()
    def _count(self, counts: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> None:
        """Decay `counts` [..., K] and add one per observed (row index, value) pair."""
        counts.mul_(COUNT_DECAY)
        flat = counts.view(-1, counts.shape[-1])
        flat.index_put_((index.flatten(), values.flatten()), torch.ones(values.numel(), device=counts.device),
                        accumulate=True)

    # --- training ---------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, quality: torch.Tensor) -> dict:
        """Per-sample rate level (quality rounded); "bits" per sample is the expected code length under the soft
        assignment (training) or the exact one of the hard assignment (evaluation)."""
        levels = quality.round().long().clamp(0, len(self.groups) - 1)
        gain, inverse_gain = self.gains(levels.float())
        y = self.analysis(x) * gain
        z = self.h_a(y.detach() if self.coarse_probe is not None else y)
        coarse = self.coarse(z)
        coarse_log_pmf = self._log_pmf(self.coarse_counts)
        coarse_soft = coarse["soft"].detach() if self.coarse_probe is not None else coarse["soft"]
        coarse_bits = (coarse_soft * -coarse_log_pmf[None, :, :, None, None]).sum(2).sum(dim=(2, 3)) / LOG2
        y_hat = torch.zeros_like(y)
        total_bits = torch.zeros(x.shape[0], device=x.device)
        probe_bits = torch.zeros(x.shape[0], device=x.device)
        vq_loss = coarse["vq_loss"] if self.coarse_probe is None else 0.0
        for level in levels.unique().tolist():
            chosen = (levels == level).nonzero().flatten()
            hard = self.fine_indices(level, y[chosen].detach(), coarse["indices"][chosen])
            fine = self.fine[level](y[chosen], hard)
            residual_bits = 0.0
            if self.residual:  # the component's mean and scale code y (its rate replaces the commitment loss)
                means = self.fine[level].dequantize(fine["indices"])
                scales = self.fine[level].scales(fine["indices"])
                _, likelihoods = self.gaussian_conditional(y[chosen], scales, means=means)
                y_hat[chosen] = ste_round(y[chosen] - means) + means
                residual_bits = -torch.log2(likelihoods).sum(dim=(1, 2, 3))
            else:
                y_hat[chosen] = fine["y_hat"]
                vq_loss = vq_loss + fine["vq_loss"] * len(chosen) / len(levels)
            parents = parent_codes(coarse["indices"][chosen], self.groups[level], *y.shape[-2:])
            log_pmf = self._log_pmf(self.transition_counts(level))  # [m, K_z, K]
            codebook = torch.arange(self.groups[level], device=x.device).view(1, -1, 1, 1)
            conditional = log_pmf[codebook, parents]  # [b, m, H, W, K]
            bits = -(fine["soft"] * conditional.permute(0, 1, 4, 2, 3)).sum(2) / LOG2
            if self.training:
                self._count(self.transition_counts(level), (codebook * self.hyper_codewords + parents).expand_as(
                    fine["indices"]), fine["indices"])
            coded_coarse_bits = coarse_bits[chosen, : self.coarse_used(level)].sum(1)
            total_bits[chosen] = bits.sum(dim=(1, 2, 3)) + residual_bits + coded_coarse_bits
            if self.coarse_probe is not None and self.training:
                probe_bits[chosen] = self._probe_bits(level, z[chosen], fine["indices"])
        if self.training:
            groups = torch.arange(self.coarse.groups, device=x.device).view(1, -1, 1, 1)
            self._count(self.coarse_counts, groups.expand_as(coarse["indices"]), coarse["indices"])
        x_hat = self.synthesis(y_hat * inverse_gain)
        probe_loss = PROBE_WEIGHT * probe_bits.mean() / (x.shape[-2] * x.shape[-1])
        return {"x_hat": x_hat, "likelihoods": {}, "extra_loss": vq_loss + probe_loss, "bits": total_bits}

    def aux_loss(self) -> torch.Tensor:
        return torch.zeros((), device=self.coarse_counts.device)

    # --- inference --------------------------------------------------------------------------------------------
    continuous_quality = False

    def level(self, quality: float) -> int:
        """Rate levels are discrete: a fractional quality is rounded to the nearest level."""
        self.quality_tensor(quality)
        return int(round(quality))

    @torch.no_grad()
    def update(self) -> None:
        """One table per coarse codebook, then one per (rate level, fine codebook, parent code)."""
        pmfs = [row for row in self._log_pmf(self.coarse_counts.double()).exp().numpy()]
        for level in range(len(self.groups)):
            pmf = self._log_pmf(self.transition_counts(level).double()).exp()
            pmfs += [row for row in pmf.reshape(-1, self.codewords).numpy()]
        self.tables = {"codes": TableSet.from_pmfs(pmfs, [0] * len(pmfs), [0.0] * len(pmfs))}
        self.table_tensors = {}
        if self.residual:  # each component's scale, as an index into the Gaussian tables, fixed here once
            scale_table = default_scale_table()
            self.tables["y"] = build_gaussian_tables(scale_table)
            self.table_tensors["scale_table"] = torch.from_numpy(scale_table)
            for level, quantizer in enumerate(self.fine):
                scales = quantizer.variances.double().sqrt().clamp_min(SCALE_BOUND)
                self.table_tensors[f"scale_index_{level}"] = scale_indices(scales, self.table_tensors["scale_table"])

    def _fine_tables(self, level: int, coarse: torch.Tensor, fine_shape: tuple[int, ...]) -> np.ndarray:
        """Table of every fine index: after the coarse tables, one block per level, per codebook, per parent code."""
        base = self.coarse.groups + sum(g * self.hyper_codewords for g in self.groups[:level])
        parents = parent_codes(coarse, self.groups[level], *fine_shape[-2:])
        codebook = torch.arange(self.groups[level]).view(1, -1, 1, 1)
        return (base + codebook * self.hyper_codewords + parents).numpy()

    @torch.no_grad()
    def compress(self, x: torch.Tensor, quality: float) -> LatentStreams:
        self.check_ready()
        level = self.level(quality)
        gain, _ = self.gains(torch.tensor([float(level)]))
        y = self.analysis(self.pad(x)) * gain
        coarse = self.coarse.quantize(self.h_a(y))[:, : self.coarse_used(level)]
        fine = self.fine_indices(level, y, coarse)
        tables = self.tables["codes"]
        coarse_stream = encode_symbols(coarse.numpy(), channel_index(tuple(coarse.shape)), tables)
        fine_stream = encode_symbols(fine.numpy(), self._fine_tables(level, coarse, tuple(fine.shape)), tables)
        sections = [*fine_stream, *coarse_stream]
        if self.residual:
            symbols = torch.round(y.double() - self.fine[level].dequantize(fine).double()).long()
            scale_index = self.fine[level].gather(self.table_tensors[f"scale_index_{level}"], fine)
            sections = [*encode_symbols(symbols.numpy(), scale_index.numpy(), self.tables["y"]), *sections]
        return LatentStreams(sections, [tuple(fine.shape), tuple(coarse.shape)])

    @torch.no_grad()
    def decompress(self, streams: LatentStreams, quality: float, height: int, width: int) -> torch.Tensor:
        self.check_ready()
        level = self.level(quality)
        fine_shape, coarse_shape = self.latent_shapes(height, width, level)
        if len(streams.shapes) == 2 and streams.shapes[1][1:2] == (self.coarse.groups,):
            coarse_shape = (1, self.coarse.groups, *coarse_shape[2:])  # written before unused codebooks were dropped
        self.expect_shapes(streams, [fine_shape, coarse_shape])
        expected = INDEX_SECTIONS + (2 if self.residual else 0)
        if len(streams.sections) != expected:
            raise CodecError(f"corrupt bitstream: {len(streams.sections)} sections, this model writes {expected}")
        fine_stream, fine_escapes, coarse_stream, coarse_escapes = streams.sections[-INDEX_SECTIONS:]
        tables = self.tables["codes"]
        coarse = decode_symbols(coarse_stream, coarse_escapes, channel_index(coarse_shape), tables)
        if coarse.min(initial=0) < 0 or coarse.max(initial=0) >= self.hyper_codewords:
            raise CodecError("corrupt bitstream: coarse codeword index out of range")
        coarse = torch.from_numpy(coarse)
        fine = decode_symbols(fine_stream, fine_escapes, self._fine_tables(level, coarse, fine_shape), tables)
        if fine.min(initial=0) < 0 or fine.max(initial=0) >= self.codewords:
            raise CodecError("corrupt bitstream: codeword index out of range")
        _, inverse_gain = self.gains(torch.tensor([float(level)]))
        fine = torch.from_numpy(fine)
        y_hat = self.fine[level].dequantize(fine)
        if self.residual:
            scale_index = self.fine[level].gather(self.table_tensors[f"scale_index_{level}"], fine)
            symbols = decode_symbols(*streams.sections[:2], scale_index.numpy(), self.tables["y"])
            y_hat = y_hat + torch.from_numpy(symbols).float()
        return self.synthesis(y_hat * inverse_gain)[..., :height, :width].clamp(0, 1)

    def latent_shapes(self, height: int, width: int, level: int = 0) -> list[tuple[int, ...]]:
        """[fine indices shape, coarse indices shape] for an image of this size at this level."""
        rows, cols = -(-height // 64), -(-width // 64)
        return [(1, self.groups[level], rows * 4, cols * 4), (1, self.coarse_used(level), rows, cols)]
