"""Initial centres for k-means: greedy k-means++ and weighted random choice.

Both work on weighted points (distinct colours weighted by their pixel
counts), which is the same as running on the expanded pixels: a colour held by
1000 pixels is 1000 times as likely to be picked.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

__all__ = ["INITS", "kmeans_plusplus", "random_init", "squared_distances"]

#: Names accepted by ``init=``.
INITS = ("k-means++", "random")


def squared_distances(points: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances from every point to each centre.

    Parameters
    ----------
    points : ndarray of shape (n, d), float64 (or uint8 colours)
    centre : ndarray of shape (d,) or (m, d), float64 (or uint8 colours)

    Returns
    -------
    ndarray of shape (n,) or (m, n), float64
        Computed per coordinate as ``sum((x - c)**2)`` without BLAS, so the
        result does not depend on the number of BLAS threads.
    """
    # float64 centres: uint8 colours minus uint8 colours would wrap around.
    centres = np.atleast_2d(np.asarray(centre, dtype=np.float64))
    out = np.zeros((centres.shape[0], points.shape[0]), dtype=np.float64)
    diff = np.empty_like(out)
    for dim in range(points.shape[1]):
        np.subtract(points[:, dim], centres[:, dim, None], out=diff)
        diff *= diff
        out += diff
    return out[0] if centre.ndim == 1 else out


def kmeans_plusplus(
    points: np.ndarray,
    weights: np.ndarray,
    k: int,
    rng: np.random.Generator,
    n_local_trials: int | None = None,
    kernels: ModuleType | None = None,
) -> np.ndarray:
    """Choose ``k`` initial centres by greedy k-means++ (Arthur & Vassilvitskii).

    Each new centre is drawn with probability proportional to weight times
    squared distance to the nearest centre so far; the greedy variant draws
    ``2 + int(log k)`` candidates and keeps the one that lowers the total
    potential most, as scikit-learn does.

    Every sum is a running sum in point order (``np.cumsum``), so a compiled
    loop adding the same terms in the same order gets the same bits: the
    compiled kernel (``kernels``) chooses the same centres.

    Parameters
    ----------
    points : ndarray of shape (n_points, d), float64
        Must hold at least ``k`` points with positive weight.
    weights : ndarray of shape (n_points,), float64
        Non-negative weights (pixel counts).
    k : int
    rng : numpy.random.Generator
    n_local_trials : int, optional
        Candidates per step; default ``2 + int(log k)``.
    kernels : module, optional
        ``kpal.cluster._kmeans_fast``: the same centres, by compiled loops.

    Returns
    -------
    ndarray of shape (k, d), float64
    """
    n_points, dim = points.shape
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(k))
    # All the draws at once: the same stream as one draw per step.
    draws = rng.uniform(size=1 + (k - 1) * n_local_trials)
    if kernels is not None:
        return kernels.kmeans_plusplus(points, weights.astype(np.float64, copy=False), k,
                                       draws, n_local_trials)
    centres = np.empty((k, dim), dtype=np.float64)
    cumulative = np.cumsum(weights)
    first = _weighted_pick(cumulative, weights, draws[:1] * cumulative[-1])[0]
    centres[0] = points[first]
    closest = squared_distances(points, centres[0])
    mass = weights * closest
    cumulative = np.cumsum(mass)
    for c in range(1, k):
        # Sample candidates proportionally to w * D(x)^2 by inverting the CDF.
        targets = draws[1 + (c - 1) * n_local_trials : 1 + c * n_local_trials] * cumulative[-1]
        candidates = _weighted_pick(cumulative, mass, targets)
        trial = np.minimum(closest, squared_distances(points, points[candidates]))
        trial_mass = trial * weights
        trial_cumulative = np.cumsum(trial_mass, axis=1)
        best = int(np.argmin(trial_cumulative[:, -1]))
        closest, mass, cumulative = trial[best], trial_mass[best], trial_cumulative[best]
        centres[c] = points[candidates[best]]
    return centres


def _weighted_pick(cumulative: np.ndarray, mass: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Indices whose cumulative mass first exceeds each target (inverse CDF)."""
    picked = np.searchsorted(cumulative, targets, side="right")
    # Rounding can push a target past the last cumulative value; also never
    # pick a zero-mass point (it already is a centre or has no weight): take
    # the next point with mass, else the last one.
    picked = np.minimum(picked, mass.shape[0] - 1)
    zero = mass[picked] <= 0
    if np.any(zero):
        positive = np.flatnonzero(mass > 0)
        if positive.size:
            picked[zero] = positive[
                np.minimum(np.searchsorted(positive, picked[zero]), positive.size - 1)
            ]
    return picked


def random_init(
    points: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """Choose ``k`` distinct points at random, with probability proportional to weight.

    Parameters
    ----------
    points : ndarray of shape (n_points, d), float64
        Must hold at least ``k`` points with positive weight.
    weights : ndarray of shape (n_points,), float64
    k : int
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of shape (k, d), float64
    """
    p = weights / weights.sum()
    chosen = rng.choice(points.shape[0], size=k, replace=False, p=p)
    return points[np.sort(chosen)].astype(np.float64, copy=True)
