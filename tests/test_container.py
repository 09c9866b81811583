"""Header, limits, file length and checksum (spec/kpal.md §2, §4, §8)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from kpal import coding, container
from kpal.errors import ChecksumError, FormatError, LimitError


def _header(**fields) -> container.Header:
    base = dict(coding=0, k=16, width=5, height=3, payload_length=8)
    base.update(fields)
    return container.Header.for_image(**base)


def _file(k=3, width=3, height=2) -> bytes:
    palette = np.arange(3 * k, dtype=np.uint8).reshape(k, 3)
    labels = (np.arange(width * height) % k).astype(np.uint8).reshape(height, width)
    payload = coding.get(0).encode(labels, k)
    header = container.Header.for_image(coding=0, k=k, width=width, height=height,
                                        payload_length=len(payload))
    return container.write(header, palette, payload)


def test_header_layout_is_26_big_endian_bytes():
    raw = _header().pack()
    assert len(raw) == container.HEADER_SIZE == 26
    assert raw[:9] == b"\x89KPAL\r\n\x1a\n" == container.MAGIC
    assert raw[9:] == bytes([1, 0, 4]) + struct.pack(">HIII", 16, 5, 3, 8)


def test_overhead_is_constant_and_small():
    assert container.OVERHEAD == 30 <= 64


def test_write_appends_crc32_of_everything_before():
    data = _file()
    assert zlib.crc32(data[:-4]) == struct.unpack(">I", data[-4:])[0]
    assert len(data) == 26 + 9 + 2 + 4  # 3x2 at k=3: 6 indices x 2 bits = 12 bits -> 2 bytes


def test_read_returns_header_palette_payload():
    header, palette, payload = container.read(_file())
    assert (header.k, header.width, header.height, header.bits_per_index) == (3, 3, 2, 2)
    np.testing.assert_array_equal(palette, np.arange(9, dtype=np.uint8).reshape(3, 3))
    assert len(payload) == 2


@pytest.mark.parametrize(
    ("offset", "value", "error", "match"),
    [
        (0, 0x88, FormatError, "not a .kpal file"),
        (4, ord("X"), FormatError, "not a .kpal file"),
        (9, 3, FormatError, r"unsupported version 3 \(this reader knows versions 1 and 2\)"),
        (9, 0, FormatError, "unsupported version 0"),
        (10, 9, FormatError, r"unknown payload coding 9 \(known: 0 \(fixed\)"),
        (11, 3, FormatError, "bits_per_index=3 does not match k=3 \\(expected 2\\)"),
    ],
)
def test_patched_header_fields_are_rejected(offset, value, error, match):
    data = bytearray(_file())
    data[offset] = value
    with pytest.raises(error, match=match):
        container.read(bytes(data))


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        (dict(k=0), "k=0 is outside 1..256"),
        (dict(k=257), "k=257 is outside 1..256"),
        (dict(width=0), "width=0 is outside 1..16777215"),
        (dict(height=1 << 24), "height=16777216 is outside 1..16777215"),
        (dict(width=40000, height=40000), "40000x40000 is more than 1073741824 pixels"),
    ],
)
def test_limits(fields, match):
    raw = bytearray(_header().pack())
    h = dict(k=16, width=5, height=3)
    h.update(fields)
    k = h["k"]
    struct.pack_into(">BHII", raw, 11, max(k - 1, 0).bit_length() if k else 0, k & 0xFFFF,
                     h["width"], h["height"])
    if k > 0xFFFF:
        pytest.skip("k does not fit the field")
    with pytest.raises(LimitError, match=match):
        container.read_header(bytes(raw))


def test_huge_header_on_tiny_file_fails_before_allocating():
    raw = bytearray(_header().pack())
    struct.pack_into(">II", raw, 14, 30000, 30000)
    struct.pack_into(">I", raw, 22, 30000 * 30000 // 2)
    data = bytes(raw) + bytes(48) + bytes(4)
    with pytest.raises(FormatError, match="file is truncated: 78 bytes, the header implies"):
        container.read(data)


def test_trailing_data_is_rejected():
    with pytest.raises(FormatError, match="has trailing data"):
        container.read(_file() + b"\x00")


def test_checksum_mismatch():
    data = bytearray(_file())
    data[-1] ^= 0x01
    with pytest.raises(ChecksumError, match="checksum mismatch: stored 0x"):
        container.read(bytes(data))


def test_known_codings_match_the_registry():
    assert {c.id: c.name for c in coding.CODINGS.values()}.items() <= \
        container.KNOWN_CODINGS.items()


def test_write_checks_its_inputs():
    header = _header(k=3, width=3, height=2, payload_length=2)
    with pytest.raises(ValueError, match=r"palette has shape \(2, 3\), expected \(3, 3\)"):
        container.write(header, np.zeros((2, 3), np.uint8), b"\x00\x00")
    with pytest.raises(ValueError, match="payload is 1 bytes, header says 2"):
        container.write(header, np.zeros((3, 3), np.uint8), b"\x00")


# ------------------------------------------------------------------ version 2 (spec §2.1, §3)
ICC = (Path(__file__).parent.parent / "samples" / "golden" / "srgb.icc").read_bytes()
RGBA = np.array([[0, 0, 0, 0], [255, 0, 0, 255], [0, 255, 0, 128]], np.uint8)


def _v2_file(palette=RGBA, metadata=(), width=3, height=2) -> bytes:
    k, channels = palette.shape
    labels = (np.arange(width * height) % k).astype(np.uint8).reshape(height, width)
    payload = coding.get(0).encode(labels, k)
    header = container.Header.for_image(
        coding=0, k=k, width=width, height=height, payload_length=len(payload),
        alpha=channels == 4, metadata_length=len(container.pack_metadata(metadata)))
    return container.write(header, palette, payload, metadata=metadata)


def _block(kind: bytes, data: bytes) -> bytes:
    return kind + struct.pack(">I", len(data)) + data


def _with_metadata(raw: bytes, k: int = 3) -> bytes:
    """An RGBA 3x2 file at k = 3 whose metadata area is ``raw`` (valid CRC)."""
    labels = (np.arange(6) % k).astype(np.uint8).reshape(2, 3)
    payload = coding.get(0).encode(labels, k)
    body = (struct.pack(">9sBBBHIIIBI", container.MAGIC, 2, 0, 2, k, 3, 2, len(payload), 1,
                        len(raw)) + RGBA.tobytes() + raw + payload)
    return body + struct.pack(">I", zlib.crc32(body))


def test_version_2_header_is_31_bytes_with_flags_and_metadata_length():
    header = container.Header.for_image(coding=0, k=3, width=3, height=2, payload_length=2,
                                        alpha=True, metadata_length=600)
    raw = header.pack()
    assert len(raw) == container.HEADER_SIZE_V2 == 31 == header.header_size
    assert raw[9] == 2 and raw[26] == 0x01 and raw[27:] == struct.pack(">I", 600)
    assert container.Header.unpack(raw) == header
    assert (header.channels, header.palette_size, header.metadata_offset,
            header.payload_offset, header.file_size) == (4, 12, 43, 643, 649)


def test_for_image_writes_version_1_without_alpha_or_metadata():
    plain = container.Header.for_image(coding=0, k=3, width=3, height=2, payload_length=2)
    assert plain.version == 1 and len(plain.pack()) == 26
    icc = container.Header.for_image(coding=0, k=3, width=3, height=2, payload_length=2,
                                     metadata_length=596)
    assert (icc.version, icc.flags, icc.channels) == (2, 0, 3)


def test_rgba_file_size_is_the_32_bit_formula_plus_35():
    data = _v2_file()
    assert len(data) == -(-(3 * 32 + 6 * 2) // 8) + 35 == container.OVERHEAD_V2 + 14
    header, palette, metadata, payload = container.read_parts(data)
    assert header.alpha and metadata == [] and len(payload) == 2
    np.testing.assert_array_equal(palette, RGBA)


def test_icc_block_round_trips_and_adds_its_length():
    opaque = RGBA[:, :3]
    data = _v2_file(opaque, {"iccp": ICC})
    header, palette, metadata, _ = container.read_parts(data)
    assert (header.version, header.alpha, header.metadata_length) == (2, False, 8 + len(ICC))
    assert metadata == [("iccp", ICC)]
    assert len(data) == -(-(3 * 24 + 6 * 2) // 8) + 35 + 8 + len(ICC)
    np.testing.assert_array_equal(palette, opaque)


def test_worked_example_of_the_spec():
    """spec §3.3: the 44-byte RGBA file, and the same with a skipped "xtra" block."""
    palette = np.array([[0, 0, 0, 0], [255, 0, 0, 255]], np.uint8)
    header = container.Header.for_image(coding=0, k=2, width=3, height=1, payload_length=1,
                                        alpha=True)
    assert container.write(header, palette, b"\xa0").hex() == (
        "894b50414c0d0a1a0a020001000200000003000000010000000101000000000000"
        "0000ff0000ffa0c5b992f9")
    header = container.Header.for_image(coding=0, k=2, width=3, height=1, payload_length=1,
                                        alpha=True, metadata_length=10)
    data = container.write(header, palette, b"\xa0", metadata=[("xtra", b"hi")])
    assert data.hex() == (
        "894b50414c0d0a1a0a0200010002000000030000000100000001010000000a00"
        "000000ff0000ff787472610000000268" "69a0ed373e7c")
    assert container.read_parts(data)[2] == [("xtra", b"hi")]


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"\0\0\0", "metadata is truncated at byte 43: 3 bytes left, a block needs 8"),
        (_block(b"xtra", b"ab")[:-1] + b"", r"metadata block 'xtra' at byte 43 claims length=2, "
                                            r"only 1 bytes remain in metadata_length=9"),
        (_block(b"xtra", b"") + b"\0\0", "metadata is truncated at byte 51: 2 bytes left"),
        (_block(b"x1ra", b""), r"metadata block type b'x1ra' is not four ASCII letters"),
        (_block(b"Xtra", b""), r"unknown metadata block 'Xtra' at byte 43: an upper-case first "
                               r"letter means readers must understand it"),
        (_block(b"ICCP", ICC), "unknown metadata block 'ICCP'"),
        (_block(b"iccp", ICC) * 2, r"second iccp block at byte 639 \(a file holds at most one"),
        (_block(b"iccp", ICC[:100]), "iccp block at byte 43 holds 100 bytes, less than an ICC"),
        (_block(b"iccp", ICC + b"\0"), "iccp block at byte 43: the profile says 588 bytes, "
                                       "the block holds 589"),
        (_block(b"iccp", ICC[:36] + b"xxxx" + ICC[40:]), "no ICC signature b'acsp' at offset 36"),
        (_block(b"iccp", ICC[:16] + b"GRAY" + ICC[20:]), "colour space is b'GRAY', a palette "
                                                          "needs b'RGB '"),
    ],
    ids=["short", "beyond", "tail", "type", "critical", "ICCP", "twice", "icc_short",
         "icc_size", "icc_signature", "icc_space"],
)
def test_bad_metadata_is_rejected(raw, match):
    with pytest.raises(FormatError, match=match):
        container.read(_with_metadata(raw))


def test_unknown_lower_case_blocks_are_skipped_in_any_order():
    raw = _block(b"xtra", b"abc") + _block(b"iccp", ICC) + _block(b"zZzZ", b"")
    _, palette, metadata, _ = container.read_parts(_with_metadata(raw))
    assert metadata == [("xtra", b"abc"), ("iccp", ICC), ("zZzZ", b"")]
    np.testing.assert_array_equal(palette, RGBA)


@pytest.mark.parametrize(
    ("flags", "metadata_length", "error", "match"),
    [
        (0x02, 0, FormatError, r"flags=0x02 has reserved bits set \(0x02\)"),
        (0x81, 0, FormatError, r"flags=0x81 has reserved bits set \(0x80\)"),
        (0x01, (1 << 24) + 1, LimitError, "metadata_length=16777217 is over the limit of "
                                          "16777216"),
    ],
)
def test_version_2_fields_are_checked(flags, metadata_length, error, match):
    raw = bytearray(_v2_file())
    struct.pack_into(">BI", raw, 26, flags, metadata_length)
    with pytest.raises(error, match=match):
        container.read(bytes(raw))


def test_metadata_length_beyond_the_file_fails_before_reading_it():
    raw = bytearray(_v2_file())
    struct.pack_into(">I", raw, 27, 1 << 24)
    with pytest.raises(FormatError, match="file is truncated: 49 bytes, the header implies "
                                          "16777265"):
        container.read(bytes(raw))


def test_truncated_version_2_header():
    with pytest.raises(FormatError, match=r"truncated header: 28 of 31 bytes \(version 2\)"):
        container.read_header(_v2_file()[:28])


def test_version_2_without_alpha_or_metadata_is_read():
    """Encoders must not write it (spec §2.1), but it is valid."""
    v1 = _file()
    body = v1[:9] + b"\x02" + v1[10:26] + b"\0" + bytes(4) + v1[26:-4]
    data = body + struct.pack(">I", zlib.crc32(body))
    header, palette, payload = container.read(data)
    assert (header.version, header.alpha) == (2, False)
    assert bytes(payload) == bytes(container.read(v1)[2])


def test_checksum_covers_the_metadata():
    data = bytearray(_v2_file(RGBA, {"iccp": ICC}))
    data[43 + 8 + 100] ^= 0x01  # a byte of the profile, outside its checked fields
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        container.read(bytes(data))


def test_write_refuses_what_readers_would_refuse():
    header = container.Header.for_image(coding=0, k=3, width=3, height=2, payload_length=2,
                                        alpha=True)
    with pytest.raises(ValueError, match=r"palette has shape \(3, 3\), expected \(3, 4\)"):
        container.write(header, RGBA[:, :3], b"\0\0")
    opaque = RGBA.copy()
    opaque[:, 3] = 255
    with pytest.raises(ValueError, match="every palette entry has alpha 255"):
        container.write(header, opaque, b"\0\0")
    with pytest.raises(ValueError, match="metadata is 8 bytes, header says 0"):
        container.write(header, RGBA, b"\0\0", metadata={"xtra": b""})
    header = container.Header.for_image(coding=0, k=3, width=3, height=2, payload_length=2,
                                        alpha=True, metadata_length=8)
    with pytest.raises(FormatError, match="unknown metadata block 'Xtra'"):
        container.write(header, RGBA, b"\0\0", metadata={"Xtra": b""})
    with pytest.raises(FormatError, match="not four ASCII letters"):
        container.pack_metadata({"icc": b""})
