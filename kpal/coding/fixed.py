"""Fixed-width payload coding (coding id 0).

Every index takes exactly ``b = bits_per_index(k)`` bits, packed MSB-first into
one continuous bit stream across rows, the last byte zero-padded
(spec/kpal.md, "Coding 0: fixed width").

Packing is vectorized without a per-pixel loop: 8 indices of ``b`` bits are
exactly ``b`` whole bytes, so the stream is a sequence of 8-index groups, and
index ``j`` of every group sits at the same place: it starts in byte
``j*b // 8`` of its group at bit offset ``j*b % 8`` and spans at most two
bytes. Each of the 8 positions is one numpy pass over all groups through a
16-bit window. Widths 1, 2 and 4 never straddle a byte and take shortcuts.
Temporaries are bounded by chunks of groups; the only full-size arrays are the
indices and the payload themselves.
"""

from __future__ import annotations

import numpy as np

from kpal.errors import FormatError

from ._checks import packed_stream

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
    if b == 1:
        return np.packbits(flat).tobytes()
    n_groups = -(-n // 8)
    padded = np.zeros(n_groups * 8, dtype=np.uint8)
    padded[:n] = flat
    groups = padded.reshape(n_groups, 8)
    # One extra column catches the low byte of a window that starts in the group's last byte.
    out = np.zeros((n_groups, b + 1), dtype=np.uint8)
    for g0 in range(0, n_groups, _GROUPS_PER_CHUNK):
        g1 = min(g0 + _GROUPS_PER_CHUNK, n_groups)
        for j in range(8):
            first, offset = divmod(j * b, 8)
            window = groups[g0:g1, j].astype(np.uint16)
            window <<= np.uint16(16 - b - offset)
            out[g0:g1, first] |= (window >> 8).astype(np.uint8)
            out[g0:g1, first + 1] |= window.astype(np.uint8)
    return out[:, :b].reshape(-1)[: (n * b + 7) // 8].tobytes()


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
    data = packed_stream(payload, k, width, height, n * b)
    if b == 0:
        return np.zeros((height, width), dtype=np.uint8)
    labels = data.copy() if b == 8 else _unpack(data, b, n)
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
    if b in (2, 4):  # indices never straddle a byte: shift whole bytes
        per_byte = 8 // b
        shifts = np.arange(8 - b, -1, -b, dtype=np.uint8)
        labels = np.empty((data.size, per_byte), dtype=np.uint8)
        mask = np.uint8((1 << b) - 1)
        for j, shift in enumerate(shifts):
            np.bitwise_and(data >> shift, mask, out=labels[:, j])
        return labels.reshape(-1)[:n]
    return _unpack_groups(data, b, n)


def _unpack_groups(data: np.ndarray, b: int, n: int) -> np.ndarray:
    # Index j of an 8-index group starts at bit offset j*b % 8 of byte j*b // 8
    # of its group's b bytes and spans at most two bytes. All in uint8: shifting
    # left drops the bits of earlier indices, shifting right those of later ones.
    n_groups = -(-n // 8)
    padded = np.zeros(n_groups * b + 1, dtype=np.uint8)  # +1: the second byte may peek past
    padded[: data.size] = data
    labels = np.empty((n_groups, 8), dtype=np.uint8)
    part = np.empty(min(_GROUPS_PER_CHUNK, n_groups), dtype=np.uint8)
    for g0 in range(0, n_groups, _GROUPS_PER_CHUNK):
        count = min(_GROUPS_PER_CHUNK, n_groups - g0)
        cols = padded[g0 * b : (g0 + count) * b + 1]
        tmp = part[:count]
        for j in range(8):
            first, offset = divmod(j * b, 8)
            out = labels[g0 : g0 + count, j]
            np.left_shift(cols[first : first + count * b : b], offset, out=tmp)
            np.right_shift(tmp, 8 - b, out=out)
            if offset + b > 8:  # the low bits come from the next byte
                np.right_shift(cols[first + 1 : first + 1 + count * b : b], 16 - b - offset,
                               out=tmp)
                out |= tmp
    return labels.reshape(-1)[:n]
