"""Tests for kpal.cluster.remap: nearest, ordered and Floyd--Steinberg labels."""

from __future__ import annotations

import numpy as np
import pytest

from kpal.cluster import remap as remap_module
from kpal.cluster.remap import BAND_ROWS, DITHERS, blue_noise, palette_spacing, remap
from kpal.errors import KpalError

GREYS = np.array([[60, 60, 60], [160, 160, 160]], dtype=np.uint8)


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients plus a little noise: like a photo, cheap to make."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / max(width - 1, 1), y * 255 / max(height - 1, 1),
                     (x + y) * 127 / max(width + height - 2, 1)], axis=-1)
    noisy = base + rng.normal(0, 6, base.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _palette(k: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (k, 3), dtype=np.uint8)


def _brute_nearest(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    diff = pixels.reshape(-1, 1, 3).astype(np.int64) - palette.astype(np.int64)
    squared = (diff * diff).sum(axis=2)
    return squared.argmin(axis=1).reshape(pixels.shape[:2])  # first minimum: lowest index


def _reference_fs(pixels: np.ndarray, palette: np.ndarray, strength: float,
                  weights: np.ndarray | None = None) -> np.ndarray:
    """Textbook serpentine Floyd--Steinberg, one pixel at a time (small images only).

    The arithmetic is written in the same order as the module's (pixel plus
    the error from above, then the error from the left; the same scoring of
    palette colours), so the labels must match exactly.
    """
    height, width = pixels.shape[:2]
    colours = palette.astype(np.float64)
    channels = tuple(np.ascontiguousarray(column) for column in colours.T)
    half_norms = 0.5 * (colours * colours).sum(axis=1)
    cap = (0.5 * palette_spacing(palette)) ** 2
    w = np.ones((height, width)) if weights is None else weights
    labels = np.empty((height, width), dtype=np.intp)
    below = np.zeros((width, 3))
    for y in range(height):
        step = 1 if y % 2 == 0 else -1
        base = pixels[y].astype(np.float64) + w[y][:, None] * below
        errors = np.zeros((width, 3))
        carry = None
        for x in range(width) if step == 1 else range(width - 1, -1, -1):
            value = base[x].copy() if carry is None else base[x] + w[y, x] * carry
            value = np.minimum(np.maximum(value, 0.0), 255.0)
            best = int(remap_module._nearest_rows(value[None], channels, half_norms)[0])
            error = value - colours[best]
            if error[0] * error[0] + error[1] * error[1] + error[2] * error[2] > cap:
                error = error * 0.75
            labels[y, x] = best
            errors[x] = error
            carry = error * (7 / 16 * strength)
        below = errors * (5 / 16 * strength)
        ahead = np.zeros((width, 3))
        behind = np.zeros((width, 3))
        if step == 1:
            ahead[:-1] = errors[1:]
            behind[1:] = errors[:-1]
        else:
            ahead[1:] = errors[:-1]
            behind[:-1] = errors[1:]
        below = below + (3 / 16 * strength) * ahead
        below = below + (1 / 16 * strength) * behind
    return labels


# -- dither="none" -----------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 7, 64, 256])
def test_none_is_exact_nearest_with_lowest_index_ties(k):
    pixels = _image(23, 31, seed=k)
    palette = _palette(k, seed=k)
    if k >= 7:
        palette[3] = palette[5]  # a duplicate: its lower index must win
        pixels[0, 0] = palette[5]
    labels = remap(pixels, palette)
    assert labels.dtype == np.uint8 and labels.shape == pixels.shape[:2]
    np.testing.assert_array_equal(labels, _brute_nearest(pixels, palette))
    if k >= 7:
        assert labels[0, 0] == 3


def test_none_breaks_equidistant_ties_towards_lowest_index():
    palette = np.array([[10, 0, 0], [0, 0, 0], [20, 0, 0]], dtype=np.uint8)
    pixels = np.array([[[5, 0, 0], [15, 0, 0]]], dtype=np.uint8)
    assert remap(pixels, palette).tolist() == [[0, 0]]


def test_nearest_rows_matches_brute_force_on_integer_values():
    palette = _palette(40, seed=3)
    values = _image(16, 16, seed=4).reshape(-1, 3)
    colours = palette.astype(np.float64)
    channels = tuple(np.ascontiguousarray(column) for column in colours.T)
    half_norms = 0.5 * (colours * colours).sum(axis=1)
    got = remap_module._nearest_rows(values.astype(np.float64), channels, half_norms)
    np.testing.assert_array_equal(got, _brute_nearest(values[None], palette)[0])


# -- every mode --------------------------------------------------------------


@pytest.mark.parametrize("dither", DITHERS)
@pytest.mark.parametrize("k", [1, 2, 5, 17, 256])
def test_labels_are_below_k(dither, k):
    pixels = _image(19, 26, seed=k)
    labels = remap(pixels, _palette(k, seed=k + 1), dither=dither)
    assert labels.dtype == np.uint8 and labels.shape == (19, 26)
    assert int(labels.max()) < k


@pytest.mark.parametrize(("dither", "adaptive"),
                         [("none", False), ("ordered", False), ("fs", False), ("fs", True)])
@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (1, 2), (2, 1), (BAND_ROWS + 1, 1),
                                   (3 * BAND_ROWS + 1, 2)])
def test_tiny_and_thin_images(dither, adaptive, shape):
    pixels = _image(*shape, seed=2)
    palette = _palette(4, seed=2)
    labels = remap(pixels, palette, dither=dither, adaptive=adaptive)
    assert labels.shape == shape and int(labels.max()) < 4
    if shape == (1, 1) and dither == "fs":
        # The first pixel has no error to receive: it is its nearest colour.
        assert labels[0, 0] == _brute_nearest(pixels, palette)[0, 0]


@pytest.mark.parametrize("dither", DITHERS)
def test_single_colour_palette_gives_zeros(dither):
    labels = remap(_image(12, 10), np.array([[9, 9, 9]], dtype=np.uint8), dither=dither)
    assert not labels.any()


@pytest.mark.parametrize("dither", ["fs", "ordered"])
def test_strength_zero_equals_none(dither):
    pixels = _image(30, 40, seed=5)
    palette = _palette(12, seed=5)
    np.testing.assert_array_equal(remap(pixels, palette, dither=dither, strength=0.0),
                                  remap(pixels, palette))
    np.testing.assert_array_equal(remap(pixels, palette, dither=dither, strength=0),
                                  remap(pixels, palette))


@pytest.mark.parametrize("dither", ["fs", "ordered"])
def test_flat_colour_between_two_palette_colours_mixes_to_it(dither):
    pixels = np.full((64, 64, 3), 100, dtype=np.uint8)
    nearest = GREYS[remap(pixels, GREYS)].astype(np.float64)
    assert abs(nearest.mean() - 100) == 40  # all 60: the nearest colour
    labels = remap(pixels, GREYS, dither=dither)
    mixed = GREYS[labels].astype(np.float64)
    assert 0.2 < labels.mean() < 0.6  # both colours used
    assert abs(mixed.mean() - 100) < 5  # the mix averages to the input


def test_fs_strength_scales_the_mix():
    pixels = np.full((32, 32, 3), 100, dtype=np.uint8)
    full = GREYS[remap(pixels, GREYS, dither="fs")].mean()
    half = GREYS[remap(pixels, GREYS, dither="fs", strength=0.5)].mean()
    assert abs(full - 100) < abs(half - 100) < 40


# -- Floyd--Steinberg --------------------------------------------------------


@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_fs_matches_textbook_serpentine_in_one_band(strength):
    pixels = _image(BAND_ROWS, 37, seed=6)
    palette = _palette(9, seed=6)
    labels = remap(pixels, palette, dither="fs", strength=strength)
    np.testing.assert_array_equal(labels, _reference_fs(pixels, palette, strength))


def test_fs_single_band_of_odd_height_matches_textbook():
    pixels = _image(BAND_ROWS - 1, 23, seed=7)
    palette = _palette(6, seed=7)
    np.testing.assert_array_equal(remap(pixels, palette, dither="fs"),
                                  _reference_fs(pixels, palette, 1.0))


@pytest.mark.parametrize("height", [13, 24])
def test_fs_core_in_one_tall_band_matches_textbook(height):
    pixels = _image(height, 19, seed=height)
    palette = _palette(11, seed=height)
    labels = remap_module._diffuse(pixels, palette, 0.9, None, band_rows=24, warmup_rows=2)
    np.testing.assert_array_equal(labels, _reference_fs(pixels, palette, 0.9))


def test_fs_first_band_of_a_tall_image_is_textbook():
    pixels = _image(3 * BAND_ROWS + 3, 21, seed=8)
    palette = _palette(8, seed=8)
    labels = remap(pixels, palette, dither="fs")
    reference = _reference_fs(pixels[:BAND_ROWS], palette, 1.0)
    np.testing.assert_array_equal(labels[:BAND_ROWS], reference)


def test_views_give_the_same_labels_as_contiguous_copies():
    big = _image(30, 50, seed=13)
    view = big[::2, 1::3]
    palette = _palette(9, seed=13)
    for kwargs in ({}, {"dither": "ordered"}, {"dither": "fs"}, {"dither": "fs", "adaptive": True}):
        np.testing.assert_array_equal(remap(view, palette, **kwargs),
                                      remap(np.ascontiguousarray(view), palette, **kwargs))


def test_fs_is_deterministic():
    pixels = _image(3 * BAND_ROWS + 5, 33, seed=9)
    palette = _palette(16, seed=9)
    first = remap(pixels, palette, dither="fs")
    second = remap(pixels.copy(), palette.copy(), dither="fs")
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(remap(pixels, palette, dither="fs", adaptive=True),
                                  remap(pixels, palette, dither="fs", adaptive=True))


def test_fs_bands_hide_their_seams_on_a_flat_image():
    # From no error at all, diffusion on a flat region starts with a few rows
    # of strong stripes (textbook rows 0-2 here: 60, 179, 65 on average for
    # 80). Each band warms up on the rows above it, from a noise field, so
    # its first row is as close to the input as any other.
    pixels = np.full((6 * BAND_ROWS, 64, 3), 80, dtype=np.uint8)
    rows = GREYS[remap(pixels, GREYS, dither="fs")][:, :, 0].mean(axis=1)
    assert abs(rows[0] - 80) > 15  # the textbook start, for scale
    starts = rows[BAND_ROWS::BAND_ROWS]
    assert np.all(np.abs(starts - 80) < 8)
    assert abs(starts.mean() - 80) < 4
    assert abs(rows.mean() - 80) < 2


# -- adaptive diffusion ------------------------------------------------------


def test_adaptive_weights_are_one_on_flat_images_and_low_at_edges():
    flat = np.full((9, 9, 3), 100, dtype=np.uint8)
    assert np.all(remap_module._contrast_weights(flat, GREYS) == 1.0)
    edge = flat.copy()
    edge[:, 5:] = 255
    weights = remap_module._contrast_weights(edge, GREYS)
    assert weights.min() >= 0.0 and weights.max() <= 1.0
    assert np.all(weights[:, 3:7] < 1.0) and np.all(weights[:, :2] == 1.0)


def test_adaptive_equals_plain_fs_on_a_flat_image():
    pixels = np.full((20, 20, 3), 100, dtype=np.uint8)
    np.testing.assert_array_equal(remap(pixels, GREYS, dither="fs", adaptive=True),
                                  remap(pixels, GREYS, dither="fs"))


def test_adaptive_matches_textbook_with_the_contrast_weights():
    pixels = _image(BAND_ROWS, 29, seed=10)
    palette = _palette(7, seed=10)
    weights = remap_module._contrast_weights(pixels, palette)
    assert weights.min() < 1.0
    np.testing.assert_array_equal(remap(pixels, palette, dither="fs", adaptive=True),
                                  _reference_fs(pixels, palette, 1.0, weights))


def test_adaptive_diffuses_less_in_noisy_texture():
    rng = np.random.default_rng(11)
    noise = rng.integers(0, 256, (40, 40, 1), dtype=np.uint8).repeat(3, axis=2)
    palette = np.array([[0, 0, 0], [85, 85, 85], [170, 170, 170], [255, 255, 255]],
                       dtype=np.uint8)
    nearest = remap(noise, palette)
    plain = np.count_nonzero(remap(noise, palette, dither="fs") != nearest)
    adaptive = np.count_nonzero(remap(noise, palette, dither="fs", adaptive=True) != nearest)
    assert adaptive < 0.75 * plain


# -- ordered -----------------------------------------------------------------


def test_ordered_is_a_function_of_position_periodic_with_the_map():
    side = blue_noise().shape[0]
    tile = _image(side, side, seed=12)
    pixels = np.tile(tile, (2, 3, 1))[: side + 7, : 2 * side + 5]
    labels = remap(pixels, _palette(10, seed=12), dither="ordered")
    np.testing.assert_array_equal(labels[:7], labels[side : side + 7])
    np.testing.assert_array_equal(labels[:, :5], labels[:, 2 * side : 2 * side + 5])
    np.testing.assert_array_equal(labels[:, :side], labels[:, side : 2 * side])


def test_ordered_seed_shifts_the_pattern_deterministically():
    pixels = np.full((70, 70, 3), 100, dtype=np.uint8)
    first = remap(pixels, GREYS, dither="ordered", seed=3)
    assert np.array_equal(first, remap(pixels, GREYS, dither="ordered", seed=3))
    assert not np.array_equal(first, remap(pixels, GREYS, dither="ordered", seed=0))


def test_blue_noise_is_a_fixed_permutation_with_spread_out_points():
    noise = blue_noise()
    assert noise.shape == (64, 64) and not noise.flags.writeable
    np.testing.assert_array_equal(np.sort(noise.ravel()), np.arange(64 * 64))
    # The first 1/16 of the ranks: one point per 4 x 4 block on average, and
    # blue noise puts no two of them side by side (white noise would, often).
    ys, xs = np.nonzero(noise < 256)
    dy = np.abs(ys[:, None] - ys[None, :])
    dx = np.abs(xs[:, None] - xs[None, :])
    dy, dx = np.minimum(dy, 64 - dy), np.minimum(dx, 64 - dx)
    np.fill_diagonal(dy, 99)
    assert np.min(np.maximum(dy, dx)) >= 2


def test_palette_spacing():
    assert palette_spacing(np.array([[0, 0, 0]], dtype=np.uint8)) == 0.0
    assert palette_spacing(np.array([[0, 0, 0], [3, 4, 0], [3, 4, 0]], dtype=np.uint8)) == 5.0


# -- arguments ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dither": "atkinson"}, r"dither='atkinson' must be one of none, fs, ordered"),
        ({"strength": 1.5}, r"strength=1.5 must be a number between 0 and 1"),
        ({"strength": -0.1}, r"strength=-0.1 must be a number between 0 and 1"),
        ({"strength": "1"}, r"strength='1' must be a number between 0 and 1"),
        ({"seed": -1}, r"seed=-1 must be an integer >= 0"),
        ({"adaptive": 1}, r"adaptive=1 must be True or False"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(KpalError, match=message):
        remap(_image(4, 4), GREYS, **kwargs)


def test_bad_arrays_are_rejected():
    with pytest.raises(KpalError, match=r"pixels must be a uint8 ndarray, got float64"):
        remap(np.zeros((2, 2, 3)), GREYS)
    with pytest.raises(KpalError, match=r"pixels must have shape \(height, width, 3\)"):
        remap(np.zeros((4, 3), dtype=np.uint8), GREYS)
    with pytest.raises(KpalError, match=r"pixels must have shape .* got \(0, 4, 3\)"):
        remap(np.zeros((0, 4, 3), dtype=np.uint8), GREYS)
    with pytest.raises(KpalError, match=r"palette must have shape \(k, 3\) .* got \(0, 3\)"):
        remap(_image(2, 2), np.zeros((0, 3), dtype=np.uint8))
    with pytest.raises(KpalError, match=r"palette must have shape .* got \(257, 3\)"):
        remap(_image(2, 2), np.zeros((257, 3), dtype=np.uint8))
    with pytest.raises(KpalError, match=r"palette must be a uint8 ndarray, got int64"):
        remap(_image(2, 2), np.zeros((2, 3), dtype=np.int64))


_CHILD = """
import hashlib, sys
import numpy as np
from kpal.cluster.remap import remap
rng = np.random.default_rng(0)
pixels = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
palette = rng.integers(0, 256, (24, 3), dtype=np.uint8)
digest = hashlib.sha256()
for kwargs in ({}, {"dither": "ordered"}, {"dither": "fs"}, {"dither": "fs", "adaptive": True}):
    digest.update(remap(pixels, palette, **kwargs).tobytes())
print(digest.hexdigest(), "numba" in sys.modules)
"""


def test_labels_do_not_depend_on_thread_count_and_numba_is_not_imported():
    import os
    import subprocess
    import sys

    outputs = []
    for threads in ("1", "2"):
        env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads,
                   MKL_NUM_THREADS=threads)
        run = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True,
                             check=True, env=env)
        outputs.append(run.stdout.split())
    assert outputs[0] == outputs[1]
    assert outputs[0][1] == "False"
