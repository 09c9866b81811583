"""The encode command's reading of RGB images: the pixels go to the codec as an array."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFile

import kpal
from kpal.cli import cli
from kpal.cliio import _rgb_array


def _random_rgb(width: int, height: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("size", [(1, 1), (3, 1), (1, 5), (17, 13), (640, 200)])
def test_rgb_array_is_the_pixels(size):
    pixels = _random_rgb(*size)
    out = _rgb_array(Image.fromarray(pixels, "RGB"))
    assert out.shape == pixels.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, pixels)


def test_rgb_array_with_rows_wider_than_a_chunk():
    # Rows of more than ImageFile.MAXBLOCK / 4 pixels: the encoder's chunk is one row.
    width = ImageFile.MAXBLOCK // 4 + 37
    pixels = _random_rgb(width, 3, seed=1)
    np.testing.assert_array_equal(_rgb_array(Image.fromarray(pixels, "RGB")), pixels)


def test_rgb_array_of_a_view_of_another_image():
    # A cropped image is an image of its own: its pixels, not its parent's.
    pixels = _random_rgb(40, 30, seed=2)
    cropped = Image.fromarray(pixels, "RGB").crop((5, 7, 25, 29))
    np.testing.assert_array_equal(_rgb_array(cropped), pixels[7:29, 5:25])


@pytest.mark.parametrize("k", ["2", "16", "256"])
def test_cli_encode_of_an_rgb_png_is_the_library_encode(runner, tmp_path, photo, k):
    path = tmp_path / "photo.png"
    photo.save(path)
    out = tmp_path / "photo.kpal"
    result = runner.invoke(cli, ["encode", str(path), "-o", str(out), "-k", k, "-q"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == kpal.encode(photo, int(k))


def test_cli_encode_keeps_the_colour_key_rule(runner, tmp_path):
    # An RGB PNG whose tRNS colour key matches a pixel has transparent pixels:
    # it still takes the codec's mode rules (an RGBA palette), as the library does.
    pixels = _random_rgb(16, 8, seed=3)
    pixels[0, 0] = (1, 2, 3)
    path = tmp_path / "keyed.png"
    Image.fromarray(pixels, "RGB").save(path, transparency=(1, 2, 3))
    out = tmp_path / "keyed.kpal"
    result = runner.invoke(cli, ["encode", str(path), "-o", str(out), "-k", "8", "-q"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == kpal.encode(path, 8)
    rgba = np.asarray(kpal.decode(out).convert("RGBA"))
    assert rgba[0, 0, 3] == 0  # the keyed pixel is transparent
    assert (rgba[..., 3] == 255).sum() == rgba.shape[0] * rgba.shape[1] - 1


def test_cli_encode_of_a_turned_rgb_photo_is_stored_upright(runner, tmp_path, photo):
    exif = Image.Exif()
    exif[0x0112] = 8  # rotated 90° anticlockwise
    path = tmp_path / "phone.png"
    photo.save(path, exif=exif)
    out = tmp_path / "phone.kpal"
    result = runner.invoke(cli, ["encode", str(path), "-o", str(out), "-k", "16", "-q"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == kpal.encode(photo.transpose(Image.Transpose.ROTATE_90), 16)
