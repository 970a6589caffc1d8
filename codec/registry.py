"""Every model family by name (image and feature). An unknown name raises with the list of known names."""
from __future__ import annotations

from typing import Callable

from torch import nn

from codec.errors import CodecError
from codec.image.registry import MODEL_FAMILIES as IMAGE_FAMILIES
from codec.split.student import CifarEntropicStudent, EfficientNetEntropicStudent

FEATURE_FAMILIES: dict[str, Callable[..., nn.Module]] = {
    "entropic-student-cifar": CifarEntropicStudent,
    "entropic-student-efficientnet": EfficientNetEntropicStudent,
}
FAMILIES: dict[str, Callable[..., nn.Module]] = {**IMAGE_FAMILIES, **FEATURE_FAMILIES}


def create_model(family: str, **config) -> nn.Module:
    try:
        constructor = FAMILIES[family]
    except KeyError:
        raise CodecError(f"unknown model family {family!r}; known: {', '.join(sorted(FAMILIES))}") from None
    return constructor(**config)


def family_kind(family: str) -> str:
    """The container payload kind a family writes: "image" or "feature"."""
    return "feature" if family in FEATURE_FAMILIES else "image"
