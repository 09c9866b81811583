"""Tests for kpal.cluster.kmeans.KMeans and its Lloyd core."""

from __future__ import annotations

import numpy as np
import pytest

from kpal.cluster import KMeans
from kpal.cluster.histogram import cell_sums
from kpal.cluster.kmeans import fit_histogram, lloyd, nearest_palette_colors
from kpal.cluster.nearest import Neighbours, assign
from kpal.errors import OptionError


def clustered_pixels(n: int = 3000, seed: int = 0) -> np.ndarray:
    """Pixels around 6 colours, with many repeats (like a photo's histogram)."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(30, 226, size=(6, 3))
    px = centres[rng.integers(0, 6, size=n)] + rng.integers(-12, 13, size=(n, 3))
    return px.astype(np.uint8)


def brute_force_lloyd(points: np.ndarray, centres: np.ndarray, n_iter: int) -> np.ndarray:
    """Textbook Lloyd on every point, with the full distance matrix."""
    points = points.astype(np.float64)
    centres = centres.astype(np.float64).copy()
    for _ in range(n_iter):
        d = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        labels = d.argmin(axis=1)
        for c in range(len(centres)):
            if (labels == c).any():
                centres[c] = points[labels == c].mean(axis=0)
    return centres


def test_histogram_lloyd_equals_brute_force_on_all_pixels():
    px = clustered_pixels()
    init = px[[0, 1, 2, 3, 4, 5, 6, 7]].astype(np.float64)
    km = KMeans(8, init=init, max_iter=5, tol=0).fit(px)
    expected = brute_force_lloyd(px, init, km.n_iter_)
    np.testing.assert_allclose(km.cluster_centers_, expected, rtol=0, atol=1e-9)
    d = ((px[:, None, :].astype(float) - km.cluster_centers_[None]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(km.labels_, d.argmin(axis=1))
    assert km.inertia_ == pytest.approx(d.min(axis=1).sum(), rel=1e-12)


def test_weighted_unique_colours_equal_expanded_pixels():
    px = clustered_pixels(seed=1)
    colors, counts = np.unique(px, axis=0, return_counts=True)
    for init in ("k-means++", "random"):
        on_pixels = KMeans(5, init=init, seed=3).fit(px)
        on_histogram = KMeans(5, init=init, seed=3).fit(colors, sample_weight=counts)
        np.testing.assert_allclose(on_pixels.cluster_centers_, on_histogram.cluster_centers_)
        assert on_pixels.inertia_ == pytest.approx(on_histogram.inertia_)
        assert on_pixels.n_iter_ == on_histogram.n_iter_


def test_zero_weight_pixels_are_labelled_with_their_nearest_centre():
    px = clustered_pixels(seed=5)
    weights = np.ones(px.shape[0])
    weights[::7] = 0  # left out of the fit, yet labelled like every pixel
    km = KMeans(4, seed=0).fit(px, sample_weight=weights)
    d = ((px[:, None, :].astype(float) - km.cluster_centers_[None]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(km.labels_, d.argmin(axis=1))
    assert km.inertia_ == pytest.approx((d.min(axis=1) * weights).sum(), rel=1e-12)


def test_float_weighted_equals_repeated_rows():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 2))
    counts = rng.integers(1, 4, size=40)
    init = x[:3]
    weighted = KMeans(3, init=init, tol=0).fit(x, sample_weight=counts)
    repeated = KMeans(3, init=init, tol=0).fit(np.repeat(x, counts, axis=0))
    np.testing.assert_allclose(weighted.cluster_centers_, repeated.cluster_centers_)
    assert weighted.inertia_ == pytest.approx(repeated.inertia_)


def test_predict_is_nearest_centre_and_matches_labels():
    px = clustered_pixels(seed=2)
    km = KMeans(6, seed=0).fit(px)
    labels = km.predict(px)
    np.testing.assert_array_equal(labels, km.labels_)
    d = ((px[:, None, :].astype(float) - km.cluster_centers_[None]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(labels, d.argmin(axis=1))
    assert km.fit_predict(px).tolist() == labels.tolist()


def test_same_seed_same_result_other_seed_runs():
    px = clustered_pixels(seed=5)
    a = KMeans(7, seed=11).fit(px)
    b = KMeans(7, seed=11).fit(px)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    c = KMeans(7, seed=12).fit(px)
    assert c.cluster_centers_.shape == (7, 3)


def test_empty_cluster_is_reseeded_to_far_points():
    px = np.array([[0, 0, 0]] * 5 + [[10, 0, 0]] * 5 + [[200, 0, 0]], dtype=np.uint8)
    # The third centre starts where no point is nearest to it.
    init = np.array([[0.0, 0, 0], [10, 0, 0], [5, 250, 250]])
    km = KMeans(3, init=init).fit(px)
    assert sorted(km.cluster_centers_[:, 0].tolist()) == [0.0, 10.0, 200.0]
    assert km.inertia_ == 0
    assert len(np.unique(km.labels_)) == 3


def test_k_equals_one_is_the_mean():
    px = clustered_pixels(seed=6)
    km = KMeans(1).fit(px)
    np.testing.assert_allclose(km.cluster_centers_[0], px.mean(axis=0))
    assert (km.labels_ == 0).all()


def test_assign_ties_go_to_lowest_index():
    labels, distances = assign(np.array([[1.0, 0.0]]), np.array([[0.0, 0.0], [2.0, 0.0]]))
    assert labels.tolist() == [0]
    assert distances.tolist() == [1.0]


def test_nearest_palette_colors_is_exact_brute_force():
    rng = np.random.default_rng(7)
    colors = rng.integers(0, 256, size=(5000, 3), dtype=np.uint8)
    palette = rng.integers(0, 256, size=(256, 3), dtype=np.uint8)
    labels, distances = nearest_palette_colors(colors, palette)
    d = ((colors[:, None, :].astype(np.int64) - palette[None]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(distances, d.min(axis=1))
    np.testing.assert_array_equal(labels, d.argmin(axis=1))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, r"k=0 must be an integer between 1 and 256"),
        ({"k": 257}, r"k=257 must be an integer between 1 and 256"),
        ({"k": 2.5}, r"k=2.5 must be an integer"),
        ({"k": 4, "init": "kmeans++"}, r"init='kmeans\+\+' must be one of"),
        ({"k": 4, "seed": -1}, r"seed=-1 must be an integer between 0 and "),
        ({"k": 4, "max_iter": 0}, r"max_iter=0 must be an integer between 1 and "),
        ({"k": 4, "tol": -1.0}, r"tol=-1.0 must be a finite number >= 0"),
        ({"k": 4, "tol": float("nan")}, r"tol=nan must be a finite number"),
    ],
)
def test_invalid_parameters_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KMeans(**kwargs).fit(clustered_pixels(100))


def test_invalid_data_is_rejected():
    with pytest.raises(ValueError, match=r"2-D array .* got \(3,\)"):
        KMeans(2).fit(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        KMeans(2).fit(np.array([[0.0], [np.nan]]))
    with pytest.raises(ValueError, match=r"k=3 is more than the 2 distinct samples"):
        KMeans(3).fit(np.array([[0, 0, 0], [0, 0, 0], [1, 1, 1]], dtype=np.uint8))
    with pytest.raises(ValueError, match=r"sample_weight has shape \(2,\), expected \(3,\)"):
        KMeans(2).fit(np.zeros((3, 2)), sample_weight=[1, 2])
    with pytest.raises(ValueError, match="not fitted"):
        KMeans(2).predict(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"init has shape \(1, 3\), expected \(2, 3\)"):
        KMeans(2, init=np.zeros((1, 3))).fit(clustered_pixels(10))


def many_colour_histogram(seed: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """About 40k distinct colours in blobs: enough for the coarse levels to engage."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(20, 236, size=(12, 3))
    px = centres[rng.integers(0, 12, size=120_000)] + rng.normal(0, 14, size=(120_000, 3))
    colors, counts = np.unique(np.clip(px, 0, 255).astype(np.uint8), axis=0, return_counts=True)
    return colors, counts


def test_coarse_to_fine_ends_at_a_lloyd_fixed_point_of_the_exact_histogram():
    colors, counts = many_colour_histogram()
    assert len(colors) > 20_000
    state = fit_histogram(colors, counts, 24, init="k-means++", rng=np.random.default_rng(0),
                          max_iter=300, tol=0.0)
    points = colors.astype(np.float64)
    labels, _ = assign(points, state.centres)
    np.testing.assert_array_equal(state.labels, labels)
    for c in range(24):
        members = labels == c
        mean = counts[members] @ points[members] / counts[members].sum()
        np.testing.assert_allclose(state.centres[c], mean, atol=1e-9)


@pytest.mark.parametrize("exact", [False, True])
def test_neighbour_search_matches_brute_force(exact):
    rng = np.random.default_rng(9)
    if exact:
        centres = rng.integers(0, 256, size=(64, 3)).astype(np.float64)
        centres[5] = centres[40]  # a duplicate: ties must go to the lower index
        points = rng.integers(0, 256, size=(3000, 3)).astype(np.float64)
        points[:10] = centres[40]
    else:
        centres = rng.uniform(0, 255, size=(64, 3))
        points = rng.uniform(0, 255, size=(3000, 3))
    start = rng.integers(0, 64, size=3000)
    # Any valid upper bound works; loosen the exact distance a little.
    upper = np.sqrt(((points - centres[start]) ** 2).sum(axis=1)) * 1.1 + 0.5
    labels, first, second = Neighbours(centres).search(points, start, upper, exact=exact)
    d = np.sqrt(((points[:, None, :] - centres[None]) ** 2).sum(axis=2))
    np.testing.assert_allclose(first, d.min(axis=1))
    if exact:
        np.testing.assert_array_equal(labels, d.argmin(axis=1))
        assert (labels[:10] == 5).all()
    else:
        np.testing.assert_allclose(d[np.arange(3000), labels], d.min(axis=1))
    d[np.arange(3000), labels] = np.inf
    assert (second <= d.min(axis=1) + 1e-9).all()


def test_palette_assignment_from_bounds_is_exact():
    colors, counts = many_colour_histogram(seed=10)
    state = fit_histogram(colors, counts, 120, init="k-means++", rng=np.random.default_rng(1),
                          max_iter=10, tol=1e-4)
    palette = np.clip(np.rint(state.centres), 0, 255).astype(np.uint8)
    labels, distances = nearest_palette_colors(colors, palette, state)
    d = ((colors[:, None, :].astype(np.int64) - palette[None]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(distances, d.min(axis=1))
    np.testing.assert_array_equal(labels, d.argmin(axis=1))


def test_palette_assignment_without_a_clustering_is_exact():
    colors, _ = many_colour_histogram(seed=11)
    palette = np.random.default_rng(2).integers(0, 256, size=(100, 3), dtype=np.uint8)
    labels, distances = nearest_palette_colors(colors, palette)
    d = ((colors[:, None, :].astype(np.int64) - palette[None]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(distances, d.min(axis=1))
    np.testing.assert_array_equal(labels, d.argmin(axis=1))


def test_float_neighbour_search_breaks_ties_towards_the_lowest_index():
    # Point 0 is equidistant from centres 0 and 2 and starts at 2, whose sorted
    # row lists 2 before 0: the label is still 0, the lowest index.
    centres = np.array([[0.0, 0.0, 0.0], [100.0, 100.0, 100.0], [10.0, 0.0, 0.0]])
    points = np.array([[5.0, 3.0, 0.0], [5.0, 3.0, 0.0]])
    start = np.array([2, 0])
    upper = np.array([10.0, 10.0])
    labels, first, _ = Neighbours(centres).search(points, start, upper, exact=False)
    assert labels.tolist() == [0, 0]
    assert first.tolist() == [np.sqrt(34.0)] * 2


def test_lloyd_labels_are_the_exact_nearest_centres_with_lowest_index_ties():
    # Integer points halfway between integer centres: every iteration has ties.
    rng = np.random.default_rng(5)
    colors, counts = many_colour_histogram(seed=12)
    state = fit_histogram(colors, counts, 40, init="k-means++", rng=rng, max_iter=30, tol=0.0)
    points = colors.astype(np.float64)
    diff = points[:, None, :] - state.centres[None]
    d = diff[..., 0] ** 2 + diff[..., 1] ** 2 + diff[..., 2] ** 2
    np.testing.assert_array_equal(state.labels, d.argmin(axis=1))


def test_lloyd_on_cells_moves_centres_to_the_exact_mean_of_their_colours():
    # Cells carry the integer sums of their colours: a centre is the exact
    # quotient sum / mass, not a sum of rounded cell means.
    colors, counts = many_colour_histogram(seed=13)
    means, weights, sums, _ = cell_sums(colors, counts, 5)
    start = means[:: max(1, len(means) // 9)][:9].copy()
    first = assign(means, start)[0]
    state = lloyd(means, weights, start, 1, 0.0, point_sums=sums)
    for c in range(9):
        expected = sums[first == c].sum(axis=0) / weights[first == c].sum()
        assert state.centres[c].tobytes() == expected.tobytes()


def test_kmeans_plusplus_on_uint8_colours_equals_float64():
    # The compiled path hands uint8 colours to the shared initialisation:
    # distances between two colours must not wrap around in uint8.
    from kpal.cluster.init import kmeans_plusplus, squared_distances

    colors = np.array([[0, 255, 255], [255, 0, 0], [255, 255, 0], [0, 255, 0]], dtype=np.uint8)
    assert squared_distances(colors, colors[1]).tolist() == [3 * 255**2, 0, 255**2, 2 * 255**2]
    weights = np.ones(4)
    for seed in range(20):
        a = kmeans_plusplus(colors, weights, 2, np.random.default_rng(seed))
        b = kmeans_plusplus(colors.astype(np.float64), weights, 2, np.random.default_rng(seed))
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("k", [2, 16, 64])
def test_lloyd_gives_the_same_result_whether_few_points_compare_every_centre(k, monkeypatch):
    # Searches of few points compare all k centres instead of the neighbour
    # lists: the bounds differ, the labels, centres and iterations must not.
    import kpal.cluster.nearest as nearest_module

    colors, counts = many_colour_histogram(seed=14)
    points, weights = colors.astype(np.float64), counts.astype(np.float64)
    start = points[np.random.default_rng(k).choice(points.shape[0], k, replace=False)]
    results = []
    for dense in (0, 1 << 30):
        monkeypatch.setattr(nearest_module, "_DENSE_SEARCH", dense)
        results.append(lloyd(points, weights, start, 40, 0.0))
    sparse, dense = results
    assert sparse.n_iter == dense.n_iter > 1
    np.testing.assert_array_equal(sparse.labels, dense.labels)
    assert sparse.centres.tobytes() == dense.centres.tobytes()


def test_fewer_distinct_samples_than_k_is_one_error_whatever_the_dtype():
    rows = [[0, 0, 0], [0, 0, 0], [9, 9, 9], [1, 2, 3], [9, 9, 9], [0, 0, 0]]
    for X in (np.array(rows, np.uint8), np.array(rows, np.float64), np.array(rows, np.int64)):
        with pytest.raises(ValueError, match=r"^k=5 is more than the 3 distinct samples$"):
            KMeans(5).fit(X)


def test_coordinates_whose_squares_overflow_are_refused():
    with pytest.raises(ValueError, match=r"magnitude up to 1e\+300, over 1e\+100"):
        KMeans(2).fit(np.array([[1e300, 0, 0], [1, 1, 1], [2, 2, 2]]))


def test_parameters_as_scikit_learn_reads_them():
    from kpal.cluster.gmm import GaussianMixture

    sklearn_base = pytest.importorskip("sklearn.base")
    km = KMeans(16, seed=3)
    assert km.get_params() == {"k": 16, "init": "k-means++", "seed": 3, "max_iter": 300,
                               "tol": 1e-4}
    assert repr(km) == "KMeans(k=16, seed=3)" and repr(KMeans()) == "KMeans()"
    copy = sklearn_base.clone(km)
    assert copy is not km and copy.get_params() == km.get_params()
    assert km.set_params(k=4, tol=0.5) is km and (km.k, km.tol) == (4, 0.5)
    with pytest.raises(ValueError, match=r"'n_clusters' is not a parameter of KMeans; its "
                                         r"parameters are k, init, seed, max_iter, tol"):
        km.set_params(n_clusters=3)
    gm = sklearn_base.clone(GaussianMixture(4, tol=1e-4))
    assert repr(gm) == "GaussianMixture(k=4, tol=0.0001)"
    X = np.random.default_rng(0).random((200, 3))
    assert np.array_equal(gm.fit(X).means_, GaussianMixture(4, tol=1e-4).fit(X).means_)
    gm.set_params(max_iter=0)
    with pytest.raises(OptionError, match="max_iter=0"):
        gm.fit(X)
