"""The checks every payload coding shares: same rule, same message in each coding."""

from __future__ import annotations

import re

import numpy as np
import pytest

from kpal import coding as codings
from kpal.errors import FormatError


@pytest.mark.parametrize("name", ["entropy", "context"])
def test_one_colour_payload_must_be_empty(name):
    chosen = codings.get(name)
    assert chosen.encode(np.zeros((3, 4), np.uint8), 1) == b""
    np.testing.assert_array_equal(chosen.decode(b"", 1, 4, 3), np.zeros((3, 4), np.uint8))
    with pytest.raises(FormatError, match=f"^{name} payload must be empty for k=1, got 2 bytes$"):
        chosen.decode(b"\0\0", 1, 4, 3)


@pytest.mark.parametrize("name", ["entropy", "context"])
@pytest.mark.parametrize("shape", [(0, 3), (4, 0)])
def test_image_codings_reject_no_pixels(name, shape):
    height, width = shape
    message = f"^cannot code a {width}x{height} image: it has no pixels$"
    for k in (1, 5):  # also k = 1, whose payload would be empty anyway
        with pytest.raises(ValueError, match=message):
            codings.get(name).encode(np.zeros(shape, np.uint8), k)


@pytest.mark.parametrize("name", ["radix", "entropy", "context"])
def test_encoders_reject_an_index_at_or_above_k(name):
    labels = np.array([[0, 1, 2], [4, 1, 3]], np.uint8)
    with pytest.raises(ValueError, match="^label 4 >= k=3$"):
        codings.get(name).encode(labels, 3)


@pytest.mark.parametrize(("name", "k"), [("fixed", 5), ("fixed", 16), ("radix", 5), ("radix", 3)])
def test_packed_codings_check_length_then_padding(name, k):
    chosen = codings.get(name)
    labels = np.arange(7 * 3, dtype=np.uint8).reshape(3, 7) % k
    payload = chosen.encode(labels, k)
    size = chosen.payload_size(k, 7, 3)
    assert len(payload) == size
    for wrong in (payload[:-1], payload + b"\0"):
        message = f"^payload is {len(wrong)} bytes, expected {size} for 7x3 at k={k}$"
        with pytest.raises(FormatError, match=message):
            chosen.decode(wrong, k, 7, 3)
    padded = payload[:-1] + bytes([payload[-1] | 1])
    assert padded != payload  # 21 indices never end on a byte at these k: the last bit pads
    message = f"padding bits in the last payload byte are not zero (0x{padded[-1]:02x})"
    with pytest.raises(FormatError, match=f"^{re.escape(message)}$"):
        chosen.decode(padded, k, 7, 3)


@pytest.mark.parametrize(("name", "payload", "message"), [
    ("entropy", b"\x01\x00\x01", "entropy payload tile_log2=1 must be between 2 and 15"),
    ("entropy", b"\x10\x00\x01", "entropy payload tile_log2=16 must be between 2 and 15"),
    ("context", b"\x00\x0c\x07" + bytes(range(5)) + b"\0" * 4,
     "context payload count_limit=0 must be between 1 and 255"),
    ("context", b"\xff\x15\x07" + bytes(range(5)) + b"\0" * 4,
     "context payload mixer_shift=21 must be between 8 and 20"),
    ("context", b"\xff\x0c\x10" + bytes(range(5)) + b"\0" * 4,
     "context payload apm_rate=16 must be between 1 and 15"),
])
def test_header_fields_out_of_range(name, payload, message):
    with pytest.raises(FormatError, match=f"^{message}$"):
        codings.get(name).decode(payload, 5, 4, 3)
