"""Reading images of any Pillow mode with a defined policy, and writing files atomically.

Policy: RGB is coded as is; grayscale (L) is coded through the RGB model and decoded back to grayscale;
palette, CMYK, YCbCr, bilevel and other modes are converted to RGB with a warning; 16-bit input is reduced to
8 bits with a warning; alpha is dropped with a warning when fully opaque and refused otherwise.
"""
from __future__ import annotations

import errno
import os
import secrets
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from codec.errors import CodecError


class ImageModeWarning(UserWarning):
    """An input was converted before coding (the output will differ in mode or bit depth)."""


@dataclass
class LoadedImage:
    pixels: torch.Tensor  # [1, 3, H, W] float in [0, 1]
    channels: int  # 1 (decode to grayscale) or 3
    bit_depth: int  # of the original file


def _to_uint8_array(image: Image.Image) -> tuple[np.ndarray, int]:
    """Pixels as uint8 [H, W] or [H, W, C], and the original bit depth."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I") else 1.0
        warnings.warn(f"{image.mode} image reduced to 8 bits per channel", ImageModeWarning, stacklevel=3)
        return np.clip(np.round(values / peak * 255.0), 0, 255).astype(np.uint8), 16
    return np.asarray(image), 8


def from_pil(image: Image.Image) -> LoadedImage:
    """Apply the mode policy to a Pillow image."""
    if getattr(image, "n_frames", 1) > 1:
        warnings.warn("animated image: only the first frame is coded", ImageModeWarning, stacklevel=2)
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        warnings.warn("palette image converted to RGB", ImageModeWarning, stacklevel=2)
    elif mode in ("1", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        image = image.convert("L" if mode == "1" else "RGB")
        warnings.warn(f"{mode} image converted to {image.mode}", ImageModeWarning, stacklevel=2)
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        alpha = np.asarray(image.getchannel("A"))
        if alpha.min() < 255:
            raise CodecError(
                "image has a transparent alpha channel, which this codec does not code; flatten it onto a "
                "background first (e.g. with Pillow's Image.alpha_composite)"
            )
        warnings.warn("fully opaque alpha channel dropped", ImageModeWarning, stacklevel=2)
        image = image.convert("RGB" if image.mode in ("RGBA", "RGBa", "PA") else "L")
    array, bit_depth = _to_uint8_array(image)
    if array.ndim == 2:
        channels = 1
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 3:
        channels = 3
    else:
        raise CodecError(f"unsupported image layout {array.shape} (mode {mode})")
    pixels = torch.from_numpy(np.array(array, dtype=np.uint8)).permute(2, 0, 1)[None].float().div_(255.0)
    return LoadedImage(pixels, channels, bit_depth)


def load_image(path: Path, max_pixels: int) -> LoadedImage:
    """Open any Pillow-readable file, refusing images over `max_pixels` before decoding them."""
    try:
        with Image.open(path) as image:
            if image.width * image.height > max_pixels:
                raise CodecError(
                    f"{path}: {image.width}x{image.height} exceeds the limit of {max_pixels} pixels "
                    "(raise it with --max-pixels)"
                )
            Image.MAX_IMAGE_PIXELS = max(max_pixels, Image.MAX_IMAGE_PIXELS or 0)
            image.load()
            return from_pil(image)
    except FileNotFoundError:
        raise CodecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CodecError(f"{path}: is a directory") from None
    except UnidentifiedImageError:
        raise CodecError(f"{path}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise CodecError(f"{path}: cannot read image ({error})") from None


def to_pil(pixels: torch.Tensor, channels: int) -> Image.Image:
    """[1, 3, H, W] in [0, 1] -> 8-bit RGB, or grayscale when the original was."""
    array = pixels[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if channels == 1:
        return Image.fromarray(np.ascontiguousarray(array[:, :, 0]), mode="L")
    return Image.fromarray(np.ascontiguousarray(array), mode="RGB")


def check_output(path: Path, force: bool, inputs: tuple[Path, ...] = ()) -> None:
    """Refuse to overwrite an input, or an existing file without --force."""
    for source in inputs:
        if path.exists() and source.exists() and path.resolve() == source.resolve():
            raise CodecError(f"{path}: output would overwrite the input")
    if path.is_dir():
        raise CodecError(f"{path} is a directory; give a file name")
    if path.exists() and not force:
        raise CodecError(f"{path} exists; pass --force to overwrite it")
    if not path.parent.resolve().is_dir():
        raise CodecError(f"{path.parent}: no such directory")


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` whole or not at all; `path` keeps what it had until the new bytes are on disk.

    The bytes go to an unnamed file in the target folder (Linux O_TMPFILE: a process killed even by SIGKILL while
    writing leaves nothing behind), are flushed to disk, get a temporary name beside `path`, and that name replaces
    `path` in one rename. A full disk, a file-size limit or a read-only folder is a CodecError naming the path.
    """
    folder = path.parent.resolve()
    try:
        temporary = _complete_file(folder, path.name, data)
        try:
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    except OSError as error:
        raise CodecError(f"cannot write {path}: {error.strerror or error}") from None


def _complete_file(folder: Path, name: str, data: bytes) -> Path:
    """A new file in `folder` holding `data`, synced, under a temporary name it gets only once complete (where the
    file system has no unnamed files: a named temporary file, removed on any error this process sees)."""
    try:
        handle = os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o666)  # the umask applies, as for any new file
    except (AttributeError, OSError):
        return _named_temporary_file(folder, name, data)
    try:
        with os.fdopen(handle, "wb", closefd=False) as out:
            out.write(data)
        os.fsync(handle)
        temporary = f".{name}.{secrets.token_hex(6)}.tmp"
        folder_handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:  # a dir_fd makes Python call linkat(AT_SYMLINK_FOLLOW): the unnamed file itself gets the name
            os.link(f"/proc/self/fd/{handle}", temporary, dst_dir_fd=folder_handle, follow_symlinks=True)
        except OSError as error:  # no /proc, or a sandbox / file system that refuses the link: a named file
            if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise
            return _named_temporary_file(folder, name, data)
        finally:
            os.close(folder_handle)
    finally:
        os.close(handle)
    return folder / temporary


def _named_temporary_file(folder: Path, name: str, data: bytes) -> Path:
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return Path(temporary)


LOSSLESS_FORMATS = ("PNG", "BMP", "TIFF", "PPM")
LOSSY_FORMATS = ("JPEG", "WEBP", "AVIF")


def output_format(path: Path, requested: str | None = None) -> str:
    """The Pillow format to write: `requested` (e.g. from --format), else the one the extension names; an unknown or
    missing extension is refused (no silent PNG), and a lossy format warns that it re-encodes the decoded pixels."""
    if requested:
        image_format = requested.upper()
    else:
        image_format = Image.registered_extensions().get(path.suffix.lower(), "")
        if image_format not in LOSSLESS_FORMATS + LOSSY_FORMATS:
            raise CodecError(f"{path}: cannot tell the image format from {path.suffix or 'no extension'!r}; use .png "
                             "(lossless) or pass --format")
    if image_format not in LOSSLESS_FORMATS + LOSSY_FORMATS:
        raise CodecError(f"unknown output format {requested!r}; one of {', '.join(LOSSLESS_FORMATS + LOSSY_FORMATS)}")
    if image_format in LOSSY_FORMATS:
        warnings.warn(f"{path}: writing {image_format} re-encodes the decoded image lossily (lower quality than "
                      "decoded); use .png to keep the decoded pixels exactly", stacklevel=2)
    return image_format


def image_bytes(image: Image.Image, path: Path, image_format: str | None = None) -> bytes:
    """Encode a Pillow image in `image_format` (default: the one `output_format` picks for `path`)."""
    import io

    image_format = image_format or output_format(path)
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=image_format)
    except (OSError, KeyError, ValueError) as error:
        raise CodecError(f"{path}: cannot write {image_format} ({error})") from None
    return buffer.getvalue()
