"""CIFAR-10 from ../shared/data/cifar10 (.npz, read in place): decoded uint8 arrays and labels."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from codec.zoo import PROJECT_ROOT

CIFAR_DIR = PROJECT_ROOT.parent / "shared" / "data" / "cifar10"
TEACHER_DIR = PROJECT_ROOT.parent / "shared" / "data" / "cifar10-teachers"


def decode_jpegs(data: np.lib.npyio.NpzFile) -> np.ndarray:
    """The `jpeg_bytes` / `jpeg_offsets` arrays of an npz -> uint8 [N, 32, 32, 3]."""
    blob, offsets = data["jpeg_bytes"], data["jpeg_offsets"]
    return np.stack([np.asarray(Image.open(io.BytesIO(blob[a:b].tobytes())).convert("RGB"))
                     for a, b in zip(offsets[:-1], offsets[1:])])


def cifar_split(name: str, root: Path = CIFAR_DIR) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 32, 32, 3], labels int64 [N]) for "train" (50k JPEG q75), "test" (10k JPEG q75),
    "lossless-test" (the first 1000 official test images, true pixels) or "lossless-train" (4000 train images)."""
    if name in ("lossless-test", "lossless-train"):
        data = np.load(root / "lossless_subset.npz")
        part = name.split("-")[1]
        return data[f"{part}_images"], data[f"{part}_labels"].astype(np.int64)
    if name == "test":
        data = np.load(root / "test.npz")
        return data["images"], data["labels"].astype(np.int64)
    if name == "train":
        data = np.load(root / "train.npz")
        return decode_jpegs(data), data["labels"].astype(np.int64)
    raise ValueError(f"unknown CIFAR-10 split {name!r}")


def teacher_path(depth: int, root: Path = TEACHER_DIR) -> Path:
    matches = sorted(root.glob(f"resnet{depth}-*.th"))
    if not matches:
        raise FileNotFoundError(f"no ResNet-{depth} teacher in {root}")
    return matches[0]
