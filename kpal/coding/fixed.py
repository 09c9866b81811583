"""Fixed-width payload coding (coding id 0).

Every index takes exactly ``b = bits_per_index(k)`` bits, packed MSB-first into
one continuous bit stream across rows, the last byte zero-padded
(spec/kpal.md, "Coding 0: fixed width").

Packing is vectorized without a per-pixel loop: 8 indices of ``b`` bits are
exactly ``b`` whole bytes, so the stream is a sequence of 8-index groups. A
group is assembled as one 64-bit integer (``b <= 8`` so ``8*b <= 64``) and its
low ``b`` bytes, big-endian, are the group's bytes. Work runs over bounded
chunks of groups so memory stays proportional to the chunk, not the image.
"""

from __future__ import annotations

import numpy as np

from kpal.errors import FormatError

__all__ = ["CODING_ID", "NAME", "bits_per_index", "encode", "decode", "payload_size"]

CODING_ID = 0
NAME = "fixed"

#: 8-index groups handled per chunk: 2**18 groups = 2 Mi pixels, about 20 MiB of
#: temporaries, whatever the image size.
_GROUPS_PER_CHUNK = 1 << 18


def bits_per_index(k: int) -> int:
    """Return ``b = ceil(log2 k)`` for ``k >= 2`` and 0 for ``k == 1``.

    Examples
    --------
    >>> [bits_per_index(k) for k in (1, 2, 3, 4, 5, 16, 17, 256)]
    [0, 1, 2, 2, 3, 4, 5, 8]
    """
    if not 1 <= k <= 256:
        msg = f"k={k} must be between 1 and 256"
        raise ValueError(msg)
    return (k - 1).bit_length()


def payload_size(k: int, width: int, height: int) -> int:
    """Return the payload length in bytes: ``ceil(width * height * b / 8)``."""
    return (width * height * bits_per_index(k) + 7) // 8


def _shifts(b: int) -> np.ndarray:
    # Index j of a group sits at bit offset 8*b - b*(j+1) from the group's LSB.
    return (b * np.arange(7, -1, -1)).astype(np.uint64)


def encode(labels: np.ndarray, k: int) -> bytes:
    """Pack ``labels`` (any shape, uint8, values < k) into the fixed-width stream.

    Parameters
    ----------
    labels : ndarray of uint8
        Palette indices in row-major order; every value must be < ``k``.
    k : int
        Palette size, 1..256.

    Returns
    -------
    bytes
        ``ceil(labels.size * b / 8)`` bytes.
    """
    b = bits_per_index(k)
    flat = np.ascontiguousarray(labels, dtype=np.uint8).reshape(-1)
    if b == 0:
        return b""
    if b == 8:
        return flat.tobytes()
    n = flat.size
    n_groups = -(-n // 8)
    shifts = _shifts(b)
    out = np.empty(n_groups * b, dtype=np.uint8)
    for g0 in range(0, n_groups, _GROUPS_PER_CHUNK):
        g1 = min(g0 + _GROUPS_PER_CHUNK, n_groups)
        chunk = flat[g0 * 8 : g1 * 8]
        if chunk.size < (g1 - g0) * 8:  # last group: pad with zero indices
            chunk = np.concatenate([chunk, np.zeros((g1 - g0) * 8 - chunk.size, np.uint8)])
        words = np.bitwise_or.reduce(
            chunk.reshape(-1, 8).astype(np.uint64) << shifts, axis=1
        )
        group_bytes = words.astype(">u8").view(np.uint8).reshape(-1, 8)[:, 8 - b :]
        out[g0 * b : g1 * b] = group_bytes.reshape(-1)
    return out[: (n * b + 7) // 8].tobytes()


def decode(payload: bytes, k: int, width: int, height: int) -> np.ndarray:
    """Unpack a fixed-width payload into an ``ndarray`` of shape (height, width), uint8.

    Raises
    ------
    FormatError
        If the payload length is not ``payload_size(k, width, height)``, the
        padding bits are not zero, or an index is >= k.
    """
    b = bits_per_index(k)
    n = width * height
    expected = payload_size(k, width, height)
    if len(payload) != expected:
        msg = f"payload is {len(payload)} bytes, expected {expected} for {width}x{height} at k={k}"
        raise FormatError(msg)
    data = np.frombuffer(payload, dtype=np.uint8)
    if b == 0:
        return np.zeros((height, width), dtype=np.uint8)
    if b == 8:
        labels = data.copy()
    else:
        labels = _unpack(data, b, n)
        pad_bits = expected * 8 - n * b
        if pad_bits and int(data[-1]) & ((1 << pad_bits) - 1):
            msg = f"padding bits in the last payload byte are not zero (0x{int(data[-1]):02x})"
            raise FormatError(msg)
    if k < (1 << b):
        top = int(labels.max())
        if top >= k:
            pos = int(np.argmax(labels >= k))
            msg = f"index {top} >= k={k} (first bad index at pixel {pos})"
            raise FormatError(msg)
    return labels.reshape(height, width)


def _unpack(data: np.ndarray, b: int, n: int) -> np.ndarray:
    if b == 1:
        return np.unpackbits(data, count=n)
    n_groups = -(-n // 8)
    padded = data
    if data.size < n_groups * b:
        padded = np.concatenate([data, np.zeros(n_groups * b - data.size, np.uint8)])
    shifts = _shifts(b)
    mask = np.uint64((1 << b) - 1)
    labels = np.empty(n_groups * 8, dtype=np.uint8)
    wide = np.zeros((min(_GROUPS_PER_CHUNK, n_groups), 8), dtype=np.uint8)
    for g0 in range(0, n_groups, _GROUPS_PER_CHUNK):
        g1 = min(g0 + _GROUPS_PER_CHUNK, n_groups)
        block = wide[: g1 - g0]
        block[:, 8 - b :] = padded[g0 * b : g1 * b].reshape(-1, b)
        words = block.view(">u8").reshape(-1, 1)
        labels[g0 * 8 : g1 * 8] = ((words >> shifts) & mask).astype(np.uint8).reshape(-1)
    return labels[:n]
