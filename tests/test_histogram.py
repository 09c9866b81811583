"""Tests for kpal.cluster.histogram: packing, distinct colours, lookup, cells."""

from __future__ import annotations

import numpy as np
import pytest

from kpal.cluster import histogram
from kpal.cluster.histogram import (
    color_histogram,
    map_pixels,
    pack_rgb,
    reduce_histogram,
    unpack_rgb,
)


def random_pixels(n: int, n_distinct: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, size=(n_distinct, 3), dtype=np.uint8)
    return palette[rng.integers(0, n_distinct, size=n)]


def test_pack_and_unpack_are_inverse():
    px = np.array([[0, 0, 0], [255, 255, 255], [1, 2, 3], [255, 0, 128]], dtype=np.uint8)
    packed = pack_rgb(px)
    assert packed.dtype == np.uint32
    assert packed.tolist() == [0, 0xFFFFFF, 0x010203, 0xFF0080]
    np.testing.assert_array_equal(unpack_rgb(packed), px)


@pytest.mark.parametrize("path", ["sort", "table"])
def test_histogram_matches_numpy_unique(monkeypatch, path):
    # A small chunk size makes the chunk boundaries part of the test.
    monkeypatch.setattr(histogram, "CHUNK", 1000)
    if path == "table":
        monkeypatch.setattr(histogram, "SORT_PIXELS", 0)
    px = random_pixels(10_007, 300)
    hist = color_histogram(px)
    expected, counts = np.unique(px, axis=0, return_counts=True)
    np.testing.assert_array_equal(hist.colors, expected)
    np.testing.assert_array_equal(hist.counts, counts)
    assert hist.counts.dtype == np.int64
    assert len(hist) == len(expected)
    np.testing.assert_array_equal(hist.packed, pack_rgb(expected))


def test_histogram_weights_sum_per_colour():
    px = np.array([[1, 1, 1], [2, 2, 2], [1, 1, 1]], dtype=np.uint8)
    hist = color_histogram(px, np.array([0.5, 2.0, 0.25]))
    assert hist.colors.tolist() == [[1, 1, 1], [2, 2, 2]]
    assert hist.counts.tolist() == [0.75, 2.0]


@pytest.mark.parametrize("path", ["sort", "table"])
def test_single_pixel_histogram(monkeypatch, path):
    if path == "table":
        monkeypatch.setattr(histogram, "SORT_PIXELS", 0)
    hist = color_histogram(np.array([[9, 8, 7]], dtype=np.uint8))
    assert hist.colors.tolist() == [[9, 8, 7]]
    assert hist.counts.tolist() == [1]


def test_sort_and_table_paths_agree_at_the_extremes(monkeypatch):
    # Black and white (packed 0 and 2**24 - 1) first and last, runs of one
    # pixel and of many, pixels in no particular order.
    rng = np.random.default_rng(7)
    px = np.concatenate([random_pixels(5000, 2000, seed=5),
                         np.array([[0, 0, 0], [255, 255, 255]] * 3, dtype=np.uint8)])
    px = px[rng.permutation(px.shape[0])]
    by_sort = color_histogram(px)
    monkeypatch.setattr(histogram, "SORT_PIXELS", 0)
    by_table = color_histogram(px)
    np.testing.assert_array_equal(by_sort.colors, by_table.colors)
    np.testing.assert_array_equal(by_sort.counts, by_table.counts)
    assert by_sort.colors[0].tolist() == [0, 0, 0] and by_sort.counts[0] == 3
    assert by_sort.colors[-1].tolist() == [255, 255, 255] and by_sort.counts[-1] == 3


def test_packed_input_is_not_modified():
    px = random_pixels(500, 60, seed=6)
    packed = histogram.pack_pixels(px)
    before = packed.copy()
    color_histogram(packed)
    np.testing.assert_array_equal(packed, before)


def test_map_pixels_looks_up_each_pixel(monkeypatch):
    monkeypatch.setattr(histogram, "CHUNK", 777)
    px = random_pixels(5000, 50, seed=1)
    hist = color_histogram(px)
    values = np.arange(len(hist), dtype=np.uint8)[::-1].copy()
    out = map_pixels(px, hist.colors, values)
    assert out.dtype == np.uint8
    # Each pixel gets the value of its own colour.
    np.testing.assert_array_equal(hist.colors[len(hist) - 1 - out.astype(np.intp)], px)


def test_reduce_histogram_keeps_mass_and_centroid():
    px = random_pixels(4000, 500, seed=2)
    hist = color_histogram(px)
    means, weights, cell_of_color = reduce_histogram(hist.colors, hist.counts, bits=3)
    assert weights.sum() == px.shape[0]
    # Each colour lies in its cell's cube of 32 levels per channel ...
    cells = hist.colors >> 5
    np.testing.assert_array_equal(means[cell_of_color] // 32, cells)
    # ... and the weighted mean of the cell means is the mean of all pixels.
    np.testing.assert_allclose(weights @ means / weights.sum(), px.mean(axis=0))


@pytest.mark.parametrize("bits", [8, 5])
def test_reduce_histogram_at_8_bits_is_identity(bits):
    px = random_pixels(100, 20, seed=3)
    hist = color_histogram(px)
    means, weights, cell_of_color = reduce_histogram(hist.colors, hist.counts, bits=bits)
    if bits == 8:
        np.testing.assert_array_equal(means, hist.colors)
        np.testing.assert_array_equal(weights, hist.counts)
        np.testing.assert_array_equal(cell_of_color, np.arange(len(hist)))
    else:
        assert len(means) <= len(hist)


def test_packed_input_gives_the_same_results():
    px = random_pixels(3000, 40, seed=4)
    packed = histogram.pack_pixels(px)
    np.testing.assert_array_equal(packed, pack_rgb(px))
    from_rgb, from_packed = color_histogram(px), color_histogram(packed)
    np.testing.assert_array_equal(from_rgb.colors, from_packed.colors)
    np.testing.assert_array_equal(from_rgb.counts, from_packed.counts)
    values = np.arange(len(from_rgb), dtype=np.uint8)
    np.testing.assert_array_equal(map_pixels(px, from_rgb.colors, values),
                                  map_pixels(packed, from_rgb.colors, values))
