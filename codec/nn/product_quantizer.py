"""Product quantization with codewords as Gaussian mixture components, for the multi-codebook prior (Zhu et al.,
"Unified Multivariate Gaussian Mixture for Efficient Neural Image Compression", CVPR 2022; codebooks kept by EMA
k-means as in van den Oord et al., VQ-VAE 2017)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from codec.entropy.gaussian import SCALE_BOUND

LOG2 = float(np.log(2.0))
DEAD_USAGE = 0.02  # a codeword used less than this fraction of its fair share gets re-assigned
LIKELIHOOD_BOUND = 1e-9  # as CompressAI's GaussianConditional bounds a likelihood
EMA_DECAY = 0.99  # codeword k-means averages
POSITION_CHUNK = 4096  # positions per distance computation at inference (bounds memory on huge images)
# residual mode: the nearest codewords whose coded bits are compared when choosing an index; on 3 Kodak images 16
# candidates keep 97 % of the saving of trying all 256 (8.1 of 8.3 % of the bits at level 0, 8.6 of 8.9 % at level 2)
CANDIDATES = 16
# ... and what one unit of squared latent error costs against one bit when choosing (the rate-distortion choice):
# on 8 training photos (384x384 crops) 16 kept the 7-10 % bit saving of choosing on bits alone while giving back
# most of the 0.13-0.15 dB it lost (then -0.00 to -0.03 dB); 0 is the bits-only choice, larger values save fewer bits
DISTORTION_WEIGHT = 16.0


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
