"""Remap: every pixel to a palette index, by nearest colour or dithered.

Three ways to choose the index of each pixel, all deterministic (no label
depends on the thread count or on anything but the pixels, the palette and
the arguments):

``"none"``
    The exact nearest palette colour (squared RGB distance, ties to the
    lowest index), computed once per distinct colour and spread to the pixels
    through a lookup table (:mod:`kpal.cluster.histogram`); the compiled path
    finds the same index per pixel.
``"ordered"``
    A threshold map of blue noise (void-and-cluster, 64 x 64, generated once
    from a fixed integer hash) offsets every channel before the exact
    nearest-colour mapping. The offset's amplitude follows the palette's
    spacing (the mean distance from each palette colour to its nearest other
    one) times ``strength``.
``"fs"``
    Floyd--Steinberg error diffusion in serpentine order (even rows left to
    right, odd rows right to left), the error scaled by ``strength``; an
    error longer than half the palette spacing is shortened by a quarter
    before it spreads, so one pixel far from every palette colour cannot
    drag a streak of wrong colours behind it. With ``space="oklab"`` the
    error a pixel receives is shortened too, to at most one palette spacing:
    beyond the palette's reach (a saturated gradient), it would otherwise
    build up until the value is nearest, in Oklab, to a colour of another
    hue, and specks of it show. With ``adaptive=True`` the
    error a pixel receives is further scaled by a map of the image's local
    contrast: full diffusion in smooth regions, little at edges and in noisy
    texture (the idea of libimagequant's "dithering map").

:func:`dither_image` wraps :func:`remap` for the encoder: it can refit the
palette to the dithered pixels (as pngquant does) and, for ``"none"`` with an
Oklab palette, measures the nearest colour in Oklab.

Error diffusion is computed in fixed point: values and errors in 1/64ths of a
level, every share of an error rounded on its own (``(error * weight *
strength256 + 2048) >> 12``), the nearest colour by exact integer distance.
Integer sums do not depend on their order, which is what lets two very
different implementations give the same labels bit for bit:

- the compiled path (:mod:`kpal.cluster._remap_fast`, numba, used when it
  is installed and the image has at least :data:`COMPILED_MIN_PIXELS`
  pixels) walks the pixels one by one and finds the nearest colour among the
  few candidates of a grid cell;
- the numpy path needs whole arrays per step, so the image is cut into
  horizontal bands of :data:`BAND_ROWS` rows that are diffused side by side,
  one pixel of every band per step.

Both follow the same banded order: each band after the first starts
:data:`WARMUP_ROWS` rows above its own, from a field of blue noise, and
discards those rows' labels, so its first row receives an error field like
the one a single pass would bring and no seam shows. The first band, and so
an image of at most ``BAND_ROWS`` rows, is exactly the textbook single pass.
Bands are independent, so the compiled path may share them among threads
(``threads=``) with the same labels.

:func:`remap_rgba` does the same for RGBA pixels and palettes, in
premultiplied integers (``c * alpha``) with the error a viewer sees (the
composites over black and over white): fully transparent pixels stay on the
transparent entry, fully opaque ones on opaque entries, and only the colour
error is diffused, never alpha (see the notes above it).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import NamedTuple

import numpy as np

from kpal import _jit
from kpal.cluster.histogram import color_histogram, map_pixels
from kpal.cluster.kmeans import nearest_palette_colors
from kpal.errors import KpalError

__all__ = ["DITHERS", "BAND_ROWS", "WARMUP_ROWS", "blue_noise", "dither_image", "palette_spacing",
           "remap", "remap_rgba"]

#: Names accepted by ``dither=``.
DITHERS = ("none", "fs", "ordered")

#: Rows per band of the banded error diffusion (even: bands keep the row parity).
BAND_ROWS = 16
#: Rows of the band above that each band diffuses first, labels discarded (even).
WARMUP_ROWS = 4

#: Fixed point of the error diffusion: values and errors in 1/64ths of a level.
_FRAC_BITS = 6
_ONE = 1 << _FRAC_BITS
_TOP = 255 * _ONE
#: ``strength`` is applied in 1/256ths.
_STRENGTH_BITS = 8
#: Floyd--Steinberg weights, in sixteenths: ahead in the row, then the row
#: below behind, under and ahead (ahead = the scan direction). A share of an
#: error is ``(error * weight * strength256 + half) >> 12``, rounded half up.
_AHEAD, _BELOW_BEHIND, _BELOW, _BELOW_AHEAD = 7, 3, 5, 1
_SHARE_BITS = 4 + _STRENGTH_BITS
_SHARE_HALF = 1 << (_SHARE_BITS - 1)
#: Adaptive map: weights in 256ths.
_WEIGHT_BITS = 8
_WEIGHT_ONE = 1 << _WEIGHT_BITS
_WEIGHT_HALF = 1 << (_WEIGHT_BITS - 1)

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
#: The shortening, 3/4 in fixed point: ``(3 * error + 2) >> 2``.
_CAP_NUM, _CAP_BITS, _CAP_HALF = 3, 2, 2

#: Error diffusion in Oklab (``space="oklab"``): the error a pixel receives
#: from its neighbours is shortened by 3/4, again and again, until it is no
#: longer than this fraction of the palette spacing. Where the palette cannot
#: reach the image's colours (a saturated gradient beyond the palette's
#: hull), the received error otherwise builds up until the value lands
#: nearest to a colour of another hue (grey specks in a light blue); in RGB
#: the same build-up stays a mixture of neighbouring colours.
_RECEIVE_FRACTION = 1.0

#: Luma weights (ITU-R BT.601) for the contrast map, in 256ths.
_LUMA = (77, 150, 29)

#: Oklab table for dithering: 65 levels per channel, one every 4 levels;
#: a fixed-point value reads cell ``(v + 128) >> 8``.
_LUT_SIDE = 65
_LUT_SHIFT = 8
_LUT_HALF = 1 << (_LUT_SHIFT - 1)

#: Names accepted by ``space=`` (as kpal.cluster.perceptual.SPACES).
_SPACES = ("rgb", "oklab")

#: Images with fewer pixels than this use the numpy path (numba's import would
#: cost more than it saves); ``KPAL_PURE_NUMPY=0`` forces the compiled path.
COMPILED_MIN_PIXELS = 1 << 16
#: ... and while numba is not started yet in this process: starting it costs
#: about 1.7 s, which the numpy diffusion (about 5 s per megapixel) repays
#: from a quarter of a megapixel.
COLD_MIN_PIXELS = 1 << 18


def remap(
    pixels_hw3: np.ndarray,
    palette: np.ndarray,
    *,
    dither: str = "none",
    strength: float = 1.0,
    seed: int = 0,
    adaptive: bool = False,
    threads: int = 1,
    space: str = "rgb",
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
    threads : int, default 1
        Threads the compiled path may use (bands and rows are independent,
        so the labels are the same for every value).
    space : {"rgb", "oklab"}, default "rgb"
        Where "nearest" is measured. ``"oklab"``: exactly for ``"none"``;
        for ``"fs"`` and ``"ordered"`` through a table of the nearest palette
        colour of every colour on a grid of 4 levels per channel (the value
        rounded to it), while the diffused error stays in RGB; ``"fs"``
        shortens the error each pixel receives to one palette spacing.

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
    _check(pixels_hw3, palette, dither, strength, seed, adaptive, threads, space)
    oklab = space == "oklab" and palette.shape[0] > 1
    if dither == "none" or strength == 0 or palette.shape[0] == 1:
        if oklab:
            return _nearest_oklab(pixels_hw3, palette)
        return _nearest(pixels_hw3, palette, int(threads))
    lut = oklab_table(palette) if oklab else None
    if dither == "ordered":
        return _ordered(pixels_hw3, palette, float(strength), int(seed), int(threads), lut)
    weights = _contrast_weights(pixels_hw3, palette) if adaptive else None
    return _diffuse(pixels_hw3, palette, float(strength), weights, threads=int(threads), lut=lut)


def oklab_table(palette: np.ndarray) -> np.ndarray:
    """Nearest palette colour in Oklab of every colour of a grid of 4 levels per channel.

    The grid has 65 levels per channel (0, 4, ..., 252, 255); a fixed-point
    value ``v`` (1/64ths of a level) reads entry ``(v + 128) >> 8`` of each
    channel. Computed once per palette in numpy for both paths, so they read
    the same table.

    Parameters
    ----------
    palette : ndarray of shape (k, 3), uint8

    Returns
    -------
    ndarray of shape (65 ** 3,), uint8
        Index ``(r * 65 + g) * 65 + b`` of grid levels ``r, g, b``.
    """
    from kpal.cluster.perceptual import oklab_from_srgb8

    points = _lut_points()
    centres = oklab_from_srgb8(palette)
    fast = _compiled(_LUT_SIDE**3)
    if fast is not None:
        return fast.oklab_table(points, centres)
    out = np.empty(points.shape[0], dtype=np.uint8)
    chunk = max(1, (1 << 20) // palette.shape[0])
    for start in range(0, points.shape[0], chunk):
        out[start:start + chunk] = _nearest_fixed(points[start:start + chunk], centres)
    return out


@functools.lru_cache(maxsize=1)
def _lut_points() -> np.ndarray:
    """Oklab of the table's grid colours, shape (65 ** 3, 3), computed once; read-only."""
    from kpal.cluster.perceptual import oklab_from_srgb8

    levels = np.minimum(np.arange(_LUT_SIDE) * 4, 255)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    points = np.ascontiguousarray(oklab_from_srgb8(grid))
    points.flags.writeable = False
    return points


def _lut_index(values: np.ndarray) -> np.ndarray:
    """Table index of fixed-point values, shape (..., 3) int64 -> (...,)."""
    cells = (values + _LUT_HALF) >> _LUT_SHIFT
    return (cells[..., 0] * _LUT_SIDE + cells[..., 1]) * _LUT_SIDE + cells[..., 2]


def dither_image(
    pixels_hw3: np.ndarray,
    palette: np.ndarray,
    *,
    dither: str = "fs",
    strength: float = 1.0,
    seed: int = 0,
    space: str = "rgb",
    refine: bool = False,
    adaptive: bool = False,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Labels of an image for a fitted palette, dithered, with the palette refitted to them.

    A palette fitted without dithering is the mean of the colours nearest to
    each entry; once dithered, each entry also stands in for mixtures with
    its neighbours. As pngquant does, ``refine=True`` dithers once, moves each
    palette entry to the mean of the original pixels that chose it, and
    dithers again with the moved palette.

    Parameters
    ----------
    pixels_hw3 : ndarray of shape (height, width, 3), uint8
    palette : ndarray of shape (k, 3), uint8
    dither : {"none", "fs", "ordered"}, default "fs"
        As :func:`remap`. ``"none"`` never refits (the palette of
        :func:`kpal.cluster.quantize` already is the mean of its pixels).
    strength : float in [0, 1], default 1.0
    seed : int, default 0
    space : {"rgb", "oklab"}, default "rgb"
        Where the nearest colour is measured (as :func:`remap`; for
        ``"none"`` in Oklab these are the labels
        :func:`kpal.cluster.perceptual.quantize_perceptual` gives) and where
        the refitted means are taken. Diffused errors add up in RGB.
    refine : bool, default False
        Refit the palette to the dithered pixels. ``False`` keeps the palette
        exactly as given (a palette chosen by the user); on the benchmark
        photos the refit lowered SSIMULACRA2 slightly (bench/bench_dither.py).
    adaptive : bool, default False
        As :func:`remap`.
    threads : int, default 1

    Returns
    -------
    palette : ndarray of shape (k, 3), uint8
        The palette the labels refer to (the given one unless refitted; an
        entry no pixel chose keeps its colour).
    labels : ndarray of shape (height, width), uint8

    Raises
    ------
    KpalError
        When an argument is invalid.
    """
    from kpal.cluster.perceptual import SPACES

    if space not in SPACES:
        msg = f"space={space!r} must be one of {', '.join(SPACES)}"
        raise KpalError(msg)
    if not isinstance(refine, (bool, np.bool_)):
        msg = f"refine={refine!r} must be True or False"
        raise KpalError(msg)
    kwargs = {"dither": dither, "strength": strength, "seed": seed, "adaptive": adaptive,
              "threads": threads, "space": space}
    if dither == "none" or strength == 0:
        return palette, remap(pixels_hw3, palette, **kwargs)
    labels = remap(pixels_hw3, palette, **kwargs)
    if not refine or palette.shape[0] == 1:
        return palette, labels
    refitted = _refit(pixels_hw3, labels, palette, space)
    if np.array_equal(refitted, palette):
        return palette, labels
    return refitted, remap(pixels_hw3, refitted, **kwargs)


def _nearest_oklab(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Nearest palette colour in Oklab of every pixel, once per distinct colour."""
    from kpal.cluster.nearest import assign
    from kpal.cluster.perceptual import oklab_from_srgb8

    flat = pixels.reshape(-1, 3)
    hist = color_histogram(flat)
    labels, _ = assign(oklab_from_srgb8(hist.colors), oklab_from_srgb8(palette))
    return map_pixels(flat, hist.colors, labels.astype(np.uint8)).reshape(pixels.shape[:2])


def _refit(pixels: np.ndarray, labels: np.ndarray, palette: np.ndarray, space: str) -> np.ndarray:
    """Mean of the pixels of each label (in ``space``), rounded to sRGB; unused entries kept."""
    k = palette.shape[0]
    flat_labels = labels.reshape(-1)
    counts = np.bincount(flat_labels, minlength=k)
    flat = pixels.reshape(-1, 3)
    if space == "oklab":
        from kpal.cluster.perceptual import oklab_from_srgb8, srgb8_from_oklab

        # Oklab of each pixel through its colour: one conversion per distinct colour.
        hist = color_histogram(flat)
        index = map_pixels(flat, hist.colors, np.arange(len(hist), dtype=np.int32))
        lab = oklab_from_srgb8(hist.colors)
        sums = np.stack([np.bincount(flat_labels, weights=lab[index, c], minlength=k)
                         for c in range(3)], axis=1)
        used = counts > 0
        out = palette.copy()
        out[used] = srgb8_from_oklab(sums[used] / counts[used, None])
        return out
    # Integer sums: exact in any order.
    sums = np.stack([np.bincount(flat_labels, weights=flat[:, c], minlength=k)
                     for c in range(3)], axis=1)
    used = counts > 0
    out = palette.copy()
    out[used] = np.clip(np.rint(sums[used] / counts[used, None]), 0, 255).astype(np.uint8)
    return out


def _compiled(n_pixels: int) -> ModuleType | None:
    """The numba kernels (``kpal[fast]``) unless missing, ``KPAL_PURE_NUMPY=1``, or
    the image is too small for numba's start-up to pay off (``KPAL_PURE_NUMPY=0``
    forces them at any size); see :func:`kpal._jit.load`. Both paths give the
    same labels.
    """
    return _jit.load("kpal.cluster._remap_fast", n_pixels, COMPILED_MIN_PIXELS,
                     cold_min_pixels=COLD_MIN_PIXELS)


def _check(pixels: object, palette: object, dither: object, strength: object, seed: object,
           adaptive: object, threads: object, space: object) -> None:
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
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        msg = f"threads={threads!r} must be an integer >= 1"
        raise KpalError(msg)
    if space not in _SPACES:
        msg = f"space={space!r} must be one of {', '.join(_SPACES)}"
        raise KpalError(msg)


def _nearest(pixels: np.ndarray, palette: np.ndarray, threads: int = 1) -> np.ndarray:
    """Exact nearest palette colour of every pixel, once per distinct colour."""
    fast = _compiled(pixels.shape[0] * pixels.shape[1])
    if fast is not None and palette.shape[0] > 1:
        return fast.offset_nearest(pixels, palette, np.zeros((1, 1, 3), dtype=np.int16),
                                   (0, 0), threads, None)
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
    return _mean_nearest_distance(palette.astype(np.float64))


def _mean_nearest_distance(points: np.ndarray) -> float:
    """Mean Euclidean distance from each row of ``points`` (k, d) float64 to its nearest other one.

    0 when ``k < 2`` or every row is the same.
    """
    k = points.shape[0]
    if k < 2:
        return 0.0
    squared = np.zeros((k, k))
    for column in points.T:
        diff = column[:, None] - column
        squared += diff * diff
    np.fill_diagonal(squared, np.inf)
    # Duplicates (distance 0) say nothing about spacing: skip them.
    squared[squared == 0] = np.inf
    nearest = squared.min(axis=1)
    finite = nearest[np.isfinite(nearest)]
    return float(np.sqrt(finite).mean()) if finite.size else 0.0


# -- ordered dithering -------------------------------------------------------


def _ordered(pixels: np.ndarray, palette: np.ndarray, strength: float, seed: int,
             threads: int = 1, lut: np.ndarray | None = None) -> np.ndarray:
    height, width = pixels.shape[:2]
    amplitude = _ORDERED_SCALE * strength * palette_spacing(palette)
    if amplitude == 0:
        return _nearest_oklab(pixels, palette) if lut is not None else _nearest(
            pixels, palette, threads)
    tile, dy, dx = _ordered_offsets(amplitude, seed)
    fast = _compiled(height * width)
    if fast is not None:
        return fast.offset_nearest(pixels, palette, tile, (dy, dx), threads, lut)
    out = np.empty((height, width, 3), dtype=np.uint8)
    for start, stop, offsets in _tiled_rows((height, width), tile, dy, dx, 1 << 18):
        value = pixels[start:stop].astype(np.int16)
        value += offsets
        np.clip(value, 0, 255, out=value)
        out[start:stop] = value
    if lut is not None:
        return lut[_lut_index(out.astype(np.int64) << _FRAC_BITS)]
    return _nearest(out, palette)


def _ordered_offsets(amplitude: float, seed: int) -> tuple[np.ndarray, int, int]:
    """The blue-noise offsets of ordered dithering and where ``seed`` starts reading them.

    Returns the tile, in levels, shape (64, 64, 3) int16, and the shift
    ``(dy, dx)`` of its first row and column.
    """
    # Each channel reads the map at its own fixed shift, so the offset is a
    # point in 3-D (palette colours differ in hue as well as lightness), yet
    # every channel is blue noise.
    centred = _centred_noise()
    # rint(pixel + offset) == pixel + rint(offset) for integer pixels: the
    # offsets are rounded once per map cell, then added as small integers.
    tile = np.stack([np.rint(amplitude * np.roll(centred, (-dy, -dx), axis=(0, 1)))
                     for dy, dx in _CHANNEL_SHIFTS], axis=-1).astype(np.int16)
    return (tile, *_seed_shift(seed, tile.shape[0]))


def _centred_noise() -> np.ndarray:
    """The blue-noise map as thresholds centred on 0, in (-1/2, 1/2), float64."""
    noise = blue_noise()
    return (noise.astype(np.float64) + 0.5) / noise.size - 0.5


def _tiled_rows(shape: tuple[int, int], tile: np.ndarray, dy: int, dx: int,
                chunk_pixels: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(start, stop, offsets)`` for chunks of about ``chunk_pixels`` pixels of an image.

    ``offsets`` (stop - start, width, 3) is ``tile`` laid over rows
    ``start .. stop`` of an image of ``shape``, read from ``(dy, dx)`` on.
    """
    height, width = shape
    side = tile.shape[0]
    columns = (np.arange(width) + dx) % side
    rows_per_chunk = max(1, chunk_pixels // width)
    for start in range(0, height, rows_per_chunk):
        stop = min(height, start + rows_per_chunk)
        rows = (np.arange(start, stop) + dy) % side
        yield start, stop, tile[rows[:, None], columns[None, :]]


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

def _plan(height: int, band_rows: int, warmup_rows: int) -> tuple[int, int, int]:
    """Rows per band, warm-up rows and number of bands for an image ``height`` rows tall."""
    if height <= band_rows:
        return height + height % 2, 0, 1
    return band_rows, warmup_rows, -(-height // band_rows)


def _fixed_strength(strength: float) -> int:
    """``strength`` in 1/256ths, the unit every diffused share is computed in."""
    return int(round(strength * (1 << _STRENGTH_BITS)))


def _fixed_limit(palette: np.ndarray) -> int:
    """Squared length (fixed point) the received error is shortened to, at least one level."""
    return max(int(math.floor((_RECEIVE_FRACTION * palette_spacing(palette) * _ONE) ** 2)),
               _ONE * _ONE)


def _contrast_weights(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Per-pixel share of the diffused error a pixel receives, in 256ths (0..256).

    The range of luma in the 3 x 3 neighbourhood measures edges and texture;
    it is compared with the palette spacing: where the image itself varies by
    more than the gap between palette colours, the quantization error is
    masked and dithering only adds noise. A 3 x 3 minimum then widens the
    low-weight zones, so the pixels beside an edge do not ring. Integer
    arithmetic throughout: the map is exact on every machine.
    """
    height, width = pixels.shape[:2]
    # Weight 256 at no contrast, 0 at a luma range of _EDGE_RANGE palette spacings.
    full = max(int(round(_EDGE_RANGE * max(palette_spacing(palette), 1.0) * 256)), 1)
    fast = _compiled(height * width)
    if fast is not None:
        return fast.contrast_weights(pixels, full)
    # Luma in 256ths of a level (BT.601 weights 77/150/29 out of 256).
    luma = np.empty((height + 2, width + 2), dtype=np.int32)
    inner = luma[1:-1, 1:-1]
    np.multiply(pixels[:, :, 0], _LUMA[0], out=inner, dtype=np.int32)
    inner += _LUMA[1] * pixels[:, :, 1].astype(np.int32)
    inner += _LUMA[2] * pixels[:, :, 2].astype(np.int32)
    # Replicate the border, so the image edge is not an edge.
    luma[0], luma[-1] = luma[1], luma[-2]
    luma[:, 0], luma[:, -1] = luma[:, 1], luma[:, -2]
    spread = _window(luma, np.maximum)
    spread -= _window(luma, np.minimum)
    spread *= _WEIGHT_ONE
    spread //= full
    np.subtract(_WEIGHT_ONE, spread, out=spread)
    np.clip(spread, 0, _WEIGHT_ONE, out=spread)
    padded = np.pad(spread, 1, mode="edge")
    return _window(padded, np.minimum)


def _window(padded: np.ndarray, reduce: np.ufunc) -> np.ndarray:
    """3 x 3 running ``reduce`` (max or min) of a padded 2-D array, separably."""
    rows = reduce(reduce(padded[:-2], padded[1:-1]), padded[2:])
    return reduce(reduce(rows[:, :-2], rows[:, 1:-1]), rows[:, 2:])


def _receive(error: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """The part of ``error`` a pixel of weight ``weights`` (256ths) receives."""
    if weights is None:
        return error
    return (weights * error + _WEIGHT_HALF) >> _WEIGHT_BITS


def _diffuse(pixels: np.ndarray, palette: np.ndarray, strength: float,
             weights: np.ndarray | None, band_rows: int = BAND_ROWS,
             warmup_rows: int = WARMUP_ROWS, threads: int = 1,
             lut: np.ndarray | None = None) -> np.ndarray:
    """Serpentine Floyd--Steinberg in fixed point, bands of ``band_rows`` rows.

    Every value is an integer in 1/64ths of a level and every share of an
    error is rounded the same way in both paths, so the compiled path
    (one band after another) and the numpy path below (one pixel of every
    band per step) give the same labels bit for bit.

    Band ``b`` keeps rows ``b * band_rows ..`` and starts ``warmup_rows``
    above them (band 0 starts at row 0 with no error); rows below the image
    are never reached by a kept row.
    """
    plan = _band_plan(pixels.shape[:2], strength, palette_spacing(palette), _ONE, band_rows,
                      warmup_rows, exact=lambda rows: in_palette(pixels[rows], palette))
    limit = 0 if lut is None else _fixed_limit(palette)
    fast = _compiled(pixels.shape[0] * pixels.shape[1])
    if fast is not None:
        return fast.diffuse(pixels, palette, weights, *plan, threads, lut, limit)
    return _diffuse_numpy(pixels, palette, weights, plan, lut, limit)


class _BandPlan(NamedTuple):
    """How the banded diffusion runs, in the order the compiled kernels take it."""

    warm: np.ndarray  # error each band after the first starts from, (bands - 1, width, 3) int64
    s: int  # strength, in 256ths
    cap: int  # squared error length above which an error is shortened
    band_rows: int
    warmup_rows: int
    n_bands: int


def _band_plan(shape: tuple[int, int], strength: float, spacing: float, unit: int,
               band_rows: int = BAND_ROWS, warmup_rows: int = WARMUP_ROWS,
               exact: Callable[[np.ndarray], np.ndarray] | None = None) -> _BandPlan:
    """The plan for an image of ``shape`` and a palette ``spacing`` levels apart.

    Errors are in ``unit``-ths of a level: 1/64ths for RGB, 1/255ths of a
    level of premultiplied colour (``c * alpha``) for RGBA. ``exact(rows)``
    says which pixels of those rows are exactly a palette entry (shape
    (len(rows), width)): a band's warm-up starts with no error there, as a
    pixel with nothing to correct has none, so an image whose colours are
    all palette entries keeps them (pixel art on a shared palette).
    """
    height, width = shape
    band_rows, warmup_rows, n_bands = _plan(height, band_rows, warmup_rows)
    cap = int(math.floor((_CAP_FRACTION * spacing * unit) ** 2))
    starts = np.arange(1, n_bands) * band_rows - warmup_rows
    warm = (_warmup_error(starts, width, spacing, unit)
            if n_bands > 1 else np.zeros((0, width, 3), dtype=np.int64))
    if exact is not None and n_bands > 1:
        warm[exact(starts)] = 0
    return _BandPlan(warm, _fixed_strength(strength), cap, band_rows, warmup_rows, n_bands)


def _diffuse_numpy(pixels: np.ndarray, palette: np.ndarray, weights: np.ndarray | None,
                   plan: _BandPlan, lut: np.ndarray | None = None, limit: int = 0) -> np.ndarray:
    """The banded diffusion, a whole column of bands per step (see :func:`_diffuse`).

    ``limit > 0``: the received error (value minus pixel) is shortened by 3/4
    until its squared length is at most ``limit``.
    """
    colours = palette.astype(np.int64) * _ONE

    def start_row(source, below):
        original = pixels[source].astype(np.int64) << _FRAC_BITS  # (bands, width, 3)
        row_weights = None if weights is None else weights[source].astype(np.int64)[:, :, None]
        base = original + _receive(below, row_weights)

        def settle(x, carry):
            value = base[:, x] + _receive(carry, None if row_weights is None
                                          else row_weights[:, x])
            if limit:
                value = original[:, x] + _shorten(value - original[:, x], limit)
            np.clip(value, 0, _TOP, out=value)
            best = _nearest_fixed(value, colours) if lut is None else lut[_lut_index(value)]
            return best, value - colours[best]

        return settle

    return _run_bands(pixels.shape[:2], plan, start_row)


def _run_bands(shape: tuple[int, int], plan: _BandPlan, start_row) -> np.ndarray:
    """Drive the numpy banded diffusion: one row of every band per step.

    ``start_row(source, below)`` takes image rows ``source`` (one per band)
    and the error ``below`` that the rows above pass down, and returns
    ``settle(x, carry)``: the entry each of those rows picks at column ``x``
    and the error it leaves, given the error ``carry`` that the pixel
    before passes on. Rows run in direction ``step`` (serpentine by image
    row parity; band starts are even rows); every error is shortened here
    when longer than ``plan.cap``. Band 0 has no warm-up: it runs its
    ``band_rows`` rows first, then idles; the other bands start
    ``warmup_rows`` above their rows with ``plan.warm`` and keep only their
    own rows.
    """
    height, width = shape
    warm, s, cap, band_rows, warmup_rows, n_bands = plan
    ahead = _AHEAD * s
    first_rows = np.arange(n_bands) * band_rows - warmup_rows
    first_rows[0] = 0
    labels = np.empty((height, width), dtype=np.uint8)
    below = np.zeros((n_bands, width, 3), dtype=np.int64)
    below[1:] = warm
    band_index = np.arange(n_bands)
    errors = np.empty((n_bands, width, 3), dtype=np.int64)
    picks = np.empty((n_bands, width), dtype=np.uint8)
    for r in range(band_rows + warmup_rows):
        rows = np.arange(n_bands) * band_rows - warmup_rows + r
        rows[0] = r
        active = rows < np.minimum(np.arange(n_bands) * band_rows + band_rows, height)
        if not active.any():
            break
        step = 1 if r % 2 == 0 else -1
        settle = start_row(np.minimum(rows, height - 1), below)
        carry = np.zeros((n_bands, 3), dtype=np.int64)
        for x in range(width) if step == 1 else range(width - 1, -1, -1):
            best, error = settle(x, carry)
            long = (error * error).sum(axis=1) > cap
            error[long] = (_CAP_NUM * error[long] + _CAP_HALF) >> _CAP_BITS
            picks[:, x] = best
            errors[:, x] = error
            carry = (error * ahead + _SHARE_HALF) >> _SHARE_BITS
        below = _spread_below(errors, step, s)
        keep = active & (rows >= first_rows + (np.arange(n_bands) > 0) * warmup_rows)
        if keep.any():
            labels[rows[keep]] = picks[band_index[keep]]
    return labels


def _shorten(error: np.ndarray, limit: int) -> np.ndarray:
    """``error`` (int64, shape (n, 3)) times 3/4, rounded, until its squared length <= ``limit``."""
    error = error.copy()
    while True:
        long = (error * error).sum(axis=1) > limit
        if not long.any():
            return error
        error[long] = (_CAP_NUM * error[long] + _CAP_HALF) >> _CAP_BITS


def in_palette(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Whether each pixel (uint8, last axis the channels: 3 or 4) is exactly a palette entry."""
    shifts = np.arange(pixels.shape[-1], dtype=np.uint32) * 8

    def packed(values: np.ndarray) -> np.ndarray:
        return (values.astype(np.uint32) << shifts).sum(axis=-1, dtype=np.uint32)

    return np.isin(packed(pixels), packed(palette))


def _warmup_error(rows: np.ndarray, width: int, spacing: float, unit: int) -> np.ndarray:
    """Error the first warm-up row of each band starts from, shape (bands, width, 3), int64.

    Starting from no error at all, error diffusion on a flat region goes
    through the same few rows of transient patterns every time: every band
    would repeat them, a stripe every band. A field of blue noise (the
    ordered map, read at each band's first row) about the size of the error
    diffusion leaves behind makes each band start differently and settle
    sooner. In ``unit``-ths of a level, for a palette ``spacing`` levels
    apart, rounded once here for both paths.
    """
    centred = _centred_noise()
    side = centred.shape[0]
    amplitude = _WARMUP_NOISE * spacing * unit
    out = np.empty((rows.size, width, 3))
    columns = np.arange(width)
    for channel, (dy, dx) in enumerate(_CHANNEL_SHIFTS):
        out[:, :, channel] = centred[((rows + dy) % side)[:, None], (columns + dx) % side]
    out *= amplitude
    return np.rint(out).astype(np.int64)


def _nearest_fixed(values: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Nearest colour of each row of ``values`` (int64, shape (n, 3)); ties to the lowest index.

    Exact integer squared distances: the compiled path's pruned search
    returns the same index. Float values (Oklab, :func:`oklab_table`) work
    too: ``(v0 - c0)**2 + (v1 - c1)**2 + (v2 - c2)**2`` is summed in this
    order, as the compiled path sums it, so the rounding is the same.
    """
    diff = values[:, 0, None] - colours[:, 0]
    score = diff * diff
    for channel in (1, 2):
        np.subtract(values[:, channel, None], colours[:, channel], out=diff)
        diff *= diff
        score += diff
    return score.argmin(axis=1)


def _spread_below(errors: np.ndarray, step: int, s: int) -> np.ndarray:
    """Error the next row receives from a finished row scanned in direction ``step``.

    Pixel ``x`` gets 5/16 of the error from ``x`` above, 3/16 from the pixel
    above that was scanned after it (``x + step``) and 1/16 from the one
    before, each times ``strength`` and rounded on its own; what would leave
    the image is dropped.
    """
    below = (errors * (_BELOW * s) + _SHARE_HALF) >> _SHARE_BITS
    if errors.shape[1] > 1:
        behind = (errors * (_BELOW_BEHIND * s) + _SHARE_HALF) >> _SHARE_BITS
        before = (errors * (_BELOW_AHEAD * s) + _SHARE_HALF) >> _SHARE_BITS
        if step == 1:
            below[:, :-1] += behind[:, 1:]
            below[:, 1:] += before[:, :-1]
        else:
            below[:, 1:] += behind[:, :-1]
            below[:, :-1] += before[:, 1:]
    return below


# -- transparency (RGBA) -----------------------------------------------------
#
# An RGBA pixel of straight colour c and alpha A is handled in premultiplied
# integers: v = c * A (255 times the premultiplied colour, exact). Its error
# against an entry of colour c' and alpha a' is the one a viewer sees, the
# composites over black and over white (cluster/alpha.py): with q = c' * a',
# e_black = v - q and e_white = e_black - 255 * (A - a'), and the distance is
# sum(e_black**2 + e_white**2) over the three channels, an exact integer.
# Alpha is never diffused: each pixel keeps its own A and only the colour
# error travels, premultiplied (so weighted by the alpha of the pixel it comes
# from: what a nearly transparent pixel gets wrong weighs little). A pixel
# adds what it receives to its own c * A and the sum is clipped to
# [0, 255 * A], the premultiplied colours its alpha can show: a fully
# transparent pixel takes nothing, passes nothing on and stays on the
# transparent entry; a fully opaque one only picks among the palette's opaque
# entries (when it has some), so its alpha stays 255. In an area of one
# alpha the premultiplied mean is kept, as RGB error diffusion keeps the mean.

#: Larger than any composite distance: entries a pixel may not take.
_BARRED = np.int64(1) << 62


def remap_rgba(
    pixels_hw4: np.ndarray,
    palette: np.ndarray,
    *,
    dither: str = "none",
    strength: float = 1.0,
    seed: int = 0,
    threads: int = 1,
    space: str = "rgb",
) -> np.ndarray:
    """Palette index of every RGBA pixel: the nearest entry, or dithered.

    Parameters
    ----------
    pixels_hw4 : ndarray of shape (height, width, 4), uint8
        Straight (not premultiplied) RGBA.
    palette : ndarray of shape (k, 4), uint8
        Straight RGBA entries, ``1 <= k <= 256``.
    dither : {"none", "fs", "ordered"}, default "none"
        As :func:`remap`, in premultiplied RGBA: the colour error (weighted by
        the pixel's alpha) is diffused or offset, alpha never is.
    strength : float in [0, 1], default 1.0
    seed : int, default 0
        ``"ordered"`` only, as :func:`remap`.
    threads : int, default 1
        Threads the compiled path may use; the labels are the same for any value.
    space : {"rgb", "oklab"}, default "rgb"
        ``"oklab"``: opaque pixels take the Oklab-nearest opaque entry and
        translucent ones the nearest entry in premultiplied Oklab
        (:func:`kpal.cluster.alpha_oklab.nearest_entries`); undithered only
        (the Oklab dither table is built for opaque colours): otherwise
        KpalError.

    Returns
    -------
    ndarray of shape (height, width), uint8
        The nearest entry by the composite error (over black and over white,
        as :func:`kpal.cluster.alpha.composite_mse`), ties to the lowest index,
        of the pixel plus the error it received. Pixels of alpha 0 take the
        first entry of alpha 0 and pixels of alpha 255 only entries of alpha
        255, whenever the palette has such entries: with both kinds of entry
        in the palette, the alpha of those pixels is exact, dithered or not.

    Raises
    ------
    KpalError
        When an argument has the wrong type, shape or value.

    Examples
    --------
    >>> palette = np.array([[0, 0, 0, 0], [0, 0, 0, 255], [255, 255, 255, 255]], np.uint8)
    >>> grey = np.full((2, 4, 4), 128, dtype=np.uint8)
    >>> grey[:, :, 3] = [0, 255, 255, 255]
    >>> remap_rgba(grey, palette, dither="fs").tolist()
    [[0, 2, 1, 2], [0, 1, 2, 1]]
    """
    _check_rgba(pixels_hw4, palette)
    _check(pixels_hw4[..., :3], palette[:, :3], dither, strength, seed, False, threads, space)
    entries = _RgbaEntries(palette)
    if space == "oklab":
        return _nearest_rgba_oklab(pixels_hw4, palette, entries,
                                   dither != "none" and strength > 0)
    height, width = pixels_hw4.shape[:2]
    fast = _compiled(height * width)
    if dither == "none" or strength == 0 or palette.shape[0] == 1:
        if fast is not None and palette.shape[0] > 1:
            # A zero offset: the same exact nearest entry, pixel by pixel.
            return fast.ordered_rgba(pixels_hw4, np.zeros((1, 1, 3), dtype=np.int16), (0, 0),
                                     *entries.arguments(), int(threads))
        return _nearest_rgba(pixels_hw4, entries)
    spacing = _rgba_spacing(palette)
    if dither == "ordered":
        tile, dy, dx = _ordered_offsets(_ORDERED_SCALE * float(strength) * spacing, int(seed))
        if fast is not None:
            return fast.ordered_rgba(pixels_hw4, tile, (dy, dx), *entries.arguments(),
                                     int(threads))
        return _ordered_rgba_numpy(pixels_hw4, tile, dy, dx, entries)
    transparent = bool((palette[:, 3] == 0).any())  # every alpha-0 pixel takes it, exactly
    plan = _band_plan((height, width), float(strength), spacing, 255,
                      exact=lambda rows: in_palette(pixels_hw4[rows], palette)
                      | (transparent & (pixels_hw4[rows][..., 3] == 0)))
    if fast is not None:
        return fast.diffuse_rgba(pixels_hw4, *entries.arguments(), *plan, int(threads))
    return _diffuse_rgba_numpy(pixels_hw4, entries, plan)


class _RgbaEntries:
    """A palette as the RGBA kernels read it.

    ``q`` (k, 3) int64: ``c * a``; ``alpha`` (k,) int64; ``opaque`` (k,)
    bool: the entries a pixel of alpha 255 may take (all of them when the
    palette has no opaque entry); ``transparent``: the entry of every pixel
    of alpha 0, or -1 when the palette has none (they are then searched).
    """

    def __init__(self, palette: np.ndarray) -> None:
        self.alpha = palette[:, 3].astype(np.int64)
        self.q = palette[:, :3].astype(np.int64) * self.alpha[:, None]
        opaque = self.alpha == 255
        self.opaque = opaque if opaque.any() else np.ones_like(opaque)
        clear = np.flatnonzero(self.alpha == 0)
        self.transparent = int(clear[0]) if clear.size else -1

    def arguments(self) -> tuple:
        return (np.ascontiguousarray(self.q), np.ascontiguousarray(self.alpha),
                np.ascontiguousarray(self.opaque), self.transparent)

    def nearest(self, values: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """Nearest allowed entry of premultiplied ``values`` (n, 3) int64 of alpha (n,) int64."""
        shift = 255 * (alpha[:, None] - self.alpha)  # e_white = e_black - shift
        diff = values[:, 0, None] - self.q[:, 0]
        score = diff * diff
        diff -= shift
        score += diff * diff
        for channel in (1, 2):
            np.subtract(values[:, channel, None], self.q[:, channel], out=diff)
            score += diff * diff
            diff -= shift
            score += diff * diff
        score[np.ix_(alpha == 255, ~self.opaque)] = _BARRED
        best = score.argmin(axis=1)
        if self.transparent >= 0:
            best[alpha == 0] = self.transparent
        return best


def _check_rgba(pixels: object, palette: object) -> None:
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 3 \
            or pixels.shape[2] != 4 or 0 in pixels.shape:
        shape = getattr(pixels, "shape", None)
        msg = f"pixels must be a uint8 array of shape (height, width, 4), got {shape}"
        raise KpalError(msg)
    if not isinstance(palette, np.ndarray) or palette.dtype != np.uint8 or palette.ndim != 2 \
            or palette.shape[1] != 4 or not 1 <= palette.shape[0] <= 256:
        shape = getattr(palette, "shape", None)
        msg = f"palette must be a uint8 array of shape (k, 4) with 1 <= k <= 256, got {shape}"
        raise KpalError(msg)


def _premultiplied_values(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``c * A`` (..., 3) and ``A`` (...,) as int64."""
    alpha = pixels[..., 3].astype(np.int64)
    return pixels[..., :3].astype(np.int64) * alpha[..., None], alpha


def _nearest_rgba(pixels: np.ndarray, entries: _RgbaEntries) -> np.ndarray:
    """Nearest allowed entry of every pixel, once per distinct RGBA colour."""
    distinct, inverse = _distinct_rgba(pixels)
    labels = np.empty(distinct.shape[0], dtype=np.uint8)
    chunk = max(1, (1 << 20) // entries.alpha.size)
    for start in range(0, distinct.shape[0], chunk):
        values, alpha = _premultiplied_values(distinct[start:start + chunk])
        labels[start:start + chunk] = entries.nearest(values, alpha)
    return labels[inverse].reshape(pixels.shape[:2])


def _distinct_rgba(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct colours of RGBA ``pixels`` (..., 4) uint8, shape (n, 4), and each pixel's index."""
    packed = np.ascontiguousarray(pixels.reshape(-1, 4)).view(np.uint32).reshape(-1)
    colours, inverse = np.unique(packed, return_inverse=True)
    return colours.view(np.uint8).reshape(-1, 4), inverse.reshape(-1)


def _nearest_rgba_oklab(pixels: np.ndarray, palette: np.ndarray, entries: _RgbaEntries,
                        dithered: bool) -> np.ndarray:
    """Opaque pixels to the Oklab-nearest allowed entry, transparent ones as by RGB,
    translucent ones to the nearest entry in premultiplied Oklab
    (:func:`kpal.cluster.alpha_oklab.nearest_entries`)."""
    alpha = pixels[..., 3]
    if dithered:
        msg = ("space='oklab' with transparency works undithered only; "
               "dithering: the Oklab dither table is built for opaque colours")
        raise KpalError(msg)
    labels = np.zeros(alpha.shape, dtype=np.uint8)
    clear = alpha == 0
    if clear.any():  # every transparent pixel, by the rules
        labels[clear] = _nearest_rgba(np.ascontiguousarray(pixels[clear])[:, None, :],
                                      entries).reshape(-1)
    translucent = (alpha > 0) & (alpha < 255)
    if translucent.any():
        from kpal.cluster.alpha_oklab import nearest_entries

        distinct, inverse = _distinct_rgba(pixels[translucent])  # once per distinct colour
        labels[translucent] = nearest_entries(distinct, palette)[inverse]
    opaque = alpha == 255
    if opaque.any():
        allowed = np.flatnonzero(entries.opaque)
        if allowed.size == 1:
            labels[opaque] = allowed[0]
        else:
            colours = np.ascontiguousarray(pixels[opaque][:, None, :3])
            picks = _nearest_oklab(colours, np.ascontiguousarray(palette[allowed, :3]))
            labels[opaque] = allowed[picks.reshape(-1)]
    return labels


def _rgba_spacing(palette: np.ndarray) -> float:
    """Mean distance from each entry to its nearest other one, by the composite error.

    In levels: the distance of :func:`kpal.cluster.alpha.composite_mse`'s
    error summed over the channels (premultiplied colour over mid-grey, and
    alpha times sqrt(3)/2); 0 when ``k == 1`` or every entry is the same.
    """
    alpha = palette[:, 3:4].astype(np.float64)
    points = np.concatenate([palette[:, :3] * alpha / 255.0 - alpha / 2,
                             alpha * math.sqrt(3.0) / 2], axis=1)
    return _mean_nearest_distance(points)


def _ordered_rgba_numpy(pixels: np.ndarray, tile: np.ndarray, dy: int, dx: int,
                        entries: _RgbaEntries) -> np.ndarray:
    """Ordered dithering in premultiplied RGBA: ``clip(c * A + 255 * t, 0, 255 * A)``.

    The offsets ``t`` (levels of premultiplied colour, scaled like the
    palette's composite spacing) are the blue-noise map of :func:`remap`;
    the clip keeps a value within what the pixel's alpha can show, so a
    transparent pixel stays at 0.
    """
    height, width = pixels.shape[:2]
    labels = np.empty((height, width), dtype=np.uint8)
    for start, stop, offsets in _tiled_rows((height, width), tile, dy, dx, 1 << 16):
        value, alpha = _premultiplied_values(pixels[start:stop])
        value += 255 * offsets.astype(np.int64)
        np.clip(value, 0, 255 * alpha[..., None], out=value)
        labels[start:stop] = entries.nearest(value.reshape(-1, 3), alpha.reshape(-1)).reshape(
            stop - start, width)
    return labels


def _diffuse_rgba_numpy(pixels: np.ndarray, entries: _RgbaEntries, plan: _BandPlan) -> np.ndarray:
    """The banded diffusion of :func:`_diffuse_numpy` in premultiplied RGBA (see above)."""

    def start_row(source, below):
        original, alpha = _premultiplied_values(pixels[source])  # (bands, width, 3), (bands, width)
        top = 255 * alpha

        def settle(x, carry):
            value = original[:, x] + below[:, x] + carry
            np.clip(value, 0, top[:, x, None], out=value)
            best = entries.nearest(value, alpha[:, x])
            error = value - entries.q[best]
            error[alpha[:, x] == 0] = 0  # a transparent pixel passes nothing on
            return best, error

        return settle

    return _run_bands(pixels.shape[:2], plan, start_row)
