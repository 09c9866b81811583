"""Encoding rules at the edges of the input: RGBA palettes, non-RGB or broken ICC
profiles, multi-picture JPEGs, and the writer options of a decode (ICO, ICNS, ICC)."""

from __future__ import annotations

import functools
import io
import struct

import numpy as np
import pytest
from PIL import Image, ImageCms, features

import kpal
from kpal import codec, outputs
from kpal.errors import KpalError, KpalWarning

#: Small pictures hold fewer colours than k: stored exactly, which the tests rely on.
pytestmark = pytest.mark.filterwarnings("ignore:the image has .* distinct (RGBA )?colour")


# ------------------------------------------------------------------ ICC profiles built here
def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _profile(device_class: bytes, space: bytes, pcs: bytes, tags: list) -> bytes:
    """A version 2.1 ICC profile (ICC.1:2001-04): 128-byte header, tag table, tags."""
    start = 128 + 4 + 12 * len(tags)
    table = body = b""
    for signature, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += signature + struct.pack(">II", start + len(body), len(data))
        body += data
    header = (struct.pack(">I", start + len(body)) + b"\0" * 4 + bytes([2, 0x10, 0, 0])
              + device_class + space + pcs + b"\0" * 12 + b"acsp" + b"\0" * 28
              + _s15(0.9642) + _s15(1.0) + _s15(0.8249) + b"\0" * 48)
    return header + struct.pack(">I", len(tags)) + table + body


def _description(text: str) -> bytes:
    ascii_text = text.encode() + b"\0"
    return (b"desc" + b"\0" * 4 + struct.pack(">I", len(ascii_text)) + ascii_text
            + b"\0" * 8 + b"\0" * 70)


_WHITE_POINT = (b"wtpt", b"XYZ " + b"\0" * 4 + _s15(0.9642) + _s15(1.0) + _s15(0.8249))


def gray_profile(gamma: float = 1.0) -> bytes:
    """A grey display profile whose tone curve is ``gamma`` (1.0: linear light)."""
    curve = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, round(gamma * 256))
    return _profile(b"mntr", b"GRAY", b"XYZ ",
                    [(b"desc", _description("linear grey")), _WHITE_POINT, (b"kTRC", curve)])


def cmyk_profile() -> bytes:
    """A CMYK printer profile: a 2-point lut16 from CMYK to Lab (made-up inks)."""
    grid = []
    for c in (0, 1):
        for m in (0, 1):
            for y in (0, 1):
                for k in (0, 1):
                    lightness = 100 * (1 - k) * (1 - 0.25 * (c + m + y))
                    a, b = 60 * m - 30 * c, 60 * y - 30 * c
                    grid += [round(lightness / 100 * 0xFF00), round((a + 128) * 256),
                             round((b + 128) * 256)]
    return _profile(b"prtr", b"CMYK", b"Lab ",
                    [(b"desc", _description("toy cmyk")), _WHITE_POINT,
                     (b"A2B0", lab_lut(grid, inputs=4))])


def lab_lut(grid: list[int], inputs: int) -> bytes:
    """An A2B0 ``lut16`` tag: a 2-point grid of ``inputs`` channels to Lab (16-bit values)."""
    return (b"mft2" + b"\0" * 4 + bytes([inputs, 3, 2, 0])
            + b"".join(_s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
            + struct.pack(">HH", 2, 2) + struct.pack(f">{2 * inputs}H", *[0, 65535] * inputs)
            + struct.pack(f">{len(grid)}H", *grid) + struct.pack(">6H", *[0, 65535] * 3))


@functools.cache
def srgb_profile() -> bytes:
    """LittleCMS's sRGB profile, made once: its header holds the time it was made, so two
    made a second apart differ."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def managed(image: Image.Image, profile: bytes) -> np.ndarray:
    """What LittleCMS makes of ``image`` in ``profile``: sRGB pixels."""
    out = ImageCms.profileToProfile(image, ImageCms.ImageCmsProfile(io.BytesIO(profile)),
                                    ImageCms.createProfile("sRGB"), outputMode="RGB")
    return np.asarray(out)


def decoded_rgba(data: bytes) -> np.ndarray:
    return np.asarray(kpal.decode(data).convert("RGBA"))


def _ramp(width: int = 16, height: int = 8) -> np.ndarray:
    return np.tile(np.linspace(0, 255, width).astype(np.uint8), (height, 1))


def mpo_bytes() -> bytes:
    """A multi-picture JPEG: a 16x8 primary image and a smaller second picture."""
    g = _ramp()
    primary = Image.fromarray(np.dstack([g, 255 - g, g]))
    buffer = io.BytesIO()
    primary.save(buffer, format="MPO", save_all=True, append_images=[primary.resize((4, 2))])
    return buffer.getvalue()


# ------------------------------------------------------------------ 1. RGBA palettes
@pytest.fixture
def transparent_kpal() -> bytes:
    g = _ramp(32, 8)
    rgba = np.dstack([g, 255 - g, g, g])  # alpha from 0 to 255
    return kpal.encode(rgba, 16)


def test_decoded_transparent_file_reencodes_losslessly_with_its_alpha(transparent_kpal):
    decoded = kpal.decode(transparent_kpal)
    assert decoded.mode == "P" and decoded.palette.mode == "RGBA"
    encoded = codec.encode_image(decoded)
    assert encoded.header.version == 2 and encoded.header.alpha
    assert encoded.lossless and encoded.method == "palette"
    again = decoded_rgba(encoded.data)
    np.testing.assert_array_equal(again, decoded_rgba(transparent_kpal))
    assert again[..., 3].min() == 0 and len(np.unique(again[..., 3])) > 2


def test_pillow_quantize_of_rgba_keeps_alpha():
    g = _ramp(32, 8)
    rgba = Image.fromarray(np.dstack([g, 255 - g, g, 255 - g]), "RGBA")
    quantized = rgba.quantize(8)
    assert quantized.palette.mode == "RGBA"
    data = kpal.encode(quantized)
    assert kpal.decode(data).info["version"] == 2
    np.testing.assert_array_equal(decoded_rgba(data), np.asarray(quantized.convert("RGBA")))


def test_rgba_palette_whose_used_entries_are_opaque_stays_version_1():
    indices = np.array([[0, 1], [1, 0]], np.uint8)
    image = Image.fromarray(indices, "P")
    # Entries 0 and 1 opaque; entry 2, unused, transparent.
    image.putpalette([255, 0, 0, 255, 0, 0, 255, 255, 9, 9, 9, 0], "RGBA")
    encoded = codec.encode_image(image)
    assert encoded.header.version == 1 and not encoded.header.alpha
    np.testing.assert_array_equal(encoded.palette[encoded.labels],
                                  np.asarray(image.convert("RGB")))


def test_decode_to_kpal_keeps_transparency(transparent_kpal):
    decoded = kpal.decode(transparent_kpal)
    image, note = outputs.for_format(decoded, "KPAL")
    assert note is None and image is decoded
    assert "KPAL" in outputs.ALPHA_FORMATS
    buffer = io.BytesIO()
    image.save(buffer, format="KPAL")
    np.testing.assert_array_equal(decoded_rgba(buffer.getvalue()), decoded_rgba(transparent_kpal))


# ------------------------------------------------------------------ 2. ICC profiles
def _decoded_profile(data: bytes) -> bytes | None:
    return kpal.decode(data).info.get("icc_profile")


def test_grey_profile_pixels_are_converted_to_srgb_and_no_profile_stored():
    grey = Image.fromarray(np.repeat(np.array([[0, 64, 128, 255]], np.uint8), 2, 0), "L")
    buffer = io.BytesIO()
    grey.save(buffer, format="PNG", icc_profile=gray_profile())
    with pytest.warns(KpalWarning) as caught:  # the colours changed: said, as for RGB
        encoded = codec.encode_image(buffer.getvalue())
    assert [str(w.message) for w in caught if "ICC" in str(w.message)] == [
        "the image's ICC profile ('linear grey', a GRAY profile) was applied: its pixels "
        "were converted to sRGB and no profile is stored, because a .kpal file holds RGB "
        "profiles only"]
    expected = managed(grey, gray_profile())
    np.testing.assert_array_equal(encoded.palette[encoded.labels], expected)
    assert expected[0, 2, 0] == 188  # linear 50% grey is sRGB 188, not 128
    assert _decoded_profile(encoded.data) is None


@pytest.mark.filterwarnings("ignore:the image's ICC profile .* was applied")
def test_cmyk_jpeg_with_profile_is_converted_with_it():
    cmyk = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 255, 0, 0], [0, 0, 0, 255]]] * 2,
                    np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(cmyk, "CMYK").save(buffer, format="JPEG", quality=100,
                                       icc_profile=cmyk_profile())
    opened = Image.open(io.BytesIO(buffer.getvalue()))
    expected = managed(opened, cmyk_profile())
    data = kpal.encode(buffer.getvalue(), 256)  # 8 pixels: every colour kept
    np.testing.assert_array_equal(decoded_rgba(data)[..., :3], expected)
    assert not np.array_equal(expected, np.asarray(opened.convert("RGB")))
    assert _decoded_profile(data) is None


@pytest.mark.filterwarnings("ignore:the image's ICC profile .* was applied")
def test_lab_tiff_is_converted_with_its_profile():
    g = _ramp(8, 2)
    lab = Image.fromarray(np.dstack([g, g, g])).convert("LAB")
    buffer = io.BytesIO()
    lab.save(buffer, format="TIFF")
    opened = Image.open(io.BytesIO(buffer.getvalue()))
    assert ImageCms.ImageCmsProfile(io.BytesIO(opened.info["icc_profile"])) \
        .profile.xcolor_space == "Lab "
    data = kpal.encode(buffer.getvalue(), 256)
    np.testing.assert_array_equal(decoded_rgba(data)[..., :3],
                                  managed(opened, opened.info["icc_profile"]))
    assert _decoded_profile(data) is None


@pytest.mark.filterwarnings("ignore:the image's ICC profile .* was applied")
def test_grey_profile_with_transparency_keeps_alpha():
    la = np.dstack([np.array([[0, 128], [255, 64]], np.uint8),
                    np.array([[255, 100], [0, 255]], np.uint8)])
    image = Image.fromarray(la, "LA")
    image.info["icc_profile"] = gray_profile()
    out = decoded_rgba(kpal.encode(image))
    np.testing.assert_array_equal(out[..., 3], la[..., 1])
    colour = managed(Image.fromarray(la[..., 0], "L"), gray_profile())
    visible = la[..., 1] > 0
    # Stored premultiplied in 8 bits: the half-transparent pixel's colour within 2.
    assert np.abs(out[..., :3][visible].astype(int) - colour[visible]).max() <= 2


@pytest.mark.filterwarnings("ignore:the image's ICC profile .* was applied")
def test_profile_conversion_keeps_the_exif_orientation():
    grey = Image.fromarray(np.arange(6, dtype=np.uint8).reshape(2, 3) * 40, "L")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    buffer = io.BytesIO()
    grey.save(buffer, format="PNG", icc_profile=gray_profile(), exif=exif.tobytes())
    encoded = codec.encode_image(buffer.getvalue())
    assert encoded.orientation == 6
    np.testing.assert_array_equal(
        encoded.palette[encoded.labels],
        managed(grey.transpose(Image.Transpose.ROTATE_270), gray_profile()))


@pytest.mark.parametrize(("profile", "why"), [
    (b"not a profile", "it cannot be read (the profile holds 13 bytes, less than an ICC "
                       "profile header (128))"),
    # An sRGB profile relabelled grey: LittleCMS reads it but finds no grey tone curve.
    (srgb_profile()[:16] + b"GRAY" + srgb_profile()[20:],
     "its colour space is GRAY and LittleCMS cannot convert a mode L image with it "
     "(cannot build transform)"),
])
def test_unusable_profile_is_dropped_with_a_warning(profile, why):
    g = _ramp(8, 2)
    buffer = io.BytesIO()
    Image.fromarray(g, "L").save(buffer, format="PNG", icc_profile=profile)
    with pytest.warns(UserWarning) as caught:
        data = kpal.encode(buffer.getvalue(), 256)
    messages = [str(w.message) for w in caught if "ICC" in str(w.message)]
    assert messages == [f"the image's ICC profile is dropped: {why}; its pixels are kept as "
                        "they are, read as sRGB"]
    np.testing.assert_array_equal(decoded_rgba(data)[..., 0], g)
    assert _decoded_profile(data) is None


def test_sixteen_bit_grey_with_a_profile_is_still_refused_by_the_mode_rules():
    wide = Image.fromarray(np.tile(np.linspace(0, 65535, 8), (2, 1)).astype(np.uint16))
    buffer = io.BytesIO()
    wide.save(buffer, format="PNG", icc_profile=gray_profile())
    with pytest.raises(KpalError, match=r"^mode I;16 \(samples wider than 8 bits\)"):
        kpal.encode(buffer.getvalue())


def test_rgb_profile_is_still_stored_with_the_pixels_unchanged():
    rgb = np.dstack([_ramp(8, 2)] * 3)
    image = Image.fromarray(rgb)
    image.info["icc_profile"] = srgb_profile()
    data = kpal.encode(image, 256)
    assert _decoded_profile(data) == srgb_profile()
    np.testing.assert_array_equal(decoded_rgba(data)[..., :3], rgb)


def test_colour_managed_on_an_array_drops_a_grey_profile():
    rgb = np.zeros((2, 2, 3), np.uint8)
    with pytest.warns(UserWarning, match="its colour space is GRAY and the pixels are an RGB"):
        out, profile = codec.colour_managed(rgb, gray_profile())
    assert out is rgb and profile is None


def test_colour_managed_keeps_an_rgb_image_untouched():
    image = Image.new("RGB", (2, 2))
    assert codec.colour_managed(image, srgb_profile()) == (image, srgb_profile())
    assert codec.colour_managed(image) == (image, None)


# ------------------------------------------------------------------ 3. multi-picture JPEG
def test_mpo_encodes_its_primary_image():
    data = mpo_bytes()
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "MPO" and im.n_frames == 2
        primary = np.asarray(im.convert("RGB"))
    encoded = codec.encode_image(data)
    assert (encoded.header.width, encoded.header.height) == (16, 8)
    assert encoded.data == kpal.encode(primary)


def test_mpo_image_object_is_accepted_and_other_multiframe_images_are_not():
    with Image.open(io.BytesIO(mpo_bytes())) as im:
        codec._reject_multiframe(im, "phone.jpg")  # no error
        assert kpal.decode(kpal.encode(im)).size == (16, 8)
    frames = [Image.new("RGB", (4, 4), c) for c in ("red", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    with Image.open(buffer) as gif, pytest.raises(
            KpalError, match=r"^anim.gif: has 2 frames; a .kpal file holds one image"):
        codec._reject_multiframe(gif, "anim.gif")


# ------------------------------------------------------------------ 4, 5. writer options
def _noise(width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(1)
    return kpal.decode(kpal.encode(rng.integers(0, 256, (height, width, 3), np.uint8), 16,
                                   seed=0))


@pytest.mark.parametrize("size", [(80, 60), (1, 1), (256, 17)])
def test_ico_is_written_at_the_image_size(size):
    image = _noise(*size)
    options = outputs.writer_options("ico", image)
    assert options == {"sizes": [size]}
    buffer = io.BytesIO()
    image.save(buffer, format="ICO", **options)
    back = Image.open(io.BytesIO(buffer.getvalue()))
    assert back.size == size
    np.testing.assert_array_equal(np.asarray(back.convert("RGB")),
                                  np.asarray(image.convert("RGB")))


def test_ico_above_256_pixels_is_refused_not_shrunk():
    with pytest.raises(KpalError, match=r"^an icon is at most 256x256 pixels, the image "
                                        r"is 400x300: write PNG, or resize it first$"):
        outputs.writer_options("ICO", Image.new("P", (400, 300)))


@pytest.mark.parametrize("image", [None, Image.new("P", (80, 60))])
def test_icns_is_refused(image):
    with pytest.raises(KpalError, match=r"^ICNS holds only square icons of fixed sizes"):
        outputs.writer_options("icns", image)


def test_writer_options_without_an_image_are_unchanged():
    assert outputs.writer_options("WEBP") == {"lossless": True, "exact": True}
    assert outputs.writer_options("ico") == {}
    assert outputs.writer_options("JPEG") == {"quality": 95, "subsampling": 0}


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "PNG", "TIFF", pytest.param(
    "AVIF", marks=pytest.mark.skipif(not features.check("avif"), reason="Pillow without AVIF"))])
def test_decoded_profile_is_kept_by_every_writer_that_stores_one(fmt):
    image = _noise(8, 8)
    image.info["icc_profile"] = srgb_profile()
    data = kpal.encode(image, 256)
    decoded = kpal.decode(data)
    ready, _ = outputs.for_format(decoded, fmt)
    if fmt in ("JPEG", "AVIF"):
        ready = ready.convert("RGB")  # as the command line does for a palette image
    options = outputs.writer_options(fmt, ready)
    assert options["icc_profile"] == srgb_profile()
    buffer = io.BytesIO()
    ready.save(buffer, format=fmt, **options)
    assert Image.open(io.BytesIO(buffer.getvalue())).info.get("icc_profile") == srgb_profile()


def test_flattening_for_jpeg_keeps_the_profile(transparent_kpal):
    decoded = kpal.decode(transparent_kpal)
    decoded.info["icc_profile"] = srgb_profile()
    flat, note = outputs.for_format(decoded, "JPEG")
    # Still a palette image (its entries flattened); the JPEG writer takes it as RGB.
    assert flat.mode == "P" and note.startswith("JPEG has no transparency")
    assert outputs.writer_options("JPEG", flat) == {"quality": 95, "subsampling": 0,
                                                    "icc_profile": srgb_profile()}
    # BMP cannot store a profile: an sRGB one is dropped as it is (the colours are sRGB)...
    flat, note = outputs.for_format(decoded, "BMP", background=(0, 0, 0))
    assert "icc_profile" not in flat.info and note is None
    # ... another space's palette is converted to sRGB instead.
    from .test_decode_profile import swapped_primaries_profile

    decoded.info["icc_profile"] = swapped_primaries_profile()
    flat, note = outputs.for_format(decoded, "BMP", background=(0, 0, 0))
    assert "icc_profile" not in flat.info
    assert note == "BMP cannot hold the ICC profile: the palette was converted to sRGB"



@pytest.mark.parametrize("dither", ["ordered", "fs"])
@pytest.mark.parametrize("alpha", [False, True])
def test_a_given_palette_holding_every_colour_maps_exactly_when_dithered(dither, alpha):
    """As -k with few colours is lossless: ordered dithering moved exact pixels before."""
    rng = np.random.default_rng(1)
    colours = rng.integers(0, 256, (5, 4 if alpha else 3), dtype=np.uint8)
    if alpha:
        colours[:, 3] = (255, 255, 255, 128, 0)
        colours[4, :3] = 0
    image = colours[rng.integers(0, 5, (40, 50))]
    if alpha:
        image[image[..., 3] == 0, :3] = rng.integers(0, 256, 3, dtype=np.uint8)  # hidden RGB
    data = kpal.encode(image, palette=colours.tolist(), dither=dither)
    got = np.asarray(kpal.decode(data).convert("RGBA" if alpha else "RGB"))
    expected = image.copy()
    if alpha:
        expected[expected[..., 3] == 0] = 0
    np.testing.assert_array_equal(got, expected)


class _Pipe(io.RawIOBase):
    """An unbuffered pipe giving ``data``, at most ``step`` bytes a read; ``endless``:
    zeros after it for ever. ``given`` counts what was read."""

    def __init__(self, data: bytes, step: int | None = None, endless: bool = False):
        self.data, self.step, self.endless, self.given = data, step, endless, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        n = len(buffer) if self.step is None else min(self.step, len(buffer))
        if not self.endless:
            n = min(n, len(self.data) - self.given)
        part = self.data[self.given:self.given + n]
        buffer[:len(part)] = part
        buffer[len(part):n] = bytes(n - len(part))
        self.given += n
        return n


def test_a_file_longer_than_its_header_says_is_refused_without_reading_the_rest(tmp_path):
    data = kpal.encode(np.arange(9, dtype=np.uint8).reshape(1, 3, 3), 2)
    sparse = tmp_path / "long.kpal"
    with open(sparse, "wb") as f:
        f.write(data)
        f.truncate(1 << 31)  # 2 GiB, sparse: nothing is written
    with pytest.raises(KpalError, match=rf"long.kpal: file has trailing data: {1 << 31} "
                                        rf"bytes, the header implies {len(data)}$"):
        kpal.decode(sparse)
    endless = _Pipe(data, endless=True)
    with pytest.raises(KpalError, match=rf"^file has trailing data: more than the {len(data)} "
                                        "bytes the header implies$"):
        kpal.decode(io.BufferedReader(endless))
    assert endless.given < (1 << 20)  # a buffer's worth at most, not the endless rest


def test_info_and_view_measure_a_long_file_without_reading_it_whole(tmp_path):
    """kpal info and view show a file longer than its header implies, with its real
    length: measured when it can seek, counted in pieces from a stream, never held."""
    from click.testing import CliRunner

    from kpal import view
    from kpal.cli import cli

    data = kpal.encode(np.arange(9, dtype=np.uint8).reshape(1, 3, 3), 2)
    sparse = tmp_path / "long.kpal"
    with open(sparse, "wb") as f:
        f.write(data)
        f.truncate(1 << 31)  # 2 GiB, sparse
    problem = f"file has trailing data: {1 << 31} bytes, the header implies {len(data)}"
    shown, length = codec.read_shown(sparse)
    assert (shown, length) == (data + bytes(1), 1 << 31)  # one byte past: still too long
    report = codec.inspect(sparse)
    assert (report["file_bytes"], report["problem"], report["size"]) == (1 << 31, problem, None)
    stream = _Pipe(data + bytes(5 << 20), step=1 << 16)
    report = codec.inspect(io.BufferedReader(stream))
    assert report["file_bytes"] == len(data) + (5 << 20) == stream.given
    assert report["problem"] == problem.replace(str(1 << 31), str(len(data) + (5 << 20)))
    result = CliRunner().invoke(cli, ["info", str(sparse)])
    assert result.exit_code == 1
    assert (f"on disk        {1 << 31:,} bytes, but the header implies {len(data)} bytes "
            "(the file is too long)") in result.stdout
    assert result.stderr == f"kpal: error: {sparse}: {problem}\n"
    page = view.to_html(sparse)
    assert f'data-problem="{problem}" data-bytes="{1 << 31}"' in page
    assert _embedded(page) == data + bytes(1)
    assert 'data-bytes' not in view.to_html(data + bytes(3))  # all of it is on the page


def _embedded(page: str) -> bytes:
    import base64
    import re

    return base64.b64decode(re.search(r'id="kpal-embedded"[^>]*>([^<]*)<', page)[1])


def test_an_mmap_and_a_trickling_pipe_decode(tmp_path):
    """mmap's seek returns None; a raw pipe's reads may be short, the header's too."""
    import mmap

    image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    data = kpal.encode(image, 4)
    path = tmp_path / "a.kpal"
    path.write_bytes(data)
    expected = np.asarray(kpal.decode(data).convert("RGB"))
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        np.testing.assert_array_equal(np.asarray(kpal.decode(mapped).convert("RGB")), expected)
    np.testing.assert_array_equal(np.asarray(kpal.decode(_Pipe(data, step=5)).convert("RGB")),
                                  expected)


class _Asking(io.RawIOBase):
    """A stream of ``data`` that records how much each read asked for."""

    def __init__(self, data: bytes):
        self.data, self.given, self.asked = data, 0, []

    def readable(self):
        return True

    def readinto(self, buffer):
        self.asked.append(len(buffer))
        part = self.data[self.given:self.given + len(buffer)]
        buffer[:len(part)] = part
        self.given += len(part)
        return len(part)

    def read(self, size=-1):
        self.asked.append(size)
        part = self.data[self.given:self.given + size]
        self.given += len(part)
        return part


def test_a_header_claiming_gigabytes_costs_no_more_than_the_file(tmp_path):
    """A 41-byte file whose header claims 4 GB: read in bounded pieces, not set aside
    whole (that was 'out of memory' for kpal info, view and decode from a pipe)."""
    image = np.zeros((20, 30, 3), np.uint8)
    image[:, :15] = 200
    data = bytearray(kpal.encode(image, 2, coding="entropy"))
    data[22:26] = (2**32 - 1000).to_bytes(4, "big")  # payload_length, which coding 2 does not fix
    data = bytes(data[:41])
    path = tmp_path / "claim.kpal"
    path.write_bytes(data)
    for reader in (codec.read_shown, codec.read_bytes, codec.inspect):
        stream = _Asking(data)
        try:
            reader(stream)
        except KpalError:
            pass
        assert max(stream.asked) <= 1 << 24, (reader.__name__, max(stream.asked))
    report = codec.inspect(path)
    assert report["file_bytes"] == 41 and "file is truncated: 41 bytes" in report["problem"]


def test_an_endless_stream_is_counted_up_to_a_bound(monkeypatch):
    monkeypatch.setattr(codec, "_COUNTED_LIMIT", 1 << 20)
    data = kpal.encode(np.arange(9, dtype=np.uint8).reshape(1, 3, 3), 2)
    with pytest.raises(KpalError, match=rf"^file has trailing data: more than 1,048,576 bytes "
                                        rf"past the {len(data)} bytes the header implies"):
        codec.inspect(io.BufferedReader(_Pipe(data, endless=True)))


def test_inspect_keeps_the_length_given_with_any_bytes_and_checks_it():
    data = kpal.encode(np.arange(9, dtype=np.uint8).reshape(1, 3, 3), 2)
    for given in (data + b"x", bytearray(data + b"x"), memoryview(data + b"x")):
        report = codec.inspect(given, file_bytes=5000)
        assert report["file_bytes"] == 5000 and "5000 bytes" in report["problem"]
    for wrong in (-5, True, 192.0, len(data) - 1):
        with pytest.raises(ValueError, match=r"^file_bytes=.* must be a whole number of bytes"):
            codec.inspect(data, file_bytes=wrong)
