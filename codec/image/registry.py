"""Model families by name. An unknown name raises with the list of known names."""
from __future__ import annotations

from typing import Callable

from codec.errors import CodecError
from codec.image.base import VariableRateImageModel
from codec.image.hyperprior import FactorizedPrior, MeanScaleHyperprior, ScaleHyperprior

MODEL_FAMILIES: dict[str, Callable[..., VariableRateImageModel]] = {
    "factorized": FactorizedPrior,
    "hyperprior": ScaleHyperprior,
    "mean-scale": MeanScaleHyperprior,
}


def create_model(family: str, **config) -> VariableRateImageModel:
    try:
        constructor = MODEL_FAMILIES[family]
    except KeyError:
        raise CodecError(f"unknown model family {family!r}; known: {', '.join(sorted(MODEL_FAMILIES))}") from None
    return constructor(**config)
