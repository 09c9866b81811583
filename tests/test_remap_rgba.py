"""Tests for kpal.cluster.remap.remap_rgba: RGBA labels, nearest and dithered."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kpal.cluster import remap as remap_module
from kpal.cluster.remap import BAND_ROWS, remap_rgba
from kpal.errors import KpalError


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Gradients with noise and every kind of alpha: 0, 255 and 1..254 (a soft edge)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / max(width - 1, 1), y * 255 / max(height - 1, 1),
                     (x + y) * 127 / max(width + height - 2, 1)], axis=-1)
    colour = np.clip(np.rint(base + rng.normal(0, 6, base.shape)), 0, 255)
    alpha = np.clip(np.rint((x - width / 3) * 600 / max(width, 1)), 0, 255)
    alpha[rng.random(alpha.shape) < 0.1] = 0
    return np.concatenate([colour, alpha[..., None]], axis=-1).astype(np.uint8)


def _palette(k: int, seed: int = 1) -> np.ndarray:
    """Random entries: the first transparent, about half opaque, the rest translucent."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (k, 4), dtype=np.uint8)
    palette[0] = 0
    palette[1 : max(2, k // 2), 3] = 255
    return palette


def _composite_distance(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Squared errors of the composites over black and over white, summed: (n, k), float."""
    p = pixels.reshape(-1, 4).astype(np.float64)
    q = palette.astype(np.float64)
    black = p[:, None, :3] * p[:, None, 3:] - q[None, :, :3] * q[None, :, 3:]
    white = black - 255 * (p[:, None, 3:] - q[None, :, 3:])
    return (black**2 + white**2).sum(axis=2)


def _allowed_nearest(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """The documented rule, by brute force: alpha 0 -> first alpha-0 entry, alpha 255 ->
    nearest opaque entry, else nearest entry; ties to the lowest index."""
    distance = _composite_distance(pixels, palette)
    alpha = pixels.reshape(-1, 4)[:, 3]
    opaque = palette[:, 3] == 255
    if opaque.any():
        distance[np.ix_(alpha == 255, ~opaque)] = np.inf
    labels = distance.argmin(axis=1)
    clear = np.flatnonzero(palette[:, 3] == 0)
    if clear.size:
        labels[alpha == 0] = clear[0]
    return labels.reshape(pixels.shape[:2])


def _reference_fs(pixels: np.ndarray, palette: np.ndarray, strength: float) -> np.ndarray:
    """Textbook serpentine Floyd--Steinberg in premultiplied RGBA, one pixel at a time.

    From the module's documented rules: values ``c * A`` plus the received
    error, clipped to ``[0, 255 * A]``; shares ``(error * weight16 * strength256 + 2048) >> 12``;
    an error longer than half the palette spacing (composite distance, in
    levels, times 255) shortened to 3/4; transparent pixels pass nothing on.
    """
    height, width = pixels.shape[:2]
    s = int(round(strength * 256))
    alpha_e = palette[:, 3].astype(np.int64)
    q = palette[:, :3].astype(np.int64) * alpha_e[:, None]
    spacing = remap_module._rgba_spacing(palette)
    cap = int(math.floor((0.5 * spacing * 255) ** 2))
    error_field = np.zeros((height + 1, width + 2, 3), dtype=np.int64)
    labels = np.empty((height, width), dtype=np.intp)
    for y in range(height):
        forward = y % 2 == 0
        for x in range(width) if forward else range(width - 1, -1, -1):
            a = int(pixels[y, x, 3])
            value = pixels[y, x, :3].astype(np.int64) * a + error_field[y, x + 1]
            value = np.clip(value, 0, 255 * a)
            black = value - q
            white = black - 255 * (a - alpha_e)[:, None]
            distance = (black * black + white * white).sum(axis=1)
            if a == 255 and (alpha_e == 255).any():
                distance[alpha_e != 255] = np.iinfo(np.int64).max
            best = int(distance.argmin())
            if a == 0 and (alpha_e == 0).any():
                best = int(np.flatnonzero(alpha_e == 0)[0])
            labels[y, x] = best
            error = np.zeros(3, np.int64) if a == 0 else value - q[best]
            if (error * error).sum() > cap:
                error = (3 * error + 2) >> 2
            step = 1 if forward else -1

            def share(sixteenths, error=error):
                return (error * (sixteenths * s) + 2048) >> 12

            if 0 <= x + step < width:
                error_field[y, x + 1 + step] += share(7)
            if y + 1 < height:
                for dx, sixteenths in ((-step, 3), (0, 5), (step, 1)):
                    if 0 <= x + dx < width:
                        error_field[y + 1, x + 1 + dx] += share(sixteenths)
    return labels


# -- nearest -------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 7, 64])
def test_none_is_the_exact_nearest_allowed_entry(k):
    pixels = _image(23, 31, seed=k)
    palette = _palette(k, seed=k)
    palette[-1] = palette[min(1, k - 1)]  # a duplicate: the tie goes to the lower index
    np.testing.assert_array_equal(remap_rgba(pixels, palette),
                                  _allowed_nearest(pixels, palette))


def test_nearest_without_transparent_or_opaque_entries_searches_every_entry():
    pixels = _image(9, 12, seed=3)
    palette = np.array([[10, 200, 30, 128], [250, 250, 250, 40]], np.uint8)
    expected = _composite_distance(pixels, palette).argmin(axis=1).reshape(9, 12)
    np.testing.assert_array_equal(remap_rgba(pixels, palette), expected)


# -- the alpha rules hold for every dither -------------------------------------


@pytest.mark.parametrize("dither", ["none", "fs", "ordered"])
@pytest.mark.parametrize("k", [2, 5, 40, 256])
def test_transparent_and_opaque_pixels_keep_their_alpha(dither, k):
    pixels = _image(3 * BAND_ROWS + 5, 37, seed=k)
    palette = _palette(k, seed=k + 1)
    labels = remap_rgba(pixels, palette, dither=dither, seed=3)
    alpha = pixels[..., 3]
    assert labels.max() < k
    assert (labels[alpha == 0] == 0).all()
    assert (palette[labels[alpha == 255], 3] == 255).all()


def test_the_colour_under_transparent_pixels_changes_nothing():
    pixels = _image(40, 30, seed=5)
    other = pixels.copy()
    clear = other[..., 3] == 0
    other[clear, :3] = np.random.default_rng(9).integers(0, 256, (int(clear.sum()), 3))
    palette = _palette(12, seed=4)
    for dither in ("none", "fs", "ordered"):
        np.testing.assert_array_equal(remap_rgba(pixels, palette, dither=dither),
                                      remap_rgba(other, palette, dither=dither))


# -- error diffusion ------------------------------------------------------------


@pytest.mark.parametrize("strength", [1.0, 0.55])
def test_fs_in_one_band_is_the_textbook_pass(strength):
    pixels = _image(BAND_ROWS, 29, seed=11)
    palette = _palette(9, seed=11)
    np.testing.assert_array_equal(remap_rgba(pixels, palette, dither="fs", strength=strength),
                                  _reference_fs(pixels, palette, strength))


def test_fs_first_band_of_a_tall_image_is_the_textbook_pass():
    pixels = _image(3 * BAND_ROWS + 3, 21, seed=12)
    palette = _palette(8, seed=12)
    labels = remap_rgba(pixels, palette, dither="fs")
    np.testing.assert_array_equal(labels[:BAND_ROWS],
                                  _reference_fs(pixels[:BAND_ROWS], palette, 1.0))


@pytest.mark.parametrize("dither", ["fs", "ordered"])
def test_a_flat_translucent_colour_mixes_to_its_premultiplied_value(dither):
    # Premultiplied grey 80 * 128 / 255 lies between entries 0 and 200 at alpha 128.
    pixels = np.zeros((64, 64, 4), np.uint8)
    pixels[..., :3], pixels[..., 3] = 80, 128
    palette = np.array([[0, 0, 0, 0], [0, 0, 0, 128], [200, 200, 200, 128]], np.uint8)
    labels = remap_rgba(pixels, palette, dither=dither)
    assert set(np.unique(labels).tolist()) == {1, 2}
    assert remap_rgba(pixels, palette).max() == 1  # undithered: all the nearest, 0
    mean = palette[labels, 0].astype(np.float64).mean()
    # Within 5% of the step between the entries, as the RGB test asks (fs: much closer).
    assert abs(mean - 80) < (3 if dither == "fs" else 10)


def test_strength_zero_is_the_nearest_entry():
    pixels = _image(20, 20, seed=2)
    palette = _palette(10, seed=2)
    for dither in ("fs", "ordered"):
        np.testing.assert_array_equal(remap_rgba(pixels, palette, dither=dither, strength=0),
                                      remap_rgba(pixels, palette))


# -- the compiled path --------------------------------------------------------


@pytest.mark.parametrize("case", range(8))
def test_compiled_labels_equal_numpy_labels(monkeypatch, case):
    pytest.importorskip("numba")
    rng = np.random.default_rng(200 + case)
    height, width = (int(v) for v in rng.integers(1, 3 * BAND_ROWS + 9, 2))
    k = int(rng.choice([1, 2, 3, 16, 97, 256]))
    pixels = (_image(height, width, seed=case) if case % 2
              else rng.integers(0, 256, (height, width, 4), dtype=np.uint8))
    palette = _palette(k, seed=case)
    palette[-1] = palette[-2 if k > 1 else -1]  # duplicates: ties on both paths alike
    for kwargs in ({}, {"dither": "ordered", "seed": case},
                   {"dither": "fs", "strength": float(rng.uniform(0.05, 1))}):
        monkeypatch.setenv("KPAL_PURE_NUMPY", "1")
        slow = remap_rgba(pixels, palette, **kwargs)
        monkeypatch.setenv("KPAL_PURE_NUMPY", "0")
        for threads in (1, 2, 3):
            np.testing.assert_array_equal(remap_rgba(pixels, palette, threads=threads, **kwargs),
                                          slow, err_msg=f"{kwargs} threads={threads}")


# -- Oklab and bad arguments ---------------------------------------------------


def test_oklab_on_a_mask_takes_the_oklab_nearest_opaque_entry():
    from kpal.cluster.remap import remap

    pixels = _image(16, 24, seed=6)
    pixels[..., 3] = np.where(pixels[..., 3] < 128, 0, 255)
    palette = _palette(12, seed=6)
    labels = remap_rgba(pixels, palette, space="oklab")
    opaque = np.flatnonzero(palette[:, 3] == 255)
    expected = opaque[remap(pixels[..., :3], np.ascontiguousarray(palette[opaque, :3]),
                            space="oklab")]
    mask = pixels[..., 3] == 255
    np.testing.assert_array_equal(labels[mask], expected[mask])
    assert (labels[~mask] == 0).all()


def test_oklab_maps_translucent_pixels_in_premultiplied_oklab_and_refuses_dithering():
    from kpal.cluster.perceptual import oklab_from_srgb8
    from tests.test_alpha_oklab import oklab_composite_score

    pixels = _image(8, 8, seed=1)
    palette = _palette(6)
    labels = remap_rgba(pixels, palette, space="oklab").reshape(-1)
    flat = pixels.reshape(-1, 4)
    alpha = flat[:, 3]
    # Composites over black and white, mixed in Oklab (L over 0 and 255), squared, summed.
    score = oklab_composite_score(flat, palette)
    translucent = (alpha > 0) & (alpha < 255)
    assert translucent.sum() > 10
    np.testing.assert_array_equal(labels[translucent], score[translucent].argmin(axis=1))
    assert (labels[alpha == 0] == 0).all()
    opaque_entries = np.flatnonzero(palette[:, 3] == 255)
    lab_p, lab_q = oklab_from_srgb8(flat[:, :3]), oklab_from_srgb8(palette[opaque_entries, :3])
    distance = ((lab_p[:, None, :] - lab_q[None, :, :]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(labels[alpha == 255],
                                  opaque_entries[distance[alpha == 255].argmin(axis=1)])
    with pytest.raises(KpalError, match="the Oklab dither table is built for opaque colours"):
        remap_rgba(pixels, palette, space="oklab", dither="ordered")
    pixels[..., 3] = 255
    with pytest.raises(KpalError, match="the Oklab dither table is built for opaque colours"):
        remap_rgba(pixels, palette, space="oklab", dither="fs")


@pytest.mark.parametrize(("pixels", "palette", "kwargs", "message"), [
    (np.zeros((2, 2, 3), np.uint8), _palette(2), {},
     r"shape \(height, width, 4\), got \(2, 2, 3\)"),
    (np.zeros((2, 2, 4), np.uint8), np.zeros((2, 3), np.uint8), {},
     r"palette must be a uint8 array of shape \(k, 4\) .* got \(2, 3\)"),
    (np.zeros((2, 2, 4), np.uint8), np.zeros((257, 4), np.uint8), {}, r"got \(257, 4\)"),
    (np.zeros((2, 2, 4), np.uint8), _palette(2), {"dither": "floyd"}, r"dither='floyd'"),
    (np.zeros((2, 2, 4), np.uint8), _palette(2), {"strength": 2}, r"strength=2"),
    (np.zeros((2, 2, 4), np.uint8), _palette(2), {"threads": 0}, r"threads=0"),
    (np.zeros((2, 2, 4), np.uint8), _palette(2), {"space": "lab"}, r"space='lab'"),
])
def test_bad_arguments_are_rejected(pixels, palette, kwargs, message):
    with pytest.raises(KpalError, match=message):
        remap_rgba(pixels, palette, **kwargs)


def test_fs_keeps_sprites_whose_colours_are_palette_entries_in_every_band():
    """Pixel art with a 0/255 mask on a shared palette holding its colours stays exact."""
    rng = np.random.default_rng(1)
    colours = rng.integers(0, 256, (16, 3), dtype=np.uint8)
    colours[14], colours[15] = (62, 118, 104), (65, 118, 105)  # two entries very close
    palette = np.concatenate([np.concatenate([colours, np.full((16, 1), 255, np.uint8)], 1),
                              np.zeros((1, 4), np.uint8)])
    size = BAND_ROWS * 3
    index = (np.add.outer(np.arange(size) // 4, np.arange(size) // 4)
             + rng.integers(0, 2, (size, size))) % 16
    sprite = palette[index].copy()
    sprite[::7, ::5] = (9, 200, 31, 0)  # transparent, any colour hidden under it
    result = palette[remap_rgba(sprite, palette, dither="fs")]
    visible = sprite[..., 3] > 0
    np.testing.assert_array_equal(result[visible], sprite[visible])
    assert (result[~visible] == 0).all()
