"""kpal.encode / kpal.decode: the two flows, mode rules and the size formula."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image, ImageOps

import kpal
from kpal import codec, metrics
from kpal.errors import FormatError, KpalError, OptionError

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
    # Stored as its 2 distinct colours, in the order of their first entry.
    assert enc.method == "palette" and enc.header.k == 2 and enc.header.bits_per_index == 1
    assert enc.n_colors == 2 == len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0))
    assert enc.palette.tolist() == [[10, 20, 30], [200, 100, 0]]
    np.testing.assert_array_equal(enc.labels, [[0, 1, 0], [0, 1, 0]])
    decoded = kpal.decode(enc.data).convert("RGB")
    np.testing.assert_array_equal(np.asarray(decoded), np.asarray(im.convert("RGB")))


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


def test_opaque_rgba_drops_alpha_and_transparent_keeps_it(photo):
    rgba = photo.convert("RGBA")
    assert kpal.encode(rgba, 8) == kpal.encode(photo, 8)  # opaque: version 1, as RGB
    rgba.putpixel((0, 0), (1, 2, 3, 0))
    data = kpal.encode(rgba, 8)
    header = kpal.container.read(data)[0]
    assert (header.version, header.alpha) == (2, True)
    out = np.asarray(kpal.decode(data).convert("RGBA"))
    alpha = np.asarray(rgba)[..., 3]
    np.testing.assert_array_equal(out[..., 3], alpha)  # the mask exactly
    assert out[0, 0].tolist() == [0, 0, 0, 0]


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


def test_unknown_coding_is_an_option_error_not_a_format_error(photo):
    with pytest.raises(OptionError, match="coding='zip' must be one of 'fixed', 'radix'") as e:
        kpal.encode(photo, 4, coding="zip")
    assert not isinstance(e.value, FormatError)  # FormatError means corrupt bytes


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


# ---------------------------------------------------------------- everyday inputs
def test_p_image_stores_only_the_entries_it_uses():
    labels = np.zeros((4, 6), np.uint8)
    labels[:, 3:] = 200  # entries 0 and 200 of a 256-entry palette
    im = Image.fromarray(labels, "P")
    palette = np.arange(768, dtype=np.int64) % 251
    im.putpalette(palette.astype(np.uint8).tolist())
    for k in (2, None):
        enc = codec.encode_image(im, k)
        assert enc.header.k == 2 and enc.header.bits_per_index == 1, k
        assert len(enc.data) == _expected_size(2, 24)
        np.testing.assert_array_equal(np.asarray(kpal.decode(enc.data).convert("RGB")),
                                      np.asarray(im.convert("RGB")))


def _oriented_png(orientation: int) -> tuple[bytes, Image.Image]:
    """A 5x3 PNG whose EXIF says how to turn it, and the upright image."""
    rgb = np.arange(5 * 3 * 3, dtype=np.uint8).reshape(3, 5, 3) * 5
    im = Image.fromarray(rgb, "RGB")
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, format="PNG", exif=exif)
    with Image.open(io.BytesIO(buf.getvalue())) as opened:
        upright = ImageOps.exif_transpose(opened)
    return buf.getvalue(), upright


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(orientation, tmp_path):
    data, upright = _oriented_png(orientation)
    path = tmp_path / "phone.png"
    path.write_bytes(data)
    assert upright.size == ((3, 5) if orientation in (6, 8) else (5, 3))
    with Image.open(path) as opened:
        pil = opened.copy()
    for source in (path, data, io.BytesIO(data), pil):
        with pytest.warns(UserWarning, match="15 distinct colours"):
            enc = codec.encode_image(source, 256)
        assert enc.orientation == orientation
        out = kpal.decode(enc.data)
        assert out.size == upright.size
        np.testing.assert_array_equal(np.asarray(out.convert("RGB")), np.asarray(upright))


def test_no_orientation_means_nothing_turned(photo):
    assert codec.encode_image(photo, 4).orientation == 1


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_colour_key_transparency_becomes_alpha(mode):
    im = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4) * 20, "L").convert(mode)
    key = (20, 20, 20) if mode == "RGB" else 20
    im.info["transparency"] = key
    expected = np.full((3, 4), 255, np.uint8)
    expected[0, 1] = 0  # the one pixel of value 20
    # In memory and through a PNG file with a tRNS chunk.
    buf = io.BytesIO()
    im.save(buf, format="PNG", transparency=key)
    for source in (im, buf.getvalue()):
        with pytest.warns(UserWarning, match="12 distinct RGBA colours"):
            data = kpal.encode(source, 16)
        out = np.asarray(kpal.decode(data).convert("RGBA"))
        np.testing.assert_array_equal(out[..., 3], expected)
    im.info["transparency"] = (1, 2, 3) if mode == "RGB" else 7  # matches no pixel: opaque
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert kpal.container.read(kpal.encode(im, 16))[0].version == 1


def test_fully_transparent_image_is_one_transparent_entry():
    rgba = Image.new("RGBA", (3, 2), (1, 2, 3, 0))
    with pytest.warns(UserWarning, match="1 distinct RGBA colour"):
        encoded = codec.encode_image(rgba)
    assert encoded.palette.tolist() == [[0, 0, 0, 0]] and encoded.lossless


def test_background_flattens_transparency():
    rgba = Image.new("RGBA", (2, 1), (255, 0, 0, 0))
    rgba.putpixel((1, 0), (0, 0, 255, 128))
    with pytest.warns(UserWarning, match="2 distinct colours"):
        data = kpal.encode(rgba, background="#00ff00")
    assert kpal.container.read(data)[0].version == 1
    out = kpal.decode(data).convert("RGB")
    assert [out.getpixel((0, 0)), out.getpixel((1, 0))] == [(0, 255, 0), (0, 127, 128)]


def test_icc_profile_round_trips(photo):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    tagged = photo.copy()
    tagged.info["icc_profile"] = icc
    data = kpal.encode(tagged, 8)
    assert kpal.decode(data).info["icc_profile"] == icc
    assert kpal.encode(photo, 8, ) != data  # the profile is stored (version 2) ...
    assert kpal.decode(kpal.encode(photo, 8)).info.get("icc_profile") is None  # ... only if given
    buf = io.BytesIO()
    photo.save(buf, "KPAL", k=8, icc_profile=icc)  # as for PNG: the keyword, too
    assert buf.getvalue() == data


def test_encode_accepts_encoded_bytes_and_file_objects(rocket_path):
    data = rocket_path.read_bytes()
    expected = kpal.encode(rocket_path, 8, max_iter=5)
    assert kpal.encode(data, 8, max_iter=5) == expected
    assert kpal.encode(bytearray(data), 8, max_iter=5) == expected
    with open(rocket_path, "rb") as fp:
        assert kpal.encode(fp, 8, max_iter=5) == expected
    with pytest.raises(KpalError, match="empty"):
        kpal.encode(b"", 8)
    with pytest.raises(OSError):  # PIL.UnidentifiedImageError
        kpal.encode(b"definitely not an image", 8)


def test_decode_accepts_file_objects(tmp_path, photo):
    path = tmp_path / "x.kpal"
    path.write_bytes(kpal.encode(photo, 4))
    with open(path, "rb") as fp:
        im = kpal.decode(fp)
    np.testing.assert_array_equal(np.asarray(im), np.asarray(kpal.decode(path)))
    with open(path, "rb") as fp:
        assert kpal.decode(io.BytesIO(fp.read())).size == photo.size
    with open(path, encoding="latin-1") as fp, pytest.raises(TypeError, match="text mode"):
        kpal.decode(fp)
    with pytest.raises(TypeError, match="got int"):
        kpal.decode(42)


@pytest.mark.parametrize("source", [[[1, 2, 3]], None, 3.5])
def test_encode_of_something_not_an_image_is_a_type_error_naming_it(source):
    # It was "AttributeError: 'list' object has no attribute 'read'", from inside Pillow.
    with pytest.raises(TypeError, match=f"expected an image: .* got {type(source).__name__}$"):
        kpal.encode(source, 4)


def test_decode_refuses_a_bad_header_before_reading_the_rest():
    class Endless(io.RawIOBase):
        reads = 0

        def readable(self):
            return True

        def readinto(self, b):
            self.reads += 1
            b[:] = b"x" * len(b)
            return len(b)

    stream = Endless()
    with pytest.raises(FormatError, match="not a .kpal file"):
        kpal.decode(stream)
    assert stream.reads == 1


def test_one_header_reader_names_the_same_problem_everywhere(photo):
    data = bytearray(kpal.encode(photo, 4))
    data[22:26] = (1).to_bytes(4, "big")  # payload_length lies
    data = bytes(data)
    messages = set()
    for read in (lambda: codec.decode_indices(data), lambda: kpal.decode(data),
                 lambda: Image.open(io.BytesIO(data)).load()):
        with pytest.raises(FormatError) as e:
            read()
        messages.add(str(e.value))
    assert len(messages) == 1 and "payload_length=1" in messages.pop()
    assert "payload_length=1" in codec.inspect(data)["problem"]


def test_inspect_of_a_truncated_file_has_no_size_accounting(photo):
    data = kpal.encode(photo, 16)
    report = codec.inspect(data[:100])
    assert report["size"] is None
    assert report["file_bytes"] == 100 and report["expected_bytes"] == len(data)
    assert "truncated" in report["problem"]


def test_single_colour_warning_is_singular():
    with pytest.warns(UserWarning, match="has 1 distinct colour, no more than k=4"):
        kpal.encode(np.zeros((2, 2, 3), np.uint8), 4)


def test_p_image_with_unused_transparent_entries_encodes_without_pillow_warnings():
    im = p_image(6, 5, 4, seed=1)
    im.info["transparency"] = bytes([255, 255, 255, 255, 0])  # entry 4: transparent, unused
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enc = codec.encode_image(im)
    assert enc.header.k == 4
    np.testing.assert_array_equal(enc.labels, np.asarray(im))


def test_every_byte_reader_refuses_a_text_file_object_alike(tmp_path):
    """decode, encode and load_palette give one message for a text-mode file object."""
    kp = tmp_path / "a.kpal"
    png = tmp_path / "a.png"
    gpl = tmp_path / "a.gpl"
    Image.fromarray(np.arange(18, dtype=np.uint8).reshape(2, 3, 3)).save(png)
    kp.write_bytes(kpal.encode(png, k=2))
    gpl.write_text("GIMP Palette\n1 2 3 one\n")
    readers = [(kp, kpal.decode), (png, kpal.encode), (gpl, kpal.load_palette)]
    for path, reader in readers:
        with open(path, encoding="latin-1") as fp:
            with pytest.raises(TypeError, match=r"^the file object is open in text mode; "
                                                r"open it with 'rb'$"):
                reader(fp)

    class TextReader:  # a duck-typed object whose read() returns text
        name = "t"

        def read(self, n=-1):
            return "GIMP Palette\n"

    for reader in (kpal.decode, kpal.load_palette):
        with pytest.raises(TypeError, match="text mode"):
            reader(TextReader())
