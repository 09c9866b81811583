"""choose_k and choose_k_rgba check their arguments and report failures alike."""

from __future__ import annotations

import re

import numpy as np
import pytest

from kpal import container
from kpal.choose import QualityError, SizeError, choose_k, choose_k_rgba, file_size
from kpal.coding import fixed
from kpal.errors import KpalError, OptionError


def _photo(channels: int, size: int = 12) -> np.ndarray:
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (size, size + 3, channels), dtype=np.uint8)
    if channels == 4:
        image[..., 3] = np.where(np.arange(size + 3) % 3 == 0, 128, 255)[None, :]
    return image


CHOOSERS = [(choose_k, "choose_k", 3), (choose_k_rgba, "choose_k_rgba", 4)]


@pytest.mark.parametrize(("choose", "name", "channels"), CHOOSERS)
def test_no_target_names_the_function(choose, name, channels):
    expected = f"{name} needs quality=(min_db, max_db) or max_size=BYTES"
    with pytest.raises(OptionError, match=f"^{re.escape(expected)}$"):
        choose(_photo(channels))


@pytest.mark.parametrize(("choose", "name", "channels"), CHOOSERS)
def test_pixels_of_the_wrong_width_name_the_expected_shape(choose, name, channels):
    other = 7 - channels  # 3 <-> 4
    expected = (f"pixels must be a uint8 array of shape (h, w, {channels}) or "
                f"(n, {channels}), got (5, 6, {other})")
    with pytest.raises(KpalError, match=f"^{re.escape(expected)}$"):
        choose(np.zeros((5, 6, other), np.uint8), quality=30)


@pytest.mark.parametrize(("choose", "name", "channels"), CHOOSERS)
def test_bad_options_are_checked_before_the_pixels(choose, name, channels):
    with pytest.raises(OptionError, match="init"):
        choose(np.zeros((5, 6, 7 - channels), np.uint8), quality=30, init="nearest")


def _one_colour_budget(channels: int, height: int, width: int) -> int:
    """The largest file a one-colour palette can make: only k = 1 fits in it."""
    if channels == 3:
        return file_size(1, width, height)
    return container.OVERHEAD_V2 + 4 + fixed.payload_size(1, width, height)


@pytest.mark.parametrize(("choose", "name", "channels"), CHOOSERS)
def test_quality_capped_at_one_colour_reports_the_cap_and_its_psnr(choose, name, channels):
    image = _photo(channels)
    budget = _one_colour_budget(channels, *image.shape[:2])
    one = choose(image, max_size=budget)
    assert one.k == 1
    assert one.size <= budget
    expected = (f"quality 60-70 dB cannot be reached: k=1 (the largest k max_size allows) "
                f"gives {one.psnr:.2f} dB, below the minimum 60 dB")
    with pytest.raises(QualityError, match=f"^{re.escape(expected)}$"):
        choose(image, quality=(60, 70), max_size=budget)


@pytest.mark.parametrize(("choose", "name", "channels"), CHOOSERS)
def test_size_error_gives_the_one_colour_size_and_the_coding(choose, name, channels):
    image = _photo(channels)
    smallest = choose(image, max_size=_one_colour_budget(channels, *image.shape[:2])).size
    expected = (f"max_size={smallest - 1} bytes cannot be met: even k=1 makes a "
                f"{smallest}-byte file with coding 'fixed'")
    with pytest.raises(SizeError, match=f"^{re.escape(expected)}$"):
        choose(image, max_size=smallest - 1)


@pytest.mark.parametrize(("choose", "name", "channels"), CHOOSERS)
def test_pixels_that_are_no_array_are_named(choose, name, channels):
    from PIL import Image

    with pytest.raises(KpalError, match=re.escape("got a PIL image (pass np.asarray(image))")):
        choose(Image.new("RGBA" if channels == 4 else "RGB", (4, 4)), quality=30)
    with pytest.raises(KpalError, match=re.escape("got float64 (5, 6, ")):
        choose(np.zeros((5, 6, channels)), quality=30)
