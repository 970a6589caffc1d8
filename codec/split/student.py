"""The Entropic Student: a learned bottleneck in place of a classifier's head.

Matsubara, Yang, Levorato, Mandt, "Supervised Compression for Resource-Constrained Edge Computing Systems"
(WACV 2022); Matsubara, Callegaro, Singh, Levorato, Restuccia, "BottleFit" (WoWMoM 2022).

    device:  image -> normalize -> encoder -> y -> round(y - median) -> [factorized tables] -> bytes
    server:  bytes -> y_hat -> decoder -> feature at the teacher's split point (layer1) -> teacher tail -> logits

Training (tools/train_split.py): stage 1 head distillation (feature MSE at the split point and every later stage,
plus beta * bits); stage 2 knowledge distillation with the encoder and its entropy model frozen.
"""
from __future__ import annotations

import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.layers import GDN
from torch import nn

from codec.entropy.factorized import FactorizedLatent, decode_factorized, encode_factorized
from codec.entropy.frozen import FrozenTables
from codec.errors import CodecError
from codec.image.base import LatentStreams, ste_round
from codec.precision import transform_autocast
from codec.split.resnet import CifarResNet, normalize

LATENT_STRIDE = 4


def feature_encoder(latent: int, hidden: int) -> nn.Sequential:
    """3x32x32 image -> latent x 8x8 (two stride-2 5x5 convolutions with GDN, then a 3x3 projection)."""
    return nn.Sequential(
        nn.Conv2d(3, hidden, 5, 2, 2), GDN(hidden),
        nn.Conv2d(hidden, hidden, 5, 2, 2), GDN(hidden),
        nn.Conv2d(hidden, latent, 3, 1, 1),
    )


def feature_decoder(latent: int, hidden: int, feature_channels: int) -> nn.Sequential:
    """latent x 8x8 -> the split feature (feature_channels x 32x32)."""
    return nn.Sequential(
        nn.Conv2d(latent, hidden, 3, 1, 1), GDN(hidden, inverse=True),
        nn.ConvTranspose2d(hidden, hidden, 5, 2, 2, output_padding=1), GDN(hidden, inverse=True),
        nn.ConvTranspose2d(hidden, hidden // 2, 5, 2, 2, output_padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(hidden // 2, feature_channels, 3, 1, 1),
    )


class CifarEntropicStudent(FactorizedLatent, FrozenTables, nn.Module):
    """Entropic Student for a CIFAR ResNet teacher split after layer1; the factorized prior codes the latent."""

    def __init__(self, depth: int = 20, latent: int = 24, hidden: int = 64, input_size: int = 32) -> None:
        super().__init__()
        self.input_size = input_size
        self.encoder = feature_encoder(latent, hidden)
        self.entropy_bottleneck = EntropyBottleneck(latent)
        self.decoder = feature_decoder(latent, hidden, 16)
        self.tail = CifarResNet(depth, with_head=False)
        self.init_tables()

    # --- training ---------------------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor, bf16: bool = False) -> dict:
        """images in [0, 1]: the reconstructed split feature, each later stage, logits and the likelihoods.

        With `bf16` the convolutions run under bf16 autocast; the entropy model always runs in fp32."""
        with transform_autocast(bf16, images.device):
            y = self.encoder(normalize(images))
        y = y.float()
        _, likelihoods = self.entropy_bottleneck(y)
        medians = self.entropy_bottleneck._get_medians().detach().view(1, -1, 1, 1)
        with transform_autocast(bf16, images.device):
            feature = self.decoder(ste_round(y - medians) + medians)
            stages = self.tail.tail_stages(feature)
            logits = self.tail.classify(stages[-1])
        return {"stages": [s.float() for s in (feature, *stages)], "logits": logits.float(), "likelihoods": likelihoods}

    # --- device and server ------------------------------------------------------------------------------------
    def latent_shape(self, batch: int, height: int, width: int) -> tuple[int, int, int, int]:
        if (height, width) != (self.input_size, self.input_size):
            raise CodecError(f"this model takes {self.input_size}x{self.input_size} images, got {width}x{height}")
        return (batch, self.entropy_bottleneck.channels, height // LATENT_STRIDE, width // LATENT_STRIDE)

    @torch.no_grad()
    def compress(self, images: torch.Tensor) -> LatentStreams:
        """Device side: [B, 3, H, W] images in [0, 1] -> entropy-coded latent."""
        self.check_ready()
        self.latent_shape(images.shape[0], *images.shape[-2:])
        y = self.encoder(normalize(images))
        _, stream, escapes = encode_factorized(y, self.tables["y"], self.table_tensors["y_medians"])
        return LatentStreams([stream, escapes], [tuple(y.shape)])

    @torch.no_grad()
    def decode_feature(self, streams: LatentStreams, height: int, width: int) -> torch.Tensor:
        """Server side: entropy-coded latent -> the reconstructed split feature [B, 16, 32, 32]."""
        self.check_ready()
        if len(streams.shapes) != 1 or len(streams.shapes[0]) != 4 or len(streams.sections) != 2:
            raise CodecError("corrupt bitstream: a feature container holds one latent and two sections")
        shape = tuple(streams.shapes[0])
        if shape != self.latent_shape(shape[0], height, width):
            raise CodecError(f"corrupt bitstream: latent shape {shape} does not match this model")
        y_hat = decode_factorized(*streams.sections, shape, self.tables["y"], self.table_tensors["y_medians"])
        return self.decoder(y_hat)

    @torch.no_grad()
    def decompress(self, streams: LatentStreams, height: int, width: int) -> torch.Tensor:
        """Server side: entropy-coded latent -> logits [B, classes]."""
        return self.tail.tail(self.decode_feature(streams, height, width))
