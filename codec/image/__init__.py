"""Learned image models: factorized prior, scale hyperprior, mean-scale hyperprior (all variable-rate)."""
from codec.image.registry import MODEL_FAMILIES

__all__ = ["MODEL_FAMILIES"]
