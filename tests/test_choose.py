"""Choosing k from a quality target or a size limit (kpal.choose)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import kpal
from kpal import choose, container, metrics
from kpal.choose import QualityError, SizeError, choose_k
from kpal.cluster import quantize
from kpal.errors import OptionError


def _photo(height: int = 48, width: int = 64, seed: int = 1) -> np.ndarray:
    """A smooth gradient plus noise: a few thousand colours, like a small photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.int64)
    return np.clip(base + rng.integers(-12, 13, base.shape), 0, 255).astype(np.uint8)


def _big_photo() -> np.ndarray:
    """More than choose._COLD_COLORS distinct colours: the reduced-histogram search."""
    from skimage import data

    image = np.ascontiguousarray(data.astronaut()[100:300, 150:350])
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > choose._COLD_COLORS
    return image


def _brute_force_psnr(image: np.ndarray, ks) -> dict[int, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return {k: metrics.psnr_from_mse(quantize(image.reshape(-1, 3), k).inertia / 3)
                for k in ks}


def test_quality_picks_the_smallest_k_as_brute_force_does():
    image = _photo(32, 48)
    ks = range(2, 29)
    psnr = _brute_force_psnr(image, ks)
    # Targets that split the brute-force curve cleanly: every k below reaches
    # less, every k from there on reaches more.
    checked = 0
    for k0 in (5, 9, 14, 22):
        worse = max(psnr[k] for k in ks if k < k0)
        better = min(psnr[k] for k in ks if k >= k0)
        if worse >= better:
            continue
        target = (worse + better) / 2
        choice = choose_k(image, quality=(target - 5, target))
        assert choice.k == k0, (k0, target)
        assert choice.psnr == pytest.approx(psnr[k0], abs=1e-9)
        below, _ = choice.neighbours()
        assert below.k == k0 - 1 and below.psnr < target
        checked += 1
    assert checked >= 3


def test_psnr_is_exact_and_the_palette_is_what_encode_would_use():
    image = _photo()
    choice = choose_k(image, quality=(25, 30))
    assert choice.labels.shape == image.shape[:2]
    assert choice.psnr == pytest.approx(metrics.psnr(image, choice.palette[choice.labels]),
                                        abs=1e-9)
    assert choice.mse == pytest.approx(metrics.mse(image, choice.palette[choice.labels]))
    # Small images: each candidate is exactly quantize at that k.
    expected = quantize(image.reshape(-1, 3), choice.k)
    np.testing.assert_array_equal(choice.palette, expected.palette)
    np.testing.assert_array_equal(choice.labels.reshape(-1), expected.labels)
    assert choice.size == len(kpal.encode(image, choice.k))


def test_reduced_search_meets_the_target_with_exact_psnr():
    image = _big_photo()
    choice = choose_k(image, quality=(30, 33))
    assert choice.psnr >= 33
    assert choice.psnr == pytest.approx(metrics.psnr(image, choice.palette[choice.labels]),
                                        abs=1e-9)
    below, _ = choice.neighbours()
    assert below.k == choice.k - 1 and below.psnr < 33
    for point in choice.curve:
        assert (point.psnr >= 33) == (point.k >= choice.k)


def test_quality_error_when_even_256_is_below_min():
    image = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    with pytest.raises(QualityError, match=r"quality 45-50 dB cannot be reached: k=256 "
                                           r"gives \d+\.\d\d dB, below the minimum 45 dB"):
        choose_k(image, quality=(45, 50))


def test_between_min_and_max_the_largest_k_is_accepted():
    image = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    psnr_256 = _brute_force_psnr(image, [256])[256]
    choice = choose_k(image, quality=(psnr_256 - 1, psnr_256 + 5))
    assert choice.k == 256
    assert choice.psnr == pytest.approx(psnr_256, abs=1e-9)


def test_few_colours_are_kept_losslessly():
    image = np.zeros((8, 8, 3), np.uint8)
    image[:4] = (200, 10, 10)
    image[:, :2] = (5, 5, 250)
    choice = choose_k(image, quality=(60, 80))
    assert math.isinf(choice.psnr)
    assert np.array_equal(choice.palette[choice.labels], image)
    assert choice.k == 3 and choice.palette.shape == (3, 3)


@pytest.mark.parametrize("coding", ["fixed", "radix"])
def test_max_size_is_the_largest_k_that_fits(coding):
    image = _photo()
    n = image.shape[0] * image.shape[1]
    for max_size in (200, 1000, 1500, 2200, 3000):
        choice = choose_k(image, max_size=max_size, coding=coding)
        assert choice.size <= max_size
        data = kpal.encode(image, choice.k, coding=coding)
        assert len(data) == choice.size  # the same file encode writes
        if choice.k < 256:
            bigger = choose.file_size(choice.k + 1, image.shape[1], image.shape[0], coding)
            assert bigger > max_size
            assert choice.curve[-1] == (choice.k + 1, None, bigger)
    assert choose_k(image, max_size=10**6).k == 256
    assert choose.file_size(1, n, 1) == container.OVERHEAD + 3


def test_size_error_when_even_one_colour_is_too_big():
    image = _photo()
    with pytest.raises(SizeError, match=r"max_size=32 bytes cannot be met: even k=1 makes a "
                                        r"33-byte file with coding 'fixed'"):
        choose_k(image, max_size=32)
    assert issubclass(SizeError, QualityError)


def test_max_size_with_entropy_coding_measures_real_files():
    image = _photo()
    sizes = {k: len(kpal.encode(image, k, coding="entropy")) for k in (4, 8, 16)}
    max_size = (sizes[8] + sizes[16]) // 2
    choice = choose_k(image, max_size=max_size, coding="entropy")
    assert choice.size <= max_size
    header, palette, labels = kpal.codec.decode_indices(
        container.write(
            container.Header.for_image(coding=2, k=len(choice.palette), width=64, height=48,
                                       payload_length=choice.size - 30 - 3 * len(choice.palette)),
            choice.palette,
            kpal.coding.get("entropy").encode(choice.labels, len(choice.palette)),
        ))
    np.testing.assert_array_equal(labels, choice.labels)
    assert choice.payload == kpal.coding.get("entropy").encode(choice.labels,
                                                               len(choice.palette))
    assert choose_k(image, max_size=max_size).payload is None  # fixed: nothing coded
    above = [p for p in choice.curve if p.k == choice.k + 1]
    assert above and above[0].size > max_size


def test_quality_and_max_size_together():
    image = _photo()
    capped = choose_k(image, quality=(20, 60), max_size=1500)
    assert capped.size <= 1500 and capped.k == choose_k(image, max_size=1500).k
    with pytest.raises(QualityError, match=r"k=\d+ \(the largest k max_size allows\)"):
        choose_k(image, quality=(59, 60), max_size=1500)


def test_n3_pixels_give_flat_labels():
    image = _photo()
    choice = choose_k(image.reshape(-1, 3), quality=(25, 28))
    assert choice.labels.shape == (image.shape[0] * image.shape[1],)
    assert choice.k == choose_k(image, quality=(25, 28)).k


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, r"choose_k needs quality=\(min_db, max_db\) or max_size=BYTES"),
    ({"quality": (40, 35)}, r"quality=\(40, 35\): MIN 40 is above MAX 35"),
    ({"quality": (0, 35)},
     r"quality=\(0, 35\) must be MAX or MIN-MAX, PSNR in dB above 0 and at most 100"),
    ({"quality": "abc"}, r"quality='abc' must be MAX or MIN-MAX, PSNR in dB"),
    ({"max_size": 0}, r"max_size=0 must be between 1 and 1,099,511,627,776 bytes"),
    ({"max_size": 10.5}, r"max_size=10.5 must be a number of bytes"),
    ({"max_size": "2MiB", "quality": "40-35"}, r"quality='40-35': MIN 40 is above MAX 35"),
    ({"quality": 30, "coding": "zip"}, r"coding"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(OptionError, match=message):
        choose_k(_photo(), **kwargs)


def test_targets_take_the_forms_encode_takes():
    # The same checkers as kpal.options: text with units, "MIN-MAX" and a bare MAX.
    image = _photo()
    assert choose_k(image, max_size="1.5k").k == choose_k(image, max_size=1500).k
    assert choose_k(image, quality="25-28").k == choose_k(image, quality=(25, 28)).k
    assert choose_k(image, quality=" 28 ").k == choose_k(image, quality=(28, 28)).k


def test_max_size_alone_on_a_photo_is_one_fit_as_encode_does():
    image = _big_photo()
    n = image.shape[0] * image.shape[1]
    choice = choose_k(image, max_size=n * 5 // 8 + 200)
    assert choice.k == 32  # 5 bits per index fit, 6 do not
    np.testing.assert_array_equal(choice.palette, quantize(image.reshape(-1, 3), 32).palette)
    assert [p.k for p in choice.curve] == [32, 33]
    assert choice.curve[1].psnr is None and choice.curve[1].size > n * 5 // 8 + 200


def test_measure_curve_is_exact_at_every_k():
    image = _big_photo()
    points = choose.measure_curve(image, [64, 8, 32, 8, 256])
    assert [p.k for p in points] == [8, 32, 64, 256]
    psnrs = [p.psnr for p in points]
    assert psnrs == sorted(psnrs)
    for point in points:
        assert point.size == choose.file_size(point.k, 200, 200)
    with pytest.raises(OptionError, match="k=0"):
        choose.measure_curve(image, [0])


def test_a_target_that_only_the_full_fit_at_256_reaches_is_met_not_refused():
    """The search fits large images from warm starts on cells, up to 0.2 dB below the
    fit ``kpal encode -k 256`` makes: a MIN between the two used to exit 99."""
    image = _big_photo()
    full = _brute_force_psnr(image, [256])[256]
    choice = choose_k(image, quality=(full - 0.005, full + 5))
    assert choice.k == 256 and choice.psnr >= full - 0.005
    with pytest.raises(QualityError, match=rf"gives {full:.2f} dB, below the minimum"):
        choose_k(image, quality=(full + 0.01, full + 5))


def test_a_quality_on_jpegs_scale_is_named_as_such():
    image = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    with pytest.raises(QualityError, match=r"^quality 85 dB cannot be reached: .* \(quality is a "
                                           r"PSNR in dB, not the 0-100 scale of JPEG or WebP\)$"):
        choose_k(image, quality=(85, 85))
