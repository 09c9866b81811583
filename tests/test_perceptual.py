"""Tests for kpal.cluster.perceptual: k-means in Oklab, palettes stored as sRGB."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from kpal.cluster import quantize
from kpal.cluster.perceptual import (
    SPACES,
    oklab_from_srgb8,
    quantize_perceptual,
    srgb8_from_oklab,
)
from kpal.errors import KpalError


def _photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Gradients plus noise, (height * width, 3) uint8: many distinct colours."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / (width - 1), y * 255 / (height - 1),
                     (x + y) * 127 / (width + height - 2)], axis=-1)
    return np.clip(np.rint(base + rng.normal(0, 8, base.shape)), 0, 255).astype(
        np.uint8).reshape(-1, 3)


def _brute_oklab_nearest(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    diff = oklab_from_srgb8(pixels)[:, None, :] - oklab_from_srgb8(palette)[None]
    return (diff * diff).sum(axis=2).argmin(axis=1)


def test_oklab_of_known_colours():
    # Reference values from Ottosson's definition of Oklab (scaled by 255 here).
    lab = oklab_from_srgb8(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0]], dtype=np.uint8))
    np.testing.assert_allclose(lab[0], [255.0, 0.0, 0.0], atol=0.02)
    np.testing.assert_allclose(lab[1], [0.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(lab[2] / 255, [0.62796, 0.22486, 0.12585], atol=2e-4)


def test_srgb8_from_oklab_inverts_every_8_bit_colour():
    levels = np.arange(256, dtype=np.uint8)
    grid = np.stack(np.meshgrid(levels[::3], levels[::5], levels, indexing="ij"),
                    axis=-1).reshape(-1, 3)
    np.testing.assert_array_equal(srgb8_from_oklab(oklab_from_srgb8(grid)), grid)


def test_srgb8_from_oklab_clips_out_of_gamut_points():
    out = srgb8_from_oklab(np.array([[300.0, 0, 0], [-10.0, 0, 0], [150.0, 90.0, 0]]))
    assert out.dtype == np.uint8
    assert out[0].tolist() == [255, 255, 255] and out[1].tolist() == [0, 0, 0]


@pytest.mark.parametrize(("k", "kwargs"), [(5, {}), (32, {"seed": 3}), (16, {"sample": 0.5}),
                                           (8, {"init": "random", "max_iter": 7})])
def test_space_rgb_is_exactly_quantize(k, kwargs):
    pixels = _photo(40, 50, seed=k)
    got = quantize_perceptual(pixels, k, space="rgb", **kwargs)
    want = quantize(pixels, k, **kwargs)
    np.testing.assert_array_equal(got.palette, want.palette)
    np.testing.assert_array_equal(got.labels, want.labels)
    assert (got.n_iter, got.inertia, got.n_colors, got.method) == (
        want.n_iter, want.inertia, want.n_colors, want.method)


@pytest.mark.parametrize("k", [2, 16, 64])
def test_oklab_labels_are_the_nearest_palette_colour_in_oklab(k):
    pixels = _photo(48, 64, seed=k)
    result = quantize_perceptual(pixels, k)
    palette, labels = result
    assert palette.dtype == np.uint8 and 1 <= palette.shape[0] <= k
    assert labels.dtype == np.uint8 and labels.shape == (pixels.shape[0],)
    np.testing.assert_array_equal(labels, _brute_oklab_nearest(pixels, palette))
    assert np.all(np.bincount(labels, minlength=palette.shape[0]) > 0)  # every entry used
    diff = pixels.astype(np.int64) - palette[labels]
    assert result.inertia == pytest.approx((diff * diff).sum() / pixels.shape[0])
    assert result.method == "kmeans" and result.n_colors == len(np.unique(pixels, axis=0))


def test_oklab_spends_more_colours_in_the_dark_than_rgb():
    # Greys 0..50 and 150..255, as many of each: RGB k-means splits them by
    # RGB range (50 against 105 levels); in Oklab, whose lightness follows the
    # eye, both ranges are about as wide, so the darks get more colours.
    rng = np.random.default_rng(7)
    levels = np.concatenate([rng.integers(0, 51, 5000), rng.integers(150, 256, 5000)])
    pixels = np.repeat(levels[:, None], 3, axis=1).astype(np.uint8)
    rgb = quantize(pixels, 8).palette
    oklab = quantize_perceptual(pixels, 8).palette
    assert np.count_nonzero(oklab[:, 0] <= 50) > np.count_nonzero(rgb[:, 0] <= 50)


def test_oklab_is_deterministic_and_follows_the_seed():
    pixels = _photo(40, 40, seed=9)
    first = quantize_perceptual(pixels, 12, seed=4)
    again = quantize_perceptual(pixels.copy(), 12, seed=4)
    np.testing.assert_array_equal(first.palette, again.palette)
    np.testing.assert_array_equal(first.labels, again.labels)


def test_large_histograms_go_coarse_to_fine_and_stay_exact_nearest():
    pixels = _photo(200, 200, seed=11)  # about 35 000 distinct colours
    assert len(np.unique(pixels, axis=0)) > 20_000
    result = quantize_perceptual(pixels, 16, sample=0.5)
    sub = np.random.default_rng(0).choice(pixels.shape[0], 2000, replace=False)
    np.testing.assert_array_equal(result.labels[sub],
                                  _brute_oklab_nearest(pixels[sub], result.palette))


def test_few_colours_are_kept_exactly_with_a_warning():
    pixels = np.array([[0, 0, 0], [10, 200, 30], [0, 0, 0], [255, 255, 255]], dtype=np.uint8)
    with pytest.warns(UserWarning, match=r"3 distinct colours, no more than k=4"):
        palette, labels = quantize_perceptual(pixels, 4)
    np.testing.assert_array_equal(palette[labels], pixels)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"space": "lab"}, r"space='lab' must be one of rgb, oklab"),
    ({"method": "gmm"}, r"method='gmm' is available with space='rgb' only"),
    ({"k": 0}, r"k=0"),
])
def test_bad_arguments_are_rejected(kwargs, message):
    pixels = _photo(10, 10)
    kwargs = {"k": 4, **kwargs}
    with warnings.catch_warnings(), pytest.raises(KpalError, match=message):
        quantize_perceptual(pixels, **kwargs)


def test_bad_pixels_are_rejected():
    with pytest.raises(KpalError, match=r"pixels must be a uint8 ndarray, got float64"):
        quantize_perceptual(np.zeros((4, 3)), 2)


def test_spaces():
    assert SPACES == ("rgb", "oklab")
