"""The second stream: exact values of symbols that fell outside their table, as zigzag LEB128 varints."""
from __future__ import annotations

import numpy as np

from codec.errors import CodecError

_MAX_VARINT_BYTES = 5
MAX_ESCAPE = 2**31 - 1  # escape values lie in -MAX_ESCAPE..MAX_ESCAPE (a symmetric int32 range)


def encode_escapes(values: np.ndarray) -> bytes:
    """Zigzag LEB128 of each value; a value the decoder would refuse (|v| > MAX_ESCAPE) is refused here too."""
    values = np.asarray(values).astype(np.int64)
    if values.size and (int(values.min()) < -MAX_ESCAPE or int(values.max()) > MAX_ESCAPE):  # no abs: INT64_MIN
        raise CodecError(f"a latent value is outside the codable range +-{MAX_ESCAPE}: the input cannot be coded")
    out = bytearray()
    for value in values.astype(np.int64).tolist():
        zigzag = (value << 1) if value >= 0 else ((-value << 1) - 1)
        while True:
            byte = zigzag & 0x7F
            zigzag >>= 7
            if zigzag:
                out.append(byte | 0x80)
            else:
                out.append(byte)
                break
    return bytes(out)


class EscapeReader:
    """Reads escape values a few at a time (a context model decodes its passes one after another)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def read(self, count: int) -> np.ndarray:
        data = self.data
        values = np.empty(count, dtype=np.int64)
        position = self.position
        for index in range(count):
            zigzag = 0
            for shift in range(0, 7 * _MAX_VARINT_BYTES, 7):
                if position >= len(data):
                    raise CodecError("corrupt bitstream: escape stream ends early")
                byte = data[position]
                position += 1
                zigzag |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    break
            else:
                raise CodecError("corrupt bitstream: escape value too long")
            values[index] = (zigzag >> 1) if not zigzag & 1 else -((zigzag + 1) >> 1)
        self.position = position
        if np.any(np.abs(values) > MAX_ESCAPE):
            raise CodecError("corrupt bitstream: escape value out of range")
        return values

    def finish(self) -> None:
        if self.position != len(self.data):
            raise CodecError("corrupt bitstream: trailing bytes in escape stream")


def decode_escapes(data: bytes, count: int) -> np.ndarray:
    """All `count` escape values of `data`, which must hold exactly those."""
    reader = EscapeReader(data)
    values = reader.read(count)
    reader.finish()
    return values
