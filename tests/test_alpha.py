"""Tests for kpal.cluster.alpha: RGBA palettes, flattening and background colours."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from kpal.cluster import Quantization
from kpal.cluster.alpha import (
    TRANSPARENT,
    composite_mse,
    flatten,
    quantize_rgba,
)
from kpal.errors import KpalError, OptionError


def photo_rgba(size: int = 48, seed: int = 0) -> np.ndarray:
    """A small real photo with every kind of alpha: 0, 1..254 and 255, shape (n, 4)."""
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    rgb = np.asarray(Image.fromarray(data.astronaut()).resize((size, size), Image.LANCZOS))
    y, x = np.mgrid[0:size, 0:size]
    radius = np.hypot(x - size / 2, y - size / 2) / (size / 2)
    alpha = np.clip(np.rint((1.3 - radius) * 400), 0, 255).astype(np.uint8)
    image = np.dstack([rgb, alpha])
    # Random colours under the transparent pixels: they must not matter.
    rng = np.random.default_rng(seed)
    hidden = image[..., 3] == 0
    image[hidden, :3] = rng.integers(0, 256, size=(int(hidden.sum()), 3))
    return image.reshape(-1, 4)


def quiet_quantize(*args, **kwargs) -> Quantization:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return quantize_rgba(*args, **kwargs)


# ------------------------------------------------------------------ the mask


@pytest.mark.parametrize("k", [2, 3, 16, 64])
def test_mask_is_exact(k: int) -> None:
    pixels = photo_rgba()
    alpha = pixels[:, 3]
    assert (alpha == 0).any() and (alpha == 255).any() and ((alpha > 0) & (alpha < 255)).any()
    result = quantize_rgba(pixels, k)
    out = result.palette[result.labels]
    assert np.all(out[alpha == 255, 3] == 255)
    assert np.all(out[alpha == 0] == 0)
    assert result.palette.shape[1] == 4 and result.palette.shape[0] <= k
    assert result.labels.dtype == np.uint8 and result.labels.shape == (pixels.shape[0],)


def test_one_transparent_entry_whatever_the_colour_under_it() -> None:
    a = photo_rgba(seed=1)
    b = photo_rgba(seed=2)
    hidden = a[:, 3] == 0
    assert not np.array_equal(a[hidden], b[hidden])
    first, second = quantize_rgba(a, 16), quantize_rgba(b, 16)
    # The hidden colours change nothing: same bytes.
    assert np.array_equal(first.palette, second.palette)
    assert np.array_equal(first.labels, second.labels)
    transparent = np.flatnonzero(np.all(first.palette == TRANSPARENT, axis=1))
    assert transparent.size == 1
    assert np.all(first.labels[hidden] == transparent[0])
    assert np.count_nonzero(first.palette[:, 3] == 0) == 1


def test_gif_style_mask_kept_and_opaque_pixels_get_k_minus_one_entries() -> None:
    rgba = photo_rgba()
    rgba[:, 3] = np.where(rgba[:, 3] >= 128, 255, 0)
    result = quantize_rgba(rgba, 8)
    out = result.palette[result.labels]
    assert np.array_equal(out[:, 3], rgba[:, 3])
    assert result.palette.shape == (8, 4)
    assert np.count_nonzero(np.all(result.palette == TRANSPARENT, axis=1)) == 1
    assert np.count_nonzero(result.palette[:, 3] == 255) == 7


def test_fully_opaque_image_has_no_transparent_entry() -> None:
    rgba = photo_rgba()
    rgba[:, 3] = 255
    result = quantize_rgba(rgba, 8)
    assert result.palette.shape == (8, 4)
    assert np.all(result.palette[:, 3] == 255)


# ------------------------------------------------------------- lossless cases


def test_few_colours_are_kept_exactly_with_a_warning() -> None:
    colours = np.array([[10, 20, 30, 255], [10, 20, 30, 128], [200, 0, 0, 7],
                        [1, 2, 3, 0], [9, 9, 9, 0]], dtype=np.uint8)
    pixels = colours[np.random.default_rng(0).integers(0, 5, size=300)]
    with pytest.warns(UserWarning, match="4 distinct RGBA colours, no more than k=4"):
        result = quantize_rgba(pixels, 4)
    out = result.palette[result.labels]
    expected = pixels.copy()
    expected[expected[:, 3] == 0] = 0
    assert np.array_equal(out, expected)
    assert result.n_iter == 0 and result.inertia == 0.0 and result.n_colors == 4


def test_one_pixel() -> None:
    pixel = np.array([[12, 34, 56, 78]], dtype=np.uint8)
    with pytest.warns(UserWarning, match="lossless"):
        result = quantize_rgba(pixel, 1)
    assert result.palette.tolist() == [[12, 34, 56, 78]]
    assert result.labels.tolist() == [0]


def test_one_transparent_pixel_is_the_transparent_entry() -> None:
    with pytest.warns(UserWarning, match="lossless"):
        result = quantize_rgba(np.array([[255, 0, 0, 0]], dtype=np.uint8), 1)
    assert result.palette.tolist() == [list(TRANSPARENT)]


def test_k1_is_the_premultiplied_mean() -> None:
    pixels = np.array([[255, 0, 0, 255], [0, 0, 255, 255]], dtype=np.uint8)
    result = quantize_rgba(pixels, 1)
    assert result.palette.tolist() == [[128, 0, 128, 255]]  # 127.5 rounds half to even
    half = np.array([[200, 100, 0, 255], [0, 0, 0, 0]], dtype=np.uint8)
    result = quantize_rgba(half, 1)
    # Premultiplied mean (100, 50, 0, 127.5): alpha 127 or 128, colour back to straight.
    assert result.palette.shape == (1, 4)
    entry = result.palette[0].astype(float)
    assert entry[3] in (127, 128)
    assert np.allclose(entry[:3] * entry[3] / 255, [100, 50, 0], atol=0.6)
    assert result.labels.tolist() == [0, 0]


# ------------------------------------------------------- premultiplied weight


def test_nearly_transparent_far_colour_does_not_steal_an_entry() -> None:
    # Two opaque greys close together and many nearly transparent bright reds:
    # straight RGBA distance would give the reds an entry; premultiplied, they
    # sit next to the transparent end and the two greys keep theirs.
    greys = np.array([[100, 100, 100, 255]] * 50 + [[140, 140, 140, 255]] * 50, np.uint8)
    reds = np.array([[255, 0, 0, 2]] * 100 + [[250, 5, 5, 3]] * 100, np.uint8)
    pixels = np.concatenate([greys, reds])
    result = quantize_rgba(pixels, 3)
    out = result.palette[result.labels]
    assert np.array_equal(out[:50], greys[:50])
    assert np.array_equal(out[50:100], greys[50:])
    # The reds share one entry whose composite is within 1 level of theirs.
    assert np.unique(result.labels[100:]).size == 1
    assert composite_mse(pixels[100:], out[100:]) < 1.0


def test_beats_kmeans_on_straight_rgba() -> None:
    from kpal.cluster.kmeans import KMeans

    pixels = photo_rgba(64)
    result = quantize_rgba(pixels, 32)
    out = result.palette[result.labels]
    ours = composite_mse(pixels, out)
    straight = KMeans(32, seed=0).fit(pixels.astype(np.float64))
    theirs = np.clip(np.rint(straight.cluster_centers_), 0, 255).astype(np.uint8)
    assert ours < 0.8 * composite_mse(pixels, theirs[straight.labels_])
    assert 10 * np.log10(255.0**2 / ours) > 25.5
    # inertia is the composite error summed over the three channels.
    assert result.inertia == pytest.approx(3 * ours, rel=1e-9)


# ------------------------------------------------------------ options, paths


def test_same_seed_same_bytes_and_seed_matters() -> None:
    pixels = photo_rgba(64)
    a = quantize_rgba(pixels, 16, seed=3)
    b = quantize_rgba(pixels, 16, seed=3)
    assert a.palette.tobytes() == b.palette.tobytes()
    assert a.labels.tobytes() == b.labels.tobytes()


def test_result_does_not_depend_on_blas_threads() -> None:
    code = (
        "import json, sys, hashlib, numpy as np\n"
        "sys.path.insert(0, 'tests')\n"
        "from test_alpha import photo_rgba\n"
        "from kpal.cluster.alpha import quantize_rgba\n"
        "r = quantize_rgba(photo_rgba(48), 24, seed=1)\n"
        "print(json.dumps(hashlib.sha256(r.palette.tobytes() + r.labels.tobytes())"
        ".hexdigest()))\n"
    )
    digests = set()
    for threads in ("1", "2"):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=threads, OMP_NUM_THREADS=threads,
                   MKL_NUM_THREADS=threads)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True, cwd=os.path.dirname(os.path.dirname(
                                 os.path.abspath(__file__))))
        digests.add(json.loads(out.stdout))
    assert len(digests) == 1


def test_sample_fits_on_part_and_labels_all() -> None:
    pixels = photo_rgba(64)
    result = quantize_rgba(pixels, 16, sample=0.3)
    out = result.palette[result.labels]
    alpha = pixels[:, 3]
    assert np.all(out[alpha == 255, 3] == 255) and np.all(out[alpha == 0] == 0)
    assert result.palette.shape[0] <= 16
    full = quantize_rgba(pixels, 16)
    assert composite_mse(pixels, out) < 1.5 * composite_mse(pixels,
                                                             full.palette[full.labels])


def test_labels_are_the_nearest_allowed_entry() -> None:
    pixels = photo_rgba(40)
    result = quantize_rgba(pixels, 12)
    palette = result.palette.astype(np.float64)
    px = pixels.astype(np.float64)

    def composites(c: np.ndarray) -> np.ndarray:
        black = c[:, :3] * c[:, 3:4]
        return np.concatenate([black, black - 255 * c[:, 3:4]], axis=1)

    d = ((composites(px)[:, None, :] - composites(palette)[None, :, :]) ** 2).sum(axis=2)
    opaque = pixels[:, 3] == 255
    d[np.ix_(opaque, palette[:, 3] != 255)] = np.inf
    transparent = pixels[:, 3] == 0
    d[np.ix_(transparent, palette[:, 3] != 0)] = np.inf
    assert np.array_equal(result.labels, np.argmin(d, axis=1))


def test_gmm_on_a_binary_mask() -> None:
    rgba = photo_rgba()
    rgba[:, 3] = np.where(rgba[:, 3] >= 128, 255, 0)
    result = quantize_rgba(rgba, 6, method="gmm")
    out = result.palette[result.labels]
    assert result.method == "gmm"
    assert np.array_equal(out[:, 3], rgba[:, 3])
    assert result.palette.shape[0] <= 6


def test_gmm_quantizes_translucent_pixels_under_the_same_rules() -> None:
    pixels = photo_rgba()
    result = quantize_rgba(pixels, 8, method="gmm")
    assert result.method == "gmm" and result.palette.shape[0] <= 8
    out = result.palette[result.labels]
    assert np.all(out[pixels[:, 3] == 255, 3] == 255)
    assert np.all(out[pixels[:, 3] == 0] == 0)
    assert ((out[:, 3] > 0) & (out[:, 3] < 255)).any()
    assert np.all(np.bincount(result.labels) > 0)
    assert np.array_equal(result.labels, nearest_allowed(pixels, result.palette))


@pytest.mark.parametrize(
    ("pixels", "message"),
    [
        (np.zeros((4, 3), np.uint8), r"shape \(n_pixels, 4\)"),
        (np.zeros((0, 4), np.uint8), r"shape \(n_pixels, 4\)"),
        (np.zeros((4, 4), np.float32), "uint8 ndarray, got float32"),
        ([[0, 0, 0, 0]], "uint8 ndarray, got list"),
    ],
)
def test_bad_pixels(pixels: object, message: str) -> None:
    with pytest.raises(KpalError, match=message):
        quantize_rgba(pixels, 4)


def test_bad_options() -> None:
    pixels = photo_rgba(16)
    with pytest.raises(OptionError, match="k=0"):
        quantize_rgba(pixels, 0)
    with pytest.raises(OptionError, match="method"):
        quantize_rgba(pixels, 4, method="median-cut")


# ------------------------------------------------- flatten, background colours


def test_flatten_composites_with_exact_rounding() -> None:
    pixels = np.array([[[255, 0, 0, 128], [10, 20, 30, 255], [99, 99, 99, 0]]], np.uint8)
    out = flatten(pixels, (0, 0, 255))
    assert out.shape == (1, 3, 3) and out.dtype == np.uint8
    # 255*128/255 = 128; 255*127/255 = 127.
    assert out.tolist() == [[[128, 0, 127], [10, 20, 30], [0, 0, 255]]]
    assert flatten(pixels).tolist()[0][2] == [255, 255, 255]


def test_flatten_every_value_matches_float_rounding() -> None:
    c, a = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    pixels = np.stack([c, c, c, a], axis=-1).astype(np.uint8)
    out = flatten(pixels, (255, 0, 17))
    expected = np.floor((c * a + np.array([255, 0, 17])[:, None, None] * (255 - a)) / 255 + 0.5)
    assert np.array_equal(out.transpose(2, 0, 1), expected.astype(np.uint8))


def test_flatten_rejects_rgb_and_bad_background() -> None:
    with pytest.raises(KpalError, match=r"shape \(\.\.\., 4\), got uint8 \(2, 3\)"):
        flatten(np.zeros((2, 3), np.uint8))
    with pytest.raises(OptionError,
                       match=r"background=.nope. must be a colour: .* \(not a known colour name\)"):
        flatten(np.zeros((2, 4), np.uint8), "nope")


@pytest.mark.parametrize(
    ("colour", "rgb"),
    [("#ff8000", (255, 128, 0)), ("#F80", (255, 136, 0)), ("grey", (128, 128, 128)),
     (" 0, 128 ,255 ", (0, 128, 255)), ((1, 2, 3), (1, 2, 3))],
)
def test_flatten_takes_every_form_of_background(colour: object, rgb: tuple) -> None:
    # One colour parser (kpal.options) for background= and flatten.
    pixels = np.array([[10, 20, 30, 0], [10, 20, 30, 255]], np.uint8)
    assert flatten(pixels, colour).tolist() == [list(rgb), [10, 20, 30]]


def test_composite_mse_is_the_mean_of_black_and_white_errors() -> None:
    a = np.array([[100, 50, 0, 200]], np.uint8)
    b = np.array([[110, 50, 0, 180]], np.uint8)
    black = (b[:, :3] * 180.0 - a[:, :3] * 200.0) / 255
    white = black - (180 - 200)
    assert composite_mse(a, b) == pytest.approx((np.sum(black**2) + np.sum(white**2)) / 6)
    assert composite_mse(a, a) == 0.0


# ------------------------------------------------------------ compiled path


def nearest_allowed(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Brute force: the label of every pixel under the alpha rules (ties: lowest index)."""
    palette = palette.astype(np.float64)
    px = pixels.astype(np.float64)

    def composites(c: np.ndarray) -> np.ndarray:
        black = c[:, :3] * c[:, 3:4]
        return np.concatenate([black, black - 255 * c[:, 3:4]], axis=1)

    entries = composites(palette)
    out = np.empty(px.shape[0], dtype=np.intp)
    for start in range(0, px.shape[0], 4096):
        block = slice(start, start + 4096)
        d = ((composites(px[block])[:, None, :] - entries[None, :, :]) ** 2).sum(axis=2)
        d[np.ix_(pixels[block, 3] == 255, palette[:, 3] != 255)] = np.inf
        d[np.ix_(pixels[block, 3] == 0, palette[:, 3] != 0)] = np.inf
        out[block] = np.argmin(d, axis=1)
    return out


def test_compiled_kernels_give_the_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("numba")
    # Over 20,000 distinct colours: the cells, the exact level and the passes all run.
    pixels = photo_rgba(200)
    monkeypatch.setenv("KPAL_PURE_NUMPY", "1")
    plain = quantize_rgba(pixels, 64)
    monkeypatch.setenv("KPAL_PURE_NUMPY", "0")
    from kpal import _jit

    kernels = _jit.load("kpal.cluster._kmeans_fast", pixels.shape[0])
    calls = {"hamerly_step": 0, "nearest_palette": 0}

    def spy(name: str):
        real = getattr(kernels, name)

        def counted(*args):
            calls[name] += 1
            return real(*args)
        return counted

    for name in calls:
        monkeypatch.setattr(kernels, name, spy(name))
    compiled = quantize_rgba(pixels, 64)
    # The compiled search labelled both the cells' k-means and the passes.
    assert calls["hamerly_step"] > 0 and calls["nearest_palette"] > 0
    assert np.array_equal(plain.palette, compiled.palette)
    assert np.array_equal(plain.labels, compiled.labels)
    assert np.array_equal(compiled.labels, nearest_allowed(pixels, compiled.palette))


@pytest.mark.parametrize("pixel_path", [10**9, 1000])
def test_compiled_result_does_not_depend_on_numba_threads(pixel_path: int) -> None:
    # Also on the pixel path (_PIXEL_PATH lowered), whose colour count runs on
    # a thread of its own when numba has two.
    pytest.importorskip("numba")
    code = (
        "import json, sys, hashlib, numpy as np\n"
        "sys.path.insert(0, 'tests')\n"
        "from test_alpha import photo_rgba\n"
        "import kpal.cluster.alpha as alpha\n"
        "from kpal.cluster.alpha import quantize_rgba\n"
        f"alpha._PIXEL_PATH = {pixel_path}\n"
        "r = quantize_rgba(photo_rgba(160), 32, seed=2)\n"
        "print(json.dumps(hashlib.sha256(r.palette.tobytes() + r.labels.tobytes())"
        ".hexdigest() + str(r.n_colors) + repr(r.inertia)))\n"
    )
    digests = set()
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads, KPAL_PURE_NUMPY="0")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True, cwd=os.path.dirname(os.path.dirname(
                                 os.path.abspath(__file__))))
        digests.add(json.loads(out.stdout))
    assert len(digests) == 1


def test_many_colours_path_labels_nearest_and_keeps_the_mask(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Past _CONVERGE_POINTS colours the exact level is skipped and one pass polishes.
    import kpal.cluster.alpha as alpha

    pixels = photo_rgba(160)
    monkeypatch.setattr(alpha, "_CONVERGE_POINTS", 1000)
    result = quantize_rgba(pixels, 32)
    out = result.palette[result.labels]
    assert np.all(out[pixels[:, 3] == 255, 3] == 255) and np.all(out[pixels[:, 3] == 0] == 0)
    assert np.array_equal(result.labels, nearest_allowed(pixels, result.palette))
    monkeypatch.setattr(alpha, "_CONVERGE_POINTS", 10**9)
    slow = quantize_rgba(pixels, 32)
    # Within 3 % of the error of the full polish.
    assert result.inertia <= 1.03 * slow.inertia


# ------------------------------------------- many translucent pixels: from the pixels


def test_pixel_path_gives_the_same_bytes_compiled_or_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Past _PIXEL_PATH translucent pixels the cells are built from the pixels
    # and every pixel is labelled by its exact nearest allowed entry.
    pytest.importorskip("numba")
    import kpal.cluster.alpha as alpha

    pixels = photo_rgba(160)
    monkeypatch.setattr(alpha, "_PIXEL_PATH", 1000)
    results = []
    for pure in ("1", "0"):
        monkeypatch.setenv("KPAL_PURE_NUMPY", pure)
        results.append(quantize_rgba(pixels, 32, seed=1))
    plain, compiled = results
    assert np.array_equal(plain.palette, compiled.palette)
    assert np.array_equal(plain.labels, compiled.labels)
    assert plain.inertia == compiled.inertia and plain.n_colors == compiled.n_colors
    assert np.array_equal(compiled.labels, nearest_allowed(pixels, compiled.palette))
    out = compiled.palette[compiled.labels]
    assert np.all(out[pixels[:, 3] == 255, 3] == 255) and np.all(out[pixels[:, 3] == 0] == 0)
    assert compiled.inertia == pytest.approx(
        3 * composite_mse(pixels, compiled.palette[compiled.labels]), rel=1e-9)
    monkeypatch.setattr(alpha, "_PIXEL_PATH", 10**9)
    listed = quantize_rgba(pixels, 32, seed=1)
    # The distinct colours are counted the same way, and the fit is as good within 5 %.
    assert compiled.n_colors == listed.n_colors
    assert compiled.inertia <= 1.05 * listed.inertia


def test_pixel_path_without_a_pass_labels_the_first_palette(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # With no pass (or one that is not kept) the compiled path, which took only
    # the sums of the first palette, labels the pixels with it afterwards.
    pytest.importorskip("numba")
    import kpal.cluster.alpha as alpha

    pixels = photo_rgba(120)
    monkeypatch.setattr(alpha, "_PIXEL_PATH", 1000)
    monkeypatch.setattr(alpha, "_LARGE_PASSES", 0)
    results = []
    for pure in ("1", "0"):
        monkeypatch.setenv("KPAL_PURE_NUMPY", pure)
        results.append(quantize_rgba(pixels, 16, seed=3))
    plain, compiled = results
    assert np.array_equal(plain.palette, compiled.palette)
    assert np.array_equal(plain.labels, compiled.labels)
    assert plain.inertia == compiled.inertia
    assert np.array_equal(compiled.labels, nearest_allowed(pixels, compiled.palette))
    assert compiled.inertia == pytest.approx(
        3 * composite_mse(pixels, compiled.palette[compiled.labels]), rel=1e-9)


@pytest.mark.parametrize("pure", ["1", "0"])
def test_pixel_path_with_few_colours_is_lossless(monkeypatch: pytest.MonkeyPatch,
                                                 pure: str) -> None:
    import kpal.cluster.alpha as alpha

    colours = np.array([[0, 0, 0, 0], [200, 10, 10, 128], [10, 200, 10, 40], [9, 9, 9, 255]],
                       dtype=np.uint8)
    pixels = colours[np.random.default_rng(5).integers(0, 4, 5000)]
    monkeypatch.setattr(alpha, "_PIXEL_PATH", 1000)
    monkeypatch.setenv("KPAL_PURE_NUMPY", pure)
    with pytest.warns(UserWarning, match="4 distinct RGBA colours"):
        result = quantize_rgba(pixels, 8)
    assert result.inertia == 0.0 and result.n_colors == 4
    assert np.array_equal(result.palette[result.labels], pixels)


def test_pixel_path_without_transparent_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("numba")
    import kpal.cluster.alpha as alpha

    pixels = photo_rgba(120)
    pixels[:, 3] = np.maximum(pixels[:, 3], 3)
    monkeypatch.setattr(alpha, "_PIXEL_PATH", 1000)
    results = []
    for pure in ("1", "0"):
        monkeypatch.setenv("KPAL_PURE_NUMPY", pure)
        results.append(quantize_rgba(pixels, 16))
    assert np.array_equal(results[0].palette, results[1].palette)
    assert np.array_equal(results[0].labels, results[1].labels)
    assert results[0].inertia == results[1].inertia
    assert np.all(results[1].palette[:, 3] > 0)
    assert np.array_equal(results[1].labels, nearest_allowed(pixels, results[1].palette))


def test_pixel_kernels_match_their_numpy_twins() -> None:
    pytest.importorskip("numba")
    from kpal.cluster import _alpha_fast
    from kpal.cluster.alpha import (
        _N_KEYS,
        _cell_sums,
        _count_colours,
        _label_error,
        _label_sums_numpy,
    )
    from kpal.cluster.remap import _RgbaEntries

    rng = np.random.default_rng(3)
    pixels = photo_rgba(90)
    # Repeated colours and every alpha, 0 and 255 included.
    pixels = np.concatenate([pixels, pixels[:500],
                             rng.integers(0, 256, (3000, 4)).astype(np.uint8)])
    assert _alpha_fast.count_colours(pixels) == _count_colours(pixels)
    visible = pixels[pixels[:, 3] > 0]
    assert _count_colours(pixels) == 1 + np.unique(visible, axis=0).shape[0]
    counts, sums, moment = _cell_sums(pixels)
    fast_counts, fast_sums, fast_moment = _alpha_fast.cell_sums(pixels, _N_KEYS)
    assert np.array_equal(counts, fast_counts) and np.array_equal(sums, fast_sums)
    assert counts.sum() == visible.shape[0]
    values = pixels[:, :3].astype(np.int64) * pixels[:, 3:4]
    white = values - 255 * pixels[:, 3:4].astype(np.int64)
    assert moment == fast_moment == int((values**2).sum() + (white**2).sum())
    keys = np.flatnonzero(counts)
    palette = np.concatenate([np.zeros((1, 4), np.uint8),
                              rng.integers(0, 256, (40, 4)).astype(np.uint8)])
    palette[1:5, 3] = 255
    entries = _RgbaEntries(palette).arguments()
    expected = _label_sums_numpy(pixels, palette)
    assert np.array_equal(expected[0], nearest_allowed(pixels, palette))
    for got in (_alpha_fast.label_sums(pixels, *entries),
                _alpha_fast.label_sums(pixels, *entries, threads=2),
                _alpha_fast.label_cells(pixels, keys, *entries),
                _alpha_fast.label_cells(pixels, keys, *entries, threads=2)):
        for want, have in zip(expected, got, strict=True):
            assert np.array_equal(want, have)
    # The sums without the labels: single-candidate cells from the cell sums.
    for threads in (1, 2):
        got = _alpha_fast.entry_sums(pixels, keys, counts[keys], sums[keys], *entries,
                                     threads=threads)
        assert np.array_equal(got[0], expected[1]) and np.array_equal(got[1], expected[2])
    # The error from the sums is the summed per-pixel score of the labels
    # (composites over black and over white, c·a units).
    chosen = palette[expected[0]].astype(np.int64)
    diff = values - chosen[:, :3] * chosen[:, 3:4]
    shift = 255 * (pixels[:, 3:4].astype(np.int64) - chosen[:, 3:4])
    score = int((diff**2).sum() + ((diff - shift) ** 2).sum())
    assert _label_error(palette, expected[1], expected[2], moment) == score
    # Candidate lists found in blocks of cells on two threads are those of one pass.
    whole = _alpha_fast.cell_candidates(keys, *entries[:3])
    split = _alpha_fast._candidates(keys, *entries[:3], 2)
    assert all(np.array_equal(a, b) for a, b in zip(whole, split, strict=True))
    assert np.any(np.diff(whole[0]) == 1) and np.any(np.diff(whole[0]) > 1)


def test_opaque_centre_of_a_soft_vignette_gets_several_entries() -> None:
    # Translucent pixels outweigh the opaque middle: by the majority of weight
    # alone the face would take a single opaque entry and turn one flat colour.
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    size = 96
    rgb = np.asarray(Image.fromarray(data.astronaut()).resize((size, size), Image.LANCZOS))
    y, x = np.mgrid[0:size, 0:size]
    radius = np.hypot(x - size / 2, y - size / 2) / (size / 2)
    # Opaque inside r = 0.55, then a cosine fall to 0 at r = 1.3 (bench/alpha_corpus.py).
    fall = np.clip((radius - 0.55) / 0.75, 0, 1)
    alpha = np.rint(127.5 * (1 + np.cos(np.pi * fall))).astype(np.uint8)
    pixels = np.dstack([rgb, alpha]).reshape(-1, 4)
    opaque = pixels[:, 3] == 255
    assert opaque.sum() < (pixels[:, 3] % 255 > 0).sum()
    result = quantize_rgba(pixels, 8)
    assert (result.palette[:, 3] == 255).sum() >= 3
    out = result.palette[result.labels]
    assert np.all(out[opaque, 3] == 255)
    # The opaque pixels' error is well below that of their single mean colour.
    rgb_o = pixels[opaque, :3].astype(np.float64)
    flat_error = ((rgb_o - rgb_o.mean(axis=0)) ** 2).sum(axis=1).mean()
    error = ((rgb_o - out[opaque, :3]) ** 2).sum(axis=1).mean()
    assert error < 0.3 * flat_error


def test_cell_key_division_by_multiplication() -> None:
    # _alpha_fast's cell key divides c·a by 2040 as (x * 32897) >> 26.
    x = np.arange(255 * 255 + 1, dtype=np.int64)
    assert np.array_equal((x * 32897) >> 26, x // 2040)
