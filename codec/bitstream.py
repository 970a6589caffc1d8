"""The container: a versioned, self-describing, checksummed file. Knows nothing about neural networks.

Layout of version 5 (fixed-size integers little-endian; "uint" is an unsigned LEB128 varint of at most 5 bytes):

    magic "LCDC" | version u8 | kind u8 | name_len u8 | name | weights digest 8B
    | image:   quality f32 | height uint | width uint | channels u8 | bit_depth u8
    |          | n_shapes u8 | per shape: ndim u8, dims uint * ndim
    | feature: count uint (the number of images)
    | n_sections u8 | lengths uint of all sections but the last | section bytes ... | crc32 u32 (over all before it)

History, all still parsed: version 1 wrote "uint" as u32 (varints from version 2 save ~20 bytes a file, which
matters for 200-byte feature payloads). Version 3 left quality, channels and bit depth out of feature containers
(split computing: the input is always an 8-bit RGB image of the model's size, and there is no rate knob). Version 4
changed no field: its ANS sections end at the last non-zero byte of their last 32-bit word (up to 3 zero bytes
dropped, ~1.5 B per section; codec/entropy/coder.py pads them back), so a version-3 reader must not see them.
Version 5 leaves out what a reader can work out: the last section runs to the checksum, and a feature container
carries only its image count in place of height, width and latent shapes, which the model derives from its fixed
input size (8 bytes of a ~200-byte message); version 1-4 feature containers still carry them. Writers emit version 5.

The parser trusts nothing: every count, length and shape is checked against a limit before anything is allocated.
"""
from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field

from codec.errors import CodecError

MAGIC = b"LCDC"
VERSION = 5
READABLE_VERSIONS = (1, 2, 3, 4, 5)
FEATURE_DEFAULTS = {"quality": 0.0, "channels": 3, "bit_depth": 8}  # what a version-3 feature container implies
FEATURE_DERIVED = {"height": 0, "width": 0, "shapes": []}  # what a version-5 feature container leaves to the model
MAX_COUNT = 1 << 16
KINDS = {1: "image", 2: "feature"}
KIND_CODES = {name: code for code, name in KINDS.items()}
DEFAULT_MAX_PIXELS = 1 << 26  # 67 megapixels; raise with --max-pixels
MAX_NAME_LENGTH = 64
MAX_SHAPES = 8
MAX_DIMS = 6
MAX_SECTIONS = 16
MAX_LATENT_ELEMENTS = 1 << 28
_CRC_SIZE = 4


@dataclass
class Container:
    """Everything a decoder needs: which model (and which weights), the rate, the original image, the streams."""

    kind: str
    model: str
    weights_digest: bytes
    quality: float
    height: int
    width: int
    channels: int = 3
    bit_depth: int = 8
    shapes: list[tuple[int, ...]] = field(default_factory=list)
    sections: list[bytes] = field(default_factory=list)
    count: int = 0  # feature containers: how many images (versions 1-4: the first latent dimension)

    @property
    def header_bytes(self) -> int:
        """Bytes that are not entropy-coded payload (magic, header, lengths, checksum)."""
        return len(write(self)) - sum(len(section) for section in self.sections)


def varint(value: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, low bits first, high bit set on every byte but the last."""
    if not 0 <= value < 1 << 32:
        raise ValueError(f"{value} does not fit a 32-bit unsigned integer")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def feature_container(model: str, weights_digest: bytes, count: int, sections: list[bytes]) -> Container:
    """A container for `count` images' split-point features; the model works out the geometry."""
    return Container("feature", model, weights_digest, FEATURE_DEFAULTS["quality"], 0, 0, sections=sections,
                     count=count)


def write(container: Container) -> bytes:
    """The container's bytes; ValueError for anything the parser would refuse (the writer checks by reading back)."""
    data = serialize(container)
    try:  # the writer never produces what the parser would refuse (NaN quality, a zero side, a huge latent, ...)
        parse(data, max_pixels=1 << 64)
    except CodecError as error:
        raise ValueError(f"this container could not be read back: {error}") from None
    return data


def serialize(container: Container) -> bytes:
    """The bytes of a container with only the checks its layout needs (tests use it to craft hostile files)."""
    name = container.model.encode("ascii")
    if not 0 < len(name) <= MAX_NAME_LENGTH:
        raise ValueError(f"model name must be 1..{MAX_NAME_LENGTH} ASCII characters")
    if len(container.weights_digest) != 8:
        raise ValueError("weights digest must be 8 bytes")
    if len(container.shapes) > MAX_SHAPES or len(container.sections) > MAX_SECTIONS:
        raise ValueError("too many shapes or sections")
    describes_image = container.kind == "image"
    implied = FEATURE_DEFAULTS | FEATURE_DERIVED
    if not describes_image and any(getattr(container, key) != value for key, value in implied.items()):
        raise ValueError(f"a feature container implies {implied}; its geometry is its image count")
    if not describes_image and not 0 < container.count <= MAX_COUNT:
        raise ValueError(f"a feature container holds 1..{MAX_COUNT} images")
    out = bytearray(MAGIC)
    out += struct.pack("<BBB", VERSION, KIND_CODES[container.kind], len(name)) + name + container.weights_digest
    if describes_image:
        out += struct.pack("<f", container.quality) + varint(container.height) + varint(container.width)
        out += struct.pack("<BBB", container.channels, container.bit_depth, len(container.shapes))
        for shape in container.shapes:
            out += struct.pack("<B", len(shape)) + b"".join(map(varint, shape))
    else:
        out += varint(container.count)
    out += struct.pack("<B", len(container.sections))
    out += b"".join(varint(len(section)) for section in container.sections[:-1])
    for section in container.sections:
        out += section
    out += struct.pack("<I", zlib.crc32(out))
    return bytes(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.position = 0
        self.end = len(data) - _CRC_SIZE

    def take(self, size: int) -> bytes:
        if size < 0 or self.position + size > self.end:
            raise CodecError("truncated bitstream: the file ends before its header says it should")
        chunk = bytes(self.data[self.position : self.position + size])
        self.position += size
        return chunk

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def varint(self) -> int:
        value = 0
        for index in range(5):
            (byte,) = self.take(1)
            value |= (byte & 0x7F) << (7 * index)
            if not byte & 0x80:
                if value >= 1 << 32:
                    break
                return value
        raise CodecError("corrupt bitstream: an integer field is longer than 32 bits")

    def uints(self, count: int, version: int) -> tuple[int, ...]:
        """`count` header integers: u32 in version 1, varints in version 2."""
        return self.unpack(f"{count}I") if version == 1 else tuple(self.varint() for _ in range(count))


def parse(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Container:
    """Parse and verify a container; raise `CodecError` with a one-line reason for anything wrong."""
    if len(data) == 0:
        raise CodecError("empty file: not a codec bitstream")
    if len(data) < len(MAGIC) or bytes(data[:4]) != MAGIC:
        raise CodecError("not a codec bitstream (bad magic): images come from `codec encode`, features from "
                         "`DeviceEncoder` / `codec infer`")
    if len(data) < len(MAGIC) + 1 + _CRC_SIZE:
        raise CodecError("truncated bitstream")
    reader = _Reader(data)
    reader.take(len(MAGIC))
    version, kind_code, name_length = reader.unpack("BBB")
    if version not in READABLE_VERSIONS:
        raise CodecError(f"unsupported bitstream version {version} (this codec reads versions "
                         f"{', '.join(map(str, READABLE_VERSIONS))})")
    if kind_code not in KINDS:
        raise CodecError(f"corrupt bitstream: unknown payload kind {kind_code}")
    if not 0 < name_length <= MAX_NAME_LENGTH:
        raise CodecError("corrupt bitstream: bad model name length")
    try:
        model = reader.take(name_length).decode("ascii")
    except UnicodeDecodeError:
        raise CodecError("corrupt bitstream: model name is not ASCII") from None
    digest = reader.take(8)
    kind = KINDS[kind_code]
    if kind == "feature" and version >= 5:
        count = reader.varint()
        if not 0 < count <= MAX_COUNT:
            raise CodecError(f"corrupt bitstream: a feature container of {count} images (limit {MAX_COUNT})")
        container = feature_container(model, digest, count, [])
    else:
        geometry = _read_geometry(reader, version, version < 3 or kind == "image", max_pixels)
        shapes = geometry["shapes"]
        count = shapes[0][0] if kind == "feature" and shapes and shapes[0] else 0
        container = Container(kind, model, digest, **geometry, count=count)
    container.sections = _read_sections(reader, version)
    (stored_crc,) = struct.unpack("<I", bytes(data[-_CRC_SIZE:]))
    if zlib.crc32(bytes(data[:-_CRC_SIZE])) != stored_crc:
        raise CodecError("corrupt bitstream: checksum mismatch (the file was damaged)")
    return container


def _read_geometry(reader: _Reader, version: int, describes_image: bool, max_pixels: int) -> dict:
    """Image fields and latent shapes (every image container; feature containers up to version 4)."""
    quality = reader.unpack("f")[0] if describes_image else FEATURE_DEFAULTS["quality"]
    height, width = reader.uints(2, version)
    channels, bit_depth = reader.unpack("BB") if describes_image else (FEATURE_DEFAULTS["channels"],
                                                                        FEATURE_DEFAULTS["bit_depth"])
    if not math.isfinite(quality):
        raise CodecError("corrupt bitstream: quality is not a finite number")
    if height == 0 or width == 0 or channels not in (1, 3, 4) or bit_depth not in (8, 16):
        raise CodecError("corrupt bitstream: bad image geometry")
    if height * width > max_pixels:
        raise CodecError(
            f"image of {width}x{height} = {height * width} pixels exceeds the limit of {max_pixels} pixels "
            "(raise it with --max-pixels)"
        )
    (shape_count,) = reader.unpack("B")
    if shape_count > MAX_SHAPES:
        raise CodecError(f"corrupt bitstream: {shape_count} latent shapes (limit {MAX_SHAPES})")
    shapes = []
    for _ in range(shape_count):
        (ndim,) = reader.unpack("B")
        if not 0 < ndim <= MAX_DIMS:
            raise CodecError("corrupt bitstream: bad latent rank")
        shape = reader.uints(ndim, version)
        if math.prod(shape) > MAX_LATENT_ELEMENTS:
            raise CodecError(f"latent of shape {shape} exceeds the limit of {MAX_LATENT_ELEMENTS} elements")
        shapes.append(tuple(shape))
    return {"quality": quality, "height": height, "width": width, "channels": channels, "bit_depth": bit_depth,
            "shapes": shapes}


def _read_sections(reader: _Reader, version: int) -> list[bytes]:
    """The section lengths (from version 5 the last one is what is left before the checksum), then the sections."""
    (section_count,) = reader.unpack("B")
    if section_count > MAX_SECTIONS:
        raise CodecError(f"corrupt bitstream: {section_count} sections (limit {MAX_SECTIONS})")
    stored = section_count - 1 if version >= 5 and section_count else section_count
    lengths = list(reader.uints(stored, version))
    remaining = reader.end - reader.position
    if sum(lengths) > remaining:
        raise CodecError("truncated bitstream: sections extend past the end of the file")
    if len(lengths) < section_count:
        lengths.append(remaining - sum(lengths))
    if sum(lengths) != remaining:
        raise CodecError("corrupt bitstream: trailing bytes after the last section")
    return [reader.take(length) for length in lengths]
