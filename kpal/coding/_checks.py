"""Checks the payload codings share, each written once with one wording of its message.

Encoders check the labels they are given (:func:`image_labels`,
:func:`require_below_k`); decoders reject a payload before decoding it: the
empty payload of a one-colour image (:func:`one_colour`), the length and
zero padding of a bit-packed stream (:func:`packed_stream`, spec/kpal.md
§5-6) and a header field outside its range (:func:`require_between`).
"""

from __future__ import annotations

import numpy as np

from kpal.errors import FormatError

__all__ = ["image_labels", "one_colour", "packed_stream", "require_below_k", "require_between"]


def image_labels(labels: np.ndarray) -> np.ndarray:
    """``labels`` as uint8 of shape (height, width); ValueError if it has no pixels."""
    labels = np.asarray(labels, dtype=np.uint8)
    height, width = labels.shape
    if labels.size == 0:
        msg = f"cannot code a {width}x{height} image: it has no pixels"
        raise ValueError(msg)
    return labels


def require_below_k(labels: np.ndarray, k: int) -> None:
    """Raise ValueError if an index is >= k: it would corrupt the payload silently."""
    if labels.size and int(labels.max()) >= k:
        msg = f"label {int(labels.max())} >= k={k}"
        raise ValueError(msg)


def one_colour(payload: bytes, coding: str, width: int, height: int) -> np.ndarray:
    """The all-zero labels of a k = 1 image, whose ``coding`` payload must be empty."""
    if payload:
        msg = f"{coding} payload must be empty for k=1, got {len(payload)} bytes"
        raise FormatError(msg)
    return np.zeros((height, width), dtype=np.uint8)


def packed_stream(payload: bytes, k: int, width: int, height: int, n_bits: int) -> np.ndarray:
    """The bytes of a stream of ``n_bits`` bits packed MSB first, as uint8.

    Raises FormatError unless the payload is exactly ``ceil(n_bits / 8)`` bytes
    and the padding bits of its last byte are zero.
    """
    expected = (n_bits + 7) // 8
    if len(payload) != expected:
        msg = f"payload is {len(payload)} bytes, expected {expected} for {width}x{height} at k={k}"
        raise FormatError(msg)
    data = np.frombuffer(payload, dtype=np.uint8)
    pad_bits = expected * 8 - n_bits
    if pad_bits and int(data[-1]) & ((1 << pad_bits) - 1):
        msg = f"padding bits in the last payload byte are not zero (0x{int(data[-1]):02x})"
        raise FormatError(msg)
    return data


def require_between(field: str, value: int, low: int, high: int,
                    error: type[Exception] = FormatError) -> None:
    """Raise ``error`` unless ``low <= value <= high``; ``field`` names the payload and field."""
    if not low <= value <= high:
        msg = f"{field}={value} must be between {low} and {high}"
        raise error(msg)
