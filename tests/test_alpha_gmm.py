"""Tests for kpal.cluster.alpha_gmm (method="gmm" on translucent pixels) and
for GaussianMixture on points of any number of features."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import kpal
from kpal import codec, options
from kpal.cli import cli
from kpal.cluster import alpha_gmm
from kpal.cluster.alpha import _Colours, _Parts, _to_space, composite_mse, quantize_rgba
from kpal.cluster.alpha_gmm import gmm_centres
from kpal.cluster.gmm import GaussianMixture
from tests.test_alpha import nearest_allowed, photo_rgba

ROOT = Path(__file__).resolve().parent.parent


def psnr(source: np.ndarray, result: np.ndarray) -> float:
    return 10 * math.log10(255.0**2 / composite_mse(source, result))


def assert_valid(pixels: np.ndarray, result, k: int) -> None:
    """The alpha rules, every entry used, exact nearest allowed labels."""
    palette, labels = result.palette, result.labels
    assert palette.dtype == np.uint8 and palette.shape[1] == 4 and palette.shape[0] <= k
    assert labels.dtype == np.uint8 and labels.shape == (pixels.shape[0],)
    assert np.all(np.bincount(labels, minlength=palette.shape[0]) > 0)
    out = palette[labels]
    alpha = pixels[:, 3]
    assert np.all(out[alpha == 0] == 0)
    assert np.all(out[alpha == 255, 3] == 255)
    assert np.count_nonzero(palette[:, 3] == 0) == int((alpha == 0).any())
    np.testing.assert_array_equal(labels, nearest_allowed(pixels, palette))


# ------------------------------------------------------- quantize_rgba, gmm


@pytest.mark.parametrize("k", [2, 3, 8, 16, 64])
def test_soft_alpha_keeps_the_rules_and_labels_exactly(k: int) -> None:
    pixels = photo_rgba()
    alpha = pixels[:, 3]
    assert ((alpha > 0) & (alpha < 255)).any()
    result = quantize_rgba(pixels, k, method="gmm")
    assert result.method == "gmm"
    assert_valid(pixels, result, k)
    assert result.n_colors == quantize_rgba(pixels, k).n_colors
    # inertia: the composite error summed over the three channels (docstring).
    assert result.inertia == pytest.approx(3 * composite_mse(pixels, result.palette[result.labels]),
                                           rel=1e-9)


def test_without_transparent_pixels_every_entry_is_free() -> None:
    pixels = photo_rgba()
    pixels[:, 3] = np.maximum(pixels[:, 3], 40)
    result = quantize_rgba(pixels, 8, method="gmm")
    assert_valid(pixels, result, 8)
    assert not (result.palette[:, 3] == 0).any()
    assert result.palette.shape[0] == 8


def test_palette_is_the_mixture_means_rounded() -> None:
    # No k-means pass after EM: every translucent entry is the 8-bit rounding of
    # a component mean, every opaque one that of a mean moved onto alpha 255.
    pixels = photo_rgba()
    k = 12
    result = quantize_rgba(pixels, k, method="gmm", seed=3)
    opts = options.EncodeOptions(k=k, method="gmm", seed=3)
    colours = _Colours(_Parts(pixels))
    means = gmm_centres(_to_space(colours.points), colours.weights, k - 1, opts,
                        np.random.default_rng(3))
    assert means.shape == (k - 1, 4)
    premultiplied = np.empty_like(means)  # means back in premultiplied 0..255 units
    premultiplied[:, 3] = means[:, 3] / (math.sqrt(3) / 2)
    premultiplied[:, :3] = means[:, :3] + premultiplied[:, 3:4] / 2
    opaque_twins = means[:, :3] + 255 / 2
    for entry in result.palette[1:].astype(np.float64):
        colour = entry[:3] * entry[3] / 255
        if entry[3] == 255:
            gap = np.abs(opaque_twins - entry[:3]).max(axis=1)
        else:
            gap = np.maximum(np.abs(premultiplied[:, :3] - colour).max(axis=1),
                             np.abs(premultiplied[:, 3] - entry[3]))
        # Rounding the straight colour and the alpha moves a premultiplied
        # channel by at most 1.
        assert gap.min() <= 1.0 + 1e-9


def test_same_seed_same_bytes_and_seed_init_iterations_matter() -> None:
    pixels = photo_rgba()
    first = quantize_rgba(pixels, 16, method="gmm", seed=5)
    again = quantize_rgba(pixels, 16, method="gmm", seed=5)
    assert first.palette.tobytes() == again.palette.tobytes()
    assert first.labels.tobytes() == again.labels.tobytes()
    assert first.inertia == again.inertia and first.n_iter == again.n_iter
    other = quantize_rgba(pixels, 16, method="gmm", seed=6)
    assert other.palette.tobytes() != first.palette.tobytes()
    random_init = quantize_rgba(pixels, 16, method="gmm", seed=5, init="random")
    assert random_init.palette.tobytes() != first.palette.tobytes()
    assert_valid(pixels, random_init, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a budget of one EM step is not worth a warning
        one_step = quantize_rgba(pixels, 16, method="gmm", seed=5, max_iter=1)
    assert one_step.n_iter == 1 and first.n_iter > 1
    assert_valid(pixels, one_step, 16)
    loose = quantize_rgba(pixels, 16, method="gmm", seed=5, tol=10.0)
    assert loose.n_iter < first.n_iter


def test_sample_fits_on_part_of_the_pixels_and_labels_all() -> None:
    pixels = photo_rgba(96)
    full = quantize_rgba(pixels, 16, method="gmm")
    half = quantize_rgba(pixels, 16, method="gmm", sample=0.3)
    assert half.palette.tobytes() != full.palette.tobytes()
    assert_valid(pixels, half, 16)
    again = quantize_rgba(pixels, 16, method="gmm", sample=0.3)
    assert half.labels.tobytes() == again.labels.tobytes()
    assert psnr(pixels, half.palette[half.labels]) > psnr(pixels, full.palette[full.labels]) - 1.5


def test_many_colours_are_fitted_on_cells(monkeypatch: pytest.MonkeyPatch) -> None:
    pixels = photo_rgba(100)
    n_points = _Colours(_Parts(pixels)).weights.shape[0]
    merged = []
    real = alpha_gmm._merge

    def spy(*args):
        out = real(*args)
        merged.append((out[0].shape[0], int(np.count_nonzero(out[1] == 0))))
        return out

    monkeypatch.setattr(alpha_gmm, "_merge", spy)
    monkeypatch.setattr(alpha_gmm, "_CELL_POINTS", n_points)
    exact = quantize_rgba(pixels, 16, method="gmm")
    assert merged == []
    monkeypatch.setattr(alpha_gmm, "_CELL_POINTS", n_points // 4)
    cells = quantize_rgba(pixels, 16, method="gmm")
    assert len(merged) == 1 and 64 <= merged[0][0] < n_points // 2 and merged[0][1] == 0
    assert_valid(pixels, cells, 16)
    assert abs(psnr(pixels, cells.palette[cells.labels])
               - psnr(pixels, exact.palette[exact.labels])) < 1.0
    # Cells holding only colours left out of a sample still label their colours.
    sampled = quantize_rgba(pixels, 16, method="gmm", sample=0.5)
    assert len(merged) == 2 and merged[1][1] > 0
    assert_valid(pixels, sampled, 16)


def test_merge_means_weights_and_cells() -> None:
    points = np.array([[0.0, 0.0], [1.0, 1.0], [100.0, 0.0], [99.0, 2.0], [50.0, 50.0]])
    weights = np.array([1.0, 3.0, 2.0, 2.0, 0.0])
    means, cell_weights, cell_of_point = alpha_gmm._merge(points, weights, 4)
    # Cells of side 25: {0, 1}, {2, 3} and {4}, numbered in coordinate order.
    np.testing.assert_array_equal(cell_of_point, [0, 0, 2, 2, 1])
    np.testing.assert_array_equal(cell_weights, [4.0, 0.0, 4.0])
    np.testing.assert_allclose(means, [[0.75, 0.75], [50.0, 50.0], [99.5, 1.0]])
    same, weight, cell = alpha_gmm._merge(np.ones((3, 4)), np.array([1.0, 2.0, 0.0]), 32)
    np.testing.assert_array_equal(same, np.ones((1, 4)))
    np.testing.assert_array_equal(weight, [3.0])
    np.testing.assert_array_equal(cell, [0, 0, 0])


def test_quality_within_a_margin_of_kmeans() -> None:
    # A photo with a wide soft edge, most pixels translucent. Measured: k = 16
    # 21.9 dB against k-means' 23.2, k = 32 24.7 against 26.1. A mixture
    # maximizes likelihood, not PSNR (as for RGB images).
    pixels = photo_rgba(96)
    for k in (16, 32):
        gmm = quantize_rgba(pixels, k, method="gmm")
        kmeans = quantize_rgba(pixels, k)
        gap = psnr(pixels, kmeans.palette[kmeans.labels]) - psnr(pixels, gmm.palette[gmm.labels])
        assert gap < 2.5
        # And far better than half the entries would do.
        fewer = quantize_rgba(pixels, k // 4)
        assert psnr(pixels, gmm.palette[gmm.labels]) > psnr(pixels, fewer.palette[fewer.labels])


def test_compiled_kernels_and_numba_threads_give_the_same_bytes() -> None:
    pytest.importorskip("numba")
    code = (
        "import hashlib, json, sys\n"
        "sys.path.insert(0, '.')\n"
        "from tests.test_alpha import photo_rgba\n"
        "from kpal.cluster.alpha import quantize_rgba\n"
        "from kpal import _jit, options\n"
        "from kpal.cluster.alpha_gmm import quantize_translucent_pixels\n"
        "r = quantize_rgba(photo_rgba(120), 32, method='gmm', seed=2)\n"
        "fast = _jit.load('kpal.cluster._alpha_fast', 1, min_pixels=0)\n"
        "p = quantize_translucent_pixels(photo_rgba(160), 32,\n"
        "                                options.EncodeOptions(k=32, method='gmm'), fast)\n"
        "digest = hashlib.sha256(r.palette.tobytes() + r.labels.tobytes()"
        " + p.palette.tobytes() + p.labels.tobytes()).hexdigest()\n"
        "print(json.dumps([digest + repr((r.inertia, p.inertia, r.n_iter, p.n_iter)),"
        " fast is not None]))\n"
    )
    digests = set()
    compiled = []
    for pure, threads in (("1", "1"), ("0", "1"), ("0", "2")):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads, KPAL_PURE_NUMPY=pure,
                   OPENBLAS_NUM_THREADS=threads)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True, cwd=ROOT)
        digest, fast = json.loads(out.stdout)
        digests.add(digest)
        compiled.append(fast)
    assert compiled == [False, True, True]
    assert len(digests) == 1


@pytest.mark.parametrize("sample", [None, 0.5])
def test_the_pixel_path_keeps_the_rules_and_counts(sample: float | None) -> None:
    pixels = photo_rgba(200)
    opts = options.EncodeOptions(k=16, method="gmm", sample=sample)
    result = alpha_gmm.quantize_translucent_pixels(pixels, 16, opts, None)
    assert result.method == "gmm" and result.n_iter > 0
    assert_valid(pixels, result, 16)
    colours = quantize_rgba(pixels, 16, method="gmm", sample=sample)
    assert result.n_colors == colours.n_colors
    assert result.inertia == pytest.approx(3 * composite_mse(pixels, result.palette[result.labels]),
                                           rel=1e-9)
    # Cells of the pixels instead of their distinct colours: another start of EM,
    # about as good.
    assert abs(psnr(pixels, result.palette[result.labels])
               - psnr(pixels, colours.palette[colours.labels])) < 1.0


def test_the_pixel_path_compiled_gives_the_same_bytes() -> None:
    pytest.importorskip("numba")
    from kpal import _jit

    pixels = photo_rgba(200)
    fast = _jit.load("kpal.cluster._alpha_fast", pixels.shape[0], min_pixels=0)
    assert fast is not None
    opts = options.EncodeOptions(k=32, method="gmm", seed=4)
    plain = alpha_gmm.quantize_translucent_pixels(pixels, 32, opts, None)
    compiled = alpha_gmm.quantize_translucent_pixels(pixels, 32, opts, fast)
    assert plain.palette.tobytes() == compiled.palette.tobytes()
    assert plain.labels.tobytes() == compiled.labels.tobytes()
    assert plain.inertia == compiled.inertia and plain.n_colors == compiled.n_colors


def test_many_translucent_pixels_take_the_pixel_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # Past _PIXEL_PATH translucent pixels quantize_rgba fits the mixture on the
    # cells of the pixels, as k-means does, without listing the colours.
    import kpal.cluster.alpha as alpha

    pixels = photo_rgba(160)
    opts = options.EncodeOptions(k=16, method="gmm", seed=2)
    direct = alpha_gmm.quantize_translucent_pixels(pixels, 16, opts, None)
    monkeypatch.setenv("KPAL_PURE_NUMPY", "1")
    monkeypatch.setattr(alpha, "_PIXEL_PATH", 1000)
    via = quantize_rgba(pixels, 16, method="gmm", seed=2)
    assert via.palette.tobytes() == direct.palette.tobytes()
    assert via.labels.tobytes() == direct.labels.tobytes()
    monkeypatch.setattr(alpha, "_PIXEL_PATH", 10**9)
    listed = quantize_rgba(pixels, 16, method="gmm", seed=2)
    assert listed.labels.tobytes() != via.labels.tobytes()  # the other path was taken


def test_the_pixel_path_leaves_few_colours_to_the_lossless_path() -> None:
    pixels = np.array([[0, 0, 0, 0], [10, 20, 30, 128], [10, 20, 30, 255], [5, 5, 5, 0]] * 8,
                      dtype=np.uint8)
    opts = options.EncodeOptions(k=3, method="gmm")
    assert alpha_gmm.quantize_translucent_pixels(pixels, 3, opts, None) is None


# ------------------------------------------------------------ codec and CLI


def soft_image(size: int = 64) -> np.ndarray:
    return photo_rgba(size).reshape(size, size, 4)


def decode_pixels(data: bytes) -> np.ndarray:
    with codec.decode(data) as image:
        assert image.mode == "P"
        return np.asarray(image.convert("RGBA"))


def test_codec_encode_round_trip() -> None:
    image = soft_image()
    data = codec.encode(image, k=8, method="gmm")
    assert data == kpal.encode(image, k=8, method="gmm")
    back = decode_pixels(data)
    expected = quantize_rgba(image.reshape(-1, 4), 8, method="gmm")
    np.testing.assert_array_equal(back.reshape(-1, 4), expected.palette[expected.labels])
    encoded = codec.encode_image(image, k=8, method="gmm")
    assert encoded.method == "gmm" and encoded.data == data
    alpha = image[..., 3]
    assert ((back[..., 3] > 0) & (back[..., 3] < 255)).any()
    assert (back[alpha == 0] == 0).all() and (back[alpha == 255, 3] == 255).all()


def test_cli_encodes_an_rgba_png_with_gmm(tmp_path: Path) -> None:
    from PIL import Image

    image = soft_image()
    source = tmp_path / "in.png"
    Image.fromarray(image, "RGBA").save(source)
    result = CliRunner().invoke(cli, ["encode", str(source), "-k", "8", "--method", "gmm"])
    assert result.exit_code == 0, result.output
    assert "gmm" in result.output and "EM iterations" in result.output
    assert "RGBA palette" in result.output
    back = decode_pixels((tmp_path / "in.kpal").read_bytes())
    expected = quantize_rgba(image.reshape(-1, 4), 8, method="gmm")
    np.testing.assert_array_equal(back.reshape(-1, 4), expected.palette[expected.labels])
    assert f"{psnr(image, back):.2f} dB" in result.output


# -------------------------------------------- GaussianMixture in d dimensions


def direct_log_density(gm: GaussianMixture, X: np.ndarray) -> np.ndarray:
    """log p(x) of the mixture from its weights, means and covariances, by hand."""
    d = X.shape[1]
    per_component = []
    for weight, mean, cov in zip(gm.weights_, gm.means_, gm.covariances_, strict=True):
        diff = X - mean
        mahalanobis = np.einsum("ni,ni->n", diff, np.linalg.solve(cov, diff.T).T)
        log_det = np.linalg.slogdet(cov)[1]
        per_component.append(np.log(weight) - 0.5 * (d * np.log(2 * np.pi) + log_det
                                                      + mahalanobis))
    stacked = np.stack(per_component, axis=1)
    top = stacked.max(axis=1)
    return top + np.log(np.exp(stacked - top[:, None]).sum(axis=1))


def four_d_clusters(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, list, list]:
    rng = np.random.default_rng(seed)
    means = [np.array([-60.0, 10.0, 30.0, 200.0]), np.array([40.0, -20.0, 5.0, 60.0]),
             np.array([0.0, 70.0, -50.0, 120.0])]
    scales = [np.array([[6.0, 0, 0, 0], [2, 4, 0, 0], [0, 1, 5, 0], [1, 0, 0, 3]]),
              np.diag([3.0, 8.0, 2.0, 5.0]),
              np.array([[5.0, 0, 0, 0], [-3, 6, 0, 0], [2, 2, 4, 0], [0, 1, -1, 2]])]
    X = np.concatenate([rng.standard_normal((n, 4)) @ s.T + m
                        for m, s in zip(means, scales, strict=True)])
    return X, means, [s @ s.T for s in scales]


def test_four_features_score_against_a_direct_log_density() -> None:
    X, _, _ = four_d_clusters()
    gm = GaussianMixture(3, seed=0).fit(X)
    assert gm.means_.shape == (3, 4) and gm.covariances_.shape == (3, 4, 4)
    assert gm.precisions_cholesky_.shape == (3, 4, 4)
    probe = np.concatenate([X[::50], np.random.default_rng(1).uniform(-100, 250, (50, 4))])
    expected = direct_log_density(gm, probe)
    np.testing.assert_allclose(gm.score_samples(probe), expected, rtol=1e-9, atol=1e-9)
    assert gm.score(X) == pytest.approx(direct_log_density(gm, X).mean(), rel=1e-10)
    proba = gm.predict_proba(probe)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(gm.predict(probe), proba.argmax(axis=1))
    assert np.all(np.diff(gm.lower_bounds_[:-1]) >= -1e-9)  # EM never loses likelihood


def test_four_features_recover_the_generating_mixture() -> None:
    X, means, covariances = four_d_clusters(6000)
    gm = GaussianMixture(3, seed=1).fit(X)
    order = [int(np.argmin(np.abs(gm.means_ - m).sum(axis=1))) for m in means]
    assert sorted(order) == [0, 1, 2]
    for j, mean, cov in zip(order, means, covariances, strict=True):
        np.testing.assert_allclose(gm.means_[j], mean, atol=0.5)
        np.testing.assert_allclose(gm.covariances_[j], cov, atol=0.15 * np.abs(cov).max())
    np.testing.assert_allclose(gm.weights_, 1 / 3, atol=1e-3)
    drawn, component = gm.sample(30000, seed=4)
    assert drawn.shape == (30000, 4) and component.shape == (30000,)
    j = order[0]
    np.testing.assert_allclose(drawn[component == j].mean(axis=0), gm.means_[j], atol=0.3)
    np.testing.assert_allclose(np.cov(drawn[component == j].T), gm.covariances_[j],
                               atol=0.1 * np.abs(gm.covariances_[j]).max())


@pytest.mark.parametrize("d", [1, 2, 5])
def test_other_feature_counts_fit(d: int) -> None:
    rng = np.random.default_rng(d)
    X = np.concatenate([rng.normal(0, 1, (400, d)), rng.normal(10, 2, (400, d))])
    gm = GaussianMixture(2, seed=0).fit(X)
    assert gm.means_.shape == (2, d) and gm.covariances_.shape == (2, d, d)
    np.testing.assert_allclose(np.sort(gm.means_[:, 0]), [0, 10], atol=0.4)
    np.testing.assert_allclose(gm.score_samples(X[:20]), direct_log_density(gm, X[:20]),
                               rtol=1e-9)


def test_a_fitted_model_checks_the_feature_count() -> None:
    X, _, _ = four_d_clusters(200)
    gm = GaussianMixture(3).fit(X)
    with pytest.raises(ValueError, match=r"X must have shape \(n_samples, 4\), got \(5, 3\)$"):
        gm.predict(np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"X must have shape \(n_samples, 4\), got \(2, 5\)$"):
        gm.score(np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"\(n_samples, 3\), got \(4,\) \(or \(n_samples, d\)"):
        GaussianMixture(2).fit(np.zeros(4))
    with pytest.raises(ValueError, match=r"got \(3, 0\)"):
        GaussianMixture(2).fit(np.zeros((3, 0)))


def test_uint8_points_of_four_features_are_points_not_colours() -> None:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (500, 4)).astype(np.uint8)
    by_int = GaussianMixture(4, seed=0).fit(X)
    by_float = GaussianMixture(4, seed=0).fit(X.astype(np.float64))
    np.testing.assert_array_equal(by_int.means_, by_float.means_)


def test_gmm_centres_any_dimension_and_deterministic() -> None:
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(0, 1, (300, 2)), rng.normal(20, 1, (300, 2))])
    weights = rng.integers(0, 4, 600).astype(np.float64)
    opts = options.EncodeOptions(k=2, method="gmm")
    first = gmm_centres(points, weights, 2, opts, np.random.default_rng(7))
    again = gmm_centres(points, weights, 2, opts, np.random.default_rng(7))
    assert first.shape == (2, 2) and first.tobytes() == again.tobytes()
    keep = weights > 0
    expected = [np.average(points[keep & (points[:, 0] < 10)], axis=0,
                           weights=weights[keep & (points[:, 0] < 10)]),
                np.average(points[keep & (points[:, 0] >= 10)], axis=0,
                           weights=weights[keep & (points[:, 0] >= 10)])]
    np.testing.assert_allclose(first[np.argsort(first[:, 0])], expected, atol=1e-6)

