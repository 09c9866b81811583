"""The Pillow plugin at its edges: verify(), save_all, multi-frame images, RGBA
palettes and ICC profiles through ``Image.save``."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

import kpal
from kpal.errors import ChecksumError, FormatError, KpalError, TruncatedError

from .test_codec_defects import cmyk_profile, managed, mpo_bytes

GOLDEN = Path(__file__).resolve().parent.parent / "samples" / "golden"
SAMPLES = GOLDEN.parent

pytestmark = pytest.mark.filterwarnings("ignore:the image has .* distinct (RGBA )?colour")


@pytest.fixture
def good_file() -> bytes:
    rng = np.random.default_rng(3)
    return kpal.encode(rng.integers(0, 256, (12, 10, 3), np.uint8), 8, seed=0)


# ------------------------------------------------------------------ verify
def test_verify_passes_a_good_file_and_closes_it(good_file, tmp_path):
    path = tmp_path / "good.kpal"
    path.write_bytes(good_file)
    im = Image.open(path)
    assert im.verify() is None
    assert im.fp is None
    with Image.open(path) as again:  # verify checks, it does not spoil the file
        assert again.convert("RGB").size == (10, 12)


@pytest.mark.parametrize("position", [-1, -5, 40])  # checksum, last payload byte, palette
def test_verify_raises_on_a_flipped_bit(good_file, position):
    data = bytearray(good_file)
    data[position] ^= 1
    im = Image.open(io.BytesIO(bytes(data)))
    with pytest.raises(ChecksumError, match=r"^checksum mismatch: stored 0x[0-9a-f]{8}, "
                                            r"computed 0x[0-9a-f]{8}$"):
        im.verify()


def test_verify_reads_a_payload_longer_than_its_chunk(monkeypatch):
    from kpal import plugin

    monkeypatch.setattr(plugin, "_VERIFY_CHUNK", 7)
    rng = np.random.default_rng(5)
    data = bytearray(kpal.encode(rng.integers(0, 256, (20, 20, 3), np.uint8), 16, seed=0))
    Image.open(io.BytesIO(bytes(data))).verify()
    data[60] ^= 0x10
    with pytest.raises(ChecksumError):
        Image.open(io.BytesIO(bytes(data))).verify()


def test_verify_twice_is_a_runtime_error(good_file):
    im = Image.open(io.BytesIO(good_file))
    im.verify()
    with pytest.raises(RuntimeError, match="verify must be called directly after open"):
        im.verify()


# ------------------------------------------------------------------ save_all and frames
def test_save_all_of_several_frames_is_a_clear_error(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    path = tmp_path / "anim.kpal"
    with pytest.raises(KpalError, match=r"^2 frames to save, but a \.kpal file holds one "
                                        r"image: save one frame \(without save_all and "
                                        r"append_images\)$"):
        frames[0].save(path, save_all=True, append_images=frames[1:])
    assert not path.exists()


def test_save_all_counts_the_frames_of_an_animation(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue", "lime")]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    with Image.open(gif) as im, pytest.raises(KpalError, match="^3 frames to save"):
        im.save(tmp_path / "anim.kpal", save_all=True)


def test_save_all_of_one_frame_is_a_plain_save():
    image = Image.new("RGB", (8, 8), (10, 20, 30))
    plain, everything = io.BytesIO(), io.BytesIO()
    image.save(plain, format="KPAL")
    image.save(everything, format="KPAL", save_all=True, append_images=[])
    assert everything.getvalue() == plain.getvalue()
    assert kpal.decode(plain.getvalue()).convert("RGB").getpixel((0, 0)) == (10, 20, 30)


def test_save_of_an_animation_writes_the_current_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    with Image.open(gif) as im:
        im.seek(1)
        im.save(tmp_path / "second.kpal")
    with Image.open(tmp_path / "second.kpal") as saved:
        assert np.unique(np.asarray(saved.convert("RGB")).reshape(-1, 3), axis=0).tolist() \
            == [[0, 0, 255]]


def test_save_of_a_multi_picture_jpeg_writes_the_primary_image(tmp_path):
    with Image.open(io.BytesIO(mpo_bytes())) as im:
        primary = np.asarray(im.convert("RGB"))
        im.save(tmp_path / "phone.kpal")
    assert (tmp_path / "phone.kpal").read_bytes() == kpal.encode(primary)


# ------------------------------------------------------------------ alpha and profiles
def test_saving_a_decoded_transparent_image_keeps_its_alpha():
    g = np.tile(np.linspace(0, 255, 24).astype(np.uint8), (6, 1))
    first = kpal.decode(kpal.encode(np.dstack([g, 255 - g, g, g]), 16))
    buffer = io.BytesIO()
    first.save(buffer, format="KPAL")
    with Image.open(io.BytesIO(buffer.getvalue())) as again:
        assert again.info["version"] == 2
        np.testing.assert_array_equal(np.asarray(again.convert("RGBA")),
                                      np.asarray(first.convert("RGBA")))


def test_saving_a_cmyk_jpeg_converts_it_with_its_profile(tmp_path):
    cmyk = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 255, 0, 0], [40, 80, 120, 20]]],
                    np.uint8)
    jpeg = tmp_path / "print.jpg"
    Image.fromarray(cmyk, "CMYK").save(jpeg, quality=100, icc_profile=cmyk_profile())
    with Image.open(jpeg) as im:
        expected = managed(im, cmyk_profile())
        with pytest.warns(UserWarning, match=r"ICC profile \('toy cmyk', a CMYK profile\) was "
                                             "applied"):
            im.save(tmp_path / "print.kpal", colors=256)
    with Image.open(tmp_path / "print.kpal") as saved:
        assert "icc_profile" not in saved.info
        np.testing.assert_array_equal(np.asarray(saved.convert("RGB")), expected)


def test_saving_with_a_junk_profile_warns_and_saves(tmp_path):
    image = Image.new("L", (4, 4), 77)
    with pytest.warns(UserWarning, match="ICC profile is dropped: it cannot be read"):
        image.save(tmp_path / "junk.kpal", icc_profile=b"not a profile")
    with Image.open(tmp_path / "junk.kpal") as saved:
        assert "icc_profile" not in saved.info
        assert saved.convert("RGB").getpixel((0, 0)) == (77, 77, 77)


@pytest.mark.parametrize("profile", [123, True, "sRGB"])
def test_a_profile_that_is_not_bytes_is_an_option_error(tmp_path, profile):
    out = tmp_path / "p.kpal"
    with pytest.raises(kpal.OptionError, match=f"icc_profile must be the profile's bytes, "
                                               f"not {type(profile).__name__}"):
        Image.new("RGB", (4, 4)).save(out, icc_profile=profile)
    assert not out.exists()


def test_a_pillow_profile_object_is_stored_as_its_bytes():
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (9, 8, 7)).save(out, "KPAL", icc_profile=profile)
    with Image.open(out) as saved:
        assert saved.info["icc_profile"] == profile.tobytes()


def test_saving_with_the_readers_own_info_re_encodes_the_same():
    """``im.save(out, **im.info)``, as with PNG: the reader's keys are accepted."""
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = np.arange(30) * 8
    rgba[5:, :, 3] = 255
    first = io.BytesIO()
    Image.fromarray(rgba).save(first, "KPAL", k=8, coding="entropy")
    with Image.open(first) as im:
        assert set(im.info) == {"k", "bits_per_index", "coding", "version", "transparency"}
        pixels, info = np.asarray(im.convert("RGBA")), dict(im.info)
        again = io.BytesIO()
        im.save(again, "KPAL", **im.info)
    with Image.open(again) as saved:
        np.testing.assert_array_equal(np.asarray(saved.convert("RGBA")), pixels)
        assert saved.info == info


def test_the_transparency_keyword_sets_a_transparent_index():
    grey = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4, "L").convert("P")
    out = io.BytesIO()
    grey.save(out, "KPAL", transparency=12)  # palette index 12, as PNG's writer takes it
    with Image.open(out) as saved:
        alpha = np.asarray(saved.convert("RGBA"))[..., 3]
    assert (alpha == 0).sum() == 1 and alpha.reshape(-1)[3] == 0  # the pixel of grey 12


def test_transparency_none_drops_the_key_and_junk_is_refused():
    keyed = Image.new("P", (4, 4), 2)
    keyed.info["transparency"] = 2
    out = io.BytesIO()
    keyed.save(out, "KPAL", transparency=None)
    with Image.open(out) as saved:
        assert "transparency" not in saved.info
    with pytest.raises(kpal.OptionError, match="it must be a palette index"):
        keyed.save(io.BytesIO(), "KPAL", transparency=1.5)


@pytest.mark.parametrize(("mode", "key"), [("RGBA", (255, 0, 0)), ("LA", 0)])
def test_transparency_for_an_image_with_alpha_is_refused(mode, key):
    opaque = Image.new(mode, (4, 4), (255, 0, 0, 255) if mode == "RGBA" else (0, 255))
    with pytest.raises(kpal.OptionError, match=f"cannot be used with a mode {mode} image: its "
                                               "alpha channel says what is transparent"):
        opaque.save(io.BytesIO(), "KPAL", transparency=key)


def test_a_stale_transparency_key_of_an_opaque_rgba_image_changes_nothing():
    opaque = Image.new("RGBA", (4, 4), (255, 0, 0, 255))
    opaque.info["transparency"] = (255, 0, 0)  # meaningless beside the alpha channel
    out = io.BytesIO()
    opaque.save(out, "KPAL")
    with Image.open(out) as saved:
        assert saved.convert("RGBA").getpixel((0, 0)) == (255, 0, 0, 255)


@pytest.mark.parametrize(("mode", "key", "message"), [
    ("RGB", 0, "it must be an RGB colour of three ints 0..255"),
    ("L", (0, 0, 0), "it must be a grey level 0..255"),
    ("P", 300, "it must be a palette index 0..255 or one alpha per entry"),
    ("CMYK", 0, "transparency= cannot be used with a mode CMYK image"),
])
def test_a_transparency_key_of_the_wrong_kind_for_the_mode_is_refused(mode, key, message):
    with pytest.raises(kpal.OptionError, match=re.escape(message)):
        Image.new(mode, (4, 4)).save(io.BytesIO(), "KPAL", transparency=key)


@pytest.mark.parametrize("key", [1, 255])
def test_a_one_bit_key_of_1_or_255_is_white(key):
    bits = Image.new("1", (4, 2), 0)
    bits.putpixel((1, 1), 1)
    out = io.BytesIO()
    bits.save(out, "KPAL", transparency=key)
    with Image.open(out) as saved:
        alpha = np.asarray(saved.convert("RGBA"))[..., 3]
    assert alpha.tolist() == [[255, 255, 255, 255], [255, 0, 255, 255]]


def test_an_rgb_key_may_be_a_list_as_in_png():
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(out, "KPAL", transparency=[1, 2, 3])
    with Image.open(out) as saved:
        assert saved.convert("RGBA").getpixel((0, 0))[3] == 0


class _ShortReads(io.RawIOBase):
    """A seekable raw stream that returns at most 100 bytes a read, as some sockets do."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._data.seek(offset, whence)

    def tell(self) -> int:
        return self._data.tell()

    def readinto(self, buffer) -> int:  # noqa: ANN001 - a writable buffer
        piece = self._data.read(min(len(buffer), 100))
        buffer[: len(piece)] = piece
        return len(piece)


def test_a_stream_of_short_reads_decodes():
    rng = np.random.default_rng(4)
    data = kpal.encode(rng.integers(0, 256, (40, 30, 3), np.uint8), 16, seed=0)
    assert len(data) > 300  # header, palette and payload each take several reads
    with Image.open(io.BytesIO(data)) as whole:
        expected = np.asarray(whole.convert("RGB"))
    with Image.open(_ShortReads(data)) as im:
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), expected)


def test_verify_of_a_damaged_file_closes_it(good_file, tmp_path):
    data = bytearray(good_file)
    data[-1] ^= 1
    path = tmp_path / "bad.kpal"
    path.write_bytes(data)
    im = Image.open(path)
    opened = im.fp
    with pytest.raises(ChecksumError):
        im.verify()
    assert opened.closed and im.fp is None


# ------------------------------------------------------------------ ImageFile.Parser
def _parse(data: bytes, piece: int) -> Image.Image:
    parser = ImageFile.Parser()
    for start in range(0, len(data), piece):
        parser.feed(data[start:start + piece])
    return parser.close()


@pytest.mark.parametrize("name", ["icc_k5_7x3.kpal", "rgba_entropy_k17_9x7.kpal",
                                  "context_k17_70x3.kpal"])
@pytest.mark.parametrize("piece", [1, 7, 1024, 1 << 20])
def test_parser_fed_piece_by_piece_gives_the_image(name, piece):
    """ImageFile.Parser, which web frameworks feed an upload with to learn its size."""
    data = (GOLDEN / name).read_bytes()
    parsed = _parse(data, piece)
    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        assert parsed.size == opened.size and parsed.mode == "P"
        assert parsed.tobytes() == opened.tobytes()
        assert parsed.palette.tobytes() == opened.palette.tobytes()
        assert parsed.info.get("icc_profile") == opened.info.get("icc_profile")


def test_parser_of_a_photo_in_growing_pieces_knows_its_size_early():
    """As Django's get_image_dimensions does: pieces of 1 KiB, doubling, until p.image."""
    photo = kpal.encode(Image.open(SAMPLES / "rocket.jpg"), 64, seed=0)
    parser, fed, piece = ImageFile.Parser(), 0, 1024
    while parser.image is None:
        parser.feed(photo[fed:fed + piece])
        fed, piece = fed + piece, 2 * piece
    assert parser.image.size == (640, 427)
    parser.feed(photo[fed:])
    assert np.array_equal(np.asarray(parser.close()), np.asarray(Image.open(io.BytesIO(photo))))


def test_parser_of_a_truncated_or_damaged_file_fails_at_close(good_file):
    parser = ImageFile.Parser()
    parser.feed(good_file[:-3])
    with pytest.raises(OSError, match="cannot parse this image"):
        parser.close()
    damaged = bytearray(good_file)
    damaged[-1] ^= 1
    with pytest.raises(ChecksumError):
        _parse(bytes(damaged), 16)
    with pytest.raises(FormatError, match="has trailing data"):
        _parse(good_file + b"x", 1 << 20)


@pytest.mark.parametrize(("cut", "message"), [
    (20, "truncated header: 20 of 26 bytes"),
    (40, "file is truncated: 40 bytes, the header implies"),
])
def test_a_truncated_file_is_a_format_error_and_an_oserror(good_file, tmp_path, cut, message):
    path = tmp_path / "short.kpal"
    path.write_bytes(good_file[:cut])
    with pytest.raises(TruncatedError, match=message) as raised:
        Image.open(path)
    assert isinstance(raised.value, FormatError) and isinstance(raised.value, OSError)
    with pytest.raises(TruncatedError, match=message):
        kpal.decode(good_file[:cut])


def test_a_failed_load_closes_the_file_and_fails_again(tmp_path):
    """As Pillow does after a decoder error: the file it opened is closed; and a second
    load raises the same error instead of returning blank pixels."""
    good = tmp_path / "good.kpal"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
                    ).save(good, colors=16)
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad.kpal"
    bad.write_bytes(bytes(data))
    im = Image.open(bad)
    fp = im.fp
    with pytest.raises(kpal.ChecksumError):
        im.load()
    assert fp.closed and im.fp is None
    with pytest.raises(kpal.ChecksumError):
        im.load()
    with open(bad, "rb") as f:  # a file object the caller opened stays open
        im = Image.open(f)
        with pytest.raises(kpal.ChecksumError):
            im.load()
        assert not f.closed


def test_saving_to_a_text_file_is_refused_before_the_encode(tmp_path, monkeypatch):
    from kpal import codec

    def never(*args, **kwargs):
        raise AssertionError("encoded")

    monkeypatch.setattr(codec, "encode_image", never)
    with open(tmp_path / "x.kpal", "w") as text, \
            pytest.raises(TypeError, match=r"^the file object is open in text mode; open it "
                                           r"with 'wb'$"):
        Image.new("RGB", (4, 4)).save(text, format="KPAL")


def test_a_trns_chunk_longer_than_the_palette_saves(tmp_path):
    """PNG's reader keeps a tRNS of 300 bytes and its writer takes it; so does kpal."""
    image = Image.fromarray(np.arange(6, dtype=np.uint8).reshape(2, 3), "P")
    image.putpalette(list(range(18)))
    image.info["transparency"] = bytes([0, 128]) + bytes([255]) * 298
    image.save(tmp_path / "t.kpal")
    with Image.open(tmp_path / "t.kpal") as saved:
        alpha = np.asarray(saved.convert("RGBA"))[..., 3]
    np.testing.assert_array_equal(alpha, [[0, 128, 255], [255, 255, 255]])


def test_an_image_over_the_formats_limits_is_refused_before_any_work():
    from kpal.errors import LimitError

    with pytest.raises(LimitError, match=r"^width=16777216 is outside 1\.\.16777215$"):
        Image.new("1", (1 << 24, 1)).save(io.BytesIO(), format="KPAL")
    with pytest.raises(LimitError, match=r"^width=16777216 is outside"):
        kpal.encode(np.zeros((1, 1 << 24), np.uint8))
