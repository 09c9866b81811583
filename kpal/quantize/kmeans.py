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

import numbers

import numpy as np

from kpal.quantize.histogram import color_histogram
from kpal.quantize.init import INITS, kmeans_plusplus, random_init

__all__ = ["KMeans", "assign", "fit_histogram", "lloyd", "nearest_palette_colors"]

#: Elements of one (rows x k) distance block: 2**18 float64 = 2 MiB per buffer,
#: so distances never exist for more than one chunk of points.
_BLOCK = 1 << 18


class KMeans:
    """k-means clustering by Lloyd's algorithm.

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
        Maximum number of Lloyd iterations.
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
        Lloyd iterations run.

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

    def fit(self, X: np.ndarray, sample_weight: np.ndarray | None = None) -> KMeans:
        """Compute the clusters of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Points; uint8 RGB pixels of shape (n, 3) are clustered through
            their colour histogram (same result, less work).
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of every sample (default 1).

        Returns
        -------
        KMeans
            ``self``, fitted.
        """
        validate_params(self.k, self.init, self.seed, self.max_iter, self.tol)
        X = _check_points(X)
        weights = _check_weights(sample_weight, X.shape[0])
        n_positive = int(np.count_nonzero(weights))
        if n_positive < self.k:
            msg = f"k={self.k} is more than the {n_positive} samples with positive weight"
            raise ValueError(msg)
        if X.dtype == np.uint8 and X.shape[1] == 3:
            hist = color_histogram(X, None if sample_weight is None else weights)
            points, point_weights = hist.colors.astype(np.float64), hist.counts.astype(np.float64)
        else:
            points, point_weights = X.astype(np.float64), weights
        rng = np.random.default_rng(self.seed)
        keep = point_weights > 0
        if not keep.all():
            points, point_weights = points[keep], point_weights[keep]
        if points.shape[0] < self.k:
            msg = f"k={self.k} is more than the {points.shape[0]} distinct samples"
            raise ValueError(msg)
        centres = _initial_centres(self.init, points, point_weights, self.k, rng)
        centres, n_iter = lloyd(points, point_weights, centres, self.max_iter, self.tol)
        self.cluster_centers_ = centres
        self.n_iter_ = n_iter
        labels, distances = assign(X.astype(np.float64, copy=False), centres)
        self.labels_ = labels
        self.inertia_ = float(distances @ weights)
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
        return assign(X.astype(np.float64, copy=False), self.cluster_centers_)[0]

    def fit_predict(self, X: np.ndarray, sample_weight: np.ndarray | None = None) -> np.ndarray:
        """Fit, then return ``labels_``."""
        return self.fit(X, sample_weight).labels_


def validate_params(k: object, init: object, seed: object, max_iter: object, tol: object) -> None:
    """Raise ValueError naming the value if any k-means parameter is invalid."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= 256:
        msg = f"k={k!r} must be an integer between 1 and 256"
        raise ValueError(msg)
    if isinstance(init, str):
        if init not in INITS:
            msg = f"init={init!r} must be one of {', '.join(map(repr, INITS))} or an array"
            raise ValueError(msg)
    elif not isinstance(init, np.ndarray):
        msg = f"init={init!r} must be one of {', '.join(map(repr, INITS))} or an array"
        raise ValueError(msg)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        msg = f"seed={seed!r} must be a non-negative integer"
        raise ValueError(msg)
    if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) or max_iter < 1:
        msg = f"max_iter={max_iter!r} must be an integer >= 1"
        raise ValueError(msg)
    if (isinstance(tol, bool) or not isinstance(tol, numbers.Real)
            or not np.isfinite(tol) or tol < 0):
        msg = f"tol={tol!r} must be a finite number >= 0"
        raise ValueError(msg)


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
    return X


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


def _initial_centres(
    init: str | np.ndarray, points: np.ndarray, weights: np.ndarray, k: int,
    rng: np.random.Generator,
) -> np.ndarray:
    if isinstance(init, np.ndarray):
        centres = np.array(init, dtype=np.float64)
        if centres.shape != (k, points.shape[1]):
            msg = f"init has shape {centres.shape}, expected ({k}, {points.shape[1]})"
            raise ValueError(msg)
        return centres
    if init == "random":
        return random_init(points, weights, k, rng)
    return kmeans_plusplus(points, weights, k, rng)


def tolerance(points: np.ndarray, weights: np.ndarray, tol: float) -> float:
    """Absolute centre-shift threshold: ``tol`` times the mean weighted variance."""
    total = weights.sum()
    mean = weights @ points / total
    variance = weights @ (points - mean) ** 2 / total
    return float(variance.mean() * tol)


def assign(
    points: np.ndarray, centres: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of every point, and the squared distance to it.

    Parameters
    ----------
    points : ndarray of shape (n, d), float64
    centres : ndarray of shape (k, d), float64

    Returns
    -------
    labels : ndarray of shape (n,), intp
    distances : ndarray of shape (n,), float64
        Squared Euclidean distance to the chosen centre (ties go to the
        lowest index).
    """
    n, dim = points.shape
    k = centres.shape[0]
    labels = np.empty(n, dtype=np.intp)
    distances = np.empty(n, dtype=np.float64)
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2: the argmin over c needs only
    # ||c||^2 - 2 x.c, one product per coordinate. The products are summed
    # coordinate by coordinate with numpy (no BLAS), so the labels cannot
    # depend on how many BLAS threads run.
    half_norms = 0.5 * np.einsum("kd,kd->k", centres, centres)
    rows = max(1, _BLOCK // k)
    block = np.empty((min(rows, n), k), dtype=np.float64)
    term = np.empty_like(block)
    for start in range(0, n, rows):
        x = points[start : start + rows]
        b, t = block[: x.shape[0]], term[: x.shape[0]]
        np.subtract(half_norms, np.multiply(x[:, 0, None], centres[:, 0], out=t), out=b)
        for d in range(1, dim):
            b -= np.multiply(x[:, d, None], centres[:, d], out=t)
        chosen = b.argmin(axis=1)
        labels[start : start + x.shape[0]] = chosen
        # Exact distance of the chosen centre, recomputed without cancellation.
        distances[start : start + x.shape[0]] = ((x - centres[chosen]) ** 2).sum(axis=1)
    return labels, distances


def lloyd(
    points: np.ndarray,
    weights: np.ndarray,
    centres: np.ndarray,
    max_iter: int,
    tol: float,
) -> tuple[np.ndarray, int]:
    """Run Lloyd iterations from ``centres``; assumes valid input.

    Converged when an assignment repeats the previous one exactly, or when
    the total squared centre shift is at most ``tolerance(points, weights, tol)``.
    A cluster that loses all its points is moved to the point farthest from
    its centre, so ``k`` clusters stay in use.

    Parameters
    ----------
    points : ndarray of shape (n, d), float64
    weights : ndarray of shape (n,), float64, all > 0
    centres : ndarray of shape (k, d), float64, k <= n
    max_iter : int
    tol : float

    Returns
    -------
    centres : ndarray of shape (k, d), float64
    n_iter : int
    """
    k, dim = centres.shape
    threshold = tolerance(points, weights, tol)
    centres = centres.copy()
    previous = None
    n_iter = 0
    for iteration in range(max_iter):
        n_iter = iteration + 1
        labels, distances = assign(points, centres)
        if previous is not None and np.array_equal(labels, previous):
            break
        new_centres = _weighted_means(points, weights, labels, distances, k, dim)
        shift = float(((new_centres - centres) ** 2).sum())
        centres = new_centres
        previous = labels
        if shift <= threshold:
            break
    return centres, n_iter


def _weighted_means(
    points: np.ndarray, weights: np.ndarray, labels: np.ndarray, distances: np.ndarray,
    k: int, dim: int,
) -> np.ndarray:
    """Centroids of the clusters; an empty cluster takes over the farthest point."""
    mass = np.bincount(labels, weights=weights, minlength=k)
    empty = np.flatnonzero(mass == 0)
    if empty.size:
        labels = labels.copy()
        # Farthest points first (weighted like the inertia they add), each
        # from a cluster that keeps at least one other point.
        order = np.argsort(-(distances * weights), kind="stable")
        counts = np.bincount(labels, minlength=k)
        taken = 0
        for point in order:
            if taken == empty.size:
                break
            if counts[labels[point]] > 1:
                counts[labels[point]] -= 1
                labels[point] = empty[taken]
                taken += 1
        mass = np.bincount(labels, weights=weights, minlength=k)
    sums = np.empty((k, dim), dtype=np.float64)
    for d in range(dim):
        sums[:, d] = np.bincount(labels, weights=weights * points[:, d], minlength=k)
    return sums / mass[:, None]


def fit_histogram(
    colors: np.ndarray,
    counts: np.ndarray,
    k: int,
    *,
    init: str,
    rng: np.random.Generator,
    max_iter: int,
    tol: float,
) -> tuple[np.ndarray, int]:
    """Cluster a colour histogram into ``k`` centres; assumes valid input.

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
    tol : float

    Returns
    -------
    centres : ndarray of shape (k, 3), float64
    n_iter : int
        Lloyd iterations run.
    """
    points = colors.astype(np.float64)
    weights = counts.astype(np.float64)
    centres = _initial_centres(init, points, weights, k, rng)
    return lloyd(points, weights, centres, max_iter, tol)


def nearest_palette_colors(
    colors: np.ndarray, palette: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest palette entry of every colour, computed exactly.

    Parameters
    ----------
    colors : ndarray of shape (n_colors, 3), uint8
    palette : ndarray of shape (k, 3), uint8

    Returns
    -------
    labels : ndarray of shape (n_colors,), intp
        Index of the nearest palette colour (ties: lowest index).
    distances : ndarray of shape (n_colors,), float64
        Its squared distance (an integer value).
    """
    # Integer-valued float64 arithmetic is exact here (every term < 2**20), so
    # the labels are the true nearest colours whatever the platform.
    return assign(colors.astype(np.float64), palette.astype(np.float64))
