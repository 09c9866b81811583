"""Tests for kpal.metrics.ssimulacra2: the optional perceptual metric."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from kpal.metrics import ssimulacra2


def _photo(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 4.0, y * 5.0, (x + y) * 2.0], axis=-1)
    return np.clip(np.rint(base + rng.normal(0, 10, base.shape)), 0, 255).astype(np.uint8)


def _noisy(pixels: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(pixels + rng.normal(0, sigma, pixels.shape)), 0, 255).astype(np.uint8)


def test_none_when_the_package_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "ssimulacra2", None)  # import now raises ImportError
    assert ssimulacra2(_photo(), _photo()) is None


def test_identical_images_score_100_and_more_noise_scores_lower():
    pytest.importorskip("ssimulacra2")
    pixels = _photo()
    assert ssimulacra2(pixels, pixels) == pytest.approx(100.0)
    light = ssimulacra2(pixels, _noisy(pixels, 3))
    heavy = ssimulacra2(pixels, _noisy(pixels, 30))
    assert 100.0 > light > heavy


def test_matches_the_package_on_png_files(tmp_path):
    package = pytest.importorskip("ssimulacra2")
    pixels = _photo(40, 56, seed=3)
    distorted = _noisy(pixels, 12)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    Image.fromarray(distorted).save(tmp_path / "b.png")
    want = package.compute_ssimulacra2(str(tmp_path / "a.png"), str(tmp_path / "b.png"))
    assert ssimulacra2(pixels, distorted) == want


@pytest.mark.parametrize(("a", "b", "message"), [
    (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8),
     r"shapes differ: \(8, 8, 3\) and \(8, 9, 3\)"),
    (np.zeros((8, 8, 3)), np.zeros((8, 8, 3), np.uint8),
     r"original must be a \(height, width, 3\) uint8 array, got float64 \(8, 8, 3\)"),
    (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8),
     r"decoded must be a \(height, width, 3\) uint8 array, got uint8 \(8, 8\)"),
    (np.zeros((7, 30, 3), np.uint8), np.zeros((7, 30, 3), np.uint8),
     r"SSIMULACRA2 needs at least 8 x 8 pixels, got 30 x 7"),
])
def test_bad_images_are_rejected(a, b, message):
    with pytest.raises(ValueError, match=message):
        ssimulacra2(a, b)
