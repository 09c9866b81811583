"""Decoding an image with an ICC profile to a format that cannot store one: the colours are
converted to sRGB (a palette image's entries, so its indices stay), with a note, instead
of the profile being dropped without a word."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image, ImageCms

import kpal
from kpal.cli import cli


def swapped_primaries_profile() -> bytes:
    """sRGB with its red and green primaries swapped: far from sRGB, easy to check."""
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    (count,) = struct.unpack_from(">I", data, 128)
    entries = {bytes(data[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red, green = entries[b"rXYZ"], entries[b"gXYZ"]
    data[red + 4 : red + 12], data[green + 4 : green + 12] = (data[green + 4 : green + 12],
                                                              data[red + 4 : red + 12])
    return bytes(data)


@pytest.fixture
def profiled(tmp_path):
    profile = swapped_primaries_profile()
    pixels = np.array([[[200, 30, 30], [30, 200, 30], [30, 30, 200]]], dtype=np.uint8)
    image = Image.fromarray(np.repeat(pixels, 2, axis=0))
    image.info["icc_profile"] = profile
    path = tmp_path / "p3ish.kpal"
    with pytest.warns(UserWarning, match="lossless"):
        kpal.save(image, path, k=4)
    return path, profile


def _srgb(rgb: np.ndarray, profile: bytes) -> np.ndarray:
    image = Image.fromarray(rgb)
    out = ImageCms.profileToProfile(image, ImageCms.ImageCmsProfile(io.BytesIO(profile)),
                                    ImageCms.createProfile("sRGB"), outputMode="RGB")
    return np.asarray(out)


@pytest.mark.parametrize("ext", ["bmp", "gif", "tga", "pcx"])
def test_formats_without_profiles_get_srgb_colours(runner, profiled, tmp_path, ext):
    path, profile = profiled
    stored = np.asarray(kpal.decode(path).convert("RGB"))
    out = tmp_path / f"out.{ext}"
    result = runner.invoke(cli, ["decode", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"{ext.upper()} cannot hold the ICC profile: the palette was converted to sRGB" \
        in result.output
    with Image.open(out) as back:
        assert back.mode == "P"  # the indices stayed
        got = np.asarray(back.convert("RGB"))
    assert np.array_equal(got, _srgb(stored, profile))
    assert got[0, 0, 1] > got[0, 0, 0]  # the stored red is green in this profile


def test_formats_with_profiles_keep_it_and_the_pixels(runner, profiled, tmp_path):
    path, profile = profiled
    out = tmp_path / "out.png"
    result = runner.invoke(cli, ["decode", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "ICC" not in result.output
    with Image.open(out) as back:
        assert back.info["icc_profile"] == profile
        assert np.array_equal(np.asarray(back.convert("RGB")),
                              np.asarray(kpal.decode(path).convert("RGB")))


def test_grey_outputs_take_the_levels_of_the_colours_as_they_look(runner, profiled, tmp_path):
    """.pgm: the stored colours converted from their profile to sRGB, then to grey."""
    path, profile = profiled
    stored = np.asarray(kpal.decode(path).convert("RGB"))
    out = tmp_path / "out.pgm"
    result = runner.invoke(cli, ["decode", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "cannot hold the ICC profile" in result.output and "to grey" in result.output
    with Image.open(out) as back:
        got = np.asarray(back)
    want = np.asarray(Image.fromarray(_srgb(stored, profile)).convert("L"))
    assert np.array_equal(got, want)
    assert not np.array_equal(got, np.asarray(Image.fromarray(stored).convert("L")))


def test_sample_keeps_the_profile_or_converts_to_srgb(runner, tmp_path):
    """The drawn colours are in the photo's colour space: tagged with its profile, or
    converted to sRGB for a format that has no profiles."""
    profile = swapped_primaries_profile()
    rng = np.random.default_rng(0)
    photo = tmp_path / "wide.png"
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(
        photo, icc_profile=profile)
    for ext in ("png", "kpal"):
        out = tmp_path / f"s.{ext}"
        result = runner.invoke(cli, ["sample", str(photo), "-k", "4", "-o", str(out)])
        assert result.exit_code == 0, result.output
        with Image.open(out) as drawn:
            assert drawn.info.get("icc_profile") == profile
    png = np.asarray(Image.open(tmp_path / "s.png").convert("RGB"))
    out = tmp_path / "s.bmp"
    result = runner.invoke(cli, ["sample", str(photo), "-k", "4", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "BMP cannot hold the ICC profile: the colours were converted to sRGB" in result.output
    with Image.open(out) as drawn:
        assert np.array_equal(np.asarray(drawn.convert("RGB")), _srgb(png, profile))
