"""Perceptual palettes for translucent pixels: k-means in premultiplied Oklab.

:mod:`kpal.cluster.alpha` compares RGBA colours by the error of their
composites over black and over white, which is a plain sum of squares in
premultiplied RGB. Oklab is not linear in RGB, so the Oklab of a
premultiplied colour means nothing; instead the *mixing* is done in Oklab.
A colour of Oklab ``(L, A, B)`` (times 255, as
:func:`kpal.cluster.perceptual.oklab_from_srgb8` gives it) and opacity
``a`` in 0..1, laid over black (``(0, 0, 0)`` in Oklab) and over white
(``(255, 0, 0)``) by linear mixing of the Oklab coordinates, shows
``a·(L, A, B)`` and ``a·(L - 255, A, B) + (255, 0, 0)``. The mean of the
squared Oklab distances between two pixels' composites over black and over
white is, with ``x = Δ(a·L)`` and ``y = 255·Δa``,
``Δ(a·A)² + Δ(a·B)² + (x² + (x - y)²) / 2``, and
``(x² + (x - y)²) / 2 = (x - y/2)² + (y/2)²``. So in the coordinates

    ``(a·(L - 127.5), a·A, a·B, 127.5·a)``

(the Oklab composite over mid-grey, and alpha weighted by one half of the
L range) the squared Euclidean distance is that mean composite error, and
weighted k-means runs there unchanged. Its properties are those of the RGB
path:

* two opaque colours are exactly their Oklab distance apart (the palette of
  an opaque region is the one :func:`kpal.cluster.perceptual.quantize_perceptual`
  would choose);
* two colours of one opacity ``a`` are ``a`` times their Oklab distance
  apart, so the colour of a nearly transparent pixel weighs little and the
  colour under alpha 0 nothing;
* the alpha weight is not a free parameter: it is the one that makes the
  distance the mean of the composite errors over black and over white, as
  the RGB path weighs alpha (√3/2 there: the white composite differs from
  the black one in three channels of sRGB, here in L only). A full alpha
  swing of a black or white colour is ``255/√2`` apart in both spaces, the
  RMS of the composites' difference.

Every coordinate is further multiplied by √3 (``_UNIT``): an opaque colour
then has alpha coordinate ``255·√3/2``, exactly that of
:func:`kpal.cluster.alpha._to_space`, and the helpers of
:mod:`kpal.cluster.alpha` that know that value (the kinds of entry
:func:`~kpal.cluster.alpha._opaque_kinds` and
:func:`~kpal.cluster.alpha._more_opaque_kinds`, the moves of
:func:`~kpal.cluster.alpha._moved`, and :func:`~kpal.cluster.alpha._fit_points`,
whose cells of side 8 are then 1.8 ΔE wide) run unchanged. A uniform scale
changes no nearest entry and no step of k-means.

The rules of the RGB path hold: alpha 0 pixels take the single transparent
entry, alpha 255 ones only entries of alpha 255 (their Oklab-nearest, the
rule of :func:`kpal.cluster.remap.remap_rgba` with ``space="oklab"``),
translucent ones their nearest entry of any kind in the space above, ties
to the lowest index. A centre becomes the 8-bit entry whose alpha is the
centre's rounded (255 for opaque entries) and whose colour is the Oklab of
the centre's colour divided by that alpha, back to sRGB and rounded.

The fit is alpha.py's on these points: weighted k-means on the distinct
colours (coarse to fine, :func:`~kpal.cluster.alpha._fit_points`), the kind
of each entry, then up to ``_MAX_PASSES`` passes that round the palette,
label every colour and move each entry to the mean of its colours, kept
while the error falls. Labels are searched from the previous pass's: a
colour nearer its previous entry than half the gap to that entry's nearest
other is settled without a search (:func:`_search`), the others compare
every entry (or, for 32 entries and more, those near the previous one),
which finds exactly :func:`kpal.cluster.nearest.assign`'s labels. Above
``_CONVERGE_POINTS`` distinct colours (a soft-alpha photo of megapixels has
about one per translucent pixel) the kinds and passes run on the cells of
:func:`kpal.cluster.alpha._cell_sums` instead, and every colour is labelled
exactly once at the end: on a 3 MP soft-alpha photo
(:func:`alpha_corpus.large_vignette`) that takes about half the time of
passes on the exact colours, for a mean ΔE 0.2 % (k = 16) and 1.5 %
(k = 64) higher.
Every sum is numpy's (no BLAS), so the result does not depend on the
number of threads, and the compiled k-means of the fit finds the same
labels as numpy's.

``inertia`` is the composite error of :mod:`kpal.cluster.alpha` (sRGB
levels), so the two spaces report comparable numbers; the fit minimises the
Oklab one. On the ten images of bench/alpha_corpus.py
(bench/bench_alpha_oklab.py) this lowers the mean Oklab ΔE of the
composites over black and over white by 7 % (k = 16) and 9 % (k = 64)
against ``space="rgb"``, for 0.5 and 0.85 dB less composite PSNR (the RGB
path minimises exactly that).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from kpal import options
from kpal.cluster import Quantization
from kpal.cluster.alpha import (
    _ALPHA_SCALE,
    _COMPOSITE_UNIT,
    _CONVERGE_POINTS,
    _MAX_PASSES,
    _N_KEYS,
    _OPAQUE,
    _OPAQUE_KEYS,
    _PASS_GAIN,
    TRANSPARENT,
    _composites,
    _fit_points,
    _more_opaque_kinds,
    _moved,
    _opaque_kinds,
    _Parts,
    _squared_to,
)
from kpal.cluster.nearest import _MARGIN, Neighbours, assign
from kpal.cluster.perceptual import oklab_from_srgb8, srgb8_from_oklab

__all__ = ["nearest_entries", "quantize_translucent", "to_space"]

#: Oklab L (times 255) of the mid-grey the colour coordinates are centred on:
#: half-way between the black and white composites; also the alpha weight.
_L_MID = 127.5
#: Uniform scale of the space (√3): makes an opaque colour's alpha coordinate
#: ``255·_ALPHA_SCALE``, as in :mod:`kpal.cluster.alpha` (see the module notes).
_UNIT = _OPAQUE * _ALPHA_SCALE / _L_MID
#: Colours labelled per block (bounds the (block, k) distance tables).
_BLOCK = 1 << 18
#: Colours whose coordinates are computed at once on large images (32 MiB of them).
_COLOUR_BLOCK = 1 << 20
#: From this many entries, colours not settled by their guess are searched
#: among the entries near the guess only (:func:`_search`).
_SEARCH_ENTRIES = 32


def to_space(colours: np.ndarray) -> np.ndarray:
    """Points of straight RGBA colours in premultiplied Oklab (see the module notes).

    Parameters
    ----------
    colours : ndarray of shape (n, 4), uint8
        Straight RGBA.

    Returns
    -------
    ndarray of shape (n, 4), float64
        ``√3·(a·(L - 127.5), a·A, a·B, 127.5·a)`` with ``(L, A, B)`` the Oklab
        of the colour times 255 and ``a = alpha / 255``: squared distances
        are 3 times the mean squared Oklab error (times 255) of the
        composites over black and over white, mixed in Oklab.

    Examples
    --------
    >>> px = np.array([[0, 0, 0, 255], [0, 0, 0, 0]], dtype=np.uint8)
    >>> d = to_space(px)
    >>> round(float(np.sqrt(((d[0] - d[1]) ** 2).sum() / 3)), 2)  # 255 / sqrt(2)
    180.31
    """
    colours = np.asarray(colours)
    return _from_lab(oklab_from_srgb8(colours[:, :3]), colours[:, 3])


def _from_lab(lab: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """:func:`to_space` from the Oklab (times 255) and the 8-bit alpha of the colours."""
    a = alpha.astype(np.float64) / _OPAQUE
    out = np.empty((lab.shape[0], 4), dtype=np.float64)
    out[:, 0] = lab[:, 0] - _L_MID
    out[:, 1:3] = lab[:, 1:3]
    out[:, :3] *= (a * _UNIT)[:, None]
    out[:, 3] = a * (_L_MID * _UNIT)
    return out


def nearest_entries(colours: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Nearest allowed palette entry of every colour, in premultiplied Oklab.

    Parameters
    ----------
    colours : ndarray of shape (n, 4), uint8
        Straight RGBA colours (usually the distinct colours of an image).
    palette : ndarray of shape (k, 4), uint8
        Straight RGBA entries.

    Returns
    -------
    ndarray of shape (n,), intp
        Alpha 0 colours: the first entry of alpha 0 (searched like the others
        when there is none). Alpha 255 colours: the Oklab-nearest entry of
        alpha 255 (of any alpha when none is opaque), as
        :func:`kpal.cluster.remap.remap_rgba` maps opaque pixels. Others:
        the nearest entry by :func:`to_space`. Ties go to the lowest index;
        distances are summed coordinate by coordinate (no BLAS), so the
        labels do not depend on the number of threads.

    Examples
    --------
    >>> palette = np.array([[0, 0, 0, 0], [200, 0, 0, 255], [200, 0, 0, 40]], np.uint8)
    >>> colours = np.array([[9, 9, 9, 0], [0, 0, 255, 255], [255, 0, 0, 50]], np.uint8)
    >>> nearest_entries(colours, palette).tolist()
    [0, 1, 2]
    """
    lab = oklab_from_srgb8(colours[:, :3])
    return _nearest(colours[:, 3], lab, _from_lab(lab, colours[:, 3]), palette)


def _nearest(alpha: np.ndarray, lab: np.ndarray, points: np.ndarray, palette: np.ndarray,
             guess: np.ndarray | None = None) -> np.ndarray:
    """:func:`nearest_entries` of colours given by their alpha, Oklab and points;
    ``guess``, a palette index near each colour, only makes the search faster."""
    labels = np.empty(alpha.shape[0], dtype=np.intp)
    opaque_entries = np.flatnonzero(palette[:, 3] == _OPAQUE)
    if not opaque_entries.size:
        opaque_entries = np.arange(palette.shape[0])
    clear = np.flatnonzero(palette[:, 3] == 0)
    searched = np.ones(alpha.shape[0], dtype=np.bool_)
    if clear.size:
        transparent = alpha == 0
        labels[transparent] = clear[0]
        searched &= ~transparent
    opaque = alpha == _OPAQUE
    rows = np.flatnonzero(opaque)
    if rows.size:
        # The guess as a position among the opaque entries (the first if it is none).
        position = np.zeros(palette.shape[0], dtype=np.intp)
        position[opaque_entries] = np.arange(opaque_entries.size)
        hint = None if guess is None else position[guess[rows]]
        found = _search(lab[rows], oklab_from_srgb8(palette[opaque_entries, :3]), hint)
        labels[rows] = opaque_entries[found]
    searched &= ~opaque
    rows = np.flatnonzero(searched)
    if rows.size:
        labels[rows] = _search(points[rows], to_space(palette),
                               None if guess is None else guess[rows])
    return labels


def _nearest_blocks(colours: np.ndarray, palette: np.ndarray, guess: np.ndarray) -> np.ndarray:
    """:func:`_nearest` of straight RGBA ``colours``, :data:`_COLOUR_BLOCK` at a time
    (each colour's label depends on it alone: the same labels, in bounded memory)."""
    labels = np.empty(colours.shape[0], dtype=np.intp)
    for start in range(0, colours.shape[0], _COLOUR_BLOCK):
        block = slice(start, start + _COLOUR_BLOCK)
        lab = oklab_from_srgb8(colours[block, :3])
        labels[block] = _nearest(colours[block, 3], lab, _from_lab(lab, colours[block, 3]),
                                 palette, guess[block])
    return labels


def _search(points: np.ndarray, entries: np.ndarray, guess: np.ndarray | None) -> np.ndarray:
    """Nearest entry of every point, ties to the lowest index: :func:`assign`'s labels.

    With a guess, a point closer to its guessed entry than half the gap to
    that entry's nearest other is settled (strictly nearest, by the triangle
    inequality, with a margin for rounding); the others are compared with
    every entry, or for many entries only with those within twice the
    distance to the guessed one (:class:`kpal.cluster.nearest.Neighbours`,
    whose squared distances are summed in :func:`assign`'s order).
    """
    if guess is None or entries.shape[0] <= 2:
        return _assign(points, entries)
    upper = np.sqrt(_squared_to(points, entries, guess))
    neighbours = Neighbours(entries)
    labels = guess.copy()
    open_rows = np.flatnonzero(~(upper + _MARGIN < neighbours.half_gap[guess]))
    if entries.shape[0] >= _SEARCH_ENTRIES:
        labels[open_rows] = neighbours.search(points[open_rows], guess[open_rows],
                                              upper[open_rows])[0]
    else:
        labels[open_rows] = _assign(points[open_rows], entries)
    return labels


def _assign(points: np.ndarray, entries: np.ndarray) -> np.ndarray:
    labels = np.empty(points.shape[0], dtype=np.intp)
    for start in range(0, points.shape[0], _BLOCK):
        labels[start:start + _BLOCK] = assign(points[start:start + _BLOCK], entries)[0]
    return labels


def quantize_translucent(parts: _Parts, k_free: int, opts: options.EncodeOptions,
                         kernels: ModuleType | None) -> Quantization:
    """k-means in premultiplied Oklab for an image with translucent pixels.

    The contract of :func:`kpal.cluster.alpha._premultiplied` (which
    :func:`kpal.cluster.alpha.quantize_rgba` calls with ``space="rgb"``):
    ``k_free`` entries besides the transparent one (present when the image
    has alpha 0 pixels), alpha exact for alpha 0 and 255 pixels, every entry
    used, ``inertia`` the mean composite error in sRGB levels. (``method="gmm"``
    is refused with ``space="oklab"`` by :class:`kpal.options.EncodeOptions`,
    as for opaque images.)
    """
    rng = np.random.default_rng(opts.seed)
    colours = np.concatenate([_opaque_rgba(parts.o_colors), parts.s_colors])
    n_opaque = parts.o_colors.shape[0]
    counts = np.concatenate([parts.o_counts, parts.s_counts]).astype(np.float64)
    weights = counts
    if opts.sample is not None and opts.sample < 1:
        # As alpha.py: binomial draws per colour, as if each pixel were kept
        # with probability ``sample``.
        sampled = rng.binomial(counts.astype(np.int64), opts.sample).astype(np.float64)
        if np.count_nonzero(sampled) > k_free:
            weights = sampled
    has_t = parts.has_transparent
    if colours.shape[0] > _CONVERGE_POINTS:
        # Many colours (a soft-alpha photo): the kinds and the passes work on
        # cells, and every colour is labelled exactly once, at the end; their
        # coordinates are computed a block at a time (a 12 MP photo has about
        # 12 million colours: 700 MB of them at once).
        level = _CellLevel(colours, weights)
    else:
        lab = oklab_from_srgb8(colours[:, :3])
        level = _ExactLevel(colours[:, 3], lab, _from_lab(lab, colours[:, 3]), weights,
                            n_opaque)
    centres, point_labels, n_iter = _fit_points(level.points, level.weights, k_free, opts, rng,
                                                kernels)
    opaque_kind = _opaque_kinds(point_labels, level.weights, level.n_opaque, centres.shape[0])
    opaque_kind = _more_opaque_kinds(opaque_kind, centres, level.points, level.weights,
                                     point_labels, level.n_opaque)
    palette, labels, n_passes = _passes(level, centres, opaque_kind, point_labels + has_t,
                                        has_t, min(opts.iterations, _MAX_PASSES))
    n_iter += n_passes
    if isinstance(level, _CellLevel):
        labels = _nearest_blocks(colours, palette, labels[level.cell_of_point])
    used = np.zeros(palette.shape[0], dtype=np.bool_)
    used[:has_t] = True
    used[labels] = True
    renumber = np.cumsum(used, dtype=np.intp) - 1
    pixel_labels = parts.labels(0, renumber[labels[:n_opaque]], renumber[labels[n_opaque:]])
    entries = _composites(palette)
    error = 0.0
    for start in range(0, colours.shape[0], _COLOUR_BLOCK):
        block = slice(start, start + _COLOUR_BLOCK)
        composite = _squared_to(_composites(colours[block]), entries, labels[block])
        error += float(np.einsum("n,n->", composite, counts[block]))
    inertia = error / _COMPOSITE_UNIT / parts.total
    return Quantization(palette[used], pixel_labels, n_iter, inertia, parts.n_colors,
                        opts.method)


def _passes(level: _ExactLevel | _CellLevel, centres: np.ndarray, opaque_kind: np.ndarray,
            guess: np.ndarray, has_t: int, passes: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Lloyd passes under the alpha rules, as alpha.py's: label, move each
    centre to the mean of its points, round, while the error falls by at
    least _PASS_GAIN. Returns the palette, the labels of the level's points
    and the passes run."""
    palette = _palette(centres, opaque_kind, has_t)
    labels, distances = level.label(palette, guess)
    error = float(np.einsum("n,n->", distances, level.weights))
    n_passes = 0
    for _ in range(passes):
        centres, opaque_kind = _moved(centres, opaque_kind, level.points, level.weights,
                                      labels - has_t, distances)
        moved = _palette(centres, opaque_kind, has_t)
        if np.array_equal(moved, palette):
            break
        moved_labels, moved_distances = level.label(moved, labels)
        moved_error = float(np.einsum("n,n->", moved_distances, level.weights))
        n_passes += 1
        if moved_error >= error:
            break
        palette, labels, distances = moved, moved_labels, moved_distances
        if moved_error > error * (1 - _PASS_GAIN):
            break
        error = moved_error
    return palette, labels, n_passes


class _ExactLevel:
    """The distinct colours, opaque first, labelled exactly (:func:`nearest_entries`)."""

    def __init__(self, alpha: np.ndarray, lab: np.ndarray, points: np.ndarray,
                 weights: np.ndarray, n_opaque: int) -> None:
        self.alpha, self.lab, self.points, self.weights = alpha, lab, points, weights
        self.n_opaque = n_opaque

    def label(self, palette: np.ndarray, guess: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels of the colours, searched from ``guess``, and their squared distances."""
        labels = _nearest(self.alpha, self.lab, self.points, palette, guess)
        return labels, _squared_to(self.points, to_space(palette), labels)


class _CellLevel:
    """The colours merged into the cells of :func:`kpal.cluster.alpha._cell_sums`
    (33 alpha levels of 32**3 cells of premultiplied colour, opaque colours
    in level 0), so opaque cells come first and hold only opaque colours:
    their weighted means in the space, weights, and the cell of every colour.

    Cells are numbered through a table of all keys: no sort of the colours.
    """

    def __init__(self, colours: np.ndarray, weights: np.ndarray) -> None:
        alpha = colours[:, 3].astype(np.int64)
        key = np.where(alpha == _OPAQUE, 0, 1 + alpha // 8)
        for channel in range(3):
            key = key * 32 + colours[:, channel] * alpha // 2040
        present = np.bincount(key, minlength=_N_KEYS) > 0
        number = np.cumsum(present, dtype=np.intp) - 1
        self.cell_of_point = number[key]
        n_cells = int(number[-1]) + 1
        self.n_opaque = int(number[_OPAQUE_KEYS - 1]) + 1
        self.weights = np.bincount(self.cell_of_point, weights=weights, minlength=n_cells)
        # A cell whose colours all weigh 0 (left out of a sample) gets their plain mean.
        mass = np.where(self.weights[self.cell_of_point] == 0, 1.0, weights)
        total = np.bincount(self.cell_of_point, weights=mass, minlength=n_cells)
        sums = np.zeros((n_cells, 4))
        for start in range(0, colours.shape[0], _COLOUR_BLOCK):
            block = slice(start, start + _COLOUR_BLOCK)
            points = to_space(colours[block])
            for column in range(4):
                sums[:, column] += np.bincount(self.cell_of_point[block],
                                               weights=mass[block] * points[:, column],
                                               minlength=n_cells)
        self.points = sums / total[:, None]
        self.points[:self.n_opaque, 3] = _OPAQUE * _ALPHA_SCALE  # exactly, for the kind rules

    def label(self, palette: np.ndarray, guess: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest allowed entry of every cell (opaque cells: entries of alpha 255)."""
        del guess  # few cells: every entry is compared
        entries = to_space(palette)
        labels = np.empty(self.points.shape[0], dtype=np.intp)
        allowed = np.flatnonzero(palette[:, 3] == _OPAQUE)
        if not allowed.size:
            allowed = np.arange(palette.shape[0])
        labels[:self.n_opaque] = allowed[_assign(self.points[:self.n_opaque], entries[allowed])]
        labels[self.n_opaque:] = _assign(self.points[self.n_opaque:], entries)
        return labels, _squared_to(self.points, entries, labels)


def _palette(centres: np.ndarray, opaque_kind: np.ndarray, has_t: int) -> np.ndarray:
    """The 8-bit straight RGBA palette: the transparent entry (if any), then the centres.

    An entry's alpha is its centre's, rounded (at least 1; 255 for opaque
    entries); its colour the Oklab of the centre's colour coordinates over
    that alpha, back to sRGB (clipped to the gamut) and rounded.
    """
    alpha = np.rint(centres[:, 3] * (_OPAQUE / (_L_MID * _UNIT)))
    alpha = np.where(opaque_kind, _OPAQUE, np.clip(alpha, 1, _OPAQUE))
    lab = centres[:, :3] / (alpha * (_UNIT / _OPAQUE))[:, None]
    lab[:, 0] += _L_MID
    palette = np.empty((centres.shape[0], 4), dtype=np.uint8)
    palette[:, :3] = srgb8_from_oklab(lab)
    palette[:, 3] = alpha
    if has_t:
        palette = np.concatenate([np.array([TRANSPARENT], dtype=np.uint8), palette])
    return palette


def _opaque_rgba(rgb: np.ndarray) -> np.ndarray:
    out = np.empty((rgb.shape[0], 4), dtype=np.uint8)
    out[:, :3] = rgb
    out[:, 3] = _OPAQUE
    return out
