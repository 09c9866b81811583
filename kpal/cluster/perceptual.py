"""Perceptual palettes: k-means on the colour histogram in Oklab.

Squared RGB distance is what PSNR counts, but equal RGB steps are not equal
to the eye: a step in a dark blue is far less visible than the same step in
a mid green. Oklab (Björn Ottosson, 2020) is a colour space built so that
Euclidean distance follows perceived difference, with a cheap, exactly
invertible transform from linear sRGB. :func:`quantize_perceptual` clusters
the distinct colours of the image in Oklab, each weighted by its pixel
count, with the project's k-means (:class:`kpal.cluster.kmeans.KMeans` on
float points), then stores every centre as the nearest 8-bit sRGB colour
(the file format does not change) and labels each colour with its nearest
palette colour in Oklab.

Large histograms are clustered coarse to fine, as :func:`kpal.cluster.quantize`
does: first the cells of 8 levels per channel (at most 32 768 points, each
the weighted mean of its colours), then a few Lloyd iterations on the exact
colours from those centres.

``space="rgb"`` is :func:`kpal.cluster.quantize` itself: the same palette
and labels, bit for bit.
"""

from __future__ import annotations

import numpy as np

from kpal import options
from kpal.cluster import Quantization, _check_pixels, _sample_histogram, quantize
from kpal.cluster.histogram import color_histogram, map_pixels, reduce_histogram
from kpal.cluster.kmeans import KMeans
from kpal.cluster.nearest import assign
from kpal.errors import KpalError, silenced, warn

__all__ = ["SPACES", "oklab_from_srgb8", "quantize_perceptual", "srgb8_from_oklab"]

#: Names accepted by ``space=``.
SPACES = ("rgb", "oklab")

#: Oklab coordinates are scaled by this, so distances are of the size of RGB
#: levels (L spans 0..255) and k-means' absolute margins keep their meaning.
_SCALE = 255.0

# Ottosson's matrices: linear sRGB -> LMS, and cube-rooted LMS -> Lab.
_M1 = np.array([[0.4122214708, 0.5363325363, 0.0514459929],
                [0.2119034982, 0.6806995451, 0.1073969566],
                [0.0883024619, 0.2817188376, 0.6299787005]])
_M2 = np.array([[0.2104542553, 0.7936177850, -0.0040720468],
                [1.9779984951, -2.4285922050, 0.4505937099],
                [0.0259040371, 0.7827717662, -0.8086757660]])
_M1_INV = np.linalg.inv(_M1)
_M2_INV = np.linalg.inv(_M2)

#: Histograms above this many colours are clustered coarse to fine.
_COARSE_POINTS = 20_000
#: Bits per channel of the coarse cells.
_COARSE_BITS = 5
#: Lloyd iterations on the exact colours after the cells (at most max_iter);
#: histograms above ``_CONVERGE_POINTS`` colours get ``_POLISH_ITER`` only.
_CONVERGE_POINTS = 250_000
_POLISH_ITER = 3
#: Several k-means++ draws compared for small k (as kpal's RGB k-means does).
_TRIAL_ITER = 10


def _linear(srgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] -> linear light (IEC 61966-2-1)."""
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def _encode(linear: np.ndarray) -> np.ndarray:
    """Linear light -> sRGB in [0, 1] (inputs clipped to [0, 1])."""
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear,
                    1.055 * np.power(linear, 1 / 2.4) - 0.055)


def oklab_from_srgb8(colors: np.ndarray) -> np.ndarray:
    """Oklab coordinates (times 255) of sRGB colours.

    Parameters
    ----------
    colors : ndarray of shape (n, 3)
        sRGB values in 0..255 (uint8, or float for cell means).

    Returns
    -------
    ndarray of shape (n, 3), float64
        ``L`` in 0..255 and ``a``, ``b`` in about -60..60.

    Examples
    --------
    >>> oklab_from_srgb8(np.array([[255, 255, 255], [255, 0, 0]], dtype=np.uint8)).round(1).tolist()
    [[255.0, 0.0, 0.0], [160.1, 57.3, 32.1]]
    """
    linear = _linear(np.asarray(colors, dtype=np.float64) / 255.0)
    lms = np.cbrt(linear @ _M1.T)
    return (lms @ _M2.T) * _SCALE


def srgb8_from_oklab(lab: np.ndarray) -> np.ndarray:
    """Nearest 8-bit sRGB colours of Oklab points (times 255), clipped to the gamut.

    Parameters
    ----------
    lab : ndarray of shape (n, 3), float

    Returns
    -------
    ndarray of shape (n, 3), uint8
    """
    lms = (np.asarray(lab, dtype=np.float64) / _SCALE) @ _M2_INV.T
    linear = (lms * lms * lms) @ _M1_INV.T
    return np.clip(np.rint(_encode(linear) * 255.0), 0, 255).astype(np.uint8)


def quantize_perceptual(
    pixels: np.ndarray,
    k: int,
    *,
    space: str = "oklab",
    method: str = "kmeans",
    init: str = "k-means++",
    seed: int = 0,
    max_iter: int | None = None,
    tol: float | None = None,
    sample: float | None = None,
) -> Quantization:
    """Choose at most ``k`` colours by k-means in a perceptual space, and label every pixel.

    Parameters
    ----------
    pixels : ndarray of shape (n_pixels, 3), uint8
        RGB pixels.
    k : int
        Palette size, 1..256.
    space : {"oklab", "rgb"}, default "oklab"
        Where distances are measured. ``"rgb"`` is exactly
        :func:`kpal.cluster.quantize`.
    method : {"kmeans", "gmm"}, default "kmeans"
        ``"gmm"`` is available with ``space="rgb"`` only.
    init : {"k-means++", "random"}, default "k-means++"
    seed : int, default 0
        Same input and seed, same result.
    max_iter : int, optional
        Lloyd iterations (default 300).
    tol : float, optional
        Relative centre shift at which k-means stops (default 1e-4).
    sample : float in (0, 1], optional
        Fit on this random fraction of the pixels, then label all of them.

    Returns
    -------
    Quantization
        ``palette`` in 8-bit sRGB (entries every pixel may use, in the
        order k-means found them, unused ones dropped), ``labels`` the
        nearest palette colour of each pixel in Oklab, ``inertia`` the mean
        squared RGB error (as :func:`kpal.cluster.quantize` reports it).

    Raises
    ------
    KpalError
        When an argument is invalid, or ``method="gmm"`` with ``space="oklab"``.

    Warns
    -----
    KpalWarning
        When the pixels hold ``k`` or fewer distinct colours (kept exactly).

    Examples
    --------
    >>> pixels = np.array([[0, 0, 0], [0, 0, 2], [250, 250, 250]], dtype=np.uint8)
    >>> palette, labels = quantize_perceptual(pixels, 2)
    >>> palette[labels].tolist()  # the Oklab mean of the two darks is sRGB black
    [[0, 0, 0], [0, 0, 0], [250, 250, 250]]
    """
    if space not in SPACES:
        msg = f"space={space!r} must be one of {', '.join(SPACES)}"
        raise KpalError(msg)
    if space == "rgb":
        return quantize(pixels, k, method=method, init=init, seed=seed, max_iter=max_iter,
                        tol=tol, sample=sample)
    _check_pixels(pixels)
    opts = options.EncodeOptions(k=k, method=method, init=init, seed=seed, max_iter=max_iter,
                                 tol=tol, sample=sample)
    if method != "kmeans":
        msg = f"method={method!r} is available with space='rgb' only; space='oklab' uses kmeans"
        raise KpalError(msg)
    k, max_iter, tol = opts.k, opts.iterations, opts.tolerance
    hist = color_histogram(pixels)
    n_colors = len(hist)
    if n_colors <= k:
        with silenced("the image has"):
            result = quantize(pixels, k, seed=seed)
        warn(
            f"the image has {n_colors} distinct colour{'' if n_colors == 1 else 's'}, "
            f"no more than k={k}: the palette holds exactly those colours (lossless)")
        return result
    rng = np.random.default_rng(seed)
    fit_hist = hist
    if sample is not None and sample < 1:
        fit_hist = _sample_histogram(pixels, sample, rng)
        if len(fit_hist) <= k:
            fit_hist = hist
    centres, n_iter = _fit(fit_hist.colors, fit_hist.counts, k, init, rng, max_iter, tol)
    palette = srgb8_from_oklab(centres)
    # Every colour to its nearest palette colour in Oklab; rounding to sRGB
    # can merge two centres into one colour: the first one wins the ties.
    color_labels, _ = assign(oklab_from_srgb8(hist.colors), oklab_from_srgb8(palette))
    used = np.bincount(color_labels, minlength=palette.shape[0]) > 0
    renumber = np.cumsum(used, dtype=np.intp) - 1
    chosen = palette[color_labels]
    palette = palette[used]
    labels = map_pixels(pixels, hist.colors, renumber[color_labels].astype(np.uint8))
    diff = hist.colors.astype(np.int64) - chosen
    distances = np.einsum("nd,nd->n", diff, diff).astype(np.float64)
    inertia = float(np.einsum("n,n->", distances, hist.counts.astype(np.float64)))
    return Quantization(palette, labels, n_iter, inertia / pixels.shape[0], n_colors, method)


def _fit(colors: np.ndarray, counts: np.ndarray, k: int, init: str,
         rng: np.random.Generator, max_iter: int, tol: float) -> tuple[np.ndarray, int]:
    """k-means centres (Oklab, times 255) of a histogram, coarse to fine; iterations run."""
    points = oklab_from_srgb8(colors)
    weights = counts.astype(np.float64)
    start, n_iter = None, 0
    if points.shape[0] > _COARSE_POINTS:
        means, cell_weights, _ = reduce_histogram(colors, counts, _COARSE_BITS)
        if means.shape[0] > k:
            start, n_iter = _best_of(oklab_from_srgb8(means), cell_weights, k, init, rng,
                                     max_iter, tol)
    if start is None:
        centres, n_iter = _best_of(points, weights, k, init, rng, max_iter, tol)
        return centres, n_iter
    polish = _POLISH_ITER if points.shape[0] > _CONVERGE_POINTS else max_iter
    model = KMeans(k, init=start, max_iter=min(polish, max_iter), tol=tol)
    model.fit(points, sample_weight=weights)
    return model.cluster_centers_, n_iter + model.n_iter_


def _best_of(points: np.ndarray, weights: np.ndarray, k: int, init: str,
             rng: np.random.Generator, max_iter: int, tol: float) -> tuple[np.ndarray, int]:
    """k-means from several seeded draws for small k (the lowest inertia wins)."""
    draws = 1 if k > 64 or points.shape[0] > _COARSE_POINTS else (8 if k <= 16 else 4)
    trial_iter = min(max_iter, _TRIAL_ITER) if draws > 1 else max_iter
    best = None
    for seed in rng.integers(0, 2**31 - 1, size=draws).tolist():
        model = KMeans(k, init=init, seed=seed, max_iter=trial_iter, tol=tol)
        model.fit(points, sample_weight=weights)
        if best is None or model.inertia_ < best.inertia_:
            best = model
    n_iter = best.n_iter_
    if draws > 1 and n_iter < max_iter:
        model = KMeans(k, init=best.cluster_centers_, max_iter=max_iter - n_iter, tol=tol)
        model.fit(points, sample_weight=weights)
        return model.cluster_centers_, n_iter + model.n_iter_
    return best.cluster_centers_, n_iter
