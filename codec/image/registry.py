"""Image model families by name."""
from __future__ import annotations

from typing import Callable

from codec.image.base import VariableRateImageModel
from codec.image.context import ContextHyperprior
from codec.image.hyperprior import FactorizedPrior, MeanScaleHyperprior, ScaleHyperprior
from codec.image.mgm import MultiCodebookModel

MODEL_FAMILIES: dict[str, Callable[..., VariableRateImageModel]] = {
    "factorized": FactorizedPrior,
    "hyperprior": ScaleHyperprior,
    "mean-scale": MeanScaleHyperprior,
    "mgm": MultiCodebookModel,
    "mean-scale-context": ContextHyperprior,
}
