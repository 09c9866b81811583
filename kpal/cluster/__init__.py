"""Colour quantization: choose a palette of at most ``k`` colours for some pixels.

:func:`quantize` is the single entry point the codec uses. It builds the
histogram of distinct colours, clusters it (k-means or a Gaussian mixture),
rounds the centres to a uint8 palette and labels every pixel with its nearest
palette colour through a lookup table over the distinct colours.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from kpal import _jit, options
from kpal.cluster.histogram import ColorHistogram, color_histogram, map_pixels
from kpal.cluster.kmeans import KMeans, fit_histogram, nearest_palette_colors
from kpal.errors import KpalError, silenced, warn

__all__ = ["METHODS", "HistogramFit", "KMeans", "Quantization", "fit_histogram_palette",
           "load_compiled", "quantize"]

#: Names accepted by ``method=``.
METHODS = options.METHODS

#: In a process where numba is not loaded yet, the compiled k-means kernels are
#: used from this many pixels on for k <= :data:`COLD_SMALL_K`: starting numba
#: and loading its cached kernels (about 1 s) costs as much as they save at
#: k = 16 below about 12 MP, file to file (bench/bench_speed.py). Once numba is
#: loaded (a batch worker, a library user, the compiled entropy coder) they are
#: used for every image from :data:`COMPILED_WARM_PIXELS` on.
COMPILED_COLD_PIXELS = 12 << 20
#: The same for k > :data:`COLD_SMALL_K`: Lloyd's iterations cost more per
#: pixel there, so the compiled path pays off from about 5 MP at k = 256.
COMPILED_COLD_PIXELS_LARGE_K = 5 << 20
#: Largest k that uses :data:`COMPILED_COLD_PIXELS`.
COLD_SMALL_K = 32
#: With numba already loaded the compiled kernels win at every size (0.34 MP
#: photos at k = 64: 0.17 s of CPU each against 0.45 s in numpy, bench/bench_batch.py).
COMPILED_WARM_PIXELS = 0


def prefetch_kernels(n_pixels: int, opts: options.EncodeOptions) -> None:
    """Start loading the compiled k-means for an RGB image whose pixels are not decoded yet.

    For a caller that has the image's size but not its pixels (the command
    line, from a JPEG's or PNG's header): when :func:`quantize` will take
    the compiled kernels (:func:`compiled_cold_pixels`), numba's start-up
    then overlaps the decoding (:func:`kpal._jit.prefetch`). Only a fit of
    a given k in RGB: the targets, a given palette and the perceptual spaces
    decide their kernels on their own terms.
    """
    if (opts.k is None or opts.space != "rgb" or opts.palette is not None
            or opts.quality is not None or opts.max_size is not None
            or n_pixels < compiled_cold_pixels(opts.k)):
        return
    _jit.prefetch("kpal.cluster._kmeans_fast")

def compiled_cold_pixels(k: int) -> int:
    """Smallest image that takes the compiled k-means in a process without numba yet.

    Parameters
    ----------
    k : int
        Palette size.

    Returns
    -------
    int
        :data:`COMPILED_COLD_PIXELS` for ``k <= COLD_SMALL_K``, else
        :data:`COMPILED_COLD_PIXELS_LARGE_K`.
    """
    return COMPILED_COLD_PIXELS if k <= COLD_SMALL_K else COMPILED_COLD_PIXELS_LARGE_K


def load_compiled() -> bool:
    """Load the compiled k-means kernels now, for a process that will encode many images.

    A fresh process only starts numba for large images (see
    :func:`compiled_cold_pixels`): about 1 s of start-up that one small image
    never wins back. A long-lived process (a batch worker, a Dask task's
    worker) pays it once here; every image it then quantizes, whatever its
    size, takes the compiled path, whose output is the same. A small run
    through :func:`quantize` loads the cached machine code of each kernel, so
    the first real image does not pay for that either.

    Returns
    -------
    bool
        True when the compiled kernels are loaded; False without numba or
        with ``KPAL_PURE_NUMPY=1`` (the numpy path then serves every image).
    """
    if _jit.load("kpal.cluster._kmeans_fast", COMPILED_COLD_PIXELS_LARGE_K + COMPILED_COLD_PIXELS,
                 min_pixels=COMPILED_WARM_PIXELS) is None:
        return False
    # Enough distinct colours for the coarse levels and several trial draws:
    # every kernel with each argument type a photo gives it.
    rng = np.random.default_rng(0)
    centres = rng.integers(16, 240, size=(64, 3))
    noise = rng.normal(0.0, 8.0, size=(1 << 16, 3))
    pixels = np.clip(centres[rng.integers(0, 64, 1 << 16)] + noise, 0, 255).astype(np.uint8)
    # Per thread: the process's warning filters are not this warm-up's to change
    # (other threads, a Dask worker's other tasks, keep theirs).
    with silenced():
        quantize(pixels, 16)
        quantize(pixels[:4], 2)
    return True


@dataclass(frozen=True)
class Quantization:
    """The result of :func:`quantize`.

    Attributes
    ----------
    palette : ndarray of shape (k_used, 3), uint8
        Palette colours, every one used by at least one pixel; ``k_used <= k``.
    labels : ndarray of shape (n_pixels,), uint8
        Palette index of every pixel.
    n_iter : int
        Iterations run by the clustering (0 when the image was kept exactly).
    inertia : float
        Mean over pixels of the squared RGB distance between each pixel and
        its palette colour (the mean squared error summed over channels).
    n_colors : int
        Number of distinct colours in the input.
    method : str
        ``"kmeans"`` or ``"gmm"``.
    """

    palette: np.ndarray
    labels: np.ndarray
    n_iter: int
    inertia: float
    n_colors: int
    method: str

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield the palette, then the labels: ``palette, labels = quantize(...)``."""
        yield self.palette
        yield self.labels

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> np.ndarray:
        """``result[0]`` is the palette and ``result[1]`` the labels, as a pair would give."""
        return (self.palette, self.labels)[index]


def quantize(
    pixels: np.ndarray,
    k: int,
    *,
    method: str = "kmeans",
    init: str = "k-means++",
    seed: int = 0,
    max_iter: int | None = None,
    tol: float | None = None,
    sample: float | None = None,
) -> Quantization:
    """Choose at most ``k`` colours for ``pixels`` and label every pixel.

    Parameters
    ----------
    pixels : ndarray of shape (n_pixels, 3), uint8
        RGB pixels.
    k : int
        Palette size, 1..256.
    method : {"kmeans", "gmm"}, default "kmeans"
        k-means (Lloyd's algorithm) or a Gaussian mixture fitted by EM.
    init : {"k-means++", "random"}, default "k-means++"
        How the clustering starts.
    seed : int, default 0
        Seed of every random choice: same input and seed, same result.
    max_iter : int, optional
        Maximum iterations of the clustering (default: 300 for k-means, at
        each of its coarse-to-fine levels; 100 for EM).
    tol : float, optional
        Convergence tolerance (k-means: relative centre shift, default 1e-4;
        GMM: gain in mean log-likelihood, default 1e-3).
    sample : float in (0, 1], optional
        Fit on this random fraction of the pixels, then label all of them.

    Returns
    -------
    Quantization
        Unpacks as ``palette, labels``.

    Warns
    -----
    KpalWarning
        When the pixels hold ``k`` or fewer distinct colours: the palette is
        then exactly those colours and the result is lossless.

    Examples
    --------
    >>> pixels = np.array([[0, 0, 0], [0, 0, 2], [250, 250, 250]], dtype=np.uint8)
    >>> palette, labels = quantize(pixels, 2)
    >>> palette[labels].tolist()
    [[0, 0, 1], [0, 0, 1], [250, 250, 250]]
    """
    _check_pixels(pixels)
    options.SPECS["k"].checker(k)  # required here: None is not "the default"
    # The options module holds every range and message, for all of kpal.
    opts = options.EncodeOptions(k=k, method=method, init=init, seed=seed, max_iter=max_iter,
                                 tol=tol, sample=sample)
    # Normalized values from here on ("8" -> 8, as everywhere options are checked).
    k, method, seed, sample = opts.k, opts.method, opts.seed, opts.sample
    # Compiled loops for large images when kpal[fast] is installed: the same output.
    kernels = _jit.load("kpal.cluster._kmeans_fast", pixels.shape[0],
                        min_pixels=COMPILED_WARM_PIXELS,
                        cold_min_pixels=compiled_cold_pixels(k))
    hist = kernels.color_histogram(pixels) if kernels is not None else None
    if hist is None:
        hist = color_histogram(pixels)
    if method == "kmeans":
        # Float64 counts (exact integers below 2**53): the clustering's weights and
        # the inertia's are this one array instead of two copies (8 bytes a colour).
        hist = ColorHistogram(hist.colors, hist.counts.astype(np.float64))
    n_colors = len(hist)
    if n_colors <= k:
        warn(
            f"the image has {n_colors} distinct colour{'' if n_colors == 1 else 's'}, "
            f"no more than k={k}: "
            "the palette holds exactly those colours (lossless)")
        labels = _map(kernels, pixels, hist.colors, np.arange(n_colors, dtype=np.uint8))
        return Quantization(hist.colors, labels, 0, 0.0, n_colors, method)
    rng = np.random.default_rng(seed)
    fit_hist = hist
    if sample is not None and sample < 1:
        fit_hist = _sample_histogram(pixels, sample, rng)
        if len(fit_hist) <= k:
            fit_hist = hist
    fit = fit_histogram_palette(hist, opts, rng, fit_hist, kernels)
    del fit_hist
    labels = _map(kernels, pixels, hist.colors, fit.values)
    # einsum, not BLAS (in fit.error): reported figures must not depend on the thread count.
    return Quantization(fit.palette, labels, fit.n_iter, fit.error / pixels.shape[0], n_colors,
                        method)


@dataclass
class HistogramFit:
    """A palette fitted to a histogram, and the entry of each of its colours.

    Attributes
    ----------
    palette : ndarray of shape (k_used, 3), uint8
        Every entry is the entry of at least one colour.
    values : ndarray of shape (n_colors,), uint8
        Palette index of each colour of the histogram.
    n_iter : int
        Iterations run by the clustering.
    error : float
        Sum over the colours of count times the squared RGB distance to the entry.
    """

    palette: np.ndarray
    values: np.ndarray
    n_iter: int
    error: float


def fit_histogram_palette(hist: ColorHistogram, opts: options.EncodeOptions,
                          rng: np.random.Generator, fit_hist: ColorHistogram | None = None,
                          kernels: ModuleType | None = None) -> HistogramFit:
    """The steps of :func:`quantize` between the histogram and the pixel labels.

    Clusters ``fit_hist`` (default ``hist``) into ``opts.k`` colours with
    ``opts.method``, rounds the centres to a palette, gives every colour of
    ``hist`` its entry (the nearest, for both methods), and drops the entries no colour
    chose (duplicates after rounding, clusters of sampled-out colours),
    renumbering the rest in order.

    Parameters
    ----------
    hist : ColorHistogram
        More than ``opts.k`` distinct colours; float64 counts for k-means.
    opts : kpal.options.EncodeOptions
    rng : numpy.random.Generator
        The k-means draws (a Gaussian mixture uses ``opts.seed``).
    fit_hist : ColorHistogram, optional
        A sample of ``hist`` to fit on, with more than ``opts.k`` colours.
    kernels : module, optional
        ``kpal.cluster._kmeans_fast``: the same result by compiled loops.

    Returns
    -------
    HistogramFit
    """
    k = opts.k
    fit_hist = hist if fit_hist is None else fit_hist
    if opts.method == "kmeans":
        state = fit_histogram(
            fit_hist.colors, fit_hist.counts, k, init=opts.init, rng=rng,
            max_iter=opts.iterations, tol=opts.tolerance, polish=fit_hist is not hist,
            kernels=kernels,
        )
        n_iter = state.n_iter
        palette = _to_palette(state.centres)
        if kernels is not None:
            # The compiled search starts from the labels alone: the bounds (16 bytes
            # a colour) go before its results are allocated.
            state.upper = state.lower = None
        color_labels, distances = nearest_palette_colors(
            hist.colors, palette, state if fit_hist is hist else None, kernels
        )
        del state  # labels and bounds of every colour: not needed any more
    else:
        centres, gmm_labels, n_iter = _fit_gmm(
            fit_hist.colors, fit_hist.counts, k, opts.seed, opts.iterations, opts.tolerance,
            opts.init
        )
        palette = _to_palette(centres)
        # Every colour takes its nearest entry, as with k-means and as the RGBA
        # mixture does: the most probable component is not the nearest mean when
        # components differ in spread (one sitting on a single colour is so
        # narrow that the colour next to it goes to a broad one far away), which
        # cost astronaut 15 dB at k = 256.
        del gmm_labels
        color_labels, distances = nearest_palette_colors(hist.colors, palette,
                                                         kernels=kernels)
    used = np.bincount(color_labels, minlength=palette.shape[0]) > 0
    renumber = np.cumsum(used, dtype=np.intp) - 1
    values = renumber.astype(np.uint8)[color_labels]  # unused entries (-1) are never read
    error = float(np.einsum("n,n->", distances, hist.counts.astype(np.float64, copy=False)))
    return HistogramFit(palette[used], values, n_iter, error)


def _map(kernels, pixels: np.ndarray, colors: np.ndarray, values: np.ndarray) -> np.ndarray:
    """:func:`map_pixels`, compiled when ``kernels`` is given."""
    if kernels is not None:
        return kernels.map_pixels(pixels, colors, values)
    return map_pixels(pixels, colors, values)


def _check_pixels(pixels: object) -> None:
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
        dtype = getattr(pixels, "dtype", type(pixels).__name__)
        msg = f"pixels must be a uint8 ndarray, got {dtype}"
        raise KpalError(msg)
    if pixels.ndim != 2 or pixels.shape[1] != 3 or pixels.shape[0] == 0:
        msg = f"pixels must have shape (n_pixels, 3) with n_pixels >= 1, got {pixels.shape}"
        raise KpalError(msg)


def _to_palette(centres: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(centres), 0, 255).astype(np.uint8)


def _sample_histogram(
    pixels: np.ndarray, fraction: float, rng: np.random.Generator
) -> ColorHistogram:
    """Histogram of a random ``fraction`` of the pixels: each pixel kept with that probability.

    A Bernoulli draw per pixel (float32 uniforms, in pixel order) costs a third
    of drawing an exact count without replacement on 12 MP, and needs no sort.
    """
    n = pixels.shape[0]
    chosen = np.flatnonzero(rng.random(n, dtype=np.float32) < fraction)
    if chosen.size == 0:  # a tiny image and a tiny fraction: keep one pixel
        chosen = rng.integers(0, n, size=1)
    return color_histogram(pixels[chosen])


def _fit_gmm(
    colors: np.ndarray, counts: np.ndarray, k: int, seed: int, max_iter: int, tol: float,
    init: str,
) -> tuple[np.ndarray, np.ndarray, int]:
    try:
        from kpal.cluster.gmm import quantize_histogram
    except ImportError as error:
        msg = f"method='gmm' is not available: {error}"
        raise KpalError(msg) from error
    means, color_labels, n_iter = quantize_histogram(
        colors, counts, k, seed=seed, max_iter=max_iter, tol=tol, init=init
    )
    return means, np.asarray(color_labels, dtype=np.intp), int(n_iter)
