"""Quantization of RGBA pixels: palettes whose entries carry alpha.

Colours are compared in *premultiplied* RGBA, ``(r·a, g·a, b·a, a)`` with ``a``
in 0..1 (here scaled back to 0..255), as pngquant does: two pixels of opacity
``a`` whose straight colours differ by ``d`` are ``a·d`` apart, so the colour of
a nearly transparent pixel weighs little and the colour under a fully
transparent one not at all. The error measured between a pixel and its entry
is the one a viewer sees: the squared error of the composite over black and of
the composite over white, averaged. Per channel, with ``e`` the premultiplied
colour error and ``da`` the alpha error, that is ``e² - e·da + da²/2``; in the
coordinates ``(p - a/2, (√3/2)·a)`` (the colour composited over mid-grey, and
alpha) it is a plain sum of squares, so k-means runs there unchanged.

Three kinds of pixel are treated apart:

* **transparent** (alpha 0): all map to one entry ``(0, 0, 0, 0)``, whatever
  colour they hold;
* **opaque** (alpha 255): they only map to entries of alpha exactly 255, so the
  inside of a shape never turns slightly transparent;
* **translucent** (alpha 1..254): nearest entry of any kind.

An image with only alpha 0 and 255 (a GIF-style mask) therefore keeps its mask
exactly, and its opaque pixels are quantized like an RGB image over ``k - 1``
entries (:func:`kpal.cluster.quantize`, any method, or
:func:`kpal.cluster.perceptual.quantize_perceptual` with ``space="oklab"``).
Dithering, and mapping onto a given palette, follow the same three rules
(:func:`kpal.cluster.remap.remap_rgba`).

Otherwise k-means runs on the distinct colours weighted by their pixel
counts: k-means++ and :func:`lloyd` on cells of the space, then Lloyd on
the exact colours from the bounds the cells proved (both from
:mod:`kpal.cluster.kmeans`). A few passes then give
each entry its kind (opaque when most of its weight is opaque pixels), round it
to 8-bit straight RGBA, label every colour with its nearest allowed entry and
move each entry to the mean of its colours. With ``method="gmm"`` a Gaussian
mixture fitted by EM in the same coordinates chooses the entries instead
(:mod:`kpal.cluster.alpha_gmm`), under the same rules.

Images with many translucent pixels (at least ``_PIXEL_PATH``, a soft edge
on a photo of megapixels) skip the list of distinct colours: the pixels are
gathered straight into cells of premultiplied RGBA, k-means runs on the
cells, and every pixel takes its exact nearest allowed entry (the rule of
:func:`kpal.cluster.remap.remap_rgba`) before one pass moves each entry to
the mean of its pixels (``method="gmm"``: the mixture is fitted on the same
cells, and no pass follows). The compiled kernels of
:mod:`kpal.cluster._alpha_fast` search only the entries that can be nearest
in each sixteenth of a cell (none when it has one); the numpy twins find the same
labels and integer sums. The error of a labelling, which decides whether the
pass is kept, comes from those sums and one moment of the image
(:func:`_label_error`), not from the pixels again.

The kind of each entry comes from the fit: opaque when most of its weight is
opaque pixels, then more entries turn opaque while the error that spares the
opaque pixels (who may only take opaque entries) exceeds the error it costs
the translucent ones (:func:`_more_opaque_kinds`).

Labels are decided by exact integer arithmetic: opaque colours by
:func:`nearest_palette_colors` among the opaque entries, translucent ones on
their composites ``(c·a, c·a - 255·a)`` (integers), ties going to the lowest
index; Hamerly's bounds, carried from one pass to the next, spare most
colours the search. Every sum is taken with numpy, never BLAS, so the result
does not depend on the number of threads. Large images use the compiled
kernels of :mod:`kpal.cluster._kmeans_fast` on the same terms as
:func:`kpal.cluster.quantize` (when ``kpal[fast]`` is installed): they find
the same labels, so the output is the same bytes either way and for any
number of threads.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

import numpy as np

from kpal import _jit, options
from kpal.cluster import COMPILED_WARM_PIXELS, Quantization, compiled_cold_pixels, quantize
from kpal.cluster.histogram import color_histogram, map_pixels
from kpal.cluster.kmeans import LloydState, initial_centres, lloyd, nearest_palette_colors
from kpal.cluster.nearest import _MARGIN, Neighbours, assign
from kpal.errors import KpalError, warn

__all__ = ["TRANSPARENT", "composite_mse", "fit_histogram_rgba", "flatten", "quantize_rgba"]

#: The palette entry every fully transparent pixel maps to.
TRANSPARENT = (0, 0, 0, 0)

#: Alpha of a fully opaque pixel or entry.
_OPAQUE = 255
#: Weight of alpha in the clustering space (:func:`_to_space`).
_ALPHA_SCALE = float(np.sqrt(3.0) / 2.0)
#: Squared distances between :func:`_composites` are this many times the composite error.
_COMPOSITE_UNIT = 2.0 * 255.0**2

#: Above this many distinct colours, k-means starts on cells of the premultiplied
#: space (``_CELL_STEP`` levels per channel) before the exact colours.
_CELL_POINTS = 20_000
_CELL_STEP = 8
#: Cells are numbered through a table of this many entries at most (else a sort).
_DENSE_CELLS = 1 << 22
#: Iterations on the cells when the exact colours follow.
_CELL_ITER = 20
#: Cells are used only if they leave room for the clusters and merge a lot.
_CELL_FACTOR = 4
_CELL_MERGE = 0.6
#: Several initial draws are compared (``_TRIAL_ITER`` iterations each) for small k,
#: on cells of side ``_DRAW_STEP`` when there are more than ``_DRAW_POINTS`` points:
#: ``_RESTARTS[0]`` draws for k <= 16, ``_RESTARTS[1]`` for k <= 64. On the images of
#: bench/bench_alpha.py 4 and 2 draws lose 0.02 dB (k = 16) against 8 and 4, and the
#: draws were most of the time of a small image.
_TRIAL_ITER = 10
_RESTARTS = (4, 2)
_DRAW_POINTS = 4_000
_DRAW_STEP = 16
#: Lloyd iterations on the exact colours after the cells: a polish only, the
#: passes below finish the job under the alpha rules (bench/bench_alpha.py:
#: within 0.05 dB of running it to convergence, at a third of the time; 3
#: iterations instead of 10 lose 0.02 dB at k = 256 and nothing at k = 16).
_EXACT_ITER = 3
#: Passes on the exact colours (round the centres, relabel, move to the mean):
#: at most this many, stopping when the error falls by less than _PASS_GAIN
#: (bench/bench_alpha.py: 3 passes are within 0.05 dB of 5).
_MAX_PASSES = 3
_PASS_GAIN = 1e-3
#: Above this many distinct colours (photos of several megapixels with soft
#: alpha), Lloyd's algorithm stops at the cells and _LARGE_PASSES passes polish
#: on the exact colours: each labelling of millions of colours costs as much as
#: many iterations on the cells (a 4 MP soft-alpha photo: within 0.1 dB, at
#: about half the time).
_CONVERGE_POINTS = 250_000
_LARGE_PASSES = 1
#: Images with at least this many translucent pixels are quantized from their
#: pixels (:func:`_premultiplied_pixels`): listing millions of distinct
#: translucent colours cost more than the whole fit.
_PIXEL_PATH = 1 << 20
#: Images of this many pixels take its compiled kernels even when numba is not
#: imported yet: its start-up (about 1 s) costs less than the numpy twins.
_PIXEL_COLD = 2 << 20
#: Cell keys of :func:`_cell_sums`: 33 alpha levels of 32**3 colour cells; the
#: first _OPAQUE_KEYS are the opaque cells.
_OPAQUE_KEYS = 32**3
_N_KEYS = 33 * _OPAQUE_KEYS
#: Margin, in composite units (up to 255² · √6), for bound tests that must be exact.
_BOUND_MARGIN = 1e-3

def quantize_rgba(
    pixels: np.ndarray,
    k: int,
    *,
    method: str = "kmeans",
    init: str = "k-means++",
    seed: int = 0,
    max_iter: int | None = None,
    tol: float | None = None,
    sample: float | None = None,
    space: str = "rgb",
) -> Quantization:
    """Choose at most ``k`` RGBA colours for ``pixels`` and label every pixel.

    Parameters
    ----------
    pixels : ndarray of shape (n_pixels, 4), uint8
        Straight (not premultiplied) RGBA pixels.
    k : int
        Palette size, 1..256. When the image has fully transparent pixels one
        entry is ``(0, 0, 0, 0)``, leaving ``k - 1`` for the others.
    method : {"kmeans", "gmm"}, default "kmeans"
        ``"gmm"``: a Gaussian mixture fitted by EM chooses the entries (for
        translucent pixels in the premultiplied coordinates,
        :mod:`kpal.cluster.alpha_gmm`; for the opaque pixels of a 0/255 mask
        as RGB).
    init : {"k-means++", "random"}, default "k-means++"
    seed : int, default 0
        Seed of every random choice: same input and seed, same bytes.
    max_iter : int, optional
        Maximum iterations (default: 300 for k-means, 100 for EM).
    tol : float, optional
        Convergence tolerance (default: 1e-4 for k-means, 1e-3 for EM).
    sample : float in (0, 1], optional
        Fit on this random fraction of the pixels, then label all of them.
    space : {"rgb", "oklab"}, default "rgb"
        ``"oklab"``: opaque pixels are clustered and labelled in Oklab,
        translucent ones in premultiplied Oklab (:mod:`kpal.cluster.alpha_oklab`,
        see Notes); alpha 0 and 255 stay exact. On a 0/255 mask the opaque
        pixels are quantized by :func:`kpal.cluster.perceptual.quantize_perceptual`
        over ``k - 1`` entries.

    Returns
    -------
    Quantization
        ``palette`` of shape (k_used, 4), uint8 straight RGBA, every entry
        used; ``labels`` of shape (n_pixels,), uint8; ``inertia`` is the mean
        over pixels of the composite error (squared error over black and over
        white, averaged, summed over the three channels, in 0..255 units:
        ``3 * composite_mse``); ``n_colors`` counts distinct RGBA colours with
        every fully transparent pixel counted as one colour.

    Raises
    ------
    KpalError
        ``pixels`` is not a non-empty uint8 array of shape (n, 4), or an option
        is out of range.

    Warns
    -----
    KpalWarning
        When the image has ``k`` or fewer distinct colours: the palette is
        then exactly those colours (lossless).

    Notes
    -----
    Alpha 255 pixels only map to alpha 255 entries and alpha 0 pixels to the
    single transparent entry, so with ``k >= 2`` the alpha of both is exact.
    With ``k = 1`` the one entry is the premultiplied mean of all pixels.

    With ``method="gmm"`` and translucent pixels, a Gaussian mixture with full
    4 x 4 covariances (:class:`~kpal.cluster.gmm.GaussianMixture` with
    ``d = 4``) is fitted by EM in the premultiplied coordinates used here,
    where the squared distance is the composite error, on the distinct colours
    weighted by their pixel counts (merged into cells when there are many, or
    the cells of the pixels on the large-image path). Its component means,
    rounded to 8-bit straight RGBA, are the palette, under the same rules, and
    every pixel takes its exact nearest allowed entry. No k-means pass
    follows: the palette is the mixture's, about 1 dB below k-means in
    composite PSNR (bench/bench_alpha_gmm.py). ``max_iter`` and ``tol`` are
    EM's.

    With ``space="oklab"``, translucent pixels are clustered in premultiplied
    Oklab (:mod:`kpal.cluster.alpha_oklab`): a colour of Oklab ``(L, A, B)``
    and opacity ``a`` is the point ``(a·(L - ½), a·A, a·B, a/2)`` (times
    255·√3), where the squared distance between two pixels is the mean squared
    Oklab error of their composites over black and over white, mixed in Oklab:
    the Oklab distance on opaque colours, with the colour of a nearly
    transparent pixel weighed by its alpha, as premultiplication does in RGB.
    ``inertia`` stays the composite error in sRGB levels, so both spaces
    report comparable numbers. ``method="gmm"`` with ``space="oklab"`` is
    refused, as for opaque images.

    Examples
    --------
    >>> px = np.array([[9, 9, 9, 0], [200, 0, 0, 0], [0, 0, 250, 255], [0, 0, 240, 255]],
    ...               dtype=np.uint8)
    >>> palette, labels = quantize_rgba(px, 2)
    >>> palette[labels].tolist()
    [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 245, 255], [0, 0, 245, 255]]
    """
    _check_pixels(pixels)
    opts = options.EncodeOptions(k=k, method=method, init=init, seed=seed, max_iter=max_iter,
                                 tol=tol, sample=sample, space=space)
    k = opts.k
    # Compiled loops for large images when kpal[fast] is installed, on the same
    # terms as kpal.cluster.quantize: the same output either way.
    kernels = _jit.load("kpal.cluster._kmeans_fast", pixels.shape[0],
                        min_pixels=COMPILED_WARM_PIXELS, cold_min_pixels=compiled_cold_pixels(k))
    if k > 1 and space == "rgb" and _many_translucent(pixels):
        # Its numpy twin is slower than numba's start-up from _PIXEL_COLD pixels on;
        # loaded first, so that the k-means of the cells is compiled too.
        fast = _jit.load("kpal.cluster._alpha_fast", pixels.shape[0],
                         cold_min_pixels=_PIXEL_COLD)
        kernels = _jit.load("kpal.cluster._kmeans_fast", pixels.shape[0],
                            min_pixels=COMPILED_WARM_PIXELS,
                            cold_min_pixels=compiled_cold_pixels(k))
        if method == "gmm":
            from kpal.cluster.alpha_gmm import quantize_translucent_pixels

            result = quantize_translucent_pixels(pixels, k, opts, fast)
        else:
            result = _premultiplied_pixels(pixels, k, opts, kernels, fast)
        if result is not None:
            return result
    parts = _Parts(pixels, kernels)
    n_colors = parts.n_colors
    if n_colors <= k:
        warn(
            f"the image has {n_colors} distinct RGBA colour{'' if n_colors == 1 else 's'}, "
            f"no more than k={k}: the palette holds exactly those colours (lossless)")
        return _lossless(parts, method)
    if k == 1:
        return _single_entry(parts, method)
    k_free = k - parts.has_transparent
    if parts.s_colors.shape[0] == 0:
        return _opaque_only(parts, k_free, opts)
    return _translucent(parts, k_free, opts, kernels)


def _translucent(parts: _Parts, k_free: int, opts: options.EncodeOptions,
                 kernels: ModuleType | None) -> Quantization:
    """The fit of distinct colours with translucent ones, for every method and space."""
    if opts.method != "kmeans" or opts.space != "rgb":
        return _other_model(parts, k_free, opts, kernels)
    return _premultiplied(parts, k_free, opts, kernels)


def fit_histogram_rgba(colors: np.ndarray, counts: np.ndarray,
                       opts: options.EncodeOptions) -> np.ndarray:
    """The RGBA palette of a weighted histogram of colours with translucent ones.

    The fit :func:`quantize_rgba` makes of an image's distinct colours, made
    of a histogram merged from many images (:func:`kpal.palettes.fit_palette`):
    fully transparent colours share one ``(0, 0, 0, 0)`` entry, opaque colours
    take only opaque entries, translucent ones are clustered by their
    composite error.

    Parameters
    ----------
    colors : ndarray of shape (n_colors, 4), uint8
        Distinct straight RGBA colours in ascending ``r, g, b, a`` order, at
        least one translucent (alpha 1..254) unless ``k = 1``, alpha 0 only as
        ``(0, 0, 0, 0)``, ``n_colors > k``.
    counts : ndarray of shape (n_colors,), float64
        Their weights, integer-valued and > 0.
    opts : EncodeOptions
        ``k`` (the transparent entry included), ``method``, ``init``,
        ``seed``, ``max_iter``, ``tol`` and ``space``, as for
        :func:`quantize_rgba`.

    Returns
    -------
    ndarray of shape (k_used, 4), uint8
        The transparent entry first (when there are alpha 0 colours), then
        every entry some colour takes.

    Examples
    --------
    >>> colors = np.array([[0, 0, 0, 0], [0, 0, 250, 255], [0, 0, 254, 255],
    ...                    [200, 0, 0, 128], [210, 0, 0, 128]], dtype=np.uint8)
    >>> counts = np.array([5.0, 1, 1, 1, 1])
    >>> fit_histogram_rgba(colors, counts, options.EncodeOptions(k=3)).tolist()
    [[0, 0, 0, 0], [205, 0, 0, 128], [0, 0, 252, 255]]
    """
    parts = _Parts.of_histogram(colors, counts)
    if opts.k == 1:
        return _single_entry(parts, opts.method).palette
    return _translucent(parts, opts.k - parts.has_transparent, opts, None).palette


# ------------------------------------------------- large images, from the pixels


def prefetch_kernels(n_pixels: int, opts: options.EncodeOptions) -> None:
    """Start loading the compiled kernels of a large image with an alpha band.

    For a caller that has the image's size and mode but not its pixels yet
    (the command line, between reading a PNG's header and decoding it): an
    image of :data:`_PIXEL_COLD` pixels or more with many translucent pixels
    takes the compiled kernels, and their start-up then overlaps the decoding
    (:func:`kpal._jit.prefetch`). Which path runs is still decided from the
    pixels, and both paths give the same palette and labels.
    """
    if (n_pixels < _PIXEL_COLD or opts.k == 1 or opts.space != "rgb"
            or opts.palette is not None or opts.background is not None):
        return
    _jit.prefetch("kpal.cluster._alpha_fast", "kpal.cluster._kmeans_fast")


def _many_translucent(pixels: np.ndarray) -> bool:
    """Whether the image takes :func:`_premultiplied_pixels` (at least _PIXEL_PATH
    translucent pixels)."""
    alpha = pixels[:, 3]
    n_translucent = pixels.shape[0] - int(np.count_nonzero(alpha == 0)) \
        - int(np.count_nonzero(alpha == _OPAQUE))
    return n_translucent >= _PIXEL_PATH


def _count_colours(pixels: np.ndarray) -> int:
    """Distinct RGBA colours, alpha 0 pixels counted as one (as ``_Parts.n_colors``)."""
    packed = np.ascontiguousarray(pixels).view(np.uint32).reshape(-1)
    visible = packed[pixels[:, 3] != 0]
    if visible.size == 0:
        return 1
    ordered = np.sort(visible)
    return int(visible.size < packed.size) + 1 + int(np.count_nonzero(ordered[1:] != ordered[:-1]))


def _cell_sums(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Pixel count and sums of ``(r·a, g·a, b·a, a)`` of every cell, by cell key,
    and the moment of the pixels (:func:`_label_error`).

    The key of a pixel of alpha ``a`` and colour ``c`` is
    ``((level·32 + r·a // 2040)·32 + g·a // 2040)·32 + b·a // 2040``: cells of
    side 8 of premultiplied colour (``c·a/255``), ``level`` 0 for opaque
    pixels and ``1 + a // 8`` for translucent ones, so opaque cells come first
    and hold only opaque pixels. Alpha 0 pixels are left out. The sums are
    integers below 2**53, exact in float64 whatever the order. The moment is
    the sum over pixels and channels of ``(c·a)² + (c·a - 255·a)²`` (below
    2**63 for any image of up to 2**28 pixels).
    """
    counts = np.zeros(_N_KEYS, dtype=np.int64)
    sums = np.zeros((_N_KEYS, 4), dtype=np.int64)
    moment = 0
    step = 1 << 20
    for start in range(0, pixels.shape[0], step):
        block = pixels[start:start + step]
        block = block[block[:, 3] != 0]
        alpha = block[:, 3].astype(np.int64)
        values = block[:, :3].astype(np.int64) * alpha[:, None]
        level = np.where(alpha == _OPAQUE, 0, 1 + alpha // 8)
        key = level
        for channel in range(3):
            key = key * 32 + values[:, channel] // 2040
        counts += np.bincount(key, minlength=_N_KEYS)
        for channel in range(3):
            sums[:, channel] += np.bincount(key, weights=values[:, channel],
                                            minlength=_N_KEYS).astype(np.int64)
        sums[:, 3] += np.bincount(key, weights=alpha, minlength=_N_KEYS).astype(np.int64)
        white = values - 255 * alpha[:, None]
        moment += int(np.einsum("nc,nc->", values, values)) \
            + int(np.einsum("nc,nc->", white, white))
    return counts, sums, moment


def _label_sums_numpy(pixels: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, ...]:
    """Numpy twin of :func:`kpal.cluster._alpha_fast.label_sums`."""
    from kpal.cluster.remap import _nearest_rgba, _RgbaEntries

    entries = _RgbaEntries(palette)
    k = palette.shape[0]
    labels = _nearest_rgba(pixels.reshape(-1, 1, 4), entries).reshape(-1)
    sums = np.zeros((k, 4), dtype=np.int64)
    counts = np.bincount(labels, minlength=k).astype(np.int64)
    step = 1 << 20
    for start in range(0, pixels.shape[0], step):
        block = pixels[start:start + step]
        chosen = labels[start:start + step].astype(np.intp)
        alpha = block[:, 3].astype(np.int64)
        for channel in range(3):
            sums[:, channel] += np.bincount(chosen, weights=block[:, channel] * alpha,
                                            minlength=k).astype(np.int64)
        sums[:, 3] += np.bincount(chosen, weights=alpha, minlength=k).astype(np.int64)
    return labels, sums, counts


def _label_error(palette: np.ndarray, sums: np.ndarray, counts: np.ndarray,
                 moment: int) -> int:
    """Summed squared composite error of a labelling, in ``c·a`` units, exactly.

    A pixel ``(v, a)`` (``v = c·a``) on entry ``(q, α)`` (``q = c'·α``) scores
    ``Σ (v - q)² + (u - w)²`` over the channels, with ``u = v - 255·a`` and
    ``w = q - 255·α`` (the composites over black and white, as the labelling
    kernels compare them). Summed over the pixels of an entry it is their
    moment ``Σ v² + u²``, less ``2·Σ (q·Σv + w·Σu)``, plus ``n·Σ (q² + w²)``:
    so the per-entry ``sums`` and ``counts`` of the pixels and the moment of
    the image (:func:`_cell_sums`) give it without a pass over the pixels.
    """
    alpha = palette[:, 3].astype(np.int64)
    q = palette[:, :3].astype(np.int64) * alpha[:, None]
    w = q - 255 * alpha[:, None]
    v_sums = sums[:, :3]
    u_sums = v_sums - 255 * sums[:, 3:4]
    cross = int((q * v_sums).sum()) + int((w * u_sums).sum())
    square = int((counts * ((q * q).sum(axis=1) + (w * w).sum(axis=1))).sum())
    return moment - 2 * cross + square


def _premultiplied_pixels(pixels: np.ndarray, k: int, opts: options.EncodeOptions,
                          kernels: ModuleType | None,
                          fast: ModuleType | None) -> Quantization | None:
    """k-means in premultiplied RGBA for images with many translucent pixels.

    The rules of :func:`_premultiplied`, without listing the distinct colours:
    the pixels are gathered into cells (:func:`_cell_sums`), k-means runs on
    the cells' means weighted by their pixel counts, and every pixel takes
    its exact nearest allowed entry
    (:func:`kpal.cluster.remap.remap_rgba`'s rule); then _LARGE_PASSES passes
    move each entry to the mean of its pixels and label again, kept while the
    error falls. The error of a labelling comes from its sums
    (:func:`_label_error`). Returns None when the image has no more than ``k``
    distinct colours (for the lossless path).

    The distinct colours, counted for the result only, are counted by the
    compiled kernel on a thread of their own while the fit runs when numba
    has two threads or more (the count is the same either way).
    """
    rng = np.random.default_rng(opts.seed)
    pool = None
    if fast is not None and fast.threads() > 1:
        pool = ThreadPoolExecutor(1)
        counting = pool.submit(fast.count_colours, pixels)
    try:
        n_colors = None if pool is not None else (
            fast.count_colours(pixels) if fast is not None else _count_colours(pixels))
        if n_colors is not None and n_colors <= k:
            return None
        counts, sums, moment = (fast.cell_sums(pixels, _N_KEYS) if fast is not None
                                else _cell_sums(pixels))
        if pool is not None and np.count_nonzero(counts) <= k:
            n_colors = counting.result()
            if n_colors <= k:
                return None
        return _fit_pixels(pixels, k, opts, kernels, fast, (counts, sums, moment), rng,
                           (lambda: n_colors) if n_colors is not None else counting.result)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)


def _fit_pixels(pixels: np.ndarray, k: int, opts: options.EncodeOptions,
                kernels: ModuleType | None, fast: ModuleType | None,
                cells: tuple[np.ndarray, np.ndarray, int], rng: np.random.Generator,
                n_colors: Callable[[], int]) -> Quantization:
    """:func:`_premultiplied_pixels` from the cells (:func:`_cell_sums`); ``n_colors``
    gives the count of distinct colours once the labels are done."""
    counts, sums, moment = cells
    n = pixels.shape[0]
    has_t, k_free, occupied, n_opaque, points, weights = _cell_points(counts, sums, n, k, opts,
                                                                      rng)
    centres, point_labels, n_iter = _fit_points(points, weights, k_free, opts, rng, kernels)
    opaque_kind = _opaque_kinds(point_labels, weights, n_opaque, k_free)
    opaque_kind = _more_opaque_kinds(opaque_kind, centres, points, weights, point_labels,
                                     n_opaque)
    palette = _palette(centres, opaque_kind, has_t)
    keys = occupied if fast is not None else None
    # The sums first: the labels are needed only if the pass below is not kept.
    labelled = _entry_sums(pixels, palette, fast, keys, (counts[occupied], sums[occupied]))
    error = _label_error(palette, labelled[1], labelled[2], moment)
    for _ in range(min(opts.iterations, _LARGE_PASSES)):
        _, sums, counts = labelled
        filled = counts[has_t:] > 0
        centres = centres.copy()
        mean = sums[has_t:][filled].astype(np.float64) / counts[has_t:][filled, None]
        mean[:, :3] /= 255.0
        centres[filled] = _to_space(mean)
        centres[opaque_kind, 3] = _OPAQUE * _ALPHA_SCALE
        moved = _palette(centres, opaque_kind, has_t)
        if np.array_equal(moved, palette):
            break
        relabelled = _label_sums(pixels, moved, fast, keys)
        moved_error = _label_error(moved, relabelled[1], relabelled[2], moment)
        n_iter += 1
        if moved_error >= error:
            break
        palette, labelled, error = moved, relabelled, moved_error
    if labelled[0] is None:
        labelled = _label_sums(pixels, palette, fast, keys)
    labels, _, counts = labelled
    palette, labels = _used_entries(palette, labels, counts, has_t)
    return Quantization(palette, labels, n_iter, error / _COMPOSITE_UNIT / n, n_colors(),
                        opts.method)


def _cell_points(counts: np.ndarray, sums: np.ndarray, n: int, k: int,
                 opts: options.EncodeOptions, rng: np.random.Generator) -> tuple:
    """The occupied cells of :func:`_cell_sums` as weighted points of the space.

    Returns ``has_t`` (1 when some of the ``n`` pixels are transparent), the
    entries left for the others ``k_free``, the occupied cell keys, how many
    of them are opaque (they come first), the points (cell means, from
    :func:`_to_space`) and their weights (pixel counts, or their binomial
    draw with ``sample``).
    """
    has_t = int(int(counts.sum()) < n)
    k_free = k - has_t
    occupied = np.flatnonzero(counts)
    n_opaque = int(np.searchsorted(occupied, _OPAQUE_KEYS))
    weights = counts[occupied].astype(np.float64)
    means = sums[occupied].astype(np.float64) / weights[:, None]
    means[:, :3] /= 255.0
    points = _to_space(means)
    if opts.sample is not None and opts.sample < 1:
        sampled = rng.binomial(counts[occupied], opts.sample).astype(np.float64)
        if np.count_nonzero(sampled) > k_free:
            weights = sampled
    return has_t, k_free, occupied, n_opaque, points, weights


def _used_entries(palette: np.ndarray, labels: np.ndarray, counts: np.ndarray,
                  has_t: int) -> tuple[np.ndarray, np.ndarray]:
    """The palette without the entries no pixel took (the transparent entry kept),
    and the labels renumbered to it."""
    used = counts > 0
    used[:has_t] = True
    if used.all():
        return palette, labels.astype(np.uint8, copy=False)  # usual: no pass over them
    renumber = (np.cumsum(used, dtype=np.intp) - 1).astype(np.uint8)
    return palette[used], renumber[labels]


def _entry_sums(pixels: np.ndarray, palette: np.ndarray, fast: ModuleType | None,
                keys: np.ndarray | None,
                cells: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray | None, ...]:
    """:func:`_label_sums`, with None for the labels when the compiled path can
    skip them (:func:`kpal.cluster._alpha_fast.entry_sums`, from the counts and
    sums ``cells`` of the cells ``keys``): the same sums and counts either way."""
    if fast is None or keys is None or palette.shape[0] == 1:
        return _label_sums(pixels, palette, fast, keys)
    return (None, *fast.entry_sums(pixels, keys, *cells, *_cell_entries(palette)))


def _cell_entries(palette: np.ndarray) -> tuple:
    """The palette as the cell kernels read it (``_RgbaEntries.arguments``).

    A palette of :func:`_fit_pixels` has the transparent entry whenever the
    image has alpha 0 pixels; without one there are none to label, and entry
    0 stands in for it.
    """
    from kpal.cluster.remap import _RgbaEntries

    q, alpha, opaque, transparent = _RgbaEntries(palette).arguments()
    return q, alpha, opaque, max(transparent, 0)


def _label_sums(pixels: np.ndarray, palette: np.ndarray, fast: ModuleType | None,
                keys: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """Labels of the pixels, and per entry the sums and counts of its pixels.

    The compiled path searches, for each cell of ``keys``, only the entries
    that can be nearest in it; the numpy path every entry once per distinct
    colour. Both find the exact nearest allowed entry, ties to the lowest index.
    """
    if fast is None or palette.shape[0] == 1:
        return _label_sums_numpy(pixels, palette)
    if keys is not None:
        return fast.label_cells(pixels, keys, *_cell_entries(palette))
    from kpal.cluster.remap import _RgbaEntries

    return fast.label_sums(pixels, *_RgbaEntries(palette).arguments())


# ---------------------------------------------------------------- the pixels


class _Parts:
    """The pixels split by kind, with the distinct colours of each kind.

    Opaque pixels go through the RGB histogram (a 2**24 table indexed by
    colour, as for RGB images); translucent ones, usually few, through a sort
    of their packed RGBA values.
    """

    def __init__(self, pixels: np.ndarray, kernels: ModuleType | None = None) -> None:
        self._split(pixels, kernels)
        self.o_pixels = np.ascontiguousarray(pixels[self.opaque, :3])
        hist = kernels.color_histogram(self.o_pixels) if kernels is not None else None
        if hist is None:
            hist = color_histogram(self.o_pixels)
        self.o_colors, self.o_counts = hist.colors, hist.counts
        s = pixels[self.translucent]
        packed = (s[:, 0].astype(np.uint32) << 24) | (s[:, 1].astype(np.uint32) << 16)
        packed |= (s[:, 2].astype(np.uint32) << 8) | s[:, 3]
        unique, self.s_inverse, counts = np.unique(packed, return_inverse=True,
                                                   return_counts=True)
        self.s_inverse = self.s_inverse.reshape(-1)
        self.s_colors = np.stack([(unique >> shift) & 0xFF for shift in (24, 16, 8, 0)],
                                 axis=1).astype(np.uint8)
        self.s_counts = counts.astype(np.int64)
        #: The count of fully transparent pixels (their weight for :meth:`of_histogram`).
        self.t_count = float(np.count_nonzero(self.transparent))

    @classmethod
    def of_histogram(cls, colors: np.ndarray, counts: np.ndarray) -> _Parts:
        """Parts whose "pixels" are the distinct straight RGBA ``colors`` of a
        histogram, weighted by ``counts`` (alpha 0 colours must be (0, 0, 0, 0),
        at most one; colours in ascending ``r, g, b, a`` order, so the opaque
        and translucent ones are each in the order ``__init__`` gives them).
        ``labels`` then gives one label per colour."""
        parts = cls.__new__(cls)
        parts._split(colors, None)
        parts.o_pixels = parts.o_colors = np.ascontiguousarray(colors[parts.opaque, :3])
        parts.o_counts = counts[parts.opaque]
        parts.s_colors = np.ascontiguousarray(colors[parts.translucent])
        parts.s_counts = counts[parts.translucent]
        parts.s_inverse = np.arange(parts.s_colors.shape[0])
        parts.t_count = float(counts[parts.transparent].sum())
        return parts

    @property
    def total(self) -> float:
        """The pixel count: the sum of the weights of every kind."""
        return float(self.o_counts.sum()) + float(self.s_counts.sum()) + self.t_count

    def _split(self, pixels: np.ndarray, kernels: ModuleType | None) -> None:
        """The masks of the three kinds of pixels."""
        self.kernels = kernels
        alpha = pixels[:, 3]
        self.n = pixels.shape[0]
        self.transparent = alpha == 0
        self.opaque = alpha == _OPAQUE
        self.translucent = ~(self.transparent | self.opaque)
        self.has_transparent = int(self.transparent.any())

    @property
    def n_colors(self) -> int:
        return self.has_transparent + self.o_colors.shape[0] + self.s_colors.shape[0]

    def labels(self, transparent_label: int, o_labels: np.ndarray,
               s_labels: np.ndarray) -> np.ndarray:
        """Labels of every pixel from one label per distinct colour of each kind."""
        out = np.empty(self.n, dtype=np.uint8)
        out[self.transparent] = transparent_label
        if self.o_colors.shape[0]:
            if self.kernels is not None:
                out[self.opaque] = self.kernels.map_pixels(self.o_pixels, self.o_colors,
                                                           o_labels.astype(np.uint8))
            else:
                out[self.opaque] = map_pixels(self.o_pixels, self.o_colors,
                                              o_labels.astype(np.uint8))
        if self.s_colors.shape[0]:
            out[self.translucent] = s_labels.astype(np.uint8)[self.s_inverse]
        return out


def _check_pixels(pixels: object) -> None:
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
        dtype = getattr(pixels, "dtype", type(pixels).__name__)
        msg = f"pixels must be a uint8 ndarray, got {dtype}"
        raise KpalError(msg)
    if pixels.ndim != 2 or pixels.shape[1] != 4 or pixels.shape[0] == 0:
        msg = f"pixels must have shape (n_pixels, 4) with n_pixels >= 1, got {pixels.shape}"
        raise KpalError(msg)


def _premultiply(colors: np.ndarray) -> np.ndarray:
    """Premultiplied RGBA in 0..255 units: ``(r·a/255, g·a/255, b·a/255, a)``, float64."""
    out = colors.astype(np.float64)
    out[:, :3] *= out[:, 3:4] / 255.0
    return out


def _to_space(premultiplied: np.ndarray) -> np.ndarray:
    """Coordinates where squared Euclidean distance is the composite error.

    ``(p - a/2, sqrt(3)/2 · a)``: the premultiplied colour over mid-grey and
    the alpha weighted so that ``|y - y'|²`` is the squared error of the
    composite over black plus over white, halved (see the module notes).
    """
    out = premultiplied.copy()
    out[:, :3] -= 0.5 * premultiplied[:, 3:4]
    out[:, 3] *= _ALPHA_SCALE
    return out


def _from_space(points: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_to_space`: premultiplied RGBA in 0..255 units."""
    out = points.copy()
    out[:, 3] /= _ALPHA_SCALE
    out[:, :3] += 0.5 * out[:, 3:4]
    return out


def _composites(colors: np.ndarray) -> np.ndarray:
    """Composites over black and over white, times 255, as exact integers in float64.

    ``(r·a, g·a, b·a, r·a - 255·a, g·a - 255·a, b·a - 255·a)`` (the white
    composite less its constant ``255²``): their squared Euclidean distance is
    ``2 · 255²`` times the composite error of :func:`_to_space`, computed exactly.
    """
    colors = colors.astype(np.float64)
    out = np.empty((colors.shape[0], 6), dtype=np.float64)
    np.multiply(colors[:, :3], colors[:, 3:4], out=out[:, :3])
    np.subtract(out[:, :3], 255.0 * colors[:, 3:4], out=out[:, 3:])
    return out


# ------------------------------------------------------------- simple cases


def _lossless(parts: _Parts, method: str) -> Quantization:
    entries = [np.array([TRANSPARENT], dtype=np.uint8)] if parts.has_transparent else []
    opaque = np.empty((parts.o_colors.shape[0], 4), dtype=np.uint8)
    opaque[:, :3] = parts.o_colors
    opaque[:, 3] = _OPAQUE
    palette = np.concatenate([*entries, opaque, parts.s_colors])
    first_o = parts.has_transparent
    first_s = first_o + opaque.shape[0]
    labels = parts.labels(0, np.arange(first_o, first_s),
                          np.arange(first_s, palette.shape[0]))
    return Quantization(palette, labels, 0, 0.0, parts.n_colors, method)


def _single_entry(parts: _Parts, method: str) -> Quantization:
    """k = 1: the premultiplied mean of every pixel (transparent ones count as zero)."""
    points = np.concatenate([_premultiply(_with_alpha(parts.o_colors)),
                             _premultiply(parts.s_colors)])
    weights = np.concatenate([parts.o_counts, parts.s_counts]).astype(np.float64)
    sums = np.einsum("n,nd->d", weights, points) if points.shape[0] else np.zeros(4)
    centre = sums / parts.total
    kinds = np.array([_OPAQUE if parts.opaque.all() else 1])
    palette = _to_palette(centre[None, :], kinds)
    colours = np.concatenate([_with_alpha(parts.o_colors), parts.s_colors,
                              np.zeros((1, 4), dtype=np.uint8)])
    counts = np.concatenate([parts.o_counts, parts.s_counts, [parts.t_count]])
    error = _squared(_composites(colours), _composites(palette)).sum(axis=1)
    inertia = float(np.einsum("n,n->", counts.astype(np.float64), error)) / _COMPOSITE_UNIT
    return Quantization(palette, np.zeros(parts.n, dtype=np.uint8), 0, inertia / parts.total,
                        parts.n_colors, method)


def _opaque_only(parts: _Parts, k_free: int, opts: options.EncodeOptions) -> Quantization:
    """Alpha 0 and 255 only: quantize the opaque pixels as RGB over the other entries."""
    fit_options = {"method": opts.method, "init": opts.init, "seed": opts.seed,
                   "max_iter": opts.max_iter, "tol": opts.tol, "sample": opts.sample}
    if opts.space == "rgb":
        result = quantize(parts.o_pixels, k_free, **fit_options)
    else:
        from kpal.cluster.perceptual import quantize_perceptual

        result = quantize_perceptual(parts.o_pixels, k_free, space=opts.space, **fit_options)
    entries = [np.array([TRANSPARENT], dtype=np.uint8)] if parts.has_transparent else []
    palette = np.concatenate([*entries, _with_alpha(result.palette)])
    labels = np.empty(parts.n, dtype=np.uint8)
    labels[parts.transparent] = 0
    labels[parts.opaque] = result.labels + parts.has_transparent
    inertia = result.inertia * parts.o_pixels.shape[0] / parts.n
    return Quantization(palette, labels, result.n_iter, inertia, parts.n_colors, opts.method)


def _with_alpha(rgb: np.ndarray) -> np.ndarray:
    out = np.empty((rgb.shape[0], 4), dtype=np.uint8)
    out[:, :3] = rgb
    out[:, 3] = _OPAQUE
    return out


def _other_model(parts: _Parts, k_free: int, opts: options.EncodeOptions,
                 kernels: ModuleType | None) -> Quantization:
    """Translucent pixels with ``space="oklab"`` (:mod:`kpal.cluster.alpha_oklab`)
    or ``method="gmm"`` (:mod:`kpal.cluster.alpha_gmm`), imported only when asked."""
    if opts.space != "rgb":
        from kpal.cluster.alpha_oklab import quantize_translucent
    else:
        from kpal.cluster.alpha_gmm import quantize_translucent
    return quantize_translucent(parts, k_free, opts, kernels)


# ------------------------------------------------------------ the k-means path


def _premultiplied(parts: _Parts, k_free: int, opts: options.EncodeOptions,
                   kernels: ModuleType | None = None) -> Quantization:
    """k-means in premultiplied RGBA with opaque and transparent pixels kept exact."""
    rng = np.random.default_rng(opts.seed)
    colours, points, weights = _colour_points(parts, k_free, opts, rng)
    centres, point_labels, n_iter = _fit_points(points, weights, k_free, opts, rng, kernels)
    opaque_kind = _opaque_kinds(point_labels, weights, colours.n_opaque, k_free)
    opaque_kind = _more_opaque_kinds(opaque_kind, centres, points, weights, point_labels,
                                     colours.n_opaque)
    has_t = parts.has_transparent
    # Passes of Lloyd's algorithm on the exact colours and the rounded palette,
    # under the rules above: label every colour with its nearest allowed entry,
    # move every centre to the mean of its colours, round again. Done when the
    # palette no longer changes or the error falls by less than _PASS_GAIN.
    palette = _palette(centres, opaque_kind, has_t)
    current = _Labelling(colours, palette, point_labels + has_t, kernels=kernels)
    error = _dot(current.distances, weights)
    passes = _MAX_PASSES if points.shape[0] <= _CONVERGE_POINTS else _LARGE_PASSES
    for _ in range(min(opts.iterations, passes)):
        centres, opaque_kind = _moved(centres, opaque_kind, points, weights,
                                      current.labels - has_t, current.distances)
        moved = _palette(centres, opaque_kind, has_t)
        if np.array_equal(moved, palette):
            break
        labelling = _Labelling(colours, moved, current.labels, current, kernels)
        moved_error = _dot(labelling.distances, weights)
        n_iter += 1
        if moved_error >= error:
            break
        palette, current = moved, labelling
        if moved_error > error * (1 - _PASS_GAIN):
            break
        error = moved_error
    return _colour_quantization(parts, colours, palette, current, n_iter, opts.method)


def _colour_points(parts: _Parts, k_free: int, opts: options.EncodeOptions,
                   rng: np.random.Generator) -> tuple[_Colours, np.ndarray, np.ndarray]:
    """The distinct colours of ``parts``, as points of the space, and their weights."""
    colours = _Colours(parts)
    weights = colours.weights
    if opts.sample is not None and opts.sample < 1:
        # Binomial draws per colour: the same distribution as keeping each pixel
        # with probability ``sample``, at the cost of one draw per colour.
        sampled = rng.binomial(weights.astype(np.int64), opts.sample).astype(np.float64)
        if np.count_nonzero(sampled) > k_free:
            weights = sampled
    return colours, _to_space(colours.points), weights


def _colour_quantization(parts: _Parts, colours: _Colours, palette: np.ndarray,
                         labelling: _Labelling, n_iter: int, method: str) -> Quantization:
    """The result of a fit on the distinct colours: entries no colour chose
    (duplicates after rounding, emptied clusters) dropped, the rest renumbered
    in order, every pixel labelled, the mean composite error."""
    labels, has_t = labelling.labels, parts.has_transparent
    used = np.zeros(palette.shape[0], dtype=np.bool_)
    used[:has_t] = True
    used[labels] = True
    renumber = np.cumsum(used, dtype=np.intp) - 1
    n_o = colours.n_opaque
    pixel_labels = parts.labels(0, renumber[labels[:n_o]], renumber[labels[n_o:]])
    error = _dot(labelling.distances, colours.weights) / parts.total
    return Quantization(palette[used], pixel_labels, n_iter, error, parts.n_colors, method)


class _Colours:
    """The distinct opaque and translucent colours, opaque first, with their pixel counts."""

    def __init__(self, parts: _Parts) -> None:
        self.o_colors = parts.o_colors
        self.s_colors = parts.s_colors
        self.n_opaque = parts.o_colors.shape[0]
        self.weights = np.concatenate([parts.o_counts, parts.s_counts]).astype(np.float64)
        #: Composites of the translucent colours (:func:`_composites`), for exact labels.
        self.s_composites = _composites(parts.s_colors)

    @property
    def points(self) -> np.ndarray:
        """Premultiplied colours, ndarray of shape (n, 4), float64."""
        return np.concatenate([_premultiply(_with_alpha(self.o_colors)),
                               _premultiply(self.s_colors)])


def _fit_points(points: np.ndarray, weights: np.ndarray, k: int, opts: options.EncodeOptions,
                rng: np.random.Generator,
                kernels: ModuleType | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Weighted k-means of points, coarse to fine when there are many.

    Many points are first merged into cells (:func:`_cells`); k-means runs on
    the cells, then Lloyd's algorithm on the exact points starts from the
    bounds the cells proved (so only points near a boundary are searched), as
    :func:`kpal.cluster.kmeans.fit_histogram` does for RGB. The initial
    centres are drawn on coarser cells (side ``_DRAW_STEP``) when there are
    many points; for small ``k`` several draws get a few iterations each and
    the best goes on.
    Points of weight 0 (left out of a sample) take no part but get a label.

    Returns the centres, the label of every point and the iterations run.
    """
    max_iter, tol = opts.iterations, opts.tolerance
    cells = None
    if points.shape[0] > _CELL_POINTS:
        cells = _cells(points, weights)
        if not _CELL_FACTOR * k <= cells[0].shape[0] <= _CELL_MERGE * points.shape[0]:
            cells = None
    first_points, first_weights = (points, weights) if cells is None else cells[:2]
    positive = first_weights > 0
    restarts = 1
    if first_points.shape[0] <= _CELL_POINTS and k <= 64:
        restarts = _RESTARTS[0] if k <= 16 else _RESTARTS[1]
    trial_iter = min(max_iter, _TRIAL_ITER) if restarts > 1 else max_iter
    draw_points, draw_weights = first_points[positive], first_weights[positive]
    drawn_on_first = True
    if draw_points.shape[0] > _DRAW_POINTS:
        # The initial draws are made (and compared) on coarser cells: they
        # only choose where the first level starts.
        coarse = _cells(draw_points, draw_weights, _DRAW_STEP)
        if _CELL_FACTOR * k <= coarse[0].shape[0] <= _CELL_MERGE * draw_points.shape[0]:
            draw_points, draw_weights = coarse[:2]
            trial_iter = min(max_iter, _TRIAL_ITER)
            drawn_on_first = False
    best, best_inertia = None, np.inf
    for seed in rng.integers(0, 2**31 - 1, size=restarts).tolist():
        centres = initial_centres(opts.init, draw_points, draw_weights, k,
                                   np.random.default_rng(seed))
        trial = lloyd(draw_points, draw_weights, centres, trial_iter, tol, kernels=kernels)
        inertia = _dot(draw_weights, _squared(draw_points, trial.centres[trial.labels])
                       .sum(axis=1)) if restarts > 1 else 0.0
        if best is None or inertia < best_inertia:
            best, best_inertia = trial, inertia
    n_iter = best.n_iter
    first_iter = max(0, max_iter - n_iter)
    if cells is not None:
        # The exact level and the passes go on from here: the cells only prepare them.
        first_iter = min(first_iter, _CELL_ITER)
    if drawn_on_first:
        # The best draw's bounds hold on this level: go on from them while the
        # draw stopped at its iteration cap, not at convergence.
        state = best
        if best.n_iter >= trial_iter and first_iter:
            state = lloyd(draw_points, draw_weights, best.centres, first_iter, tol,
                          state=best, kernels=kernels)
            n_iter += state.n_iter
    else:
        state = lloyd(first_points[positive], first_weights[positive], best.centres,
                      max(1, first_iter), tol, kernels=kernels)
        n_iter += state.n_iter
    first_labels = np.empty(first_points.shape[0], dtype=np.intp)
    first_labels[positive] = state.labels
    if not positive.all():
        first_labels[~positive] = assign(first_points[~positive], state.centres)[0]
    if cells is None:
        return state.centres, first_labels, n_iter
    means, _, cell_of_point = cells
    exact = weights > 0
    if exact.sum() > _CONVERGE_POINTS:
        # Many exact colours: the passes of _premultiplied polish the cells' fit.
        return state.centres, first_labels[cell_of_point], n_iter
    # A point lies within r = |x - m| of its cell's mean m, so the cell's
    # bounds widened by r hold for the point.
    cell = np.flatnonzero(positive)
    index_of_cell = np.empty(first_points.shape[0], dtype=np.intp)
    index_of_cell[cell] = np.arange(cell.size)
    own = index_of_cell[cell_of_point[exact]]
    radius = np.sqrt(_squared(points[exact], means[cell_of_point[exact]]).sum(axis=1))
    carried = LloydState(state.centres, state.labels[own], state.upper[own] + radius,
                         np.maximum(state.lower[own] - radius, 0.0))
    state = lloyd(points[exact], weights[exact], state.centres, min(max_iter, _EXACT_ITER), tol,
                  state=carried, kernels=kernels)
    labels = first_labels[cell_of_point]
    labels[exact] = state.labels
    return state.centres, labels, n_iter + state.n_iter


def _cells(points: np.ndarray, weights: np.ndarray,
           step: float = _CELL_STEP) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge points into cubic cells of side ``step``: weighted means and weights.

    A cell whose points all weigh 0 (left out of a sample) gets their plain mean.
    """
    index = ((points - points.min(axis=0)) // step).astype(np.int64)
    side = int(index.max()) + 1
    key = ((index[:, 0] * side + index[:, 1]) * side + index[:, 2]) * side + index[:, 3]
    if side**4 <= _DENSE_CELLS:
        # Number the occupied cells in key order through a table (np.unique's order).
        present = np.bincount(key, minlength=side**4) > 0
        number = np.cumsum(present, dtype=np.intp) - 1
        cell_of_point = number[key]
        n_cells = int(number[-1]) + 1
    else:
        _, cell_of_point = np.unique(key, return_inverse=True)
        cell_of_point = cell_of_point.reshape(-1)
        n_cells = int(cell_of_point.max()) + 1
    cell_weights = np.bincount(cell_of_point, weights=weights, minlength=n_cells)
    empty = cell_weights == 0
    mass = np.where(empty[cell_of_point], 1.0, weights)
    means = np.empty((n_cells, 4), dtype=np.float64)
    for channel in range(4):
        means[:, channel] = np.bincount(cell_of_point, weights=mass * points[:, channel],
                                        minlength=n_cells)
    means /= np.bincount(cell_of_point, weights=mass, minlength=n_cells)[:, None]
    return means, cell_weights, cell_of_point


def _opaque_kinds(point_labels: np.ndarray, weights: np.ndarray, n_opaque: int,
                  k: int) -> np.ndarray:
    """Which centres become opaque entries: those whose weight is mostly opaque pixels.

    At least one is opaque when there are opaque pixels, since those may only
    map to opaque entries.
    """
    opaque_weight = np.bincount(point_labels[:n_opaque], weights=weights[:n_opaque],
                                minlength=k)
    other_weight = np.bincount(point_labels[n_opaque:], weights=weights[n_opaque:],
                               minlength=k)
    kinds = (opaque_weight >= other_weight) & (opaque_weight > 0)
    if n_opaque and not kinds.any():
        kinds[int(np.argmax(opaque_weight))] = True
    return kinds


def _more_opaque_kinds(kinds: np.ndarray, centres: np.ndarray, points: np.ndarray,
                       weights: np.ndarray, point_labels: np.ndarray,
                       n_opaque: int) -> np.ndarray:
    """Turn translucent centres opaque while that lowers the estimated error.

    The majority rule of :func:`_opaque_kinds` can leave the opaque pixels very
    few entries when translucent ones outweigh them (a soft vignette at small
    k: one entry for a whole opaque face). Opaque colours of a translucent
    centre must move to the nearest opaque centre; a centre made opaque
    costs its translucent colours their distance to its alpha 255 twin. The
    centre with the largest gain (first one on ties) turns opaque, one at a
    time, while a gain is positive. Points and centres are in the
    coordinates of :func:`_to_space`; sums are numpy's, never BLAS.
    """
    kinds = kinds.copy()
    if not n_opaque or kinds.all():
        return kinds
    k = centres.shape[0]
    top = _OPAQUE * _ALPHA_SCALE
    twins = centres.copy()
    twins[:, 3] = top
    s_points, s_weights, s_labels = points[n_opaque:], weights[n_opaque:], point_labels[n_opaque:]
    # Cost of each centre made opaque, for the translucent colours that chose it.
    flip_cost = np.bincount(s_labels, weights=s_weights * (
        _squared(s_points, twins[s_labels]).sum(axis=1)
        - _squared(s_points, centres[s_labels]).sum(axis=1)), minlength=k)
    # Only the opaque colours of translucent centres ("stranded") have a cost
    # to keep: they are followed alone, in their order, and drop out as their
    # centre turns opaque.
    stranded = np.flatnonzero(~kinds[point_labels[:n_opaque]])
    o_points, o_weights = points[stranded], weights[stranded]
    o_labels = point_labels[stranded]
    own = _squared(o_points, centres[o_labels]).sum(axis=1)
    forced = np.full(stranded.shape[0], np.inf)
    for j in np.flatnonzero(kinds):
        np.minimum(forced, _squared(o_points, twins[j]).sum(axis=1), out=forced)
    for _ in range(k):
        keep_cost = np.bincount(o_labels, weights=o_weights * (forced - own), minlength=k)
        gain = np.where(kinds, -np.inf, keep_cost - flip_cost)
        best = int(np.argmax(gain))
        if not gain[best] > 0:
            break
        kinds[best] = True
        still = o_labels != best
        o_points, o_weights, o_labels = o_points[still], o_weights[still], o_labels[still]
        own, forced = own[still], forced[still]
        np.minimum(forced, _squared(o_points, twins[best]).sum(axis=1), out=forced)
    return kinds


def _palette(centres: np.ndarray, opaque_kind: np.ndarray, has_t: int) -> np.ndarray:
    """The 8-bit straight RGBA palette: the transparent entry (if any), then the centres.

    ``centres`` are in the coordinates of :func:`_to_space`.
    """
    palette = _to_palette(_from_space(centres), np.where(opaque_kind, _OPAQUE, 1))
    if has_t:
        palette = np.concatenate([np.array([TRANSPARENT], dtype=np.uint8), palette])
    return palette


def _to_palette(centres: np.ndarray, min_alpha: np.ndarray) -> np.ndarray:
    """Round premultiplied centres to the nearest 8-bit straight RGBA entries.

    An entry of alpha ``a`` and straight colour ``c`` sits at ``c·a/255`` in
    premultiplied space, so for each candidate alpha (the two integers around
    the centre's, at least ``min_alpha``) the best ``c`` is ``P·255/a``
    rounded; the candidate nearer to the centre (composite error) wins.
    """
    target_alpha = np.clip(centres[:, 3], min_alpha, _OPAQUE)
    best = None
    best_error = None
    for alpha in (np.floor(target_alpha), np.ceil(target_alpha)):
        alpha = np.clip(alpha, np.maximum(min_alpha, 1), _OPAQUE)
        colour = np.clip(np.rint(centres[:, :3] * (255.0 / alpha[:, None])), 0, 255)
        candidate = np.concatenate([colour, alpha[:, None]], axis=1).astype(np.uint8)
        error = _squared(_to_space(_premultiply(candidate)), _to_space(centres)).sum(axis=1)
        if best is None:
            best, best_error = candidate, error
        else:
            better = error < best_error
            best[better] = candidate[better]
            best_error = np.minimum(best_error, error)
    return best


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """``a . b`` with einsum, not BLAS (whose rounding may depend on its thread count)."""
    return float(np.einsum("n,n->", a, b))


def _squared(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    diff = a - b
    return diff * diff


def _squared_to(points: np.ndarray, entries: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``((points - entries[labels]) ** 2).sum(axis=1)``, one column at a time.

    Millions of translucent colours would otherwise need several (n, 6)
    temporaries; column by column needs three vectors. The values are exact
    integers in float64 (composites), so the order of the sum changes nothing.
    """
    out = np.zeros(points.shape[0])
    diff = np.empty(points.shape[0])
    for column in range(points.shape[1]):
        np.take(entries[:, column], labels, out=diff)
        np.subtract(points[:, column], diff, out=diff)
        diff *= diff
        out += diff
    return out


class _Labelling:
    """Labels of the colours for one palette, and what the next palette needs.

    Attributes
    ----------
    labels : ndarray of shape (n_colors,), intp
        Palette index of every colour, opaque colours first.
    distances : ndarray of shape (n_colors,), float64
        Composite error of every colour (as :func:`_to_space` measures it).
    entries : ndarray of shape (k, 6), float64
        The palette's composites (:func:`_composites`).
    reach : ndarray of shape (n_translucent,), float64
        Distance from each translucent colour's composites to its entry's.
    lower : ndarray of shape (n_translucent,), float64
        Lower bound of the distance from each translucent colour's composites
        to every other entry's (Hamerly's bound, carried to the next palette).
    """

    def __init__(self, colours: _Colours, palette: np.ndarray, guess: np.ndarray,
                 previous: _Labelling | None = None,
                 kernels: ModuleType | None = None) -> None:
        n_o = colours.n_opaque
        self.labels = np.empty(colours.weights.shape[0], dtype=np.intp)
        self.distances = np.empty(colours.weights.shape[0], dtype=np.float64)
        self.entries = _composites(palette)
        if n_o:
            opaque_entries = np.flatnonzero(palette[:, 3] == _OPAQUE)
            if kernels is not None and opaque_entries.size > 1:
                # Search from the guess when it is an opaque entry (any hint is exact).
                position = np.full(palette.shape[0], 0, dtype=np.intp)
                position[opaque_entries] = np.arange(opaque_entries.size)
                hint = position[np.minimum(guess[:n_o], palette.shape[0] - 1)]
                nearest, squared = kernels.nearest_palette(colours.o_colors,
                                                           palette[opaque_entries, :3], hint)
            else:
                nearest, squared = nearest_palette_colors(colours.o_colors,
                                                          palette[opaque_entries, :3])
            self.labels[:n_o] = opaque_entries[nearest]
            self.distances[:n_o] = squared
        self.reach = self.lower = np.empty(0)
        if colours.weights.shape[0] > n_o:
            self._translucent(colours, guess[n_o:], previous, kernels)

    def _translucent(self, colours: _Colours, guess: np.ndarray,
                     previous: _Labelling | None, kernels: ModuleType | None) -> None:
        points, entries = colours.s_composites, self.entries
        k = entries.shape[0]
        guess = np.minimum(guess, k - 1)
        if previous is None or previous.entries.shape[0] != k:
            upper = np.sqrt(_squared_to(points, entries, guess))
            lower = np.zeros(points.shape[0])
        else:
            # Triangle inequality: the entry moved at most this far from the
            # colour's previous distance to it, the others at most the largest move.
            shift = np.sqrt(_squared(entries, previous.entries).sum(axis=1))
            upper = previous.reach + shift[guess]
            # Every other entry came at most the largest shift among the others closer.
            top = int(np.argmax(shift))
            runner_up = float(np.max(np.delete(shift, top))) if k > 1 else 0.0
            lower = np.maximum(previous.lower - np.where(guess == top, runner_up, shift[top]),
                               0.0)
        neighbours = Neighbours(entries)
        if kernels is not None and k > 1:
            # Composites are integers below 2**17: every squared distance is
            # exact in float64, so the compiled search gives the same labels.
            found = guess.copy()
            previous_label = np.empty(points.shape[0], dtype=np.int32)
            zeros = np.zeros(k)
            kernels.hamerly_step(points, entries, found, upper, lower, False, zeros, zeros,
                                 zeros, neighbours.half_gap, neighbours.order,
                                 neighbours.sorted_gaps, neighbours.drift, 0.0, _MARGIN,
                                 previous_label)
        else:
            # Closer than half the gap to any other entry, or than the lower
            # bound to them: that entry is strictly the nearest, no search
            # needed. The margin covers float rounding.
            half_gap = neighbours.half_gap[guess]
            settled = upper + _BOUND_MARGIN < np.maximum(half_gap, lower)
            # A settled colour x of entry a is at least |a - c| - |x - a| >= 2·half_gap - upper
            # from any other entry c.
            np.maximum(lower, np.where(settled, 2.0 * half_gap - upper, 0.0), out=lower)
            unsettled = np.flatnonzero(~settled)
            found = guess.copy()
            if unsettled.size:
                found[unsettled], _, second = neighbours.search(
                    points[unsettled], guess[unsettled], upper[unsettled], exact=True)
                lower[unsettled] = second
        squared = _squared_to(points, entries, found)
        n_o = colours.n_opaque
        self.labels[n_o:] = found
        self.distances[n_o:] = squared / _COMPOSITE_UNIT
        self.reach = np.sqrt(squared)
        self.lower = lower


def _moved(centres: np.ndarray, opaque_kind: np.ndarray, points: np.ndarray,
           weights: np.ndarray, labels: np.ndarray,
           distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each centre at the weighted mean of the colours that chose it.

    Centres and points are in the coordinates of :func:`_to_space`, where the
    error is a plain sum of squares: the mean is the best centre, and with its
    alpha held at 255 (opaque entries) the best colour is still the mean of
    the other coordinates. Colours that chose the transparent entry have label
    -1. A centre no colour chose moves onto the colour that adds most to the
    error (as scikit-learn's k-means does) and takes its kind.
    """
    k = centres.shape[0]
    chose = labels >= 0
    labels_in, weights_in, points_in = labels[chose], weights[chose], points[chose]
    mass = np.bincount(labels_in, weights=weights_in, minlength=k)
    moved = centres.copy()
    kinds = opaque_kind.copy()
    filled = mass > 0
    for channel in range(4):
        sums = np.bincount(labels_in, weights=weights_in * points_in[:, channel], minlength=k)
        moved[filled, channel] = sums[filled] / mass[filled]
    empty = np.flatnonzero(~filled)
    if empty.size:
        cost = distances * weights
        worst = np.argsort(-cost, kind="stable")[: empty.size]
        worst = worst[cost[worst] > 0]
        moved[empty[: worst.size]] = points[worst]
        kinds[empty[: worst.size]] = points[worst, 3] == _OPAQUE * _ALPHA_SCALE
        if opaque_kind.any() and not kinds.any():
            # Opaque colours need an opaque entry (possible when a sample left
            # the only opaque cluster without weight).
            kinds[empty[: worst.size]] = opaque_kind[empty[: worst.size]]
    moved[kinds, 3] = _OPAQUE * _ALPHA_SCALE
    return moved, kinds


# ------------------------------------------------------- flattening, metrics


def flatten(pixels: np.ndarray, background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Composite straight RGBA pixels over an opaque colour.

    Parameters
    ----------
    pixels : ndarray of shape (..., 4), uint8
        Straight RGBA, e.g. of shape (height, width, 4).
    background : colour, default white
        Anything ``background=`` takes (:func:`kpal.options.check`): a
        triple, ``#rrggbb``, ``#rgb``, a CSS name or ``r,g,b``.

    Returns
    -------
    ndarray of shape (..., 3), uint8
        ``(c·a + bg·(255 - a)) / 255`` rounded to the nearest integer.

    Examples
    --------
    >>> flatten(np.array([[255, 0, 0, 128]], dtype=np.uint8), (0, 0, 255)).tolist()
    [[128, 0, 127]]
    """
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim < 1 or pixels.shape[-1] != 4:
        msg = f"pixels must be a uint8 array of shape (..., 4), got {pixels.dtype} {pixels.shape}"
        raise KpalError(msg)
    bg = options.check("background", background)
    alpha = pixels[..., 3:4].astype(np.uint32)
    out = pixels[..., :3].astype(np.uint32) * alpha
    out += np.array(bg, dtype=np.uint32) * (255 - alpha)
    # Exact rounding of x / 255 for integers x >= 0: (x + 127) // 255.
    out += 127
    out //= 255
    return out.astype(np.uint8)


def composite_mse(original: np.ndarray, quantized: np.ndarray) -> float:
    """Mean squared error of the composites over black and over white, averaged.

    Parameters
    ----------
    original, quantized : ndarray of shape (..., 4), uint8
        Straight RGBA images of the same shape.

    Returns
    -------
    float
        Mean over pixels and the three colour channels of
        ``(e_black² + e_white²) / 2`` where ``e_black = (c'·a' - c·a) / 255``
        and ``e_white = e_black - (a' - a)``, without rounding the composites.
        Its PSNR (``10·log10(255² / mse)``) is the transparency benchmark's quality.
    """
    if original.shape != quantized.shape or original.shape[-1] != 4:
        msg = f"images must be RGBA of the same shape, got {original.shape} and {quantized.shape}"
        raise KpalError(msg)
    a = original.reshape(-1, 4)
    b = quantized.reshape(-1, 4)
    total = 0.0
    step = 1 << 20
    for start in range(0, a.shape[0], step):
        x = a[start : start + step].astype(np.float64)
        y = b[start : start + step].astype(np.float64)
        black = (y[:, :3] * y[:, 3:4] - x[:, :3] * x[:, 3:4]) / 255.0
        white = black - (y[:, 3:4] - x[:, 3:4])
        total += float(np.einsum("nc,nc->", black, black) + np.einsum("nc,nc->", white, white))
    return total / (2 * 3 * a.shape[0])
