"""Radix payload coding (coding id 1): indices packed at log2(k) bits each.

Fixed-width packing spends ``ceil(log2 k)`` bits per index, which wastes up to
about a bit per index when k is not a power of two (+29 % at k = 5). Radix
packing reads ``m`` consecutive indices as the digits of one base-k integer
``v = d0*k**(m-1) + ... + d(m-1)`` and stores ``v`` in ``w = bit_length(k**m - 1)``
bits, so the cost per index is ``w / m``, within a fraction of a percent of
``log2 k`` (spec/kpal.md, "Coding 1: radix").

``m`` is the group size in 1..64 with ``k**m <= 2**64`` that minimises
``w / m``, the smallest such ``m`` on ties. For a power of two that is
``m = 1, w = log2 k``: the stream is then bit for bit the fixed-width one. The
last, short group of ``r = N mod m`` indices is stored in
``bit_length(k**r - 1)`` bits. Groups follow each other MSB-first with no
alignment; the last byte is zero-padded.

Both directions are vectorized over bounded chunks of groups with uint64
arithmetic (a group always fits in 64 bits by the choice of ``m``).
"""

from __future__ import annotations

from functools import cache

import numpy as np

from kpal.errors import FormatError

from . import fixed
from ._checks import packed_stream, require_below_k

__all__ = ["CODING_ID", "NAME", "group_shape", "payload_bits", "encode", "decode", "payload_size"]

CODING_ID = 1
NAME = "radix"

#: Groups per chunk: a multiple of 8 so every chunk is a whole number of bytes
#: (``8 * w`` bits), and small enough that the 64-byte-per-group bit buffers stay
#: around 16 MiB whatever the image size.
_GROUPS_PER_CHUNK = 1 << 18


@cache
def group_shape(k: int) -> tuple[int, int]:
    """Return ``(m, w)``: indices per group and bits per group for palette size ``k``.

    ``m`` minimises ``w / m`` with ``w = bit_length(k**m - 1)`` over the group
    sizes whose largest value fits in 64 bits; ties go to the smallest ``m``.
    ``k = 1`` has no information to store: ``(1, 0)``.

    Examples
    --------
    >>> [group_shape(k) for k in (2, 3, 5, 100, 256)]
    [(1, 1), (29, 46), (3, 7), (3, 20), (1, 8)]
    """
    if not 1 <= k <= 256:
        msg = f"k={k} must be between 1 and 256"
        raise ValueError(msg)
    if k == 1:
        return 1, 0
    best_m, best_w = 1, (k - 1).bit_length()
    m = 2
    while k**m <= 1 << 64:
        w = (k**m - 1).bit_length()
        if w * best_m < best_w * m:  # w/m < best_w/best_m, exactly
            best_m, best_w = m, w
        m += 1
    return best_m, best_w


def payload_bits(k: int, n: int) -> int:
    """Return the number of payload bits (before byte padding) for ``n`` indices."""
    m, w = group_shape(k)
    r = n % m
    return (n // m) * w + (k**r - 1).bit_length()


def payload_size(k: int, width: int, height: int) -> int:
    """Return the payload length in bytes for a ``width`` x ``height`` image."""
    return (payload_bits(k, width * height) + 7) // 8


def _group_values(digits: np.ndarray, k: int) -> np.ndarray:
    """Horner evaluation of each row of ``digits`` (shape (G, m)) in base ``k``."""
    values = np.zeros(digits.shape[0], dtype=np.uint64)
    base = np.uint64(k)
    for j in range(digits.shape[1]):
        values *= base
        values += digits[:, j]
    return values


def _values_to_bits(values: np.ndarray, w: int) -> np.ndarray:
    """The low ``w`` bits of each uint64, MSB first, as one flat 0/1 uint8 array."""
    as_bytes = values.astype(">u8").view(np.uint8).reshape(-1, 8)
    return np.unpackbits(as_bytes, axis=1)[:, 64 - w :].reshape(-1)


def _bits_to_values(bits: np.ndarray, w: int) -> np.ndarray:
    """Inverse of :func:`_values_to_bits`: rows of ``w`` bits to uint64 values."""
    rows = bits.reshape(-1, w)
    wide = np.zeros((rows.shape[0], 64), dtype=np.uint8)
    wide[:, 64 - w :] = rows
    return np.packbits(wide, axis=1).view(">u8").reshape(-1).astype(np.uint64)


def encode(labels: np.ndarray, k: int) -> bytes:
    """Pack ``labels`` (uint8, values < k) into the radix stream.

    Parameters
    ----------
    labels : ndarray of uint8
        Palette indices in row-major order; every value must be < ``k``.
    k : int
        Palette size, 1..256.

    Returns
    -------
    bytes
        ``payload_size(k, width, height)`` bytes.
    """
    m, w = group_shape(k)
    if m == 1:  # k = 1 or a power of two: the fixed-width stream, exactly
        return fixed.encode(labels, k)
    flat = np.ascontiguousarray(labels, dtype=np.uint8).reshape(-1)
    require_below_k(flat, k)  # a digit >= k would silently corrupt its group
    n = flat.size
    n_full = n // m
    pieces = []
    for g0 in range(0, n_full, _GROUPS_PER_CHUNK):
        g1 = min(g0 + _GROUPS_PER_CHUNK, n_full)
        digits = flat[g0 * m : g1 * m].reshape(-1, m)
        pieces.append(_values_to_bits(_group_values(digits, k), w))
    r = n - n_full * m
    if r:
        tail = flat[n_full * m :].reshape(1, r)
        pieces.append(_values_to_bits(_group_values(tail, k), (k**r - 1).bit_length()))
    if not pieces:
        return b""
    # Each full chunk is a multiple of 8 groups, so packing chunk by chunk would
    # also work; one packbits over the concatenation keeps the tail simple.
    return np.packbits(np.concatenate(pieces)).tobytes()


def decode(payload: bytes, k: int, width: int, height: int) -> np.ndarray:
    """Unpack a radix payload into an ``ndarray`` of shape (height, width), uint8.

    Raises
    ------
    FormatError
        If the payload length is not ``payload_size(k, width, height)``, the
        padding bits are not zero, or a group value is >= ``k**m`` (which is
        exactly the case where a digit would be >= k).
    """
    m, w = group_shape(k)
    if m == 1:
        return fixed.decode(payload, k, width, height)
    n = width * height
    data = packed_stream(payload, k, width, height, payload_bits(k, n))
    labels = np.empty(n, dtype=np.uint8)
    n_full = n // m
    chunk_bytes = _GROUPS_PER_CHUNK * w // 8  # whole bytes: the chunk is 8*j groups
    for g0 in range(0, n_full, _GROUPS_PER_CHUNK):
        g1 = min(g0 + _GROUPS_PER_CHUNK, n_full)
        start = (g0 // _GROUPS_PER_CHUNK) * chunk_bytes
        bits = np.unpackbits(data[start : start + chunk_bytes + 8])[: (g1 - g0) * w]
        values = _bits_to_values(bits, w)
        labels[g0 * m : g1 * m] = _split_digits(values, k, m, first_index=g0 * m).reshape(-1)
    r = n - n_full * m
    if r:
        tail_w = (k**r - 1).bit_length()
        start_bit = n_full * w
        bits = np.unpackbits(data[start_bit // 8 :])[start_bit % 8 : start_bit % 8 + tail_w]
        values = _bits_to_values(bits, tail_w)
        labels[n_full * m :] = _split_digits(values, k, r, first_index=n_full * m).reshape(-1)
    return labels.reshape(height, width)


def _split_digits(values: np.ndarray, k: int, m: int, first_index: int) -> np.ndarray:
    """Base-``k`` digits of each value, most significant first, shape (G, m).

    Raises FormatError if a value is >= k**m: its leading digit would be >= k.
    """
    limit = k**m
    if limit <= np.iinfo(np.uint64).max:
        bad = values >= np.uint64(limit)
        if bad.any():
            group = int(np.argmax(bad))
            msg = (f"radix group value {int(values[group])} >= k**m = {limit} "
                   f"(k={k}, m={m}; group starting at pixel {first_index + group * m})")
            raise FormatError(msg)
    digits = np.empty((values.size, m), dtype=np.uint8)
    rest = values.copy()
    base = np.uint64(k)
    for j in range(m - 1, -1, -1):
        digits[:, j] = rest % base
        rest //= base
    return digits
