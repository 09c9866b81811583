"""Remap: every pixel to a palette index, by nearest colour or dithered.

Three ways to choose the index of each pixel, all deterministic (no label
depends on the thread count or on anything but the pixels, the palette and
the arguments):

``"none"``
    The exact nearest palette colour (squared RGB distance, ties to the
    lowest index), computed once per distinct colour and spread to the pixels
    through a lookup table (:mod:`kpal.cluster.histogram`).
``"ordered"``
    A threshold map of blue noise (void-and-cluster, 64 x 64, generated once
    from a fixed integer hash) offsets every channel before the exact
    nearest-colour mapping. The offset's amplitude follows the palette's
    spacing (the mean distance from each palette colour to its nearest other
    one) times ``strength``. Vectorized over the whole image.
``"fs"``
    Floyd--Steinberg error diffusion in serpentine order (even rows left to
    right, odd rows right to left), the error scaled by ``strength``; an
    error longer than half the palette spacing is shortened by a quarter
    before it spreads, so one pixel far from every palette colour cannot
    drag a streak of wrong colours behind it. With ``adaptive=True`` the
    error a pixel receives is further scaled by a map of the image's local
    contrast: full diffusion in smooth regions, little at edges and in noisy
    texture, where the quantization error is masked anyway and dithering
    only adds noise (the idea of libimagequant's "dithering map").

Error diffusion is sequential: in serpentine order a row cannot start before
the row above it has finished, so its critical path is every pixel of the
image, one after another. numpy needs whole arrays per step, so the image is
cut into horizontal bands of :data:`BAND_ROWS` rows that are diffused side by
side, one pixel of every band per step: ``(BAND_ROWS + WARMUP_ROWS) * width``
steps whatever the height. Each band first runs :data:`WARMUP_ROWS` rows of
the band above it without keeping their labels, so its first row receives an
error field like the one a single pass would bring, and no seam shows. The
first band, and so an image of at most ``BAND_ROWS`` rows, is exactly the
textbook single pass; later bands differ from it only in that the error they
start from was diffused over the few rows just above them.
"""

from __future__ import annotations

import functools

import numpy as np

from kpal.cluster.histogram import color_histogram, map_pixels
from kpal.cluster.kmeans import nearest_palette_colors
from kpal.errors import KpalError

__all__ = ["DITHERS", "BAND_ROWS", "WARMUP_ROWS", "blue_noise", "palette_spacing", "remap"]

#: Names accepted by ``dither=``.
DITHERS = ("none", "fs", "ordered")

#: Rows per band of the banded error diffusion (even: bands keep the row parity).
BAND_ROWS = 4
#: Rows of the band above that each band diffuses first, labels discarded (even).
WARMUP_ROWS = 2

#: Floyd--Steinberg weights, in sixteenths: ahead in the row, then the row
#: below behind, under and ahead (ahead = the scan direction).
_AHEAD, _BELOW_BEHIND, _BELOW, _BELOW_AHEAD = 7 / 16, 3 / 16, 5 / 16, 1 / 16

#: Side of the blue-noise threshold map.
_NOISE_SIDE = 64
#: Width (in pixels) of the Gaussian that void-and-cluster measures crowding with.
_NOISE_SIGMA = 1.5

#: Where each channel reads the blue-noise map (row, column shift), so that
#: the three channels get different, uncorrelated thresholds.
_CHANNEL_SHIFTS = ((0, 0), (_NOISE_SIDE // 2, _NOISE_SIDE // 3),
                   (_NOISE_SIDE // 3, _NOISE_SIDE // 2))

#: Error diffusion: amplitude of the warm-up's starting error (blue noise),
#: as a fraction of the palette spacing.
_WARMUP_NOISE = 0.6

#: Ordered dithering: offset amplitude as a fraction of the palette spacing at
#: ``strength=1`` (the offsets then span [-amplitude/2, amplitude/2)).
_ORDERED_SCALE = 1.0

#: Adaptive diffusion: local luma range, in multiples of the palette spacing,
#: at which a pixel receives no error at all (it receives all of it at 0).
_EDGE_RANGE = 4.0

#: Error diffusion: an error longer than this fraction of the palette spacing
#: is shortened by :data:`_CAP_SCALE` before it spreads (libimagequant's limit
#: does the same): a pixel far from every palette colour, at an edge or in a
#: saturated region, would otherwise push a streak of wrong colours ahead of it.
_CAP_FRACTION = 0.5
_CAP_SCALE = 0.75

#: Luma weights (ITU-R BT.601) for the contrast map.
_LUMA = (0.299, 0.587, 0.114)


def remap(
    pixels_hw3: np.ndarray,
    palette: np.ndarray,
    *,
    dither: str = "none",
    strength: float = 1.0,
    seed: int = 0,
    adaptive: bool = False,
) -> np.ndarray:
    """Palette index of every pixel: the nearest colour, or dithered.

    Parameters
    ----------
    pixels_hw3 : ndarray of shape (height, width, 3), uint8
        RGB image.
    palette : ndarray of shape (k, 3), uint8
        Palette colours, ``1 <= k <= 256``.
    dither : {"none", "fs", "ordered"}, default "none"
        Nearest colour, Floyd--Steinberg error diffusion (serpentine), or
        ordered dithering with a blue-noise threshold map. ``k == 1`` always
        gives zeros.
    strength : float in [0, 1], default 1.0
        Fraction of the error diffused (``"fs"``) or of the full threshold
        amplitude (``"ordered"``); 0 gives the nearest-colour labels.
    seed : int, default 0
        ``"ordered"`` only: shifts the threshold map by a deterministic
        offset, so that several images need not share one pattern.
        ``"fs"`` uses no randomness.
    adaptive : bool, default False
        ``"fs"`` only: scale the diffused error by a map of local contrast
        (full in smooth regions, little at edges and in texture).

    Returns
    -------
    ndarray of shape (height, width), uint8
        Palette index of every pixel, each ``< k``.

    Raises
    ------
    KpalError
        When an argument has the wrong type, shape or value.

    Examples
    --------
    >>> palette = np.array([[0, 0, 0], [255, 255, 255]], dtype=np.uint8)
    >>> grey = np.full((2, 4, 3), 128, dtype=np.uint8)
    >>> remap(grey, palette).tolist()
    [[1, 1, 1, 1], [1, 1, 1, 1]]
    >>> remap(grey, palette, dither="fs").tolist()
    [[1, 0, 1, 0], [0, 1, 0, 1]]
    """
    _check(pixels_hw3, palette, dither, strength, seed, adaptive)
    if dither == "none" or strength == 0 or palette.shape[0] == 1:
        return _nearest(pixels_hw3, palette)
    if dither == "ordered":
        return _ordered(pixels_hw3, palette, float(strength), int(seed))
    weights = _contrast_weights(pixels_hw3, palette) if adaptive else None
    return _diffuse(pixels_hw3, palette, float(strength), weights)


def _check(pixels: object, palette: object, dither: object, strength: object, seed: object,
           adaptive: object) -> None:
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
        dtype = getattr(pixels, "dtype", type(pixels).__name__)
        msg = f"pixels must be a uint8 ndarray, got {dtype}"
        raise KpalError(msg)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or 0 in pixels.shape:
        msg = ("pixels must have shape (height, width, 3) with height, width >= 1, "
               f"got {pixels.shape}")
        raise KpalError(msg)
    if not isinstance(palette, np.ndarray) or palette.dtype != np.uint8:
        dtype = getattr(palette, "dtype", type(palette).__name__)
        msg = f"palette must be a uint8 ndarray, got {dtype}"
        raise KpalError(msg)
    if palette.ndim != 2 or palette.shape[1] != 3 or not 1 <= palette.shape[0] <= 256:
        msg = f"palette must have shape (k, 3) with 1 <= k <= 256, got {palette.shape}"
        raise KpalError(msg)
    if dither not in DITHERS:
        msg = f"dither={dither!r} must be one of {', '.join(DITHERS)}"
        raise KpalError(msg)
    if (isinstance(strength, bool) or not isinstance(strength, (int, float, np.floating))
            or not 0.0 <= strength <= 1.0):
        msg = f"strength={strength!r} must be a number between 0 and 1"
        raise KpalError(msg)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        msg = f"seed={seed!r} must be an integer >= 0"
        raise KpalError(msg)
    if not isinstance(adaptive, (bool, np.bool_)):
        msg = f"adaptive={adaptive!r} must be True or False"
        raise KpalError(msg)


def _nearest(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Exact nearest palette colour of every pixel, once per distinct colour."""
    flat = pixels.reshape(-1, 3)
    hist = color_histogram(flat)
    labels, _ = nearest_palette_colors(hist.colors, palette)
    out = map_pixels(flat, hist.colors, labels.astype(np.uint8))
    return out.reshape(pixels.shape[:2])


def palette_spacing(palette: np.ndarray) -> float:
    """Mean distance from each palette colour to its nearest other one.

    Dithering mixes neighbouring palette colours, so this is the scale of
    the offsets it needs: finer palettes need smaller ones.

    Parameters
    ----------
    palette : ndarray of shape (k, 3), uint8

    Returns
    -------
    float
        In RGB levels; 0 when ``k == 1`` or every colour is the same.

    Examples
    --------
    >>> palette_spacing(np.array([[0, 0, 0], [0, 0, 10], [0, 0, 30]], dtype=np.uint8))
    13.333333333333334
    """
    colours = palette.astype(np.float64)
    k = colours.shape[0]
    if k < 2:
        return 0.0
    squared = np.zeros((k, k))
    for column in colours.T:
        diff = column[:, None] - column
        squared += diff * diff
    np.fill_diagonal(squared, np.inf)
    # Duplicates (distance 0) say nothing about spacing: skip them.
    squared[squared == 0] = np.inf
    nearest = squared.min(axis=1)
    finite = nearest[np.isfinite(nearest)]
    return float(np.sqrt(finite).mean()) if finite.size else 0.0


# -- ordered dithering -------------------------------------------------------


def _ordered(pixels: np.ndarray, palette: np.ndarray, strength: float, seed: int) -> np.ndarray:
    height, width = pixels.shape[:2]
    amplitude = _ORDERED_SCALE * strength * palette_spacing(palette)
    if amplitude == 0:
        return _nearest(pixels, palette)
    noise = blue_noise()
    side = noise.shape[0]
    # Thresholds centred on 0, in (-1/2, 1/2). Each channel reads the map at
    # its own fixed shift, so the offset is a point in 3-D (palette colours
    # differ in hue as well as lightness), yet every channel is blue noise.
    centred = (noise.astype(np.float64) + 0.5) / noise.size - 0.5
    # rint(pixel + offset) == pixel + rint(offset) for integer pixels: the
    # offsets are rounded once per map cell, then added as small integers.
    tile = np.stack([np.rint(amplitude * np.roll(centred, (-dy, -dx), axis=(0, 1)))
                     for dy, dx in _CHANNEL_SHIFTS], axis=-1).astype(np.int16)
    dy, dx = _seed_shift(seed, side)
    columns = (np.arange(width) + dx) % side
    out = np.empty((height, width, 3), dtype=np.uint8)
    rows_per_chunk = max(1, (1 << 18) // width)
    for start in range(0, height, rows_per_chunk):
        stop = min(height, start + rows_per_chunk)
        rows = (np.arange(start, stop) + dy) % side
        value = pixels[start:stop].astype(np.int16)
        value += tile[rows[:, None], columns[None, :]]
        np.clip(value, 0, 255, out=value)
        out[start:stop] = value
    return _nearest(out, palette)


def _seed_shift(seed: int, side: int) -> tuple[int, int]:
    """Deterministic map offset for ``seed`` (seed 0: no offset)."""
    if seed == 0:
        return 0, 0
    mixed = int(_splitmix64(np.array([seed], dtype=np.uint64))[0])
    return mixed % side, (mixed >> 32) % side


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer: a fixed, well-mixed hash of 64-bit integers."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


@functools.lru_cache(maxsize=1)
def blue_noise() -> np.ndarray:
    """A 64 x 64 blue-noise threshold map (void-and-cluster), computed once.

    Ulichney's void-and-cluster method: place a few points, move them until
    none is crowded, then rank every cell by the order in which points are
    removed from the tightest clusters and added in the largest voids, as
    measured by a toroidal Gaussian. The starting points come from a fixed
    integer hash, so the map is the same on every machine and numpy version.

    Returns
    -------
    ndarray of shape (64, 64), int32
        Every rank ``0 .. 4095`` once; read-only.
    """
    side, sigma = _NOISE_SIDE, _NOISE_SIGMA
    cells = side * side
    gap = np.minimum(np.arange(side), side - np.arange(side)).astype(np.float64)
    profile = np.exp(-(gap * gap) / (2 * sigma * sigma))
    # Kernel values on a grid of 2**-24: every crowding total is then a sum of
    # exactly representable terms, computed exactly in any order, so an exp
    # that differs in its last bit on another machine cannot change a rank.
    kernel = np.rint(np.outer(profile, profile) * 2.0**24) / 2.0**24
    # The crowding a point at (y, x) adds to every cell is the kernel rolled
    # by (y, x): a window of the kernel tiled twice.
    tiled = np.tile(kernel, (2, 2))

    def kernel(cell: int) -> np.ndarray:
        y, x = divmod(cell, side)
        return tiled[side - y : 2 * side - y, side - x : 2 * side - x].ravel()

    start = np.argsort(_splitmix64(np.arange(cells, dtype=np.uint64)), kind="stable")
    n_start = cells // 10
    points = np.zeros(cells, dtype=bool)
    points[start[:n_start]] = True
    energy = np.zeros(cells)
    for cell in start[:n_start].tolist():
        energy += kernel(cell)
    # Relax: move the point in the tightest cluster to the largest void until
    # it would come straight back.
    for _ in range(4 * cells):
        tight = int(np.argmax(np.where(points, energy, -np.inf)))
        points[tight] = False
        energy -= kernel(tight)
        void = int(np.argmin(np.where(points, np.inf, energy)))
        points[void] = True
        energy += kernel(void)
        if void == tight:
            break
    ranks = np.empty(cells, dtype=np.int32)
    # Phase 1: rank the starting points, tightest cluster last.
    kept, kept_energy = points.copy(), energy.copy()
    for rank in range(n_start - 1, -1, -1):
        tight = int(np.argmax(np.where(kept, kept_energy, -np.inf)))
        kept[tight] = False
        kept_energy -= kernel(tight)
        ranks[tight] = rank
    # Phase 2: fill the largest void, one cell at a time, up to the full map.
    for rank in range(n_start, cells):
        void = int(np.argmin(np.where(points, np.inf, energy)))
        points[void] = True
        energy += kernel(void)
        ranks[void] = rank
    out = ranks.reshape(side, side)
    out.flags.writeable = False
    return out


# -- error diffusion ---------------------------------------------------------


def _contrast_weights(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Per-pixel share of the diffused error a pixel receives, in [0, 1].

    The range of luma in the 3 x 3 neighbourhood measures edges and texture;
    it is compared with the palette spacing: where the image itself varies by
    more than the gap between palette colours, the quantization error is
    masked and dithering only adds noise. A 3 x 3 minimum then widens the
    low-weight zones, so the pixels beside an edge do not ring.
    """
    height, width = pixels.shape[:2]
    # float32: on a 12 MP image the maps are 48 MiB each instead of 96.
    luma = np.zeros((height + 2, width + 2), dtype=np.float32)
    for channel, weight in enumerate(_LUMA):
        luma[1:-1, 1:-1] += np.float32(weight) * pixels[:, :, channel]
    # Replicate the border, so the image edge is not an edge.
    luma[0], luma[-1] = luma[1], luma[-2]
    luma[:, 0], luma[:, -1] = luma[:, 1], luma[:, -2]
    high = _window(luma, np.maximum)
    low = _window(luma, np.minimum)
    spacing = max(palette_spacing(palette), 1.0)
    high -= low
    weights = np.float32(1.0) - high / np.float32(_EDGE_RANGE * spacing)
    np.clip(weights, 0.0, 1.0, out=weights)
    padded = np.pad(weights, 1, mode="edge")
    return _window(padded, np.minimum)


def _window(padded: np.ndarray, reduce: np.ufunc) -> np.ndarray:
    """3 x 3 running ``reduce`` (max or min) of a padded 2-D array, separably."""
    rows = reduce(reduce(padded[:-2], padded[1:-1]), padded[2:])
    return reduce(reduce(rows[:, :-2], rows[:, 1:-1]), rows[:, 2:])


def _diffuse(pixels: np.ndarray, palette: np.ndarray, strength: float,
             weights: np.ndarray | None, band_rows: int = BAND_ROWS,
             warmup_rows: int = WARMUP_ROWS) -> np.ndarray:
    """Serpentine Floyd--Steinberg, bands of ``band_rows`` side by side.

    Band ``b`` keeps rows ``b * band_rows ..`` and starts ``warmup_rows``
    above them; rows above the image pass no error on, rows below it are
    diffused and discarded. Step ``x`` of row ``r`` handles one pixel of
    every band at once; what depends on the whole row (the error received
    from the row above) is computed a whole row at a time.
    """
    height, width = pixels.shape[:2]
    if height <= band_rows:
        band_rows, warmup_rows = height + height % 2, 0
    n_bands = -(-height // band_rows)
    first_rows = np.arange(n_bands) * band_rows - warmup_rows
    colours = palette.astype(np.float64)
    channels = tuple(np.ascontiguousarray(column) for column in colours.T)
    half_norms = _half_norms(colours)
    ahead = _AHEAD * strength
    cap = (_CAP_FRACTION * palette_spacing(palette)) ** 2
    labels = np.empty((height, width), dtype=np.uint8)
    below = np.zeros((n_bands, width, 3))  # error each pixel of the row receives from above
    if warmup_rows and n_bands > 1:
        below[1:] = _warmup_error(first_rows[1:], width, palette)
    band_index = np.arange(n_bands)
    for r in range(band_rows + warmup_rows):
        rows = first_rows + r
        inside = (rows >= 0) & (rows < height)
        source = np.clip(rows, 0, height - 1)
        # Pixel plus the error from above, a whole row of every band at once.
        base = pixels[source].astype(np.float64)  # (bands, width, 3)
        if weights is None:
            base += below
            row_weights = None
        else:
            row_weights = weights[source][:, :, None]
            base += row_weights * below
        # Serpentine: band_rows and warmup_rows are even, so image row parity is r's.
        step = 1 if r % 2 == 0 else -1
        picks, errors = [], []
        carry = None
        for x in range(width) if step == 1 else range(width - 1, -1, -1):
            if carry is None:
                value = base[:, x].copy()
            elif row_weights is None:
                value = base[:, x] + carry
            else:
                value = base[:, x] + row_weights[:, x] * carry
            # Two ufuncs: faster than np.clip on arrays this small.
            np.minimum(np.maximum(value, 0.0, out=value), 255.0, out=value)
            best = _nearest_rows(value, channels, half_norms)
            error = value - colours.take(best, axis=0)
            error *= np.where(_squared_length(error) > cap, _CAP_SCALE, 1.0)[:, None]
            picks.append(best)
            errors.append(error)
            carry = error * ahead
        if step == -1:
            picks.reverse()
            errors.reverse()
        row_errors = np.stack(errors, axis=1)  # (bands, width, 3), before strength
        # Rows above the image pass no error on: the band starts as a whole image would.
        row_errors[rows < 0] = 0.0
        _spread_below(row_errors, below, step, strength)
        keep = inside & (r >= warmup_rows)
        if keep.any():
            labels[rows[keep]] = np.stack(picks, axis=1)[band_index[keep]]
    return labels


def _warmup_error(rows: np.ndarray, width: int, palette: np.ndarray) -> np.ndarray:
    """Error the first warm-up row of each band starts from, shape (bands, width, 3).

    Starting from no error at all, error diffusion on a flat region goes
    through the same few rows of transient patterns every time: every band
    would repeat them, a stripe every band. A field of blue noise (the
    ordered map, read at each band's first row) about the size of the error
    diffusion leaves behind makes each band start differently and settle
    sooner.
    """
    noise = blue_noise()
    side = noise.shape[0]
    centred = (noise.astype(np.float64) + 0.5) / noise.size - 0.5
    amplitude = _WARMUP_NOISE * palette_spacing(palette)
    out = np.empty((rows.size, width, 3))
    columns = np.arange(width)
    for channel, (dy, dx) in enumerate(_CHANNEL_SHIFTS):
        out[:, :, channel] = centred[((rows + dy) % side)[:, None], (columns + dx) % side]
    out *= amplitude
    return out


def _nearest_rows(values: np.ndarray, channels: tuple[np.ndarray, ...],
                  half_norms: np.ndarray) -> np.ndarray:
    """Nearest colour of each row of ``values`` (float, shape (n, 3)), first one on ties.

    ``||v - c||^2`` ranks like ``||c||^2 / 2 - v.c``: one product per
    coordinate, each a separately rounded numpy multiply and subtract (no
    BLAS, no fused multiply-add), so the choice is the same whatever the
    thread count or the processor. ``channels`` holds the palette's three
    columns, each contiguous, float64 of shape (k,).
    """
    score = np.multiply(values[:, 0, None], channels[0])
    np.subtract(half_norms, score, out=score)
    term = np.multiply(values[:, 1, None], channels[1])
    score -= term
    score -= np.multiply(values[:, 2, None], channels[2], out=term)
    return score.argmin(axis=1)


def _half_norms(colours: np.ndarray) -> np.ndarray:
    """``||c||^2 / 2`` of every palette colour, coordinate by coordinate."""
    return 0.5 * _squared_length(colours)


def _squared_length(vectors: np.ndarray) -> np.ndarray:
    """Squared length of each row of an (n, 3) float array, summed in a fixed order."""
    squared = vectors * vectors
    return squared[:, 0] + squared[:, 1] + squared[:, 2]


def _spread_below(errors: np.ndarray, below: np.ndarray, step: int, strength: float) -> None:
    """Error the next row receives from a finished row scanned in direction ``step``.

    Pixel ``x`` gets 5/16 of the error from ``x`` above, 3/16 from the pixel
    above that was scanned after it (``x + step``) and 1/16 from the one
    before, each times ``strength``; what would leave the image is dropped.
    """
    np.multiply(errors, _BELOW * strength, out=below)
    if errors.shape[1] > 1:
        if step == 1:
            after, before = errors[:, 1:], errors[:, :-1]
            below[:, :-1] += (_BELOW_BEHIND * strength) * after
            below[:, 1:] += (_BELOW_AHEAD * strength) * before
        else:
            after, before = errors[:, :-1], errors[:, 1:]
            below[:, 1:] += (_BELOW_BEHIND * strength) * after
            below[:, :-1] += (_BELOW_AHEAD * strength) * before
