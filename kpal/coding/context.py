"""Context-mixing payload (coding id 3, "context"): the smallest coding, decoded pixel by pixel.

Every index ``x`` is coded from its already-decoded neighbours (spec/kpal.md
§12): up to three binary flags "x is the left / above / above-right
neighbour's index", then, when none holds, the ``b`` bits of ``x`` down a
binary tree. Every binary decision is predicted by six adaptive models (five
hashed contexts of neighbour indices, one small table of which neighbours
share the bits decided so far), mixed in the logistic domain by weights
learned per decision slot, refined by an adaptive probability map, and coded
by a 32-bit binary arithmetic coder. Everything is integer arithmetic, so
any implementation writes the same bytes.

The encoder renumbers the palette for coding (the payload stores the order):
a path through the colours that follows the image's transitions, so that
neighbouring colours share their leading bits and the tree's first decisions
are easy.

The price of the smaller size is order: each pixel needs the model as the
previous pixel left it, so decoding is a sequential loop, which only the
compiled kernel (``kpal[fast]``, numba) runs at photo sizes. Without it this
module codes images up to :data:`PLAIN_MAX_PIXELS` pixels in plain Python
(the golden files, the tests) and refuses larger ones with a message that
says what is needed; the spec makes coding 3 optional for readers.

Work is bounded by the pixels: at most ``3 + b`` decisions per pixel, and the
model's tables are sized from the pixel count (``table_bits``), never from a
payload field.
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from types import ModuleType

import numpy as np

from kpal import _jit
from kpal.errors import FormatError, KpalError

from . import _context_kernel
from ._checks import image_labels, one_colour, require_below_k, require_between
from .fixed import bits_per_index

__all__ = ["CODING_ID", "NAME", "PLAIN_MAX_PIXELS", "READER_NEEDS", "check_encodable", "decode",
           "encode",
           "palette_order", "payload_size", "table_bits"]

CODING_ID = 3
NAME = "context"

#: What a reader needs for coding 3, for ``kpal info`` and error messages.
READER_NEEDS = ("coding 3 (context) is optional for readers: it needs a sequential "
                "context-mixing decoder; kpal decodes it with the compiled kernels "
                "(pip install 'kpal[fast]', numba) above "
                "16384 pixels")

#: Largest image the plain-Python kernel codes (at 16384 pixels, 0.5-1.5 s for a photo and
#: 3 s for noise at k = 256 on a quiet 2-core machine; about twice that under load);
#: above it the compiled kernel is required.
PLAIN_MAX_PIXELS = 1 << 14
#: From this many pixels the compiled kernel is worth importing numba (about 1 s).
COMPILED_MIN_PIXELS = 1 << 12

#: Payload header (spec §12.1): count_limit, mixer_shift, apm_rate, then the order.
_HEADER = 3
#: The reference encoder's settings, and the ranges a decoder accepts.
COUNT_LIMIT, MIXER_SHIFT, APM_RATE = 255, 12, 7
_COUNT_LIMITS = (1, 255)
_MIXER_SHIFTS = (8, 20)
_APM_RATES = (1, 15)
#: Smallest coded part: the coder's final flush.
_FLUSH = 4
#: Model tables hold 2**table_bits counters each, from 2**12 to 2**20 (spec §12.4).
_MIN_TABLE_BITS, _MAX_TABLE_BITS = 12, 20
#: Rows of labels per chunk when counting transitions (bounded temporaries).
_ROWS_PER_CHUNK = 256
#: Squash table knots (spec §12.5): 4096 / (1 + e^-(d/256)) at d = -2048, -1920, ..., 2048.
SQUASH_KNOTS = (1, 2, 3, 6, 10, 16, 27, 45, 73, 120, 194, 310, 488, 747, 1101, 1546, 2047,
                2549, 2994, 3348, 3607, 3785, 3901, 3975, 4022, 4050, 4068, 4079, 4085, 4089,
                4092, 4093, 4094)


def payload_size(k: int, width: int, height: int) -> None:
    """Return ``None``: the context payload length depends on the pixels."""
    return None


def table_bits(n_pixels: int) -> int:
    """Bits of each model table's size for an image of ``n_pixels`` (spec §12.4).

    ``min(20, max(12, bitlen(n_pixels)))``: one to two counters per pixel,
    between 4096 and about a million.
    """
    return min(_MAX_TABLE_BITS, max(_MIN_TABLE_BITS, int(n_pixels).bit_length()))


@lru_cache(maxsize=1)
def tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The squash, stretch and rate tables of spec §12.5, as int64 arrays.

    Returns
    -------
    squash : ndarray of shape (4095,)
        ``squash[d + 2047]`` for d in -2047..2047, in 0..4095.
    stretch : ndarray of shape (4096,)
        Its inverse: the smallest ``d`` whose squash reaches ``p``.
    rate : ndarray of shape (256,)
        ``floor(131072 / (2n + 3))``: the counter's step after ``n`` updates.
    """
    knots = SQUASH_KNOTS
    squash = np.zeros(4095, np.int64)
    for d in range(-2047, 2048):
        w = d & 127
        i = (d >> 7) + 16
        squash[d + 2047] = (knots[i] * (128 - w) + knots[i + 1] * w + 64) >> 7
    stretch = np.full(4096, 2047, np.int64)
    low = 0
    for d in range(-2047, 2048):
        high = int(squash[d + 2047])
        stretch[low:high + 1] = d
        low = max(low, high + 1)
    rate = np.array([131072 // (2 * n + 3) for n in range(256)], np.int64)
    return squash, stretch, rate


def palette_order(labels: np.ndarray, k: int) -> np.ndarray:
    """The reference encoder's coding order: a path through the colours along the transitions.

    Counts how often each pair of indices are left/right or above/below
    neighbours, then grows a path from the colour with the fewest transitions,
    adding at either end the unused colour with the most transitions to that
    end (the right end on ties, the lowest index among equals).

    Parameters
    ----------
    labels : ndarray of uint8, shape (height, width)
        Palette indices, all < k.
    k : int
        Palette size, 2..256.

    Returns
    -------
    ndarray of shape (k,), uint8
        ``order[c]`` is the palette index coded as ``c``; a permutation of 0..k-1.
    """
    counts = np.zeros(k * k, np.int64)
    height = labels.shape[0]
    for top in range(0, height, _ROWS_PER_CHUNK):
        rows = labels[top:min(height, top + _ROWS_PER_CHUNK + 1)].astype(np.int32)
        pairs = (rows[:, 1:] * k + rows[:, :-1], rows[1:] * k + rows[:-1])
        # the last row of a chunk is the next chunk's first: count its horizontal pairs once
        if top + _ROWS_PER_CHUNK < height:
            pairs = (pairs[0][:-1], pairs[1])
        for pair in pairs:
            counts += np.bincount(pair.reshape(-1), minlength=k * k)
    counts = counts.reshape(k, k)
    counts = counts + counts.T
    np.fill_diagonal(counts, 0)
    start = int(np.argmin(counts.sum(axis=1)))
    used = np.zeros(k, bool)
    used[start] = True
    path = [start]
    left_end = right_end = start
    for _ in range(k - 1):
        to_left = np.where(used, -1, counts[left_end])
        to_right = np.where(used, -1, counts[right_end])
        if to_right.max() >= to_left.max():
            right_end = int(np.argmax(to_right))
            path.append(right_end)
            used[right_end] = True
        else:
            left_end = int(np.argmax(to_left))
            path.insert(0, left_end)
            used[left_end] = True
    return np.array(path, np.uint8)


def _kernel(n_pixels: int) -> ModuleType | None:
    """The compiled kernel, or None for the plain one (see :func:`kpal._jit.load`)."""
    return _jit.load("kpal.coding._context_fast", n_pixels, COMPILED_MIN_PIXELS)


def check_encodable(width: int, height: int) -> None:
    """Raise before any work when this installation cannot encode a ``width`` x ``height`` image.

    Raises
    ------
    KpalError
        Without the compiled kernels (``kpal[fast]``) for an image of more
        than :data:`PLAIN_MAX_PIXELS` pixels.
    """
    _code_function(width, height, "encode")


def _code_function(width: int, height: int, action: str) -> tuple[object, bool]:
    """The ``code`` function for this image size and whether it is compiled.

    Raises :class:`KpalError` when only plain Python is left and the image is
    larger than :data:`PLAIN_MAX_PIXELS`.
    """
    fast = _kernel(width * height)
    if fast is not None:
        return fast.code, True
    if width * height > PLAIN_MAX_PIXELS:
        remedy = ("unset KPAL_PURE_NUMPY=1, which turns them off"
                  if os.environ.get("KPAL_PURE_NUMPY") == "1"
                  and importlib.util.find_spec("numba") is not None
                  else "install kpal[fast] (numba)")
        msg = (f"cannot {action} coding 3 (context) for a {width}x{height} image without "
               f"the compiled kernels: {remedy}; plain Python handles "
               f"at most {PLAIN_MAX_PIXELS} pixels")
        raise KpalError(msg)
    return _context_kernel.code, False


def _initial_state(k: int, n_pixels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counters, mixer weights and APM table as spec §12.4-12.6 starts them."""
    b = bits_per_index(k)
    n_slots = (1 << b) + 2
    counters = np.full(_context_kernel.N_HASHED * (1 << table_bits(n_pixels))
                       + _context_kernel.DIRECT_SIZE, _context_kernel.COUNTER_INIT, np.uint32)
    weights = np.full(4 * n_slots * (_context_kernel.N_INPUTS + 1), _context_kernel.WEIGHT_INIT,
                      np.int64)
    squash = tables()[0]
    knots = np.clip((np.arange(33) - 16) * 128, -2047, 2047)
    apm = np.tile(16 * squash[knots + 2047], n_slots)
    return counters, weights, apm


def _run(code, compiled: bool, labels: np.ndarray, k: int, params: tuple[int, int, int],
         data: np.ndarray, decoding: bool) -> int:
    """Call ``code`` on flat ``labels`` and ``data`` (both updated in place)."""
    n = labels.size
    squash, stretch, rate = tables()
    counters, weights, apm = _initial_state(k, n)
    scratch = np.zeros(4 * _context_kernel.N_INPUTS + 1, np.int64)
    height, width = labels.shape
    args = [labels.reshape(-1), width, height, k, bits_per_index(k), table_bits(n), *params,
            data, decoding, squash, stretch, rate, counters, weights, apm, scratch]
    if compiled:
        return code(*args)
    # plain Python runs several times faster on lists of ints than on numpy scalars
    lists = [a.tolist() if isinstance(a, np.ndarray) else a for a in args]
    outcome = code(*lists)
    labels.reshape(-1)[:] = lists[0]
    data[:] = lists[9]
    return outcome


def encode(labels: np.ndarray, k: int) -> bytes:
    """Code ``labels`` (uint8 of shape (height, width), values < k) with coding 3.

    Parameters
    ----------
    labels : ndarray of uint8, shape (height, width)
        Palette indices; every value must be < ``k``.
    k : int
        Palette size, 1..256.

    Returns
    -------
    bytes
        The payload (spec §12.1); empty when ``k == 1``.

    Raises
    ------
    KpalError
        When the image has more than :data:`PLAIN_MAX_PIXELS` pixels and the
        compiled kernels (``kpal[fast]``) are not available.
    """
    labels = image_labels(labels)
    height, width = labels.shape
    if k == 1:
        return b""
    require_below_k(labels, k)
    code, compiled = _code_function(width, height, "encode")
    order = palette_order(labels, k)
    rank = np.empty(k, np.uint8)
    rank[order] = np.arange(k, dtype=np.uint8)
    coded = np.ascontiguousarray(rank[labels])
    b = bits_per_index(k)
    params = (COUNT_LIMIT, MIXER_SHIFT, APM_RATE)
    # Usually far less than fixed width; the bound (12 bits per decision) is the fallback.
    for room in (labels.size * b // 8 + labels.size // 4 + 64,
                 labels.size * (3 + b) * 3 // 2 + 64):
        data = np.zeros(room, np.uint8)
        n = _run(code, compiled, coded, k, params, data, False)
        if n >= 0:
            head = bytes([COUNT_LIMIT, MIXER_SHIFT, APM_RATE]) + order.tobytes()
            return head + data[:n].tobytes()
    msg = "context coder ran out of room"  # unreachable: the second room is the bound
    raise AssertionError(msg)


def _read_header(payload: bytes, k: int) -> tuple[int, int, int, np.ndarray]:
    least = _HEADER + k + _FLUSH
    if len(payload) < least:
        msg = (f"context payload is {len(payload)} bytes, shorter than {least} "
               f"({_HEADER}-byte header, {k}-byte order, {_FLUSH}-byte flush)")
        raise FormatError(msg)
    count_limit, mixer_shift, apm_rate = payload[0], payload[1], payload[2]
    for name, value, (low, high) in (("count_limit", count_limit, _COUNT_LIMITS),
                                     ("mixer_shift", mixer_shift, _MIXER_SHIFTS),
                                     ("apm_rate", apm_rate, _APM_RATES)):
        require_between(f"context payload {name}", value, low, high)
    order = np.frombuffer(payload, np.uint8, count=k, offset=_HEADER)
    if np.bincount(order, minlength=256)[:k].min() != 1 or int(order.max()) >= k:
        msg = f"context payload order is not a permutation of 0..{k - 1}"
        raise FormatError(msg)
    return count_limit, mixer_shift, apm_rate, order


def decode(payload: bytes, k: int, width: int, height: int) -> np.ndarray:
    """Decode a context payload into an ``ndarray`` of shape (height, width), uint8.

    Raises
    ------
    FormatError
        If a header field is out of range, the order is not a permutation,
        the coder needs a byte after the payload's end or leaves bytes unread,
        or a literal decodes to an index >= k or to a neighbour's index that
        its flag ruled out (spec §12.7).
    KpalError
        When the image has more than :data:`PLAIN_MAX_PIXELS` pixels and the
        compiled kernels (``kpal[fast]``) are not available.
    """
    if k == 1:
        return one_colour(payload, NAME, width, height)
    count_limit, mixer_shift, apm_rate, order = _read_header(payload, k)
    code, compiled = _code_function(width, height, "decode")
    coded = np.zeros((height, width), np.uint8)
    data = np.frombuffer(payload, np.uint8, offset=_HEADER + k).copy()
    outcome = _run(code, compiled, coded, k, (count_limit, mixer_shift, apm_rate), data, True)
    if outcome == _context_kernel.TRUNCATED:
        msg = "context payload is truncated: the coder needs a byte after its end"
        raise FormatError(msg)
    if outcome == _context_kernel.BAD_INDEX:
        msg = (f"context payload decodes to an invalid literal: an index >= k={k} or a "
               "neighbour's index its flag ruled out")
        raise FormatError(msg)
    if outcome == _context_kernel.NOT_FINISHED:
        msg = "context payload does not end where the coder does: bytes left or wrong flush"
        raise FormatError(msg)
    return order[coded]
