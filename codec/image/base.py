"""What every image model shares: padding, gain units, the bf16 transform path and the compress/decompress pair
around one latent codec (codec.entropy.latent_codec): x -> g_a -> y * gain -> latent codec -> y_hat / gain -> g_s."""
from __future__ import annotations

from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from codec.entropy.latent_codec import LatentCodecHost
from codec.entropy.streams import LatentStreams
from codec.errors import CodecError
from codec.image.refine import refine_latent
from codec.nn.tiling import tiled
from codec.nn.gain import GainUnits
from codec.precision import transform_autocast


class VariableRateImageModel(LatentCodecHost, nn.Module):
    """Base of the image models: g_a / g_s plus gain units (Cui et al., CVPR 2021) for a continuous rate, and
    `latent_codec`, which a subclass sets (and `latent_shapes`, the shapes it writes for an image size).

    `quality` is a float in [0, num_levels - 1]; level i was trained with `lambdas[i]` (higher = better quality).
    """

    stride: int = 64  # total downsampling of the deepest latent: inputs are padded to a multiple of it
    continuous_quality: bool = True  # gain units interpolate between levels; False: only whole levels exist
    tile_threshold: int = 1536 * 1536  # images with more (padded) pixels run g_a / g_s tile by tile
    analysis_tile: int = 1024  # tile side in pixels (a multiple of 16)
    tile_halo: int = 8  # context around each tile, in latent units (16 pixels each)
    # training only: the rate term is the bits of the latents rounded as the coder rounds them (straight-through
    # gradients, the latent codec's `estimate`) and every decoder-side input is rounded, instead of CompressAI's
    # additive-noise likelihoods; the "hard" phase of Guo et al., "Soft then Hard" (ICML 2021), run under a frozen
    # encoder (tools/train_image.py --coded-rate)
    coded_rate: bool = False
    ARCHITECTURE: str = ""  # the model card's architecture line (tools/export_weights.py writes it)
    ENTROPY_CODING: str = ""  # ... and how its latents are entropy coded

    def __init__(self, lambdas: tuple[float, ...], latent_channels: int) -> None:
        super().__init__()
        self.lambdas = tuple(float(value) for value in lambdas)
        initial = 0.5 * torch.log(torch.tensor(self.lambdas) / max(self.lambdas))
        self.gains = GainUnits(len(self.lambdas), latent_channels, initial)
        self.use_bf16 = False
        self._layout_ready = False
        self.watch_legacy_keys()

    # --- training and coding through the latent codec ----------------------------------------------------------
    def forward(self, x: torch.Tensor, quality: torch.Tensor) -> dict:
        """Reconstruction and the latent codec's likelihoods (CompressAI's convention); with `coded_rate` set, the
        bits of the latents as the coder rounds them instead (see `coded_rate`)."""
        gain, inverse_gain = self.gains(quality)
        y = self.analysis(x) * gain
        if self.coded_rate:
            y_hat, bits = self.latent_codec.estimate(y)
            per_sample = bits.expand(x.shape[0]) / x.shape[0]  # the batch's total shared out: the loss is its mean
            return {"x_hat": self.synthesis(y_hat * inverse_gain), "bits": per_sample}
        coded = self.latent_codec(y)
        return {"x_hat": self.synthesis(coded["y_hat"] * inverse_gain), "likelihoods": coded["likelihoods"]}

    @torch.no_grad()
    def compress(self, x: torch.Tensor, quality: float, refine_steps: int = 0, progress: bool = False) -> LatentStreams:
        """The latent codec's streams for image `x` ([1, 3, H, W] in [0, 1]); `refine_steps` > 0 first refines the
        latent for this image (codec.image.refine: slower encoding, the same decoder)."""
        self.check_ready()
        if refine_steps > 0:
            return self.latent_codec.compress(refine_latent(self, x, quality, refine_steps, progress))
        gain, _ = self.gains(self.quality_tensor(quality))
        return self.latent_codec.compress(self.analysis(self.pad(x)) * gain)

    @torch.no_grad()
    def decompress(self, streams: LatentStreams, quality: float, height: int, width: int) -> torch.Tensor:
        self.check_ready()
        self.expect_shapes(streams, self.latent_shapes(height, width))
        y_hat = self.latent_codec.decompress(streams)
        _, inverse_gain = self.gains(self.quality_tensor(quality))
        return self.synthesis(y_hat * inverse_gain)[..., :height, :width].clamp(0, 1)

    def latent_shapes(self, height: int, width: int) -> list[tuple[int, ...]]:
        raise NotImplementedError

    @classmethod
    def card_text(cls, config: dict) -> dict[str, str]:
        """The model card's architecture description and entropy-coding line for a model of this `config`."""
        return {"description": cls.ARCHITECTURE + transform_note(config), "entropy_coding": cls.ENTROPY_CODING}

    @property
    def max_quality(self) -> float:
        return float(len(self.lambdas) - 1)

    def quality_tensor(self, quality: float, batch: int = 1) -> torch.Tensor:
        if not 0.0 <= quality <= self.max_quality:
            raise CodecError(f"quality must be in [0, {self.max_quality:g}], got {quality:g}")
        return torch.full((batch,), float(quality))

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h = (-height) % self.stride
        pad_w = (-width) % self.stride
        if pad_h == 0 and pad_w == 0:
            return x
        return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")

    def _prepare_layout(self) -> None:
        """g_a / g_s always run channels_last: on CPU that layout gave bit-identical results at any thread count
        (fp32 and bf16), where the default layout's 1x1 GDN convolution did not (tests pin this)."""
        if not self._layout_ready:
            self.g_a.to(memory_format=torch.channels_last)
            self.g_s.to(memory_format=torch.channels_last)
            self._layout_ready = True

    def _run(self, transform: nn.Module, x: torch.Tensor) -> torch.Tensor:
        with transform_autocast(self.use_bf16, x.device):
            return transform(x.contiguous(memory_format=torch.channels_last)).float()

    def _tiles(self, pixels: int) -> bool:
        return not self.training and pixels > self.tile_threshold

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        """g_a under bf16 autocast where enabled, tiled for large images; returns fp32."""
        self._prepare_layout()
        if self._tiles(x.shape[-2] * x.shape[-1]):  # tiles are made channels_last one at a time
            return tiled(lambda piece: self._run(self.g_a, piece), x, Fraction(1, 16), self.analysis_tile,
                         16 * self.tile_halo)
        return self._run(self.g_a, x).contiguous()

    def synthesis(self, y_hat: torch.Tensor) -> torch.Tensor:
        """g_s under bf16 autocast where enabled, tiled for large images; returns fp32."""
        self._prepare_layout()
        if self._tiles(y_hat.shape[-2] * y_hat.shape[-1] * 256):
            return tiled(lambda piece: self._run(self.g_s, piece), y_hat, Fraction(16), self.analysis_tile // 16,
                         self.tile_halo)
        return self._run(self.g_s, y_hat).contiguous()

    def compile_transforms(self) -> None:
        """torch.compile g_a and g_s in place (training: on this CPU 1.39x faster steps for mean-scale-context,
        bf16, 2 threads; the state dict keeps its names). Coding never compiles: it stays on the eager path."""
        self._prepare_layout()
        self.g_a.compile()
        self.g_s.compile()

    def set_fast_transforms(self, enabled: bool) -> None:
        """Switch the bf16 autocast path for g_a / g_s on or off."""
        self.use_bf16 = enabled

    @staticmethod
    def expect_shapes(streams: LatentStreams, expected: list[tuple[int, ...]]) -> None:
        if [tuple(shape) for shape in streams.shapes] != expected:
            raise CodecError(f"corrupt bitstream: latent shapes {streams.shapes} do not match the image size")


def transform_note(config: dict) -> str:
    """How g_a / g_s depart from the default (n, n, n hidden channels, 5x5 kernels), if they do."""
    analysis, widths, kernels = (config.get(key) for key in ("analysis_widths", "synthesis_widths",
                                                             "synthesis_kernels"))
    parts = ([f"hidden widths {' / '.join(map(str, widths))}"] if widths else []) + (
        [f"kernels {' / '.join(f'{k}x{k}' for k in kernels)}"] if kernels else [])
    wider = widths and max(widths) > config.get("n", 128)
    note = f"; g_s {', '.join(parts)} (a {'wider' if wider else 'cheaper'} synthesis transform)" if parts else ""
    return note + (f"; g_a hidden widths {' / '.join(map(str, analysis))}" if analysis else "")
