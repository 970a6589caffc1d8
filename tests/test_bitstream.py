"""Container: round trip, and a clear CodecError for truncated, corrupt, foreign or oversized input."""
from __future__ import annotations

import struct
import zlib

import pytest

from codec import bitstream
from codec.errors import CodecError


def _container(**changes) -> bitstream.Container:
    fields = dict(kind="image", model="ms-hyperprior", weights_digest=bytes(range(8)), quality=2.5, height=512,
                  width=768, channels=3, bit_depth=8, shapes=[(1, 192, 32, 48), (1, 128, 8, 12)],
                  sections=[b"abcd" * 10, b"", b"xyz1", b"\x07"])
    fields.update(changes)
    return bitstream.Container(**fields)


def test_round_trip_keeps_every_field():
    original = _container()
    parsed = bitstream.parse(bitstream.write(original))
    assert parsed == original


def test_header_overhead_is_small_and_counted():
    container = _container()
    assert container.header_bytes == len(bitstream.write(container)) - sum(map(len, container.sections))
    assert container.header_bytes < 100


def test_every_truncation_is_refused():
    data = bitstream.write(_container())
    for length in range(len(data)):
        with pytest.raises(CodecError):
            bitstream.parse(data[:length])


def test_every_single_bit_flip_is_refused():
    data = bytearray(bitstream.write(_container()))
    for position in range(len(data)):
        for bit in (0, 7):
            damaged = bytearray(data)
            damaged[position] ^= 1 << bit
            with pytest.raises(CodecError):
                bitstream.parse(bytes(damaged))


def test_foreign_and_empty_input():
    for data in (b"", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, b"LCDC"):
        with pytest.raises(CodecError):
            bitstream.parse(data)


def test_future_version_is_named():
    data = bytearray(bitstream.write(_container()))
    data[4] = 9
    with pytest.raises(CodecError, match="version 9"):
        bitstream.parse(bytes(data))


def test_absurd_size_is_refused_before_allocation_with_the_limit_named():
    data = bitstream.write(_container(height=1_000_000, width=1_000_000))
    with pytest.raises(CodecError, match="limit of"):
        bitstream.parse(data)
    assert bitstream.parse(data, max_pixels=10**12).height == 1_000_000


def test_huge_section_length_is_refused_without_reading():
    data = bytearray(bitstream.write(_container(sections=[b"ab", b"c"])))  # the last length is implied
    length_at = len(data) - 4 - 3 - 1
    assert data[length_at] == 2
    data[length_at : length_at + 1] = bitstream.varint(2**32 - 1)
    with pytest.raises(CodecError, match="truncated"):
        bitstream.parse(bytes(data))
    data[length_at : length_at + 5] = b"\xff\xff\xff\xff\x7f"  # a varint beyond 32 bits
    with pytest.raises(CodecError, match="longer than 32 bits"):
        bitstream.parse(bytes(data))


def test_varint_round_trips_at_the_byte_boundaries():
    for value in (0, 1, 127, 128, 16383, 16384, 2**32 - 1):
        reader = bitstream._Reader(bitstream.varint(value) + b"\0" * 4)
        assert reader.varint() == value
    with pytest.raises(ValueError):
        bitstream.varint(2**32)


def test_huge_latent_shape_is_refused():
    data = bitstream.serialize(_container(shapes=[(1, 2**16, 2**16, 2**16)]))
    with pytest.raises(CodecError, match="exceeds the limit"):
        bitstream.parse(data)
    with pytest.raises(ValueError, match="could not be read back"):  # the writer never writes what cannot be read
        bitstream.write(_container(shapes=[(1, 2**16, 2**16, 2**16)]))


def test_the_writer_refuses_what_the_parser_would():
    for fields in ({"quality": float("nan")}, {"height": 0}, {"channels": 2}, {"shapes": [()]}):
        with pytest.raises(ValueError, match="could not be read back"):
            bitstream.write(_container(**fields))


VERSION_1_BYTES = (
    "4c43444301010d6d732d68797065727072696f7200010203040506070000204000020000000300000308020401000000c000"
    "00002000000030000000040100000080000000080000000c0000000428000000000000000400000001000000616263646162"
    "6364616263646162636461626364616263646162636461626364616263646162636478797a3107bb72bb70"
)


VERSION_2_BYTES = (
    "4c43444302010d6d732d68797065727072696f72000102030405060700002040800480060308020401c00120300401800108"
    "0c04280004016162636461626364616263646162636461626364616263646162636461626364616263646162636478797a3107b0b1a5e1"
)


def _feature_container(count: int = 1) -> bitstream.Container:
    return bitstream.feature_container("es-r20-mid", bytes(range(8)), count, [b"\x05" * 150, b""])


VERSION_3_BYTES = "4c43444303" + VERSION_2_BYTES[10:-8] + "a1141094"
VERSION_4_BYTES = "4c43444304" + VERSION_2_BYTES[10:-8] + "97696907"


def test_container_bytes_are_pinned():
    """Format version 5 must not drift: a change here needs a version bump and a reader for the old layout.
    (Version 5 stores no length for the last section; image fields are laid out as in versions 2-4.)"""
    assert bitstream.write(_container()).hex() == (
        "4c43444305010d6d732d68797065727072696f72000102030405060700002040800480060308020401c00120300401800108"
        "0c042800046162636461626364616263646162636461626364616263646162636461626364616263646162636478797a3107"
        "aa620199"
    )
    feature = bitstream.write(_feature_container())
    assert feature[:31].hex() == "4c43444305020a65732d7232302d6d69640001020304050607010296010505"
    assert len(feature) - 150 == 33  # 8 bytes fewer than version 4: no height, width or shapes, one length fewer


@pytest.mark.parametrize("old", [VERSION_1_BYTES, VERSION_2_BYTES, VERSION_3_BYTES, VERSION_4_BYTES])
def test_older_versions_still_decode(old: str):
    assert bitstream.parse(bytes.fromhex(old)) == _container()


def test_a_version_4_feature_container_still_decodes_with_its_geometry():
    body = bytes.fromhex("4c43444304020a65732d7232302d6d69640001020304050607202001040118080802960100") + b"\x05" * 150
    parsed = bitstream.parse(body + struct.pack("<I", zlib.crc32(body)))
    assert (parsed.kind, parsed.count, parsed.height, parsed.shapes) == ("feature", 1, 32, [(1, 24, 8, 8)])
    assert parsed.sections == [b"\x05" * 150, b""]


def test_a_feature_container_round_trips_and_refuses_image_fields_it_cannot_carry():
    for count in (1, 3, 200):
        assert bitstream.parse(bitstream.write(_feature_container(count))) == _feature_container(count)
    with pytest.raises(ValueError, match="feature container"):
        bitstream.write(_container(kind="feature", quality=2.5))
    with pytest.raises(ValueError, match="feature container"):
        bitstream.write(_container(kind="feature", quality=0.0))  # height, width and shapes are the model's
    with pytest.raises(ValueError, match="images"):
        bitstream.write(_feature_container(0))


def test_a_zero_image_feature_container_is_refused():
    data = bytearray(bitstream.write(_feature_container()))
    count_at = 4 + 3 + len("es-r20-mid") + 8
    assert data[count_at] == 1
    data[count_at] = 0
    data[-4:] = struct.pack("<I", zlib.crc32(bytes(data[:-4])))
    with pytest.raises(CodecError, match="0 images"):
        bitstream.parse(bytes(data))


def test_a_container_with_one_or_no_section_round_trips():
    for sections in ([], [b""], [b"xyz"]):
        assert bitstream.parse(bitstream.write(_container(sections=sections))).sections == sections
