"""The cascaded multi-codebook latent codec of the mgm image model (Zhu et al., "Unified Multivariate Gaussian
Mixture for Efficient Neural Image Compression", CVPR 2022): product-quantized y, a coarse PQ level from h_a whose
codes condition the fine index PMFs; see codec.image.mgm for the whole model and its training.

    y -> PQ_q (m_q codebooks, K codewords) -> fine indices ---------------------------------------------+
    y -> h_a -> z -> PQ_z (m_z codebooks, K_z codewords) -> coarse indices                              |
    coarse indices: one PMF per codebook; fine indices: PMF of codebook j given coarse code j mod m_z at the parent
    (residual mode: round(y - codeword) coded under the codeword's Gaussian)

Every PMF is a fixed integer table chosen by integers already decoded (codebook, parent code), so encoder and
decoder cannot disagree, and decoding runs no network. One codec serves every rate level (`level` picks the fine
quantizer).
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
from codec.entropy.latent_codec import LatentCodec
from codec.entropy.streams import LatentStreams
from codec.entropy.tables import TableSet
from codec.errors import CodecError
from codec.nn.product_quantizer import LOG2, ProductQuantizer
from codec.nn.quantize import ste_round

# the coarse codes get no gradient that spreads them (they only pick the fine PMF tables), so their codewords
# collapse onto a few clusters unless under-used ones are re-assigned far more eagerly
COARSE_DEAD_USAGE = 0.25
COUNT_DECAY = 0.999  # index statistics forget over ~1000 training steps
INDEX_SECTIONS = 4  # fine and coarse index streams with their escapes: the last sections of every mgm stream
PROBE_WEIGHT = 1.0  # weight of the coarse probe's cross-entropy (bits per pixel) in the training loss


def parent_codes(coarse: torch.Tensor, groups: int, height: int, width: int) -> torch.Tensor:
    """What each fine codebook j is conditioned on: coarse codebook j mod m_z at the parent cell.

    `coarse` is [B, m_z, ..., h, w] (codes, or z sub-vectors); the result [B, m_q, ..., height, width]."""
    parent = coarse[:, torch.arange(groups) % coarse.shape[1]]
    parent = parent.repeat_interleave(4, dim=-2).repeat_interleave(4, dim=-1)
    return parent[..., :height, :width]


class MultiCodebookLatentCodec(LatentCodec):
    """Two-level cascaded multi-codebook prior of a y with m channels: `groups[level]` fine codebooks per rate level.

    Sections: [residual ANS, residual escapes] in residual mode, then [fine ANS, fine escapes, coarse ANS, coarse
    escapes]; shapes [fine indices, coarse indices]."""

    def __init__(self, n: int, m: int, groups: tuple[int, ...], codewords: int = 256, hyper_channels: int = 64,
                 hyper_groups: int = 4, hyper_codewords: int = 64, residual: bool = False,
                 coarse_probe: bool = False) -> None:
        super().__init__()
        self.residual = residual
        self.table_names = ("codes", "y") if residual else ("codes",)
        self.section_names = (("y", "y_escapes") if residual else ()) + ("fine", "fine_escapes", "coarse",
                                                                           "coarse_escapes")
        self.groups = tuple(int(g) for g in groups)
        self.codewords, self.hyper_codewords = codewords, hyper_codewords
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
    def forward(self, y: torch.Tensor, levels: torch.Tensor, pixels: int) -> dict:
        """y_hat at each sample's rate level (`levels`, int64); "bits" per sample is the expected code length under
        the soft assignment (training) or the exact one of the hard assignment (evaluation); "extra_loss" the VQ
        commitment and the coarse probe's loss (bits per pixel of an image of `pixels`)."""
        z = self.h_a(y.detach() if self.coarse_probe is not None else y)
        coarse = self.coarse(z)
        coarse_log_pmf = self._log_pmf(self.coarse_counts)
        coarse_soft = coarse["soft"].detach() if self.coarse_probe is not None else coarse["soft"]
        coarse_bits = (coarse_soft * -coarse_log_pmf[None, :, :, None, None]).sum(2).sum(dim=(2, 3)) / LOG2
        y_hat = torch.zeros_like(y)
        total_bits = torch.zeros(y.shape[0], device=y.device)
        probe_bits = torch.zeros(y.shape[0], device=y.device)
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
            codebook = torch.arange(self.groups[level], device=y.device).view(1, -1, 1, 1)
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
            groups = torch.arange(self.coarse.groups, device=y.device).view(1, -1, 1, 1)
            self._count(self.coarse_counts, groups.expand_as(coarse["indices"]), coarse["indices"])
        probe_loss = PROBE_WEIGHT * probe_bits.mean() / pixels
        return {"y_hat": y_hat, "likelihoods": {}, "extra_loss": vq_loss + probe_loss, "bits": total_bits}

    def aux_loss(self) -> torch.Tensor:
        return torch.zeros((), device=self.coarse_counts.device)

    # --- inference --------------------------------------------------------------------------------------------
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
    def compress(self, y: torch.Tensor, level: int) -> LatentStreams:
        self.check_ready()
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
    def decompress(self, streams: LatentStreams, level: int) -> torch.Tensor:
        """Inverse of `compress`: y_hat (float32); the caller has checked the shapes against the image size."""
        self.check_ready()
        expected = INDEX_SECTIONS + (2 if self.residual else 0)
        if len(streams.sections) != expected:
            raise CodecError(f"corrupt bitstream: {len(streams.sections)} sections, this model writes {expected}")
        if len(streams.shapes) != 2:
            raise CodecError(f"corrupt bitstream: {len(streams.shapes)} latent shapes, this model writes 2")
        fine_shape, coarse_shape = (tuple(shape) for shape in streams.shapes)
        fine_stream, fine_escapes, coarse_stream, coarse_escapes = streams.sections[-INDEX_SECTIONS:]
        tables = self.tables["codes"]
        coarse = decode_symbols(coarse_stream, coarse_escapes, channel_index(coarse_shape), tables)
        if coarse.min(initial=0) < 0 or coarse.max(initial=0) >= self.hyper_codewords:
            raise CodecError("corrupt bitstream: coarse codeword index out of range")
        coarse = torch.from_numpy(coarse)
        fine = decode_symbols(fine_stream, fine_escapes, self._fine_tables(level, coarse, fine_shape), tables)
        if fine.min(initial=0) < 0 or fine.max(initial=0) >= self.codewords:
            raise CodecError("corrupt bitstream: codeword index out of range")
        fine = torch.from_numpy(fine)
        y_hat = self.fine[level].dequantize(fine)
        if self.residual:
            scale_index = self.fine[level].gather(self.table_tensors[f"scale_index_{level}"], fine)
            symbols = decode_symbols(*streams.sections[:2], scale_index.numpy(), self.tables["y"])
            y_hat = y_hat + torch.from_numpy(symbols).float()
        return y_hat
