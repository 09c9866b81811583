"""Entropy-coded payload (coding id 2): a context model and interleaved rANS.

Every index ``x`` is coded from already-coded neighbours of the same tile: left
``L``, above ``A``, above-left ``D``, above-right ``R``, ``LL`` two to the left
and ``AA`` two above (spec/kpal.md, "Coding 2: entropy"):

1. one binary decision "x == L", its probability chosen by a 7-bit pattern of
   which neighbours are equal (L=A, A=D, L=D, A=R, L=R, L=LL, A=AA);
2. if not, and A != L, one decision "x == A" with the same pattern;
3. otherwise the index itself, as ``b`` binary decisions down a binary tree
   (most significant bit first). The probability at each tree node mixes two
   adaptive count tables, one indexed by L and one by A, plus a small uniform
   prior.

Why this order of work: a per-pixel loop is far too slow in Python, so the
image is cut into 64x64 tiles whose pixels are never context for another
tile, and each tile is walked by wavefront steps: pixel (i, j) is on step
``2*i + j``, and all six neighbours are on earlier steps. One step across
*all* tiles is one batch of numpy operations; a 64x64 tile has 190 steps
whatever the image size. The model (all counts, shared by all tiles) is
updated once per step, after the step, by both encoder and decoder.

What bounds the decoder's work by the pixels: a payload may have at most 190
steps (``MAX_STEPS``) and at least one lane per 1024 pixels (``min_lanes``),
so a file costs no more Python-level rounds than one the encoder writes; a
step only visits the rows and columns of a tile that hold pixels; and the
arrays of one step are handled in chunks of ``_CHUNK`` pixels, so temporaries
stay small however many pixels a step holds (an eighth of the image with 4x4
tiles).

The decisions go through ``_rans`` (interleaved binary rANS, many lanes).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import numpy as np

from kpal import _jit
from kpal.errors import FormatError

from . import _rans
from ._checks import image_labels, one_colour, require_below_k, require_between
from .fixed import bits_per_index

__all__ = ["CODING_ID", "NAME", "MAX_STEPS", "encode", "decode", "min_lanes", "n_steps",
           "payload_size"]

CODING_ID = 2
NAME = "entropy"

#: Tile side is 2**TILE_LOG2 pixels; stored in the payload, so a decoder accepts others.
TILE_LOG2 = 6
#: Tiles of 4 .. 32768 pixels: smaller ones leave almost no context, larger ones
#: only make the steps (3*T of them) longer for no gain.
_MIN_TILE_LOG2, _MAX_TILE_LOG2 = 2, 15
#: At most this many wavefront steps (spec §7.2), the count of 64x64 tiles: every
#: step costs a decoder a fixed batch of array operations, so more steps on the
#: same pixels only make decoding slower (1x65536 pixels in one 32768-pixel
#: tile column would be 65535 steps of one pixel each).
MAX_STEPS = 3 * 64 - 2
#: The reference encoder writes one lane per _PIXELS_PER_LANE pixels, at least 1
#: and at most _MAX_LANES: the final state of a lane costs 4 bytes, more lanes
#: mean fewer numpy rounds. Decoders require at least that many (``min_lanes``).
_PIXELS_PER_LANE = 1 << 10
_MAX_LANES = 1 << 12
#: The spec's lane minimum uses these, not the encoder's settings above.
_MIN_LANES_PIXELS, _MIN_LANES_CAP = 1 << 10, 1 << 12
#: Pixels (or literals) per batch of array operations inside one step.
_CHUNK = 1 << 14
#: A ring of recent steps (see _Tiles) is kept only while it costs at most one
#: byte per this many pixels.
_RING_PIXELS_PER_BYTE = 10
_HEADER = 3  # u8 tile_log2, u16 n_lanes
#: Flag counts start at (1, 1), grow by 2 per decision and are halved (rounding
#: up) when their sum exceeds this, so the flags follow changes in the image.
_FLAG_LIMIT = 1 << 13
#: Literal tree counts grow by this per literal; the uniform prior is 1 per symbol.
_LITERAL_INC = 16
_N_PATTERNS = 128


#: Below this many pixels the numpy path is fast enough (well under 0.2 s) and
#: cheaper than importing numba (about 1 s in a fresh process).
COMPILED_MIN_PIXELS = 1 << 20


def _compiled(n_pixels: int) -> ModuleType | None:
    """The numba path (``kpal[fast]``) unless missing, ``KPAL_PURE_NUMPY=1``, or
    the image is small enough that importing numba would cost more than it saves
    (``KPAL_PURE_NUMPY=0`` forces the compiled path at any size); see
    :func:`kpal._jit.load`. Both paths write identical bytes.
    """
    return _jit.load("kpal.coding._entropy_fast", n_pixels, COMPILED_MIN_PIXELS)


def payload_size(k: int, width: int, height: int) -> None:
    """Return ``None``: the entropy payload length depends on the pixels."""
    return None


def n_steps(width: int, height: int, tile_log2: int) -> int:
    """Number of wavefront steps of a ``width`` x ``height`` image (spec §7.2).

    Parameters
    ----------
    width, height : int
        Image size in pixels, each at least 1.
    tile_log2 : int
        The payload's tile size field.

    Returns
    -------
    int
        ``2 * (min(T, height) - 1) + min(T, width)`` with ``T = 2**tile_log2``.
    """
    tile = 1 << tile_log2
    return 2 * (min(tile, height) - 1) + min(tile, width)


def min_lanes(n_pixels: int) -> int:
    """Fewest lanes a payload of ``n_pixels`` pixels may have (spec §7.1).

    One lane per 1024 pixels, at least 1 and at most 4096: the reference
    encoder's own count, so that a decoder always decodes many decisions per
    array operation (with one lane, each operation decodes one decision).

    Parameters
    ----------
    n_pixels : int
        ``width * height``.

    Returns
    -------
    int
        ``min(4096, max(1, n_pixels // 1024))``.
    """
    return int(min(_MIN_LANES_CAP, max(1, n_pixels // _MIN_LANES_PIXELS)))


def _chunks(n: int, size: int = _CHUNK) -> range:
    return range(0, n, size)


def _probability(p: np.ndarray) -> np.ndarray:
    """``p`` (a new int64 array) clipped to 1..4095 in place: ``np.clip``, without its
    per-call overhead, which small images pay thousands of times."""
    np.maximum(p, 1, out=p)
    return np.minimum(p, _rans.PROB_ONE - 1, out=p)


class _FlagCounts:
    """Counts (zeros, ones) per pattern for one yes/no flag."""

    def __init__(self) -> None:
        self.counts = np.ones((_N_PATTERNS, 2), dtype=np.int64)
        self._probs: np.ndarray | None = None

    def probs(self) -> np.ndarray:
        """12-bit probability of a 1 for each pattern (recomputed after an update)."""
        if self._probs is None:
            c = self.counts
            self._probs = _probability((c[:, 1] << _rans.PROB_BITS) // (c[:, 0] + c[:, 1]))
        return self._probs

    def update(self, pattern: np.ndarray, bit: np.ndarray) -> None:
        added = np.zeros(2 * _N_PATTERNS, dtype=np.int64)
        for c in _chunks(pattern.size):
            index = pattern[c : c + _CHUNK].astype(np.intp) * 2 + bit[c : c + _CHUNK]
            added += np.bincount(index, minlength=2 * _N_PATTERNS)
        self.counts += 2 * added.reshape(-1, 2)
        self.halve()

    def halve(self) -> None:
        """Halve the counts of every pattern whose sum is over the limit (once per step)."""
        big = self.counts.sum(axis=1) > _FLAG_LIMIT
        if big.any():
            self.counts[big] = (self.counts[big] + 1) >> 1
        self._probs = None


class _Model:
    """Adaptive probabilities shared by the encoder and the decoder."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.b = bits_per_index(k)
        self.row = 1 << (self.b + 1)  # heap nodes 1 .. 2**(b+1) - 1 per context row
        self.flag_l = _FlagCounts()  # "x == L"
        self.flag_a = _FlagCounts()  # "x == A", asked only when x != L and A != L
        # literal subtree counts, one row of heap nodes per value of L (of A)
        self.by_left = np.zeros(k * self.row, dtype=np.int64)
        self.by_above = np.zeros(k * self.row, dtype=np.int64)
        # prior[n]: how many valid symbols (< k) sit under heap node n
        prior = np.zeros(self.row, dtype=np.int64)
        prior[1 << self.b :] = np.arange(1 << self.b) < k
        for level in range(self.b - 1, -1, -1):
            nodes = np.arange(1 << level, 2 << level)
            prior[nodes] = prior[2 * nodes] + prior[2 * nodes + 1]
        self.prior = prior

    def literal_probs(self, left: np.ndarray, above: np.ndarray,
                      nodes: np.ndarray) -> np.ndarray:
        """12-bit probability that the next bit under each heap node is 1."""
        base_l = left.astype(np.int64, copy=False) * self.row
        base_a = above.astype(np.int64, copy=False) * self.row
        nodes = nodes.astype(np.int64, copy=False)
        right = 2 * nodes + 1
        num = self.by_left[base_l + right] + self.by_above[base_a + right] + self.prior[right]
        den = self.by_left[base_l + nodes] + self.by_above[base_a + nodes] + self.prior[nodes]
        # den is 0 only under an invalid node a corrupt payload led to; the index
        # check after the step rejects it, this only avoids dividing by zero.
        return _probability((num << _rans.PROB_BITS) // np.maximum(den, 1))

    def halve(self) -> None:
        """The update after a step without pixels: only the flag halving (spec §7.5)."""
        self.flag_l.halve()
        self.flag_a.halve()

    def update(self, pattern: np.ndarray, is_left: np.ndarray, pattern_a: np.ndarray,
               is_above: np.ndarray, lit_left: np.ndarray, lit_above: np.ndarray,
               lit_sym: np.ndarray) -> None:
        """Add one step's outcomes to the counts (after the whole step is coded)."""
        self.flag_l.update(pattern, is_left)
        self.flag_a.update(pattern_a, is_above)
        self.update_literals(lit_left, lit_above, lit_sym)

    def update_literals(self, lit_left: np.ndarray, lit_above: np.ndarray,
                        lit_sym: np.ndarray) -> None:
        """Add the step's literals to the literal counts."""
        # every node on the path root -> leaf: leaf >> (b - level)
        shifts = np.arange(self.b, -1, -1)
        size = max(1, _CHUNK // (self.b + 1))
        for c in _chunks(lit_sym.size, size):
            leaf = lit_sym[c : c + size].astype(np.int64) | (1 << self.b)
            path = leaf[:, None] >> shifts
            left = lit_left[c : c + size].astype(np.int64) * self.row
            above = lit_above[c : c + size].astype(np.int64) * self.row
            np.add.at(self.by_left, left[:, None] + path, _LITERAL_INC)
            np.add.at(self.by_above, above[:, None] + path, _LITERAL_INC)


class _Tiles:
    """The image cut into tiles and walked by wavefront steps.

    Pixel (i, j) of a tile is on step ``s = 2*i + j``. A step visits only the
    rows ``i < min(T, height)`` and columns ``j < min(T, width)`` that can hold
    pixels, so a thin image costs no more than its pixels, and handles its
    tiles in chunks of about ``_CHUNK`` pixels, so temporaries stay small.

    Neighbours come from a ring of the last five steps: pixel (i, j) of tile
    ``t`` sits at ``ring[s % 5, t, 2 + i]``, so each neighbour of a chunk is
    one contiguous block of an earlier step shifted by a row or two (left:
    step s-1, same i; above: step s-2, i-1; ...), much faster to read than
    pixels scattered over the raster. The ring costs 5 * (rows + 2) bytes per
    tile: 0.08 bytes per pixel with 64x64 tiles, but 1.9 with 4x4 tiles and 5
    on a 1-pixel-wide image, so when it would cost more than a tenth of a byte
    per pixel (``_RING_PIXELS_PER_BYTE``) the neighbours are read from the
    raster instead (they are close together there). Either way, cells that
    hold no pixel of that step are replaced by the spec's fallbacks with masks,
    so their content never matters.
    """

    def __init__(self, width: int, height: int, tile_log2: int) -> None:
        self.width, self.height = width, height
        self.tile = tile = 1 << tile_log2
        self.tiles_x = -(-width // tile)
        self.n_tiles = self.tiles_x * -(-height // tile)
        self.rows, self.cols = min(tile, height), min(tile, width)
        # some tile of the last tile row or column is smaller than the others
        self.partial = height % self.rows != 0 or width % self.cols != 0
        self.n_steps = n_steps(width, height, tile_log2)
        self.raster = np.zeros(width * height, dtype=np.uint8)
        self.ring = None
        if _RING_PIXELS_PER_BYTE * 5 * self.n_tiles * (2 + self.rows) <= width * height:
            self.ring = np.zeros((5, self.n_tiles, 2 + self.rows), dtype=np.uint8)

    def steps(self, model: _Model) -> Iterator[_Step]:
        """The steps that hold pixels, in order, for the encoder and the decoder alike.

        A step without pixels has no decisions, but the flag counts are halved
        after every step (spec §7.5): that is done here, in its place in the order.
        """
        for s in range(self.n_steps):
            step = _Step(self, s)
            if step.empty:
                model.halve()
            else:
                yield step


class _Chunk:
    """Some consecutive tiles of one step: raster positions (tiles, rows) and masks."""

    def __init__(self, step: _Step, t0: int, t1: int) -> None:
        tiles = step.tiles
        self.tiles = slice(t0, t1)
        ty, tx = np.divmod(np.arange(t0, t1, dtype=np.int64), tiles.tiles_x)
        row = (ty * tiles.tile)[:, None] + step.i
        self.col = (tx * tiles.tile)[:, None] + step.j
        self.pos = row * tiles.width + self.col
        self.inside = None  # None: every pixel of the chunk is in the image
        if tiles.partial:
            inside = (row < tiles.height) & (self.col < tiles.width)
            if not inside.all():
                self.inside = inside
        self.where = self.flatten(self.pos)

    def flatten(self, values: np.ndarray) -> np.ndarray:
        """Values of the chunk's pixels in coding order (tile, then row), in the image only."""
        return values.reshape(-1) if self.inside is None else values[self.inside]


class _Step:
    """The pixels of one wavefront step across all tiles, and their neighbours."""

    def __init__(self, tiles: _Tiles, s: int) -> None:
        self.tiles, self.s = tiles, s
        # rows i with a column j = s - 2*i inside min(T, width) columns
        i = np.arange(max(0, (s - tiles.cols + 2) // 2), min(s // 2, tiles.rows - 1) + 1,
                      dtype=np.int64)
        self.i, self.j = i, s - 2 * i
        #: no pixel is on this step (odd steps of a 1-pixel-wide image): no decisions,
        #: only the halving of the flag counts
        self.empty = i.size == 0
        if self.empty:
            self.bounds: list[tuple[int, int]] = []
            return
        self.first, self.stop = 2 + int(i[0]), 3 + int(i[-1])  # ring columns of i
        per_chunk = max(1, _CHUNK // i.size)  # tiles per chunk
        self.bounds = [(t0, min(tiles.n_tiles, t0 + per_chunk))
                       for t0 in range(0, tiles.n_tiles, per_chunk)]
        # a step of one chunk keeps it from contexts() to storing the pixels
        self._only: _Chunk | None = None

    def _chunks(self):
        if self._only is not None:
            yield self._only
            return
        for t0, t1 in self.bounds:
            chunk = _Chunk(self, t0, t1)
            if len(self.bounds) == 1:
                self._only = chunk
            yield chunk

    def contexts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return L, A and the 7-bit equality pattern (uint8) of the step, in coding order."""
        if len(self.bounds) == 1:
            return self._chunk_contexts(next(self._chunks()))
        # filled chunk by chunk: no list of parts and copy (a step can be N/8 pixels)
        most = self.tiles.n_tiles * self.i.size
        out = [np.empty(most, dtype=np.uint8) for _ in range(3)]  # freed one by one
        start = 0
        for chunk in self._chunks():
            values = self._chunk_contexts(chunk)
            stop = start + values[0].size
            for row, value in zip(out, values, strict=True):
                row[start:stop] = value
            start = stop
        return out[0][:start], out[1][:start], out[2][:start]

    def _neighbours(self, chunk: _Chunk) -> tuple[np.ndarray, ...]:
        """Unmasked (i-1, j), (i, j-1), (i-1, j-1), (i-1, j+1), (i, j-2), (i-2, j)."""
        ring = self.tiles.ring
        if ring is not None:
            s, first, stop = self.s, self.first, self.stop

            def block(steps_back: int, rows_up: int) -> np.ndarray:
                return ring[(s - steps_back) % 5, chunk.tiles,
                            first - rows_up : stop - rows_up]

            return block(2, 1), block(1, 0), block(3, 1), block(1, 1), block(2, 0), block(4, 2)
        width, raster, pos = self.tiles.width, self.tiles.raster, chunk.pos

        def at(offset: int) -> np.ndarray:
            # positions before the raster are clipped: their values are masked
            return raster.take(pos - offset, mode="clip")

        return at(width), at(1), at(width + 1), at(width - 1), at(2), at(2 * width)

    def _chunk_contexts(self, chunk: _Chunk) -> tuple[np.ndarray, ...]:
        i, j = self.i, self.j
        has_above, has_left = i > 0, j > 0
        up, back, diag, right, back2, up2 = self._neighbours(chunk)
        zero = np.uint8(0)
        above = np.where(has_above, up, zero)  # (i-1, j)
        left = np.where(has_left, back, above)  # (i, j-1)
        above = np.where(has_above, above, left)
        diag = np.where(has_above & has_left, diag, above)  # (i-1, j-1)
        right_ok = has_above & (j < self.tiles.tile - 1)
        if self.tiles.width % self.tiles.tile:
            right_ok = right_ok & (chunk.col + 1 < self.tiles.width)
        right = np.where(right_ok, right, above)  # (i-1, j+1)
        left2 = np.where(j > 1, back2, left)  # (i, j-2)
        above2 = np.where(i > 1, up2, above)  # (i-2, j)
        bits = ((left == above), (above == diag), (left == diag), (above == right),
                (left == right), (left == left2), (above == above2))
        pattern = np.zeros(left.shape, dtype=np.uint8)
        for shift, bit in enumerate(bits):
            pattern |= bit.view(np.uint8) << np.uint8(shift)
        return chunk.flatten(left), chunk.flatten(above), chunk.flatten(pattern)

    def load_pixels(self) -> np.ndarray:
        """Encoder: the step's labels from the raster, in coding order (also put in the ring)."""
        parts = []
        for chunk in self._chunks():
            values = self.tiles.raster[chunk.where]
            self._put_ring(chunk, values)
            parts.append(values)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def store_pixels(self, values: np.ndarray) -> None:
        """Decoder: put the step's decoded labels (coding order) into the raster and ring."""
        start = 0
        for chunk in self._chunks():
            part = values[start : start + chunk.where.size]
            self.tiles.raster[chunk.where] = part
            self._put_ring(chunk, part)
            start += part.size

    def _put_ring(self, chunk: _Chunk, values: np.ndarray) -> None:
        if self.tiles.ring is None:
            return
        view = self.tiles.ring[self.s % 5, chunk.tiles, self.first : self.stop]
        if chunk.inside is None:
            view[...] = values.reshape(view.shape)
        else:
            view[chunk.inside] = values


def _n_lanes(n_pixels: int) -> int:
    return int(min(_MAX_LANES, max(1, n_pixels // _PIXELS_PER_LANE)))


def encode(labels: np.ndarray, k: int) -> bytes:
    """Entropy-code ``labels`` (uint8 of shape (height, width), values < k).

    Parameters
    ----------
    labels : ndarray of uint8, shape (height, width)
        Palette indices; every value must be < ``k``.
    k : int
        Palette size, 1..256.

    Returns
    -------
    bytes
        The payload; empty when ``k == 1``.
    """
    labels = image_labels(labels)
    height, width = labels.shape
    if k == 1:
        return b""
    require_below_k(labels, k)
    n_lanes = _n_lanes(width * height)
    # the settings are module constants (tests change them): never write a file
    # that a decoder must reject
    _check_layout(TILE_LOG2, n_lanes, width, height, ValueError)
    header = bytes([TILE_LOG2]) + n_lanes.to_bytes(2, "big")
    fast = _compiled(width * height)
    if fast is not None:
        states, words = fast.encode_payload(labels, k, bits_per_index(k), TILE_LOG2, n_lanes)
        return header + states.astype(">u4").tobytes() + words.astype(">u2").tobytes()
    model = _Model(k)
    tiles = _Tiles(width, height, TILE_LOG2)
    tiles.raster[:] = labels.reshape(-1)
    b = model.b
    probs: list[np.ndarray] = []
    bits: list[np.ndarray] = []
    groups: list[int] = []
    levels = np.arange(b, dtype=np.int64)
    for step in tiles.steps(model):
        x = step.load_pixels()
        left, above, pattern = step.contexts()
        is_left = x == left
        probs.append(model.flag_l.probs()[pattern].astype(np.uint16))
        bits.append(is_left)
        groups.append(x.size)
        need_a = ~is_left & (left != above)
        is_above = (x == above)[need_a]
        probs.append(model.flag_a.probs()[pattern[need_a]].astype(np.uint16))
        bits.append(is_above)
        groups.append(is_above.size)
        literal = ~is_left & (x != above)
        sym = x[literal].astype(np.int64)
        lit_left = left[literal].astype(np.int64)
        lit_above = above[literal].astype(np.int64)
        if sym.size:
            # heap node before level d: (1 << d) | top d bits; decision: bit d from the top
            nodes = (sym[None, :] | (1 << b)) >> (b - levels[:, None])
            bit = (sym[None, :] >> (b - 1 - levels[:, None])) & 1
            probs.extend(model.literal_probs(lit_left[None, :], lit_above[None, :], nodes)
                         .astype(np.uint16))
            bits.extend(bit.astype(bool))
            groups.extend([sym.size] * b)
        model.update(pattern, is_left, pattern[need_a], is_above, lit_left, lit_above, sym)
    states, words = _rans.encode(np.concatenate(probs), np.concatenate(bits), groups, n_lanes)
    return header + states.astype(">u4").tobytes() + words.astype(">u2").tobytes()


def _check_layout(tile_log2: int, n_lanes: int, width: int, height: int,
                  error: type[Exception]) -> None:
    """Raise ``error`` unless tile_log2 and lanes obey spec §7.1 for this image."""
    require_between("entropy payload tile_log2", tile_log2, _MIN_TILE_LOG2, _MAX_TILE_LOG2,
                    error)
    steps = n_steps(width, height, tile_log2)
    if steps > MAX_STEPS:
        msg = (f"entropy payload tile_log2={tile_log2} gives {steps} wavefront steps on a "
               f"{width}x{height} image, more than {MAX_STEPS}")
        raise error(msg)
    least = min_lanes(width * height)
    if n_lanes < least:
        msg = (f"entropy payload lanes={n_lanes} must be at least {least} for "
               f"{width * height} pixels (one per {_MIN_LANES_PIXELS}, at most "
               f"{_MIN_LANES_CAP})")
        raise error(msg)


def _read_header(payload: memoryview, width: int,
                 height: int) -> tuple[int, np.ndarray, np.ndarray]:
    if len(payload) < _HEADER:
        msg = f"entropy payload is {len(payload)} bytes, shorter than its {_HEADER}-byte header"
        raise FormatError(msg)
    tile_log2 = payload[0]
    require_between("entropy payload tile_log2", tile_log2, _MIN_TILE_LOG2, _MAX_TILE_LOG2)
    n_lanes = int.from_bytes(payload[1:3], "big")
    if n_lanes == 0:
        msg = "entropy payload lanes=0 must be at least 1"
        raise FormatError(msg)
    _check_layout(tile_log2, n_lanes, width, height, FormatError)
    body = len(payload) - _HEADER - 4 * n_lanes
    if body < 0 or body % 2:
        msg = (f"entropy payload is {len(payload)} bytes: not {_HEADER} + 4*{n_lanes} "
               "+ an even number of bytes")
        raise FormatError(msg)
    states = np.frombuffer(payload, dtype=">u4", count=n_lanes, offset=_HEADER)
    if int(states.min()) < _rans.STATE_LOW:
        msg = f"entropy payload has a lane state below {_rans.STATE_LOW}"
        raise FormatError(msg)
    words = np.frombuffer(payload, dtype=">u2", offset=_HEADER + 4 * n_lanes)
    return tile_log2, states, words


def _decode_flags(coder: _rans.Decoder, table: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    """Decode one flag per pattern, with the probabilities of ``table``, in chunks."""
    out = np.empty(pattern.size, dtype=bool)
    for c in _chunks(pattern.size):
        out[c : c + _CHUNK] = coder.decode(table[pattern[c : c + _CHUNK]])
    return out


def decode(payload: bytes, k: int, width: int, height: int) -> np.ndarray:
    """Decode an entropy payload into an ``ndarray`` of shape (height, width), uint8.

    Raises
    ------
    FormatError
        If the payload's header is invalid (tile_log2 out of range or giving
        more than ``MAX_STEPS`` steps, fewer lanes than ``min_lanes``), the
        coder runs out of words or has words left over, a lane does not end in
        its initial state, or a decoded index is >= k.
    """
    if k == 1:
        return one_colour(payload, NAME, width, height)
    # a view, not a copy: the words are read where they are (a payload can be N bytes)
    tile_log2, states, words = _read_header(memoryview(payload).cast("B"), width, height)
    # A tile larger than the image decodes exactly as the smallest power of two
    # that covers it (spec §7.6); the steps only visit rows and columns that
    # hold pixels, so this only keeps the arithmetic small.
    tile_log2 = min(tile_log2, max(_MIN_TILE_LOG2, (max(width, height) - 1).bit_length()))
    fast = _compiled(width * height)
    if fast is not None:
        return fast.decode_labels(states, words, k, bits_per_index(k), width, height, tile_log2)
    coder = _rans.Decoder(states, words)
    model = _Model(k)
    tiles = _Tiles(width, height, tile_log2)
    b = model.b
    for step in tiles.steps(model):
        left, above, pattern = step.contexts()
        # A step of 4x4 tiles holds an eighth of the image, so its arrays are
        # dropped as soon as they are used. The flag counts may be updated
        # early: each flag's probabilities are all taken before its update.
        is_left = _decode_flags(coder, model.flag_l.probs(), pattern)
        model.flag_l.update(pattern, is_left)
        need_a = ~is_left & (left != above)
        pattern_a = pattern[need_a]
        del pattern
        is_above = _decode_flags(coder, model.flag_a.probs(), pattern_a)
        model.flag_a.update(pattern_a, is_above)
        del pattern_a
        x = np.where(is_left, left, above)
        literal = np.logical_not(is_left, out=is_left)
        literal[need_a] = ~is_above
        del need_a, is_above
        lit_left = left[literal]
        lit_above = above[literal]
        del left, above
        # heap nodes < 2**(b+1) <= 512; many literals stay narrow, widened chunk by chunk
        wide = lit_left.size <= _CHUNK
        if wide:
            lit_left, lit_above = lit_left.astype(np.int64), lit_above.astype(np.int64)
        nodes = np.ones(lit_left.size, dtype=np.int64 if wide else np.int16)
        for _ in range(b):
            for c in _chunks(nodes.size):
                part = slice(c, c + _CHUNK)
                one = coder.decode(model.literal_probs(lit_left[part], lit_above[part],
                                                       nodes[part]))
                nodes[part] = 2 * nodes[part] + one
        nodes -= 1 << b  # leaf -> index
        if nodes.size and int(nodes.max()) >= k:
            msg = f"entropy payload decodes to index {int(nodes.max())} >= k={k}"
            raise FormatError(msg)
        x[literal] = nodes
        del literal
        step.store_pixels(x)
        model.update_literals(lit_left, lit_above, nodes)
    coder.check_finished()
    return tiles.raster.reshape(height, width)
