"""Compiled k-means kernels, used when numba is installed (``kpal[fast]``).

Loaded through :func:`kpal._jit.load`, never imported directly by the numpy
path. Each kernel computes exactly what its numpy counterpart computes, so
the two paths write byte-identical files:

- :func:`color_histogram` counts packed colours in a 2**24 table of uint16
  counters (full counters are flushed to a short list) instead of sorting
  them, from 4 MP on; the colours come out in ascending packed order either way.
- :func:`kmeans_plusplus` draws the same initial centres as
  :func:`kpal.cluster.init.kmeans_plusplus` (running sums in point order).
- :func:`lloyd_loop` runs whole Lloyd iterations (centre update, bounds,
  assignment, integer cluster sums) for the levels below
  :data:`PARALLEL_POINTS` points, where Python between iterations cost more
  than the iterations; :func:`nearest_two` is the first full assignment.
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

import numba
import numpy as np
from numba import njit, prange

from kpal.cluster.histogram import (
    N_PACKED,
    ColorHistogram,
    _sorted_histogram,
    pack_pixels,
    unpack_rgb,
)

__all__ = ["carry", "cell_sums", "cluster_sums", "color_histogram", "hamerly_step",
           "kmeans_plusplus", "lloyd_loop", "map_pixels", "nearest_palette", "nearest_two"]

#: Pixels above this count are counted by the numpy path: the count table is uint32.
_MAX_PIXELS = (1 << 32) - 1
#: A uint16 counter of the count table is emptied into a list of flushed colours here.
_FLUSH = (1 << 16) - 1
#: Up to this many pixels, sorting the packed colours (numpy) beats clearing and
#: scanning the 2**24 count table (4 ms against 33 ms at 0.25 MP; even at 4 MP).
SORT_PIXELS = 1 << 22
#: Loops over fewer points than this run on one thread: starting the thread
#: pool costs more than it saves (and much more on a busy machine).
PARALLEL_POINTS = 1 << 18
#: Points per block of a parallel loop.
_BLOCK = 1 << 12


@njit(cache=True, nogil=True, parallel=True)
def _count(pixels, table, parts, flushed, n_flushed):
    # Part p counts the pixels whose red level falls in its share of 0..255: every
    # part reads all pixels, but writes only its own slice of the table (no two
    # threads touch one counter), so the counts are the same for any thread count.
    # A uint16 counter that reaches _FLUSH is reset and its colour noted in the
    # part's row of ``flushed`` (at most one note per _FLUSH pixels).
    for part in prange(parts):
        low = (256 * part) // parts
        high = (256 * (part + 1)) // parts
        n = 0
        for i in range(pixels.shape[0]):
            red = pixels[i, 0]
            if low <= red < high:
                key = (np.uint32(red) << 16) | (np.uint32(pixels[i, 1]) << 8) \
                    | np.uint32(pixels[i, 2])
                value = table[key] + 1
                if value == _FLUSH:
                    table[key] = 0
                    flushed[part, n] = key
                    n += 1
                else:
                    table[key] = value
        n_flushed[part] = n


@njit(cache=True, nogil=True, parallel=True)
def _collect(table, parts):
    size = table.shape[0] // parts
    found = np.zeros(parts + 1, dtype=np.int64)
    for part in prange(parts):
        n = 0
        for p in range(part * size, (part + 1) * size):
            if table[p]:
                n += 1
        found[part + 1] = n
    for part in range(parts):
        found[part + 1] += found[part]
    packed = np.empty(found[parts], dtype=np.uint32)
    counts = np.empty(found[parts], dtype=np.int64)
    for part in prange(parts):
        n = found[part]
        for p in range(part * size, (part + 1) * size):
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
        ``None`` when the image has 2**32 pixels or more.
        Small images are sorted instead of counted (the same histogram).
    """
    if pixels.shape[0] > _MAX_PIXELS:
        return None
    if pixels.shape[0] <= SORT_PIXELS:
        return _sorted_histogram(pack_pixels(pixels))
    # uint16 counters: 32 MiB instead of 64 at the encode's peak; pages mapped as touched.
    table = np.zeros(N_PACKED, dtype=np.uint16)
    # One part per thread, a power of two so that the parts split 2**24 evenly.
    parts = 1 << (numba.get_num_threads().bit_length() - 1)
    flushed = np.empty((parts, pixels.shape[0] // _FLUSH + 1), dtype=np.uint32)
    n_flushed = np.zeros(parts, dtype=np.int64)
    _count(np.ascontiguousarray(pixels), table, parts, flushed, n_flushed)
    packed, counts = _collect(table, parts)
    del table
    extra = np.concatenate([row[:n] for row, n in zip(flushed, n_flushed, strict=True)])
    if extra.size:
        # Colours with _FLUSH pixels or more: add the flushed counts, and insert
        # those whose counter ended at 0 (a multiple of _FLUSH pixels).
        keys, times = np.unique(extra, return_counts=True)
        where = np.searchsorted(packed, keys)
        inside = where < packed.size
        found = np.zeros(keys.size, dtype=np.bool_)
        found[inside] = packed[where[inside]] == keys[inside]
        counts[where[found]] += times[found].astype(np.int64) * _FLUSH
        missing = ~found
        packed = np.insert(packed, where[missing], keys[missing])
        counts = np.insert(counts, where[missing], times[missing].astype(np.int64) * _FLUSH)
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
def _nearest_two_range(start, stop, points, centres, labels, first, second):
    k = centres.shape[0]
    for i in range(start, stop):
        best = 0
        best_sq = _squared(points, i, centres, 0)
        runner_up = np.inf
        for c in range(1, k):
            sq = _squared(points, i, centres, c)
            if sq < best_sq:  # strictly less: ties keep the lowest index
                runner_up = best_sq
                best_sq = sq
                best = c
            elif sq < runner_up:
                runner_up = sq
        labels[i] = best
        first[i] = np.sqrt(best_sq)
        second[i] = np.sqrt(runner_up)


@njit(cache=True, nogil=True)
def _nearest_two_serial(points, centres, labels, first, second):
    _nearest_two_range(0, points.shape[0], points, centres, labels, first, second)


@njit(cache=True, nogil=True, parallel=True)
def _nearest_two_parallel(points, centres, labels, first, second):
    n = points.shape[0]
    for block in prange((n + _BLOCK - 1) // _BLOCK):
        _nearest_two_range(block * _BLOCK, min(n, (block + 1) * _BLOCK), points, centres,
                           labels, first, second)


def nearest_two(points: np.ndarray, centres: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`kpal.cluster.nearest._nearest_two`: nearest centre, its distance, the runner-up's.

    Every centre is compared by the same float64 squared distance, ties to
    the lowest index, so the labels are those of the numpy path.
    """
    n = points.shape[0]
    labels = np.empty(n, dtype=np.intp)
    first = np.empty(n, dtype=np.float64)
    second = np.empty(n, dtype=np.float64)
    kernel = _nearest_two_parallel if n >= PARALLEL_POINTS else _nearest_two_serial
    kernel(np.ascontiguousarray(points), np.ascontiguousarray(centres, dtype=np.float64),
           labels, first, second)
    return labels, first, second


@njit(cache=True, nogil=True)
def _sort_neighbours(centres, order, sorted_gaps, drift):
    # Row a: the centres by distance from a (column 0: a itself), and those distances.
    k = centres.shape[0]
    between = np.empty(k)
    for a in range(k):
        for c in range(k):
            between[c] = np.sqrt(_squared(centres, a, centres, c))
        between[a] = -1.0  # a first, whatever the ties
        row = np.argsort(between)
        between[a] = 0.0
        for j in range(k):
            order[a, j] = row[j]
            sorted_gaps[a, j] = between[row[j]]
        drift[a] = 0.0


@njit(cache=True, nogil=True)
def _lloyd(points, weights, point_sums, labels, upper, lower, centres, sums, mass, first,
           max_iter, threshold, margin, resort_drift, near, previous):
    """Lloyd iterations ``first`` .. ``max_iter - 1`` (see :func:`lloyd_loop`)."""
    k, dim = centres.shape
    n = points.shape[0]
    order = np.empty((k, k), dtype=np.int64)
    sorted_gaps = np.empty((k, k))
    drift = np.zeros(k)
    _sort_neighbours(centres, order, sorted_gaps, drift)
    shift = np.empty(k)
    near_shift = np.empty(k)
    far_gap = np.empty(k)
    half_gap = np.empty(k)
    new_centres = np.empty((k, dim))
    for iteration in range(first, max_iter):
        if iteration > first:
            for c in range(k):
                if mass[c] == 0:
                    return iteration, False
        for c in range(k):
            for d in range(dim):
                new_centres[c, d] = sums[c, d] / mass[c]
        # kpal.cluster.nearest._distance: d0**2, + d1**2, + d2**2, then the root.
        for c in range(k):
            total = 0.0
            for d in range(dim):
                diff = new_centres[c, d] - centres[c, d]
                if d == 0:
                    total = diff * diff
                else:
                    total += diff * diff
            shift[c] = np.sqrt(total)
        centres[:, :] = new_centres
        drift_max = 0.0
        for c in range(k):
            drift[c] += shift[c]
            drift_max = max(drift_max, drift[c])
        if drift_max > resort_drift:
            _sort_neighbours(centres, order, sorted_gaps, drift)
            drift_max = 0.0
        # Neighbours.local_bounds and Neighbours.half_gap, for the sorted rows.
        for a in range(k):
            largest = 0.0
            for j in range(min(near, k)):
                c = order[a, j]
                if c != a:
                    largest = max(largest, shift[c])
            near_shift[a] = largest
            if near >= k:
                far_gap[a] = np.inf
            else:
                far_gap[a] = sorted_gaps[a, near] - drift[a] - drift_max
            if k < 2:
                half_gap[a] = np.inf
            else:
                half_gap[a] = 0.5 * max(sorted_gaps[a, 1] - (drift[a] + drift_max), 0.0)
        _hamerly_range(0, n, points, centres, labels, upper, lower, True, shift, near_shift,
                       far_gap, half_gap, order, sorted_gaps, drift, drift_max, margin,
                       previous)
        moved = 0
        for i in range(n):
            old = previous[i]
            if old >= 0:
                moved += 1
                new = labels[i]
                w = weights[i]
                mass[old] -= w
                mass[new] += w
                for d in range(dim):
                    # Integer sums: exact in any order, as the numpy path's bincounts.
                    if point_sums.shape[0] == n:
                        value = point_sums[i, d]
                    else:
                        value = w * points[i, d]
                    sums[old, d] -= value
                    sums[new, d] += value
        # The sum of squared shifts in centre order, as kmeans._sequential_sum.
        total = 0.0
        for c in range(k):
            total += shift[c] * shift[c]
        if moved == 0 or total <= threshold:
            return iteration + 1, True
    return max_iter, True


def lloyd_loop(points, weights, point_sums, labels, upper, lower, centres, sums, mass, first,
               max_iter, threshold, margin, resort_drift, near):
    """Lloyd iterations ``first`` .. ``max_iter - 1`` of :func:`kpal.cluster.kmeans.lloyd`.

    Each iteration moves the centres to ``sums / mass``, updates the bounds and
    reassigns the points (:func:`hamerly_step`: exact labels), then moves the
    points that changed cluster between the integer sums, in place. The
    neighbour rows are sorted again once a centre drifted ``resort_drift``
    since the last sort; that only changes which centres are skipped, never a
    label, so every array matches the numpy path's loop.

    Returns
    -------
    n_iter : int
        Iterations run in all (``first`` included).
    done : bool
        False when a cluster is empty at the start of iteration ``n_iter``:
        the caller reseeds it and calls again from there.
    """
    previous = np.empty(points.shape[0], dtype=np.int32)
    if point_sums is None:
        point_sums = np.empty((0, points.shape[1]))
    return _lloyd(points, weights, point_sums, labels, upper, lower, centres, sums, mass, first,
                  max_iter, threshold, margin, resort_drift, near, previous)


@njit(cache=True, nogil=True)
def _pick(cumulative, mass, target):
    # np.searchsorted(cumulative, target, side="right"), then the zero-mass rule
    # of kpal.cluster.init._weighted_pick.
    lo, hi = 0, cumulative.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if cumulative[mid] <= target:
            lo = mid + 1
        else:
            hi = mid
    n = mass.shape[0]
    picked = min(lo, n - 1)
    if mass[picked] <= 0:
        last = -1
        for i in range(n):
            if mass[i] > 0:
                last = i
                if i >= picked:
                    return i
        if last >= 0:
            return last
    return picked


@njit(cache=True, nogil=True)
def _plusplus(points, weights, k, draws, trials, centres):
    n, dim = points.shape
    cumulative = np.empty(n)
    total = 0.0
    for i in range(n):
        total += weights[i]
        cumulative[i] = total
    first = _pick(cumulative, weights, draws[0] * cumulative[n - 1])
    for d in range(dim):
        centres[0, d] = points[first, d]
    closest = np.empty(n)
    mass = np.empty(n)
    total = 0.0
    for i in range(n):
        closest[i] = _squared(points, i, centres, 0)
        mass[i] = weights[i] * closest[i]
        total += mass[i]
        cumulative[i] = total
    trial = np.empty((trials, n))
    candidate = np.empty(dim)
    for c in range(1, k):
        best = -1
        best_potential = np.inf
        best_point = -1
        for t in range(trials):
            picked = _pick(cumulative, mass, draws[1 + (c - 1) * trials + t] * cumulative[n - 1])
            for d in range(dim):
                candidate[d] = np.float64(points[picked, d])
            total = 0.0
            for i in range(n):
                # The order of kpal.cluster.init.squared_distances: 0 + d0**2 + d1**2 + ...
                sq = 0.0
                for d in range(dim):
                    diff = points[i, d] - candidate[d]
                    sq += diff * diff
                value = min(closest[i], sq)
                trial[t, i] = value
                total += value * weights[i]
            if total < best_potential:  # np.argmin: the first least
                best_potential = total
                best = t
                best_point = picked
        # The winner's masses and running sums again: the same terms, the same bits.
        total = 0.0
        for i in range(n):
            closest[i] = trial[best, i]
            mass[i] = closest[i] * weights[i]
            total += mass[i]
            cumulative[i] = total
        for d in range(dim):
            centres[c, d] = points[best_point, d]


def kmeans_plusplus(points: np.ndarray, weights: np.ndarray, k: int, draws: np.ndarray,
                    trials: int) -> np.ndarray:
    """:func:`kpal.cluster.init.kmeans_plusplus` from its uniform ``draws``: the same centres.

    Every distance and running sum adds the same float64 terms in the same
    order as the numpy path, and ties go to the first candidate, as
    ``np.argmin`` does, so the chosen points are the same.
    """
    centres = np.empty((k, points.shape[1]), dtype=np.float64)
    _plusplus(np.ascontiguousarray(points), np.ascontiguousarray(weights), k, draws, trials,
              centres)
    return centres


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
        distances[i] = np.float64(best_sq)  # exact: at most 3 * 255**2


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
    distances = np.empty(colors.shape[0], dtype=np.float64)  # written as float64: no copy
    _nearest_palette(np.ascontiguousarray(colors), np.ascontiguousarray(palette),
                     np.ascontiguousarray(hint), order, sorted_gaps, labels,
                     distances)
    return labels, distances


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


@njit(cache=True, nogil=True)
def _fill(colors, values, table):
    for i in range(colors.shape[0]):
        table[(np.uint32(colors[i, 0]) << 16) | (np.uint32(colors[i, 1]) << 8)
              | np.uint32(colors[i, 2])] = values[i]


def map_pixels(pixels: np.ndarray, colors: np.ndarray, values: np.ndarray) -> np.ndarray:
    """:func:`kpal.cluster.histogram.map_pixels` for (n_pixels, 3) uint8 pixels."""
    values = np.asarray(values)
    # Only the entries of the image's colours are ever read: no need to clear 16 MiB.
    table = np.empty(N_PACKED, dtype=values.dtype)
    # Filled in a loop: no packed copy of the colours (4 bytes each) beside the labels.
    _fill(np.ascontiguousarray(colors), np.ascontiguousarray(values), table)
    out = np.empty(pixels.shape[0], dtype=values.dtype)
    _lookup(np.ascontiguousarray(pixels), table, out)
    return out
