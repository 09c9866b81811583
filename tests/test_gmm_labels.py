"""A Gaussian mixture's palette is its component means, and every pixel takes its nearest
entry, as with k-means: the most probable component is not the nearest mean when the
components differ in spread, which cost up to 15 dB at k = 256."""

from __future__ import annotations

import numpy as np

from kpal.cluster import quantize


def _photo_like(seed: int) -> np.ndarray:
    """Broad clusters of colours plus a few flat areas of a single colour each."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(30, 225, size=(6, 3))
    broad = centres[rng.integers(0, 6, 3000)] + rng.normal(0, 18, (3000, 3))
    flat = np.repeat(rng.integers(0, 256, size=(4, 3)), 200, axis=0)
    return np.clip(np.concatenate([broad, flat]), 0, 255).astype(np.uint8)


def test_every_pixel_takes_its_nearest_entry():
    for seed in range(3):
        pixels = _photo_like(seed)
        palette, labels = quantize(pixels, 12, method="gmm", seed=0)
        distances = ((pixels[:, None, :].astype(np.int64) - palette[None].astype(np.int64))
                     ** 2).sum(axis=2)
        assert np.array_equal(distances[np.arange(len(pixels)), labels], distances.min(axis=1))


def test_the_error_is_no_larger_than_with_the_most_probable_component():
    from kpal.cluster.gmm import GaussianMixture

    pixels = _photo_like(5)
    palette, labels = quantize(pixels, 12, method="gmm", seed=0)
    error = ((pixels.astype(np.float64) - palette[labels]) ** 2).sum()
    gm = GaussianMixture(12, seed=0).fit(pixels)
    means = np.clip(np.rint(gm.means_), 0, 255)
    most_probable = ((pixels - means[gm.predict(pixels)]) ** 2).sum()
    assert error <= most_probable
