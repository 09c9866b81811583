"""Gaussian mixture palettes for RGBA images with translucent pixels.

``method="gmm"`` on an image whose alpha is not only 0 and 255. The mixture
is fitted where the palette is judged: in the four coordinates of
:func:`kpal.cluster.alpha._to_space` (premultiplied colour over mid-grey,
and alpha), where the squared Euclidean distance between two colours is
their composite error (over black and over white, averaged). EM runs on the
distinct colours weighted by their pixel counts, which is exactly EM on the
pixels (:class:`kpal.cluster.gmm.GaussianMixture`, ``d = 4``), from the
k-means start that ``init`` and ``seed`` choose; ``max_iter`` and ``tol``
are EM's, ``sample`` keeps each pixel with that probability (a binomial draw
per colour, as the k-means path does).

The component means are the centres. From there on the rules of
:mod:`kpal.cluster.alpha` apply unchanged: a centre becomes an opaque entry
when most of the weight nearest to it is opaque pixels, then more turn
opaque while that lowers the error (:func:`~kpal.cluster.alpha._opaque_kinds`,
:func:`~kpal.cluster.alpha._more_opaque_kinds`); an opaque entry is the
point of the alpha 255 plane nearest to its component's mean (same colour
over mid-grey); every centre is rounded to 8-bit straight RGBA, alpha 0
pixels take the one transparent entry, alpha 255 pixels their nearest alpha
255 entry, and translucent pixels their exact nearest entry by the composite
error (:class:`~kpal.cluster.alpha._Labelling`, ties to the lowest index).
No k-means pass moves the entries afterwards: the palette is the mixture's.
Entries no pixel chooses are dropped.

Images with many distinct colours (a soft-alpha photo has about one per
translucent pixel) are fitted on cells: the points are merged into cubic
cells ``1 / _CELL_LEVELS`` of the widest extent of the points on a side
(side 8 for these coordinates), and EM runs on the cells' weighted means
(:func:`gmm_centres`): on a 3 MP soft-alpha photo 3 s instead of 40 s, at
the same quality. Listing those colours still costs most of the 3 s;
:func:`quantize_translucent_pixels` skips it, gathering the pixels straight
into the cells of :mod:`kpal.cluster.alpha`'s pixel path (0.4 s with the
compiled kernels). Every sum is numpy's or single-threaded BLAS
(:mod:`kpal.cluster.gmm`), so the result is the same bytes for any number of
threads; the compiled kernels, when given, only gather and label (with the
same results as numpy).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from kpal import options
from kpal.cluster import Quantization
from kpal.cluster.alpha import (
    _ALPHA_SCALE,
    _COMPOSITE_UNIT,
    _N_KEYS,
    _OPAQUE,
    _cell_points,
    _cell_sums,
    _colour_points,
    _colour_quantization,
    _count_colours,
    _label_error,
    _label_sums,
    _Labelling,
    _more_opaque_kinds,
    _opaque_kinds,
    _palette,
    _Parts,
    _used_entries,
)
from kpal.cluster.gmm import GaussianMixture
from kpal.cluster.nearest import assign
from kpal.errors import silenced

__all__ = ["gmm_centres", "quantize_translucent", "quantize_translucent_pixels"]

#: Above this many distinct points EM runs on cells (:func:`_merge`). On the
#: images of bench/bench_alpha_gmm.py the cells lose nothing and save most of
#: the time: the vignette photo (158,000 colours) 21.9 dB in 0.8 s against 22.1 dB
#: in 4.7 s at k = 16 and 27.6 against 26.9 dB at k = 64, the feathered one (60,000)
#: 24.6 against 24.1 dB and 30.6 against 30.7 dB, at a seventh of the time; a 3 MP
#: soft vignette 22.45 dB in 3 s against 22.29 dB in 40 s.
_CELL_POINTS = 20_000
#: Cells per side along the widest extent of the points.
_CELL_LEVELS = 32
#: Cells are numbered through a table of this many entries at most (else a sort);
#: 32**4 cells for the four premultiplied coordinates.
_DENSE_CELLS = 1 << 22
#: Cells are used only if they leave room for the components.
_CELL_FACTOR = 4
#: Added to every covariance's diagonal: the variance of rounding to 8-bit
#: levels (1/12), the resolution of the data. Colours lie on a grid of 8-bit
#: levels, so a component can otherwise collapse onto one level of alpha or
#: one colour; on the soft-alpha images of bench/bench_alpha_gmm.py 1/12 gains
#: 0.6 dB (k = 16) and 0.8 dB (k = 64) on average over 1e-6, the default of RGB
#: mixtures.
_REG_COVAR = 1.0 / 12.0


def quantize_translucent(parts: _Parts, k_free: int, opts: options.EncodeOptions,
                         kernels: ModuleType | None) -> Quantization:
    """Quantize an image with translucent pixels by a Gaussian mixture.

    Parameters
    ----------
    parts : kpal.cluster.alpha._Parts
        The pixels split by kind; it has translucent colours and more
        distinct colours than ``k_free`` plus its transparent entry.
    k_free : int
        Entries for the opaque and translucent colours (``k`` less the
        transparent entry if the image has alpha 0 pixels), at least 1.
    opts : kpal.options.EncodeOptions
        ``init``, ``seed``, ``max_iter``, ``tol`` and ``sample`` are used.
    kernels : module or None
        :mod:`kpal.cluster._kmeans_fast` when compiled, for the labelling.

    Returns
    -------
    Quantization
        As :func:`kpal.cluster.alpha.quantize_rgba`: every entry used,
        ``n_iter`` the EM iterations, ``method`` ``opts.method``.
    """
    rng = np.random.default_rng(opts.seed)
    colours, points, weights = _colour_points(parts, k_free, opts, rng)
    centres, n_iter, point_labels = _fit_mixture(points, weights, k_free, opts, rng)
    has_t = parts.has_transparent
    palette = _entries(centres, point_labels, points, weights, colours.n_opaque, has_t)
    labelling = _Labelling(colours, palette, point_labels + has_t, kernels=kernels)
    return _colour_quantization(parts, colours, palette, labelling, n_iter, opts.method)


def quantize_translucent_pixels(pixels: np.ndarray, k: int, opts: options.EncodeOptions,
                                fast: ModuleType | None) -> Quantization | None:
    """:func:`quantize_translucent` for images with many translucent pixels, from the pixels.

    The counterpart of :mod:`kpal.cluster.alpha`'s ``_premultiplied_pixels``
    for ``method="gmm"``: the pixels are gathered into the cells of
    premultiplied RGBA of ``_cell_sums`` without listing their distinct
    colours, the mixture is fitted on the cells' means weighted by their
    pixel counts (merged again by :func:`gmm_centres` when there are many),
    and every pixel takes its exact nearest allowed entry (``_label_sums``,
    compiled with ``fast``). The entries are the mixture's, as in
    :func:`quantize_translucent`.

    Parameters
    ----------
    pixels : ndarray of shape (n_pixels, 4), uint8
        Straight RGBA pixels.
    k : int
        Palette size, 2..256, the transparent entry included.
    opts : kpal.options.EncodeOptions
        ``init``, ``seed``, ``max_iter``, ``tol`` and ``sample`` are used.
    fast : module or None
        :mod:`kpal.cluster._alpha_fast` when compiled: the cells, the count of
        colours and the labels (the same results as the numpy twins).

    Returns
    -------
    Quantization or None
        As :func:`quantize_translucent`; None when the image has no more than
        ``k`` distinct colours (for the lossless path).
    """
    n_colors = fast.count_colours(pixels) if fast is not None else _count_colours(pixels)
    if n_colors <= k:
        return None
    counts, sums, moment = fast.cell_sums(pixels, _N_KEYS) if fast is not None \
        else _cell_sums(pixels)
    rng = np.random.default_rng(opts.seed)
    n = pixels.shape[0]
    has_t, k_free, occupied, n_opaque, points, weights = _cell_points(counts, sums, n, k, opts,
                                                                      rng)
    centres, n_iter, point_labels = _fit_mixture(points, weights, k_free, opts, rng)
    palette = _entries(centres, point_labels, points, weights, n_opaque, has_t)
    labels, entry_sums, entry_counts = _label_sums(pixels, palette, fast,
                                                   occupied if fast is not None else None)
    error = _label_error(palette, entry_sums, entry_counts, moment)
    palette, labels = _used_entries(palette, labels, entry_counts, has_t)
    return Quantization(palette, labels, n_iter, error / _COMPOSITE_UNIT / n, n_colors,
                        opts.method)


def _entries(centres: np.ndarray, point_labels: np.ndarray, points: np.ndarray,
             weights: np.ndarray, n_opaque: int, has_t: int) -> np.ndarray:
    """The palette of the mixture's means: kinds by the rules of :mod:`kpal.cluster.alpha`,
    opaque means moved onto the alpha 255 plane (their nearest opaque entry), rounded."""
    opaque_kind = _opaque_kinds(point_labels, weights, n_opaque, centres.shape[0])
    opaque_kind = _more_opaque_kinds(opaque_kind, centres, points, weights, point_labels,
                                     n_opaque)
    centres = centres.copy()
    centres[opaque_kind, 3] = _OPAQUE * _ALPHA_SCALE
    return _palette(centres, opaque_kind, has_t)


def gmm_centres(points: np.ndarray, weights: np.ndarray, k: int, opts: options.EncodeOptions,
                rng: np.random.Generator) -> np.ndarray:
    """Means of a Gaussian mixture fitted by EM to weighted points.

    Parameters
    ----------
    points : ndarray of shape (n, d), float64
        Points of any number ``d`` of features, in coordinates where the
        squared Euclidean distance is the error to minimize, on the scale of
        8-bit levels: every covariance gets ``_REG_COVAR`` (1/12, the
        variance of rounding to a level) added to its diagonal.
    weights : ndarray of shape (n,), float64
        Non-negative weight of every point (pixel counts); points of weight 0
        take no part. At least one weight is positive.
    k : int
        Number of components, 1..256.
    opts : kpal.options.EncodeOptions
        ``init`` starts EM's k-means; ``max_iter`` and ``tol`` (EM's defaults
        when None) bound it.
    rng : numpy.random.Generator
        Draws the seed of the k-means start: the same generator state gives
        the same means.

    Returns
    -------
    ndarray of shape (min(k, m), d), float64
        The component means, ``m`` being the number of distinct points of
        positive weight. More than ``_CELL_POINTS`` points are merged into
        cells first (:func:`_merge`) and the mixture fits the cells.
    """
    return _fit_mixture(points, weights, k, opts, rng)[0]


def _fit_mixture(points: np.ndarray, weights: np.ndarray, k: int,
                 opts: options.EncodeOptions,
                 rng: np.random.Generator) -> tuple[np.ndarray, int, np.ndarray]:
    """:func:`gmm_centres`, the number of EM iterations run, and the nearest
    mean of every point (of its cell's mean, when the points were merged)."""
    fit_points, fit_weights = points, weights
    cells = None
    if np.count_nonzero(weights) > _CELL_POINTS:
        cells = _merge(points, weights, _CELL_LEVELS)
        if np.count_nonzero(cells[1]) >= _CELL_FACTOR * k:
            fit_points, fit_weights = cells[:2]
        else:
            cells = None
    positive = fit_weights > 0
    fit_points, fit_weights = fit_points[positive], fit_weights[positive]
    seed = int(rng.integers(0, 2**31 - 1))
    mixture = GaussianMixture(k, seed=seed, max_iter=opts.iterations, tol=opts.tolerance,
                              reg_covar=_REG_COVAR, init=opts.init)
    with silenced():
        # Not converging within max_iter is the caller's chosen budget, not an error;
        # fewer distinct points than k is reported by the caller's lossless path.
        mixture.fit(fit_points, sample_weight=fit_weights)
    means = mixture.means_.copy()
    if cells is None:
        return means, mixture.n_iter_, assign(points, means)[0]
    # Millions of points: a search per cell, not per point.
    return means, mixture.n_iter_, assign(cells[0], means)[0][cells[2]]


def _merge(points: np.ndarray, weights: np.ndarray,
           levels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge weighted points into cubic cells: weighted means, weights, cell of every point.

    The side of a cell is the widest extent of the points over ``levels``;
    cells are numbered in the order of their coordinates. A cell whose points
    all weigh 0 (left out of a sample) gets their plain mean.
    """
    low = points.min(axis=0)
    extent = float((points.max(axis=0) - low).max())
    scale = levels / extent if extent > 0 else 0.0
    index = np.minimum(((points - low) * scale).astype(np.int64), levels - 1)
    n_keys = levels ** points.shape[1]
    if n_keys > _DENSE_CELLS:
        _, cell_of_point = np.unique(index, axis=0, return_inverse=True)
    else:
        key = index[:, 0].copy()
        for column in range(1, points.shape[1]):
            key *= levels
            key += index[:, column]
        # Number the occupied cells in key order through a table (np.unique's order).
        present = np.bincount(key, minlength=n_keys) > 0
        cell_of_point = (np.cumsum(present, dtype=np.intp) - 1)[key]
    cell_of_point = cell_of_point.reshape(-1)
    n_cells = int(cell_of_point.max()) + 1
    cell_weights = np.bincount(cell_of_point, weights=weights, minlength=n_cells)
    mass = np.where(cell_weights[cell_of_point] > 0, weights, 1.0)
    means = np.empty((n_cells, points.shape[1]))
    for column in range(points.shape[1]):
        means[:, column] = np.bincount(cell_of_point, weights=mass * points[:, column],
                                       minlength=n_cells)
    means /= np.bincount(cell_of_point, weights=mass, minlength=n_cells)[:, None]
    return means, cell_weights, cell_of_point
