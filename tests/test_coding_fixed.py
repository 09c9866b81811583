"""Fixed-width index packing (spec/kpal.md §5)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpal.coding import fixed
from kpal.errors import FormatError

K_VALUES = [1, 2, 3, 4, 5, 8, 9, 16, 17, 31, 64, 100, 128, 129, 200, 255, 256]
SHAPES = [(1, 1), (1, 7), (3, 5), (7, 13), (16, 16), (33, 9)]


@pytest.mark.parametrize(
    ("k", "b"), [(1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (8, 3), (9, 4), (16, 4), (17, 5),
                 (128, 7), (129, 8), (256, 8)])
def test_bits_per_index(k, b):
    assert fixed.bits_per_index(k) == b


@pytest.mark.parametrize("k", [0, 257, -1])
def test_bits_per_index_rejects(k):
    with pytest.raises(ValueError, match=f"k={k} must be between 1 and 256"):
        fixed.bits_per_index(k)


@pytest.mark.parametrize("k", K_VALUES)
@pytest.mark.parametrize(("height", "width"), SHAPES)
def test_round_trip_and_exact_size(k, height, width):
    rng = np.random.default_rng(k * 1000 + width)
    labels = rng.integers(0, k, size=(height, width), dtype=np.uint8)
    payload = fixed.encode(labels, k)
    assert len(payload) == -(-height * width * fixed.bits_per_index(k) // 8)
    np.testing.assert_array_equal(fixed.decode(payload, k, width, height), labels)


def test_bit_layout_is_msb_first_without_row_padding():
    # spec §5 diagram: 1 2 3 4 at b=3 -> 001 010 011 100 0000 -> 29 c0
    assert fixed.encode(np.array([[1, 2], [3, 4]], np.uint8), 5) == bytes([0x29, 0xC0])
    # b=2, rows of 3 do not restart on a byte boundary: 01 10 00 | 01 10 00 | pad
    assert fixed.encode(np.array([[1, 2, 0], [1, 2, 0]], np.uint8), 3) == bytes(
        [0b01100001, 0b10000000])
    # b=7 straddles bytes: 1111111 0000001 -> 11111110 000001|00
    assert fixed.encode(np.array([[127, 1]], np.uint8), 128) == bytes([0xFE, 0x04])


def test_k1_has_empty_payload():
    assert fixed.encode(np.zeros((3, 4), np.uint8), 1) == b""
    np.testing.assert_array_equal(fixed.decode(b"", 1, 4, 3), np.zeros((3, 4), np.uint8))


def test_large_image_crosses_chunks():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 100, size=(700, 3001), dtype=np.uint8)  # > one chunk of groups
    payload = fixed.encode(labels, 100)
    np.testing.assert_array_equal(fixed.decode(payload, 100, 3001, 700), labels)


def test_decode_rejects_wrong_length():
    with pytest.raises(FormatError, match="payload is 2 bytes, expected 3 for 3x2 at k=16"):
        fixed.decode(b"\x00\x00", 16, 3, 2)


def test_decode_rejects_index_out_of_range():
    # k=5 (b=3): index 7 is representable but not a palette entry
    payload = fixed.encode(np.array([[1, 4]], np.uint8), 5)
    bad = bytes([payload[0] | 0b00000111 << 2]) + payload[1:]
    with pytest.raises(FormatError, match=r"index 7 >= k=5 \(first bad index at pixel 1\)"):
        fixed.decode(bad, 5, 2, 1)


def test_decode_rejects_nonzero_padding():
    payload = bytearray(fixed.encode(np.array([[1, 2, 3]], np.uint8), 4))  # 6 bits + 2 pad
    payload[-1] |= 1
    with pytest.raises(FormatError, match="padding bits in the last payload byte are not zero"):
        fixed.decode(bytes(payload), 4, 3, 1)


@settings(max_examples=200, deadline=None)
@given(k=st.integers(1, 256), width=st.integers(1, 40), height=st.integers(1, 6),
       seed=st.integers(0, 2**32 - 1))
def test_property_round_trip(k, width, height, seed):
    labels = np.random.default_rng(seed).integers(0, k, size=(height, width), dtype=np.uint8)
    payload = fixed.encode(labels, k)
    assert len(payload) == fixed.payload_size(k, width, height)
    np.testing.assert_array_equal(fixed.decode(payload, k, width, height), labels)
