"""Where the training and evaluation photos live. Read in place, never copied into the project.

Training: BSDS500 train + val (../shared/data) and the Debian wallpaper/photo packages that
`tools/install_training_photos.sh` installs; optionally Imagenette's train photos, downscaled (`imagenette_photos`).
Validation: BSDS500 test. Kodak is for testing only; so are Imagenette's val and teacher-unseen images.
"""
from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

SHARED_DATA = Path(os.environ.get("CODEC_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))

DEBIAN_PHOTO_GLOBS = (
    "/usr/share/backgrounds/mate/nature/*.jpg",
    "/usr/share/wallpapers/*/contents/images/2560x1600.jpg",
    "/usr/share/backgrounds/*_by_*.jpg",
    "/usr/share/doc/opencv-doc/examples/data/*.jpg",
)


def training_photos() -> list[Path]:
    photos = sorted((SHARED_DATA / "bsds500" / "train").glob("*.jpg"))
    photos += sorted((SHARED_DATA / "bsds500" / "val").glob("*.jpg"))
    for pattern in DEBIAN_PHOTO_GLOBS:
        photos += sorted(Path(path) for path in glob.glob(pattern))
    return photos


def missing_debian_photos() -> list[str]:
    """The DEBIAN_PHOTO_GLOBS that match nothing on this machine (their packages are not installed)."""
    return [pattern for pattern in DEBIAN_PHOTO_GLOBS if not glob.glob(pattern)]


IMAGENETTE_SIDE = 160  # 224x224 JPEG q75 photos shrunk to this side: the JPEG blocking washes out


def imagenette_photos(side: int = IMAGENETTE_SIDE) -> np.ndarray:
    """uint8 [4034, side, side, 3]: Imagenette's train photos (ImageNet-train images only: never its val or the 500
    teacher-unseen images) downscaled with an antialiasing filter, as Ballé et al. downscaled ImageNet so that
    compression artefacts wash out."""
    from split_data import imagenette_split

    images, _ = imagenette_split("train")
    return np.stack([np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.LANCZOS))
                     for image in tqdm(images, desc="imagenette photos", mininterval=10)])


def validation_photos() -> list[Path]:
    return sorted((SHARED_DATA / "bsds500" / "test").glob("*.jpg"))


def kodak_photos() -> list[Path]:
    return sorted((SHARED_DATA / "kodak").glob("kodim*.png"))


def random_thumbnails(photos: list[Path], count: int, size: int, seed: int, min_side: int = 64) -> np.ndarray:
    """`count` unlabelled size x size thumbnails (uint8 [count, size, size, 3]): random square crops of the photos,
    from `min_side` pixels to the photo's short side, shrunk with a box filter (the way CIFAR-sized images are made).
    Head distillation needs no labels, so these widen its training set with clean, never-JPEG'd pixels."""
    if not photos or count <= 0:
        raise ValueError("random_thumbnails needs photos and a positive count")
    rng = np.random.default_rng(seed)
    per_photo = np.bincount(rng.integers(0, len(photos), count), minlength=len(photos))
    thumbnails = []
    for path, wanted in zip(tqdm(photos, desc="photo thumbnails", mininterval=10), per_photo):
        if wanted == 0:
            continue
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        short = min(image.size)
        for _ in range(wanted):
            side = int(rng.integers(min(min_side, short), short + 1))
            left, top = int(rng.integers(0, image.width - side + 1)), int(rng.integers(0, image.height - side + 1))
            crop = image.resize((size, size), Image.Resampling.BOX, box=(left, top, left + side, top + side))
            thumbnails.append(np.asarray(crop))
    return np.stack(thumbnails)[rng.permutation(count)]
