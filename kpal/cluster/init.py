"""Initial centres for k-means: greedy k-means++ and weighted random choice.

Both work on weighted points (distinct colours weighted by their pixel
counts), which is the same as running on the expanded pixels: a colour held by
1000 pixels is 1000 times as likely to be picked.
"""

from __future__ import annotations

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
) -> np.ndarray:
    """Choose ``k`` initial centres by greedy k-means++ (Arthur & Vassilvitskii).

    Each new centre is drawn with probability proportional to weight times
    squared distance to the nearest centre so far; the greedy variant draws
    ``2 + int(log k)`` candidates and keeps the one that lowers the total
    potential most, as scikit-learn does.

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

    Returns
    -------
    ndarray of shape (k, d), float64
    """
    n_points, dim = points.shape
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(k))
    centres = np.empty((k, dim), dtype=np.float64)
    first = _weighted_pick(weights, rng.uniform(size=1) * weights.sum())[0]
    centres[0] = points[first]
    closest = squared_distances(points, centres[0])
    # einsum, not BLAS: the sums must not depend on the BLAS thread count.
    potential = float(np.einsum("n,n->", weights, closest))
    for c in range(1, k):
        # Sample candidates proportionally to w * D(x)^2 by inverting the CDF.
        targets = rng.uniform(size=n_local_trials) * potential
        candidates = _weighted_pick(weights * closest, targets)
        trial = np.minimum(closest, squared_distances(points, points[candidates]))
        trial_potentials = np.einsum("tn,n->t", trial, weights)
        best = int(np.argmin(trial_potentials))
        potential = float(trial_potentials[best])
        closest = trial[best]
        centres[c] = points[candidates[best]]
    return centres


def _weighted_pick(mass: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Indices whose cumulative mass first reaches each target (inverse CDF)."""
    cumulative = np.cumsum(mass)
    picked = np.searchsorted(cumulative, targets, side="right")
    # Rounding can push a target past the last cumulative value; also never
    # pick a zero-mass point (it already is a centre or has no weight).
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
