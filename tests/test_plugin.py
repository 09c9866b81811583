"""The Pillow plugin: lazy open, load, save to paths and file objects, registration."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import kpal
from kpal import plugin
from kpal.errors import ChecksumError, FormatError, OptionError

from .conftest import GOLDEN, p_image


@pytest.fixture
def kpal_file(tmp_path, photo):
    path = tmp_path / "photo.kpal"
    photo.save(path, colors=16, seed=0)
    return path


def test_registration():
    assert Image.registered_extensions()[".kpal"] == "KPAL"
    assert Image.MIME["KPAL"] == "image/x-kpal"
    kpal.register()  # idempotent
    assert "KPAL" in Image.SAVE and "KPAL" in Image.OPEN


def test_open_is_lazy_and_reports_info(kpal_file, photo):
    with Image.open(kpal_file) as im:
        assert im.format == "KPAL" and im.mode == "P" and im.size == photo.size
        assert im.info == {"k": 16, "bits_per_index": 4, "coding": "fixed", "version": 1}
        assert im.tile and im.tile[0][0] == "kpal"  # nothing decoded yet
        im.load()
        assert not im.tile
        assert len(im.getpalette()) == 16 * 3


def test_save_then_open_matches_api(kpal_file, photo):
    enc = kpal.encode(photo, 16, seed=0)
    assert kpal_file.read_bytes() == enc
    with Image.open(kpal_file) as im:
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")),
                                      np.asarray(kpal.decode(enc).convert("RGB")))


def test_save_to_file_object_and_open_from_one(photo):
    buf = io.BytesIO()
    photo.save(buf, format="KPAL", colors=8, seed=2, init="random")
    assert buf.getvalue() == kpal.encode(photo, 8, seed=2, init="random")
    buf.seek(0)
    with Image.open(buf) as im:
        assert im.info["k"] == 8
        im.load()


@pytest.mark.parametrize("k", [2, 3, 5, 16, 17, 100, 129, 256])
def test_p_image_saves_pixel_identical(tmp_path, k):
    im = p_image(31, 9, k, seed=k)
    path = tmp_path / "p.kpal"
    im.save(path)
    with Image.open(path) as out:
        np.testing.assert_array_equal(np.asarray(out), np.asarray(im))
        assert out.getpalette()[: 3 * k] == im.getpalette()[: 3 * k]


def test_save_options_are_the_api_options_with_colors_for_k(photo):
    buf = io.BytesIO()
    photo.save(buf, format="KPAL", colors=4, coding="radix", seed=2)
    assert buf.getvalue() == kpal.encode(photo, k=4, coding="radix", seed=2)
    buf = io.BytesIO()
    photo.save(buf, format="KPAL", k=4)
    assert buf.getvalue() == kpal.encode(photo, k=4)


def test_keywords_every_writer_gets_are_ignored(photo):
    """matplotlib's imsave passes dpi to every format; other formats' compression settings
    change nothing in a .kpal file."""
    buf = io.BytesIO()
    photo.save(buf, format="KPAL", k=4, dpi=(72, 72), optimize=True, compress_level=9,
               progressive=True)
    assert buf.getvalue() == kpal.encode(photo, k=4)
    # matplotlib's imsave itself: tests/test_plot_inputs.py (matplotlib is an extra)


@pytest.mark.parametrize(("keywords", "match"), [
    ({"colours": 8}, r"unknown option 'colours' \(kpal calls it k\); accepted: k, method"),
    ({"packing": "radix"}, r"unknown option 'packing' \(kpal calls it coding\)"),
    ({"entropy": True}, r"unknown option 'entropy' \(kpal calls it coding='entropy'\)"),
    ({"lossless": True}, r"unknown option 'lossless'; accepted: .*colors"),
    ({"coding": "nope"}, r"coding='nope' must be one of 'fixed', 'radix', 'entropy', 'context'"),
    ({"colors": 4, "k": 8}, r"colors=4 and k=8 both set k: give one"),
    ({"colors": 300}, r"colors=300 must be an integer between 1 and 256"),
])
def test_bad_save_options_are_option_errors_and_leave_no_file(photo, tmp_path, keywords,
                                                              match):
    path = tmp_path / "x.kpal"
    with pytest.raises(OptionError, match=match):
        photo.save(path, **keywords)
    assert not path.exists()


def test_unsupported_mode_names_the_mode(tmp_path):
    path = tmp_path / "x.kpal"
    with pytest.raises(ValueError, match="mode F"):
        Image.new("F", (3, 3)).save(path)
    assert not path.exists()  # nothing half-made left behind


def test_not_kpal_is_not_identified(tmp_path):
    path = tmp_path / "x.kpal"
    Image.new("RGB", (2, 2)).save(path, format="PNG")  # a PNG with the wrong extension
    with Image.open(path) as im:
        assert im.format == "PNG"
    with pytest.raises(SyntaxError, match="not a .kpal file"):
        plugin.KpalImageFile(io.BytesIO(b"not kpal at all, just text"))


def test_corrupt_payload_fails_on_load_not_open(kpal_file):
    data = bytearray(kpal_file.read_bytes())
    data[200] ^= 0x10
    im = Image.open(io.BytesIO(bytes(data)))
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        im.load()


def test_truncated_file_fails_at_open(kpal_file):
    data = kpal_file.read_bytes()
    with pytest.raises(FormatError, match="file is truncated"):
        Image.open(io.BytesIO(data[:-10]))


def test_bad_header_field_is_reported_not_swallowed(kpal_file):
    data = bytearray(kpal_file.read_bytes())
    data[9] = 7  # version
    with pytest.raises(FormatError, match="unsupported version 7"):
        Image.open(io.BytesIO(bytes(data)))


# ------------------------------------------------------------------ version 2 (spec §2.1)
def test_open_rgba_with_icc_profile_sets_palette_mode_and_info():
    path = GOLDEN / "rgba_icc_extra_radix_k5_6x4.kpal"
    with Image.open(path) as im:
        assert im.tile and im.tile[0][0] == "kpal"  # the metadata is read, pixels are not
        assert im.info == {"k": 5, "bits_per_index": 3, "coding": "radix", "version": 2,
                           "icc_profile": (GOLDEN / "srgb.icc").read_bytes(),
                           "transparency": bytes([0, 255, 200, 255, 255])}  # as PNG's tRNS
        im.load()
        assert im.palette.mode == "RGBA"
        alpha = np.asarray(im.convert("RGBA"))[..., 3]
        np.testing.assert_array_equal(alpha, np.array([0, 255, 200, 255, 255])[np.asarray(im)])


def test_gif_style_palette_gets_the_transparency_index():
    with Image.open(GOLDEN / "rgba_key_k3_4x2.kpal") as im:
        assert im.info["transparency"] == 1
        rgba = np.asarray(im.convert("RGBA"))
        np.testing.assert_array_equal(rgba[..., 3] == 0, np.asarray(im) == 1)
        # as for a PNG with a one-entry tRNS, convert("RGB") is silent and opaque
        assert np.asarray(im.convert("RGB")).shape == (2, 4, 3)


def test_rgba_file_from_a_file_object_matches_the_path():
    path = GOLDEN / "rgba_entropy_k17_9x7.kpal"
    with open(path, "rb") as f, Image.open(f) as from_file, Image.open(path) as from_path:
        assert from_file.tobytes() == from_path.tobytes()
        assert from_file.getpalette("RGBA") == from_path.getpalette("RGBA")
        assert from_file.info["transparency"] == bytes(from_file.getpalette("RGBA")[3::4])
