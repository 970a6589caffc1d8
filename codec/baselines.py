"""Classic codecs through Pillow, for side-by-side rate-distortion: JPEG (4:2:0, optimize), WebP (method 6), AVIF."""
from __future__ import annotations

import io
from typing import Callable

from PIL import Image, features

from codec.errors import CodecError

BASELINE_QUALITIES = tuple(range(5, 100, 10))


def _pillow_codec(image_format: str, **options) -> Callable[[Image.Image, int], bytes]:
    def encode(image: Image.Image, quality: int) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format=image_format, quality=int(quality), **options)
        return buffer.getvalue()

    return encode


BASELINES: dict[str, Callable[[Image.Image, int], bytes]] = {
    "jpeg": _pillow_codec("JPEG", subsampling="4:2:0", optimize=True),
    "webp": _pillow_codec("WEBP", method=6),
    "avif": _pillow_codec("AVIF", speed=6),
}


def baseline_encoder(name: str) -> Callable[[Image.Image, int], bytes]:
    if name not in BASELINES:
        raise CodecError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    if name in ("webp", "avif") and not features.check(name):
        raise CodecError(f"this Pillow build has no {name.upper()} support")
    return BASELINES[name]


def decode_bytes(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")
