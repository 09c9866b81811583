"""Choose the palette size ``k`` for the user: from a quality target or a file size.

A user rarely knows which ``k`` they want; they know how good the image must
look (PSNR, the figure the encode report prints) or how large the file may be.
:func:`choose_k` searches ``k`` and returns the palette, the labels and every
``(k, PSNR, size)`` point it measured.

Targets
-------
``quality=(min_db, max_db)``
    The smallest ``k`` in 2..256 whose PSNR reaches ``max_db``; when even
    the largest allowed ``k`` does not, that ``k`` if it reaches ``min_db``,
    else :class:`QualityError` (the command line exits with status 99 and
    writes nothing, as pngquant does).
``max_size=BYTES``
    The largest ``k`` in 1..256 whose complete file (26-byte header, ``3k``
    palette bytes, payload, 4-byte CRC) with the chosen coding fits in
    ``BYTES``; :class:`SizeError` (a :class:`QualityError`) when not even
    ``k = 1`` fits. With the ``fixed`` and ``radix`` codings the size follows
    from ``k`` alone: no search, one fit, exactly the palette
    ``quantize(pixels, k)`` gives. With ``entropy`` candidates are coded and
    measured (see below).
Both
    ``max_size`` caps the ``k`` the quality search may use.

How the search stays cheap
--------------------------
The colour histogram is built once. Photos with more than ``_COLD_COLORS``
distinct colours are clustered on their histogram reduced to cells of 4
levels per channel (each cell the rounded weighted mean of its colours:
about 10 k points for 0.25 MP, 40 k for 12 MP), which costs 0.03-0.2 dB of
PSNR against a fit on every colour at the same ``k``. The first fit is
:func:`kpal.cluster.quantize`'s coarse-to-fine fit; each later one starts
from the centres of the nearest ``k`` already fitted (new centres drawn by
greedy k-means++, surplus ones merged by Ward's criterion) and needs few
Lloyd iterations.

Two layers decide which ``k`` to try. *Estimates* are cheap: the PSNR of a
fit on the reduced histogram (its points' error plus the exact spread of the
colours about them), or for sizes the order-0 entropy of its labels times
the coded-to-entropy ratio last measured. A secant search on the estimates
against ``log2 k`` proposes the boundary ``k``; that ``k`` is *measured*
exactly (the exact nearest palette colour of every distinct colour, weighted
by its pixel count: the PSNR the encode report prints; for sizes, the coded
file), the gap between estimate and measure corrects the next estimates, and
the loop stops when two neighbouring ``k`` are measured on both sides of the
target: typically two or three measured candidates. :attr:`Choice.curve`
holds the measured points only.

Small images (at most ``_COLD_COLORS`` distinct colours) are measured for
every candidate, each fitted on the exact histogram from scratch: each
candidate's palette is then exactly the one ``quantize(pixels, k)`` gives.

"Smallest" and "largest" assume that PSNR grows and size does not shrink
with ``k``. k-means is a local search, so the PSNR curve has small wiggles
(a few hundredths of a dB); the search guarantees that the chosen ``k``
meets the target and that ``k - 1`` (quality) or ``k + 1`` (size), when in
range, was measured and does not. Both are measured on the search's fits: for
a large photo those on the reduced histogram, 0.03-0.2 dB below a full fit of
the same ``k`` (``quantize(pixels, k)``), which may then reach the target at
``k - 1`` too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from kpal import coding as codings
from kpal import container, options
from kpal.cluster.histogram import (
    ColorHistogram,
    color_histogram,
    map_pixels,
    pack_rgb,
    reduce_histogram,
    unpack_rgb,
)
from kpal.cluster.init import squared_distances
from kpal.cluster.kmeans import (
    LloydState,
    fit_histogram,
    lloyd,
    nearest_palette_colors,
    start_state,
)
from kpal.cluster.nearest import assign
from kpal.errors import KpalError, OptionError, silenced
from kpal.metrics import psnr_from_mse

__all__ = ["Choice", "CurvePoint", "QualityError", "SizeError", "choose_k", "choose_k_rgba",
           "file_size", "measure_curve"]

#: Histograms up to this many colours are fitted exactly, from scratch, per candidate.
_COLD_COLORS = 20_000
#: Bits per channel of the reduced histogram the search fits larger images on.
_SEARCH_BITS = 6
#: The first candidate of a quality search, and of an entropy-size search.
_FIRST_K = 16
#: PSNR gain per doubling of k assumed before two points are measured (photos: 2-3 dB).
_DB_PER_DOUBLING = 2.7
#: Exact PSNR minus estimate, per colour of k, assumed until one k is measured (dB).
_ESTIMATE_GAIN = 0.15 / 256
#: Estimates are searched to within this fraction of k (their accuracy, about 0.05 dB).
_ESTIMATE_SLACK = 1 / 32
#: Coded entropy payload over the labels' order-0 entropy, assumed until one is coded:
#: ``_ENTROPY_RATIO + _ENTROPY_RATIO_SLOPE * log2 k`` (0.26 at k = 4, 0.44 at k = 256).
_ENTROPY_RATIO = 0.2
_ENTROPY_RATIO_SLOPE = 0.03


class QualityError(KpalError):
    """The quality target cannot be reached: even the largest allowed ``k`` is below MIN.

    The command line maps it to exit status 99 and writes no file.
    """


class SizeError(QualityError):
    """The size limit cannot be met: even a one-colour file is larger (exit status 99)."""


class CurvePoint(NamedTuple):
    """One measured candidate.

    Attributes
    ----------
    k : int
        The palette size asked for (the palette may hold fewer colours when
        rounding merged two centres or the image has fewer colours).
    psnr : float or None
        Exact PSNR in dB of the image mapped through that palette (``inf``
        when lossless); ``None`` for a size-only point that was not fitted.
    size : int or None
        Bytes of the complete file with the search's coding; ``None`` when
        not measured (entropy coding, quality search, not the chosen ``k``).
    """

    k: int
    psnr: float | None
    size: int | None


@dataclass(frozen=True)
class Choice:
    """What :func:`choose_k` chose and measured.

    Attributes
    ----------
    k : int
        The chosen palette size.
    palette : ndarray of shape (k_used, 3), uint8
        ``k_used <= k``: entries no colour chose are dropped, as
        :func:`kpal.cluster.quantize` does.
    labels : ndarray of shape (height, width) or (n_pixels,), uint8
        Palette index of every pixel (the shape of the pixels given).
    psnr : float
        Exact PSNR of ``palette[labels]`` against the pixels, in dB.
    mse : float
        Mean squared error per channel value (``inertia = 3 * mse`` in
        :class:`kpal.codec.Encoded` terms).
    size : int
        Bytes of the complete ``.kpal`` file with ``coding``.
    coding : str
    curve : tuple of CurvePoint
        Every candidate measured, sorted by ``k``.
    n_colors : int
        Distinct colours in the pixels.
    payload : bytes or None
        The labels already coded with ``coding`` (``palette.shape[0]``
        colours), when the search had to code them to measure the size
        (``entropy``): the file is then ``container.write`` of it, with no
        second coding. ``None`` otherwise.
    """

    k: int
    palette: np.ndarray
    labels: np.ndarray
    psnr: float
    mse: float
    size: int
    coding: str
    curve: tuple[CurvePoint, ...]
    n_colors: int
    payload: bytes | None = None

    def neighbours(self) -> tuple[CurvePoint | None, CurvePoint | None]:
        """The measured points just below and just above the chosen ``k`` (or ``None``)."""
        below = [p for p in self.curve if p.k < self.k]
        above = [p for p in self.curve if p.k > self.k]
        return (below[-1] if below else None, above[0] if above else None)


def file_size(k: int, width: int, height: int, coding: str = "fixed",
              labels: np.ndarray | None = None, *, metadata_bytes: int = 0) -> int:
    """Bytes of a complete ``.kpal`` file: header, ``3k`` palette, payload and CRC.

    ``labels`` (shape (height, width), uint8) are needed only for codings
    whose payload length depends on the data (``entropy``). ``metadata_bytes``
    is the length of the file's metadata blocks (an ICC profile's, as
    :func:`kpal.container.pack_metadata` packs it): a file with some is a
    version 2 file, whose header is 5 bytes longer.
    """
    chosen = codings.get(coding)
    payload = chosen.payload_size(k, width, height)
    if payload is None:
        if labels is None:
            msg = f"the size of a {coding!r} payload depends on the labels: pass them"
            raise ValueError(msg)
        payload = len(chosen.encode(labels.reshape(height, width), k))
    return overhead(metadata_bytes) + 3 * k + payload


def overhead(metadata_bytes: int = 0, alpha: bool = False) -> int:
    """Bytes of a file beyond its palette and payload: header, metadata blocks and CRC.

    A version 1 file (30 bytes) unless it has metadata or an RGBA palette.
    """
    if metadata_bytes or alpha:
        return container.OVERHEAD_V2 + metadata_bytes
    return container.OVERHEAD


@dataclass
class _Candidate:
    k: int
    palette: np.ndarray  # uint8 (k_used, 3)
    color_labels: np.ndarray  # uint8 (n_colors,), into palette
    mse: float
    size: int | None
    payload: bytes | None = None  # coded labels, kept when the size needed them

    @property
    def psnr(self) -> float:
        return psnr_from_mse(self.mse)


class _Search:
    """Fits and measures candidates on one image's histogram (see the module docstring).

    ``estimate(k)`` is the PSNR of the fit on the reduced histogram (every
    colour counted at its cell's point, plus the exact spread of the colours
    about those points): cheap, within about 0.1 dB of ``measure(k).psnr``,
    which is exact. Each ``k`` is fitted once and serves both.
    """

    def __init__(self, pixels: np.ndarray, shape: tuple[int, int], coding: str,
                 opts: options.EncodeOptions, reduce: bool = True, metadata_bytes: int = 0
                 ) -> None:
        self.pixels = pixels
        self.height, self.width = shape
        self.coding = coding
        self.metadata_bytes = metadata_bytes
        self.overhead = overhead(metadata_bytes)
        self.opts = opts
        self.fast = _fast_kernels(pixels.shape[0])
        kernels = self.fast.get("kernels")
        hist = kernels.color_histogram(pixels) if kernels is not None else None
        self.hist: ColorHistogram = hist if hist is not None else color_histogram(pixels)
        self.n_pixels = pixels.shape[0]
        # One candidate only (reduce=False), or few colours: fit as quantize does.
        self.cold = not reduce or len(self.hist) <= _COLD_COLORS
        self.rng = np.random.default_rng(opts.seed)
        self.done: dict[int, _Candidate] = {}
        self.fits: dict[int, LloydState] = {}
        self.estimates: dict[int, float] = {}
        self.size_needs_labels = codings.get(coding).payload_size(1, 1, 1) is None
        if not self.cold:
            means, weights, cell_of_color = reduce_histogram(
                self.hist.colors, self.hist.counts, _SEARCH_BITS)
            rounded = pack_rgb(np.clip(np.rint(means), 0, 255).astype(np.uint8))
            packed, inverse = np.unique(rounded, return_inverse=True)
            self.colors = unpack_rgb(packed)
            self.counts = np.bincount(inverse, weights=weights)
            self.points = self.colors.astype(np.float64)
            # Each exact colour's reduced point, and how far it lies from it:
            # the reduced fit's bounds widened by that distance hold for the
            # colour, so the exact search skips most colours.
            self.point_of_color = inverse.reshape(-1)[cell_of_color]
            diff = (self.hist.colors - self.points[self.point_of_color]).astype(np.float64)
            squared = np.einsum("nd,nd->n", diff, diff)
            self.radius = np.sqrt(squared)
            self.spread = float(np.einsum("n,n->", squared, self.hist.counts.astype(np.float64)))

    @property
    def n_colors(self) -> int:
        return len(self.hist)

    def estimate(self, k: int) -> float:
        """PSNR of the ``k`` fit estimated on the reduced histogram (exact when cold)."""
        if self.cold or self.n_colors <= k:
            return self.measure(k, with_size=False).psnr
        if k not in self.estimates:
            # Lloyd's labels match its centres: no search needed for the estimate.
            state = self._fit_reduced(k)
            diff = self.points - state.centres[state.labels]
            error = float(np.einsum("nd,nd,n->", diff, diff, self.counts)) + self.spread
            self.estimates[k] = psnr_from_mse(error / (3 * self.n_pixels))
        return self.estimates[k]

    def label_bits(self, k: int) -> float:
        """Order-0 entropy of the labels at ``k``, times the pixel count, in bits.

        Exact for a small image, else from the fit on the reduced histogram
        (for every ``k``, so that ratios to coded sizes compare like with like).
        """
        if self.cold or self.n_colors <= k:
            candidate = self.measure(k, with_size=False)
            mass = np.bincount(candidate.color_labels, weights=self.hist.counts)
        else:
            state = self._fit_reduced(k)
            mass = np.bincount(state.labels, weights=self.counts)
        mass = mass[mass > 0]
        return float(-np.einsum("n,n->", mass, np.log2(mass / self.n_pixels)))

    def measure(self, k: int, with_size: bool) -> _Candidate:
        """Fit ``k`` colours (once) and measure PSNR exactly; the size when asked."""
        candidate = self.done.get(k)
        if candidate is None:
            candidate = self._measure(k)
            self.done[k] = candidate
        if with_size and candidate.size is None:
            k_used = candidate.palette.shape[0]
            if self.size_needs_labels:
                candidate.payload = codings.get(self.coding).encode(self.labels(candidate),
                                                                    k_used)
                candidate.size = self.overhead + 3 * k_used + len(candidate.payload)
            else:
                candidate.size = file_size(k_used, self.width, self.height, self.coding,
                                           metadata_bytes=self.metadata_bytes)
        return candidate

    def labels(self, candidate: _Candidate) -> np.ndarray:
        kernels = self.fast.get("kernels")
        mapper = kernels.map_pixels if kernels is not None else map_pixels
        out = mapper(self.pixels, self.hist.colors, candidate.color_labels)
        return out.reshape(self.height, self.width)

    def measure_cold(self, k: int) -> _Candidate:
        """Fit ``k`` colours as ``kpal encode -k`` does (not from a warm start) and measure it."""
        return self._measure(k, cold=True)

    def _measure(self, k: int, cold: bool = False) -> _Candidate:
        hist = self.hist
        if self.n_colors <= k:  # lossless, as quantize: the colours themselves
            labels = np.arange(self.n_colors, dtype=np.uint8)
            return _Candidate(k, hist.colors, labels, 0.0, None)
        if self.cold or cold:
            # Exactly quantize's fit: same histogram, same seed, fresh generator.
            state = fit_histogram(hist.colors, hist.counts, k, init=self.opts.init,
                                  rng=np.random.default_rng(self.opts.seed),
                                  max_iter=self.opts.iterations, tol=self.opts.tolerance,
                                  **self.fast)
            palette = _rounded(state.centres)
            color_labels, distances = nearest_palette_colors(hist.colors, palette, state,
                                                             **self.fast)
        else:
            state = self._fit_reduced(k)
            palette = _rounded(state.centres)
            color_labels, distances = nearest_palette_colors(hist.colors, palette,
                                                             self._carried(state), **self.fast)
        used = np.bincount(color_labels, minlength=palette.shape[0]) > 0
        renumber = (np.cumsum(used) - 1).astype(np.uint8)
        mse = float(np.einsum("n,n->", distances, hist.counts.astype(np.float64)))
        mse /= 3 * self.n_pixels
        return _Candidate(k, palette[used], renumber[color_labels], mse, None)

    def _carried(self, state: LloydState) -> LloydState:
        """Bounds of the reduced fit carried to the exact colours (as the coarse-to-fine fit)."""
        point = self.point_of_color
        return LloydState(state.centres, state.labels[point], state.upper[point] + self.radius,
                          np.maximum(state.lower[point] - self.radius, 0.0))

    def _fit_reduced(self, k: int) -> LloydState:
        """k-means on the reduced histogram, warm-started from the nearest k fitted (cached)."""
        if k in self.fits:
            return self.fits[k]
        if k >= self.points.shape[0]:
            state = start_state(self.points, self.points)
        elif not self.fits or _far(k, min(self.fits, key=lambda j: abs(math.log2(j / k)))):
            # A fresh fit costs less than adding many centres one by one.
            state = fit_histogram(self.colors, self.counts, k, init=self.opts.init,
                                  rng=self.rng, max_iter=self.opts.iterations,
                                  tol=self.opts.tolerance, **self.fast)
        else:
            near = min(self.fits, key=lambda j: (abs(math.log2(j / k)), j))
            start = self.fits[near].centres
            if near < k:
                centres = _add_centres(self.points, self.counts, start, k, self.rng)
            else:
                centres = _merge_centres(self.points, self.counts, start, k)
            state = lloyd(self.points, self.counts, centres, self.opts.iterations,
                          self.opts.tolerance, **self.fast)
        self.fits[k] = state
        return state


def _fast_kernels(n_pixels: int) -> dict:
    """``{"kernels": module}`` when the compiled clustering kernels apply, as quantize uses them.

    They give the same results as the numpy code, faster on large images
    (``kpal[fast]``); without them, or below their size threshold, ``{}``.
    """
    try:
        from kpal import _jit

        kernels = _jit.load("kpal.cluster._kmeans_fast", n_pixels)
    except (ImportError, AttributeError):
        kernels = None
    return {} if kernels is None else {"kernels": kernels}


def _far(k: int, near: int) -> bool:
    """Whether a warm start from ``near`` centres would add more than ``k / 2`` of them."""
    return near < k / 2


def _rounded(centres: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(centres), 0, 255).astype(np.uint8)


def _add_centres(points: np.ndarray, weights: np.ndarray, centres: np.ndarray, k: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Extend ``centres`` to ``k`` by greedy k-means++ draws (weight times squared distance).

    As :func:`kpal.cluster.init.kmeans_plusplus`, continued from centres
    already placed: each step draws ``2 + log k`` candidates and keeps the
    one that lowers the potential most.
    """
    out = np.empty((k, 3), dtype=np.float64)
    out[: centres.shape[0]] = centres
    _, closest = assign(points, centres)
    trials = 2 + int(math.log(k))
    for c in range(centres.shape[0], k):
        cumulative = np.cumsum(weights * closest)
        picked = np.searchsorted(cumulative, rng.uniform(size=trials) * cumulative[-1],
                                 side="right")
        picked = np.minimum(picked, points.shape[0] - 1)
        trial = np.minimum(closest, squared_distances(points, points[picked]))
        best = int(np.argmin(np.einsum("tn,n->t", trial, weights)))
        out[c] = points[picked[best]]
        closest = trial[best]
    return out


def _merge_centres(points: np.ndarray, weights: np.ndarray, centres: np.ndarray,
                   k: int) -> np.ndarray:
    """Reduce ``centres`` to ``k`` by merging, each time, the pair that costs least (Ward)."""
    labels, _ = assign(points, centres)
    mass = np.bincount(labels, weights=weights, minlength=centres.shape[0])
    centres = centres.copy()
    alive = mass > 0
    if alive.sum() < k:  # empty clusters: keep some, at their place
        alive[np.flatnonzero(~alive)[: k - int(alive.sum())]] = True
    centres, mass = centres[alive], np.maximum(mass[alive], 1e-12)
    while centres.shape[0] > k:
        diff = centres[:, None, :] - centres[None, :, :]
        cost = np.einsum("ijd,ijd->ij", diff, diff) * (mass[:, None] * mass[None, :])
        cost /= mass[:, None] + mass[None, :]
        np.fill_diagonal(cost, np.inf)
        i, j = np.unravel_index(int(np.argmin(cost)), cost.shape)
        total = mass[i] + mass[j]
        centres[i] = (centres[i] * mass[i] + centres[j] * mass[j]) / total
        mass[i] = total
        centres, mass = np.delete(centres, j, axis=0), np.delete(mass, j)
    return centres


def _next_k(points: list[tuple[int, float]], target: float, low: int, high: int,
            default_slope: float) -> int:
    """Secant guess of the ``k`` where a curve ``value(log2 k)`` crosses ``target``.

    ``points`` are measured ``(k, value)`` pairs (finite values); the one
    nearest the target and the nearest on the other side of it (else the
    second nearest) give the slope per doubling of ``k``, kept within
    0.1x..3x ``default_slope`` so that one odd point cannot stall the search.
    The guess is kept strictly inside ``(low, high)``.
    """
    ranked = sorted(points, key=lambda p: (abs(p[1] - target), p[0]))
    k0, v0 = ranked[0]
    # Two points on one side of a curve that wiggles (file sizes: 39,926 bytes at
    # k = 157, 39,904 at 158) would give a slope of the wrong sign.
    across = [p for p in ranked[1:] if (p[1] >= target) != (v0 >= target) and p[0] != k0]
    others = across or [p for p in ranked[1:] if p[0] != k0]
    slope = default_slope
    if others:
        k1, v1 = others[0]
        slope = (v1 - v0) / (math.log2(k1) - math.log2(k0))
    slope = min(max(slope, 0.1 * default_slope), 3.0 * default_slope)
    doublings = (target - v0) / slope
    # 2.0 ** 1100 raises OverflowError (a flat image's sizes grow a byte per doubling
    # of k, so a generous budget is thousands of doublings away): past 9 doublings
    # (k0 >= 1 times 512), the guess is beyond k = 256 anyway.
    guess = high if doublings > 9 else round(k0 * 2.0 ** doublings)
    return int(min(max(guess, low + 1), high - 1))


def choose_k(
    pixels: np.ndarray,
    *,
    quality: tuple[float, float] | float | str | None = None,
    max_size: int | None = None,
    coding: str = "fixed",
    init: str = "k-means++",
    seed: int = 0,
    max_iter: int | None = None,
    tol: float | None = None,
    metadata_bytes: int = 0,
) -> Choice:
    """Choose ``k`` from a quality target and/or a file size limit, and quantize.

    Parameters
    ----------
    pixels : ndarray of shape (height, width, 3) or (n_pixels, 3), uint8
        The image; an (n, 3) array is laid out as one row (this matters for
        the size of the ``entropy`` coding only).
    quality : (min_db, max_db), float or "MIN-MAX", optional
        PSNR target in dB: the smallest ``k`` in 2..256 reaching ``max_db``,
        else the largest allowed ``k`` if it reaches ``min_db`` (see the
        module docstring). A single number means ``min_db = max_db``.
    max_size : int, optional
        Largest file size in bytes, everything included.
    coding : {"fixed", "radix", "entropy", "context"}, default "fixed"
        The payload coding the sizes are measured with.
    init, seed, max_iter, tol
        As for :func:`kpal.cluster.quantize` (k-means is the method).
    metadata_bytes : int, default 0
        Length of the metadata blocks the file will carry (an ICC profile's
        block, see :func:`file_size`): sizes are then those of that version 2
        file.

    Returns
    -------
    Choice
        The chosen ``k``, its palette and labels, PSNR, size and the curve.

    Raises
    ------
    QualityError
        Even the largest allowed ``k`` is below ``min_db``.
    SizeError
        Even a one-colour file exceeds ``max_size``.
    OptionError
        Neither target given, or a bad value (named in the message).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> image = rng.integers(0, 4, (32, 32, 3), dtype=np.uint8) * 60
    >>> choice = choose_k(image, quality=(20, 25))
    >>> choice.psnr >= 25, choice.neighbours()[0].psnr < 25
    (True, True)
    """
    low_db, high_db, max_size, opts = _checked_targets(
        "choose_k", quality, max_size, init=init, seed=seed, max_iter=max_iter, tol=tol,
        coding=coding)
    _checked_pixels(pixels)
    shape = _shape(pixels)
    size_needs_labels = codings.get(opts.coding).payload_size(1, 1, 1) is None
    one_candidate = quality is None and not size_needs_labels
    search = _Search(pixels.reshape(-1, 3), shape, opts.coding, opts, reduce=not one_candidate,
                     metadata_bytes=_checked_metadata_bytes(metadata_bytes))
    k_cap, size_only = options.MAX_K, []
    if max_size is not None:
        if not size_needs_labels:
            k_cap, size_only = _size_cap(search, max_size)
        else:
            k_cap = _entropy_size_search(search, max_size)
    if quality is None:
        chosen = search.measure(k_cap, with_size=True)
    else:
        chosen = _quality_search(search, low_db, high_db, k_cap, max_size is not None)
        search.measure(chosen.k, with_size=True)
    return _choice(chosen, search.labels(chosen), pixels.ndim, search, size_only)


def measure_curve(
    pixels: np.ndarray,
    ks: Iterable[int],
    *,
    coding: str = "fixed",
    init: str = "k-means++",
    seed: int = 0,
    max_iter: int | None = None,
    tol: float | None = None,
) -> tuple[CurvePoint, ...]:
    """Exact PSNR and file size at each ``k``, fitted as the search fits (cheap, warm-started).

    For a curve plot (``kpal plot --kind curve``) without a full fit per
    ``k``: one histogram, each fit starting from the nearest one done, every
    PSNR exact and every size the complete file with ``coding``.

    Parameters
    ----------
    pixels : ndarray of shape (height, width, 3) or (n_pixels, 3), uint8
    ks : iterable of int
        Palette sizes, each 1..256 (duplicates ignored).
    coding, init, seed, max_iter, tol
        As for :func:`choose_k`.

    Returns
    -------
    tuple of CurvePoint
        Sorted by ``k``, none with ``None`` fields.
    """
    opts = options.EncodeOptions(k=2, init=init, seed=seed, max_iter=max_iter, tol=tol,
                                 coding=coding)
    wanted = options.check_ks(ks)
    search = _Search(_checked_pixels(pixels).reshape(-1, 3), _shape(pixels), opts.coding,
                     opts)
    points = []
    for k in wanted:
        candidate = search.measure(k, with_size=True)
        points.append(CurvePoint(k, candidate.psnr, candidate.size))
    return tuple(points)


def _choice(chosen: _Candidate | _RgbaCandidate, labels: np.ndarray, ndim: int,
            search: _Search | _RgbaSearch, size_only: Iterable[CurvePoint] = ()) -> Choice:
    """The :class:`Choice` of ``chosen``: labels shaped as the pixels (``ndim``) were.

    The curve holds every candidate ``search`` measured, then the ``size_only``
    points at the ``k`` it did not measure, sorted by ``k``.
    """
    curve = {c.k: CurvePoint(c.k, c.psnr, c.size) for c in search.done.values()}
    for point in size_only:
        curve.setdefault(point.k, point)
    return Choice(k=chosen.k, palette=chosen.palette,
                  labels=labels if ndim == 3 else labels.reshape(-1),
                  psnr=chosen.psnr, mse=chosen.mse, size=int(chosen.size),
                  coding=search.opts.coding, curve=tuple(curve[k] for k in sorted(curve)),
                  n_colors=search.n_colors, payload=chosen.payload)


def _checked_targets(caller: str, quality: object, max_size: object,
                     **fit) -> tuple[float, float, int | None, options.EncodeOptions]:
    """``(min_db, max_db, max_size, options)`` checked for :func:`choose_k` and its RGBA twin.

    The checkers of :mod:`kpal.options`: the same forms and messages as
    encode's options. ``(0.0, 0.0)`` stands for no quality target.
    """
    if quality is None and max_size is None:
        msg = f"{caller} needs quality=(min_db, max_db) or max_size=BYTES"
        raise OptionError(msg)
    low_db, high_db = options.check("quality", quality) if quality is not None else (0.0, 0.0)
    max_size = options.check("max_size", max_size)
    return low_db, high_db, max_size, options.EncodeOptions(k=2, **fit)


def _checked_pixels(pixels: object, channels: int = 3) -> np.ndarray:
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 \
            or pixels.ndim not in (2, 3) or pixels.shape[-1] != channels or pixels.size == 0:
        if isinstance(pixels, np.ndarray):
            got = (str(pixels.shape) if pixels.dtype == np.uint8
                   else f"{pixels.dtype} {pixels.shape}")
        elif type(pixels).__module__.startswith("PIL."):
            got = "a PIL image (pass np.asarray(image))"
        else:
            got = type(pixels).__name__
        msg = (f"pixels must be a uint8 array of shape (h, w, {channels}) or "
               f"(n, {channels}), got {got}")
        raise KpalError(msg)
    return pixels


def _checked_metadata_bytes(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        msg = f"metadata_bytes={value!r} must be a non-negative integer"
        raise OptionError(msg)
    return int(value)


def _shape(pixels: np.ndarray) -> tuple[int, int]:
    """(height, width); an (n, channels) array is one row."""
    return pixels.shape[:2] if pixels.ndim == 3 else (1, pixels.shape[0])


def _size_cap(search: _Search, max_size: int) -> tuple[int, list[CurvePoint]]:
    """Largest k whose file fits when the payload length follows from k alone."""
    sizes = [file_size(k, search.width, search.height, search.coding,
                       metadata_bytes=search.metadata_bytes)
             for k in range(1, options.MAX_K + 1)]
    fitting = [k for k, size in enumerate(sizes, start=1) if size <= max_size]
    if not fitting:
        raise _size_error(max_size, sizes[0], search.coding)
    # A file holding fewer colours than k is smaller still, so fitting[-1] is safe.
    k = fitting[-1]
    above = [CurvePoint(k + 1, None, sizes[k])] if k < options.MAX_K else []
    return k, above


def _entropy_size_search(search: _Search, max_size: int) -> int:
    """Largest k whose coded file fits, for codings whose size depends on the labels.

    Coding a candidate costs about as much as fitting it, so sizes are first
    estimated: the order-0 entropy of the labels (cheap, from the fit) times
    the ratio of coded payload to that entropy measured at the nearest coded
    ``k`` (the context model's gain, which drifts slowly with ``k``). As in
    the quality search, the estimates lead and coded sizes close the bracket.
    """
    ceiling = min(search.n_colors, options.MAX_K)
    fits, exceeds = 0, None  # coded: largest k that fits, smallest that does not
    ratios: dict[int, float] = {}

    def estimate(k: int) -> float:
        return search.overhead + 3 * k + _interpolate(ratios, k) * search.label_bits(k) / 8

    first = min(_FIRST_K, ceiling)
    slope = max(estimate(first) - search.overhead, 1.0) / max(math.log2(first), 1.0)
    while True:
        top = exceeds if exceeds is not None else ceiling + 1
        if top - fits <= 1:
            break
        guess = _smallest_reaching(estimate, max_size + 1, fits, top, first, slope)
        guess = min(guess, top - 1)
        candidate = search.measure(guess, with_size=True)
        payload = candidate.size - search.overhead - 3 * candidate.palette.shape[0]
        bits = search.label_bits(guess)
        if bits > 0:
            ratios[guess] = payload * 8 / bits
        if candidate.size <= max_size:
            fits = guess
        else:
            exceeds = guess
        first = guess
    if fits == 0:
        raise _size_error(max_size, search.done[1].size, search.coding)
    return fits


def _size_error(max_size: int, one_colour_size: int, coding: str) -> SizeError:
    msg = (f"max_size={max_size} bytes cannot be met: even k=1 makes a "
           f"{one_colour_size}-byte file with coding {coding!r}")
    return SizeError(msg)


def _interpolate(ratios: dict[int, float], k: int) -> float:
    """The coded-to-entropy ratio at ``k``, from the ratios measured so far.

    Context modelling gains less as ``k`` grows (photos: about 0.2 at k = 4,
    0.45 at k = 256), so the ratio is modelled as linear in ``log2 k``:
    between two measured ``k``, the line through them; beyond them, or with
    one, the line of slope ``_ENTROPY_RATIO_SLOPE`` through the nearest.
    """
    x = math.log2(k)
    if not ratios:
        return _ENTROPY_RATIO + _ENTROPY_RATIO_SLOPE * x
    ks = sorted(ratios)
    if len(ks) > 1 and ks[0] <= k <= ks[-1]:
        return float(np.interp(x, np.log2(ks), [ratios[j] for j in ks]))
    nearest = ks[0] if k < ks[0] else ks[-1]
    return ratios[nearest] + _ENTROPY_RATIO_SLOPE * (x - math.log2(nearest))


def _smallest_reaching(value, target: float, low: int, high: int, first: int,
                       default_slope: float = _DB_PER_DOUBLING, slack: float = 0.0) -> int:
    """Smallest k in (low, high] with ``value(k) >= target``, ``value`` taken as growing.

    ``low`` is known (or taken) to miss the target, ``high`` to reach it (it
    may be one past the range, never evaluated). Guesses are secant steps on
    the values seen against ``log2 k`` (``default_slope`` per doubling
    until two are seen). With ``slack``, the search stops once the bracket is
    within ``slack * low`` and returns the secant guess inside it: for
    estimates, closer than their own accuracy is wasted work.
    """
    seen: dict[int, float] = {}
    guess = min(max(first, low + 1), high - 1)
    moved, repeats = None, 0  # which end of the bracket the last guesses moved
    while high - low > max(1.0, slack * low):
        seen[guess] = value(guess)
        reached = seen[guess] >= target
        if reached:
            high = guess
        else:
            low = guess
        repeats = repeats + 1 if reached == moved else 0
        moved = reached
        finite = [(k, v) for k, v in seen.items() if math.isfinite(v)]
        if not finite or repeats >= 2:
            # Three secant steps moved one end only: the bracket shrinks by a k at a
            # time on a curve that wiggles. Halve it instead.
            guess, repeats = (low + high) // 2, 0
        else:
            guess = _next_k(finite, target, low, high, default_slope)
    if high - low > 1 and low in seen and high in seen and math.isfinite(seen[high]):
        return _next_k([(low, seen[low]), (high, seen[high])], target, low, high + 1,
                       default_slope)
    return high


def _quality_search(search: _Search, low_db: float, high_db: float, k_cap: int,
                    capped: bool) -> _Candidate:
    """Smallest k in 2..k_cap reaching high_db (see the module docstring).

    The estimates lead: the smallest k they say reaches the target is
    measured exactly, the gap between estimate and measure corrects the
    next estimates, and the bracket of measured k closes on both sides.
    """
    if k_cap < 2:  # max_size allows one colour only
        return _accept_or_raise(search.measure(1, with_size=False), low_db, high_db, capped)
    ceiling = min(search.n_colors, k_cap) if search.n_colors > 1 else 2
    below, reached = 1, None  # measured: misses, reaches (k = 1 is never a candidate)
    # The exact PSNR beats the estimate by a gap that grows about like k
    # (more cluster borders to settle exactly): model it as gain * k.
    first, gain = _FIRST_K, _ESTIMATE_GAIN
    slack = 0.0 if search.cold else _ESTIMATE_SLACK
    while True:
        top = reached if reached is not None else ceiling + 1
        if top - below <= 1:
            break
        guess = _smallest_reaching(lambda k, g=gain: search.estimate(k) + g * k, high_db,
                                   below, top, first, slack=slack)
        guess = min(guess, top - 1)  # the estimates see nothing below top: check top - 1
        candidate = search.measure(guess, with_size=False)
        if math.isfinite(candidate.psnr) and not search.cold:
            gain = (candidate.psnr - search.estimate(guess)) / guess
        if candidate.psnr >= high_db:
            reached = guess
        else:
            below = guess
        first = guess
    if reached is not None:
        return search.done[reached]
    best = search.done[ceiling]
    if not search.cold:
        # No k reaches MAX: the answer is the ceiling, then fitted as encode -k fits it
        # (the warm starts on cells cost up to 0.2 dB, which may be what MIN lacks).
        cold = search.measure_cold(ceiling)
        if cold.psnr > best.psnr:
            best = search.done[ceiling] = cold
    return _accept_or_raise(best, low_db, high_db, capped)


#: A quality target above this many dB is likely meant on JPEG's 0-100 scale: 8-bit
#: photos at k = 256 reach 35-45 dB (only images with few colours go higher).
_NOT_A_PSNR = 60


def _accept_or_raise(candidate: _Candidate | _RgbaCandidate, low_db: float, high_db: float,
                     capped: bool) -> _Candidate | _RgbaCandidate:
    """``candidate`` if its PSNR reaches ``low_db``, else :class:`QualityError`."""
    if candidate.psnr >= low_db:
        return candidate
    limit = " (the largest k max_size allows)" if capped else ""
    target = f"{low_db:g}" if low_db == high_db else f"{low_db:g}-{high_db:g}"
    hint = (" (quality is a PSNR in dB, not the 0-100 scale of JPEG or WebP)"
            if low_db > _NOT_A_PSNR else "")
    msg = (f"quality {target} dB cannot be reached: k={candidate.k}{limit} "
           f"gives {candidate.psnr:.2f} dB, below the minimum {low_db:g} dB{hint}")
    raise QualityError(msg)


# ------------------------------------------------------------ transparency


def choose_k_rgba(
    pixels: np.ndarray,
    *,
    quality: tuple[float, float] | float | str | None = None,
    max_size: int | None = None,
    coding: str = "fixed",
    init: str = "k-means++",
    seed: int = 0,
    max_iter: int | None = None,
    tol: float | None = None,
    metadata_bytes: int = 0,
) -> Choice:
    """:func:`choose_k` for straight RGBA pixels, quantized by :func:`quantize_rgba`.

    The PSNR is the one the encode report prints for an image with
    transparency: of the mean of the squared errors of the composites over
    black and over white (:func:`kpal.cluster.alpha.composite_mse`), i.e. the
    premultiplied RGBA error. Sizes are those of the file ``encode`` writes:
    an RGBA palette (``35 + 4k`` bytes besides the payload), or the opaque
    layout (``30 + 3k``) when no entry is transparent, plus ``metadata_bytes``
    (with which the opaque layout is version 2 too: ``35 + 3k``). Every candidate is a
    full :func:`~kpal.cluster.alpha.quantize_rgba` fit (no reduced histogram):
    the chosen palette is exactly the one ``quantize_rgba(pixels, k)`` gives,
    and the same guarantee holds as for :func:`choose_k` (the chosen ``k``
    meets the target; ``k - 1`` or ``k + 1``, when in range, was measured and
    misses, except that ``k = 1`` is never a quality candidate).

    Parameters
    ----------
    pixels : ndarray of shape (height, width, 4) or (n_pixels, 4), uint8
    quality, max_size, coding, init, seed, max_iter, tol, metadata_bytes
        As for :func:`choose_k`.

    Returns
    -------
    Choice
        ``palette`` of shape (k_used, 4), straight RGBA.

    Raises
    ------
    QualityError, SizeError, OptionError
        As :func:`choose_k`.
    """
    low_db, high_db, max_size, opts = _checked_targets(
        "choose_k_rgba", quality, max_size, init=init, seed=seed, max_iter=max_iter, tol=tol,
        coding=coding)
    search = _RgbaSearch(_checked_pixels(pixels, channels=4), opts,
                         _checked_metadata_bytes(metadata_bytes))
    chosen_k = options.MAX_K
    if max_size is not None:
        chosen_k = _rgba_size_cap(search, max_size)
    if quality is not None:
        chosen_k = _rgba_quality_search(search, low_db, high_db, chosen_k, max_size is not None)
    chosen = search.measure(chosen_k)
    return _choice(chosen, chosen.labels, pixels.ndim, search)


@dataclass
class _RgbaCandidate:
    k: int
    palette: np.ndarray  # uint8 (k_used, 4)
    labels: np.ndarray  # uint8 (height, width)
    mse: float
    size: int
    payload: bytes | None

    @property
    def psnr(self) -> float:
        return psnr_from_mse(self.mse)


class _RgbaSearch:
    """Full RGBA fits, one per ``k`` asked, with their exact PSNR and file size."""

    def __init__(self, pixels: np.ndarray, opts: options.EncodeOptions,
                 metadata_bytes: int = 0) -> None:
        self.metadata_bytes = metadata_bytes
        self.height, self.width = _shape(pixels)
        self.pixels = pixels.reshape(-1, 4)
        self.opts = opts
        self.coding = codings.get(opts.coding)
        self.done: dict[int, _RgbaCandidate] = {}
        self.n_colors = options.MAX_K  # known after the first fit

    def measure(self, k: int) -> _RgbaCandidate:
        if k not in self.done:

            from kpal.cluster.alpha import quantize_rgba

            opts = self.opts
            with silenced("the image has"):
                result = quantize_rgba(self.pixels, k, init=opts.init, seed=opts.seed,
                                       max_iter=opts.max_iter, tol=opts.tol)
            self.n_colors = result.n_colors
            labels = result.labels.reshape(self.height, self.width)
            k_used = result.palette.shape[0]
            payload_size = self.coding.payload_size(k_used, self.width, self.height)
            payload = None
            if payload_size is None:
                payload = self.coding.encode(labels, k_used)
                payload_size = len(payload)
            self.done[k] = _RgbaCandidate(k, result.palette, labels, result.inertia / 3,
                                          _rgba_file_size(result.palette, payload_size,
                                                          self.metadata_bytes), payload)
        return self.done[k]


def _rgba_file_size(palette: np.ndarray, payload_size: int, metadata_bytes: int = 0) -> int:
    """Bytes of the file ``encode`` writes: RGBA layout unless all opaque."""
    alpha = bool((palette[:, 3] < 255).any())
    entry = 4 if alpha else 3
    return overhead(metadata_bytes, alpha) + entry * palette.shape[0] + payload_size


def _rgba_size_cap(search: _RgbaSearch, max_size: int) -> int:
    """Largest k whose file fits in ``max_size`` bytes (measured; SizeError if not k = 1)."""
    fixed = search.coding.payload_size(1, 1, 1) is not None
    if fixed:
        # The size follows from k (an RGBA palette at most): the largest k whose
        # bound fits, then k = 1 measured only if even that bound is too large.
        bounds = [overhead(search.metadata_bytes, alpha=True) + 4 * k
                  + search.coding.payload_size(k, search.width, search.height)
                  for k in range(1, options.MAX_K + 1)]
        fitting = [k for k, size in enumerate(bounds, start=1) if size <= max_size]
        if fitting:
            return fitting[-1]
        if search.measure(1).size <= max_size:
            return 1
    else:
        first = 16
        size_first = search.measure(first).size
        top = min(search.n_colors, options.MAX_K)
        slope = max(size_first - overhead(search.metadata_bytes, alpha=True), 1.0) \
            / math.log2(first)
        over = _smallest_reaching(lambda k: search.measure(k).size, max_size + 1, 0, top + 1,
                                  min(first, top), slope)
        if over > 1 or search.measure(1).size <= max_size:
            return max(over - 1, 1)
    raise _size_error(max_size, search.measure(1).size, search.coding.name)


def _rgba_quality_search(search: _RgbaSearch, low_db: float, high_db: float, k_cap: int,
                         capped: bool) -> int:
    """Smallest k in 2..k_cap reaching ``high_db``, else k_cap if it reaches ``low_db``."""
    if k_cap < 2:
        k = 1
    else:
        search.measure(min(_FIRST_K, k_cap))
        ceiling = max(min(search.n_colors, k_cap), 2)
        reached = _smallest_reaching(lambda k: search.measure(k).psnr, high_db, 1,
                                     ceiling + 1, min(_FIRST_K, ceiling))
        if reached <= ceiling:
            return reached
        k = ceiling
    return _accept_or_raise(search.measure(k), low_db, high_db, capped).k
