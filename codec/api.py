"""Python API for images: `encode_image(...) -> bytes` and `decode_image(bytes) -> PIL.Image`."""
from __future__ import annotations

import warnings

from PIL import Image

from codec import bitstream
from codec.errors import CodecError
from codec.entropy.streams import LatentStreams
from codec.image.base import VariableRateImageModel
from codec.image.refine import check_refinable
from codec.imageio import LoadedImage, from_pil, to_pil
from codec.precision import use_bf16
from codec.zoo import DEFAULT_IMAGE_MODEL, ModelCard, load_model

DEFAULT_MODEL = DEFAULT_IMAGE_MODEL


def prepared_model(name: str, fast: bool | None = None) -> tuple[VariableRateImageModel, ModelCard]:
    """A shipped model with the bf16 transform path switched on where the CPU supports it (or as asked)."""
    model, card = load_model(name)
    if card.kind != "image":
        raise CodecError(f"model {name!r} is a {card.kind} model (split computing), not an image codec")
    model.set_fast_transforms(use_bf16() if fast is None else fast)
    return model, card


def usable_quality(network: VariableRateImageModel, quality: float) -> float:
    """`quality` itself for a continuous-rate model; for one with discrete levels the nearest level, with a warning
    when that differs (the container records the level actually coded)."""
    network.quality_tensor(quality)  # range check
    if network.continuous_quality or quality == round(quality):
        return quality
    level = float(round(quality))
    warnings.warn(f"this model has discrete rate levels 0..{network.max_quality:g}: quality {quality:g} coded as "
                  f"level {level:g}", stacklevel=3)
    return level


def encode_image(
    image: Image.Image | LoadedImage,
    model: str = DEFAULT_MODEL,
    quality: float | None = None,
    fast: bool | None = None,
    refine_steps: int = 0,
    progress: bool = False,
) -> bytes:
    """Compress an image into a container (see codec.bitstream). `refine_steps` > 0 spends that many optimization
    steps on this image's latent (codec.image.refine): smaller files at the same quality, slower encoding, the same
    decoder."""
    loaded = image if isinstance(image, LoadedImage) else from_pil(image)
    network, card = prepared_model(model, fast)
    quality = usable_quality(network, card.default_quality if quality is None else float(quality))
    height, width = loaded.pixels.shape[-2:]
    if refine_steps < 0:
        raise CodecError(f"refine steps must be >= 0, got {refine_steps}")
    if refine_steps:
        check_refinable(network, height * width)
        streams = network.compress(loaded.pixels, quality, refine_steps, progress)
    else:
        streams = network.compress(loaded.pixels, quality)
    container = bitstream.Container(
        kind="image", model=card.name, weights_digest=card.digest, quality=quality, height=height, width=width,
        channels=loaded.channels, bit_depth=loaded.bit_depth, shapes=streams.shapes, sections=streams.sections,
    )
    try:
        return bitstream.write(container)
    except ValueError as error:  # e.g. a latent over the format's limit: one line for the user, not a traceback
        raise CodecError(f"this image cannot be stored in a container: {error}") from None


def decode_image(data: bytes, max_pixels: int = bitstream.DEFAULT_MAX_PIXELS, fast: bool | None = None) -> Image.Image:
    """Decompress a container made by `encode_image` (refusing one made with other weights)."""
    container = bitstream.parse(data, max_pixels=max_pixels)
    if container.kind != "image":
        raise CodecError(f"this is a {container.kind} bitstream, not an image")
    network, card = prepared_model(container.model, fast)
    if container.weights_digest != card.digest:
        raise CodecError(
            f"bitstream was made with other weights for {container.model!r} "
            f"(digest {container.weights_digest.hex()}, shipped {card.digest.hex()})"
        )
    if not 0.0 <= container.quality <= network.max_quality:
        raise CodecError(f"corrupt bitstream: quality {container.quality:g} outside the model's range")
    streams = LatentStreams(container.sections, container.shapes)
    pixels = network.decompress(streams, container.quality, container.height, container.width)
    return to_pil(pixels, container.channels)
