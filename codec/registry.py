"""Every model family by name, registered once here with its kind; an unknown name raises with the known names.

Families resolve lazily (the class is imported on first use), so reading model cards or a container's header
imports no torch, and the zoo, the image models and the split runtime import each other without a cycle.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal

from codec.errors import CodecError

Kind = Literal["image", "feature"]


@dataclass(frozen=True)
class Family:
    kind: Kind  # the container payload kind the family writes
    target: str  # "module:Class"

    def constructor(self) -> type:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


FAMILIES: dict[str, Family] = {
    "factorized": Family("image", "codec.image.hyperprior:FactorizedPrior"),
    "hyperprior": Family("image", "codec.image.hyperprior:ScaleHyperprior"),
    "mean-scale": Family("image", "codec.image.hyperprior:MeanScaleHyperprior"),
    "mean-scale-context": Family("image", "codec.image.context:ContextHyperprior"),
    "mgm": Family("image", "codec.image.mgm:MultiCodebookModel"),
    "entropic-student-cifar": Family("feature", "codec.split.student:CifarEntropicStudent"),
    "entropic-student-efficientnet": Family("feature", "codec.split.student:EfficientNetEntropicStudent"),
}


def family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise CodecError(f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}") from None


def family_names(kind: Kind | None = None) -> list[str]:
    """Registered family names (of one kind, if given), sorted."""
    return sorted(name for name, entry in FAMILIES.items() if kind is None or entry.kind == kind)


def create_model(name: str, **config):
    return family(name).constructor()(**config)


def family_kind(name: str) -> Kind:
    """The container payload kind a family writes: "image" or "feature"."""
    return family(name).kind
