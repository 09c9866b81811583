"""k-means clustering (Lloyd's algorithm) on weighted points.

:class:`KMeans` has the estimator API the k-means tutorials teach: ``fit`` on
some pixels, ``predict`` all of them, read ``cluster_centers_``. It validates
its arguments and hands valid input to private functions that compute.

Pixels arrive as uint8 RGB rows. ``fit`` collapses them into the histogram of
distinct colours weighted by pixel count: every Lloyd step (assign each point
to its nearest centre, move each centre to the weighted mean of its points)
gives exactly the same centres on the histogram as on the pixels, at a
fraction of the cost.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from kpal import options
from kpal.cluster.histogram import cell_sums, color_histogram, map_pixels, reduce_histogram
from kpal.cluster.init import INITS, kmeans_plusplus, random_init
from kpal.cluster.nearest import (
    _MARGIN,
    _NEAR,
    _RESORT_DRIFT,
    Neighbours,
    _distance,
    _dot,
    _nearest_two,
    assign,
)
from kpal.cluster.params import Params
from kpal.errors import OptionError

__all__ = [
    "KMeans",
    "LloydState",
    "assign",
    "fit_histogram",
    "initial_centres",
    "lloyd",
    "nearest_palette_colors",
]


class KMeans(Params):
    """k-means clustering by Lloyd's algorithm.

    The interface of scikit-learn's ``KMeans`` (``fit``, ``predict``,
    ``fit_predict``, ``get_params``/``set_params``, so ``sklearn.base.clone``
    works), with kpal's names: ``k`` for ``n_clusters``, ``seed`` for
    ``random_state``. uint8 colours are fitted coarse to fine on cells of
    their histogram; where the coarsest level is small, several k-means++
    draws are compared there (up to 16 for a few hundred cells, 8 or 4 for
    up to 20,000 cells at k <= 64), else one (scikit-learn's ``n_init="auto"``).

    Parameters
    ----------
    k : int, default 8
        Number of clusters, 1..256.
    init : {"k-means++", "random"} or ndarray of shape (k, n_features), default "k-means++"
        Greedy k-means++ (as scikit-learn), ``k`` distinct points drawn with
        probability proportional to their weight, or explicit initial centres.
    seed : int, default 0
        Seed of the random choices: the same seed gives the same result.
    max_iter : int, default 300
        Maximum number of Lloyd iterations; for uint8 colours, at each
        coarse-to-fine level.
    tol : float, default 1e-4
        Stop when the total squared centre shift falls below ``tol`` times the
        mean per-feature variance of the data (scikit-learn's convention).

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (k, n_features), float64
    labels_ : ndarray of shape (n_samples,), intp
        Cluster of every training sample, matching ``cluster_centers_``.
    inertia_ : float
        Sum over samples of (weight times) the squared distance to their centre.
    n_iter_ : int
        Lloyd iterations run, summed over the coarse-to-fine levels (so it
        can exceed ``max_iter``).

    Examples
    --------
    >>> pixels = np.array([[0, 0, 0], [0, 0, 2], [250, 250, 250]], dtype=np.uint8)
    >>> km = KMeans(2).fit(pixels)
    >>> km.cluster_centers_[km.predict(pixels)].tolist()
    [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [250.0, 250.0, 250.0]]
    """

    def __init__(
        self,
        k: int = 8,
        *,
        init: str | np.ndarray = "k-means++",
        seed: int = 0,
        max_iter: int = 300,
        tol: float = 1e-4,
    ) -> None:
        self.k = k
        self.init = init
        self.seed = seed
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X: np.ndarray, y: object = None,
            sample_weight: np.ndarray | None = None) -> KMeans:
        """Compute the clusters of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Points; uint8 RGB pixels of shape (n, 3) are clustered through
            their colour histogram (the same Lloyd steps, less work), coarse
            to fine unless ``init`` is an array (see :func:`fit_histogram`).
        y : ignored
            Not used: there for scikit-learn's API (``fit(X, y)`` in a pipeline).
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of every sample (default 1).

        Returns
        -------
        KMeans
            ``self``, fitted.

        Raises
        ------
        ValueError
            ``X`` is not a non-empty 2-D array of finite numbers of magnitude at
            most 1e100, the weights are negative or of the wrong shape, or ``X``
            has fewer distinct samples of positive weight than ``k`` (use
            :func:`kpal.quantize` for colours: it keeps them all, losslessly).
        OptionError
            A parameter (``k``, ``init``, ``seed``, ``max_iter``, ``tol``) is invalid.
        """
        validate_params(self.k, self.init, self.seed, self.max_iter, self.tol)
        X = _check_points(X)
        weights = _check_weights(sample_weight, X.shape[0])
        n_positive = int(np.count_nonzero(weights))
        if n_positive < self.k:
            msg = f"k={self.k} is more than the {n_positive} samples with positive weight"
            raise ValueError(msg)
        pixels = X.dtype == np.uint8 and X.shape[1] == 3
        if pixels:
            hist = color_histogram(X, None if sample_weight is None else weights)
            points, point_weights = hist.colors.astype(np.float64), hist.counts.astype(np.float64)
        else:
            points, point_weights = X.astype(np.float64), weights
        keep = point_weights > 0
        if not keep.all():
            points, point_weights = points[keep], point_weights[keep]
        n_distinct = points.shape[0] if pixels else np.unique(points, axis=0).shape[0]
        if n_distinct < self.k:
            # Whatever the dtype: duplicate centres and empty clusters would be no answer.
            msg = f"k={self.k} is more than the {n_distinct} distinct samples"
            raise ValueError(msg)
        rng = np.random.default_rng(self.seed)
        if pixels and isinstance(self.init, str):
            # Colours: the coarse-to-fine path (same kind of result, much faster).
            colors = hist.colors[keep] if not keep.all() else hist.colors
            state = fit_histogram(colors, point_weights, self.k, init=self.init, rng=rng,
                                  max_iter=self.max_iter, tol=self.tol)
        else:
            centres = initial_centres(self.init, points, point_weights, self.k, rng)
            state = lloyd(points, point_weights, centres, self.max_iter, self.tol)
        self.cluster_centers_ = state.centres
        self.n_iter_ = state.n_iter
        if pixels:
            # Label the pixels through their colours. Lloyd's labels match its
            # centres; only zero-weight colours, left out of the fit, need a search.
            labels = np.empty(len(hist), dtype=np.intp)
            labels[keep] = state.labels
            if not keep.all():
                labels[~keep] = assign(hist.colors[~keep].astype(np.float64), state.centres)[0]
            distances = _distance(hist.colors.astype(np.float64), state.centres[labels],
                                  squared=True)
            self.labels_ = map_pixels(X, hist.colors, labels.astype(np.uint8)).astype(np.intp)
            self.inertia_ = _dot(distances, hist.counts)
        else:
            labels, distances = assign(X.astype(np.float64, copy=False), state.centres)
            self.labels_ = labels
            self.inertia_ = _dot(distances, weights)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Index of the nearest centre for every row of ``X``, ndarray of shape (n,), intp."""
        if not hasattr(self, "cluster_centers_"):
            msg = "this KMeans is not fitted yet: call fit() first"
            raise ValueError(msg)
        X = _check_points(X)
        if X.shape[1] != self.cluster_centers_.shape[1]:
            msg = (f"X has {X.shape[1]} features, the model was fitted with "
                   f"{self.cluster_centers_.shape[1]}")
            raise ValueError(msg)
        if X.dtype == np.uint8 and X.shape[1] == 3:
            # One search per distinct colour, then a lookup per pixel.
            colors = color_histogram(X).colors
            labels = assign(colors.astype(np.float64), self.cluster_centers_)[0]
            return map_pixels(X, colors, labels.astype(np.uint8)).astype(np.intp)
        return assign(X.astype(np.float64, copy=False), self.cluster_centers_)[0]

    def fit_predict(self, X: np.ndarray, y: object = None,
                    sample_weight: np.ndarray | None = None) -> np.ndarray:
        """Fit, then return ``labels_`` (``y`` is ignored, as in scikit-learn)."""
        return self.fit(X, sample_weight=sample_weight).labels_


def validate_params(k: object, init: object, seed: object, max_iter: object, tol: object) -> None:
    """Raise ValueError naming the value if any k-means parameter is invalid.

    The ranges and messages are those of :mod:`kpal.options`, shared by every
    way into kpal; ``init`` may also be an array of starting centres here.
    """
    for name, value in (("k", k), ("seed", seed), ("max_iter", max_iter), ("tol", tol)):
        options.check_number(name, value)
    if not isinstance(init, np.ndarray) and init not in INITS:
        msg = f"init={init!r} must be one of {', '.join(map(repr, INITS))} or an array"
        raise OptionError(msg)


def _check_points(X: object) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        msg = f"X must be a non-empty 2-D array of shape (n_samples, n_features), got {X.shape}"
        raise ValueError(msg)
    if X.dtype.kind not in "uif":
        msg = f"X must hold numbers, got dtype {X.dtype}"
        raise ValueError(msg)
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        msg = "X must not contain NaN or infinity"
        raise ValueError(msg)
    if X.dtype.kind in "iuf" and X.dtype.itemsize > 1 and np.abs(X).max() > _MAX_ABS_X:
        # Squared distances would overflow to infinity: labels and inertia would be wrong.
        msg = f"X holds values of magnitude up to {float(np.abs(X).max()):.3g}, over {_MAX_ABS_X:g}"
        raise ValueError(msg)
    return X


#: Largest magnitude of a coordinate (as GaussianMixture): squares of differences stay finite.
_MAX_ABS_X = 1e100


def _check_weights(sample_weight: object, n: int) -> np.ndarray:
    if sample_weight is None:
        return np.ones(n, dtype=np.float64)
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,):
        msg = f"sample_weight has shape {w.shape}, expected ({n},)"
        raise ValueError(msg)
    if not np.isfinite(w).all() or (w < 0).any():
        msg = "sample_weight must be finite and non-negative"
        raise ValueError(msg)
    return w


def initial_centres(
    init: str | np.ndarray, points: np.ndarray, weights: np.ndarray, k: int,
    rng: np.random.Generator, kernels: ModuleType | None = None,
) -> np.ndarray:
    """The ``k`` starting centres ``init`` names (or ``init`` itself, an array).

    ``"k-means++"`` draws them by greedy k-means++ (:func:`kpal.cluster.init.kmeans_plusplus`,
    compiled with ``kernels``: the same centres), ``"random"`` by weight; ``rng``
    supplies the draws. ndarray of shape (k, d), float64.
    """
    if isinstance(init, np.ndarray):
        centres = np.array(init, dtype=np.float64)
        if centres.shape != (k, points.shape[1]):
            msg = f"init has shape {centres.shape}, expected ({k}, {points.shape[1]})"
            raise ValueError(msg)
        return centres
    if init == "random":
        return random_init(points, weights, k, rng)
    return kmeans_plusplus(points, weights, k, rng, kernels=kernels)


def tolerance(points: np.ndarray, weights: np.ndarray, tol: float) -> float:
    """Absolute centre-shift threshold: ``tol`` times the mean weighted variance.

    ``points`` may be float64 or uint8 colours: each block is copied into the
    same float64 buffer first, so the sums (and the threshold, which decides
    when Lloyd stops) are the same bit for bit either way.
    """
    total = weights.sum()
    first = np.zeros(points.shape[1])
    second = np.zeros(points.shape[1])
    block = np.empty((min(points.shape[0], _ASSIGN_BLOCK), points.shape[1]))
    for start in range(0, points.shape[0], _ASSIGN_BLOCK):
        x = block[: min(_ASSIGN_BLOCK, points.shape[0] - start)]
        np.copyto(x, points[start : start + x.shape[0]])
        w = weights[start : start + x.shape[0]]
        first += np.einsum("n,nd->d", w, x)
        # E[x^2] - E[x]^2 per feature, without an (n, d) temporary.
        second += np.einsum("n,nd,nd->d", w, x, x)
    mean = first / total
    variance = second / total - mean**2
    return float(np.maximum(variance, 0.0).mean() * tol)


@dataclass
class LloydState:
    """Centres and the Hamerly bounds that let Lloyd skip settled points.

    Attributes
    ----------
    centres : ndarray of shape (k, d), float64
    labels : ndarray of shape (n,), intp
        Current cluster of every point.
    upper : ndarray of shape (n,), float64
        Upper bound of each point's distance to its own centre.
    lower : ndarray of shape (n,), float64
        Lower bound of each point's distance to every other centre.
    n_iter : int
        Lloyd iterations (centre updates) run.
    """

    centres: np.ndarray
    labels: np.ndarray
    upper: np.ndarray
    lower: np.ndarray
    n_iter: int = 0


def start_state(points: np.ndarray, centres: np.ndarray,
                kernels: ModuleType | None = None) -> LloydState:
    """Assign every point from scratch: exact labels and tight bounds."""
    if kernels is not None:
        labels, upper, lower = kernels.nearest_two(points, centres)
    else:
        labels, upper, lower = _nearest_two(points, centres)
    return LloydState(centres.copy(), labels, upper, lower)


def lloyd(
    points: np.ndarray,
    weights: np.ndarray,
    centres: np.ndarray,
    max_iter: int,
    tol: float,
    state: LloydState | None = None,
    point_sums: np.ndarray | None = None,
    kernels: ModuleType | None = None,
) -> LloydState:
    """Run Lloyd iterations; assumes valid input.

    Each iteration moves every centre to the weighted mean of its points,
    then reassigns the points. Hamerly's bounds skip the points that provably
    keep their centre: a point is only searched when its distance to its own
    centre may exceed both half the distance from that centre to the next
    one and the point's lower bound to the others; the search itself only
    looks at the centres near the point's own (:class:`Neighbours`). The
    cluster sums are updated from the points that changed cluster only.

    Converged when an assignment leaves every label unchanged (the centres
    are then a fixed point), or when the total squared centre shift is at most
    ``tolerance(points, weights, tol)``. A cluster that loses all its points
    takes over the point that adds most to the inertia, so ``k`` clusters stay
    in use. The returned labels always match the returned centres.

    Parameters
    ----------
    points : ndarray of shape (n, d), float64
    weights : ndarray of shape (n,), float64, all > 0
    centres : ndarray of shape (k, d), float64, ``k <= n``
    max_iter : int
    tol : float
    state : LloydState, optional
        Labels and valid (possibly loose) bounds for ``centres``, e.g. carried
        over from a coarser histogram; by default every point is assigned.
        Its arrays are updated in place and returned.
    point_sums : ndarray of shape (n, d), float64, optional
        ``weights * points`` exactly (default: that product, computed when
        needed; exact for integer points and weights). Cells of a
        coarse histogram pass the integer sums of their colours, of which
        their means are rounded quotients: with integer sums and weights the
        cluster sums and masses are exact integers in any order of addition,
        so the centres are the same however the points are visited.
    kernels : module, optional
        ``kpal.cluster._kmeans_fast`` (from :func:`kpal._jit.load`) to assign
        the points with compiled loops: the same labels, so the same result.

    Returns
    -------
    LloydState
    """
    threshold = tolerance(points, weights, tol)
    carried = state is not None
    if carried:
        state.centres = centres.copy()
        state.n_iter = 0
    else:
        state = start_state(points, centres, kernels)
    k = centres.shape[0]
    neighbours = Neighbours(state.centres)
    if carried:
        _assign_step(points, state, neighbours, None, kernels)
    sums = _cluster_sums(points, weights, point_sums, state.labels, k, kernels)
    mass = np.bincount(state.labels, weights=weights, minlength=k)
    if kernels is not None and k > 1 and points.shape[0] < kernels.PARALLEL_POINTS:
        # Small levels: the whole loop compiled (Python between iterations cost
        # more than the iterations). Large ones: one parallel step per iteration.
        return _compiled_loop(points, weights, point_sums, state, sums, mass, max_iter,
                              threshold, kernels)
    for iteration in range(max_iter):
        state.n_iter = iteration + 1
        if not mass.all():
            _reseed_empty(points, weights, state, np.flatnonzero(mass == 0))
            sums = _cluster_sums(points, weights, point_sums, state.labels, k, kernels)
            mass = np.bincount(state.labels, weights=weights, minlength=k)
        new_centres = sums / mass[:, None]
        shift = _distance(new_centres, state.centres)
        state.centres = new_centres
        neighbours.move(new_centres, shift)
        moved, old_labels = _assign_step(points, state, neighbours, shift, kernels)
        if moved.size:
            # Integer weights keep the masses exact, so an emptied cluster is
            # exactly 0.
            w = weights[moved]
            mass -= np.bincount(old_labels, weights=w, minlength=k)
            mass += np.bincount(state.labels[moved], weights=w, minlength=k)
            moved_points = points[moved]
            moved_sums = None if point_sums is None else point_sums[moved]
            sums -= _cluster_sums(moved_points, w, moved_sums, old_labels, k)
            sums += _cluster_sums(moved_points, w, moved_sums, state.labels[moved], k)
        if moved.size == 0 or _sequential_sum(shift * shift) <= threshold:
            break
    return state


def _sequential_sum(values: np.ndarray) -> float:
    """Sum in index order (a running sum), as a compiled loop adds: the same bits on both paths."""
    return float(np.cumsum(values)[-1])


def _compiled_loop(points: np.ndarray, weights: np.ndarray, point_sums: np.ndarray | None,
                   state: LloydState, sums: np.ndarray, mass: np.ndarray, max_iter: int,
                   threshold: float, kernels: ModuleType) -> LloydState:
    """The iterations of :func:`lloyd` in compiled code; Python only reseeds empty clusters."""
    centres = np.array(state.centres, dtype=np.float64, order="C")
    iteration = 0
    while iteration < max_iter:
        state.n_iter = iteration + 1
        if not mass.all():
            state.centres = centres
            _reseed_empty(points, weights, state, np.flatnonzero(mass == 0))
            sums = _cluster_sums(points, weights, point_sums, state.labels, centres.shape[0],
                                 kernels)
            mass = np.bincount(state.labels, weights=weights, minlength=centres.shape[0])
        iteration, done = kernels.lloyd_loop(
            points, weights, point_sums, state.labels, state.upper, state.lower, centres, sums,
            mass, iteration, max_iter, threshold, _MARGIN, _RESORT_DRIFT, _NEAR)
        state.n_iter = iteration
        if done:
            break
    state.centres = centres
    return state


def _cluster_sums(points: np.ndarray, weights: np.ndarray, point_sums: np.ndarray | None,
                  labels: np.ndarray, k: int,
                  kernels: ModuleType | None = None) -> np.ndarray:
    """Sums of ``point_sums`` (default ``weights * points``) per cluster, shape (k, d)."""
    if kernels is not None and point_sums is None:
        return kernels.cluster_sums(points, weights, labels, k)
    sums = np.empty((k, points.shape[1]), dtype=np.float64)
    for d in range(points.shape[1]):
        w = weights * points[:, d] if point_sums is None else point_sums[:, d]
        sums[:, d] = np.bincount(labels, weights=w, minlength=k)
    return sums


def _assign_step(
    points: np.ndarray, state: LloydState, neighbours: Neighbours, shift: np.ndarray | None,
    kernels: ModuleType | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Move the bounds by the centres' ``shift`` (if given), then reassign the points.

    Returns the indices of the points that changed cluster and their old labels.
    """
    k = state.centres.shape[0]
    if kernels is not None and k > 1:
        update = shift is not None
        if update:
            near_shift, far_gap = neighbours.local_bounds(shift)
        else:
            shift = near_shift = far_gap = np.zeros(k)
        previous = np.empty(points.shape[0], dtype=np.int32)  # k <= 256
        kernels.hamerly_step(
            points, state.centres, state.labels, state.upper, state.lower, update, shift,
            near_shift, far_gap, neighbours.half_gap, neighbours.order, neighbours.sorted_gaps,
            neighbours.drift, float(neighbours.drift.max()), _MARGIN, previous)
        moved = np.flatnonzero(previous >= 0)
        return moved, previous[moved]
    if shift is not None:
        state.upper += shift[state.labels]
        if k > 1:
            near_shift, far_gap = neighbours.local_bounds(shift)
            # Centres near a point's own came at most their largest shift
            # closer; the far ones are still beyond far_gap - upper.
            state.lower -= near_shift[state.labels]
            np.minimum(state.lower, far_gap[state.labels] - state.upper, out=state.lower)
    return _hamerly_assign(points, state, neighbours)


def _hamerly_assign(
    points: np.ndarray, state: LloydState, neighbours: Neighbours
) -> tuple[np.ndarray, np.ndarray]:
    """Reassign the points whose bounds do not prove their label.

    Returns the indices of the points that changed cluster and their old
    labels. Works on blocks of ``_ASSIGN_BLOCK`` points, so its temporaries
    stay small whatever the number of points.
    """
    nothing = np.empty(0, dtype=np.intp)
    if state.centres.shape[0] == 1:
        return nothing, nothing
    moved, old = [nothing], [nothing]
    for start in range(0, points.shape[0], _ASSIGN_BLOCK):
        block = slice(start, start + _ASSIGN_BLOCK)
        part = LloydState(state.centres, state.labels[block], state.upper[block],
                          state.lower[block])
        block_moved, block_old = _hamerly_assign_block(points[block], part, neighbours)
        moved.append(block_moved + start)
        old.append(block_old)
    return np.concatenate(moved), np.concatenate(old)


#: Points per block of :func:`_hamerly_assign`.
_ASSIGN_BLOCK = 1 << 18


def _hamerly_assign_block(
    points: np.ndarray, state: LloydState, neighbours: Neighbours
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_hamerly_assign` on one block; ``state`` holds views into the whole state."""
    centres, labels = state.centres, state.labels
    nothing = np.empty(0, dtype=np.intp)
    bound = np.maximum(neighbours.half_gap[labels], state.lower)
    # Only a clear margin proves a label (see kpal.cluster.nearest): then no
    # other centre is as near, and the label is the exact nearest.
    bound -= _MARGIN
    loose = np.flatnonzero(state.upper > bound)
    if loose.size == 0:
        return nothing, nothing
    old = labels[loose]
    tight = _distance(points[loose], centres[old])
    state.upper[loose] = tight
    keep = tight > bound[loose]
    loose, tight, old = loose[keep], tight[keep], old[keep]
    if loose.size == 0:
        return nothing, nothing
    new_labels, first, second = neighbours.search(points[loose], old, tight)
    labels[loose] = new_labels
    state.upper[loose] = first
    state.lower[loose] = second
    changed = new_labels != old
    return loose[changed], old[changed]


def _reseed_empty(
    points: np.ndarray, weights: np.ndarray, state: LloydState, empty: np.ndarray
) -> None:
    """Move each empty cluster onto the point adding most to the inertia.

    As in scikit-learn: farthest points first (here weighted, as the inertia
    counts them), each taken from a cluster that keeps at least one point.
    """
    labels = state.labels
    # Distances are recomputed: the upper bounds may be loose.
    cost = _distance(points, state.centres[labels], squared=True) * weights
    order = np.argsort(-cost, kind="stable")
    sizes = np.bincount(labels, minlength=state.centres.shape[0])
    taken = 0
    for point in order:
        if taken == empty.size:
            break
        if sizes[labels[point]] > 1:
            sizes[labels[point]] -= 1
            labels[point] = empty[taken]
            # The point will be its cluster's centre; nothing is known about
            # the others, so force a full check next time. (The jump of the
            # centre enters the shift, which keeps every other bound valid.)
            state.upper[point] = 0.0
            state.lower[point] = 0.0
            taken += 1


def fit_histogram(
    colors: np.ndarray,
    counts: np.ndarray,
    k: int,
    *,
    init: str,
    rng: np.random.Generator,
    max_iter: int,
    tol: float,
    polish: bool = False,
    kernels: ModuleType | None = None,
) -> LloydState:
    """Cluster a colour histogram into ``k`` centres, coarse to fine; assumes valid input.

    Large histograms are first merged into cells of 8, 4 and 2 levels per
    channel (:func:`reduce_histogram`). The initial centres are drawn on the
    coarsest cells (for small ``k``, several draws that get a few iterations
    each, the one with the lowest inertia going on: a cheap guard against a
    poor local optimum), Lloyd runs there, and each finer level starts from
    the bounds the coarser one proved, so only points near a cluster boundary
    are searched again. Intermediate levels get at most ``_CELL_ITER``
    iterations, as they only prepare the next one. The last level is the
    exact histogram, where Lloyd runs to ``tol`` / ``max_iter`` like plain
    Lloyd, so the result is a Lloyd fixed point of the exact colours (with
    ``tol=0``). Only levels above ``_CONVERGE_POINTS`` points (images of
    several megapixels) are cut to ``_POLISH_ITER`` iterations: there the
    finest cells already brought the centres close, at a fraction of the cost
    (on a 12 MP photo at k=256 this costs about 0.03 dB of PSNR).

    Parameters
    ----------
    colors : ndarray of shape (n_colors, 3), uint8
        Distinct colours, ``n_colors > k``.
    counts : ndarray of shape (n_colors,)
        Pixel count of each colour, all > 0.
    k : int
    init : {"k-means++", "random"}
    rng : numpy.random.Generator
    max_iter : int
        Iterations allowed at each level.
    tol : float
    polish : bool, default False
        Give every level above ``_RESTART_POINTS`` points only
        ``_POLISH_ITER`` iterations, whatever its size (as levels above
        ``_CONVERGE_POINTS`` always get): for the histogram of a random sample
        of the pixels, itself an approximation, so that fitting a sample costs
        less than fitting every pixel (bench/bench_sample.py).
    kernels : module, optional
        Compiled kernels (see :func:`lloyd`); the result is the same.

    Returns
    -------
    LloydState
        Centres, labels of ``colors`` and bounds; ``n_iter`` sums all levels.
    """
    levels = _levels(colors, counts, k, kernels)
    coarse = next(levels)
    points, weights, _, point_sums = coarse
    restarts = _restarts(k, points.shape[0])
    # With several draws, each gets a few iterations (most of the descent)
    # and only the best one is run to convergence.
    trial_iter = min(max_iter, _trial_iter(k)) if restarts > 1 else max_iter
    best, best_inertia = None, np.inf
    for _ in range(restarts):
        centres = initial_centres(init, points, weights, k, rng, kernels)
        state = lloyd(points, weights, centres, trial_iter, tol, point_sums=point_sums,
                      kernels=kernels)
        inertia = _dot(weights, _distance(points, state.centres[state.labels], squared=True))
        if best is None or inertia < best_inertia:  # the first draw, whatever its inertia
            best, best_inertia = state, inertia
    state, n_iter = best, best.n_iter
    if restarts > 1 and n_iter < max_iter:
        state = lloyd(points, weights, state.centres, max_iter - n_iter, tol, state=state,
                      point_sums=point_sums, kernels=kernels)
        n_iter += state.n_iter
    del points, weights, point_sums
    coarse = _carried_part(coarse)
    # Levels are made one at a time: only two are ever held (memory).
    for fine in levels:
        level_iter = max_iter if fine[2] is None else min(max_iter, _CELL_ITER)
        large = fine[0].shape[0] > (_RESTART_POINTS if polish else _CONVERGE_POINTS)
        if large:
            # Large levels only polish what the cells converged to: each of
            # their iterations costs as much as many iterations on the cells.
            level_iter = min(max_iter, _POLISH_ITER)
        carried = _carry(state, coarse, fine, kernels)
        state = coarse = None  # the coarse level is not needed any more (memory)
        state = lloyd(fine[0], fine[1], carried.centres, level_iter, tol, state=carried,
                      point_sums=fine[3], kernels=kernels)
        n_iter += state.n_iter
        coarse = _carried_part(fine)
        del fine
    state.n_iter = n_iter
    return state


def _carried_part(level: tuple) -> tuple:
    """What :func:`_carry` reads of a level once Lloyd is done with it: the means and cells.

    The weights and exact sums (32 bytes per cell) are dropped before the next
    level is made, which is when :func:`fit_histogram` holds the most memory.
    """
    return level[0], None, level[2], None


def _levels(
    colors: np.ndarray, counts: np.ndarray, k: int, kernels: ModuleType | None
) -> Iterator[tuple]:
    """Yield the levels of :func:`fit_histogram`, coarse to fine, each made when asked for.

    A level is ``(points, weights, cell of each colour, exact point sums)``;
    the last one is the exact histogram, with ``None`` for the cells and for
    the sums (``weights * points`` is exact there, and not storing it saves
    24 bytes per colour).
    """
    n_colors = colors.shape[0]
    reduce = cell_sums if kernels is None else kernels.cell_sums
    for bits in _COARSE_BITS if n_colors > _RESTART_POINTS else ():
        means, cell_weights, sums, cell_of_color = reduce(colors, counts, bits)
        # A level pays off if it has room for the clusters and merges a lot.
        if means.shape[0] >= _COARSE_FACTOR * k and means.shape[0] <= _COARSE_MERGE * n_colors:
            yield means, cell_weights, cell_of_color, sums
        del means, cell_weights, sums, cell_of_color
    # The compiled kernels read uint8 colours as they are (x - c is the same
    # float64 either way): 24 bytes per colour fewer than float64 points.
    points = colors if kernels is not None else colors.astype(np.float64)
    # Float64 counts (as :func:`kpal.cluster.quantize` passes them) are used as they are.
    yield points, counts.astype(np.float64, copy=False), None, None


def _carry(state: LloydState, coarse: tuple, fine: tuple,
           kernels: ModuleType | None = None) -> LloydState:
    """Bounds for the points of a finer level from the cells that hold them.

    A point is at most ``r = |x - m|`` from the mean ``m`` of its coarse cell,
    so the cell's bounds widened by ``r`` are valid for the point.
    """
    coarse_means, coarse_of_color = coarse[0], coarse[2]
    fine_means, fine_of_color = fine[0], fine[2]
    if fine_of_color is None:  # the fine level is the exact histogram
        cell = coarse_of_color
    else:
        cell = np.empty(fine_means.shape[0], dtype=np.intp)
        cell[fine_of_color] = coarse_of_color
    if kernels is not None:
        return LloydState(state.centres, *kernels.carry(
            state.labels, state.upper, state.lower, coarse_means, cell, fine_means))
    radius = np.empty(fine_means.shape[0])
    for start in range(0, radius.shape[0], _ASSIGN_BLOCK):  # bounded temporaries
        stop = start + _ASSIGN_BLOCK
        radius[start:stop] = _distance(fine_means[start:stop], coarse_means[cell[start:stop]])
    return LloydState(
        state.centres,
        state.labels[cell],
        state.upper[cell] + radius,
        np.maximum(state.lower[cell] - radius, 0.0),
    )


def _restarts(k: int, n_points: int) -> int:
    """Initial draws compared on the first level: affordable for small k and few points."""
    if n_points * k <= _TINY_WORK:
        return _TINY_RESTARTS
    if n_points > _RESTART_POINTS or k > 64:
        return 1
    return 8 if k <= 16 else 4


def _trial_iter(k: int) -> int:
    """Iterations each of several initial draws gets before they are compared."""
    return _TRIAL_ITER if k <= 16 else _TRIAL_ITER_LARGE_K


#: Iterations each of several initial draws gets before they are compared, for
#: k <= 16 ...
_TRIAL_ITER = 10
#: ... and above: with more clusters the ranking of the draws settles later
#: (china at k = 64: the draw kept after 10 iterations ends 0.08 dB below
#: scikit-learn, after 25 iterations 0.02 dB).
_TRIAL_ITER_LARGE_K = 25
#: A first level with at most this many point-centre pairs (a few hundred
#: colours: grey photos, flat graphics) is cheap enough for _TINY_RESTARTS
#: draws: its k-means is a small problem with many local optima, where one
#: or a few draws fell up to 0.1 dB short of scikit-learn.
_TINY_WORK = 1 << 16
_TINY_RESTARTS = 16
#: Several initial draws are compared only on a first level this small.
_RESTART_POINTS = 20_000
#: Cell sizes of the coarse levels (bits kept per channel), coarse to fine.
_COARSE_BITS = (5, 6, 7)
#: Iterations on an intermediate level of cells: it only prepares the next.
_CELL_ITER = 20
#: Levels with more points than this get at most ``_POLISH_ITER`` iterations
#: (photos up to about 1 MP converge on their exact colours).
_CONVERGE_POINTS = 250_000
_POLISH_ITER = 2
#: A level is used only if it holds at least this many points per centre ...
#: (with fewer, a photo whose pixels crowd into a few cells, a dark sky or a
#: black surround, gets too few centres there, and the finer levels cannot
#: move enough of them back: 4 per centre cost up to 0.13 dB at k = 256)
_COARSE_FACTOR = 32
#: ... and at most this fraction of the exact histogram's colours.
_COARSE_MERGE = 0.6


def nearest_palette_colors(
    colors: np.ndarray, palette: np.ndarray, state: LloydState | None = None,
    kernels: ModuleType | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest palette entry of every colour, computed exactly.

    Parameters
    ----------
    colors : ndarray of shape (n_colors, 3), uint8
    palette : ndarray of shape (k, 3), uint8
    state : LloydState, optional
        The clustering that produced ``palette`` (``palette[i]`` is
        ``state.centres[i]`` rounded): its bounds, widened by how far rounding
        moved each centre, settle most colours without a search.
    kernels : module, optional
        Compiled kernels (``kpal.cluster._kmeans_fast``): an exact integer
        search from the clustering's labels, with the same result.

    Returns
    -------
    labels : ndarray of shape (n_colors,), intp
        Index of the nearest palette colour (ties: lowest index).
    distances : ndarray of shape (n_colors,), float64
        Its squared distance (an integer value).
    """
    centres = palette.astype(np.float64)
    if kernels is not None and palette.shape[0] > 1:
        if state is not None:
            hint = state.labels
        else:
            cells = reduce_histogram(colors, np.ones(colors.shape[0]), 6)
            hint = assign(cells[0], centres)[0][cells[2]]
        return kernels.nearest_palette(colors, palette, hint)
    points = colors.astype(np.float64)
    if palette.shape[0] == 1 or (state is None and colors.shape[0] <= _RESTART_POINTS):
        return assign(points, centres)
    if state is None:
        # No clustering to start from (a palette fitted on a sample): search
        # the cells of 4 levels per channel fully, then carry their bounds.
        cells = reduce_histogram(colors, np.ones(colors.shape[0]), 6)
        state = _carry(start_state(cells[0], centres), cells, (points, None, None))
    moved = _distance(centres, state.centres)
    top = int(np.argmax(moved))
    runner_up = float(np.max(np.delete(moved, top)))
    neighbours = Neighbours(centres)
    half_gap = neighbours.half_gap
    labels = state.labels.copy()
    # Colours are independent: blocks keep every temporary small.
    for start in range(0, colors.shape[0], _ASSIGN_BLOCK):
        block = slice(start, start + _ASSIGN_BLOCK)
        block_labels = labels[block]  # a view: searched labels are written through it
        upper = state.upper[block] + moved[block_labels]
        lower = state.lower[block] - np.where(block_labels == top, runner_up, moved[top])
        # The bounds went through float rounding: only a clear margin counts as
        # proof, every other colour is searched exactly (integer-valued floats).
        settled = upper + _MARGIN < np.maximum(half_gap[block_labels], lower)
        search = np.flatnonzero(~settled)
        if search.size:
            block_labels[search] = neighbours.search(
                points[block][search], block_labels[search], upper[search], exact=True
            )[0]
    del points
    return labels, _palette_distances(colors, palette, labels)


def _palette_distances(colors: np.ndarray, palette: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Squared distance from each colour to its palette entry, exact, in bounded blocks."""
    out = np.empty(colors.shape[0], dtype=np.float64)
    entries = palette.astype(np.int32)
    for start in range(0, colors.shape[0], _ASSIGN_BLOCK):
        stop = start + _ASSIGN_BLOCK
        diff = colors[start:stop].astype(np.int32) - entries[labels[start:stop]]
        diff *= diff
        out[start:stop] = diff.sum(axis=1)
    return out

