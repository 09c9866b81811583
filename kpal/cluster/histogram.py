"""Colour histograms of RGB pixel arrays.

k-means on the pixels of a photo is the same computation as weighted k-means
on its *distinct* colours, each weighted by how many pixels have it: a 12 MP
photo has about 1 M distinct colours, a 0.25 MP one about 0.1 M. This module
finds those colours, their counts and the pixel → colour mapping.

Colours are packed into one 24-bit integer ``r << 16 | g << 8 | b``. Up to
``SORT_PIXELS`` pixels, the packed colours are sorted (numpy's vectorized
sort of 32-bit integers takes about 0.1 s for 12 M pixels) and the runs of
equal values are the colours and their counts. Larger images, and weighted
pixels, go through a table of 2**24 entries indexed directly, in bounded
chunks, so the extra memory is one fixed table of 16 MiB (flags, then ranks)
plus one chunk whatever the image size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = [
    "N_PACKED",
    "ColorHistogram",
    "cell_sums",
    "color_histogram",
    "map_pixels",
    "pack_pixels",
    "pack_rgb",
    "reduce_histogram",
    "unpack_rgb",
]

#: Number of distinct packed 24-bit colours.
N_PACKED = 1 << 24

#: Pixels per chunk: 2**18 pixels keep every temporary around 1-2 MiB, which
#: stays in cache and bounds memory whatever the image size.
CHUNK = 1 << 18
#: Images up to this many pixels are counted by sorting a packed copy (4
#: bytes per pixel, 128 MiB at most); beyond, through the 2**24 table.
SORT_PIXELS = 1 << 25
#: Pixels per counting chunk: larger, so that the (n_colors,) arrays
#: np.bincount returns are few, yet only 12 MiB of temporary indices.
_COUNT_CHUNK = 1 << 20


def pack_rgb(pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Pack RGB triplets into 24-bit integers ``r << 16 | g << 8 | b``.

    Parameters
    ----------
    pixels : ndarray of shape (n, 3), uint8
    out : ndarray of shape (n,), uint32, optional
        Buffer to write into (avoids an allocation inside chunk loops).

    Returns
    -------
    ndarray of shape (n,), uint32

    Examples
    --------
    >>> pack_rgb(np.array([[1, 2, 3]], dtype=np.uint8))
    array([66051], dtype=uint32)
    """
    n = pixels.shape[0]
    if out is None:
        out = np.empty(n, dtype=np.uint32)
    np.left_shift(pixels[:, 0], 16, out=out, dtype=np.uint32)
    out |= np.left_shift(pixels[:, 1], 8, dtype=np.uint32)
    out |= pixels[:, 2]
    return out


def pack_pixels(pixels: np.ndarray) -> np.ndarray:
    """Pack a whole image with :func:`pack_rgb`, chunk by chunk (no large temporaries).

    Parameters
    ----------
    pixels : ndarray of shape (n_pixels, 3), uint8

    Returns
    -------
    ndarray of shape (n_pixels,), uint32
    """
    out = np.empty(pixels.shape[0], dtype=np.uint32)
    for start in range(0, pixels.shape[0], CHUNK):
        block = pixels[start : start + CHUNK]
        pack_rgb(block, out[start : start + block.shape[0]])
    return out


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_rgb`: ndarray of shape (n, 3), uint8."""
    packed = np.asarray(packed, dtype=np.uint32)
    out = np.empty((packed.shape[0], 3), dtype=np.uint8)
    out[:, 0] = packed >> 16
    out[:, 1] = (packed >> 8) & 0xFF
    out[:, 2] = packed & 0xFF
    return out


@dataclass(frozen=True)
class ColorHistogram:
    """The distinct colours of an image and how many pixels have each.

    Attributes
    ----------
    colors : ndarray of shape (n_colors, 3), uint8
        Distinct colours in ascending packed order.
    counts : ndarray of shape (n_colors,), int64 (float64 when weighted)
        Number of pixels (or total weight) per colour; every count is > 0
        unless weights were zero.
    """

    colors: np.ndarray
    counts: np.ndarray

    @property
    def packed(self) -> np.ndarray:
        """The colours packed as 24-bit integers, ndarray of shape (n_colors,)."""
        return pack_rgb(self.colors)

    def __len__(self) -> int:
        return int(self.colors.shape[0])


def color_histogram(pixels: np.ndarray, weights: np.ndarray | None = None) -> ColorHistogram:
    """Return the distinct colours of ``pixels`` with their counts.

    Parameters
    ----------
    pixels : ndarray of shape (n_pixels, 3), uint8, or of shape (n_pixels,), uint32
        RGB pixels, or the same already packed by :func:`pack_rgb` (which
        saves packing them again when several passes follow).
    weights : ndarray of shape (n_pixels,), optional
        Per-pixel weights; the histogram then sums weights instead of counting.

    Returns
    -------
    ColorHistogram

    Examples
    --------
    >>> px = np.array([[0, 0, 9], [255, 0, 0], [0, 0, 9]], dtype=np.uint8)
    >>> h = color_histogram(px)
    >>> h.colors.tolist(), h.counts.tolist()
    ([[0, 0, 9], [255, 0, 0]], [2, 1])
    """
    if weights is None and pixels.shape[0] <= SORT_PIXELS:
        packed = pixels.copy() if pixels.ndim == 1 else pack_pixels(pixels)
        return _sorted_histogram(packed)
    # Pass 1: flag every colour present. np.zeros maps lazily-zeroed pages.
    present = np.zeros(N_PACKED, dtype=np.bool_)
    for _, packed in _packed_chunks(pixels, CHUNK):
        present[packed] = True
    packed_colors = np.flatnonzero(present).astype(np.uint32)
    # Pass 2: count through the index of each colour among the colours
    # present, split as base[p >> 8] + rank[p]: ``base`` counts the colours
    # of the blocks of 256 before p's, ``rank`` (uint8) the ones before p in
    # its block. The rank table overwrites the flags in place (a running sum
    # per block, 256 wrapping to 0), so no 64 MiB int32 table is needed.
    blocks = present.view(np.uint8).reshape(-1, 256)
    base = np.zeros(blocks.shape[0], dtype=np.int64)
    np.cumsum(np.count_nonzero(blocks, axis=1)[:-1], out=base[1:])
    rank = np.cumsum(blocks, axis=1, dtype=np.uint8, out=blocks).reshape(-1)
    rank -= 1  # wraps for absent colours, which are never looked up
    n_colors = packed_colors.size
    counts = np.zeros(n_colors, dtype=np.int64 if weights is None else np.float64)
    # Bigger chunks here: each bincount returns a full (n_colors,) array.
    for start, packed in _packed_chunks(pixels, _COUNT_CHUNK):
        w = None if weights is None else weights[start : start + packed.shape[0]]
        index = base[packed >> 8]
        index += rank[packed]
        counts += np.bincount(index, weights=w, minlength=n_colors)
    return ColorHistogram(unpack_rgb(packed_colors), counts)


def _sorted_histogram(packed: np.ndarray) -> ColorHistogram:
    """Histogram of packed colours by sorting them; ``packed`` is sorted in place."""
    packed.sort()
    first = np.empty(packed.shape[0], dtype=np.bool_)
    first[:1] = True
    np.not_equal(packed[1:], packed[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    del first
    counts = np.diff(starts, append=packed.shape[0]).astype(np.int64, copy=False)
    return ColorHistogram(unpack_rgb(packed[starts]), counts)


def _packed_chunks(pixels: np.ndarray, chunk: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, packed colours)`` for consecutive chunks of the pixels."""
    n = pixels.shape[0]
    if pixels.ndim == 1:
        for start in range(0, n, chunk):
            yield start, pixels[start : start + chunk]
        return
    buffer = np.empty(min(n, chunk), dtype=np.uint32)
    for start in range(0, n, chunk):
        block = pixels[start : start + chunk]
        yield start, pack_rgb(block, buffer[: block.shape[0]])


def map_pixels(pixels: np.ndarray, colors: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Return ``values[i]`` for every pixel whose colour is ``colors[i]``.

    This is how per-colour results (palette indices) reach the pixels: one
    2**24 lookup table indexed by packed colour, applied chunk by chunk.

    Parameters
    ----------
    pixels : ndarray of shape (n_pixels, 3), uint8, or of shape (n_pixels,), uint32
        RGB pixels or packed colours; every colour must appear in ``colors``.
    colors : ndarray of shape (n_colors, 3), uint8
        Distinct colours.
    values : ndarray of shape (n_colors,)
        Value per colour; its dtype is the result's (use uint8 for labels:
        the table is then 16 MiB).

    Returns
    -------
    ndarray of shape (n_pixels,), dtype of ``values``
    """
    values = np.asarray(values)
    table = np.empty(N_PACKED, dtype=values.dtype)
    table[pack_rgb(colors)] = values
    out = np.empty(pixels.shape[0], dtype=values.dtype)
    for start, packed in _packed_chunks(pixels, CHUNK):
        np.take(table, packed, out=out[start : start + packed.shape[0]])
    return out


def reduce_histogram(
    colors: np.ndarray, counts: np.ndarray, bits: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge colours into cubic cells of ``2**(8 - bits)`` levels per channel.

    A cell is represented by the weighted mean of its colours, so a cluster
    made of whole cells has exactly the centroid it would have on the full
    histogram: clustering the cells is a cheap, close start for clustering
    the colours (coarse to fine).

    Parameters
    ----------
    colors : ndarray of shape (n_colors, 3), uint8
    counts : ndarray of shape (n_colors,)
    bits : int
        Bits kept per channel, 1..8.

    Returns
    -------
    means : ndarray of shape (n_cells, 3), float64
        Weighted mean colour of each occupied cell.
    weights : ndarray of shape (n_cells,), float64
        Total count of each cell.
    cell_of_color : ndarray of shape (n_colors,), intp
        Index of the cell holding each colour.
    """
    means, weights, _, cell_of_color = cell_sums(colors, counts, bits)
    return means, weights, cell_of_color.astype(np.intp)


def cell_sums(
    colors: np.ndarray, counts: np.ndarray, bits: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`reduce_histogram`, plus the exact colour sum of every cell.

    Returns
    -------
    means, weights : as :func:`reduce_histogram`
    sums : ndarray of shape (n_cells, 3), float64
        Sum of count times colour over each cell: integers (exact in float64
        below 2**53, i.e. for any image under 2**45 pixels), which is what
        lets k-means sums be exact in any order.
    cell_of_color : ndarray of shape (n_colors,), int32
    """
    shift = 8 - bits
    q = colors >> shift
    key = (q[:, 0].astype(np.int64) << (2 * bits)) | (q[:, 1].astype(np.int64) << bits) | q[:, 2]
    n_keys = 1 << (3 * bits)
    occupied = np.zeros(n_keys, dtype=np.bool_)
    occupied[key] = True
    cell_keys = np.flatnonzero(occupied)
    cell_index = np.empty(n_keys, dtype=np.int32)  # bits <= 8: under 2**24 cells
    cell_index[cell_keys] = np.arange(cell_keys.size, dtype=np.int32)
    cell_of_color = cell_index[key]
    n_cells = cell_keys.size
    w = counts.astype(np.float64, copy=False)
    weights = np.bincount(cell_of_color, weights=w, minlength=n_cells)
    sums = np.empty((n_cells, 3), dtype=np.float64)
    for channel in range(3):
        sums[:, channel] = np.bincount(
            cell_of_color, weights=w * colors[:, channel], minlength=n_cells
        )
    means = sums / weights[:, None]
    return means, weights, sums, cell_of_color
