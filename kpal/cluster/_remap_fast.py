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
index order, the palette colours that can be nearest to some point of it (a
colour whose least distance to the cell exceeds the smallest greatest
distance of any colour to the cell never can). A pixel then compares itself
with the few colours of its cell only.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

__all__ = ["build_grid", "contrast_weights", "diffuse", "offset_nearest", "oklab_table"]

#: Fixed point of the diffusion (as remap.py): 1/64ths of a level.
_FRAC_BITS = 6
_TOP = 255 << _FRAC_BITS
#: Cells of the search grid: 32 per channel, each 512 fixed-point units (8 levels).
_CELL_BITS = 9
_CELLS = 32
#: Oklab table (remap.oklab_table): 65 levels per channel, cell (v + 128) >> 8.
_LUT_SIDE = 65


@njit(cache=True, nogil=True)
def build_grid(colours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate lists of the search grid for ``colours`` (int64, fixed point, shape (k, 3)).

    Returns ``(offsets, candidates)``: cell ``c`` lists
    ``candidates[offsets[c]:offsets[c + 1]]``, ascending palette indices.
    """
    k = colours.shape[0]
    n_cells = _CELLS * _CELLS * _CELLS
    offsets = np.zeros(n_cells + 1, dtype=np.int64)
    lists = np.empty(n_cells * k, dtype=np.uint8)
    near = np.empty(k, dtype=np.int64)
    size = 1 << _CELL_BITS
    total = 0
    for cell in range(n_cells):
        r = cell // (_CELLS * _CELLS)
        g = (cell // _CELLS) % _CELLS
        b = cell % _CELLS
        bound = np.int64(1) << 62
        for i in range(k):
            least = np.int64(0)
            most = np.int64(0)
            for channel, index in ((0, r), (1, g), (2, b)):
                lo = np.int64(index * size)
                hi = min(lo + size - 1, _TOP)
                c = colours[i, channel]
                gap = max(lo - c, 0, c - hi)
                least += gap * gap
                far = max(abs(c - lo), abs(c - hi))
                most += far * far
            near[i] = least
            bound = min(bound, most)
        for i in range(k):
            if near[i] <= bound:
                lists[total] = i
                total += 1
        offsets[cell + 1] = total
    return offsets, lists[:total].copy()


@njit(cache=True, nogil=True, inline="always")
def _nearest(v0: np.int64, v1: np.int64, v2: np.int64, colours: np.ndarray,
             offsets: np.ndarray, lists: np.ndarray) -> int:
    """Exact nearest colour of a fixed-point value, ties to the lowest index."""
    cell = (((v0 >> _CELL_BITS) * _CELLS) + (v1 >> _CELL_BITS)) * _CELLS + (v2 >> _CELL_BITS)
    best = -1
    best_d = np.int64(1) << 62
    for j in range(offsets[cell], offsets[cell + 1]):
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
          lists: np.ndarray, lut: np.ndarray, use_lut: bool) -> int:
    """The exact RGB nearest colour, or the Oklab table's entry for the value."""
    if use_lut:
        cell = ((((v0 + 128) >> 8) * _LUT_SIDE) + ((v1 + 128) >> 8)) * _LUT_SIDE
        return np.int64(lut[cell + ((v2 + 128) >> 8)])
    return _nearest(v0, v1, v2, colours, offsets, lists)


@njit(cache=True, nogil=True)
def _offset_rows(pixels: np.ndarray, tile: np.ndarray, dy: int, dx: int, colours: np.ndarray,
                 offsets: np.ndarray, lists: np.ndarray, lut: np.ndarray, use_lut: bool,
                 start: int, stop: int, labels: np.ndarray) -> None:
    width = pixels.shape[1]
    side_y, side_x = tile.shape[0], tile.shape[1]
    for y in range(start, stop):
        ty = (y + dy) % side_y
        for x in range(width):
            tx = (x + dx) % side_x
            v0 = min(max(np.int64(pixels[y, x, 0]) + tile[ty, tx, 0], 0), 255) << _FRAC_BITS
            v1 = min(max(np.int64(pixels[y, x, 1]) + tile[ty, tx, 1], 0), 255) << _FRAC_BITS
            v2 = min(max(np.int64(pixels[y, x, 2]) + tile[ty, tx, 2], 0), 255) << _FRAC_BITS
            labels[y, x] = _pick(v0, v1, v2, colours, offsets, lists, lut, use_lut)


@njit(cache=True, nogil=True)
def _diffuse_bands(pixels: np.ndarray, colours: np.ndarray, offsets: np.ndarray,
                   lists: np.ndarray, lut: np.ndarray, use_lut: bool, weights: np.ndarray,
                   adaptive: bool, warm: np.ndarray, s: int, cap: int, band_rows: int,
                   warmup_rows: int, b0: int, b1: int, labels: np.ndarray) -> None:
    height, width = pixels.shape[0], pixels.shape[1]
    below = np.zeros((width, 3), dtype=np.int64)
    errors = np.zeros((width, 3), dtype=np.int64)
    ahead = np.int64(7 * s)
    w_behind = np.int64(3 * s)
    w_under = np.int64(5 * s)
    w_before = np.int64(1 * s)
    half = np.int64(1 << 11)
    for band in range(b0, b1):
        keep_start = band * band_rows
        keep_stop = min(keep_start + band_rows, height)
        if band == 0:
            start = 0
            below[:, :] = 0
        else:
            start = keep_start - warmup_rows
            below[:, :] = warm[band - 1]
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
                v0 = min(max(v0, 0), _TOP)
                v1 = min(max(v1, 0), _TOP)
                v2 = min(max(v2, 0), _TOP)
                best = _pick(v0, v1, v2, colours, offsets, lists, lut, use_lut)
                e0 = v0 - colours[best, 0]
                e1 = v1 - colours[best, 1]
                e2 = v2 - colours[best, 2]
                if e0 * e0 + e1 * e1 + e2 * e2 > cap:
                    e0 = (3 * e0 + 2) >> 2
                    e1 = (3 * e1 + 2) >> 2
                    e2 = (3 * e2 + 2) >> 2
                errors[x, 0] = e0
                errors[x, 1] = e1
                errors[x, 2] = e2
                c0 = (e0 * ahead + half) >> 12
                c1 = (e1 * ahead + half) >> 12
                c2 = (e2 * ahead + half) >> 12
                if y >= keep_start:
                    labels[y, x] = best
            # The next row's error: 5/16 from above, 3/16 from the pixel above
            # scanned after it, 1/16 from the one scanned before.
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


def _grid(palette: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    colours = palette.astype(np.int64) << _FRAC_BITS
    offsets, lists = build_grid(colours)
    return colours, offsets, lists


def _search(palette: np.ndarray, lut: np.ndarray | None) -> tuple:
    """Arguments of :func:`_pick`: the RGB grid, or only the Oklab table."""
    if lut is None:
        return (*_grid(palette), np.zeros(1, dtype=np.uint8), False)
    colours = palette.astype(np.int64) << _FRAC_BITS
    empty = np.zeros(1, dtype=np.int64)
    return colours, empty, np.zeros(1, dtype=np.uint8), np.ascontiguousarray(lut), True


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
            n_bands: int, threads: int, lut: np.ndarray | None = None) -> np.ndarray:
    """The banded fixed-point diffusion of remap.py, one band after another."""
    height, width = pixels.shape[:2]
    search = _search(palette, lut)
    labels = np.empty((height, width), dtype=np.uint8)
    adaptive = weights is not None
    weight_map = weights if adaptive else np.zeros((1, 1), dtype=np.int32)
    warm64 = np.ascontiguousarray(warm, dtype=np.int64)

    def task(b0: int, b1: int) -> None:
        _diffuse_bands(pixels, *search, weight_map, adaptive, warm64, s, cap,
                       band_rows, warmup_rows, b0, b1, labels)

    _run(task, _blocks(n_bands, threads))
    return labels
