"""Compiled k-means kernels, used when numba is installed (``kpal[fast]``).

Loaded through :func:`kpal._jit.load`, never imported directly by the numpy
path. Each kernel computes exactly what its numpy counterpart computes, so
the two paths write byte-identical files:

- :func:`color_histogram` counts packed colours in a 2**24 table instead of
  sorting them; the colours come out in ascending packed order either way.
- :func:`hamerly_step` is one Lloyd assignment (bounds update, Hamerly's
  test, search among the nearby centres) per point instead of per group of
  points. Its labels are the exact nearest centres under the rule of
  :mod:`kpal.cluster.nearest` (least float64 squared distance summed in
  coordinate order, ties to the lowest index); only its bounds, which never
  reach the output, may differ from the numpy path's.
- :func:`nearest_palette` labels the distinct colours with integer squared
  distances, so every comparison is exact.
- :func:`map_pixels` applies a per-colour table to every pixel.

Loops over points run in parallel (``prange``); every point's result depends
on that point alone, so the output is the same for any number of threads.
The first call compiles (about 10 s); ``cache=True`` keeps the machine code
for later processes (see :mod:`kpal._jit` for where).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kpal.cluster.histogram import N_PACKED, ColorHistogram, unpack_rgb

__all__ = ["carry", "cell_sums", "cluster_sums", "color_histogram", "hamerly_step",
           "map_pixels", "nearest_palette"]

#: Pixels above this count are counted by the numpy path: the count table is uint32.
_MAX_PIXELS = (1 << 32) - 1
#: Loops over fewer points than this run on one thread: starting the thread
#: pool costs more than it saves (and much more on a busy machine).
PARALLEL_POINTS = 1 << 18
#: Points per block of a parallel loop.
_BLOCK = 1 << 12


@njit(cache=True, nogil=True)
def _count(pixels, table):
    for i in range(pixels.shape[0]):
        table[(np.uint32(pixels[i, 0]) << 16) | (np.uint32(pixels[i, 1]) << 8)
              | np.uint32(pixels[i, 2])] += 1


@njit(cache=True, nogil=True)
def _collect(table):
    n = 0
    for p in range(table.shape[0]):
        if table[p]:
            n += 1
    packed = np.empty(n, dtype=np.uint32)
    counts = np.empty(n, dtype=np.int64)
    n = 0
    for p in range(table.shape[0]):
        if table[p]:
            packed[n] = p
            counts[n] = table[p]
            n += 1
    return packed, counts


def color_histogram(pixels: np.ndarray) -> ColorHistogram | None:
    """The histogram of :func:`kpal.cluster.histogram.color_histogram`, by counting.

    Parameters
    ----------
    pixels : ndarray of shape (n_pixels, 3), uint8

    Returns
    -------
    ColorHistogram or None
        ``None`` when the image is too large for the uint32 count table.
    """
    if pixels.shape[0] > _MAX_PIXELS:
        return None
    table = np.zeros(N_PACKED, dtype=np.uint32)  # 64 MiB, pages mapped as touched
    _count(np.ascontiguousarray(pixels), table)
    packed, counts = _collect(table)
    del table
    return ColorHistogram(unpack_rgb(packed), counts)


@njit(cache=True, nogil=True, inline="always")
def _squared(points, i, centres, c):
    # The order of kpal.cluster.nearest: (x0 - c0)**2 + (x1 - c1)**2 + ..., left to right.
    total = 0.0
    for d in range(points.shape[1]):
        diff = points[i, d] - centres[c, d]
        total += diff * diff
    return total


@njit(cache=True, nogil=True)
def _hamerly_range(start, stop, points, centres, labels, upper, lower, update, shift, near_shift,
                   far_gap, half_gap, order, sorted_gaps, drift, drift_max, margin, previous):
    k = centres.shape[0]
    for i in range(start, stop):
        a = labels[i]
        u = upper[i]
        low = lower[i]
        previous[i] = -1
        if update:
            u += shift[a]
            low = min(low - near_shift[a], far_gap[a] - u)
        bound = max(half_gap[a], low) - margin
        if u > bound:
            own_sq = _squared(points, i, centres, a)
            u = np.sqrt(own_sq)
            if u > bound:
                # A centre c of a's row is beyond reach when |a - c| > u + best + margin
                # (then |x - c| >= |a - c| - u > best + margin); the stored gaps are
                # |a - c| at the last sort, at most drift[a] + drift_max too large now.
                slack = u + drift[a] + drift_max + margin
                best = a
                best_sq = own_sq
                second_sq = np.inf
                beyond = np.inf
                for j in range(k):
                    if sorted_gaps[a, j] > slack + np.sqrt(best_sq):
                        beyond = sorted_gaps[a, j] - drift[a] - drift_max - u
                        break
                    c = order[a, j]
                    if c == a:
                        continue
                    sq = _squared(points, i, centres, c)
                    if sq < best_sq or (sq == best_sq and c < best):
                        second_sq = min(second_sq, best_sq)
                        best_sq = sq
                        best = c
                    else:
                        second_sq = min(second_sq, sq)
                labels[i] = best
                if best != a:
                    previous[i] = a
                u = np.sqrt(best_sq)
                low = min(np.sqrt(second_sq), beyond)
        upper[i] = u
        lower[i] = low


@njit(cache=True, nogil=True)
def _hamerly_serial(points, centres, labels, upper, lower, update, shift, near_shift, far_gap,
                    half_gap, order, sorted_gaps, drift, drift_max, margin, previous):
    _hamerly_range(0, points.shape[0], points, centres, labels, upper, lower, update, shift,
                   near_shift, far_gap, half_gap, order, sorted_gaps, drift, drift_max, margin,
                   previous)


@njit(cache=True, nogil=True, parallel=True)
def _hamerly_parallel(points, centres, labels, upper, lower, update, shift, near_shift,
                      far_gap, half_gap, order, sorted_gaps, drift, drift_max, margin, previous):
    # Blocks of points: one call per block, not per point (each call passes 16 arrays).
    n = points.shape[0]
    for block in prange((n + _BLOCK - 1) // _BLOCK):
        _hamerly_range(block * _BLOCK, min(n, (block + 1) * _BLOCK), points, centres, labels,
                       upper, lower, update, shift, near_shift, far_gap, half_gap, order,
                       sorted_gaps, drift, drift_max, margin, previous)


def hamerly_step(points, centres, labels, upper, lower, update, shift, near_shift, far_gap,
                 half_gap, order, sorted_gaps, drift, drift_max, margin, previous):
    """One Lloyd assignment of every point, in place; ``previous[i]`` gets the old label if
    it changed, else -1.

    With ``update``, the bounds first follow the centres' latest move (as
    ``lloyd`` does in numpy). A point is searched unless its bounds prove its
    label by more than ``margin``; the search visits the centres of its own
    centre's sorted row until the stored gap exceeds its distance plus
    the best distance so far plus the drift since sorting plus ``margin``: every
    centre beyond is farther than the best by more than ``margin``, so the label
    is the exact nearest.
    """
    kernel = _hamerly_parallel if points.shape[0] >= PARALLEL_POINTS else _hamerly_serial
    kernel(points, centres, labels, upper, lower, update, shift, near_shift, far_gap, half_gap,
           order, sorted_gaps, drift, drift_max, margin, previous)


@njit(cache=True, nogil=True)
def _cells(colors, counts, bits, index, cell_of_color):
    shift = 8 - bits
    for i in range(colors.shape[0]):
        key = ((np.int64(colors[i, 0]) >> shift) << (2 * bits)) \
            | ((np.int64(colors[i, 1]) >> shift) << bits) | (np.int64(colors[i, 2]) >> shift)
        cell_of_color[i] = key
        index[key] = 1
    n_cells = 0
    for key in range(index.shape[0]):
        if index[key]:
            index[key] = n_cells
            n_cells += 1
        else:
            index[key] = -1
    weights = np.zeros(n_cells, dtype=np.float64)
    sums = np.zeros((n_cells, 3), dtype=np.float64)
    for i in range(colors.shape[0]):
        cell = index[cell_of_color[i]]
        cell_of_color[i] = cell
        w = np.float64(counts[i])
        weights[cell] += w
        for d in range(3):
            sums[cell, d] += w * colors[i, d]
    return weights, sums


def cell_sums(
    colors: np.ndarray, counts: np.ndarray, bits: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`kpal.cluster.histogram.cell_sums`, in one pass over the colours.

    The cell sums and weights are integers in float64 (exact in any order),
    the cells in ascending key order: the same arrays as the numpy path.
    """
    index = np.zeros(1 << (3 * bits), dtype=np.int32)
    cell_of_color = np.empty(colors.shape[0], dtype=np.int32)
    weights, sums = _cells(np.ascontiguousarray(colors), np.ascontiguousarray(counts), bits,
                           index, cell_of_color)
    return sums / weights[:, None], weights, sums, cell_of_color


@njit(cache=True, nogil=True)
def _carry(labels, upper, lower, coarse_means, cell, fine_means, out_labels, out_upper,
           out_lower):
    for i in range(fine_means.shape[0]):
        c = cell[i]
        radius = np.sqrt(_squared(fine_means, i, coarse_means, c))
        out_labels[i] = labels[c]
        out_upper[i] = upper[c] + radius
        out_lower[i] = max(lower[c] - radius, 0.0)


def carry(labels, upper, lower, coarse_means, cell, fine_means):
    """Labels and bounds of finer points from the coarse cells ``cell`` that hold them.

    A point is at most ``r = |x - m|`` from the mean ``m`` of its cell, so the
    cell's bounds widened by ``r`` hold for the point (as ``kmeans._carry``).
    """
    n = fine_means.shape[0]
    out_labels = np.empty(n, dtype=np.int32)  # k <= 256: half the memory of intp
    out_upper = np.empty(n, dtype=np.float64)
    out_lower = np.empty(n, dtype=np.float64)
    _carry(labels, upper, lower, coarse_means, cell, fine_means, out_labels, out_upper,
           out_lower)
    return out_labels, out_upper, out_lower


@njit(cache=True, nogil=True, parallel=True)
def _nearest_palette(colors, palette, hint, order, gaps, labels, distances):
    k = palette.shape[0]
    for i in prange(colors.shape[0]):
        a = hint[i]
        best = a
        best_sq = 0
        for d in range(3):
            diff = np.int64(colors[i, d]) - np.int64(palette[a, d])
            best_sq += diff * diff
        # A centre c can be as near as a only if |a - c|**2 <= 4 |x - a|**2
        # (triangle inequality): exact in integers, no margin needed.
        reach = 4 * best_sq
        for j in range(k):
            if gaps[a, j] > reach:
                break
            c = order[a, j]
            sq = 0
            for d in range(3):
                diff = np.int64(colors[i, d]) - np.int64(palette[c, d])
                sq += diff * diff
            if sq < best_sq or (sq == best_sq and c < best):
                best_sq = sq
                best = c
        labels[i] = best
        distances[i] = best_sq


def nearest_palette(
    colors: np.ndarray, palette: np.ndarray, hint: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest palette entry of every colour (ties: lowest index), searched from a hint.

    Parameters
    ----------
    colors : ndarray of shape (n_colors, 3), uint8
    palette : ndarray of shape (k, 3), uint8
    hint : ndarray of shape (n_colors,), intp
        A palette entry near each colour (any entry is correct; a near one is fast).

    Returns
    -------
    labels : ndarray of shape (n_colors,), intp
    distances : ndarray of shape (n_colors,), float64
        Squared distance to the chosen entry (an integer value).
    """
    entries = palette.astype(np.int64)
    gaps = np.zeros((entries.shape[0], entries.shape[0]), dtype=np.int64)
    for column in entries.T:
        diff = column[:, None] - column
        gaps += diff * diff
    order = np.argsort(gaps, axis=1, kind="stable")
    sorted_gaps = np.ascontiguousarray(np.take_along_axis(gaps, order, axis=1))
    labels = np.empty(colors.shape[0], dtype=np.intp)
    distances = np.empty(colors.shape[0], dtype=np.int64)
    _nearest_palette(np.ascontiguousarray(colors), np.ascontiguousarray(palette),
                     np.ascontiguousarray(hint), order, sorted_gaps, labels,
                     distances)
    return labels, distances.astype(np.float64)


@njit(cache=True, nogil=True)
def _sums(points, weights, labels, sums):
    for i in range(points.shape[0]):
        c = labels[i]
        for d in range(points.shape[1]):
            sums[c, d] += weights[i] * points[i, d]


def cluster_sums(points: np.ndarray, weights: np.ndarray, labels: np.ndarray,
                 k: int) -> np.ndarray:
    """``weights * points`` summed per cluster, shape (k, d), float64, without temporaries.

    For integer points and weights every partial sum is an exact integer, so
    this equals the numpy path's ``np.bincount`` sums bit for bit.
    """
    sums = np.zeros((k, points.shape[1]), dtype=np.float64)
    _sums(points, weights, labels, sums)
    return sums


@njit(cache=True, nogil=True, parallel=True)
def _lookup(pixels, table, out):
    for i in prange(pixels.shape[0]):
        out[i] = table[(np.uint32(pixels[i, 0]) << 16) | (np.uint32(pixels[i, 1]) << 8)
                       | np.uint32(pixels[i, 2])]


def map_pixels(pixels: np.ndarray, colors: np.ndarray, values: np.ndarray) -> np.ndarray:
    """:func:`kpal.cluster.histogram.map_pixels` for (n_pixels, 3) uint8 pixels."""
    values = np.asarray(values)
    table = np.zeros(N_PACKED, dtype=values.dtype)
    packed = (colors[:, 0].astype(np.uint32) << 16) | (colors[:, 1].astype(np.uint32) << 8)
    table[packed | colors[:, 2]] = values
    out = np.empty(pixels.shape[0], dtype=values.dtype)
    _lookup(np.ascontiguousarray(pixels), table, out)
    return out
