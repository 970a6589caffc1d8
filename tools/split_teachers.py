"""The split-computing teachers, one interface for training (tools/split_tasks.py) and benchmarks
(tools/bench_split.py): images in [0, 1] -> split feature -> later stages -> logits, and correct predictions."""
from __future__ import annotations

import numpy as np
import torch

from codec.split import efficientnet
from codec.split.resnet import load_teacher, normalize
from split_data import teacher_path


def as_uint8_tensor(images: np.ndarray) -> torch.Tensor:
    """[N, H, W, 3] uint8 array -> [N, 3, H, W] uint8 tensor (training batches stay 8-bit until augmented)."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def as_float_tensor(images: np.ndarray) -> torch.Tensor:
    """[N, H, W, 3] uint8 array -> [N, 3, H, W] float tensor in [0, 1] (what the teachers and students take)."""
    return as_uint8_tensor(images).float() / 255


class CifarTeacher:
    """A CIFAR-10 ResNet-(6n+2) (akamaster weights), split after layer1."""

    feature_name = "layer1"
    family = "entropic-student-cifar"

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.model = load_teacher(teacher_path(depth), depth)
        self.label = f"ResNet-{depth}"

    def is_student(self, card) -> bool:
        """Whether a shipped model card is a student of this teacher."""
        return card.family == self.family and card.config.get("depth") == self.depth

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(normalize(x))

    def split_feature(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.head(normalize(x))

    def tail_stages(self, feature: torch.Tensor) -> list[torch.Tensor]:
        return self.model.tail_stages(feature)

    def classify(self, last_stage: torch.Tensor) -> torch.Tensor:
        return self.model.classify(last_stage)

    def tail(self, feature: torch.Tensor) -> torch.Tensor:
        return self.model.tail(feature)

    def correct(self, logits: torch.Tensor, labels: np.ndarray | torch.Tensor) -> dict[str, int]:
        """Correct predictions in a batch, by metric name."""
        return {"accuracy": int((logits.argmax(1) == torch.as_tensor(labels)).sum())}


class EfficientNetTeacher:
    """EfficientNet-Lite0 (ImageNet-1k), split after block 4; 1000-way and 10-way (Imagenette) top-1."""

    feature_name = "block-4"
    family = "entropic-student-efficientnet"

    def __init__(self) -> None:
        self.model = efficientnet.load_efficientnet_lite0()
        self.label = "EfficientNet-Lite0"

    def is_student(self, card) -> bool:
        return card.family == self.family

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(efficientnet.normalize_lite(x))

    def split_feature(self, x: torch.Tensor) -> torch.Tensor:
        return efficientnet.split_feature(self.model, x)

    def tail_stages(self, feature: torch.Tensor) -> list[torch.Tensor]:
        return efficientnet.tail_stages(self.model, feature)

    def classify(self, last_stage: torch.Tensor) -> torch.Tensor:
        return efficientnet.classify(self.model, last_stage)

    def tail(self, feature: torch.Tensor) -> torch.Tensor:
        return self.classify(self.tail_stages(feature)[-1])

    def correct(self, logits: torch.Tensor, labels: np.ndarray | torch.Tensor) -> dict[str, int]:
        return efficientnet.imagenette_correct(logits, labels)


Teacher = CifarTeacher | EfficientNetTeacher
