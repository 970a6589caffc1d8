"""Split-computing data from ../shared/data, read in place: CIFAR-10 (.npz) and its teachers, Imagenette.

Training and benchmark helpers, not part of the package (an installed codec knows nothing of ../shared/data)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from photos import SHARED_DATA

CIFAR_DIR = SHARED_DATA / "cifar10"
TEACHER_DIR = SHARED_DATA / "cifar10-teachers"


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


IMAGENETTE_DIR = SHARED_DATA / "imagenette"


def _imagenette_npz(name: str, root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    data = np.load(root / f"{name}.npz")
    return data["jpeg"], data["offsets"], data["imagenet_index"].astype(np.int64), data["in_imagenet_train"]


def imagenette_split(name: str, root: Path = IMAGENETTE_DIR, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 224, 224, 3], ImageNet-1k labels int64 [N]) from ../shared/data/imagenette, read in place.

    "train": train_subset.npz minus the ImageNet-val images (4034; the only split to train on);
    "unseen": the 500 ILSVRC2012-val images the teacher never saw (both files; the honest test set);
    "val": all 3925 of val.npz (mostly ImageNet-train images: a reference only);
    "val-seen": the 3791 val.npz images from ImageNet-train (for validation during training).
    `limit` keeps the first N (in file order: sorted by class, so take a spread with a stride instead)."""
    picks: list[tuple[str, bool | None]] = {
        "train": [("train_subset", True)], "unseen": [("val", False), ("train_subset", False)],
        "val": [("val", None)], "val-seen": [("val", True)],
    }.get(name)
    if picks is None:
        raise ValueError(f"unknown Imagenette split {name!r}")
    images, labels = [], []
    for file, seen in picks:
        blob, offsets, imagenet_index, in_train = _imagenette_npz(file, root)
        chosen = np.flatnonzero(in_train == seen) if seen is not None else np.arange(len(imagenet_index))
        images += [np.asarray(Image.open(io.BytesIO(blob[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB"))
                   for i in chosen]
        labels.append(imagenet_index[chosen])
    images_array, labels_array = np.stack(images), np.concatenate(labels)
    if limit is not None and limit < len(labels_array):
        spread = np.linspace(0, len(labels_array) - 1, limit).round().astype(np.int64)
        images_array, labels_array = images_array[spread], labels_array[spread]
    return images_array, labels_array
