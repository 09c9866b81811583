"""Tests for kpal.cluster.gmm: EM, degenerate inputs, sampling statistics."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from kpal.cluster import gmm as gmm_module
from kpal.cluster.gmm import GaussianMixture, quantize_histogram
from kpal.errors import OptionError

TRUE_MEANS = np.array([[40.0, 60.0, 200.0], [200.0, 50.0, 40.0], [120.0, 210.0, 110.0]])
TRUE_COVS = np.array(
    [
        [[60.0, 20.0, 0.0], [20.0, 40.0, 5.0], [0.0, 5.0, 30.0]],
        [[30.0, 0.0, 0.0], [0.0, 80.0, -25.0], [0.0, -25.0, 50.0]],
        [[45.0, 10.0, 10.0], [10.0, 45.0, 10.0], [10.0, 10.0, 45.0]],
    ]
)
TRUE_WEIGHTS = np.array([0.5, 0.3, 0.2])


def draw_mixture(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """n float samples from the known three-component mixture, and their components."""
    rng = np.random.default_rng(seed)
    component = rng.choice(3, size=n, p=TRUE_WEIGHTS)
    chol = np.linalg.cholesky(TRUE_COVS)
    noise = rng.standard_normal((n, 3))
    X = TRUE_MEANS[component] + np.einsum("nij,nj->ni", chol[component], noise)
    return X, component


def photo_pixels(height: int = 64, width: int = 80) -> np.ndarray:
    """A small deterministic 'photo': smooth gradients plus noise, many distinct colours."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 3.0, y * 3.5, 255 - x * 1.5 - y], axis=-1) + rng.normal(
        0, 6, (height, width, 3)
    )
    return np.clip(np.rint(image), 0, 255).astype(np.uint8).reshape(-1, 3)


def by_first_channel(gm: GaussianMixture) -> np.ndarray:
    return np.argsort(gm.means_[:, 0])


# ------------------------------------------------------------------ EM


@pytest.mark.parametrize("k", [2, 5, 12])
def test_log_likelihood_never_decreases(k):
    pixels = photo_pixels()
    gm = GaussianMixture(k, seed=3, max_iter=60, tol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # not converging to 1e-6 is fine here
        gm.fit(pixels)
    bounds = np.array(gm.lower_bounds_)
    assert bounds.size >= 3
    # EM's monotonicity, up to float rounding of a mean over 5120 pixels.
    assert np.all(np.diff(bounds) >= -1e-9 * np.abs(bounds[:-1]))
    assert gm.lower_bound_ == pytest.approx(gm.score(pixels), rel=1e-12)
    assert bounds[-1] > bounds[0]


def test_recovers_well_separated_components():
    X, _ = draw_mixture(30_000)
    gm = GaussianMixture(3, seed=0).fit(X)
    order = by_first_channel(gm)
    true_order = np.argsort(TRUE_MEANS[:, 0])
    assert gm.converged_
    np.testing.assert_allclose(gm.means_[order], TRUE_MEANS[true_order], atol=0.5)
    np.testing.assert_allclose(gm.weights_[order], TRUE_WEIGHTS[true_order], atol=0.01)
    np.testing.assert_allclose(gm.covariances_[order], TRUE_COVS[true_order], atol=5.0)
    np.testing.assert_allclose(gm.weights_.sum(), 1.0)
    # Most probable component = the one that drew the sample, for nearly all samples.
    X_new, component = draw_mixture(2_000, seed=5)
    relabel = np.empty(3, dtype=int)
    relabel[order] = true_order
    assert np.mean(relabel[gm.predict(X_new)] == component) > 0.999


def reference_em_step(X: np.ndarray, gm: GaussianMixture) -> tuple[np.ndarray, ...]:
    """One textbook EM step on every pixel, dense (n, k) arrays, no tricks."""
    diff = X[:, None, :] - gm.means_[None]  # (n, k, 3)
    inverse = np.linalg.inv(gm.covariances_)
    maha = np.einsum("nki,kij,nkj->nk", diff, inverse, diff)
    log_det = np.linalg.slogdet(gm.covariances_)[1]
    log_p = np.log(gm.weights_) - 0.5 * (3 * np.log(2 * np.pi) + log_det + maha)
    resp = np.exp(log_p - log_p.max(axis=1, keepdims=True))
    resp /= resp.sum(axis=1, keepdims=True)
    nk = resp.sum(axis=0)
    means = resp.T @ X / nk[:, None]
    centred = X[:, None, :] - means[None]
    covs = np.einsum("nk,nki,nkj->kij", resp, centred, centred) / nk[:, None, None]
    return nk / len(X), means, covs + gm.reg_covar * np.eye(3)


def test_histogram_em_step_equals_textbook_em_on_all_pixels():
    pixels = photo_pixels()
    assert np.unique(pixels, axis=0).shape[0] < pixels.shape[0]  # repeated colours
    params = {"seed": 2, "tol": 0.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tol=0 never converges
        before = GaussianMixture(6, max_iter=3, **params).fit(pixels)
        after = GaussianMixture(6, max_iter=4, **params).fit(pixels)
    weights, means, covs = reference_em_step(pixels.astype(np.float64), before)
    np.testing.assert_allclose(after.weights_, weights, rtol=1e-6)
    np.testing.assert_allclose(after.means_, means, rtol=1e-6)
    np.testing.assert_allclose(after.covariances_, covs, rtol=1e-5)


def test_weighted_histogram_fit_equals_pixel_fit():
    pixels = photo_pixels()
    colors, counts = np.unique(pixels, axis=0, return_counts=True)
    on_pixels = GaussianMixture(6, seed=2).fit(pixels)
    on_histogram = GaussianMixture(6, seed=2).fit(colors, sample_weight=counts)
    np.testing.assert_allclose(on_histogram.means_, on_pixels.means_, rtol=1e-10)
    np.testing.assert_allclose(on_histogram.covariances_, on_pixels.covariances_, rtol=1e-9)
    assert on_histogram.n_iter_ == on_pixels.n_iter_
    # The weighted score of the histogram is the mean over all pixels.
    assert on_histogram.score(colors, sample_weight=counts) == pytest.approx(
        on_pixels.score(pixels), rel=1e-12)


def test_chunking_does_not_change_the_fit(monkeypatch):
    pixels = photo_pixels()
    whole = GaussianMixture(4, seed=1).fit(pixels)
    monkeypatch.setattr(gmm_module, "_CHUNK_ELEMENTS", 64)  # 256-row chunks
    chunked = GaussianMixture(4, seed=1).fit(pixels)
    np.testing.assert_allclose(chunked.means_, whole.means_, rtol=1e-9)
    np.testing.assert_allclose(
        chunked.predict_proba(pixels), whole.predict_proba(pixels), atol=1e-9
    )


def test_component_on_a_single_colour_stays_regular():
    X, _ = draw_mixture(5_000)
    red = np.tile([255.0, 0.0, 0.0], (3_000, 1))
    gm = GaussianMixture(4, seed=0).fit(np.concatenate([X, red]))
    on_red = np.argmin(np.abs(gm.means_ - [255, 0, 0]).sum(axis=1))
    np.testing.assert_allclose(gm.means_[on_red], [255, 0, 0], atol=1e-6)
    np.testing.assert_allclose(gm.covariances_[on_red], gm.reg_covar * np.eye(3), atol=1e-9)
    assert np.all(np.linalg.eigvalsh(gm.covariances_) > 0)
    assert np.isfinite(gm.score(X))


def test_far_away_colours_do_not_underflow():
    X, _ = draw_mixture(3_000)
    gm = GaussianMixture(3, seed=0).fit(X)
    far = np.array([[0.0, 255.0, 0.0], [255.0, 255.0, 255.0]])
    log_p = gm.score_samples(far)
    assert np.all(np.isfinite(log_p)) and np.all(log_p < -50)
    proba = gm.predict_proba(far)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_predict_proba_matches_predict():
    pixels = photo_pixels()
    gm = GaussianMixture(5, seed=0).fit(pixels)
    proba = gm.predict_proba(pixels)
    assert proba.shape == (pixels.shape[0], 5)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(proba.argmax(axis=1), gm.predict(pixels))


def test_same_seed_same_fit():
    pixels = photo_pixels()
    a = GaussianMixture(6, seed=4).fit(pixels)
    b = GaussianMixture(6, seed=4).fit(pixels)
    np.testing.assert_array_equal(a.means_, b.means_)


# ------------------------------------------------------------------ degenerate inputs


def test_single_colour_image():
    pixels = np.tile(np.array([[12, 200, 99]], dtype=np.uint8), (500, 1))
    with pytest.warns(UserWarning, match="only 1 distinct colour for k=4"):
        gm = GaussianMixture(4).fit(pixels)
    np.testing.assert_array_equal(gm.weights_, [1.0])
    np.testing.assert_array_equal(gm.means_, [[12, 200, 99]])
    np.testing.assert_allclose(gm.covariances_, [gm.reg_covar * np.eye(3)])
    assert gm.converged_ and gm.n_iter_ == 0
    np.testing.assert_array_equal(gm.predict(pixels), 0)
    samples, component = gm.sample(100)
    np.testing.assert_array_equal(np.rint(samples), np.tile([12, 200, 99], (100, 1)))
    np.testing.assert_array_equal(component, 0)


def test_fewer_distinct_colours_than_k():
    colours = np.array([[0, 0, 0], [255, 255, 255], [255, 0, 0]], dtype=np.uint8)
    pixels = np.repeat(colours, [10, 30, 60], axis=0)
    with pytest.warns(UserWarning, match="only 3 distinct colours for k=8"):
        gm = GaussianMixture(8).fit(pixels)
    assert gm.means_.shape == (3, 3)
    np.testing.assert_array_equal(gm.means_[gm.predict(colours)], colours)
    np.testing.assert_allclose(gm.weights_[gm.predict(colours)], [0.1, 0.3, 0.6])


def test_k_equals_distinct_colours_is_silent():
    colours = np.array([[0, 0, 0], [255, 255, 255]], dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gm = GaussianMixture(2).fit(colours)
    np.testing.assert_array_equal(np.sort(gm.means_[:, 0]), [0, 255])


def test_not_converging_warns():
    pixels = photo_pixels()
    with pytest.warns(UserWarning, match=r"EM did not converge in max_iter=2 iterations"):
        gm = GaussianMixture(6, max_iter=2, tol=0).fit(pixels)
    assert not gm.converged_ and gm.n_iter_ == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, r"k=0 must be an integer between 1 and 256"),
        ({"k": 300}, r"k=300 must be an integer between 1 and 256"),
        ({"k": 2.5}, r"k=2.5 must be an integer between 1 and 256"),
        ({"k": 2, "init": "kmeans"}, r"init='kmeans' must be one of 'k-means\+\+', 'random'"),
        ({"k": 2, "max_iter": 0}, r"max_iter=0 must be an integer between 1 and "),
        ({"k": 2, "tol": -1}, r"tol=-1 must be a finite number >= 0"),
        ({"k": 2, "reg_covar": -1e-3}, r"reg_covar=-0.001 must be a non-negative number"),
        ({"k": 2, "reg_covar": "1e-6"}, r"reg_covar='1e-6' must be a non-negative number"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**kwargs)


def test_bad_inputs():
    gm = GaussianMixture(2)
    with pytest.raises(ValueError, match=r"not fitted yet"):
        gm.predict(np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"X must have shape \(n_samples, 3\), got \(4,\)"):
        gm.fit(np.zeros(4))
    with pytest.raises(ValueError, match=r"X has no samples"):
        gm.fit(np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"NaN or infinite"):
        gm.fit(np.array([[0.0, np.nan, 1.0]]))
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(2,\), got \(3,\)"):
        gm.fit(np.zeros((2, 3)), sample_weight=np.ones(3))
    with pytest.raises(ValueError, match=r"finite and non-negative"):
        gm.fit(np.zeros((2, 3)), sample_weight=np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match=r"every sample weight is zero"):
        gm.fit(np.eye(3), sample_weight=np.zeros(3))


def test_zero_weight_rows_are_ignored():
    X, _ = draw_mixture(4_000)
    outliers = np.array([[255.0, 255.0, 255.0], [0.0, 255.0, 0.0]])
    weights = np.concatenate([np.ones(len(X)), [0.0, 0.0]])
    with_zeros = GaussianMixture(3, seed=0).fit(np.concatenate([X, outliers]),
                                                sample_weight=weights)
    without = GaussianMixture(3, seed=0).fit(X)
    np.testing.assert_allclose(with_zeros.means_, without.means_, rtol=1e-9)


# ------------------------------------------------------------------ sampling


def test_sample_statistics_match_the_model():
    X, _ = draw_mixture(20_000)
    gm = GaussianMixture(3, seed=0).fit(X)
    n = 200_000
    samples, component = gm.sample(n, seed=11)
    assert samples.shape == (n, 3) and component.shape == (n,)

    # The mixture's own mean and covariance (law of total covariance).
    mean = gm.weights_ @ gm.means_
    second = np.einsum("j,jab->ab", gm.weights_, gm.covariances_) + np.einsum(
        "j,ja,jb->ab", gm.weights_, gm.means_, gm.means_
    )
    cov = second - np.outer(mean, mean)

    # Per-channel means within 5 standard errors.
    standard_error = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(samples.mean(axis=0) - mean) < 5 * standard_error)

    # Every covariance entry within 5 standard errors, estimated from the
    # sample's own fourth moments (the mixture is not Gaussian).
    centred = samples - mean
    products = centred[:, :, None] * centred[:, None, :]
    sample_cov = products.mean(axis=0)
    cov_error = products.std(axis=0) / np.sqrt(n)
    assert np.all(np.abs(sample_cov - cov) < 5 * cov_error)

    # Component frequencies against weights_, within 5 binomial standard errors.
    frequency = np.bincount(component, minlength=3) / n
    weight_error = np.sqrt(gm.weights_ * (1 - gm.weights_) / n)
    assert np.all(np.abs(frequency - gm.weights_) < 5 * weight_error)

    # Each component's samples have that component's mean.
    for j in range(3):
        drawn = samples[component == j]
        error = np.sqrt(np.diag(gm.covariances_[j]) / len(drawn))
        assert np.all(np.abs(drawn.mean(axis=0) - gm.means_[j]) < 5 * error)


def test_sample_is_repeatable_and_shuffled():
    X, _ = draw_mixture(3_000)
    gm = GaussianMixture(3, seed=9).fit(X)
    a, ca = gm.sample(1_000)
    b, cb = gm.sample(1_000)
    c, _ = gm.sample(1_000, seed=1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ca, cb)
    assert not np.array_equal(a, c)
    # Random order, not grouped by component as scikit-learn returns them.
    assert np.count_nonzero(np.diff(ca)) > 100
    assert gm.sample(0)[0].shape == (0, 3)


# ------------------------------------------------------------------ quantize dispatch


def test_quantize_histogram_labels_colours_with_their_component():
    X, component = draw_mixture(6_000)
    pixels = np.clip(np.rint(X), 0, 255).astype(np.uint8)
    colors, counts = np.unique(pixels, axis=0, return_counts=True)
    means, labels, n_iter = quantize_histogram(colors, counts, 3, seed=0, max_iter=100, tol=1e-3)
    assert means.shape == (3, 3) and labels.shape == (colors.shape[0],)
    assert labels.dtype == np.intp and n_iter > 0
    order = np.argsort(means[:, 0])
    np.testing.assert_allclose(means[order], TRUE_MEANS[np.argsort(TRUE_MEANS[:, 0])], atol=1.5)
    # Every colour goes to the mean nearest in the mixture's sense: here the nearest mean.
    nearest = np.argmin(((colors[:, None, :] - means[None]) ** 2).sum(axis=2), axis=1)
    assert np.mean(nearest == labels) > 0.99


def test_quantize_histogram_keeps_few_colours_exactly():
    colors = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8)
    means, labels, n_iter = quantize_histogram(colors, np.array([5, 7]), 4)
    np.testing.assert_array_equal(means, colors)
    np.testing.assert_array_equal(labels, [0, 1])
    assert n_iter == 0


def test_quantize_method_gmm_gives_a_palette():
    from kpal.cluster import quantize

    X, _ = draw_mixture(4_000)
    pixels = np.clip(np.rint(X), 0, 255).astype(np.uint8)
    result = quantize(pixels, 3, method="gmm", seed=0)
    assert result.method == "gmm"
    assert result.palette.shape == (3, 3) and result.palette.dtype == np.uint8
    order = np.argsort(result.palette[:, 0])
    np.testing.assert_allclose(
        result.palette[order], TRUE_MEANS[np.argsort(TRUE_MEANS[:, 0])], atol=1.5
    )
    assert result.labels.shape == (4_000,) and result.labels.max() == 2


# ------------------------------------------------------------------ BLAS threads


def many_colours(n: int = 30_000, seed: int = 5) -> np.ndarray:
    """n pixels with thousands of distinct colours: enough for BLAS to split the products."""
    X, _ = draw_mixture(n, seed)
    return np.clip(np.rint(X), 0, 255).astype(np.uint8)


def test_fit_is_the_same_bytes_with_one_or_two_blas_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    pixels = many_colours()
    results = []
    for threads in (1, 2):
        with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
            gm = GaussianMixture(16, seed=0).fit(pixels)
            labels = gm.predict(pixels)
            drawn, _ = gm.sample(20_000)
        results.append([gm.means_, gm.covariances_, gm.weights_, labels, drawn])
    for one, two in zip(*results, strict=True):
        assert one.tobytes() == two.tobytes()


def test_blas_runs_on_one_thread_inside_every_entry(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    seen = []

    def blas_threads():
        infos = threadpoolctl.threadpool_info()
        seen.append(max((i["num_threads"] for i in infos if i["user_api"] == "blas"), default=1))

    def spy(function):
        def recorded(*args, **kwargs):
            blas_threads()
            return function(*args, **kwargs)

        return recorded

    monkeypatch.setattr(gmm_module, "_features", spy(gmm_module._features))
    monkeypatch.setattr(gmm_module, "_features_by_row", spy(gmm_module._features_by_row))
    monkeypatch.setattr(GaussianMixture, "_draw", spy(GaussianMixture._draw))
    pixels = many_colours(3_000)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        gm = GaussianMixture(4, seed=0).fit(pixels)
        gm.predict(pixels)
        gm.predict_proba(pixels)
        gm.score(pixels)
        gm.sample(10)
        quantize_histogram(*np.unique(pixels, axis=0, return_counts=True), 4)
        gmm_module.sample_image(pixels.reshape(50, 60, 3), 3)
        outside = threadpoolctl.threadpool_info()
    assert len(seen) > 10 and set(seen) == {1}
    # The limit ends with the call: the caller's setting is back.
    assert all(i["num_threads"] == 2 for i in outside if i["user_api"] == "blas")


# ------------------------------------------------------------------ input validation

FITTED = GaussianMixture(2, seed=0).fit(draw_mixture(500)[0])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda X: GaussianMixture(2).fit(X), "X"),
        (lambda X: FITTED.predict(X), "X"),
        (lambda X: FITTED.predict_proba(X), "X"),
        (lambda X: FITTED.score_samples(X), "X"),
        (lambda X: FITTED.score(X), "X"),
        (lambda X: quantize_histogram(X, np.ones(len(X)), 1), "colors"),
    ],
    ids=["fit", "predict", "predict_proba", "score_samples", "score", "quantize_histogram"],
)
@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (np.nan, r"contains NaN or infinite values \({name}\[1\] = \[1.0, nan, 3.0\]\)"),
        (np.inf, r"contains NaN or infinite values \({name}\[1\] = \[1.0, inf, 3.0\]\)"),
        (-np.inf, r"contains NaN or infinite values"),
        (1e200, r"values must be at most 1e\+100 in magnitude.*{name}\[1\] = \[1.0, 1e\+200"),
    ],
    ids=["nan", "inf", "-inf", "1e200"],
)
def test_non_finite_or_huge_values_are_refused_by_every_entry(call, match, bad, problem):
    X = np.array([[1.0, 2.0, 3.0], [1.0, bad, 3.0], [7.0, 8.0, 9.0]])
    with pytest.raises(ValueError, match=f"^{match} " + problem.format(name=match)):
        call(X)


@pytest.mark.parametrize("dtype", [object, str, complex, bool])
def test_non_numeric_values_are_refused(dtype):
    X = np.ones((4, 3)).astype(dtype)
    with pytest.raises(ValueError, match=r"X must hold integer or float numbers, got dtype"):
        GaussianMixture(2).fit(X)
    with pytest.raises(ValueError, match=r"X must hold integer or float numbers, got dtype"):
        FITTED.predict(X)


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ([1.0, np.nan, 1.0], r"sample_weight must be finite and non-negative: "
                             r"sample_weight\[1\] = nan"),
        ([1.0, 1.0, np.inf], r"sample_weight must be finite and non-negative: "
                             r"sample_weight\[2\] = inf"),
        ([1.0, -2.0, 1.0], r"sample_weight must be finite and non-negative: "
                           r"sample_weight\[1\] = -2.0"),
        ([1e308, 1e308, 1e308], r"sample_weight sums to more than float64 holds"),
        ([0.0, 0.0, 0.0], r"sample_weight sums to zero"),
        (["a", "b", "c"], r"sample_weight must hold integer or float numbers"),
    ],
)
def test_bad_weights_are_refused_by_fit_and_score(weights, match):
    X = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    with pytest.raises(ValueError, match=match):
        GaussianMixture(2).fit(X, sample_weight=np.array(weights))
    with pytest.raises(ValueError, match=match):
        FITTED.score(X, sample_weight=np.array(weights))
    counts_match = match.replace("sample_weight", "counts")
    with pytest.raises(ValueError, match=counts_match):
        quantize_histogram(X.astype(np.uint8), np.array(weights), 2)


def test_weights_whose_sum_overflows_raise_before_any_work(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("work started")

    monkeypatch.setattr(gmm_module, "_unique_rows", fail)
    pixels = photo_pixels()
    with pytest.raises(ValueError, match=r"sample_weight sums to more than float64 holds"):
        GaussianMixture(2).fit(pixels, sample_weight=np.full(len(pixels), 1e308))


@pytest.mark.parametrize("scale", [1e300, 2.0**40, 0.5, 1e-300])
def test_only_weight_ratios_matter(scale):
    # Large weights used to overflow the k-means start (AttributeError); tiny ones were
    # swamped by the empty-component guard and every mean collapsed onto one.
    pixels = photo_pixels()
    plain = GaussianMixture(5, seed=1).fit(pixels)
    scaled = GaussianMixture(5, seed=1).fit(pixels, sample_weight=np.full(len(pixels), scale))
    np.testing.assert_allclose(scaled.means_, plain.means_, rtol=1e-9)
    np.testing.assert_allclose(scaled.covariances_, plain.covariances_, rtol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": -1}, r"n=-1 must be a non-negative integer"),
        ({"n": 2.5}, r"n=2.5 must be a non-negative integer"),
        ({"n": float("nan")}, r"n=nan must be a non-negative integer"),
        ({"n": True}, r"n=True must be a non-negative integer"),
        ({"n": 3, "seed": -1}, r"seed=-1 must be a non-negative integer"),
        ({"n": 3, "seed": "a"}, r"seed='a' must be a non-negative integer"),
    ],
)
def test_bad_sample_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FITTED.sample(**kwargs)


@pytest.mark.parametrize(
    ("image", "kwargs", "match"),
    [
        (np.zeros((0, 4, 3), np.uint8), {}, r"image has no pixels \(shape \(0, 4, 3\)\)"),
        (np.zeros((4, 4, 3)), {}, r"image must be a uint8 array"),
        (np.zeros((4, 4, 3), np.uint8), {"seed": -3}, r"seed=-3 must be a non-negative"),
        (np.zeros((4, 4, 3), np.uint8), {"k": 0}, r"k=0 must be an integer between 1 and 256"),
    ],
)
def test_bad_sample_image_arguments(image, kwargs, match):
    with pytest.raises(ValueError, match=match):
        gmm_module.sample_image(image, **{"k": 2, **kwargs})


def test_quantize_histogram_checks_k_and_shapes():
    colors = np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
    with pytest.raises(ValueError, match=r"k=0 must be an integer between 1 and 256"):
        quantize_histogram(colors, np.ones(2), 0)
    with pytest.raises(ValueError, match=r"counts must have shape \(2,\), got \(3,\)"):
        quantize_histogram(colors, np.ones(3), 4)
    with pytest.raises(ValueError, match=r"colors must have shape \(n_samples, 3\)"):
        quantize_histogram(colors[:, :2], np.ones(2), 4)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("max_iter", 0, r"max_iter=0 must be an integer between 1 and"),
    ("tol", -1.0, r"tol=-1.0 must be a finite number >= 0"),
    ("k", 0, r"k=0 must be an integer between 1 and 256"),
])
def test_parameters_set_after_construction_are_checked_by_fit(name, value, message):
    gm = GaussianMixture(2)
    setattr(gm, name, value)
    with pytest.raises(OptionError, match=message):
        gm.fit(np.random.default_rng(0).random((50, 3)) * 255)
