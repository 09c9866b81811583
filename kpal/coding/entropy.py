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

The decisions go through ``_rans`` (interleaved binary rANS, many lanes).
"""

from __future__ import annotations

import os
from types import ModuleType

import numpy as np

from kpal.errors import FormatError

from . import _rans
from .fixed import bits_per_index

__all__ = ["CODING_ID", "NAME", "encode", "decode", "payload_size"]

CODING_ID = 2
NAME = "entropy"

#: Tile side is 2**TILE_LOG2 pixels; stored in the payload, so a decoder accepts others.
TILE_LOG2 = 6
#: Tiles of 4 .. 32768 pixels: smaller ones leave almost no context, larger ones
#: only make the steps (3*T of them) longer for no gain.
_MIN_TILE_LOG2, _MAX_TILE_LOG2 = 2, 15
#: One lane per this many pixels (at least 1, at most _MAX_LANES): the final
#: state of a lane costs 4 bytes, more lanes mean fewer numpy rounds.
_PIXELS_PER_LANE = 1 << 10
_MAX_LANES = 1 << 12
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
    (``KPAL_PURE_NUMPY=0`` forces the compiled path at any size).

    Read at every call so tests can switch paths; both write identical bytes.
    """
    choice = os.environ.get("KPAL_PURE_NUMPY")
    if choice == "1" or (choice != "0" and n_pixels < COMPILED_MIN_PIXELS):
        return None
    try:
        from . import _entropy_fast
    except ImportError:  # numba not installed: the numpy path below
        return None
    return _entropy_fast


def payload_size(k: int, width: int, height: int) -> None:
    """Return ``None``: the entropy payload length depends on the pixels."""
    return None


class _FlagCounts:
    """Counts (zeros, ones) per pattern for one yes/no flag."""

    def __init__(self) -> None:
        self.counts = np.ones((_N_PATTERNS, 2), dtype=np.int64)
        self._probs: np.ndarray | None = None

    def probs(self) -> np.ndarray:
        """12-bit probability of a 1 for each pattern (recomputed after an update)."""
        if self._probs is None:
            c = self.counts
            self._probs = np.clip((c[:, 1] << _rans.PROB_BITS) // (c[:, 0] + c[:, 1]), 1,
                                  _rans.PROB_ONE - 1)
        return self._probs

    def update(self, pattern: np.ndarray, bit: np.ndarray) -> None:
        index = pattern.astype(np.int64) * 2 + bit
        self.counts += 2 * np.bincount(index, minlength=2 * _N_PATTERNS).reshape(-1, 2)
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
        base_l = left * self.row
        base_a = above * self.row
        right = 2 * nodes + 1
        num = self.by_left[base_l + right] + self.by_above[base_a + right] + self.prior[right]
        den = self.by_left[base_l + nodes] + self.by_above[base_a + nodes] + self.prior[nodes]
        # den is 0 only under an invalid node a corrupt payload led to; the index
        # check after the step rejects it, this only avoids dividing by zero.
        return np.clip((num << _rans.PROB_BITS) // np.maximum(den, 1), 1, _rans.PROB_ONE - 1)

    def update(self, pattern: np.ndarray, is_left: np.ndarray, pattern_a: np.ndarray,
               is_above: np.ndarray, lit_left: np.ndarray, lit_above: np.ndarray,
               lit_sym: np.ndarray) -> None:
        """Add one step's outcomes to the counts (after the whole step is coded)."""
        self.flag_l.update(pattern, is_left)
        self.flag_a.update(pattern_a, is_above)
        if lit_sym.size:
            leaf = lit_sym.astype(np.int64) | (1 << self.b)
            # every node on the path root -> leaf: leaf >> (b - level)
            path = leaf[:, None] >> np.arange(self.b, -1, -1)
            np.add.at(self.by_left, (lit_left * self.row)[:, None] + path, _LITERAL_INC)
            np.add.at(self.by_above, (lit_above * self.row)[:, None] + path, _LITERAL_INC)


class _Tiles:
    """The image cut into tiles and walked by wavefront steps.

    Pixel (i, j) of a tile is on step ``s = 2*i + j``. Only the last four
    steps are ever needed as context, so they are kept in a ring of five
    step buffers: pixel (i, j) of tile ``t`` sits at ``ring[s % 5, t, 2 + i]``.
    One step of all tiles is then one 2-D block with contiguous rows, and each
    neighbour is a block of an earlier step shifted by a column or two (left:
    step s-1, same i; above: step s-2, i-1; ...). Cells that hold no pixel of
    that step (before the tile, or left from an older step) are replaced by the
    spec's fallbacks with masks that depend only on (i, j), so their content
    never matters. Memory is five times one step, plus the labels.
    """

    def __init__(self, width: int, height: int, tile_log2: int) -> None:
        self.width, self.height = width, height
        self.tile = tile = 1 << tile_log2
        tiles_x = -(-width // tile)
        ty, tx = np.divmod(np.arange(-(-height // tile) * tiles_x, dtype=np.int64), tiles_x)
        self.tile_row = ty * tile
        self.tile_col = tx * tile
        self.tile_start = self.tile_row * width + self.tile_col  # raster index of (0, 0)
        self.partial = height % tile != 0 or width % tile != 0
        rows = min(tile, height)
        # pixel (i, j) of a tile is on step 2*i + j
        self.n_steps = 2 * (rows - 1) + min(tile, width)
        self.ring = np.zeros((5, ty.size, 2 + rows), dtype=np.uint8)
        self.raster = np.zeros(width * height, dtype=np.uint8)

    def step(self, s: int) -> _Step:
        return _Step(self, s)


class _Step:
    """The pixels of one wavefront step across all tiles, and their neighbours."""

    def __init__(self, tiles: _Tiles, s: int) -> None:
        t = tiles.tile
        self.tiles, self.s = tiles, s
        i = np.arange(max(0, (s - t + 2) // 2), min(s // 2, tiles.ring.shape[2] - 3) + 1,
                      dtype=np.int64)
        j = s - 2 * i
        self.first, self.stop = 2 + int(i[0]), 3 + int(i[-1])  # ring columns of i
        rows = tiles.tile_row[:, None] + i
        cols = tiles.tile_col[:, None] + j
        self.inside = None  # None: every pixel of the step is in the image
        if tiles.partial:
            inside = (rows < tiles.height) & (cols < tiles.width)
            if not inside.all():
                self.inside = inside
        # raster positions of the step's pixels, in coding order
        self.where = self.flatten(tiles.tile_start[:, None] + (i * tiles.width + j))
        self.i, self.j = i, j

    def _block(self, steps_back: int, rows_up: int) -> np.ndarray:
        """Ring cells of pixel (i - rows_up, .) on step s - steps_back, for every i of this step."""
        return self.tiles.ring[(self.s - steps_back) % 5, :,
                               self.first - rows_up : self.stop - rows_up]

    def flatten(self, values: np.ndarray) -> np.ndarray:
        """Values for the step's pixels in coding order (tile, then row), in the image only."""
        return values.reshape(-1) if self.inside is None else values[self.inside]

    def contexts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return L, A and the 7-bit equality pattern (uint8), flattened."""
        t, i, j = self.tiles.tile, self.i, self.j
        has_above, has_left = i > 0, j > 0
        zero = np.uint8(0)
        above = np.where(has_above, self._block(2, 1), zero)  # (i-1, j)
        left = np.where(has_left, self._block(1, 0), above)  # (i, j-1)
        above = np.where(has_above, above, left)
        diag = np.where(has_above & has_left, self._block(3, 1), above)  # (i-1, j-1)
        right_ok = has_above & (j < t - 1)
        if self.tiles.partial:
            right_ok = right_ok & (self.tiles.tile_col[:, None] + j + 1 < self.tiles.width)
        right = np.where(right_ok, self._block(1, 1), above)  # (i-1, j+1)
        left2 = np.where(j > 1, self._block(2, 0), left)  # (i, j-2)
        above2 = np.where(i > 1, self._block(4, 2), above)  # (i-2, j)
        bits = ((left == above), (above == diag), (left == diag), (above == right),
                (left == right), (left == left2), (above == above2))
        pattern = np.zeros(left.shape, dtype=np.uint8)
        for shift, bit in enumerate(bits):
            pattern |= bit.view(np.uint8) << np.uint8(shift)
        return self.flatten(left), self.flatten(above), self.flatten(pattern)

    def load_pixels(self) -> np.ndarray:
        """Encoder: the step's labels from the raster, also put into the ring."""
        values = self.tiles.raster[self.where]
        self._put(values)
        return values

    def store_pixels(self, values: np.ndarray) -> None:
        """Decoder: put the step's decoded labels into the ring and the raster."""
        self._put(values)
        self.tiles.raster[self.where] = values

    def _put(self, values: np.ndarray) -> None:
        view = self._block(0, 0)
        if self.inside is None:
            view[...] = values.reshape(view.shape)
        else:
            view[self.inside] = values


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
    labels = np.asarray(labels, dtype=np.uint8)
    height, width = labels.shape
    if labels.size == 0:
        msg = f"cannot code a {width}x{height} image: it has no pixels"
        raise ValueError(msg)
    if k == 1:
        return b""
    if labels.size and int(labels.max()) >= k:
        msg = f"label {int(labels.max())} >= k={k}"
        raise ValueError(msg)
    n_lanes = _n_lanes(width * height)
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
    for s in range(tiles.n_steps):
        step = tiles.step(s)
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


def _read_header(payload: bytes) -> tuple[int, np.ndarray, np.ndarray]:
    if len(payload) < _HEADER:
        msg = f"entropy payload is {len(payload)} bytes, shorter than its {_HEADER}-byte header"
        raise FormatError(msg)
    tile_log2 = payload[0]
    if not _MIN_TILE_LOG2 <= tile_log2 <= _MAX_TILE_LOG2:
        msg = (f"entropy payload tile_log2={tile_log2} must be between "
               f"{_MIN_TILE_LOG2} and {_MAX_TILE_LOG2}")
        raise FormatError(msg)
    n_lanes = int.from_bytes(payload[1:3], "big")
    if n_lanes == 0:
        msg = "entropy payload n_lanes=0 must be at least 1"
        raise FormatError(msg)
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


def decode(payload: bytes, k: int, width: int, height: int) -> np.ndarray:
    """Decode an entropy payload into an ``ndarray`` of shape (height, width), uint8.

    Raises
    ------
    FormatError
        If the payload's header is invalid, the coder runs out of words or has
        words left over, a lane does not end in its initial state, or a decoded
        index is >= k.
    """
    if k == 1:
        if payload:
            msg = f"entropy payload must be empty for k=1, got {len(payload)} bytes"
            raise FormatError(msg)
        return np.zeros((height, width), dtype=np.uint8)
    tile_log2, states, words = _read_header(bytes(payload))
    # A tile larger than the image decodes exactly as the smallest power of two
    # that covers it; clamping keeps the buffers proportional to the image, not
    # to a hostile tile_log2 (15 on a 5x5 image asked for 8 GiB).
    tile_log2 = min(tile_log2, max(_MIN_TILE_LOG2, (max(width, height) - 1).bit_length()))
    fast = _compiled(width * height)
    if fast is not None:
        return fast.decode_labels(states, words, k, bits_per_index(k), width, height, tile_log2)
    coder = _rans.Decoder(states, words)
    model = _Model(k)
    tiles = _Tiles(width, height, tile_log2)
    b = model.b
    for s in range(tiles.n_steps):
        step = tiles.step(s)
        left, above, pattern = step.contexts()
        is_left = coder.decode(model.flag_l.probs()[pattern])
        need_a = ~is_left & (left != above)
        is_above = coder.decode(model.flag_a.probs()[pattern[need_a]])
        x = np.where(is_left, left, above)
        literal = ~is_left
        literal[need_a] = ~is_above
        lit_left = left[literal].astype(np.int64)
        lit_above = above[literal].astype(np.int64)
        nodes = np.ones(lit_left.size, dtype=np.int64)
        for _ in range(b):
            one = coder.decode(model.literal_probs(lit_left, lit_above, nodes))
            nodes = 2 * nodes + one
        sym = nodes - (1 << b)
        if sym.size and int(sym.max()) >= k:
            msg = f"entropy payload decodes to index {int(sym.max())} >= k={k}"
            raise FormatError(msg)
        x[literal] = sym
        step.store_pixels(x)
        model.update(pattern, is_left, pattern[need_a], is_above, lit_left, lit_above, sym)
    coder.check_finished()
    return tiles.raster.reshape(height, width)
