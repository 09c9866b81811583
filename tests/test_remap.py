"""Tests for kpal.cluster.remap: nearest, ordered and Floyd--Steinberg labels."""

from __future__ import annotations

import numpy as np
import pytest

from kpal.cluster import remap as remap_module
from kpal.cluster.remap import BAND_ROWS, DITHERS, blue_noise, dither_image, palette_spacing, remap
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
                  weights: np.ndarray | None = None, table: np.ndarray | None = None,
                  limit_fraction: float = 1.0) -> np.ndarray:
    """Textbook serpentine Floyd--Steinberg, one pixel at a time (small images only).

    Written from the module's documented fixed point (1/64ths of a level,
    shares ``(error * weight16 * strength256 + 2048) >> 12``, weights in
    256ths), not from its code, so the labels must match exactly. With an
    Oklab ``table`` (``space="oklab"``), the received error is shortened by
    3/4 until no longer than ``limit_fraction`` palette spacings (at least
    one level), and the pick is the table's entry at the rounded value.
    """
    height, width = pixels.shape[:2]
    colours = palette.astype(np.int64) * 64
    s = int(round(strength * 256))
    cap = int(np.floor((0.5 * palette_spacing(palette) * 64) ** 2))
    w = np.full((height, width), 256, dtype=np.int64) if weights is None else weights
    limit = max(int(np.floor((limit_fraction * palette_spacing(palette) * 64) ** 2)), 64 * 64)

    def share(error, sixteenths):
        return (error * (sixteenths * s) + 2048) >> 12

    def receive(error, weight):
        return (weight * error + 128) >> 8

    labels = np.empty((height, width), dtype=np.intp)
    below = np.zeros((width, 3), dtype=np.int64)
    for y in range(height):
        step = 1 if y % 2 == 0 else -1
        errors = np.zeros((width, 3), dtype=np.int64)
        carry = None
        for x in range(width) if step == 1 else range(width - 1, -1, -1):
            value = pixels[y, x].astype(np.int64) * 64 + receive(below[x], w[y, x])
            if carry is not None:
                value = value + receive(carry, w[y, x])
            if table is not None and limit_fraction > 0:
                received = value - pixels[y, x].astype(np.int64) * 64
                while int((received * received).sum()) > limit:
                    received = (3 * received + 2) >> 2
                value = pixels[y, x].astype(np.int64) * 64 + received
            value = np.clip(value, 0, 255 * 64)
            if table is None:
                best = int((((value - colours) ** 2).sum(axis=1)).argmin())
            else:
                cells = (value + 128) >> 8
                best = int(table[(cells[0] * 65 + cells[1]) * 65 + cells[2]])
            error = value - colours[best]
            if int((error * error).sum()) > cap:
                error = (3 * error + 2) >> 2
            labels[y, x] = best
            errors[x] = error
            carry = share(error, 7)
        below = share(errors, 5)
        for x in range(width):
            if 0 <= x + step < width:
                below[x] += share(errors[x + step], 3)
            if 0 <= x - step < width:
                below[x] += share(errors[x - step], 1)
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


def test_nearest_fixed_matches_brute_force_on_integer_values():
    palette = _palette(40, seed=3)
    palette[7] = palette[30]  # a duplicate: the lower index must win
    values = _image(16, 16, seed=4).reshape(-1, 3)
    values[0] = palette[30]
    got = remap_module._nearest_fixed(values.astype(np.int64) * 64, palette.astype(np.int64) * 64)
    np.testing.assert_array_equal(got, _brute_nearest(values[None], palette)[0])
    assert got[0] == 7


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
    assert np.all(remap_module._contrast_weights(flat, GREYS) == 256)
    edge = flat.copy()
    edge[:, 5:] = 255
    weights = remap_module._contrast_weights(edge, GREYS)
    assert weights.dtype == np.int32 and weights.min() >= 0 and weights.max() <= 256
    assert np.all(weights[:, 3:7] < 256) and np.all(weights[:, :2] == 256)


def test_adaptive_equals_plain_fs_on_a_flat_image():
    pixels = np.full((20, 20, 3), 100, dtype=np.uint8)
    np.testing.assert_array_equal(remap(pixels, GREYS, dither="fs", adaptive=True),
                                  remap(pixels, GREYS, dither="fs"))


def test_adaptive_matches_textbook_with_the_contrast_weights():
    pixels = _image(BAND_ROWS, 29, seed=10)
    palette = _palette(7, seed=10)
    weights = remap_module._contrast_weights(pixels, palette)
    assert weights.min() < 256
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
        ({"space": "lab"}, r"space='lab' must be one of rgb, oklab"),
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
from kpal.cluster.remap import remap, remap_rgba
rng = np.random.default_rng(0)
pixels = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
palette = rng.integers(0, 256, (24, 3), dtype=np.uint8)
digest = hashlib.sha256()
for kwargs in ({}, {"dither": "ordered"}, {"dither": "fs"}, {"dither": "fs", "adaptive": True}):
    digest.update(remap(pixels, palette, **kwargs).tobytes())
rgba = rng.integers(0, 256, (40, 50, 4), dtype=np.uint8)
entries = rng.integers(0, 256, (24, 4), dtype=np.uint8)
entries[0], entries[1:9, 3] = 0, 255
for kwargs in ({}, {"dither": "ordered"}, {"dither": "fs"}):
    digest.update(remap_rgba(rgba, entries, **kwargs).tobytes())
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


# -- compiled path -----------------------------------------------------------


def _both_paths(monkeypatch, pixels, palette, **kwargs):
    monkeypatch.setenv("KPAL_PURE_NUMPY", "1")
    slow = remap(pixels, palette, **kwargs)
    monkeypatch.setenv("KPAL_PURE_NUMPY", "0")
    fast = [remap(pixels, palette, threads=threads, **kwargs) for threads in (1, 2, 3)]
    return slow, fast


@pytest.mark.parametrize("case", range(12))
def test_compiled_labels_equal_numpy_labels_on_random_inputs(monkeypatch, case):
    pytest.importorskip("numba")
    rng = np.random.default_rng(100 + case)
    height, width = (int(v) for v in rng.integers(1, 3 * BAND_ROWS + 9, 2))
    k = int(rng.choice([2, 3, 9, 16, 64, 200, 256]))
    pixels = (_image(height, width, seed=case) if case % 2
              else rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    palette = rng.integers(0, 256, (k, 3), dtype=np.uint8)
    palette[-1] = palette[0]  # a duplicate: ties must go to the same index on both paths
    for kwargs in ({}, {"dither": "ordered", "seed": case},
                   {"dither": "fs", "strength": float(rng.uniform(0.05, 1))},
                   {"dither": "fs", "adaptive": True},
                   {"dither": "fs", "adaptive": True, "strength": 0.5},
                   {"space": "oklab"}, {"dither": "ordered", "space": "oklab"},
                   {"dither": "fs", "space": "oklab"},
                   {"dither": "fs", "space": "oklab", "adaptive": True}):
        slow, fast = _both_paths(monkeypatch, pixels, palette, **kwargs)
        for labels in fast:
            np.testing.assert_array_equal(labels, slow, err_msg=str(kwargs))


def test_compiled_contrast_weights_equal_numpy(monkeypatch):
    pytest.importorskip("numba")
    pixels = _image(37, 45, seed=21)
    pixels[:, 20:] = 255
    palette = np.array([[v, v, v] for v in range(0, 256, 4)], dtype=np.uint8)
    monkeypatch.setenv("KPAL_PURE_NUMPY", "1")
    slow = remap_module._contrast_weights(pixels, palette)
    monkeypatch.setenv("KPAL_PURE_NUMPY", "0")
    fast = remap_module._contrast_weights(pixels, palette)
    assert fast.dtype == slow.dtype == np.int32
    np.testing.assert_array_equal(fast, slow)
    assert slow.min() == 0 and slow.max() == 256


def _grid_candidates(fast, offsets, lists, split, values):
    """Candidate list the compiled search reads for fixed-point ``values`` (n, 3)."""
    out = []
    for v0, v1, v2 in values.tolist():
        node = ((v0 >> 9) * 32 + (v1 >> 9)) * 32 + (v2 >> 9)
        if split[node] >= 0:
            node = split[node] + (((v0 >> 7) & 3) * 4 + ((v1 >> 7) & 3)) * 4 + ((v2 >> 7) & 3)
        out.append(lists[offsets[node]:offsets[node + 1]])
    return out


def test_compiled_grid_lists_hold_the_nearest_colour_of_every_cell_corner():
    fast = pytest.importorskip("kpal.cluster._remap_fast")
    palette = _palette(256, seed=22)
    colours, offsets, lists, split = fast._grid(palette)
    assert np.all(np.diff(offsets[:32**3 + 1]) >= 1)
    corners = np.array([[r, g, b] for r in (0, 7, 8, 255) for g in (0, 100, 255)
                        for b in (3, 200, 255)], dtype=np.uint8)
    expected = _brute_nearest(corners[None], palette)[0]
    found = _grid_candidates(fast, offsets, lists, split, corners.astype(np.int64) << 6)
    for nearest, candidates in zip(expected, found, strict=True):
        assert nearest in candidates and np.all(np.diff(candidates.astype(int)) > 0)


@pytest.mark.parametrize("k", [16, 64, 256])
def test_compiled_grid_is_exact_on_dense_palettes_with_few_candidates(k):
    # A dense palette around the values searched (as a photo's palette is):
    # the pruned, split grid must still give the brute-force nearest colour
    # (lowest index on ties) for every fixed-point value, and few candidates.
    fast = pytest.importorskip("kpal.cluster._remap_fast")
    rng = np.random.default_rng(k)
    palette = np.clip(rng.normal(128, 30, (k, 3)), 0, 255).astype(np.uint8)
    palette[k // 2] = palette[1]  # a duplicate: ties go to the lower index
    colours, offsets, lists, split = fast._grid(palette)
    values = np.clip(rng.normal(128 * 64, 35 * 64, (20_000, 3)), 0, 255 * 64).astype(np.int64)
    values[:512] = rng.integers(0, 2, (512, 3)) * (255 * 64)  # corners of the cube
    diff = values[:, None, :] - colours[None]
    expected = (diff * diff).sum(axis=2).argmin(axis=1)
    got = [fast._nearest(v0, v1, v2, colours, offsets, lists, split)
           for v0, v1, v2 in values.tolist()]
    np.testing.assert_array_equal(got, expected)
    counts = [len(c) for c in _grid_candidates(fast, offsets, lists, split, values)]
    assert np.mean(counts) < 4, np.mean(counts)
    assert (split >= 0).any()  # the sub-cells are exercised


@pytest.mark.parametrize("k", [2, 16, 256])
def test_oklab_table_equals_on_both_paths_and_holds_the_oklab_nearest(monkeypatch, k):
    from kpal.cluster.perceptual import oklab_from_srgb8

    palette = _palette(k, seed=40 + k)
    palette[-1] = palette[0]
    monkeypatch.setenv("KPAL_PURE_NUMPY", "1")
    table = remap_module.oklab_table(palette)
    assert table.shape == (65**3,) and table.dtype == np.uint8
    levels = np.minimum(np.arange(65) * 4, 255)
    rng = np.random.default_rng(k)
    cells = rng.integers(0, 65, (300, 3))
    colours = levels[cells].astype(np.uint8)
    diff = oklab_from_srgb8(colours)[:, None] - oklab_from_srgb8(palette)[None]
    want = (diff * diff).sum(axis=2).argmin(axis=1)
    got = table[(cells[:, 0] * 65 + cells[:, 1]) * 65 + cells[:, 2]]
    np.testing.assert_array_equal(got, want)
    assert not np.any(table == k - 1)  # the duplicate never wins over index 0
    if pytest.importorskip("numba"):
        monkeypatch.setenv("KPAL_PURE_NUMPY", "0")
        np.testing.assert_array_equal(remap_module.oklab_table(palette), table)


def test_oklab_space_changes_the_choices_and_none_is_the_exact_oklab_nearest():
    from kpal.cluster.perceptual import oklab_from_srgb8

    pixels = _image(40, 48, seed=41)
    palette = _palette(24, seed=41)
    labels = remap(pixels, palette, space="oklab")
    diff = oklab_from_srgb8(pixels.reshape(-1, 3))[:, None] - oklab_from_srgb8(palette)[None]
    np.testing.assert_array_equal(labels.reshape(-1), (diff * diff).sum(axis=2).argmin(axis=1))
    assert not np.array_equal(labels, remap(pixels, palette))
    for dither in ("fs", "ordered"):
        assert not np.array_equal(remap(pixels, palette, dither=dither, space="oklab"),
                                  remap(pixels, palette, dither=dither))


def test_oklab_fs_reads_the_table_at_the_rounded_value():
    # One pixel: no error received, so its label is the table entry of its colour.
    palette = _palette(30, seed=42)
    table = remap_module.oklab_table(palette)
    for colour in ([0, 0, 0], [130, 7, 255], [254, 255, 253], [3, 129, 200]):
        pixel = np.array([[colour]], dtype=np.uint8)
        cells = (np.array(colour) * 64 + 128) >> 8
        want = table[(cells[0] * 65 + cells[1]) * 65 + cells[2]]
        assert remap(pixel, palette, dither="fs", space="oklab")[0, 0] == want


def _beyond_the_palette() -> tuple[np.ndarray, np.ndarray]:
    """Light blues at full blue and a palette of greys and two duller blues: the
    error received builds up where the palette cannot reach the pixels."""
    y, x = np.mgrid[0:16, 0:56]
    pixels = np.stack([100 + x, 190 + y, np.full_like(x, 255)], axis=-1).astype(np.uint8)
    palette = np.array([[g, g, g] for g in range(120, 256, 20)]
                       + [[105, 189, 240], [60, 150, 235]], dtype=np.uint8)
    return pixels, palette


@pytest.mark.parametrize("adaptive", [False, True])
def test_oklab_fs_shortens_the_received_error_as_documented(monkeypatch, adaptive):
    pixels, palette = _beyond_the_palette()
    table = remap_module.oklab_table(palette)
    weights = remap_module._contrast_weights(pixels, palette) if adaptive else None
    want = _reference_fs(pixels, palette, 1.0, weights, table=table)
    # The shortening matters on this image: without it the labels differ.
    assert not np.array_equal(want, _reference_fs(pixels, palette, 1.0, weights, table=table,
                                                  limit_fraction=0))
    for pure in ("1", "0"):
        monkeypatch.setenv("KPAL_PURE_NUMPY", pure)
        got = remap(pixels, palette, dither="fs", space="oklab", adaptive=adaptive)
        np.testing.assert_array_equal(got, want)


def test_oklab_fs_keeps_the_hue_beyond_the_palette():
    # Without the shortening, the build-up lands on greys far from the light
    # blues; with it, the output is nearer the pixels on average.
    pixels, palette = _beyond_the_palette()
    table = remap_module.oklab_table(palette)
    unshortened = palette[_reference_fs(pixels, palette, 1.0, table=table, limit_fraction=0)]
    shortened = palette[remap(pixels, palette, dither="fs", space="oklab")]

    def mean_distance(out):
        diff = out.astype(np.float64) - pixels
        return float(np.sqrt((diff * diff).sum(axis=2)).mean())

    assert mean_distance(shortened) < mean_distance(unshortened) - 1, (
        mean_distance(shortened), mean_distance(unshortened))


def test_shorten_scales_long_errors_only():
    error = np.array([[0, 0, 0], [64, -64, 30], [4000, -3000, 100], [-5000, 0, 0]])
    out = remap_module._shorten(error, 128 * 128)
    np.testing.assert_array_equal(out[:2], error[:2])
    assert np.all((out * out).sum(axis=1) <= 128 * 128)
    assert np.all(np.sign(out) == np.sign(error))
    assert (out[2] * out[2]).sum() > (96 * 96)  # one 3/4 step short of the limit at most
    np.testing.assert_array_equal(error[2], [4000, -3000, 100])  # the input is kept


def test_bad_threads_are_rejected():
    with pytest.raises(KpalError, match=r"threads=0 must be an integer >= 1"):
        remap(_image(4, 4), GREYS, threads=0)


# -- dither_image ------------------------------------------------------------


def test_dither_image_without_refine_keeps_the_palette_and_equals_remap():
    pixels = _image(30, 40, seed=30)
    palette = _palette(8, seed=30)
    for dither in ("fs", "ordered"):
        got_palette, labels = dither_image(pixels, palette, dither=dither)
        np.testing.assert_array_equal(got_palette, palette)
        np.testing.assert_array_equal(labels, remap(pixels, palette, dither=dither))


def test_dither_image_refits_each_entry_to_the_mean_of_its_pixels_then_dithers_again():
    pixels = _image(30, 40, seed=31)
    palette = _palette(6, seed=31)
    first = remap(pixels, palette, dither="fs")
    refitted, labels = dither_image(pixels, palette, dither="fs", refine=True)
    for index in range(palette.shape[0]):
        chosen = pixels[first == index]
        if chosen.size:
            np.testing.assert_array_equal(refitted[index],
                                          np.rint(chosen.mean(axis=0)).astype(np.uint8))
        else:
            np.testing.assert_array_equal(refitted[index], palette[index])
    assert not np.array_equal(refitted, palette)
    np.testing.assert_array_equal(labels, remap(pixels, refitted, dither="fs"))


def test_dither_image_refit_in_oklab_takes_the_oklab_mean():
    from kpal.cluster.perceptual import oklab_from_srgb8, srgb8_from_oklab

    pixels = _image(24, 32, seed=33)
    palette = _palette(5, seed=33)
    first = remap(pixels, palette, dither="ordered", space="oklab")
    refitted, labels = dither_image(pixels, palette, dither="ordered", space="oklab",
                                    refine=True)
    for index in np.unique(first):
        lab = oklab_from_srgb8(pixels[first == index]).mean(axis=0, keepdims=True)
        np.testing.assert_array_equal(refitted[index], srgb8_from_oklab(lab)[0])
    np.testing.assert_array_equal(labels,
                                  remap(pixels, refitted, dither="ordered", space="oklab"))


def test_dither_image_none_rgb_is_remap_and_oklab_is_the_perceptual_labels():
    from kpal.cluster.perceptual import quantize_perceptual

    pixels = _image(20, 30, seed=32)
    palette = _palette(12, seed=32)
    got_palette, labels = dither_image(pixels, palette, dither="none")
    np.testing.assert_array_equal(got_palette, palette)
    np.testing.assert_array_equal(labels, remap(pixels, palette))
    fitted = quantize_perceptual(pixels.reshape(-1, 3), 12, space="oklab")
    got_palette, labels = dither_image(pixels, fitted.palette, dither="none", space="oklab")
    np.testing.assert_array_equal(got_palette, fitted.palette)
    np.testing.assert_array_equal(labels.reshape(-1), fitted.labels)


def test_dither_image_refit_lowers_the_error_of_a_poor_palette():
    pixels = np.full((32, 32, 3), 100, dtype=np.uint8)
    pixels[:, 16:] = 180
    palette = np.array([[20, 20, 20], [240, 240, 240]], dtype=np.uint8)
    refitted, labels = dither_image(pixels, palette, dither="ordered", refine=True)
    _, plain = dither_image(pixels, palette, dither="ordered")
    err = np.abs(refitted[labels].astype(int) - pixels).mean()
    assert err < np.abs(palette[plain].astype(int) - pixels).mean()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"space": "lab"}, r"space='lab' must be one of rgb, oklab"),
    ({"refine": 1}, r"refine=1 must be True or False"),
    ({"dither": "x"}, r"dither='x' must be one of none, fs, ordered"),
])
def test_dither_image_rejects_bad_arguments(kwargs, message):
    with pytest.raises(KpalError, match=message):
        dither_image(_image(4, 4), GREYS, **kwargs)


def _pixel_art_on_a_palette(size: int) -> tuple[np.ndarray, np.ndarray]:
    """An image whose every colour is an entry of a 16-colour palette with two close entries."""
    rng = np.random.default_rng(1)
    palette = rng.integers(0, 256, (16, 3), dtype=np.uint8)
    palette[14], palette[15] = (62, 118, 104), (65, 118, 105)  # far closer than the mean spacing
    index = (np.add.outer(np.arange(size) // 4, np.arange(size) // 4)
             + rng.integers(0, 2, (size, size))) % 16
    return palette[index], palette


@pytest.mark.parametrize("size", [BAND_ROWS * 3, 300])
def test_fs_keeps_pixels_that_are_palette_entries_in_every_band(size):
    """No error to diffuse anywhere: every band, not only the first, keeps each colour.

    (In Oklab the dithered search reads a table on a grid of 4 levels, so two
    entries 3 levels apart can share a cell: that approximation is documented.)
    """
    image, palette = _pixel_art_on_a_palette(size)
    labels = remap(image, palette, dither="fs")
    np.testing.assert_array_equal(palette[labels], image)


@pytest.mark.parametrize("dither", ["ordered", "fs"])
@pytest.mark.parametrize("channels", [3, 4])
def test_a_dithered_file_stores_only_the_entries_its_pixels_use(dither, channels):
    """spec §3: an encoder stores only used entries; an ordered dither may pass over one
    (11 of 60 seeds at k = 64 on 16x16 noise did)."""
    import kpal
    from kpal.codec import read_header

    for seed in range(12):
        image = np.random.default_rng(seed).integers(0, 256, (16, 16, channels), np.uint8)
        if channels == 4:
            image[..., 3] = np.where(image[..., 3] < 60, 0, 255)
        data = kpal.encode(image, k=64, dither=dither, seed=seed)
        header = read_header(data)[0]
        used = np.unique(np.asarray(kpal.decode(data)))
        assert used.tolist() == list(range(header.k)), (seed, header.k)
