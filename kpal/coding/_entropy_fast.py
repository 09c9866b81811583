"""Compiled entropy coding (coding id 2), used when numba is installed (``kpal[fast]``).

The numpy path in ``entropy.py`` works a whole wavefront step at a time because
Python cannot afford a loop per pixel. Under numba a loop per pixel is the
fastest form, so this module follows spec/kpal.md §7 decision by decision:
for every step, the pixels in coding order, then their ``F1`` decisions, their
``F2`` decisions, and the literal bits level by level, then the model update.
Both paths produce the same decisions with the same probabilities in the same
order, so they write and read byte-identical payloads.

Only the flag probabilities are tabulated (128 per flag, fixed during a step);
literal probabilities depend on (L, A, node) and are computed when needed.
Neighbours are read from a ring of the last five steps (as in the numpy path)
rather than from the image: a step then reads a small buffer in order instead
of three rows of every tile, which made the loops about twice as fast. When
the ring would cost more than a tenth of a byte per pixel (1.9 with 4x4 tiles,
5 on a 1-pixel-wide image) the image is read instead, where those neighbours
are close together. Buffers are sized by the largest step, and a step visits
only tile rows and columns that can hold pixels, so memory and time follow the
pixels, not the tile size.

The encoder keeps one ``uint16`` per decision (12-bit probability, the bit in
bit 15) because rANS codes decisions last to first; the decoder keeps only the
labels and per-step buffers. The first call compiles (``cache=True`` stores
the machine code beside this file, so later processes load it in well under a
second).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kpal.errors import FormatError

from . import _rans

__all__ = ["encode_payload", "decode_labels"]

_PROB_BITS = _rans.PROB_BITS
_PROB_ONE = _rans.PROB_ONE
_STATE_LOW = _rans.STATE_LOW
_WORD_BITS = _rans.WORD_BITS
_WORD_MASK = _rans.WORD_MASK
_EMIT_SHIFT = 16 - _PROB_BITS + _WORD_BITS
_BIT_FLAG = 1 << 15  # a decision is stored as p1 | bit << 15 (p1 < 2**12)
_N_PATTERNS = 128
_FLAG_LIMIT = 1 << 13
_LITERAL_INC = 16
#: The ring of recent steps is kept only while it costs at most one byte per
#: this many pixels (as in entropy.py).
_RING_PIXELS_PER_BYTE = 10

# decoder outcome codes
_OK, _TRUNCATED, _BAD_INDEX = 0, 1, 2


@njit(cache=True, nogil=True)
def _prior(k, b):
    """Q[n]: how many symbols < k lie under heap node n of the b-level tree."""
    prior = np.zeros(2 << b, dtype=np.int64)
    for s in range(k):
        prior[(1 << b) + s] = 1
    for n in range((1 << b) - 1, 0, -1):
        prior[n] = prior[2 * n] + prior[2 * n + 1]
    return prior


@njit(cache=True, nogil=True)
def _flag_table(counts, table):
    """12-bit probability of a 1 for every pattern of one flag model."""
    for p in range(_N_PATTERNS):
        c0 = counts[p, 0]
        c1 = counts[p, 1]
        table[p] = min(_PROB_ONE - 1, max(1, (c1 << _PROB_BITS) // (c0 + c1)))


@njit(cache=True, nogil=True)
def _halve_flags(counts):
    for p in range(_N_PATTERNS):
        if counts[p, 0] + counts[p, 1] > _FLAG_LIMIT:
            counts[p, 0] = (counts[p, 0] + 1) >> 1
            counts[p, 1] = (counts[p, 1] + 1) >> 1


@njit(cache=True, nogil=True, inline="always")
def _literal_p1(by_left, by_above, prior, base_l, base_a, node):
    # counts of node n and of its right child 2n + 1 side by side (see _update_literals)
    at = 2 * node
    num = by_left[base_l + at + 1] + by_above[base_a + at + 1] + prior[at + 1]
    den = by_left[base_l + at] + by_above[base_a + at] + prior[node]
    return min(_PROB_ONE - 1, max(1, (num << _PROB_BITS) // max(den, 1)))


@njit(cache=True, nogil=True, inline="always")
def _rans_bit(x, p1, word_bytes, position):
    """Decode one decision from state ``x`` (spec §7.6); return (bit, new state, position).

    ``word_bytes`` are the payload's words as stored (big-endian), so no copy
    of them is made. The position comes back as -1 when a word is needed after
    the last one.
    """
    slot = x & (_PROB_ONE - 1)
    f0 = _PROB_ONE - p1
    bit = 1 if slot >= f0 else 0
    # (f, c) is (p1, f0) for a 1 and (f0, 0) for a 0
    x = (p1 if bit else f0) * (x >> _PROB_BITS) + slot - (f0 if bit else 0)
    if x < _STATE_LOW:
        if 2 * position >= word_bytes.size:
            return bit, x, -1
        word = np.int64(word_bytes[2 * position]) << 8 | np.int64(word_bytes[2 * position + 1])
        x = (x << _WORD_BITS) | word
        position += 1
    return bit, x, position


@njit(cache=True, nogil=True)
def _geometry(width, height, tile_log2):
    """Tile layout of a ``width`` x ``height`` image (spec §7.2).

    Returns
    -------
    tile, tiles_x, n_tiles, rows, cols, n_steps, per_step : int
        Tile side, tiles per tile row, tile count, pixel rows and columns of a
        tile that can hold pixels, number of wavefront steps, and the most
        pixels one step can hold (at most ``ceil(cols / 2)`` per tile).
    use_ring : bool
        Whether neighbours come from a ring of the last five steps (5 * (rows + 2)
        bytes per tile) rather than from the raster: only while the ring is small.
    """
    tile = 1 << tile_log2
    tiles_x = -(-width // tile)
    n_tiles = tiles_x * -(-height // tile)
    rows = min(tile, height)
    cols = min(tile, width)
    n_steps = 2 * (rows - 1) + cols
    per_step = n_tiles * min(rows, (cols + 1) // 2)
    use_ring = _RING_PIXELS_PER_BYTE * 5 * n_tiles * (rows + 2) <= width * height
    return tile, tiles_x, n_tiles, rows, cols, n_steps, per_step, use_ring


@njit(cache=True, nogil=True)
def _models(k, b):
    """Initial model state (spec §7.5) for ``k`` symbols and ``b`` literal bits.

    Returns
    -------
    row_len : int
        Length of one context row in the literal tables (see ``_update_literals``).
    prior : ndarray
        ``_prior(k, b)``.
    by_left, by_above : ndarray
        Literal counts by left and by above neighbour, all zero.
    flag_l, flag_a : ndarray of shape (128, 2)
        ``F1`` and ``F2`` counts per pattern, all one.
    table_l, table_a : ndarray of shape (128,)
        Buffers for the per-step flag probabilities (filled by ``_flag_table``).
    """
    row_len = 2 << b
    prior = _prior(k, b)
    by_left = np.zeros(k * row_len, dtype=np.int64)
    by_above = np.zeros(k * row_len, dtype=np.int64)
    flag_l = np.ones((_N_PATTERNS, 2), dtype=np.int64)
    flag_a = np.ones((_N_PATTERNS, 2), dtype=np.int64)
    table_l = np.empty(_N_PATTERNS, dtype=np.int64)
    table_a = np.empty(_N_PATTERNS, dtype=np.int64)
    return row_len, prior, by_left, by_above, flag_l, flag_a, table_l, table_a


@njit(cache=True, nogil=True)
def _step_buffers(n_tiles, rows, use_ring, per_step):
    """Neighbour ring and per-step buffers, sized for the largest step.

    A step holds at most ``per_step`` pixels: an eighth of the image with 4x4
    tiles, so every buffer here is one or two bytes per pixel of a step.

    Returns
    -------
    ring : ndarray of shape (5, n_tiles * (rows + 2)), uint8
        The last five steps' pixels, all zero (see ``_step_contexts``); a
        (5, 1) placeholder without ``use_ring``.
    lefts, aboves, patterns : ndarray of uint8
        Filled by ``_step_contexts``.
    values : ndarray of int16
        The step's labels in coding order (-1: a literal not decoded yet).
    lit_left, lit_above, lit_value : ndarray
        Per literal: its L and A contexts (uint8) and its symbol, or tree node
        while decoding (int16).
    """
    if use_ring:
        ring = np.zeros((5, n_tiles * (rows + 2)), dtype=np.uint8)
    else:
        ring = np.zeros((5, 1), dtype=np.uint8)
    lefts = np.empty(per_step, dtype=np.uint8)
    aboves = np.empty(per_step, dtype=np.uint8)
    patterns = np.empty(per_step, dtype=np.uint8)
    values = np.empty(per_step, dtype=np.int16)
    lit_left = np.empty(per_step, dtype=np.uint8)
    lit_above = np.empty(per_step, dtype=np.uint8)
    lit_value = np.empty(per_step, dtype=np.int16)
    return ring, lefts, aboves, patterns, values, lit_left, lit_above, lit_value


@njit(cache=True, nogil=True)
def _step_contexts(ring, use_ring, raster, load, n_tiles, tiles_x, tile, rows, cols, width,
                   height, s, lefts, aboves, patterns, values):
    """Fill the step's L, A and pattern in coding order; return the number of pixels.

    Only rows ``i < rows`` and columns ``j < cols`` that can hold pixels are
    visited. With ``use_ring`` neighbours come from ``ring`` (as in the numpy
    path): pixel (i, j) of tile ``t`` on step ``s`` sits at
    ``ring[s % 5, t * (rows + 2) + 2 + i]``, so a step reads a few hundred
    kilobytes in order instead of three rows of every tile scattered over the
    image. Otherwise (4x4 tiles, where the ring would cost 1.9 bytes per
    pixel, or a 1-pixel-wide image, 5 bytes) they come from the raster, where
    they are close together. With ``load`` (encoding) the step's labels are
    read from ``raster`` into ``values`` and the ring.
    """
    stride = rows + 2
    i_first = max(0, (s - cols + 2) // 2)
    i_last = min(s // 2, rows - 1)
    here = ring[s % 5]
    back1 = ring[(s - 1) % 5]
    back2 = ring[(s - 2) % 5]
    back3 = ring[(s - 3) % 5]
    back4 = ring[(s - 4) % 5]
    count = 0
    for t in range(n_tiles):
        row0 = (t // tiles_x) * tile
        col0 = (t % tiles_x) * tile
        base = t * stride + 2
        for i in range(i_first, i_last + 1):
            j = s - 2 * i
            row = row0 + i
            col = col0 + j
            if row >= height or col >= width:
                continue
            has_right = i > 0 and j + 1 < tile and col + 1 < width
            if use_ring:
                cell = base + i
                above = back2[cell - 1] if i > 0 else 0  # (i-1, j)
                left = back1[cell] if j > 0 else above  # (i, j-1)
                if i == 0:
                    above = left
                diag = back3[cell - 1] if i > 0 and j > 0 else above  # (i-1, j-1)
                right = back1[cell - 1] if has_right else above  # (i-1, j+1)
                left2 = back2[cell] if j > 1 else left  # (i, j-2)
                above2 = back4[cell - 2] if i > 1 else above  # (i-2, j)
            else:
                at = row * width + col
                above = raster[at - width] if i > 0 else 0
                left = raster[at - 1] if j > 0 else above
                if i == 0:
                    above = left
                diag = raster[at - width - 1] if i > 0 and j > 0 else above
                right = raster[at - width + 1] if has_right else above
                left2 = raster[at - 2] if j > 1 else left
                above2 = raster[at - 2 * width] if i > 1 else above
            if load:
                x = raster[row * width + col]
                values[count] = x
                if use_ring:
                    here[base + i] = x
            lefts[count] = left
            aboves[count] = above
            patterns[count] = ((left == above) | (above == diag) << 1 | (left == diag) << 2
                               | (above == right) << 3 | (left == right) << 4
                               | (left == left2) << 5 | (above == above2) << 6)
            count += 1
    return count


@njit(cache=True, nogil=True)
def _store_step(ring, use_ring, raster, n_tiles, tiles_x, tile, rows, cols, width, height, s,
                values):
    """Decoder: put the step's labels (coding order) into the raster and the ring."""
    stride = rows + 2
    i_first = max(0, (s - cols + 2) // 2)
    i_last = min(s // 2, rows - 1)
    here = ring[s % 5]
    count = 0
    for t in range(n_tiles):
        row0 = (t // tiles_x) * tile
        col0 = (t % tiles_x) * tile
        for i in range(i_first, i_last + 1):
            row = row0 + i
            col = col0 + s - 2 * i
            if row >= height or col >= width:
                continue
            raster[row * width + col] = values[count]
            if use_ring:
                here[t * stride + 2 + i] = values[count]
            count += 1


@njit(cache=True, nogil=True)
def _update_literals(by_left, by_above, row_len, b, lit_left, lit_above, lit_sym, n_lit):
    """Add 16 to the literal counts of every node on each literal's path (spec §7.5).

    The tables store, for context value v and inner node n, the count of n at
    ``v * row_len + 2n`` and the count of its right child 2n + 1 beside it, so a
    probability reads one cache line per table. Counts of left children that
    are leaves are never read, so they are not kept.
    """
    for q in range(n_lit):
        leaf = lit_sym[q] | (1 << b)
        base_l = lit_left[q] * row_len
        base_a = lit_above[q] * row_len
        for d in range(b):
            at = 2 * (leaf >> (b - d))
            by_left[base_l + at] += _LITERAL_INC
            by_above[base_a + at] += _LITERAL_INC
            if (leaf >> (b - d - 1)) & 1:
                by_left[base_l + at + 1] += _LITERAL_INC
                by_above[base_a + at + 1] += _LITERAL_INC


@njit(cache=True, nogil=True)
def _encode_decisions(raster, width, height, tile_log2, k, b):
    """Every decision in decoding order, as ``p1 | bit << 15``; return (buffer, count)."""
    (tile, tiles_x, n_tiles, rows, cols, n_steps, per_step,
     use_ring) = _geometry(width, height, tile_log2)
    row_len, prior, by_left, by_above, flag_l, flag_a, table_l, table_a = _models(k, b)
    (ring, lefts, aboves, patterns, values,
     lit_left, lit_above, lit_sym) = _step_buffers(n_tiles, rows, use_ring, per_step)
    # one F1 per pixel and a few more on average; grown when a step could overflow
    out = np.empty(2 * width * height + 64, dtype=np.uint16)
    g = 0
    for s in range(n_steps):
        n = _step_contexts(ring, use_ring, raster, True, n_tiles, tiles_x, tile, rows, cols,
                           width, height, s, lefts, aboves, patterns, values)
        if g + n * (2 + b) > out.size:
            bigger = np.empty(max(out.size + out.size // 2, g + n * (2 + b)), dtype=np.uint16)
            bigger[:g] = out[:g]
            out = bigger
        _flag_table(flag_l, table_l)
        _flag_table(flag_a, table_a)
        for q in range(n):  # F1
            bit = values[q] == lefts[q]
            out[g] = table_l[patterns[q]] | (_BIT_FLAG if bit else 0)
            flag_l[patterns[q], 1 if bit else 0] += 2
            g += 1
        n_lit = 0
        for q in range(n):  # F2, and collect the literals
            x = values[q]
            if x == lefts[q]:
                continue
            if lefts[q] != aboves[q]:
                bit = x == aboves[q]
                out[g] = table_a[patterns[q]] | (_BIT_FLAG if bit else 0)
                flag_a[patterns[q], 1 if bit else 0] += 2
                g += 1
                if bit:
                    continue
            lit_left[n_lit] = lefts[q]
            lit_above[n_lit] = aboves[q]
            lit_sym[n_lit] = x
            n_lit += 1
        for level in range(b):  # literal bits, most significant first
            for q in range(n_lit):
                sym = np.int64(lit_sym[q])
                node = (sym | (1 << b)) >> (b - level)
                p1 = _literal_p1(by_left, by_above, prior, np.int64(lit_left[q]) * row_len,
                                 np.int64(lit_above[q]) * row_len, node)
                bit = (sym >> (b - 1 - level)) & 1
                out[g] = p1 | (_BIT_FLAG if bit else 0)
                g += 1
        _halve_flags(flag_l)
        _halve_flags(flag_a)
        _update_literals(by_left, by_above, row_len, b, lit_left, lit_above, lit_sym, n_lit)
    return out, g


@njit(cache=True, nogil=True)
def _rans_encode(decisions, n, n_lanes):
    """rANS-code decisions ``n - 1`` down to 0; return (final states, words in read order)."""
    state = np.full(n_lanes, _STATE_LOW, dtype=np.int64)
    emitted = np.empty(n, dtype=np.uint16)  # at most one word per decision
    n_words = 0
    for g in range(n - 1, -1, -1):
        lane = g % n_lanes
        d = np.int64(decisions[g])
        p1 = d & (_PROB_ONE - 1)
        if d & _BIT_FLAG:
            freq = p1
            cum = _PROB_ONE - p1
        else:
            freq = _PROB_ONE - p1
            cum = 0
        x = state[lane]
        if x >= freq << _EMIT_SHIFT:
            emitted[n_words] = x & _WORD_MASK
            n_words += 1
            x >>= _WORD_BITS
        state[lane] = (x // freq << _PROB_BITS) + x % freq + cum
    return state.astype(np.uint32), emitted[:n_words][::-1].copy()


@njit(cache=True, nogil=True)
def _decode(states, word_bytes, k, b, width, height, tile_log2):
    """Decode every pixel; return (labels, outcome code, bad index, read position, states)."""
    (tile, tiles_x, n_tiles, rows, cols, n_steps, per_step,
     use_ring) = _geometry(width, height, tile_log2)
    row_len, prior, by_left, by_above, flag_l, flag_a, table_l, table_a = _models(k, b)
    (ring, lefts, aboves, patterns, values,
     lit_left, lit_above, lit_node) = _step_buffers(n_tiles, rows, use_ring, per_step)
    raster = np.zeros(width * height, dtype=np.uint8)
    state = states.astype(np.int64)
    n_lanes = state.size
    n_words = word_bytes.size // 2
    lane = 0
    position = 0
    for s in range(n_steps):
        n = _step_contexts(ring, use_ring, raster, False, n_tiles, tiles_x, tile, rows, cols,
                           width, height, s, lefts, aboves, patterns, values)
        _flag_table(flag_l, table_l)
        _flag_table(flag_a, table_a)
        for q in range(n):  # every F1
            bit, x, position = _rans_bit(state[lane], table_l[patterns[q]], word_bytes,
                                         position)
            if position < 0:
                return raster, _TRUNCATED, 0, n_words, state
            state[lane] = x
            lane = lane + 1 if lane + 1 < n_lanes else 0
            flag_l[patterns[q], bit] += 2
            values[q] = lefts[q] if bit else -1
        n_lit = 0
        for q in range(n):  # every F2, and the literals in coding order
            if values[q] >= 0:
                continue
            if lefts[q] != aboves[q]:
                bit, x, position = _rans_bit(state[lane], table_a[patterns[q]], word_bytes,
                                             position)
                if position < 0:
                    return raster, _TRUNCATED, 0, n_words, state
                state[lane] = x
                lane = lane + 1 if lane + 1 < n_lanes else 0
                flag_a[patterns[q], bit] += 2
                if bit:
                    values[q] = aboves[q]
                    continue
            lit_left[n_lit] = lefts[q]  # values[q] stays -1 until the literal is known
            lit_above[n_lit] = aboves[q]
            lit_node[n_lit] = 1
            n_lit += 1
        for _level in range(b):
            for q in range(n_lit):
                node = np.int64(lit_node[q])
                p1 = _literal_p1(by_left, by_above, prior, np.int64(lit_left[q]) * row_len,
                                 np.int64(lit_above[q]) * row_len, node)
                bit, x, position = _rans_bit(state[lane], p1, word_bytes, position)
                if position < 0:
                    return raster, _TRUNCATED, 0, n_words, state
                state[lane] = x
                lane = lane + 1 if lane + 1 < n_lanes else 0
                lit_node[q] = 2 * node + bit
        worst = -1
        for q in range(n_lit):
            lit_node[q] -= 1 << b  # leaf -> symbol
            worst = max(worst, np.int64(lit_node[q]))
        if worst >= k:
            return raster, _BAD_INDEX, worst, position, state
        m = 0
        for q in range(n):  # the literals, in coding order, fill the pixels still open
            if values[q] < 0:
                values[q] = lit_node[m]
                m += 1
        _store_step(ring, use_ring, raster, n_tiles, tiles_x, tile, rows, cols, width, height,
                    s, values)
        _halve_flags(flag_l)
        _halve_flags(flag_a)
        _update_literals(by_left, by_above, row_len, b, lit_left, lit_above, lit_node, n_lit)
    return raster, _OK, 0, position, state


def encode_payload(labels: np.ndarray, k: int, b: int, tile_log2: int,
                   n_lanes: int) -> tuple[np.ndarray, np.ndarray]:
    """Code ``labels`` (uint8, shape (height, width), values < k, k >= 2).

    Returns
    -------
    states : ndarray of shape (n_lanes,), uint32
        The lane states the decoder starts from.
    words : ndarray of uint16
        Renormalization words in the order the decoder reads them.
    """
    height, width = labels.shape
    raster = np.ascontiguousarray(labels, dtype=np.uint8).reshape(-1)
    decisions, count = _encode_decisions(raster, width, height, tile_log2, k, b)
    return _rans_encode(decisions, count, n_lanes)


def decode_labels(states: np.ndarray, words: np.ndarray, k: int, b: int, width: int,
                  height: int, tile_log2: int) -> np.ndarray:
    """Decode labels of shape (height, width); raise FormatError as the numpy path does."""
    states = np.ascontiguousarray(states, dtype=np.int64)
    # the words as stored, big-endian, read two bytes at a time: no copy of the payload
    word_bytes = np.ascontiguousarray(words, dtype=">u2").view(np.uint8)
    raster, outcome, bad_index, position, final = _decode(states, word_bytes, k, b, width,
                                                           height, tile_log2)
    if outcome == _TRUNCATED:
        msg = "entropy payload is truncated: the coder ran out of words"
        raise FormatError(msg)
    if outcome == _BAD_INDEX:
        msg = f"entropy payload decodes to index {bad_index} >= k={k}"
        raise FormatError(msg)
    # the same end-of-stream checks (and messages) as the numpy decoder
    coder = _rans.Decoder(final, words)
    coder.position = position
    coder.check_finished()
    return raster.reshape(height, width)
