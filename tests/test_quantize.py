"""Tests for kpal.cluster.quantize: the palette and labels the codec stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from kpal.cluster import Quantization, quantize
from kpal.errors import KpalError


def photo(size: int = 96) -> np.ndarray:
    """A small real photo (scikit-image's astronaut, downscaled), shape (n, 3) uint8."""
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    image = Image.fromarray(data.astronaut()).resize((size, size), Image.LANCZOS)
    return np.asarray(image).reshape(-1, 3)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def noise_pixels(n: int = 4000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3), dtype=np.uint8)


def brute_force_nearest(pixels: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = ((pixels[:, None, :].astype(np.int64) - palette[None]) ** 2).sum(axis=2)
    return d.argmin(axis=1), d.min(axis=1)


@pytest.mark.parametrize("k", [2, 16, 256])
def test_labels_are_nearest_palette_colour_and_inertia_is_mse(k):
    px = noise_pixels()
    q = quantize(px, k)
    assert isinstance(q, Quantization)
    assert q.method == "kmeans"
    assert q.palette.dtype == np.uint8 and q.labels.dtype == np.uint8
    assert q.labels.shape == (px.shape[0],)
    assert q.palette.shape == (k, 3)
    assert len(np.unique(q.palette, axis=0)) == k
    nearest, distances = brute_force_nearest(px, q.palette)
    # Ties may pick either index, but never a farther colour.
    chosen = ((px.astype(np.int64) - q.palette[q.labels]) ** 2).sum(axis=1)
    np.testing.assert_array_equal(chosen, distances)
    assert q.inertia == pytest.approx(distances.mean())
    assert q.n_colors == len(np.unique(px, axis=0))
    assert q.n_iter >= 1


def test_unpacks_as_palette_then_labels():
    px = noise_pixels(500)
    q = quantize(px, 8)
    palette, labels = q
    assert palette is q.palette and labels is q.labels


def test_fewer_colours_than_k_is_lossless_with_a_warning():
    colours = np.array([[10, 20, 30], [200, 0, 0], [0, 0, 255]], dtype=np.uint8)
    px = colours[np.random.default_rng(0).integers(0, 3, size=1000)]
    with pytest.warns(UserWarning, match=r"3 distinct colours, no more than k=16.*lossless"):
        q = quantize(px, 16)
    assert len(q.palette) == 3
    np.testing.assert_array_equal(q.palette[q.labels], px)
    assert q.inertia == 0 and q.n_iter == 0 and q.n_colors == 3


def test_exactly_k_colours_is_lossless():
    px = noise_pixels(64)
    n = len(np.unique(px, axis=0))
    with pytest.warns(UserWarning, match="lossless"):
        q = quantize(px, n)
    np.testing.assert_array_equal(q.palette[q.labels], px)


def test_one_pixel():
    px = np.array([[1, 2, 3]], dtype=np.uint8)
    with pytest.warns(UserWarning):
        palette, labels = quantize(px, 256)
    assert palette.tolist() == [[1, 2, 3]] and labels.tolist() == [0]


def test_k_equals_one_is_the_rounded_mean():
    px = np.array([[0, 0, 0], [0, 0, 0], [0, 0, 0], [9, 9, 10]], dtype=np.uint8)
    palette, labels = quantize(px, 1)
    assert palette.tolist() == [[2, 2, 2]]
    assert labels.tolist() == [0, 0, 0, 0]


def test_unused_palette_entries_are_dropped():
    # Two clusters an eighth of a level apart round to the same uint8 colour.
    px = np.array([[0, 0, 0]] * 7 + [[0, 0, 1]] + [[100, 100, 100]] * 8, dtype=np.uint8)
    palette, labels = quantize(px, 2)
    assert len(palette) == 2
    q = quantize(np.repeat(noise_pixels(300, seed=3), 2, axis=0), 256)
    assert len(q.palette) == len(np.unique(q.palette, axis=0))
    assert set(np.unique(q.labels)) == set(range(len(q.palette)))


def test_same_seed_gives_identical_output():
    px = photo(48)
    a = quantize(px, 32, seed=5)
    b = quantize(px, 32, seed=5)
    np.testing.assert_array_equal(a.palette, b.palette)
    np.testing.assert_array_equal(a.labels, b.labels)


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_both_inits_reach_a_good_palette(init):
    px = photo(64)
    q = quantize(px, 16, init=init)
    assert psnr(px, q.palette[q.labels]) > 26


def test_sample_fits_on_a_fraction_and_labels_every_pixel():
    px = photo(64)
    full = quantize(px, 16)
    sampled = quantize(px, 16, sample=0.25)
    assert sampled.labels.shape == full.labels.shape
    _, distances = brute_force_nearest(px, sampled.palette)
    assert sampled.inertia == pytest.approx(distances.mean())
    assert psnr(px, sampled.palette[sampled.labels]) > psnr(px, full.palette[full.labels]) - 1.0


@pytest.mark.parametrize("k", [16, 64])
def test_quality_at_least_scikit_learn(k):
    cluster = pytest.importorskip("sklearn.cluster")
    px = photo(96)
    colors, counts = np.unique(px, axis=0, return_counts=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = cluster.KMeans(n_clusters=k, n_init=1, random_state=0).fit(
            colors.astype(np.float64), sample_weight=counts
        )
    ref_palette = np.clip(np.rint(ref.cluster_centers_), 0, 255).astype(np.uint8)
    ref_labels, _ = brute_force_nearest(px, ref_palette)
    ours = quantize(px, k)
    assert psnr(px, ours.palette[ours.labels]) >= psnr(px, ref_palette[ref_labels]) - 0.05


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, r"k=0 must be an integer between 1 and 256"),
        ({"k": 300}, r"k=300 must be an integer between 1 and 256"),
        ({"k": 4, "method": "median"}, r"method='median' must be one of 'kmeans', 'gmm'"),
        ({"k": 4, "init": "wu"}, r"init='wu' must be one of"),
        ({"k": 4, "seed": -3}, r"seed=-3 must be an integer between 0 and "),
        ({"k": 4, "max_iter": 0}, r"max_iter=0 must be an integer between 1 and "),
        ({"k": 4, "tol": -0.5}, r"tol=-0.5 must be a finite number >= 0"),
        ({"k": 4, "sample": 0.0}, r"sample=0.0 must be a fraction in \(0, 1\]"),
        ({"k": 4, "sample": 1.5}, r"sample=1.5 must be a fraction in \(0, 1\]"),
    ],
)
def test_invalid_arguments_name_the_value(kwargs, match):
    with pytest.raises(KpalError, match=match):
        quantize(noise_pixels(100), **kwargs)


@pytest.mark.parametrize(
    ("pixels", "match"),
    [
        (np.zeros((4, 3), dtype=np.float64), r"pixels must be a uint8 ndarray, got float64"),
        (np.zeros((4, 4), dtype=np.uint8), r"shape \(n_pixels, 3\) .* got \(4, 4\)"),
        (np.zeros((0, 3), dtype=np.uint8), r"got \(0, 3\)"),
        ([[0, 0, 0]], r"pixels must be a uint8 ndarray, got list"),
    ],
)
def test_invalid_pixels_are_rejected(pixels, match):
    with pytest.raises(KpalError, match=match):
        quantize(pixels, 4)


_THREADED_RUN = """
import hashlib, json, sys
import numpy as np
from kpal.cluster import quantize
rng = np.random.default_rng(1)
base = rng.integers(0, 256, size=(400, 3))
px = np.clip(base[rng.integers(0, 400, 30000)] + rng.normal(0, 9, (30000, 3)), 0, 255)
px = px.astype(np.uint8)
out = {}
for k in (16, 256):
    q = quantize(px, k, seed=7)
    out[k] = hashlib.sha256(q.palette.tobytes() + q.labels.tobytes()).hexdigest()
json.dump(out, sys.stdout)
"""


def test_identical_output_with_one_or_two_blas_threads():
    results = []
    for threads in ("1", "2"):
        env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads,
                   MKL_NUM_THREADS=threads)
        done = subprocess.run([sys.executable, "-c", _THREADED_RUN], env=env,
                              capture_output=True, text=True, check=True, timeout=120)
        results.append(json.loads(done.stdout))
    assert results[0] == results[1]


def test_gmm_method_is_dispatched():
    import kpal.cluster.gmm  # noqa: F401 - a broken module must fail here, never skip
    px = photo(32)
    q = quantize(px, 8, method="gmm", max_iter=20)
    assert q.method == "gmm"
    assert 1 <= len(q.palette) <= 8
    assert set(np.unique(q.labels)) == set(range(len(q.palette)))
    diff = px.astype(np.int64) - q.palette[q.labels]
    assert q.inertia == pytest.approx((diff**2).sum(axis=1).mean())


def test_the_result_is_a_pair_by_index_too():
    pixels = np.random.default_rng(0).integers(0, 256, (50, 3), np.uint8)
    result = quantize(pixels, 4)
    palette, labels = result
    assert result[0] is palette and result[1] is labels and result[-1] is labels
    assert len(result) == 2
    with pytest.raises(IndexError):
        result[2]


def test_quantize_takes_option_text_as_encode_does():
    """Every option goes through the options module: text gives the same fit as numbers."""
    pixels = np.random.default_rng(0).integers(0, 256, (300, 3), dtype=np.uint8)
    for method in ("kmeans", "gmm"):
        ref = quantize(pixels, 8, method=method, seed=3, sample=0.5, max_iter=3)
        got = quantize(pixels, "8", method=method, seed="3", sample="0.5", max_iter="3")
        np.testing.assert_array_equal(got.palette, ref.palette)
        np.testing.assert_array_equal(got.labels, ref.labels)
        assert got.n_iter == ref.n_iter
