"""Header, limits, file length and checksum (spec/kpal.md §2, §4, §8)."""

from __future__ import annotations

import struct
import zlib

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
        (9, 2, FormatError, "unsupported version 2"),
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
