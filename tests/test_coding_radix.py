"""Radix payload coding (coding id 1): layout, bounds, round trips, corruption."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpal.coding import fixed, get, radix
from kpal.errors import FormatError

ALL_K = range(2, 257)


def test_registered_under_id_1():
    assert get(1).name == "radix"
    assert get("radix").id == 1


@pytest.mark.parametrize(
    ("k", "shape"),
    [(2, (1, 1)), (3, (29, 46)), (5, (3, 7)), (100, (3, 20)), (129, (9, 64)), (256, (1, 8))],
)
def test_group_shape_examples(k, shape):
    assert radix.group_shape(k) == shape


@pytest.mark.parametrize("k", ALL_K)
def test_group_fits_64_bits_and_within_two_percent_of_log2_k(k):
    m, w = radix.group_shape(k)
    assert k**m <= 2**64
    assert w == (k**m - 1).bit_length() <= 64
    assert w / m <= math.log2(k) * 1.02


def test_payload_within_two_percent_of_log2_bound_for_a_real_image_size():
    n = 512 * 512
    for k in ALL_K:
        bits = radix.payload_size(k, 512, 512) * 8
        assert bits <= n * math.log2(k) * 1.02, k


def test_known_bytes_k3():
    # 29 digits of base 3 in 46 bits, MSB first: 0...01 is value 1, then 2 padding bits.
    labels = np.zeros((1, 29), np.uint8)
    labels[0, -1] = 1
    assert radix.encode(labels, 3) == bytes([0, 0, 0, 0, 0, 0b100])


def test_known_bytes_k5_with_short_tail():
    # Group (1, 2, 3) -> 1*25 + 2*5 + 3 = 38 in 7 bits; tail (4,) -> 4 in 3 bits.
    labels = np.array([[1, 2, 3, 4]], np.uint8)
    bits = "0100110" + "100"
    expected = int(bits.ljust(16, "0"), 2).to_bytes(2, "big")
    assert radix.encode(labels, 5) == expected
    assert radix.payload_size(5, 4, 1) == 2


@pytest.mark.parametrize("k", [1, 2, 4, 16, 64, 128, 256])
def test_powers_of_two_equal_fixed_width(k):
    labels = np.random.default_rng(k).integers(0, k, (7, 9), dtype=np.uint8)
    assert radix.encode(labels, k) == fixed.encode(labels, k)


@pytest.mark.parametrize("k", ALL_K)
def test_round_trip_every_k_odd_sizes(k):
    rng = np.random.default_rng(k)
    for height, width in ((1, 1), (3, 7), (13, 11)):
        labels = rng.integers(0, k, (height, width), dtype=np.uint8)
        labels.flat[0] = k - 1  # the largest digit is always exercised
        payload = radix.encode(labels, k)
        assert len(payload) == radix.payload_size(k, width, height)
        decoded = radix.decode(payload, k, width, height)
        assert decoded.dtype == np.uint8
        assert decoded.shape == (height, width)
        np.testing.assert_array_equal(decoded, labels)


def test_round_trip_spanning_several_chunks(monkeypatch):
    monkeypatch.setattr(radix, "_GROUPS_PER_CHUNK", 16)
    labels = np.random.default_rng(0).integers(0, 7, (37, 41), dtype=np.uint8)
    payload = radix.encode(labels, 7)
    np.testing.assert_array_equal(radix.decode(payload, 7, 41, 37), labels)


def test_encode_rejects_label_at_least_k():
    with pytest.raises(ValueError, match="label 7 >= k=7"):
        radix.encode(np.array([[0, 7]], np.uint8), 7)


def test_k1_is_empty():
    assert radix.encode(np.zeros((3, 5), np.uint8), 1) == b""
    np.testing.assert_array_equal(radix.decode(b"", 1, 5, 3), np.zeros((3, 5), np.uint8))


@pytest.mark.parametrize("cut", [1, 5])
def test_truncated_payload_raises(cut):
    labels = np.random.default_rng(1).integers(0, 100, (10, 10), dtype=np.uint8)
    payload = radix.encode(labels, 100)
    with pytest.raises(FormatError, match="payload is .* bytes, expected"):
        radix.decode(payload[:-cut], 100, 10, 10)
    with pytest.raises(FormatError, match="expected"):
        radix.decode(payload + b"\0", 100, 10, 10)


def test_nonzero_padding_raises():
    payload = bytearray(radix.encode(np.array([[1, 2, 3, 4]], np.uint8), 5))
    payload[-1] |= 1
    with pytest.raises(FormatError, match="padding bits"):
        radix.decode(bytes(payload), 5, 4, 1)


def test_group_value_out_of_range_raises():
    # k = 5: a 7-bit group holds up to 127, but only values < 125 are valid.
    bits = "1111111" + "000"  # group value 127 then tail digit 0
    payload = int(bits.ljust(16, "0"), 2).to_bytes(2, "big")
    with pytest.raises(FormatError, match=r"group value 127 >= k\*\*m = 125"):
        radix.decode(payload, 5, 4, 1)


def test_tail_digit_out_of_range_raises():
    bits = "0000000" + "111"  # tail digit 7 >= 5
    payload = int(bits.ljust(16, "0"), 2).to_bytes(2, "big")
    with pytest.raises(FormatError, match=r"group value 7 >= k\*\*m = 5"):
        radix.decode(payload, 5, 4, 1)


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(1, 256),
    width=st.integers(1, 40),
    height=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_round_trip(k, width, height, seed):
    labels = np.random.default_rng(seed).integers(0, k, (height, width), dtype=np.uint8)
    payload = radix.encode(labels, k)
    assert len(payload) == radix.payload_size(k, width, height)
    np.testing.assert_array_equal(radix.decode(payload, k, width, height), labels)


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(3, 255).filter(lambda k: k & (k - 1)),
    seed=st.integers(0, 2**32 - 1),
    flip=st.integers(0, 10**6),
)
def test_property_corruption_never_gives_wrong_labels_silently(k, seed, flip):
    labels = np.random.default_rng(seed).integers(0, k, (9, 11), dtype=np.uint8)
    payload = bytearray(radix.encode(labels, k))
    bit = flip % (len(payload) * 8)
    payload[bit // 8] ^= 0x80 >> (bit % 8)
    # A flipped bit may still decode (a different valid group value): radix has no
    # checksum of its own, the container's CRC catches that. It must either raise
    # FormatError or return different labels of the right shape, never crash.
    try:
        decoded = radix.decode(bytes(payload), k, 11, 9)
    except FormatError:
        return
    assert decoded.shape == (9, 11)
    assert int(decoded.max()) < k
    assert not np.array_equal(decoded, labels)
