"""Tests for kpal.cluster.alpha_oklab: RGBA palettes in premultiplied Oklab."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from kpal import codec, options
from kpal.cli import cli
from kpal.cluster.alpha import _Parts, composite_mse, quantize_rgba
from kpal.cluster.alpha_oklab import nearest_entries, quantize_translucent, to_space
from kpal.cluster.perceptual import oklab_from_srgb8
from kpal.cluster.remap import remap_rgba

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def soft_image(size: int = 64, seed: int = 0) -> np.ndarray:
    """Noisy colour gradients with a soft round edge: alpha 0, 1..254 and 255, (size, size, 4)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    base = np.stack([255 * x, 255 * y, 255 * (1 - x) * (0.5 + 0.5 * np.sin(6 * y))], axis=-1)
    rgb = np.clip(np.rint(base + rng.normal(0, 10, base.shape)), 0, 255)
    radius = np.hypot(x - 0.5, y - 0.5) / 0.5
    alpha = np.clip(np.rint((1.2 - radius) * 500), 0, 255)
    image = np.concatenate([rgb, alpha[..., None]], axis=-1).astype(np.uint8)
    assert ((alpha > 0) & (alpha < 255)).sum() > size  # a real soft edge
    return image


def oklab_composite_score(colours: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Squared Oklab errors of the composites over black and over white, mixed in Oklab
    (L of black 0, of white 255), summed: shape (n, k)."""
    lab_p, lab_q = oklab_from_srgb8(colours[:, :3]), oklab_from_srgb8(palette[:, :3])
    a, b = colours[:, 3:4] / 255.0, palette[None, :, 3] / 255.0
    score = np.zeros((colours.shape[0], palette.shape[0]))
    for white in (0.0, 255.0):
        for channel in range(3):
            ground = white if channel == 0 else 0.0
            over_p = a * lab_p[:, None, channel] + (1 - a) * ground
            over_q = b * lab_q[None, :, channel] + (1 - b) * ground
            score += (over_p - over_q) ** 2
    return score


def expected_labels(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """The rules, computed directly: alpha 0 on the transparent entry, alpha 255 on
    the Oklab-nearest opaque entry, others on the composite-nearest entry."""
    alpha = pixels[:, 3]
    score = oklab_composite_score(pixels, palette)
    lab_p, lab_q = oklab_from_srgb8(pixels[:, :3]), oklab_from_srgb8(palette[:, :3])
    oklab = ((lab_p[:, None, :] - lab_q[None, :, :]) ** 2).sum(axis=2)
    score[alpha == 255] = np.where(palette[:, 3] == 255, oklab[alpha == 255], np.inf)
    score[alpha == 0] = np.where(palette[:, 3] == 0, 0.0, np.inf)
    return score.argmin(axis=1)


def quantize(pixels: np.ndarray, k: int, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # never the lossless path here
        return quantize_rgba(pixels, k, space="oklab", **kwargs)


def test_space_distance_is_the_mean_oklab_composite_error() -> None:
    rng = np.random.default_rng(4)
    colours = rng.integers(0, 256, (200, 4), dtype=np.uint8)
    colours[:20, 3] = 0
    colours[20:40, 3] = 255
    points = to_space(colours)
    squared = ((points[:100] - points[100:]) ** 2).sum(axis=1)
    pairs = oklab_composite_score(colours[:100], colours[100:])[np.arange(100), np.arange(100)]
    # Three times (the √3 scale) the mean over the two backgrounds.
    np.testing.assert_allclose(squared, 3 * pairs / 2, rtol=1e-9, atol=1e-6)
    # Opaque colours: their Oklab distance; alpha 0 colours: one point, whatever their colour.
    opaque = ((points[20:30] - points[30:40]) ** 2).sum(axis=1)
    lab = oklab_from_srgb8(colours[20:40, :3])
    np.testing.assert_allclose(opaque, 3 * ((lab[:10] - lab[10:]) ** 2).sum(axis=1), rtol=1e-9)
    np.testing.assert_array_equal(points[:20], 0.0)


@pytest.mark.parametrize("k", [2, 5, 16, 40])
def test_alpha_is_exact_entries_are_used_and_labels_are_nearest(k: int) -> None:
    image = soft_image(48, seed=k)
    pixels = image.reshape(-1, 4)
    result = quantize(pixels, k)
    palette = result.palette
    out = palette[result.labels]
    alpha = pixels[:, 3]
    assert (out[alpha == 0] == 0).all()
    assert (out[alpha == 255, 3] == 255).all()
    assert (palette[:, 3] == 0).sum() == 1  # the one transparent entry
    assert 2 <= palette.shape[0] <= k
    assert np.array_equal(np.unique(result.labels), np.arange(palette.shape[0]))
    np.testing.assert_array_equal(result.labels, expected_labels(pixels, palette))
    assert result.inertia == pytest.approx(3 * composite_mse(pixels, out), rel=1e-9)
    assert result.n_colors == np.unique(pixels[alpha > 0].view(np.uint32)).size + 1
    assert result.n_iter > 0


def test_translucent_entries_and_no_transparent_entry_without_alpha_0() -> None:
    image = soft_image(40)
    image[..., 3] = np.maximum(image[..., 3], 30)  # no alpha 0 pixel left
    pixels = image.reshape(-1, 4)
    result = quantize(pixels, 12)
    assert not (result.palette[:, 3] == 0).any()
    assert ((result.palette[:, 3] > 0) & (result.palette[:, 3] < 255)).any()
    np.testing.assert_array_equal(result.labels, expected_labels(pixels, result.palette))


def test_only_translucent_pixels() -> None:
    image = soft_image(32)
    image[..., 3] = np.clip(image[..., 3], 10, 200)
    pixels = image.reshape(-1, 4)
    result = quantize(pixels, 6)
    assert result.palette.shape[0] <= 6
    np.testing.assert_array_equal(result.labels, expected_labels(pixels, result.palette))


def test_oklab_beats_rgb_on_the_oklab_error_and_rgb_beats_oklab_on_psnr() -> None:
    # Each space wins on its own measure (summed over the composites' error in that space).
    pixels = soft_image(64, seed=3).reshape(-1, 4)
    fits = {space: quantize_rgba(pixels, 8, space=space) for space in ("rgb", "oklab")}
    outs = {space: fit.palette[fit.labels] for space, fit in fits.items()}

    def oklab_error(out: np.ndarray) -> float:
        return float(((to_space(pixels) - to_space(out)) ** 2).sum())

    assert oklab_error(outs["oklab"]) < oklab_error(outs["rgb"])
    assert composite_mse(pixels, outs["rgb"]) < composite_mse(pixels, outs["oklab"])


def test_many_colours_fit_on_cells_and_still_label_every_colour_exactly(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import kpal.cluster.alpha_oklab as alpha_oklab

    pixels = soft_image(64, seed=5).reshape(-1, 4)
    exact = quantize(pixels, 12)
    monkeypatch.setattr(alpha_oklab, "_CONVERGE_POINTS", 500)  # the large-image path
    cells = quantize(pixels, 12)
    assert cells.palette.tobytes() != exact.palette.tobytes()
    out = cells.palette[cells.labels]
    assert (out[pixels[:, 3] == 0] == 0).all() and (out[pixels[:, 3] == 255, 3] == 255).all()
    assert np.array_equal(np.unique(cells.labels), np.arange(cells.palette.shape[0]))
    np.testing.assert_array_equal(cells.labels, expected_labels(pixels, cells.palette))
    assert cells.inertia < 1.3 * exact.inertia


def test_same_seed_same_bytes_other_seed_other_palette() -> None:
    pixels = soft_image(48).reshape(-1, 4)
    a, b, c = quantize(pixels, 16, seed=3), quantize(pixels, 16, seed=3), quantize(pixels, 16,
                                                                                   seed=4)
    assert a.palette.tobytes() + a.labels.tobytes() == b.palette.tobytes() + b.labels.tobytes()
    assert a.palette.tobytes() != c.palette.tobytes()


def test_sample_fits_on_part_and_labels_every_pixel_by_the_rules() -> None:
    pixels = soft_image(64).reshape(-1, 4)
    full = quantize(pixels, 16)
    sampled = quantize(pixels, 16, sample=0.2)
    assert sampled.palette.tobytes() != full.palette.tobytes()
    np.testing.assert_array_equal(sampled.labels, expected_labels(pixels, sampled.palette))
    assert sampled.inertia < 1.5 * full.inertia


def test_compiled_kernels_give_the_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("numba")
    # Over 20,000 distinct colours: the fit starts on cells.
    pixels = soft_image(220, seed=1).reshape(-1, 4)
    monkeypatch.setenv("KPAL_PURE_NUMPY", "1")
    plain = quantize(pixels, 32)
    monkeypatch.setenv("KPAL_PURE_NUMPY", "0")
    from kpal import _jit

    kernels = _jit.load("kpal.cluster._kmeans_fast", pixels.shape[0])
    assert kernels is not None
    parts = _Parts(pixels, kernels)
    compiled = quantize_translucent(parts, 31, options.EncodeOptions(k=32, space="oklab"),
                                    kernels)
    assert np.array_equal(plain.palette, compiled.palette)
    assert np.array_equal(plain.labels, compiled.labels)


@pytest.mark.parametrize("env", ["OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"])
def test_result_does_not_depend_on_threads(env: str) -> None:
    code = (
        "import hashlib, json, sys\n"
        "sys.path.insert(0, 'tests')\n"
        "from test_alpha_oklab import soft_image\n"
        "from kpal.cluster.alpha import quantize_rgba\n"
        "r = quantize_rgba(soft_image(150).reshape(-1, 4), 24, seed=1, space='oklab')\n"
        "print(json.dumps(hashlib.sha256(r.palette.tobytes() + r.labels.tobytes())"
        ".hexdigest() + repr(r.inertia)))\n"
    )
    digests = set()
    for threads in ("1", "2"):
        extra = {env: threads, "OMP_NUM_THREADS": threads, "KPAL_PURE_NUMPY": "0"}
        out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **extra),
                             capture_output=True, text=True, check=True, cwd=ROOT)
        digests.add(json.loads(out.stdout))
    assert len(digests) == 1


def test_nearest_entries_follows_the_rules_on_any_palette() -> None:
    rng = np.random.default_rng(7)
    colours = rng.integers(0, 256, (500, 4), dtype=np.uint8)
    colours[:50, 3] = 0
    colours[50:150, 3] = 255
    palette = rng.integers(0, 256, (9, 4), dtype=np.uint8)
    palette[3, 3] = 0
    palette[[1, 5, 6], 3] = 255
    np.testing.assert_array_equal(nearest_entries(colours, palette),
                                  expected_labels(colours, palette))
    assert (nearest_entries(colours, palette)[:50] == 3).all()


def test_remap_rgba_oklab_gives_the_fitted_labels() -> None:
    image = soft_image(48)
    result = quantize(image.reshape(-1, 4), 16)
    np.testing.assert_array_equal(remap_rgba(image, result.palette, space="oklab").reshape(-1),
                                  result.labels)


def test_encode_round_trip_through_the_file() -> None:
    image = soft_image(40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        encoded = codec.encode_image(image, k=8, space="oklab")
    with codec.decode(encoded.data) as decoded:
        out = np.asarray(decoded.convert("RGBA"))
    fit = quantize(image.reshape(-1, 4), 8)
    np.testing.assert_array_equal(out.reshape(-1, 4), fit.palette[fit.labels])
    assert (out[image[..., 3] == 0] == 0).all() and (out[image[..., 3] == 255, 3] == 255).all()


def test_cli_encodes_a_soft_edged_png_in_oklab(tmp_path) -> None:
    image = soft_image(40)
    source = tmp_path / "in.png"
    Image.fromarray(image, "RGBA").save(source)
    runner = CliRunner()
    result = runner.invoke(cli, ["encode", str(source), "-k", "8", "--space", "oklab"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "in.kpal").exists()
    back = tmp_path / "back.png"
    result = runner.invoke(cli, ["decode", str(tmp_path / "in.kpal"), "-o", str(back)])
    assert result.exit_code == 0, result.output
    with Image.open(back) as im:
        out = np.asarray(im.convert("RGBA"))
    fit = quantize(image.reshape(-1, 4), 8)
    np.testing.assert_array_equal(out.reshape(-1, 4), fit.palette[fit.labels])
    digest = hashlib.sha256((tmp_path / "in.kpal").read_bytes()).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        api = codec.encode_image(image, k=8, space="oklab").data
    assert hashlib.sha256(api).hexdigest() == digest


def test_large_images_are_labelled_and_summed_a_block_of_colours_at_a_time(monkeypatch):
    """The same labels as all colours at once, and the same cell means to rounding."""
    from kpal.cluster import alpha_oklab

    rng = np.random.default_rng(7)
    colours = rng.integers(0, 256, (5000, 4), dtype=np.uint8)
    colours[:800, 3] = 255
    colours[800:900, 3] = 0
    palette = rng.integers(0, 256, (12, 4), dtype=np.uint8)
    palette[:4, 3] = 255
    palette[4, 3] = 0
    guess = rng.integers(0, 12, 5000)
    weights = rng.integers(1, 9, 5000).astype(np.float64)
    lab = alpha_oklab.oklab_from_srgb8(colours[:, :3])
    whole = alpha_oklab._nearest(colours[:, 3], lab, alpha_oklab._from_lab(lab, colours[:, 3]),
                                 palette, guess)
    whole_cells = alpha_oklab._CellLevel(colours, weights).points
    monkeypatch.setattr(alpha_oklab, "_COLOUR_BLOCK", 777)
    assert np.array_equal(alpha_oklab._nearest_blocks(colours, palette, guess), whole)
    np.testing.assert_allclose(alpha_oklab._CellLevel(colours, weights).points, whole_cells,
                               rtol=1e-12, atol=1e-9)
