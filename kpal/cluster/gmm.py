"""Gaussian mixture models fitted by expectation–maximization (EM).

A :class:`GaussianMixture` models points of ``d`` features as ``k`` Gaussian
components, each with a full ``d × d`` covariance: the colours of an image in
RGB space (``d = 3``), or translucent colours in the four premultiplied
coordinates of :mod:`kpal.cluster.alpha` (``d = 4``, see
:mod:`kpal.cluster.alpha_gmm`). kpal uses it as a second way to choose a
palette (the palette is the component means, each pixel takes the nearest)
and to draw new pixels from an image's colour distribution
(:meth:`GaussianMixture.sample`).

How the fit works, and why:

* **Histogram, not pixels.** Equal colours have equal responsibilities, so EM on
  the unique colours weighted by their pixel counts is *exactly* EM on all
  pixels, and a photo has 2–10× fewer unique colours than pixels.
  :meth:`GaussianMixture.fit` builds that histogram itself when ``X`` holds
  repeated rows.
* **Log domain.** Densities of far-away colours underflow ``float64``; the
  E-step works with log densities and combines components by log-sum-exp.
* **Cholesky.** Each covariance ``Σ = L Lᵀ`` is factored; ``U = L⁻ᵀ`` gives the
  precision ``A = U Uᵀ`` and ``log|Σ|^(-1/2) = Σᵢ log Uᵢᵢ`` without an inverse
  or a determinant of ``Σ`` itself.
* **One product per chunk.** ``log N(x | μ, Σ)`` is a quadratic in ``x``, so with
  the ``1 + d + d(d+1)/2`` features ``φ(x) = [1, x, x_i x_j (i <= j)]`` (ten for
  colours, fifteen for ``d = 4``) the log densities of a chunk under all k
  components are one ``(n, n_phi) @ (n_phi, k)`` product, and the M-step's
  sufficient statistics (``Σ r``, ``Σ r x``, ``Σ r x xᵀ``) are another,
  ``(w·φ)ᵀ @ resp``. The E-step of a chunk feeds the statistics straight away,
  so the ``(n, k)`` responsibilities never exist for more than one chunk and
  memory stays bounded whatever the image size. Colours are centred on their
  weighted mean first, so the expanded quadratic and the covariance recovered
  as ``E[xxᵀ] − μμᵀ`` do not lose precision.
* **Regularized covariances.** ``reg_covar`` is added to every covariance's
  diagonal, so a component sitting on a single colour stays positive definite.
* **Convergence** when the mean log-likelihood improves by less than ``tol``.
* **One BLAS thread.** Every public entry runs with BLAS limited to one thread
  (``threadpoolctl``). The products are small (ten or fifteen features by one
  chunk): spread over threads they wait on each other, and on a busy machine on every other
  process too (a 2 MP fit ran 10–20× slower on two busy cores), and a sum split
  across threads rounds differently, so the fit would depend on the thread count.
  With one thread the results are the same bytes whatever ``OPENBLAS_NUM_THREADS``
  says. (Elementwise numpy or ``einsum`` instead of BLAS measured 1.2–1.4× slower.)
* **Validated input.** NaN, infinite, negative or overflowing values are refused
  with a ``ValueError`` naming the argument before any work. Weights are scaled
  by a power of two (exact in floating point) when their largest is below 1 or
  above 2**32, since EM only depends on their ratios.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable
from typing import TypeVar

import numpy as np
from threadpoolctl import threadpool_limits

from kpal import options
from kpal.cluster.histogram import color_histogram
from kpal.cluster.params import Params
from kpal.errors import OptionError, silenced, warn

__all__ = ["GaussianMixture", "quantize_histogram", "sample_image"]

_LOG_2PI = float(np.log(2.0 * np.pi))
#: Features of a colour (RGB); a mixture fits any number d >= 1 (``X.shape[1]``).
_COLOUR_FEATURES = 3
#: Elements (one chunk × k components) per temporary array: 2**18 float64 = 2 MiB,
#: small enough to stay in cache and keep BLAS from spreading tiny products over threads.
_CHUNK_ELEMENTS = 1 << 18
#: Largest magnitude accepted in ``X``: squares and products of coordinates, summed
#: with weights up to 2**33 (see ``_check_weight``), must stay finite in float64.
_MAX_ABS_X = 1e100
#: Weights whose largest lies outside [1, 2**32] are scaled by a power of two into [1, 2):
#: EM only depends on weight ratios, and the scaling is exact in floating point. Below 1
#: the M-step's guard against empty components (10 eps) would swamp them; far above,
#: weighted sums of squares could overflow.
_WEIGHT_RANGE = (1.0, 2.0**32)

_F = TypeVar("_F", bound=Callable)


def _one_blas_thread(function: _F) -> _F:
    """Run ``function`` with BLAS limited to one thread (see the module notes)."""

    @functools.wraps(function)
    def limited(*args, **kwargs):
        with threadpool_limits(limits=1, user_api="blas"):
            return function(*args, **kwargs)

    return limited  # type: ignore[return-value]


@functools.cache
def _triu(d: int) -> tuple[np.ndarray, np.ndarray]:
    """Upper-triangle index pairs of a d×d matrix: the d(d+1)/2 distinct second moments."""
    return np.triu_indices(d)


def _n_phi(d: int) -> int:
    """Length of the feature vector φ(x) = [1, x (d), x_i x_j for i <= j (d(d+1)/2)]."""
    return 1 + d + d * (d + 1) // 2


def _chunk_rows(k: int) -> int:
    return max(256, _CHUNK_ELEMENTS // max(k, 1))


def _unique_rows(X: np.ndarray, sample_weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Collapse repeated rows of ``X`` into (unique rows as float64, summed weights)."""
    if X.dtype == np.uint8 and X.shape[1] == _COLOUR_FEATURES:
        hist = color_histogram(X, sample_weight)
        return hist.colors.astype(np.float64), hist.counts.astype(np.float64)
    rows, inverse = np.unique(X, axis=0, return_inverse=True)
    weights = np.bincount(inverse.reshape(-1), weights=sample_weight, minlength=rows.shape[0])
    return rows.astype(np.float64), weights.astype(np.float64)


def _check_parameters(k: object, init: object, seed: object, max_iter: object, tol: object,
                      reg_covar: object) -> None:
    """k, init, seed, max_iter and tol: the ranges and messages of kpal.options, shared by
    every way into kpal; reg_covar non-negative."""
    options.SPECS["init"].checker(init)
    for name, value in (("k", k), ("seed", seed), ("max_iter", max_iter), ("tol", tol)):
        options.check_number(name, value)
    if isinstance(reg_covar, (str, bool)) or not isinstance(reg_covar, numbers.Real) \
            or not reg_covar >= 0:
        msg = f"reg_covar={reg_covar!r} must be a non-negative number"
        raise OptionError(msg)


class GaussianMixture(Params):
    """Gaussian mixture with full covariances, fitted by EM on (weighted) points.

    The interface of scikit-learn's ``GaussianMixture(covariance_type="full")``
    for ``fit``, ``predict``, ``fit_predict``, ``predict_proba``, ``score_samples``, ``score``
    and ``get_params``/``set_params``, with kpal's names: ``k`` for
    ``n_components``, ``seed`` for ``random_state``.

    The points are colours (``d = 3``) or have any number ``d >= 1`` of
    features: ``d`` is ``X.shape[1]`` at :meth:`fit`.

    Parameters
    ----------
    k : int
        Number of components, 1..256.
    seed : int, default 0
        Seed of the k-means initialization and the default seed of :meth:`sample`.
    max_iter : int, default 100
        Maximum number of EM iterations.
    tol : float, default 1e-3
        Stop when the mean log-likelihood per sample improves by less than this.
    reg_covar : float, default 1e-6
        Added to the diagonal of every covariance (in squared units of ``X``:
        8-bit levels for colours) so a component on a single point does not
        become singular.
    init : {"k-means++", "random"}, default "k-means++"
        Initialization of the k-means run whose clusters start EM.

    Attributes
    ----------
    weights_ : ndarray of shape (k_fit,)
        Mixing proportions, summing to 1. ``k_fit = min(k, distinct rows of X)``.
    means_ : ndarray of shape (k_fit, d)
        Component means.
    covariances_ : ndarray of shape (k_fit, d, d)
        Full component covariances.
    precisions_cholesky_ : ndarray of shape (k_fit, d, d)
        Upper-triangular ``U`` with ``U @ U.T`` the inverse covariance.
    converged_ : bool
        Whether the likelihood improvement fell below ``tol`` within ``max_iter``.
    n_iter_ : int
        EM iterations run.
    lower_bound_ : float
        Mean log-likelihood of the training data under the final parameters.
    lower_bounds_ : list of float
        Mean log-likelihood at the start of each iteration, then ``lower_bound_``;
        EM guarantees the sequence does not decrease.

    Notes
    -----
    When ``X`` has fewer distinct rows than ``k``, ``fit`` warns and fits one
    component per distinct row (mean = that row, covariance = ``reg_covar · I``,
    weight = its share): the most likely mixture, reached without iterating.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(40, 5, (500, 3)), rng.normal(200, 5, (500, 3))])
    >>> gm = GaussianMixture(2, seed=0).fit(X)
    >>> np.sort(gm.means_[:, 0]).round(-1)
    array([ 40., 200.])
    """

    def __init__(
        self,
        k: int,
        *,
        seed: int = 0,
        max_iter: int = 100,
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        init: str = "k-means++",
    ) -> None:
        _check_parameters(k, init, seed, max_iter, tol, reg_covar)
        self.k = int(k)
        self.seed = seed
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.reg_covar = float(reg_covar)
        self.init = init

    # ------------------------------------------------------------------ fitting

    @_one_blas_thread
    def fit(self, X: np.ndarray, y: object = None,
            sample_weight: np.ndarray | None = None) -> GaussianMixture:
        """Fit the mixture to ``X`` by EM from a k-means initialization.

        Parameters
        ----------
        X : ndarray of shape (n_samples, d)
            Colours (uint8 pixels or floats, ``d = 3``), or points of any
            number ``d >= 1`` of features (integers or floats).
        y : ignored
            Not used: there for scikit-learn's API (``fit(X, y)`` in a pipeline).
        sample_weight : ndarray of shape (n_samples,), optional
            Non-negative weight of each row, e.g. pixel counts of unique colours.
            Fitting unique colours weighted by their counts gives exactly the
            fit on all pixels. Only ratios matter: ``c * sample_weight`` gives
            the same fit.

        Returns
        -------
        GaussianMixture
            ``self``, fitted.

        Raises
        ------
        ValueError
            If ``X`` or ``sample_weight`` has the wrong shape, holds NaN,
            infinite, negative (weights) or too large (``X``, ``|x| > 1e100``)
            values, or the weights sum to zero or overflow.
        """
        # Again: an attribute set after construction (gm.max_iter = 0) is checked too.
        _check_parameters(self.k, self.init, self.seed, self.max_iter, self.tol, self.reg_covar)
        X = _check_X(X)
        weights = _scale_weights(_check_weight(sample_weight, X.shape[0]))
        colors, counts = _unique_rows(X, weights)
        keep = counts > 0
        colors, counts = colors[keep], counts[keep]
        if colors.shape[0] == 0:
            msg = "cannot fit a mixture: every sample weight is zero"
            raise ValueError(msg)
        if colors.shape[0] <= self.k:
            self._fit_one_per_colour(colors, counts)
        else:
            self._fit_em(colors, counts)
        return self

    def _fit_one_per_colour(self, colors: np.ndarray, counts: np.ndarray) -> None:
        if colors.shape[0] < self.k:
            warn(
                f"only {colors.shape[0]} distinct colour{'' if colors.shape[0] == 1 else 's'} "
                f"for k={self.k}: fitting one "
                f"component per colour")
        m, d = colors.shape
        self._shift = np.einsum("n,nd->d", counts, colors) / counts.sum()
        self.weights_ = counts / counts.sum()
        self.means_ = colors.copy()
        self.covariances_ = np.broadcast_to(self.reg_covar * np.eye(d), (m, d, d)).copy()
        self._set_precisions()
        self.converged_ = True
        self.n_iter_ = 0
        self.lower_bound_ = self.score(colors, sample_weight=counts)
        self.lower_bounds_ = [self.lower_bound_]

    def _fit_em(self, colors: np.ndarray, counts: np.ndarray) -> None:
        total = counts.sum()
        self._shift = np.einsum("n,nd->d", counts, colors) / total
        centred = colors - self._shift

        labels = _kmeans_labels(colors, counts, self.k, self.init, self.seed)
        # The first M-step from the k-means clusters (one-hot responsibilities).
        n_phi = _n_phi(colors.shape[1])
        hard_stats = np.zeros((self.k, n_phi))
        step = _chunk_rows(n_phi)
        for start in range(0, colors.shape[0], step):
            weighted = _features(centred[start : start + step])
            weighted *= counts[start : start + step, None]
            chunk_labels = labels[start : start + step]
            for column in range(n_phi):
                hard_stats[:, column] += np.bincount(
                    chunk_labels, weights=weighted[:, column], minlength=self.k
                )
        self._m_step(hard_stats)

        self.lower_bounds_ = []
        self.converged_ = False
        previous = -np.inf
        n_iter = 0
        for n_iter in range(1, self.max_iter + 1):  # noqa: B007 - n_iter is reported after
            log_likelihood, stats = self._e_step(centred, counts)
            mean_ll = log_likelihood / total
            self.lower_bounds_.append(mean_ll)
            self._m_step(stats)
            if mean_ll - previous < self.tol:
                self.converged_ = True
                break
            previous = mean_ll
        self.n_iter_ = n_iter
        self.lower_bound_ = self.score(colors, sample_weight=counts)
        self.lower_bounds_.append(self.lower_bound_)
        if not self.converged_:
            warn(
                f"EM did not converge in max_iter={self.max_iter} iterations "
                f"(last improvement {self.lower_bounds_[-1] - self.lower_bounds_[-2]:.3g} "
                f">= tol={self.tol}); raise max_iter or tol")

    def _e_step(self, centred: np.ndarray, counts: np.ndarray) -> tuple[float, np.ndarray]:
        """One pass: total weighted log-likelihood and the M-step's sufficient statistics.

        Per chunk, ``Wᵀ φ(x)`` gives every log density, and ``w·φ(x) @ respᵀ``
        gives ``Σ r w``, ``Σ r w x`` and ``Σ r w x xᵀ`` for every component.
        Everything is laid out one row per component (or feature) and one
        column per colour, so the reductions over components run elementwise
        along whole rows instead of along rows of k.
        """
        k = self.weights_.shape[0]
        coefficients = np.ascontiguousarray(self._coefficients().T)  # (k, features)
        n_phi = coefficients.shape[1]
        stats = np.zeros((n_phi, k))
        log_likelihood = 0.0
        step = min(_chunk_rows(k), centred.shape[0])
        # Buffers reused by every chunk: no allocation inside the loop.
        phi = np.empty((n_phi, step))
        log_prob = np.empty((k, step))
        resp32 = np.empty((k, step), dtype=np.float32)
        for start in range(0, centred.shape[0], step):
            stop = min(start + step, centred.shape[0])
            n = stop - start
            phi_n = _features_by_row(centred[start:stop], out=phi[:, :n])
            lp = np.matmul(coefficients, phi_n, out=log_prob[:, :n])
            # log-sum-exp over components, keeping exp(lp - top) as the responsibilities.
            # exp runs in float32, several times faster than float64: its arguments are
            # <= 0, so the relative error stays ~1e-7.
            top = lp.max(axis=0)
            resp = np.subtract(lp, top, out=resp32[:, :n], casting="same_kind")
            np.exp(resp, out=resp)
            norm = resp.sum(axis=0, dtype=np.float64)
            w = counts[start:stop]
            log_likelihood += float(np.einsum("n,n->", w, np.log(norm) + top))
            np.divide(resp, norm, out=lp)
            phi_n *= w
            stats += phi_n @ lp.T
        return log_likelihood, stats.T

    def _m_step(self, stats: np.ndarray) -> None:
        """Weights, means and covariances from ``Σ r w · φ(x)`` per component."""
        d = self._shift.shape[0]
        triu_i, triu_j = _triu(d)
        resp_sum, resp_x, resp_xx = stats[:, 0], stats[:, 1 : 1 + d], stats[:, 1 + d :]
        # A component that lost every colour keeps a tiny mass instead of dividing by 0.
        nk = resp_sum + 10 * np.finfo(np.float64).eps
        centred_means = resp_x / nk[:, None]
        second = np.empty((nk.shape[0], d, d))
        second[:, triu_i, triu_j] = resp_xx / nk[:, None]
        second[:, triu_j, triu_i] = second[:, triu_i, triu_j]
        covariances = second - centred_means[:, :, None] * centred_means[:, None, :]
        covariances[:, np.arange(d), np.arange(d)] += self.reg_covar
        self.weights_ = nk / nk.sum()
        self.means_ = centred_means + self._shift
        self.covariances_ = covariances
        self._set_precisions()

    def _set_precisions(self) -> None:
        try:
            chol = np.linalg.cholesky(self.covariances_)
        except np.linalg.LinAlgError:
            msg = (
                "a component's covariance is singular (it collapsed onto a colour "
                f"or a line); increase reg_covar (now {self.reg_covar})"
            )
            raise ValueError(msg) from None
        eye = np.broadcast_to(np.eye(chol.shape[-1]), chol.shape)
        # U = L^-T, so U U^T = (L L^T)^-1 = precision.
        self.precisions_cholesky_ = np.linalg.solve(chol, eye).transpose(0, 2, 1)

    def _coefficients(self) -> np.ndarray:
        """The (n_phi, k) matrix W with ``φ(x − shift) @ W = log weight_j + log N(x | μ_j, Σ_j)``.

        ``log N = −½·d·log 2π + log|U| − ½ (x − μ)ᵀ A (x − μ)`` with ``A = U Uᵀ``,
        and the quadratic form expands over ``φ = [1, x, x_i x_j (i <= j)]`` as
        ``xᵀAx − 2 μᵀA x + μᵀAμ``, off-diagonal products counted twice. The
        colours are centred (``shift`` is their mean), so every term stays small
        enough for float64 to cancel exactly where a colour sits on a mean.
        """
        u = self.precisions_cholesky_
        precision = u @ u.transpose(0, 2, 1)
        means = self.means_ - self._shift
        d = means.shape[1]
        triu_i, triu_j = _triu(d)
        a_mu = np.einsum("kij,kj->ki", precision, means)
        log_det_u = np.log(np.diagonal(u, axis1=1, axis2=2)).sum(axis=1)
        with np.errstate(divide="ignore"):
            log_weights = np.log(self.weights_)
        coefficients = np.empty((_n_phi(d), means.shape[0]))
        coefficients[0] = (
            log_weights + log_det_u - 0.5 * d * _LOG_2PI - 0.5 * (a_mu * means).sum(1)
        )
        coefficients[1 : 1 + d] = a_mu.T
        off_diagonal = np.where(triu_i == triu_j, 1.0, 2.0)
        coefficients[1 + d :] = -0.5 * off_diagonal[:, None] * precision[:, triu_i, triu_j].T
        return coefficients

    # ------------------------------------------------------------- inference

    def _check_fitted(self) -> None:
        if not hasattr(self, "means_"):
            msg = "this GaussianMixture is not fitted yet; call fit(X) first"
            raise ValueError(msg)

    def _chunks(self, X: np.ndarray):
        """Yield ``(start, log weight + log density)`` over bounded chunks of ``X``."""
        k = self.means_.shape[0]
        step = min(_chunk_rows(k), X.shape[0])
        coefficients = self._coefficients()
        phi = np.empty((step, coefficients.shape[0]))
        for start in range(0, X.shape[0], step):
            chunk = X[start : start + step] - self._shift
            phi_n = _features(chunk, out=phi[: chunk.shape[0]])
            yield start, phi_n @ coefficients

    @_one_blas_thread
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Posterior probability of each component for each row of ``X``.

        Parameters
        ----------
        X : ndarray of shape (n_samples, d)

        Returns
        -------
        ndarray of shape (n_samples, k_fit)
            Rows sum to 1.
        """
        self._check_fitted()
        X = _check_X(X, n_features=self.means_.shape[1]).astype(np.float64, copy=False)
        out = np.empty((X.shape[0], self.means_.shape[0]))
        for start, log_prob in self._chunks(X):
            log_prob -= _logsumexp_rows(log_prob)[:, None]
            np.exp(log_prob, out=out[start : start + log_prob.shape[0]])
        return out

    @_one_blas_thread
    def predict(self, X: np.ndarray) -> np.ndarray:
        """Index of the most probable component for each row of ``X``.

        Parameters
        ----------
        X : ndarray of shape (n_samples, d)

        Returns
        -------
        ndarray of shape (n_samples,), dtype intp
        """
        self._check_fitted()
        X = _check_X(X, n_features=self.means_.shape[1]).astype(np.float64, copy=False)
        out = np.empty(X.shape[0], dtype=np.intp)
        for start, log_prob in self._chunks(X):
            out[start : start + log_prob.shape[0]] = log_prob.argmax(axis=1)
        return out

    def fit_predict(self, X: np.ndarray, y: object = None,
                    sample_weight: np.ndarray | None = None) -> np.ndarray:
        """Fit, then return :meth:`predict` of ``X`` (``y`` is ignored, as in scikit-learn).

        Returns
        -------
        ndarray of shape (n_samples,), dtype intp
        """
        return self.fit(X, sample_weight=sample_weight).predict(X)

    @_one_blas_thread
    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """Log-likelihood ``log p(x)`` of each row of ``X`` under the mixture.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        self._check_fitted()
        X = _check_X(X, n_features=self.means_.shape[1]).astype(np.float64, copy=False)
        out = np.empty(X.shape[0])
        for start, log_prob in self._chunks(X):
            out[start : start + log_prob.shape[0]] = _logsumexp_rows(log_prob)
        return out

    @_one_blas_thread
    def score(self, X: np.ndarray, y: object = None,
              sample_weight: np.ndarray | None = None) -> float:
        """Mean log-likelihood per sample (weighted by ``sample_weight`` if given).

        Parameters
        ----------
        X : ndarray of shape (n_samples, d)
        y : ignored
            Not used: there for scikit-learn's API.
        sample_weight : ndarray of shape (n_samples,), optional

        Returns
        -------
        float
            ``sum(w * log p(x)) / sum(w)``; with ``w`` the pixel counts of unique
            colours this equals the mean over all pixels.
        """
        self._check_fitted()
        X = _check_X(X, n_features=self.means_.shape[1])
        weights = _scale_weights(_check_weight(sample_weight, X.shape[0]))
        log_p = self.score_samples(X)
        if weights is None:
            return float(log_p.mean())
        return float(np.einsum("n,n->", weights, log_p) / weights.sum())

    @_one_blas_thread
    def sample(self, n: int, *, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` independent samples from the fitted mixture.

        Parameters
        ----------
        n : int
            Number of samples.
        seed : int, optional
            Random seed; defaults to the model's ``seed``.

        Returns
        -------
        X : ndarray of shape (n, d), float64
            The samples, in random order (unlike scikit-learn, which groups them by
            component), so they can be reshaped straight into an image.
        component : ndarray of shape (n,), intp
            The component each sample was drawn from.
        """
        self._check_fitted()
        n = _check_count(n, "n")
        rng = np.random.default_rng(_check_seed(self.seed if seed is None else seed))
        return self._draw(n, rng)

    def _draw(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        k = self.means_.shape[0]
        component = rng.choice(k, size=n, p=self.weights_)
        chol = np.linalg.cholesky(self.covariances_)
        X = rng.standard_normal((n, self.means_.shape[1]))
        # x = μ_j + L_j z: one matmul per component (k <= 256 of them), not per sample,
        # over the samples of that component found by one sort instead of k scans.
        order = np.argsort(component, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(component, minlength=k))])
        for j in range(k):
            rows = order[bounds[j] : bounds[j + 1]]
            X[rows] = np.einsum("nj,ij->ni", X[rows], chol[j]) + self.means_[j]
        return X, component


@_one_blas_thread
def quantize_histogram(
    colors: np.ndarray,
    counts: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    max_iter: int = 100,
    tol: float = 1e-3,
    init: str = "k-means++",
) -> tuple[np.ndarray, np.ndarray, int]:
    """Fit a mixture to a colour histogram and label each colour with its likeliest component.

    Parameters
    ----------
    colors : ndarray of shape (n_colors, 3), uint8
        Distinct colours.
    counts : ndarray of shape (n_colors,), int64
        Pixel count of each colour.
    k : int
        Number of components.
    seed, max_iter, tol, init
        As in :class:`GaussianMixture`.

    Returns
    -------
    means : ndarray of shape (k_used, 3), float64
        Means of the components that are the most probable one for at least one
        colour (components no colour chooses are dropped, so no palette entry is
        wasted); ``k_used <= k``.
    colour_labels : ndarray of shape (n_colors,), intp
        Index into ``means`` for every colour.
    n_iter : int
        EM iterations run.

    Notes
    -----
    With ``n_colors <= k`` the colours themselves are returned (no warning: the
    caller decides how to report a lossless palette).
    """
    _check_k(k)
    colors = _check_X(colors, "colors", _COLOUR_FEATURES)
    counts = _check_weight(counts, colors.shape[0], "counts")
    if colors.shape[0] <= k:
        return colors.astype(np.float64), np.arange(colors.shape[0], dtype=np.intp), 0
    gm = GaussianMixture(k, seed=seed, max_iter=max_iter, tol=tol, init=init)
    with silenced():
        # Not converging in max_iter is the caller's chosen budget for a palette, not an error.
        gm.fit(colors, sample_weight=counts)
    labels = gm.predict(colors.astype(np.float64))
    used, colour_labels = np.unique(labels, return_inverse=True)
    return gm.means_[used], colour_labels.reshape(-1).astype(np.intp), gm.n_iter_


@_one_blas_thread
def sample_image(
    image: np.ndarray, k: int, *, seed: int = 0, max_iter: int = 100, tol: float = 1e-3
) -> np.ndarray:
    """Fit a mixture to an image's colours and draw a new image of the same size from it.

    Every pixel is drawn independently from the fitted mixture, so the result
    has the colour distribution of ``image`` (which colours, how often, how they
    vary together) without any of its spatial structure.

    Parameters
    ----------
    image : ndarray of shape (height, width, 3), uint8
    k : int
        Number of mixture components.
    seed : int, default 0
        Seed of both the fit and the draw.
    max_iter, tol
        As in :class:`GaussianMixture`.

    Returns
    -------
    ndarray of shape (height, width, 3), uint8
        Samples rounded to the nearest integer and clipped to 0..255.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        msg = (
            "image must be a uint8 array of shape (height, width, 3), "
            f"got {image.dtype} {image.shape}"
        )
        raise ValueError(msg)
    if image.size == 0:
        msg = f"image has no pixels (shape {image.shape})"
        raise ValueError(msg)
    seed = _check_seed(seed)
    height, width = image.shape[:2]
    gm = GaussianMixture(k, seed=seed, max_iter=max_iter, tol=tol).fit(image.reshape(-1, 3))
    rng = np.random.default_rng(seed)
    out = np.empty((height * width, 3), dtype=np.uint8)
    # Drawn in chunks straight into the uint8 image: float samples never exist for
    # more than one chunk, whatever the image size.
    step = 1 << 20
    for start in range(0, out.shape[0], step):
        drawn, _ = gm._draw(min(step, out.shape[0] - start), rng)
        np.rint(drawn, out=drawn)
        np.clip(drawn, 0, 255, out=drawn)
        out[start : start + drawn.shape[0]] = drawn
    return out.reshape(height, width, 3)


# ----------------------------------------------------------------- helpers


def _features(centred: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``φ(x) = [1, x, x_i x_j (i <= j)]`` for each row: shape (n, n_phi), (n, 10) for colours."""
    d = centred.shape[1]
    triu_i, triu_j = _triu(d)
    if out is None:
        out = np.empty((centred.shape[0], _n_phi(d)))
    out[:, 0] = 1.0
    out[:, 1 : 1 + d] = centred
    np.multiply(centred[:, triu_i], centred[:, triu_j], out=out[:, 1 + d :])
    return out


def _features_by_row(centred: np.ndarray, out: np.ndarray) -> np.ndarray:
    """:func:`_features` transposed: shape (n_phi, n), one feature per row."""
    d = centred.shape[1]
    triu_i, triu_j = _triu(d)
    out[0] = 1.0
    out[1 : 1 + d] = centred.T
    np.multiply(centred.T[triu_i], centred.T[triu_j], out=out[1 + d :])
    return out


def _check_k(k: int) -> None:
    options.SPECS["k"].checker(k)


def _check_X(X: np.ndarray, name: str = "X", n_features: int | None = None) -> np.ndarray:
    """``X`` as uint8 or float64 of shape (n, d), every value finite and at most 1e100.

    ``d`` must be ``n_features`` when given (a fitted model's, or 3 for
    colours), else any d >= 1.
    """
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] == 0 or (n_features is not None and X.shape[1] != n_features):
        msg = f"{name} must have shape (n_samples, {n_features or _COLOUR_FEATURES}), got {X.shape}"
        if n_features is None:
            msg += " (or (n_samples, d) for points of d >= 1 features)"
        raise ValueError(msg)
    if X.shape[0] == 0:
        msg = f"{name} has no samples"
        raise ValueError(msg)
    if X.dtype == np.uint8:
        return X
    if X.dtype.kind not in "iuf":
        msg = f"{name} must hold integer or float numbers, got dtype {X.dtype}"
        raise ValueError(msg)
    X = X.astype(np.float64, copy=False)
    finite = np.isfinite(X)
    if not finite.all():
        row = int(np.flatnonzero(~finite.all(axis=1))[0])
        msg = f"{name} contains NaN or infinite values ({name}[{row}] = {X[row].tolist()})"
        raise ValueError(msg)
    too_large = np.abs(X) > _MAX_ABS_X
    if too_large.any():
        row = int(np.flatnonzero(too_large.any(axis=1))[0])
        msg = (
            f"{name} values must be at most {_MAX_ABS_X:g} in magnitude, so their squares "
            f"stay finite: {name}[{row}] = {X[row].tolist()}"
        )
        raise ValueError(msg)
    return X


def _check_weight(
    sample_weight: np.ndarray | None, n: int, name: str = "sample_weight"
) -> np.ndarray | None:
    """Weights as float64 of shape (n,): finite, non-negative, with a finite sum."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight)
    if w.dtype.kind not in "iuf":
        msg = f"{name} must hold integer or float numbers, got dtype {w.dtype}"
        raise ValueError(msg)
    w = w.astype(np.float64, copy=False)
    if w.shape != (n,):
        msg = f"{name} must have shape ({n},), got {w.shape}"
        raise ValueError(msg)
    bad = ~(np.isfinite(w) & (w >= 0))
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        msg = f"{name} must be finite and non-negative: {name}[{index}] = {w[index]}"
        raise ValueError(msg)
    with np.errstate(over="ignore"):
        total = w.sum()
    if not np.isfinite(total):
        msg = (
            f"{name} sums to more than float64 holds (largest weight {w.max():.3g}); "
            "scale the weights down, only their ratios matter"
        )
        raise ValueError(msg)
    if total == 0:
        msg = f"{name} sums to zero: every sample weight is zero"
        raise ValueError(msg)
    return w


def _scale_weights(w: np.ndarray | None) -> np.ndarray | None:
    """Checked weights scaled by a power of two (exact) into [1, 2) if outside ``_WEIGHT_RANGE``."""
    if w is None:
        return None
    largest = float(w.max())
    if _WEIGHT_RANGE[0] <= largest <= _WEIGHT_RANGE[1]:
        return w
    # frexp: largest = mantissa * 2**exponent with mantissa in [0.5, 1).
    exponent = np.frexp(largest)[1] - 1
    return np.ldexp(w, -exponent)


def _check_count(n: int, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        msg = f"{name}={n!r} must be a non-negative integer"
        raise ValueError(msg)
    return int(n)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        msg = f"seed={seed!r} must be a non-negative integer"
        raise ValueError(msg)
    return int(seed)


def _logsumexp_rows(a: np.ndarray) -> np.ndarray:
    top = a.max(axis=1)
    top[~np.isfinite(top)] = 0.0
    return np.log(np.exp(a - top[:, None]).sum(axis=1)) + top


def _kmeans_labels(
    colors: np.ndarray, counts: np.ndarray, k: int, init: str, seed: int
) -> np.ndarray:
    # Imported here: kpal.cluster's __init__ imports this module, and kmeans
    # may import from the package too.
    from kpal.cluster.kmeans import KMeans

    if (colors.shape[1] == _COLOUR_FEATURES and colors.min() >= 0 and colors.max() <= 255
            and np.array_equal(colors, np.rint(colors))):
        # 8-bit colours: k-means takes its coarse-to-fine path, as for a palette.
        colors = colors.astype(np.uint8)
    km = KMeans(k, init=init, seed=seed).fit(colors, sample_weight=counts)
    return np.asarray(km.labels_, dtype=np.intp)
