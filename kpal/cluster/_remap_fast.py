"""Compiled remap kernels (numba, ``kpal[fast]``): the same labels as remap.py's numpy paths.

The numpy paths in :mod:`kpal.cluster.remap` work on whole arrays: the exact
nearest colour through the histogram of distinct colours, and the banded
error diffusion one pixel of every band per step. Under numba a loop per
pixel is the fastest form, so these kernels walk the pixels in order: one
band after another for the error diffusion, one row after another for the
nearest colour and ordered dithering. Bands (and rows) are independent, so
they are shared among threads in contiguous blocks with the labels unchanged.

Both paths compute in integers (fixed point for the diffusion) and pick the
nearest colour by exact integer squared distance, ties to the lowest index,
so they agree bit for bit. What makes the loop fast at ``k = 256`` is the
search: the RGB cube is cut into 32 x 32 x 32 cells, and each cell lists, in
index order, the palette colours that can be nearest to some point of it. A
colour is left out when its least distance to the cell exceeds the smallest
greatest distance of any colour to it, or when another colour is at least as
near at every point of the cell (``d(v, i) - d(v, j)`` is linear in ``v``, so
one corner of the cell decides; a tie counts for the lower index). A cell
that still lists more than :data:`_SPLIT_ABOVE` colours (where a photo's
palette is dense) is cut in 4 x 4 x 4 sub-cells, each pruned the same way
from the cell's list. A pixel then compares itself with the two or three
colours of its (sub-)cell only.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

__all__ = ["build_grid", "contrast_weights", "diffuse", "diffuse_rgba", "offset_nearest",
           "oklab_table", "ordered_rgba"]

#: Fixed point of the diffusion (as remap.py): 1/64ths of a level.
_FRAC_BITS = 6
_TOP = 255 << _FRAC_BITS
#: Cells of the search grid: 32 per channel, each 512 fixed-point units (8 levels).
_CELL_BITS = 9
_CELLS = 32
#: A cell with more candidates than this is cut in _SUBS ** 3 sub-cells.
_SPLIT_ABOVE = 4
_SUB_BITS = 2
_SUBS = 1 << _SUB_BITS
_SUB_SHIFT = _CELL_BITS - _SUB_BITS
_SUB_MASK = _SUBS - 1
#: Oklab table (remap.oklab_table): 65 levels per channel, cell (v + 128) >> 8.
_LUT_SIDE = 65


@njit(cache=True, nogil=True)
def _prune(colours: np.ndarray, pool: np.ndarray, n: int, lo: np.ndarray, hi: np.ndarray,
           near: np.ndarray, loose: np.ndarray, out: np.ndarray, total: int) -> int:
    """Append to ``out[total:]`` the colours of ``pool[:n]`` that can be nearest in a box.

    The box is ``lo[c] <= v[c] <= hi[c]`` (fixed point, inclusive). First a
    colour whose least distance to the box exceeds the smallest greatest
    distance of any colour to it is dropped; then pairwise:
    ``d(v, i) - d(v, j)`` is linear in ``v``, so its least value over the box
    is at a corner, and when it is above zero (or zero, with ``j`` the lower
    index, which wins ties) ``i`` is never the nearest. Returns the new total;
    the kept colours stay in ascending order.
    """
    bound = np.int64(1) << 62
    closest = pool[0]
    for a in range(n):
        i = pool[a]
        least = np.int64(0)
        most = np.int64(0)
        for ch in range(3):
            c = colours[i, ch]
            gap = max(lo[ch] - c, 0, c - hi[ch])
            least += gap * gap
            far = max(abs(c - lo[ch]), abs(c - hi[ch]))
            most += far * far
        near[a] = least
        if most < bound:
            bound = most
            closest = i
    m = 0
    for a in range(n):
        if near[a] <= bound:
            loose[m] = pool[a]
            m += 1
    for a in range(m):
        i = loose[a]
        dominated = False
        for b in range(-1, m):
            j = closest if b < 0 else loose[b]
            if j == i or (b >= 0 and j == closest):
                continue
            low = np.int64(0)
            for ch in range(3):
                ci = colours[i, ch]
                cj = colours[j, ch]
                corner = lo[ch] if cj > ci else hi[ch]
                low += 2 * corner * (cj - ci) + ci * ci - cj * cj
            if low > 0 or (low == 0 and j < i):
                dominated = True
                break
        if not dominated:
            out[total] = i
            total += 1
    return total


@njit(cache=True, nogil=True)
def build_grid(colours: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate lists of the search grid for ``colours`` (int64, fixed point, shape (k, 3)).

    Returns ``(offsets, candidates, split)``. A cell ``c`` with
    ``split[c] < 0`` lists ``candidates[offsets[c]:offsets[c + 1]]``
    (ascending palette indices); a cell with more than :data:`_SPLIT_ABOVE`
    candidates is cut in ``_SUBS ** 3`` sub-cells, listed from node
    ``split[c]`` on (node ``split[c] + sub-cell``, in the same arrays).
    """
    k = colours.shape[0]
    n_cells = _CELLS * _CELLS * _CELLS
    subs = _SUBS * _SUBS * _SUBS
    split = np.full(n_cells, -1, dtype=np.int64)
    starts = np.zeros(n_cells + 1, dtype=np.int64)
    cell_lists = np.empty(n_cells * min(k, 64), dtype=np.uint8)
    everyone = np.arange(k)
    near = np.empty(k, dtype=np.int64)
    loose = np.empty(k, dtype=np.int64)
    lo = np.empty(3, dtype=np.int64)
    hi = np.empty(3, dtype=np.int64)
    size = 1 << _CELL_BITS
    sub_size = size // _SUBS
    total = 0
    n_split = 0
    for cell in range(n_cells):
        lo[0] = (cell // (_CELLS * _CELLS)) * size
        lo[1] = ((cell // _CELLS) % _CELLS) * size
        lo[2] = (cell % _CELLS) * size
        for ch in range(3):
            hi[ch] = min(lo[ch] + size - 1, _TOP)
        if total + k > cell_lists.shape[0]:
            grown = np.empty(2 * cell_lists.shape[0] + k, dtype=np.uint8)
            grown[:total] = cell_lists[:total]
            cell_lists = grown
        total = _prune(colours, everyone, k, lo, hi, near, loose, cell_lists, total)
        starts[cell + 1] = total
        if total - starts[cell] > _SPLIT_ABOVE:
            split[cell] = n_cells + n_split * subs
            n_split += 1
    n_nodes = n_cells + n_split * subs
    offsets = np.zeros(n_nodes + 1, dtype=np.int64)
    lists = np.empty(total + n_split * subs * min(k, 64), dtype=np.uint8)
    lists[:total] = cell_lists[:total]
    offsets[: n_cells + 1] = starts
    pool = np.empty(k, dtype=np.int64)
    for cell in range(n_cells):
        node = split[cell]
        if node < 0:
            continue
        n = 0
        for j in range(starts[cell], starts[cell + 1]):
            pool[n] = cell_lists[j]
            n += 1
        base0 = (cell // (_CELLS * _CELLS)) * size
        base1 = ((cell // _CELLS) % _CELLS) * size
        base2 = (cell % _CELLS) * size
        for sub in range(subs):
            lo[0] = base0 + (sub // (_SUBS * _SUBS)) * sub_size
            lo[1] = base1 + ((sub // _SUBS) % _SUBS) * sub_size
            lo[2] = base2 + (sub % _SUBS) * sub_size
            for ch in range(3):
                hi[ch] = min(lo[ch] + sub_size - 1, _TOP)
            if lo[0] > _TOP or lo[1] > _TOP or lo[2] > _TOP:
                offsets[node + sub + 1] = total  # beyond the top level: never read
                continue
            if total + n > lists.shape[0]:
                grown = np.empty(2 * lists.shape[0] + n, dtype=np.uint8)
                grown[:total] = lists[:total]
                lists = grown
            total = _prune(colours, pool, n, lo, hi, near, loose, lists, total)
            offsets[node + sub + 1] = total
    return offsets, lists[:total].copy(), split


@njit(cache=True, nogil=True, inline="always")
def _nearest(v0: np.int64, v1: np.int64, v2: np.int64, colours: np.ndarray,
             offsets: np.ndarray, lists: np.ndarray, split: np.ndarray) -> int:
    """Exact nearest colour of a fixed-point value, ties to the lowest index."""
    node = (((v0 >> _CELL_BITS) * _CELLS) + (v1 >> _CELL_BITS)) * _CELLS + (v2 >> _CELL_BITS)
    first = split[node]
    if first >= 0:
        node = first + (((((v0 >> _SUB_SHIFT) & _SUB_MASK) * _SUBS)
                         + ((v1 >> _SUB_SHIFT) & _SUB_MASK)) * _SUBS
                        + ((v2 >> _SUB_SHIFT) & _SUB_MASK))
    best = -1
    best_d = np.int64(1) << 62
    for j in range(offsets[node], offsets[node + 1]):
        i = np.int64(lists[j])
        d0 = v0 - colours[i, 0]
        d1 = v1 - colours[i, 1]
        d2 = v2 - colours[i, 2]
        d = d0 * d0 + d1 * d1 + d2 * d2
        if d < best_d:
            best_d = d
            best = i
    return best


@njit(cache=True, nogil=True, inline="always")
def _pick(v0: np.int64, v1: np.int64, v2: np.int64, colours: np.ndarray, offsets: np.ndarray,
          lists: np.ndarray, split: np.ndarray, lut: np.ndarray, use_lut: bool) -> int:
    """The exact RGB nearest colour, or the Oklab table's entry for the value."""
    if use_lut:
        cell = ((((v0 + 128) >> 8) * _LUT_SIDE) + ((v1 + 128) >> 8)) * _LUT_SIDE
        return np.int64(lut[cell + ((v2 + 128) >> 8)])
    return _nearest(v0, v1, v2, colours, offsets, lists, split)


@njit(cache=True, nogil=True)
def _offset_rows(pixels: np.ndarray, tile: np.ndarray, dy: int, dx: int, colours: np.ndarray,
                 offsets: np.ndarray, lists: np.ndarray, split: np.ndarray, lut: np.ndarray,
                 use_lut: bool, start: int, stop: int, labels: np.ndarray) -> None:
    width = pixels.shape[1]
    side_y, side_x = tile.shape[0], tile.shape[1]
    for y in range(start, stop):
        ty = (y + dy) % side_y
        for x in range(width):
            tx = (x + dx) % side_x
            v0 = min(max(np.int64(pixels[y, x, 0]) + tile[ty, tx, 0], 0), 255) << _FRAC_BITS
            v1 = min(max(np.int64(pixels[y, x, 1]) + tile[ty, tx, 1], 0), 255) << _FRAC_BITS
            v2 = min(max(np.int64(pixels[y, x, 2]) + tile[ty, tx, 2], 0), 255) << _FRAC_BITS
            labels[y, x] = _pick(v0, v1, v2, colours, offsets, lists, split, lut, use_lut)


@njit(cache=True, nogil=True, inline="always")
def _shortened(e0: np.int64, e1: np.int64, e2: np.int64, cap: int) -> tuple:
    """A pixel's error, cut to 3/4 (rounded) when its squared length exceeds ``cap``."""
    if e0 * e0 + e1 * e1 + e2 * e2 > cap:
        return (3 * e0 + 2) >> 2, (3 * e1 + 2) >> 2, (3 * e2 + 2) >> 2
    return e0, e1, e2


@njit(cache=True, nogil=True, inline="always")
def _weights(s: int) -> tuple:
    """Floyd-Steinberg's 7/16 ahead, 3/16 behind, 5/16 under and 1/16 before, in
    4096ths for a strength ``s`` in 256ths, and the half for rounding them."""
    return (np.int64(7 * s), np.int64(3 * s), np.int64(5 * s), np.int64(1 * s),
            np.int64(1 << 11))


@njit(cache=True, nogil=True, inline="always")
def _band_rows(band: int, band_rows: int, height: int, warmup_rows: int, warm: np.ndarray,
               below: np.ndarray) -> tuple:
    """First row to scan, first row kept and row after the last of ``band``; ``below``
    set to the error the band starts with (none, or the warm-up noise)."""
    keep_start = band * band_rows
    keep_stop = min(keep_start + band_rows, height)
    if band == 0:
        below[:, :] = 0
        return 0, keep_start, keep_stop
    below[:, :] = warm[band - 1]
    return keep_start - warmup_rows, keep_start, keep_stop


@njit(cache=True, nogil=True, inline="always")
def _next_row(errors: np.ndarray, below: np.ndarray, forward: bool, w_under: np.int64,
              w_behind: np.int64, w_before: np.int64, half: np.int64) -> None:
    """The next row's error: 5/16 from above, 3/16 from the pixel above scanned
    after it, 1/16 from the one scanned before (weights in 4096ths)."""
    width = errors.shape[0]
    step = 1 if forward else -1
    for x in range(width):
        for ch in range(3):
            total = (errors[x, ch] * w_under + half) >> 12
            after = x + step
            if 0 <= after < width:
                total += (errors[after, ch] * w_behind + half) >> 12
            prior = x - step
            if 0 <= prior < width:
                total += (errors[prior, ch] * w_before + half) >> 12
            below[x, ch] = total


@njit(cache=True, nogil=True)
def _diffuse_bands(pixels: np.ndarray, colours: np.ndarray, offsets: np.ndarray,
                   lists: np.ndarray, split: np.ndarray, lut: np.ndarray, use_lut: bool,
                   weights: np.ndarray,
                   adaptive: bool, warm: np.ndarray, s: int, cap: int, band_rows: int,
                   warmup_rows: int, limit: int, b0: int, b1: int, labels: np.ndarray) -> None:
    height, width = pixels.shape[0], pixels.shape[1]
    below = np.zeros((width, 3), dtype=np.int64)
    errors = np.zeros((width, 3), dtype=np.int64)
    ahead, w_behind, w_under, w_before, half = _weights(s)
    for band in range(b0, b1):
        start, keep_start, keep_stop = _band_rows(band, band_rows, height, warmup_rows, warm,
                                                  below)
        for y in range(start, keep_stop):
            forward = y % 2 == 0
            c0 = np.int64(0)
            c1 = np.int64(0)
            c2 = np.int64(0)
            for i in range(width):
                x = i if forward else width - 1 - i
                a = np.int64(weights[y, x]) if adaptive else np.int64(256)
                v0 = (np.int64(pixels[y, x, 0]) << _FRAC_BITS)
                v1 = (np.int64(pixels[y, x, 1]) << _FRAC_BITS)
                v2 = (np.int64(pixels[y, x, 2]) << _FRAC_BITS)
                if adaptive:
                    v0 += (a * below[x, 0] + 128) >> 8
                    v1 += (a * below[x, 1] + 128) >> 8
                    v2 += (a * below[x, 2] + 128) >> 8
                    if i > 0:
                        v0 += (a * c0 + 128) >> 8
                        v1 += (a * c1 + 128) >> 8
                        v2 += (a * c2 + 128) >> 8
                else:
                    v0 += below[x, 0] + c0
                    v1 += below[x, 1] + c1
                    v2 += below[x, 2] + c2
                if limit > 0:
                    p0 = np.int64(pixels[y, x, 0]) << _FRAC_BITS
                    p1 = np.int64(pixels[y, x, 1]) << _FRAC_BITS
                    p2 = np.int64(pixels[y, x, 2]) << _FRAC_BITS
                    r0 = v0 - p0
                    r1 = v1 - p1
                    r2 = v2 - p2
                    while r0 * r0 + r1 * r1 + r2 * r2 > limit:
                        r0 = (3 * r0 + 2) >> 2
                        r1 = (3 * r1 + 2) >> 2
                        r2 = (3 * r2 + 2) >> 2
                    v0 = p0 + r0
                    v1 = p1 + r1
                    v2 = p2 + r2
                v0 = min(max(v0, 0), _TOP)
                v1 = min(max(v1, 0), _TOP)
                v2 = min(max(v2, 0), _TOP)
                best = _pick(v0, v1, v2, colours, offsets, lists, split, lut, use_lut)
                e0, e1, e2 = _shortened(v0 - colours[best, 0], v1 - colours[best, 1],
                                        v2 - colours[best, 2], cap)
                errors[x, 0] = e0
                errors[x, 1] = e1
                errors[x, 2] = e2
                c0 = (e0 * ahead + half) >> 12
                c1 = (e1 * ahead + half) >> 12
                c2 = (e2 * ahead + half) >> 12
                if y >= keep_start:
                    labels[y, x] = best
            _next_row(errors, below, forward, w_under, w_behind, w_before, half)


@njit(cache=True, nogil=True)
def _window(values: np.ndarray, take_max: bool) -> np.ndarray:
    """3 x 3 running max (or min) with the border replicated, separably."""
    height, width = values.shape
    rows = np.empty_like(values)
    for y in range(height):
        for x in range(width):
            left = values[y, max(x - 1, 0)]
            right = values[y, min(x + 1, width - 1)]
            if take_max:
                rows[y, x] = max(max(left, values[y, x]), right)
            else:
                rows[y, x] = min(min(left, values[y, x]), right)
    out = np.empty_like(values)
    for y in range(height):
        up = max(y - 1, 0)
        down = min(y + 1, height - 1)
        for x in range(width):
            if take_max:
                out[y, x] = max(max(rows[up, x], rows[y, x]), rows[down, x])
            else:
                out[y, x] = min(min(rows[up, x], rows[y, x]), rows[down, x])
    return out


@njit(cache=True, nogil=True)
def contrast_weights(pixels: np.ndarray, full: int) -> np.ndarray:
    """remap.py's contrast map, in the same integers: weights in 256ths, shape (h, w), int32."""
    height, width = pixels.shape[0], pixels.shape[1]
    luma = np.empty((height, width), dtype=np.int32)
    for y in range(height):
        for x in range(width):
            luma[y, x] = (77 * np.int32(pixels[y, x, 0]) + 150 * np.int32(pixels[y, x, 1])
                          + 29 * np.int32(pixels[y, x, 2]))
    high = _window(luma, True)
    low = _window(luma, False)
    for y in range(height):
        for x in range(width):
            high[y, x] = min(max(256 - ((high[y, x] - low[y, x]) * 256) // full, 0), 256)
    return _window(high, False)


@njit(cache=True, nogil=True)
def oklab_table(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """remap.oklab_table's argmin, the same float64 operations in the same order."""
    n, k = points.shape[0], centres.shape[0]
    out = np.empty(n, dtype=np.uint8)
    for i in range(n):
        best = 0
        best_d = np.inf
        for j in range(k):
            d0 = points[i, 0] - centres[j, 0]
            d1 = points[i, 1] - centres[j, 1]
            d2 = points[i, 2] - centres[j, 2]
            d = d0 * d0
            d = d + d1 * d1
            d = d + d2 * d2
            if d < best_d:
                best_d = d
                best = j
        out[i] = best
    return out


def _blocks(n: int, threads: int) -> list[tuple[int, int]]:
    """``n`` items in at most ``threads`` contiguous blocks."""
    parts = max(1, min(threads, n))
    edges = [n * i // parts for i in range(parts + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def _run(task, blocks: list[tuple[int, int]]) -> None:  # noqa: ANN001
    if len(blocks) == 1:
        task(*blocks[0])
        return
    with ThreadPoolExecutor(len(blocks)) as pool:
        for future in [pool.submit(task, a, b) for a, b in blocks]:
            future.result()


def _grid(palette: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    colours = palette.astype(np.int64) << _FRAC_BITS
    offsets, lists, split = build_grid(colours)
    return colours, offsets, lists, split


def _search(palette: np.ndarray, lut: np.ndarray | None) -> tuple:
    """Arguments of :func:`_pick`: the RGB grid, or only the Oklab table."""
    if lut is None:
        return (*_grid(palette), np.zeros(1, dtype=np.uint8), False)
    colours = palette.astype(np.int64) << _FRAC_BITS
    empty = np.zeros(1, dtype=np.int64)
    return colours, empty, np.zeros(1, dtype=np.uint8), empty, np.ascontiguousarray(lut), True


def offset_nearest(pixels: np.ndarray, palette: np.ndarray, tile: np.ndarray,
                   shift: tuple[int, int], threads: int,
                   lut: np.ndarray | None = None) -> np.ndarray:
    """Nearest colour of ``clip(pixel + tile[(y + dy) % side, (x + dx) % side])`` per pixel.

    A (1, 1, 3) zero tile gives the plain nearest colour; ``lut`` (Oklab
    table) replaces the exact RGB search.
    """
    height, width = pixels.shape[:2]
    search = _search(palette, lut)
    labels = np.empty((height, width), dtype=np.uint8)
    tile64 = tile.astype(np.int64)
    dy, dx = int(shift[0]), int(shift[1])

    def task(start: int, stop: int) -> None:
        _offset_rows(pixels, tile64, dy, dx, *search, start, stop, labels)

    _run(task, _blocks(height, threads))
    return labels


def diffuse(pixels: np.ndarray, palette: np.ndarray, weights: np.ndarray | None,
            warm: np.ndarray, s: int, cap: int, band_rows: int, warmup_rows: int,
            n_bands: int, threads: int, lut: np.ndarray | None = None,
            limit: int = 0) -> np.ndarray:
    """The banded fixed-point diffusion of remap.py, one band after another.

    ``limit > 0``: the received error is shortened by 3/4 until its squared
    length is at most ``limit`` (remap.py's ``_shorten``).
    """
    height, width = pixels.shape[:2]
    search = _search(palette, lut)
    labels = np.empty((height, width), dtype=np.uint8)
    adaptive = weights is not None
    weight_map = weights if adaptive else np.zeros((1, 1), dtype=np.int32)
    warm64 = np.ascontiguousarray(warm, dtype=np.int64)

    def task(b0: int, b1: int) -> None:
        _diffuse_bands(pixels, *search, weight_map, adaptive, warm64, s, cap,
                       band_rows, warmup_rows, limit, b0, b1, labels)

    _run(task, _blocks(n_bands, threads))
    return labels


# -- transparency (RGBA): remap.py's remap_rgba, pixel by pixel ---------------


@njit(cache=True, nogil=True, inline="always")
def rgba_score(v0: np.int64, v1: np.int64, v2: np.int64, alpha: np.int64, q: np.ndarray,
               entry_alpha: np.ndarray, j: np.int64, best_score: np.int64) -> np.int64:
    """The score of entry ``j`` for a pixel of premultiplied colour ``(v0, v1, v2)``
    (``c·a``) and alpha ``alpha``: the squared errors of the composites over black
    and over white, summed. Stops at a partial sum of ``best_score`` or more (the
    partial sums only grow) and returns that partial sum: the entry cannot win."""
    shift = 255 * (alpha - entry_alpha[j])
    d = v0 - q[j, 0]
    score = d * d
    d -= shift
    score += d * d
    if score >= best_score:
        return score
    d = v1 - q[j, 1]
    score += d * d
    d -= shift
    score += d * d
    if score >= best_score:
        return score
    d = v2 - q[j, 2]
    score += d * d
    d -= shift
    return score + d * d


@njit(cache=True, nogil=True, inline="always")
def _nearest_rgba(v0: np.int64, v1: np.int64, v2: np.int64, alpha: np.int64, q: np.ndarray,
                  entry_alpha: np.ndarray, opaque: np.ndarray, transparent: int) -> int:
    """remap.py's ``_RgbaEntries.nearest`` for one pixel: exact, ties to the lowest index."""
    if alpha == 0 and transparent >= 0:
        return transparent
    only_opaque = alpha == 255
    best = 0
    best_score = np.int64(1) << 60  # above any score, and twice it fits in int64
    for j in range(q.shape[0]):
        if only_opaque and not opaque[j]:
            continue
        shift = 255 * (alpha - entry_alpha[j])
        # Per channel e**2 + (e - shift)**2 >= shift**2 / 2: an entry whose alpha
        # is too far cannot be strictly nearer (a tie keeps the lower index).
        if 3 * shift * shift >= 2 * best_score:
            continue
        score = rgba_score(v0, v1, v2, alpha, q, entry_alpha, j, best_score)
        if score < best_score:
            best_score = score
            best = j
    return best


@njit(cache=True, nogil=True)
def _ordered_rgba_rows(pixels: np.ndarray, tile: np.ndarray, dy: int, dx: int, q: np.ndarray,
                       entry_alpha: np.ndarray, opaque: np.ndarray, transparent: int,
                       start: int, stop: int, labels: np.ndarray) -> None:
    width = pixels.shape[1]
    side_y, side_x = tile.shape[0], tile.shape[1]
    for y in range(start, stop):
        ty = (y + dy) % side_y
        for x in range(width):
            tx = (x + dx) % side_x
            a = np.int64(pixels[y, x, 3])
            top = 255 * a
            v0 = min(max(np.int64(pixels[y, x, 0]) * a + 255 * tile[ty, tx, 0], 0), top)
            v1 = min(max(np.int64(pixels[y, x, 1]) * a + 255 * tile[ty, tx, 1], 0), top)
            v2 = min(max(np.int64(pixels[y, x, 2]) * a + 255 * tile[ty, tx, 2], 0), top)
            labels[y, x] = _nearest_rgba(v0, v1, v2, a, q, entry_alpha, opaque, transparent)


@njit(cache=True, nogil=True)
def _diffuse_rgba_bands(pixels: np.ndarray, q: np.ndarray, entry_alpha: np.ndarray,
                        opaque: np.ndarray, transparent: int, warm: np.ndarray, s: int,
                        cap: int, band_rows: int, warmup_rows: int, b0: int, b1: int,
                        labels: np.ndarray) -> None:
    height, width = pixels.shape[0], pixels.shape[1]
    below = np.zeros((width, 3), dtype=np.int64)
    errors = np.zeros((width, 3), dtype=np.int64)
    ahead, w_behind, w_under, w_before, half = _weights(s)
    for band in range(b0, b1):
        start, keep_start, keep_stop = _band_rows(band, band_rows, height, warmup_rows, warm,
                                                  below)
        for y in range(start, keep_stop):
            forward = y % 2 == 0
            c0 = np.int64(0)
            c1 = np.int64(0)
            c2 = np.int64(0)
            for i in range(width):
                x = i if forward else width - 1 - i
                a = np.int64(pixels[y, x, 3])
                top = 255 * a
                v0 = np.int64(pixels[y, x, 0]) * a + below[x, 0] + c0
                v1 = np.int64(pixels[y, x, 1]) * a + below[x, 1] + c1
                v2 = np.int64(pixels[y, x, 2]) * a + below[x, 2] + c2
                v0 = min(max(v0, 0), top)
                v1 = min(max(v1, 0), top)
                v2 = min(max(v2, 0), top)
                best = _nearest_rgba(v0, v1, v2, a, q, entry_alpha, opaque, transparent)
                if a == 0:
                    e0 = np.int64(0)
                    e1 = np.int64(0)
                    e2 = np.int64(0)
                else:
                    e0, e1, e2 = _shortened(v0 - q[best, 0], v1 - q[best, 1], v2 - q[best, 2],
                                            cap)
                errors[x, 0] = e0
                errors[x, 1] = e1
                errors[x, 2] = e2
                c0 = (e0 * ahead + half) >> 12
                c1 = (e1 * ahead + half) >> 12
                c2 = (e2 * ahead + half) >> 12
                if y >= keep_start:
                    labels[y, x] = best
            _next_row(errors, below, forward, w_under, w_behind, w_before, half)


def ordered_rgba(pixels: np.ndarray, tile: np.ndarray, shift: tuple[int, int], q: np.ndarray,
                 entry_alpha: np.ndarray, opaque: np.ndarray, transparent: int,
                 threads: int) -> np.ndarray:
    """remap.py's ordered RGBA dithering, one row after another (rows shared among threads)."""
    height, width = pixels.shape[:2]
    labels = np.empty((height, width), dtype=np.uint8)
    tile64 = tile.astype(np.int64)
    dy, dx = int(shift[0]), int(shift[1])

    def task(start: int, stop: int) -> None:
        _ordered_rgba_rows(pixels, tile64, dy, dx, q, entry_alpha, opaque, transparent,
                           start, stop, labels)

    _run(task, _blocks(height, threads))
    return labels


def diffuse_rgba(pixels: np.ndarray, q: np.ndarray, entry_alpha: np.ndarray,
                 opaque: np.ndarray, transparent: int, warm: np.ndarray, s: int, cap: int,
                 band_rows: int, warmup_rows: int, n_bands: int, threads: int) -> np.ndarray:
    """remap.py's banded RGBA diffusion, one band after another (bands shared among threads)."""
    height, width = pixels.shape[:2]
    labels = np.empty((height, width), dtype=np.uint8)
    warm64 = np.ascontiguousarray(warm, dtype=np.int64)

    def task(b0: int, b1: int) -> None:
        _diffuse_rgba_bands(pixels, q, entry_alpha, opaque, transparent, warm64, s, cap,
                            band_rows, warmup_rows, b0, b1, labels)

    _run(task, _blocks(n_bands, threads))
    return labels
