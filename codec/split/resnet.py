"""CIFAR-10 ResNets (He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016, section 4.2),
built to load the akamaster/pytorch_resnet_cifar10 teacher weights (see ../shared/data/cifar10-teachers/SOURCE.md).

    image 3x32x32 -> stem (conv3x3-BN-ReLU) -> layer1 (16ch, 32x32) -> layer2 (32ch, 16x16) -> layer3 (64ch, 8x8)
                  -> global average pool -> linear -> 10 logits

The split runtime cuts it after `layer1`: everything before is the teacher's head, the rest its tail.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

STAGES = ("layer1", "layer2", "layer3")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a parameter-free shortcut (option A: subsample and zero-pad channels)."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad_channels = (planes - in_planes) // 2 if stride != 1 or in_planes != planes else 0
        self.stride = stride

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1 and self.pad_channels == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_channels, self.pad_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs: n blocks per stage, 16/32/64 channels (`with_head=False`: the tail only)."""

    def __init__(self, depth: int = 20, num_classes: int = 10, with_head: bool = True) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        blocks = (depth - 2) // 6
        if with_head:
            self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
        widths = (16, 32, 64)
        in_planes = 16
        for index, width in enumerate(widths):
            if index == 0 and not with_head:
                continue
            layers = [BasicBlock(in_planes if b == 0 else width, width, 2 if (b == 0 and index > 0) else 1)
                      for b in range(blocks)]
            setattr(self, STAGES[index], nn.Sequential(*layers))
            in_planes = width
        self.linear = nn.Linear(64, num_classes)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized image -> the feature at the split point (after layer1)."""
        return self.layer1(F.relu(self.bn1(self.conv1(x))))

    def tail_stages(self, feature: torch.Tensor) -> list[torch.Tensor]:
        """The split feature through layer2 and layer3 (each stage's output, for head distillation)."""
        out2 = self.layer2(feature)
        return [out2, self.layer3(out2)]

    def classify(self, last_stage: torch.Tensor) -> torch.Tensor:
        return self.linear(F.adaptive_avg_pool2d(last_stage, 1).flatten(1))

    def tail(self, feature: torch.Tensor) -> torch.Tensor:
        return self.classify(self.tail_stages(feature)[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.head(x))


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8-range [B, 3, H, W] floats in [0, 1] -> the teachers' ImageNet mean/std normalization."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def load_teacher(path: Path, depth: int) -> CifarResNet:
    """A teacher from an akamaster `.th` file (tensors only: loaded with weights_only=True; `module.` stripped)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = {key.removeprefix("module."): value for key, value in checkpoint["state_dict"].items()}
    model = CifarResNet(depth)
    model.load_state_dict(state, strict=True)
    return model.eval()
