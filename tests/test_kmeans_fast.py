"""Compiled k-means kernels (``kpal[fast]``) against the numpy path: the same bytes everywhere.

Under CI a missing numba fails this module (tests/conftest.py), it never skips.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kpal
from kpal import _jit
from kpal.cluster import quantize
from kpal.cluster.nearest import _MARGIN, Neighbours

pytest.importorskip("numba")

from kpal.cluster import _kmeans_fast  # noqa: E402


def _photo(name: str) -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(getattr(data, name)()[..., :3])


def _mosaic_1mp() -> np.ndarray:
    """About 1 MP from four photos: over 250k colours, so every level of the fit runs."""
    tiles = [_photo(n)[:400, :400] for n in ("astronaut", "coffee", "rocket", "retina")]
    top = np.concatenate(tiles[:2], axis=1)
    bottom = np.concatenate(tiles[2:4], axis=1)
    image = np.concatenate([top, bottom], axis=0)
    return np.concatenate([image, image[::-1, ::-1] // 2 + 60], axis=1)


def _both_paths(monkeypatch, fn):
    results = []
    for choice in ("1", "0"):
        with monkeypatch.context() as patch:
            patch.setenv("KPAL_PURE_NUMPY", choice)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # few colours: lossless
                results.append(fn())
    return results


def _same_quantization(a, b) -> None:
    assert a.palette.tobytes() == b.palette.tobytes()
    assert a.labels.tobytes() == b.labels.tobytes()
    assert (a.n_iter, a.inertia, a.n_colors) == (b.n_iter, b.inertia, b.n_colors)


@pytest.mark.parametrize("name", ["coffee", "astronaut", "rocket"])
@pytest.mark.parametrize("k", [1, 2, 3, 16, 97, 256])
def test_photos_quantize_identically_on_both_paths(monkeypatch, name, k):
    pixels = _photo(name).reshape(-1, 3)
    numpy_result, compiled_result = _both_paths(monkeypatch, lambda: quantize(pixels, k))
    _same_quantization(numpy_result, compiled_result)


@pytest.mark.parametrize("k", [16, 256])
def test_megapixel_mosaic_encodes_to_the_same_file_on_both_paths(monkeypatch, k):
    image = _mosaic_1mp()
    numpy_bytes, compiled_bytes = _both_paths(monkeypatch, lambda: kpal.encode(image, k))
    assert numpy_bytes == compiled_bytes


def test_sampled_fit_labels_identically_on_both_paths(monkeypatch):
    pixels = _photo("coffee").reshape(-1, 3)
    numpy_result, compiled_result = _both_paths(
        monkeypatch, lambda: quantize(pixels, 64, sample=0.3, seed=4))
    _same_quantization(numpy_result, compiled_result)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    height=st.integers(1, 37),
    width=st.integers(1, 41),
    levels=st.sampled_from([2, 3, 7, 256]),
    k=st.integers(1, 256),
    seed=st.integers(0, 2**16),
)
def test_random_images_encode_identically(monkeypatch, height, width, levels, k, seed):
    # Few levels per channel make many ties between equidistant centres.
    rng = np.random.default_rng(seed)
    values = np.linspace(0, 255, levels).astype(np.uint8)
    image = values[rng.integers(0, levels, size=(height, width, 3))]
    numpy_bytes, compiled_bytes = _both_paths(
        monkeypatch, lambda: kpal.encode(image, k, seed=seed % 7))
    assert numpy_bytes == compiled_bytes


def test_histogram_kernel_matches_numpy():
    from kpal.cluster.histogram import color_histogram

    pixels = _mosaic_1mp().reshape(-1, 3)
    expected = color_histogram(pixels)
    got = _kmeans_fast.color_histogram(pixels)
    assert got.colors.tobytes() == expected.colors.tobytes()
    assert got.counts.dtype == expected.counts.dtype
    assert got.counts.tobytes() == expected.counts.tobytes()


def test_hamerly_step_finds_the_exact_nearest_with_lowest_index_ties():
    rng = np.random.default_rng(3)
    # Integer points and half-integer centres, duplicates included: many exact ties.
    centres = rng.integers(0, 60, size=(40, 3)) + 0.5
    centres[7] = centres[30]
    points = rng.integers(0, 61, size=(5000, 3)).astype(np.float64)
    neighbours = Neighbours(centres)
    start = rng.integers(0, 40, size=5000)
    labels = start.copy()
    upper = np.full(5000, np.inf)  # force every point through the search
    lower = np.zeros(5000)
    previous = np.empty(5000, dtype=np.intp)
    zeros = np.zeros(40)
    _kmeans_fast.hamerly_step(points, centres, labels, upper, lower, False, zeros, zeros, zeros,
                              neighbours.half_gap, neighbours.order, neighbours.sorted_gaps,
                              neighbours.drift, 0.0, _MARGIN, previous)
    diff = points[:, None, :] - centres[None]
    d = diff[..., 0] ** 2 + diff[..., 1] ** 2 + diff[..., 2] ** 2
    np.testing.assert_array_equal(labels, d.argmin(axis=1))
    assert not (labels == 30).any()  # its twin 7 has the lower index
    np.testing.assert_array_equal(previous >= 0, labels != start)
    np.testing.assert_array_equal(previous[previous >= 0], start[previous >= 0])
    np.testing.assert_allclose(upper, np.sqrt(d.min(axis=1)))
    d[np.arange(5000), labels] = np.inf
    assert (lower <= np.sqrt(d.min(axis=1)) + 1e-9).all()


def test_palette_kernel_is_exact_from_any_hint():
    rng = np.random.default_rng(4)
    colors = rng.integers(0, 256, size=(20000, 3), dtype=np.uint8)
    palette = rng.integers(0, 256, size=(200, 3), dtype=np.uint8)
    palette[150] = palette[3]
    hint = rng.integers(0, 200, size=20000)
    labels, distances = _kmeans_fast.nearest_palette(colors, palette, hint)
    d = ((colors[:, None, :].astype(np.int64) - palette[None]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(labels, d.argmin(axis=1))
    np.testing.assert_array_equal(distances, d.min(axis=1))


_DIGEST = """
import hashlib, os, sys
import numpy as np
from skimage import data
os.environ["KPAL_PURE_NUMPY"] = "0"
import kpal
print(hashlib.sha256(kpal.encode(data.coffee(), 200)).hexdigest())
"""


def test_compiled_bytes_do_not_depend_on_the_thread_count(monkeypatch):
    digests = set()
    for threads in ("1", "2"):
        env = {**os.environ, "NUMBA_NUM_THREADS": threads}
        out = subprocess.run([sys.executable, "-c", _DIGEST], env=env, capture_output=True,
                             text=True, check=True)
        digests.add(out.stdout.strip())
    monkeypatch.setenv("KPAL_PURE_NUMPY", "1")
    from skimage import data

    digests.add(hashlib.sha256(kpal.encode(data.coffee(), 200)).hexdigest())
    assert len(digests) == 1


# ---------------------------------------------------------------- the loader
def test_loader_honours_the_switch_and_the_size_threshold(monkeypatch):
    name = "kpal.cluster._kmeans_fast"
    monkeypatch.setenv("KPAL_PURE_NUMPY", "1")
    assert _jit.load(name, 10**8) is None
    monkeypatch.delenv("KPAL_PURE_NUMPY")
    assert _jit.load(name, _jit.MIN_PIXELS - 1) is None
    assert _jit.load(name, _jit.MIN_PIXELS) is _kmeans_fast
    assert _jit.load(name, 5000, min_pixels=4096) is _kmeans_fast
    assert _jit.load(name, 4000, min_pixels=4096) is None
    monkeypatch.setenv("KPAL_PURE_NUMPY", "0")
    assert _jit.load(name, 1) is _kmeans_fast


def test_cold_threshold_applies_only_before_numba_is_loaded(monkeypatch):
    name = "kpal.cluster._kmeans_fast"
    monkeypatch.delenv("KPAL_PURE_NUMPY", raising=False)
    assert _jit.load(name, 2 * _jit.MIN_PIXELS, cold_min_pixels=1 << 24) is _kmeans_fast
    monkeypatch.delitem(sys.modules, "numba")  # a fresh process: numba not loaded
    assert _jit.load(name, 2 * _jit.MIN_PIXELS, cold_min_pixels=1 << 24) is None
    assert _jit.load(name, 1 << 24, cold_min_pixels=1 << 24) is _kmeans_fast


def test_loader_without_numba_takes_the_numpy_path(monkeypatch):
    monkeypatch.setenv("KPAL_PURE_NUMPY", "0")
    monkeypatch.delitem(sys.modules, "kpal.cluster._kmeans_fast")
    monkeypatch.setitem(sys.modules, "numba", None)  # an install without kpal[fast]
    assert _jit.load("kpal.cluster._kmeans_fast", 10**8) is None


def test_read_only_package_caches_under_the_user_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.delitem(sys.modules, "numba")  # numba not imported yet
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # read-only site-packages
    _jit._use_user_cache_if_needed("kpal.cluster._kmeans_fast")
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "kpal" / "numba")
    assert (tmp_path / "kpal" / "numba").is_dir()


class _Terminal:
    def __init__(self) -> None:
        self.text = ""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def test_cold_cache_is_announced_once_on_a_terminal(monkeypatch, tmp_path):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(_jit, "_announced", False)
    monkeypatch.setenv("KPAL_PURE_NUMPY", "0")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))  # empty: cold
    monkeypatch.delitem(sys.modules, "kpal.cluster._kmeans_fast")
    assert _jit.load("kpal.cluster._kmeans_fast", 1) is not None
    assert _jit.load("kpal.coding._entropy_fast", 1) is not None
    assert terminal.text == _jit.COMPILING + "\n"


def test_warm_cache_is_silent(monkeypatch, tmp_path):
    terminal = _Terminal()
    (tmp_path / "work" / "kpal").mkdir(parents=True)
    (tmp_path / "work" / "kpal" / "_kmeans_fast.hamerly_step-93.py311.nbi").write_bytes(b"")
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(_jit, "_announced", False)
    monkeypatch.setenv("KPAL_PURE_NUMPY", "0")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.delitem(sys.modules, "kpal.cluster._kmeans_fast")
    assert _jit.load("kpal.cluster._kmeans_fast", 1) is not None
    assert terminal.text == ""


_SMALL_ENCODE = """
import sys
import numpy as np
import kpal
rng = np.random.default_rng(0)
kpal.encode(rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8), 16)
print(sorted(m for m in ("numba", "matplotlib", "scipy", "sklearn", "kpal.cluster.gmm")
             if m in sys.modules))
"""


def test_small_images_do_not_import_numba_or_other_heavy_modules():
    env = {key: value for key, value in os.environ.items() if key != "KPAL_PURE_NUMPY"}
    out = subprocess.run([sys.executable, "-c", _SMALL_ENCODE], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"


_NO_SCIPY = """
import sys
import numpy as np
from kpal import _jit
_jit.skip_blas_probe()
from kpal.cluster import quantize
rng = np.random.default_rng(1)
q = quantize(rng.integers(0, 256, size=(30000, 3), dtype=np.uint8), 8)
print("scipy" in sys.modules, q.palette.tobytes().hex())
"""


def test_skipping_the_blas_probe_keeps_scipy_out_and_the_result(monkeypatch):
    env = {**os.environ, "KPAL_PURE_NUMPY": "0"}
    out = subprocess.run([sys.executable, "-c", _NO_SCIPY], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[0] == "False"
    monkeypatch.setenv("KPAL_PURE_NUMPY", "1")
    rng = np.random.default_rng(1)
    expected = quantize(rng.integers(0, 256, size=(30000, 3), dtype=np.uint8), 8)
    assert out[1] == expected.palette.tobytes().hex()


_EVERY_COMPILED_PATH = """
import hashlib
import sys
import numpy as np
import kpal
rng = np.random.default_rng(2)
image = rng.integers(0, 256, size=(120, 150, 3), dtype=np.uint8)
image[40:80] //= 16  # some repeated colours as well
digests = []
for dither in ("none", "fs", "ordered"):
    data = kpal.encode(image, 12, coding="entropy", dither=dither)
    digests.append(hashlib.sha256(data).hexdigest())
    digests.append(hashlib.sha256(np.asarray(kpal.decode(data)).tobytes()).hexdigest())
loaded = [m for m in ("kpal.cluster._kmeans_fast", "kpal.cluster._remap_fast",
                      "kpal.coding._entropy_fast", "scipy") if m in sys.modules]
print(" ".join(loaded), "|", " ".join(digests))
"""


def _run_every_path(pure: str) -> tuple[list[str], list[str]]:
    env = {**os.environ, "KPAL_PURE_NUMPY": pure}
    out = subprocess.run([sys.executable, "-c", _EVERY_COMPILED_PATH], env=env,
                         capture_output=True, text=True, check=True).stdout
    loaded, digests = out.split("|")
    return loaded.split(), digests.split()


def test_load_skips_the_blas_probe_and_every_compiled_path_keeps_its_bytes():
    loaded, compiled = _run_every_path("0")
    # Every compiled module ran, and numba started without importing scipy.
    assert loaded == ["kpal.cluster._kmeans_fast", "kpal.cluster._remap_fast",
                      "kpal.coding._entropy_fast"]
    numpy_loaded, expected = _run_every_path("1")
    assert numpy_loaded == []
    assert compiled == expected


def test_fresh_process_threshold_is_lower_at_large_k(monkeypatch):
    calls = []

    def record(module, n_pixels, min_pixels=_jit.MIN_PIXELS, cold_min_pixels=None):
        calls.append((module, n_pixels, cold_min_pixels))
        return None  # the numpy path

    monkeypatch.setattr(_jit, "load", record)
    pixels = np.random.default_rng(3).integers(0, 256, size=(5000, 3), dtype=np.uint8)
    palettes = [quantize(pixels, k).palette for k in (16, 32, 33, 256)]
    assert [c[2] for c in calls] == [12 << 20, 12 << 20, 5 << 20, 5 << 20]
    assert calls[0][:2] == ("kpal.cluster._kmeans_fast", 5000)
    assert [len(p) for p in palettes] == [16, 32, 33, 256]


# ---------------------------------------------------------------- k-means++ and the Lloyd loop
@pytest.mark.parametrize("seed", range(12))
def test_kmeans_plusplus_kernel_chooses_the_same_centres(seed):
    from kpal.cluster.init import kmeans_plusplus

    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 2500))
    k = int(rng.integers(2, min(n, 256) + 1))
    # uint8 colours (the exact level), float cell means (coarse levels), and
    # few distinct values: many ties between candidates.
    points = [rng.integers(0, 256, size=(n, 3)).astype(np.uint8),
              rng.random((n, 3)) * 255,
              rng.integers(0, 3, size=(n, 3)).astype(np.float64)][seed % 3]
    weights = rng.integers(0, 40, size=n).astype(np.float64)
    weights[rng.choice(n, size=k, replace=False)] += 1  # k points with positive weight
    expected = kmeans_plusplus(points, weights, k, np.random.default_rng(seed))
    got = kmeans_plusplus(points, weights, k, np.random.default_rng(seed), kernels=_kmeans_fast)
    assert got.tobytes() == expected.tobytes()


def _lloyd_both_ways(points, weights, centres, max_iter=300, tol=1e-4):
    from kpal.cluster.kmeans import lloyd

    numpy_state = lloyd(points.astype(np.float64), weights, centres, max_iter, tol)
    compiled_state = lloyd(points, weights, centres, max_iter, tol, kernels=_kmeans_fast)
    return numpy_state, compiled_state


def test_compiled_lloyd_loop_reseeds_empty_clusters_as_numpy_does(monkeypatch):
    from kpal.cluster import kmeans

    returns = []
    loop = _kmeans_fast.lloyd_loop

    def recording(*args):
        result = loop(*args)
        returns.append(result[1])
        return result

    monkeypatch.setattr(_kmeans_fast, "lloyd_loop", recording)
    reseeds = []
    reseed = kmeans._reseed_empty
    monkeypatch.setattr(kmeans, "_reseed_empty",
                        lambda *a: reseeds.append(a[3].size) or reseed(*a))
    for trial in range(300):
        rng = np.random.default_rng(trial)
        n = int(rng.integers(5, 60))
        k = int(rng.integers(2, min(n, 12) + 1))
        # Few distinct values and centres scattered around data points: clusters
        # empty out, before the loop (a centre far from all points) and inside it.
        points = rng.integers(0, 12, size=(n, 3)).astype(np.uint8)
        weights = rng.integers(1, 30, size=n).astype(np.float64)
        centres = points[rng.choice(n, size=k, replace=False)] + rng.normal(0, 2, (k, 3))
        if trial % 10 == 0:
            centres[0] = 200.0
        numpy_state, compiled_state = _lloyd_both_ways(points, weights, centres)
        assert compiled_state.centres.tobytes() == numpy_state.centres.tobytes(), trial
        assert compiled_state.n_iter == numpy_state.n_iter
        np.testing.assert_array_equal(compiled_state.labels, numpy_state.labels)
    assert reseeds  # both kinds of empty cluster were met: before the loop and inside it
    assert False in returns


@pytest.mark.parametrize("k", [2, 7, 64, 256])
def test_compiled_lloyd_loop_matches_numpy_iteration_for_iteration(k):
    pixels = _photo("coffee").reshape(-1, 3)
    from kpal.cluster.histogram import color_histogram

    hist = color_histogram(pixels[::7])
    rng = np.random.default_rng(k)
    centres = hist.colors[rng.choice(len(hist), size=k, replace=False)].astype(np.float64)
    weights = hist.counts.astype(np.float64)
    for max_iter in (1, 3, 300):
        numpy_state, compiled_state = _lloyd_both_ways(hist.colors, weights, centres, max_iter)
        assert compiled_state.centres.tobytes() == numpy_state.centres.tobytes()
        assert compiled_state.n_iter == numpy_state.n_iter
        np.testing.assert_array_equal(compiled_state.labels, numpy_state.labels)


def test_small_histograms_are_sorted_and_large_ones_counted_alike():
    from kpal.cluster.histogram import color_histogram

    pixels = _mosaic_1mp().reshape(-1, 3)
    assert pixels.shape[0] <= _kmeans_fast.SORT_PIXELS  # the sorting branch
    big = np.concatenate([pixels] * 5)  # the counting branch, with repeated colours
    assert big.shape[0] > _kmeans_fast.SORT_PIXELS
    for image in (pixels[:1], pixels, big):
        expected = color_histogram(image)
        got = _kmeans_fast.color_histogram(image)
        assert got.colors.tobytes() == expected.colors.tobytes()
        assert got.counts.tobytes() == expected.counts.tobytes()


_LOAD_COMPILED = """
import sys
import numpy as np
from kpal import _jit
from kpal.cluster import COMPILED_WARM_PIXELS, compiled_cold_pixels, load_compiled
print(load_compiled(), "numba" in sys.modules,
      _jit.load("kpal.cluster._kmeans_fast", 300, min_pixels=COMPILED_WARM_PIXELS,
                cold_min_pixels=compiled_cold_pixels(64)) is not None)
"""


@pytest.mark.parametrize(("pure", "expected"), [(None, "True True True"),
                                                 ("1", "False False False")])
def test_load_compiled_makes_every_image_size_take_the_kernels(pure, expected):
    env = {key: value for key, value in os.environ.items() if key != "KPAL_PURE_NUMPY"}
    if pure is not None:
        env["KPAL_PURE_NUMPY"] = pure
    out = subprocess.run([sys.executable, "-c", _LOAD_COMPILED], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == expected


def test_counted_histogram_carries_colours_of_more_than_a_uint16_counter():
    from kpal.cluster.histogram import color_histogram

    rng = np.random.default_rng(6)
    pixels = rng.integers(0, 256, size=(_kmeans_fast.SORT_PIXELS + 777, 3), dtype=np.uint8)
    flush = _kmeans_fast._FLUSH
    pixels[: 3 * flush] = (10, 20, 30)  # a multiple of the counter's range: it ends at 0
    pixels[3 * flush : 4 * flush + 5] = (255, 0, 1)  # one flush and a remainder
    pixels[-flush:] = (0, 0, 0)  # the lowest colour, flushed once
    for image in (pixels, np.ascontiguousarray(pixels[::-1])):
        expected = color_histogram(image)
        got = _kmeans_fast.color_histogram(image)
        assert got.colors.tobytes() == expected.colors.tobytes()
        assert got.counts.tobytes() == expected.counts.tobytes()
    assert expected.counts[0] >= flush and expected.counts.max() >= 3 * flush
