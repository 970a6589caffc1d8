"""Rate-distortion evaluation over a folder of images, written as CompressAI-format JSON.

Metrics as CompressAI computes them: 8-bit RGB, PSNR over all values, MS-SSIM (data_range=255), each averaged over
images per rate point; bpp from the real bytes (our container header included).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from codec.errors import CodecError
from codec.metrics import bpp, ms_ssim, psnr

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".webp"}

# encode(image, quality) -> bytes ; decode(bytes) -> image
Encoder = Callable[[Image.Image, float], bytes]
Decoder = Callable[[bytes], Image.Image]


def dataset_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise CodecError(f"{folder}: not a directory of images")
    paths = sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise CodecError(f"{folder}: no images found")
    return paths


def evaluate(
    name: str, description: str, paths: Sequence[Path], qualities: Sequence[float], encode: Encoder,
    decode: Decoder, per_image: bool = False,
) -> dict:
    """Encode and decode every image at every quality; return CompressAI-style JSON (one entry per quality)."""
    images = [Image.open(path).convert("RGB") for path in paths]
    metrics = {key: [] for key in ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time")}
    per_image_rows = []
    progress = tqdm(total=len(images) * len(qualities), desc=f"eval {name}", leave=False)
    for quality in qualities:
        rows = []
        for path, image in zip(paths, images):
            started = time.perf_counter()
            data = encode(image, quality)
            encoded = time.perf_counter()
            decoded = decode(data)
            decoded_at = time.perf_counter()
            row = {"bpp": bpp(len(data), image), "psnr-rgb": psnr(image, decoded),
                   "ms-ssim-rgb": ms_ssim(image, decoded), "encoding_time": encoded - started,
                   "decoding_time": decoded_at - encoded}
            rows.append(row)
            if per_image:
                per_image_rows.append({"image": path.name, "quality": quality, **row})
            progress.update(1)
        for key in metrics:
            metrics[key].append(float(np.mean([row[key] for row in rows])))
    progress.close()
    result = {"name": name, "description": description, "results": {"quality": list(qualities), **metrics}}
    if per_image:
        result["per_image"] = per_image_rows
    return result
