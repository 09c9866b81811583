"""Nearest centres: the geometric primitives under k-means.

Exact nearest and second-nearest centre searches over bounded blocks of
points (:func:`assign`, :func:`_nearest_two`), and :class:`Neighbours`, the
per-centre lists of nearby centres that let Lloyd's algorithm and the final
palette assignment compare a point with a few candidates instead of all k.

Every label is defined exactly, whatever shortcut finds it: the nearest
centre is the one with the least ``squared_distance`` -- the float64 sum
``(x0 - c0)**2 + (x1 - c1)**2 + (x2 - c2)**2`` taken in that order -- and
ties go to the lowest centre index. Bounds only ever skip a centre that is
farther by more than ``_MARGIN`` (far above any rounding of the bounds), so
a compiled kernel that prunes differently finds the same labels, and no
label depends on the number of threads (no BLAS anywhere).
"""

from __future__ import annotations

import numpy as np

__all__ = ["assign", "Neighbours"]

#: Safety margin (in RGB levels) for bound tests whose result must be exact.
_MARGIN = 1e-6

#: Elements of one (rows x k) distance block: 2**18 float64 = 2 MiB per buffer,
#: so distances never exist for more than one chunk of points.
_BLOCK = 1 << 18

#: Centres per row whose shifts :meth:`Neighbours.local_bounds` tracks.
_NEAR = 32

#: Candidate lists up to this long are scanned row by row in
#: :meth:`Neighbours._search_group`; longer ones are reduced with argmin.
_SCAN_WIDTH = 16

#: Drift (in RGB levels) after which the neighbour order is sorted again.
_RESORT_DRIFT = 4.0

#: Searches of at most this many point-centre pairs compare every centre.
_DENSE_SEARCH = 1 << 16


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """``a . b`` without BLAS, whose rounding may depend on its thread count."""
    return float(np.einsum("n,n->", a, b.astype(np.float64, copy=False)))


def assign(points: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of every point, and the squared distance to it.

    Parameters
    ----------
    points : ndarray of shape (n, d), float64
    centres : ndarray of shape (k, d), float64

    Returns
    -------
    labels : ndarray of shape (n,), intp
        Ties go to the lowest index.
    distances : ndarray of shape (n,), float64
        Squared Euclidean distance to the chosen centre.
    """
    labels, nearest, _ = _nearest_two(points, centres, need_second=False, squared=True)
    return labels, nearest


def _nearest_two(
    points: np.ndarray, centres: np.ndarray, need_second: bool = True, squared: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest centre, its distance and the distance to the second nearest.

    Distances are Euclidean, or squared with ``squared``; with ``k == 1`` or
    without ``need_second`` the second distance is ``inf``.
    """
    n, dim = points.shape
    k = centres.shape[0]
    labels = np.empty(n, dtype=np.intp)
    first = np.empty(n, dtype=np.float64)
    second = np.full(n, np.inf)
    # Distances straight from the differences, coordinate by coordinate: the
    # expanded form ||x||^2 - 2 x.c + ||c||^2 is cheaper but rounds
    # differently, and the labels must be the argmin of exactly this sum.
    rows = max(1, _BLOCK // k)
    block = np.empty((min(rows, n), k), dtype=np.float64)
    term = np.empty_like(block)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        x = points[start:stop]
        b, t = block[: stop - start], term[: stop - start]
        np.subtract(x[:, 0, None], centres[:, 0], out=b)
        b *= b
        for d in range(1, dim):
            np.subtract(x[:, d, None], centres[:, d], out=t)
            t *= t
            b += t
        chosen = b.argmin(axis=1)  # the first least: ties go to the lowest index
        labels[start:stop] = chosen
        picked = np.arange(stop - start)
        first[start:stop] = b[picked, chosen]
        if need_second and k > 1:
            b[picked, chosen] = np.inf
            second[start:stop] = b.min(axis=1)
    if not squared:
        np.sqrt(first, out=first)
        np.sqrt(second, out=second)
    return labels, first, second


def _distance(a: np.ndarray, b: np.ndarray, squared: bool = False) -> np.ndarray:
    """Row-wise Euclidean (or squared) distance between two (n, d) arrays."""
    diff = a - b
    diff *= diff
    # Coordinate by coordinate, in order: several times faster than einsum
    # or sum(axis=1) over rows of 3.
    total = diff[:, 0].copy()
    for d in range(1, diff.shape[1]):
        total += diff[:, d]
    return total if squared else np.sqrt(total, out=total)


class Neighbours:
    """Centres sorted by distance from each centre, to search few of them.

    If a point ``x`` lies within ``u`` of its centre ``a``, a centre ``c``
    with ``|a - c| > 2u`` is farther from ``x`` than ``a`` is (triangle
    inequality), so only the centres within ``2u`` of ``a`` -- the first ones
    of ``a``'s sorted row -- can be the nearest. With 256 centres that is
    typically a handful, not 256.

    Sorting costs a k x k argsort, so between Lloyd iterations the order is
    kept while the centres move little: every stored gap is then lowered by
    how far both centres may have drifted since, which keeps each test valid.

    Parameters
    ----------
    centres : ndarray of shape (k, d), float64
    """

    def __init__(self, centres: np.ndarray) -> None:
        self._sort(centres)

    def _sort(self, centres: np.ndarray) -> None:
        self._set_centres(centres)
        between = np.sqrt(np.maximum(_squared_pairwise(centres), 0.0))
        self.order = np.argsort(between, axis=1, kind="stable")
        #: ``order`` transposed: row j holds the j-th nearest centre of every centre.
        self.ranked = np.ascontiguousarray(self.order.T)
        # Row a: gaps from centre a in increasing order (column 0: a itself).
        self.sorted_gaps = np.take_along_axis(between, self.order, axis=1)
        #: How far each centre moved since the sort.
        self.drift = np.zeros(centres.shape[0])
        self._rows = None

    def move(self, centres: np.ndarray, shift: np.ndarray) -> None:
        """Follow the centres to new positions, ``shift`` away from the old ones."""
        self.drift += shift
        if self.drift.max() > _RESORT_DRIFT:
            self._sort(centres)
        else:
            self._set_centres(centres)

    def _set_centres(self, centres: np.ndarray) -> None:
        self.centres = centres
        # One contiguous array per coordinate: faster to gather from.
        self.columns = [np.ascontiguousarray(centres[:, d]) for d in range(centres.shape[1])]

    def local_bounds(self, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """How the latest move can lower the distance from a centre's points to the others.

        Returns, per centre ``a``: the largest ``shift`` among the
        ``_NEAR`` centres nearest ``a`` (other than ``a``), and a lower bound
        of the distance from ``a`` to every centre beyond those. A point of
        ``a`` with lower bound ``l`` and upper bound ``u`` then keeps the valid
        lower bound ``min(l - near_shift[a], far_gap[a] - u)``: unlike the
        global largest shift, a centre moving far away costs nothing here.
        """
        k = self.order.shape[0]
        near = min(_NEAR, k)
        columns = self.order[:, :near]
        shifts = np.where(columns == np.arange(k)[:, None], 0.0, shift[columns])
        near_shift = shifts.max(axis=1)
        if near >= k:
            far_gap = np.full(k, np.inf)
        else:
            far_gap = self.sorted_gaps[:, near] - self.drift - self.drift.max()
        return near_shift, far_gap

    @property
    def half_gap(self) -> np.ndarray:
        """Lower bound of half the distance from each centre to its nearest other.

        A point closer than that to its centre needs no search at all.
        """
        if self.sorted_gaps.shape[1] < 2:
            return np.full(self.sorted_gaps.shape[0], np.inf)
        slack = self.drift + self.drift.max()
        return 0.5 * np.maximum(self.sorted_gaps[:, 1] - slack, 0.0)

    def search(
        self, points: np.ndarray, labels: np.ndarray, upper: np.ndarray, exact: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nearest centre of each point, its distance and a lower bound to the others.

        Parameters
        ----------
        points : ndarray of shape (n, d), float64
        labels : ndarray of shape (n,), intp
            A centre near each point.
        upper : ndarray of shape (n,), float64
            Upper bound of each point's distance to ``centres[labels]``.
        exact : bool
            Integer-valued points and centres: one integer key orders by
            distance, then index (faster). Either way ties go to the lowest
            centre index.

        Returns
        -------
        labels : ndarray of shape (n,), intp
        first : ndarray of shape (n,), float64
            Distance to the nearest centre.
        second : ndarray of shape (n,), float64
            Lower bound of the distance to every other centre.
        """
        k = self.centres.shape[0]
        n = points.shape[0]
        if n * k <= _DENSE_SEARCH:
            # Few points: every distance costs less than grouping them by
            # candidate lists, and the nearest centre is the same (the second
            # distance returned is then exact, a tighter bound).
            return _nearest_two(points, self.centres)
        # Candidates of a point: the first w centres of its centre's row, for
        # the smallest power of two w (at least 2, for a runner-up) whose
        # stored gap at column w exceeds 2u plus the drift since sorting (plus
        # a margin against rounding); powers of two make few groups.
        if self._rows is None:
            self._widths = 2 ** np.arange(1, max(1, (k - 1).bit_length()))
            self._widths = self._widths[self._widths < k]
            # One contiguous array per width: gathers and compares run elementwise.
            self._rows = [np.ascontiguousarray(self.sorted_gaps[:, w]) for w in self._widths]
        reach = 2 * upper + self.drift[labels] + (self.drift.max() + _MARGIN)
        # The gaps grow along a row, so the step is the number of widths whose
        # gap is within reach.
        steps = np.zeros(n, dtype=np.uint8)
        for gaps in self._rows:
            steps += gaps[labels] <= reach
        widths = np.append(self._widths, k)
        # Group the points by width: a stable sort of small integers (radix).
        by_width = np.argsort(steps, kind="stable")
        ends = np.cumsum(np.bincount(steps, minlength=widths.size))
        out_labels = np.empty(n, dtype=np.intp)
        first = np.empty(n, dtype=np.float64)
        second = np.empty(n, dtype=np.float64)
        for step, width in enumerate(widths.tolist()):
            begin = ends[step - 1] if step else 0
            rows = max(1, _BLOCK // width)
            for start in range(begin, ends[step], rows):
                group = by_width[start : min(start + rows, ends[step])]
                lab, d1, d2 = self._search_group(points[group], labels[group], upper[group],
                                                 width, exact)
                out_labels[group], first[group], second[group] = lab, d1, d2
        return out_labels, first, second

    def _search_group(
        self, x: np.ndarray, labels: np.ndarray, upper: np.ndarray, width: int, exact: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k = self.centres.shape[0]
        n = x.shape[0]
        # One row per candidate, one column per point: every step below is an
        # elementwise operation over whole rows.
        candidates = self.ranked[:width, labels]  # (width, n)
        squared = None
        for d, coordinate in enumerate(np.ascontiguousarray(x.T)):
            diff = self.columns[d][candidates]
            diff -= coordinate
            diff *= diff
            if squared is None:
                squared = diff
            else:
                squared += diff
        # Least distance, ties to the lowest centre index (not the first
        # candidate: the row order is not the index order). On integer data
        # (exact) one key orders by distance, then by index.
        columns = np.arange(n)
        if width <= _SCAN_WIDTH:
            # Few candidates: one pass over the rows keeps the best and the
            # least of the others (faster than reducing along short rows).
            rank = np.zeros(n, dtype=np.intp)
            best = squared[0].copy()
            best_label = candidates[0].copy()
            second = np.full(n, np.inf)
            for j in range(1, width):
                row, label = squared[j], candidates[j]
                better = (row < best) | ((row == best) & (label < best_label))
                np.minimum(second, np.where(better, best, row), out=second)
                rank[better] = j
                np.copyto(best, row, where=better)
                np.copyto(best_label, label, where=better)
        else:
            if exact:
                rank = (squared * k + candidates).argmin(axis=0)
            else:
                least = squared.min(axis=0)
                rank = np.where(squared == least, candidates, k).argmin(axis=0)
            best = squared[rank, columns]
            squared[rank, columns] = np.inf
            second = squared.min(axis=0)
        out_labels = candidates[rank, columns]
        first = np.sqrt(best)
        second = np.sqrt(second)
        if width < k:
            # Centres beyond the candidates are at least gap - drift - u away.
            beyond = (self.sorted_gaps[labels, width] - self.drift[labels]
                      - self.drift.max() - upper)
            np.minimum(second, beyond, out=second)
        return out_labels, first, second


def _squared_pairwise(centres: np.ndarray) -> np.ndarray:
    """Squared distances between all centres, ndarray of shape (k, k)."""
    total = np.zeros((centres.shape[0], centres.shape[0]))
    for column in centres.T:
        diff = column[:, None] - column
        diff *= diff
        total += diff
    return total
