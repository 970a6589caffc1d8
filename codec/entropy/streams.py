"""What a model's entropy coder hands the container: named-by-position byte sections and the latent shapes."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LatentStreams:
    """Entropy-coded sections of one image (or feature batch) and the latent shapes they decode to."""

    sections: list[bytes]
    shapes: list[tuple[int, ...]]
