"""kpal.encode / kpal.decode: the two flows, mode rules and the size formula."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

import kpal
from kpal import codec, metrics
from kpal.errors import FormatError, KpalError

from .conftest import p_image

K_VALUES = [2, 3, 4, 5, 8, 9, 16, 17, 31, 64, 100, 128, 129, 200, 255, 256]
SIZES = [(1, 1), (7, 3), (16, 16), (33, 17)]


def _expected_size(k: int, n: int) -> int:
    b = (k - 1).bit_length()
    return -(-(k * 24 + n * b) // 8) + 30


@pytest.mark.parametrize("k", range(2, 257))
def test_every_k_round_trips_a_p_image_exactly(k):
    im = p_image(23, 13, k, seed=k)  # 299 pixels >= 256: every index used
    data = kpal.encode(im)
    assert len(data) == _expected_size(k, 23 * 13)
    out = kpal.decode(data)
    assert out.mode == "P" and out.size == (23, 13)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(im))
    np.testing.assert_array_equal(np.asarray(out.convert("RGB")), np.asarray(im.convert("RGB")))


@pytest.mark.parametrize("k", K_VALUES)
@pytest.mark.parametrize(("width", "height"), SIZES)
def test_rgb_round_trip_equals_palette_of_labels(k, width, height, photo):
    rgb = np.asarray(photo.resize((width, height)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # fewer colours than k on tiny images
        enc = codec.encode_image(rgb, k, seed=1)
    k_stored = enc.header.k
    assert k_stored <= k
    assert len(enc.data) == _expected_size(k_stored, width * height)
    decoded = np.asarray(kpal.decode(enc.data).convert("RGB"))
    np.testing.assert_array_equal(decoded, enc.palette[enc.labels])


def test_fewer_colours_than_k_is_lossless_with_warning():
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[:, 2:] = (200, 10, 30)
    rgb[3, 4] = (1, 2, 3)
    with pytest.warns(UserWarning, match="3 distinct colours"):
        enc = codec.encode_image(rgb, 16)
    assert enc.header.k == 3 and enc.header.bits_per_index == 2
    assert enc.lossless
    np.testing.assert_array_equal(np.asarray(kpal.decode(enc.data).convert("RGB")), rgb)


def test_single_colour_image_is_k1_with_empty_payload():
    rgb = np.full((3, 7, 3), 77, np.uint8)
    with pytest.warns(UserWarning):
        data = kpal.encode(rgb, k=8)
    assert len(data) == 26 + 3 + 0 + 4
    out = kpal.decode(data)
    assert out.info["k"] == 1 and out.info["bits_per_index"] == 0
    np.testing.assert_array_equal(np.asarray(out.convert("RGB")), rgb)


def test_one_by_one_image():
    with pytest.warns(UserWarning):
        data = kpal.encode(np.array([[[9, 8, 7]]], np.uint8))
    np.testing.assert_array_equal(np.asarray(kpal.decode(data).convert("RGB")), [[[9, 8, 7]]])


def test_same_seed_same_bytes_and_seed_matters(photo):
    a = kpal.encode(photo, k=16, seed=3)
    assert a == kpal.encode(photo, k=16, seed=3)
    assert a[:26] == kpal.encode(photo, k=16, seed=4)[:26]


def test_encode_accepts_path_pil_and_array(rocket_path):
    with Image.open(rocket_path) as im:
        rgb = np.asarray(im.convert("RGB"))
        from_pil = kpal.encode(im, k=4, max_iter=5)
    assert kpal.encode(rocket_path, k=4, max_iter=5) == from_pil == kpal.encode(
        rgb, k=4, max_iter=5)


def test_p_image_keeps_own_palette_and_indices():
    im = p_image(9, 4, 5, seed=2)
    enc = codec.encode_image(im)
    assert enc.method == "palette" and enc.header.k == 5
    np.testing.assert_array_equal(enc.labels, np.asarray(im))


def test_p_image_counts_distinct_colours_not_palette_entries():
    # Entries 0 and 2 share a colour, entry 3 is never used: 2 distinct colours.
    labels = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    im = Image.fromarray(labels, "P")
    im.putpalette([10, 20, 30, 200, 100, 0, 10, 20, 30, 1, 2, 3])
    enc = codec.encode_image(im)
    assert enc.method == "palette" and enc.header.k == 3
    assert enc.n_colors == 2 == len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0))


def test_p_image_with_more_colours_than_k_is_requantized():
    im = p_image(20, 20, 50, seed=2)
    enc = codec.encode_image(im, 8)
    assert enc.method == "kmeans" and enc.header.k == 8


def test_grey_and_1_bit_images_are_lossless_when_few_levels():
    grey = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4) * 20, "L")
    with pytest.warns(UserWarning):
        out = kpal.decode(kpal.encode(grey, 16)).convert("L")
    np.testing.assert_array_equal(np.asarray(out), np.asarray(grey))
    bw = grey.convert("1")
    with pytest.warns(UserWarning):
        out = kpal.decode(kpal.encode(bw, 2)).convert("RGB")
    np.testing.assert_array_equal(np.asarray(out), np.asarray(bw.convert("RGB")))


def test_opaque_rgba_drops_alpha_and_transparent_is_rejected(photo):
    rgba = photo.convert("RGBA")
    assert kpal.encode(rgba, 8) == kpal.encode(photo, 8)
    rgba.putpixel((0, 0), (1, 2, 3, 0))
    with pytest.raises(KpalError, match="mode RGBA with transparent pixels is not supported"):
        kpal.encode(rgba, 8)


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_wide_modes_are_rejected_with_the_mode_named(mode):
    with pytest.raises(KpalError, match=f"mode {mode} .samples wider than 8 bits"):
        kpal.encode(Image.new(mode, (4, 4)), 4)


@pytest.mark.parametrize("mode", ["CMYK", "YCbCr"])
def test_other_colour_spaces_are_converted(mode, photo):
    im = photo.convert(mode)
    out = kpal.decode(kpal.encode(im, 8))
    assert out.size == photo.size


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((4, 4, 3), np.float32), "dtype float32"),
        (np.zeros((4, 4, 2), np.uint8), r"shape \(4, 4, 2\)"),
        (np.zeros((4,), np.uint8), r"shape \(4,\)"),
    ],
)
def test_bad_arrays(array, match):
    with pytest.raises(KpalError, match=match):
        kpal.encode(array)


@pytest.mark.parametrize("k", [0, 257, -3, 2.5, "abc"])
def test_bad_k(k, photo):
    with pytest.raises(KpalError, match="must be an integer between 1 and 256"):
        kpal.encode(photo, k)


def test_unknown_coding_is_rejected(photo):
    with pytest.raises(FormatError, match="unknown payload coding 'zip'"):
        kpal.encode(photo, 4, coding="zip")


def test_decode_errors_are_kpal_errors(tmp_path):
    with pytest.raises(FormatError, match="not a .kpal file"):
        kpal.decode(b"GIF89a" + bytes(40))
    with pytest.raises(FormatError, match="truncated header"):
        kpal.decode(b"\x89KPAL\r\n\x1a\n\x01")
    with pytest.raises(OSError):
        kpal.decode(tmp_path / "missing.kpal")


def test_save_is_atomic_and_refuses_to_overwrite(tmp_path, photo):
    target = tmp_path / "a.kpal"
    kpal.save(photo, target, 4)
    first = target.read_bytes()
    with pytest.raises(FileExistsError, match="file exists"):
        kpal.save(photo, target, 8)
    assert target.read_bytes() == first
    kpal.save(photo, target, 8, force=True)
    assert target.read_bytes() != first
    assert [p.name for p in tmp_path.iterdir()] == ["a.kpal"]  # no temporary left


def test_inspect_reports_sizes_and_checksum(photo):
    data = kpal.encode(photo, 16)
    report = codec.inspect(data)
    assert report["checksum"] == "ok" and report["problem"] is None
    n = photo.width * photo.height
    assert report["size"]["formula"] == f"16×24 + {n}×4 = {16 * 24 + n * 4} bits"
    assert report["size"]["overhead_bytes"] == 30
    assert len(report["palette"]) == 16 and report["palette"][0].startswith("#")
    bad = bytearray(data)
    bad[40] ^= 0xFF
    report = codec.inspect(bytes(bad))
    assert report["checksum"] == "mismatch" and "checksum mismatch" in report["problem"]


@pytest.mark.parametrize("method", ["kmeans", "gmm"])
@pytest.mark.parametrize("sample", [None, 0.5])
def test_reported_psnr_equals_psnr_of_decoded_image(photo, method, sample):
    enc = codec.encode_image(photo, 16, method=method, sample=sample)
    decoded = np.asarray(kpal.decode(enc.data).convert("RGB"))
    assert enc.psnr() == pytest.approx(metrics.psnr(np.asarray(photo), decoded), abs=1e-9)
