"""Where the training and evaluation photos live. Read in place, never copied into the project.

Training: BSDS500 train + val (../shared/data) and the Debian wallpaper/photo packages that
`tools/install_training_photos.sh` installs. Validation: BSDS500 test. Kodak is for testing only.
"""
from __future__ import annotations

import glob
import os
from pathlib import Path

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


def validation_photos() -> list[Path]:
    return sorted((SHARED_DATA / "bsds500" / "test").glob("*.jpg"))


def kodak_photos() -> list[Path]:
    return sorted((SHARED_DATA / "kodak").glob("kodim*.png"))
