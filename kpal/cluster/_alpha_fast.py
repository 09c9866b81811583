"""Compiled kernels of large RGBA images (numba, ``kpal[fast]``): alpha.py's pixel path.

alpha.py quantizes an image with many translucent pixels straight from its
pixels (:func:`kpal.cluster.alpha._premultiplied_pixels`): the pixels are
gathered into cells of premultiplied RGBA, k-means runs on the cells, and
every pixel is labelled with its exact nearest entry. These kernels walk the
pixels once per step, where the numpy twins in alpha.py use bincounts and a
histogram of distinct colours. Every quantity is an integer (sums of ``c·a``
and of their squares), so the two paths agree bit for bit and the sums do not
depend on how the pixels are shared among threads. The labelling returns no
error: alpha.py's ``_label_error`` takes it from the sums, and a pixel whose
cell has a single candidate entry takes it without computing any distance.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit

from kpal.cluster._remap_fast import _blocks, _nearest_rgba, _run, rgba_score

__all__ = ["cell_candidates", "cell_sums", "count_colours", "entry_sums", "label_cells",
           "label_sums", "threads"]


def threads() -> int:
    """numba's thread count (the threads of :func:`label_cells`)."""
    return numba.get_num_threads()


@njit(cache=True, nogil=True)
def cell_sums(pixels: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Pixel count and sums of ``(r·a, g·a, b·a, a)`` of every cell (alpha.py's ``_cell_key``),
    and the moment of every pixel (alpha.py's ``_cell_sums``)."""
    counts = np.zeros(n_keys, dtype=np.int64)
    sums = np.zeros((n_keys, 4), dtype=np.int64)
    moment = np.int64(0)
    for i in range(pixels.shape[0]):
        a = np.int64(pixels[i, 3])
        if a == 0:
            continue
        r = np.int64(pixels[i, 0]) * a
        g = np.int64(pixels[i, 1]) * a
        b = np.int64(pixels[i, 2]) * a
        key = _key(r, g, b, a)
        counts[key] += 1
        sums[key, 0] += r
        sums[key, 1] += g
        sums[key, 2] += b
        sums[key, 3] += a
        white = 255 * a
        moment += r * r + g * g + b * b + (r - white) * (r - white) \
            + (g - white) * (g - white) + (b - white) * (b - white)
    return counts, sums, moment


@njit(cache=True, nogil=True)
def count_colours(pixels: np.ndarray) -> int:
    """Distinct RGBA colours, every alpha 0 pixel counted as one colour.

    The pixels are grouped by alpha (a counting sort), then each group marks
    its RGB values in a bitmap of the 2**24 colours (2 MB, which stays in
    cache) and clears its marks again.
    """
    n = pixels.shape[0]
    starts = np.zeros(257, dtype=np.int64)
    for i in range(n):
        starts[np.int64(pixels[i, 3]) + 1] += 1
    for a in range(256):
        starts[a + 1] += starts[a]
    fill = starts[:256].copy()
    grouped = np.empty(n, dtype=np.int32)
    for i in range(n):
        a = np.int64(pixels[i, 3])
        grouped[fill[a]] = (np.int32(pixels[i, 0]) << 16) | (np.int32(pixels[i, 1]) << 8) \
            | np.int32(pixels[i, 2])
        fill[a] += 1
    bits = np.zeros(1 << 18, dtype=np.uint64)
    total = 1 if starts[1] > 0 else 0
    for a in range(1, 256):
        for j in range(starts[a], starts[a + 1]):
            rgb = grouped[j]
            mask = np.uint64(1) << np.uint64(rgb & 63)
            if (bits[rgb >> 6] & mask) == 0:
                bits[rgb >> 6] |= mask
                total += 1
        for j in range(starts[a], starts[a + 1]):
            bits[grouped[j] >> 6] = 0
    return total


@njit(cache=True, nogil=True, inline="always")
def _key(r: np.int64, g: np.int64, b: np.int64, a: np.int64) -> np.int64:
    """alpha.py's cell key of a pixel of premultiplied colour ``(r, g, b)`` (``c·a``)."""
    level = 0 if a == 255 else 1 + (a >> 3)
    # x // 2040 for 0 <= x <= 255 * 255, by a multiply and a shift (checked for every x).
    return ((level * 32 + ((r * 32897) >> 26)) * 32 + ((g * 32897) >> 26)) * 32 \
        + ((b * 32897) >> 26)


#: Each cell is split in two along each of its four axes for the labelling:
#: 16 parts, each with the entries that can be nearest in it.
_PARTS = 16


@njit(cache=True, nogil=True, inline="always")
def _part(v0: np.int64, v1: np.int64, v2: np.int64, a: np.int64) -> np.int64:
    """Which of its cell's 16 parts holds a visible pixel: the next bit of each
    premultiplied channel (``c·a // 1020``, by a multiply and a shift) and of alpha."""
    return ((((v0 * 32897) >> 25) & 1) << 3) | ((((v1 * 32897) >> 25) & 1) << 2) \
        | ((((v2 * 32897) >> 25) & 1) << 1) | ((a >> 2) & 1)


@njit(cache=True, nogil=True, inline="always")
def _box(key: np.int64, part: int, lo: np.ndarray, hi: np.ndarray, scale: float) -> bool:
    """The box of ``x`` (see :func:`cell_candidates`) holding part ``part`` of the
    cell ``key`` (its whole cell when ``part < 0``); False when it is opaque."""
    level = key >> 15
    if level == 0:
        a0, a1 = 255.0, 255.0
    else:
        a0 = 8.0 * (level - 1)
        a1 = a0 + 7.0
        if part >= 0:
            a0 += 4.0 * (part & 1)
            a1 = a0 + 3.0
        a0 = max(a0, 1.0)
        a1 = min(a1, 254.0)
    for c in range(3):
        cell = (key >> (10 - 5 * c)) & 31
        if part < 0:
            v0, v1 = 2040.0 * cell, 2040.0 * cell + 2039.0
        else:
            v0 = 1020.0 * (2 * cell + ((part >> (3 - c)) & 1))
            v1 = v0 + 1019.0
        lo[c] = v0 - 127.5 * a1
        hi[c] = min(v1, 255.0 * a1) - 127.5 * a0
    lo[3] = scale * a0
    hi[3] = scale * a1
    return level != 0


@njit(cache=True, nogil=True, inline="always")
def _keep(ex: np.ndarray, among: np.ndarray, count: int, opaque_only: bool,
          opaque: np.ndarray, lo: np.ndarray, hi: np.ndarray, near: np.ndarray) -> float:
    """The least distance of each entry ``among[:count]`` to the box in ``near``
    (inf for an entry not allowed), and the bound an entry's must not exceed."""
    bound = np.inf
    for m in range(count):
        j = among[m]
        if opaque_only and not opaque[j]:
            near[m] = np.inf
            continue
        least = 0.0
        most = 0.0
        for c in range(4):
            below = lo[c] - ex[j, c]
            above = ex[j, c] - hi[c]
            gap = max(below, above, 0.0)
            least += gap * gap
            far = max(abs(below), abs(above))
            most += far * far
        near[m] = least
        bound = min(bound, most)
    return bound * (1.0 + 1e-9) + 1.0


@njit(cache=True, nogil=True)
def cell_candidates(keys: np.ndarray, q: np.ndarray, entry_alpha: np.ndarray,
                    opaque: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The entries that can be nearest to some pixel of each part of each cell.

    In the coordinates ``x = (c·a - 127.5·a, 255·(√3/2)·a)`` the score of
    :func:`_nearest_rgba` is ``2·|x - x_j|²``. A cell (its colour range and
    alpha range) lies in a box of ``x``; an entry whose least distance to the
    box exceeds the smallest greatest distance of any allowed entry to it
    cannot be nearest (nor tie) at any point of the cell. The margin covers
    float rounding, so no pixel loses its exact nearest entry. Each of the 16
    parts of a cell (:func:`_part`) then keeps those of its cell's entries that
    pass the same test on its own box.

    Returns the offsets (``16·n + 1``) and the entries (uint8, in index order)
    of the lists of part ``p`` of cell ``i`` at ``16·i + p``, and per cell its
    entry when every part has that one entry alone, else -1.
    """
    k = q.shape[0]
    n = keys.shape[0]
    scale = 255.0 * np.sqrt(3.0) / 2.0
    ex = np.empty((k, 4))
    for j in range(k):
        for c in range(3):
            ex[j, c] = q[j, c] - 127.5 * entry_alpha[j]
        ex[j, 3] = scale * entry_alpha[j]
    everyone = np.arange(k)
    near = np.empty(k)
    found = np.empty(k, dtype=np.int64)
    offsets = np.zeros(_PARTS * n + 1, dtype=np.int32)
    lists = np.empty(_PARTS * n * 2, dtype=np.uint8)
    single = np.full(n, -1, dtype=np.int32)
    lo = np.empty(4)
    hi = np.empty(4)
    size = 0
    for i in range(n):
        key = keys[i]
        opaque_only = not _box(key, -1, lo, hi, scale)
        bound = _keep(ex, everyone, k, opaque_only, opaque, lo, hi, near)
        count = 0
        for j in range(k):
            if near[j] <= bound:
                found[count] = j
                count += 1
        if lists.shape[0] < size + _PARTS * count:
            grown = np.empty(2 * lists.shape[0] + _PARTS * count, dtype=np.uint8)
            grown[:size] = lists[:size]
            lists = grown
        alone = found[0] if count == 1 else -1
        for part in range(_PARTS):
            if count == 1:
                lists[size] = found[0]
                size += 1
            else:
                _box(key, part, lo, hi, scale)
                bound = _keep(ex, found, count, opaque_only, opaque, lo, hi, near)
                kept = 0
                for m in range(count):
                    if near[m] <= bound:
                        lists[size + kept] = found[m]
                        kept += 1
                if kept > 1 or (part > 0 and lists[size] != lists[offsets[_PARTS * i]]):
                    alone = -1
                elif part == 0:
                    alone = lists[size]
                size += kept
            offsets[_PARTS * i + part + 1] = size
        single[i] = alone
    return offsets, lists[:size], single


@njit(cache=True, nogil=True, inline="always")
def _best_in(v0: np.int64, v1: np.int64, v2: np.int64, a: np.int64, q: np.ndarray,
             entry_alpha: np.ndarray, lists: np.ndarray, first: int, last: int) -> int:
    """The nearest of the entries ``lists[first:last]`` (in index order) to a visible
    pixel by the score of :func:`_nearest_rgba`, ties to the lowest index."""
    best = np.int64(lists[first])
    if last - first == 1:
        return best
    best_score = np.int64(1) << 60
    for m in range(first, last):
        j = np.int64(lists[m])
        score = rgba_score(v0, v1, v2, a, q, entry_alpha, j, best_score)
        if score < best_score:
            best_score = score
            best = j
    return best


@njit(cache=True, nogil=True, inline="always")
def _add(sums: np.ndarray, counts: np.ndarray, j: np.int64, v0: np.int64, v1: np.int64,
         v2: np.int64, a: np.int64) -> None:
    """Count a pixel of premultiplied colour ``(v0, v1, v2)`` and alpha ``a`` for entry ``j``."""
    counts[j] += 1
    sums[j, 0] += v0
    sums[j, 1] += v1
    sums[j, 2] += v2
    sums[j, 3] += a


@njit(cache=True, nogil=True)
def _label_cells(pixels: np.ndarray, q: np.ndarray, entry_alpha: np.ndarray,
                 cell_of_key: np.ndarray, offsets: np.ndarray, lists: np.ndarray,
                 transparent: int, start: int, stop: int, labels: np.ndarray,
                 sums: np.ndarray, counts: np.ndarray) -> None:
    for i in range(start, stop):
        a = np.int64(pixels[i, 3])
        v0 = np.int64(pixels[i, 0]) * a
        v1 = np.int64(pixels[i, 1]) * a
        v2 = np.int64(pixels[i, 2]) * a
        if a == 0:
            best = np.int64(transparent)
        else:
            at = _PARTS * np.int64(cell_of_key[_key(v0, v1, v2, a)]) + _part(v0, v1, v2, a)
            best = _best_in(v0, v1, v2, a, q, entry_alpha, lists, offsets[at], offsets[at + 1])
        labels[i] = best
        _add(sums, counts, best, v0, v1, v2, a)


def _candidates(keys: np.ndarray, q: np.ndarray, entry_alpha: np.ndarray, opaque: np.ndarray,
                threads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`cell_candidates` of the cells shared among ``threads`` in contiguous
    blocks: every cell's lists depend on that cell only, so the result is the same."""
    blocks = _blocks(keys.shape[0], threads)
    if len(blocks) <= 1:
        return cell_candidates(keys, q, entry_alpha, opaque)
    found = {}

    def task(start: int, stop: int) -> None:
        found[start] = cell_candidates(keys[start:stop], q, entry_alpha, opaque)

    _run(task, blocks)
    parts = [found[start] for start, _ in blocks]
    offsets = [parts[0][0]]
    for block_offsets, _, _ in parts[1:]:
        offsets.append(block_offsets[1:] + offsets[-1][-1])
    return (np.concatenate(offsets), np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]))


def _totals(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Zeroed per-entry sums of ``(r·a, g·a, b·a, a)`` (k, 4) and pixel counts (k,)."""
    return np.zeros((k, 4), dtype=np.int64), np.zeros(k, dtype=np.int64)


def _summed(totals: object) -> tuple[np.ndarray, np.ndarray]:
    """The sums and counts of some :func:`_totals` of parts of the pixels, added."""
    totals = list(totals)
    return sum(t[0] for t in totals), sum(t[1] for t in totals)


def _cell_table(keys: np.ndarray) -> np.ndarray:
    """Cell number by cell key (alpha.py's 33·32**3 keys)."""
    cell_of_key = np.zeros(33 << 15, dtype=np.int32)
    cell_of_key[keys] = np.arange(keys.shape[0])
    return cell_of_key


def label_cells(pixels: np.ndarray, keys: np.ndarray, q: np.ndarray, entry_alpha: np.ndarray,
                opaque: np.ndarray, transparent: int,
                threads: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`label_sums` for pixels whose cells are ``keys`` (every cell of a
    visible pixel), searching only the candidates of each pixel's part of its
    cell (:func:`cell_candidates`): a pixel whose part has a single candidate
    takes it without a comparison.

    Pixels of alpha 0 take ``transparent``, which must be an entry. The pixels
    are shared among ``threads`` (default: numba's thread count) in contiguous
    blocks, each summing apart: integer sums, the same for any count.
    """
    if threads is None:
        threads = numba.get_num_threads()
    n, k = pixels.shape[0], q.shape[0]
    offsets, lists, _ = _candidates(keys, q, entry_alpha, opaque, threads)
    cell_of_key = _cell_table(keys)
    labels = np.empty(n, dtype=np.uint8)
    blocks = _blocks(n, threads)
    share = {block: _totals(k) for block in blocks}

    def task(start: int, stop: int) -> None:
        _label_cells(pixels, q, entry_alpha, cell_of_key, offsets, lists, transparent, start,
                     stop, labels, *share[(start, stop)])

    _run(task, blocks)
    return (labels, *_summed(share.values()))


@njit(cache=True, nogil=True)
def _shared_sums(pixels: np.ndarray, q: np.ndarray, entry_alpha: np.ndarray,
                 cell_of_key: np.ndarray, single: np.ndarray, offsets: np.ndarray,
                 lists: np.ndarray, start: int, stop: int, sums: np.ndarray,
                 counts: np.ndarray) -> None:
    """:func:`_label_cells`' sums of the visible pixels of the cells without a single entry."""
    for i in range(start, stop):
        a = np.int64(pixels[i, 3])
        if a == 0:
            continue
        v0 = np.int64(pixels[i, 0]) * a
        v1 = np.int64(pixels[i, 1]) * a
        v2 = np.int64(pixels[i, 2]) * a
        cell = np.int64(cell_of_key[_key(v0, v1, v2, a)])
        if single[cell] >= 0:
            continue
        at = _PARTS * cell + _part(v0, v1, v2, a)
        best = _best_in(v0, v1, v2, a, q, entry_alpha, lists, offsets[at], offsets[at + 1])
        _add(sums, counts, best, v0, v1, v2, a)


def entry_sums(pixels: np.ndarray, keys: np.ndarray, cell_counts: np.ndarray,
               cell_sums: np.ndarray, q: np.ndarray, entry_alpha: np.ndarray,
               opaque: np.ndarray, transparent: int,
               threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The sums and counts of :func:`label_cells`, without the labels.

    ``cell_counts`` and ``cell_sums`` are those of the cells ``keys``
    (:func:`cell_sums`): a cell whose every part has the same single candidate
    gives it all its pixels at once, so only the pixels of the other cells are
    compared.
    """
    if threads is None:
        threads = numba.get_num_threads()
    n, k = pixels.shape[0], q.shape[0]
    offsets, lists, single = _candidates(keys, q, entry_alpha, opaque, threads)
    cell_of_key = _cell_table(keys)
    blocks = _blocks(n, threads)
    share = {block: _totals(k) for block in blocks}

    def task(start: int, stop: int) -> None:
        _shared_sums(pixels, q, entry_alpha, cell_of_key, single, offsets, lists, start, stop,
                     *share[(start, stop)])

    _run(task, blocks)
    sums, counts = _summed(share.values())
    whole = np.flatnonzero(single >= 0)
    owner = single[whole]
    np.add.at(counts, owner, cell_counts[whole])
    np.add.at(sums, owner, cell_sums[whole])
    counts[transparent] += n - int(cell_counts.sum())
    return sums, counts


@njit(cache=True, nogil=True)
def _label_rows(pixels: np.ndarray, q: np.ndarray, entry_alpha: np.ndarray,
                opaque: np.ndarray, transparent: int, start: int, stop: int,
                labels: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> None:
    for i in range(start, stop):
        a = np.int64(pixels[i, 3])
        v0 = np.int64(pixels[i, 0]) * a
        v1 = np.int64(pixels[i, 1]) * a
        v2 = np.int64(pixels[i, 2]) * a
        j = _nearest_rgba(v0, v1, v2, a, q, entry_alpha, opaque, transparent)
        labels[i] = j
        _add(sums, counts, j, v0, v1, v2, a)


def label_sums(pixels: np.ndarray, q: np.ndarray, entry_alpha: np.ndarray, opaque: np.ndarray,
               transparent: int, threads: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest allowed entry of every pixel, and per entry its pixels' sums.

    Returns the labels (n,) uint8, the sums of ``(r·a, g·a, b·a, a)`` (k, 4)
    and the pixel counts (k,), in ``c·a`` units, int64 (alpha.py's
    ``_label_sums_numpy``; alpha.py's ``_label_error`` turns them into the error).
    """
    n, k = pixels.shape[0], q.shape[0]
    labels = np.empty(n, dtype=np.uint8)
    blocks = _blocks(n, threads)
    share = {block: _totals(k) for block in blocks}

    def task(start: int, stop: int) -> None:
        _label_rows(pixels, q, entry_alpha, opaque, transparent, start, stop, labels,
                    *share[(start, stop)])

    _run(task, blocks)
    return (labels, *_summed(share.values()))
