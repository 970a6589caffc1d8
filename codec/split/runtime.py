"""Device and server halves of split computing, speaking the same container as images (payload kind "feature").

    device = DeviceEncoder("es-resnet20-mid");  data = device.encode(images)       # bytes on the wire
    server = ServerDecoder("es-resnet20-mid");  logits = server.decode(data)       # [B, classes]

The header carries the model name and weights digest, so a server refuses bytes made by another encoder.
"""
from __future__ import annotations

import warnings

import time
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from codec import bitstream
from codec.errors import CodecError
from codec.entropy.streams import LatentStreams
from codec.zoo import ModelCard, load_model

MAX_BATCH = 1024  # images per container a server accepts


def load_feature_model(name: str) -> tuple[torch.nn.Module, ModelCard]:
    model, card = load_model(name)
    if card.kind != "feature":
        raise CodecError(f"model {name!r} is an image codec, not a split-computing (feature) model")
    return model, card


def image_batch(images: Image.Image | np.ndarray | list, size: int) -> torch.Tensor:
    """PIL image(s) or uint8 arrays ([H, W, 3] or [B, H, W, 3]) -> float [B, 3, size, size] in [0, 1].

    PIL images of another size are resized (bilinear, antialiased); arrays must already be size x size."""
    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, list):
        arrays = []
        for image in images:
            if not isinstance(image, Image.Image):
                raise CodecError("expected PIL images or a uint8 array")
            if "A" in image.getbands() and image.getextrema()[image.getbands().index("A")][0] < 255:
                warnings.warn(f"dropping a transparent alpha channel: the model sees the {image.mode} image as RGB",
                              stacklevel=3)
            image = image.convert("RGB")
            if image.size != (size, size):
                warnings.warn(f"resizing a {image.width}x{image.height} image to the model's {size}x{size} input",
                              stacklevel=3)
                image = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
            arrays.append(np.asarray(image))
        images = np.stack(arrays) if arrays else np.zeros((0, size, size, 3), np.uint8)
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[None]
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[1:] != (size, size, 3):
        raise CodecError(f"expected uint8 images of shape [B, {size}, {size}, 3], got {array.dtype} {array.shape}")
    if not 0 < len(array) <= MAX_BATCH:
        raise CodecError(f"a container holds 1..{MAX_BATCH} images, got {len(array)}")
    return torch.from_numpy(array).permute(0, 3, 1, 2).float() / 255


class DeviceEncoder:
    """The device half: head replaced by the learned encoder, then real entropy coding."""

    def __init__(self, model: str) -> None:
        self.model, self.card = load_feature_model(model)

    @property
    def input_size(self) -> int:
        return self.model.input_size

    def encode(self, images: Image.Image | np.ndarray | list) -> bytes:
        """One container for the batch (bytes per image = len(result) / batch)."""
        x = image_batch(images, self.input_size)
        streams = self.model.compress(x)
        container = bitstream.feature_container(self.card.name, self.card.digest, len(x), streams.sections)
        return bitstream.write(container)


@dataclass
class Inference:
    logits: torch.Tensor
    decode_seconds: float
    tail_seconds: float


class ServerDecoder:
    """The server half: parse, entropy-decode, reconstruct the split feature, run the tail."""

    def __init__(self, model: str) -> None:
        self.model, self.card = load_feature_model(model)

    def infer(self, data: bytes) -> Inference:
        started = time.perf_counter()
        container = bitstream.parse(data)
        if container.kind != "feature":
            raise CodecError(f"this is an {container.kind} bitstream; the server takes feature bitstreams")
        if container.model != self.card.name:
            raise CodecError(f"bitstream is for model {container.model!r}; this server runs {self.card.name!r}")
        if container.weights_digest != self.card.digest:
            raise CodecError(f"bitstream was made by another encoder for {container.model!r} (weights digest "
                             f"{container.weights_digest.hex()}, server has {self.card.digest.hex()})")
        if not 0 < container.count <= MAX_BATCH:
            raise CodecError(f"a container holds 1..{MAX_BATCH} images")
        size = self.model.input_size
        shapes = container.shapes or self.model.latent_shapes(container.count, size, size)  # version 5 derives them
        streams = LatentStreams(container.sections, shapes)
        feature = self.model.decode_feature(streams, container.height or size, container.width or size)
        decoded = time.perf_counter()
        with torch.no_grad():
            logits = self.model.tail.tail(feature)
        return Inference(logits, decoded - started, time.perf_counter() - decoded)

    def decode(self, data: bytes) -> torch.Tensor:
        """Container bytes -> logits [B, classes]."""
        return self.infer(data).logits

    def top_k(self, logits: torch.Tensor, k: int = 5) -> list[list[dict]]:
        """Per image, the k most probable classes with their label (when the card names them) and probability."""
        probabilities = torch.softmax(logits.float(), dim=1)
        values, indices = probabilities.topk(min(k, probabilities.shape[1]), dim=1)
        return [[{"class": int(i), "label": self.card.labels[int(i)] if int(i) < len(self.card.labels) else str(int(i)),
                  "probability": round(float(v), 6)} for v, i in zip(row_values, row_indices)]
                for row_values, row_indices in zip(values, indices)]
