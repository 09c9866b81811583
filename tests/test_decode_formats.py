"""Decoding transparent files: alpha kept by every format that stores it, and flattening
that keeps a palette image, so palette writers (PDF, BMP, PCX, Palm) stay lossless."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

import kpal
from kpal import codec, outputs
from kpal.cli import cli
from kpal.cluster.alpha import flatten as composite


@pytest.fixture
def soft(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (8, 9, 4), dtype=np.uint8)
    pixels[..., 3] = rng.choice([0, 128, 255], (8, 9))
    path = tmp_path / "soft.kpal"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fewer colours than k
        kpal.save(Image.fromarray(pixels, "RGBA"), path, k=8)
    return path


def _rgba(path) -> np.ndarray:
    return np.asarray(kpal.decode(path).convert("RGBA"))


@pytest.mark.parametrize("ext", ["dds", "sgi", "blp", "tga"])
def test_formats_with_alpha_keep_it_without_a_note(runner, soft, tmp_path, ext):
    out = tmp_path / f"soft.{ext}"
    result = runner.invoke(cli, ["decode", str(soft), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "note" not in result.output
    with Image.open(out) as back:
        assert np.array_equal(np.asarray(back.convert("RGBA")), _rgba(soft))


@pytest.mark.parametrize("ext", ["bmp", "pcx"])
def test_flattening_keeps_a_palette_image_with_the_same_pixels(runner, soft, tmp_path, ext):
    out = tmp_path / f"soft.{ext}"
    result = runner.invoke(cli, ["decode", str(soft), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "has no transparency: flattened onto white" in result.output
    white = composite(_rgba(soft).reshape(-1, 4), (255, 255, 255)).reshape(8, 9, 3)
    with Image.open(out) as back:
        assert back.mode == "P"
        assert np.array_equal(np.asarray(back.convert("RGB")), white)


def test_a_flattened_pdf_holds_the_palette_not_a_jpeg(runner, soft, tmp_path):
    out = tmp_path / "soft.pdf"
    result = runner.invoke(cli, ["decode", str(soft), "-o", str(out)])
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert b"/Indexed" in data
    assert b"DCTDecode" not in data


def test_palm_takes_a_flattened_transparent_file(runner, soft, tmp_path):
    out = tmp_path / "soft.palm"
    result = runner.invoke(cli, ["decode", str(soft), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x00\x09\x00\x08"  # width 9, height 8


def test_an_rgba_palette_whose_used_entries_are_opaque_is_not_flattened():
    image = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8), "P")
    image.putpalette([10, 20, 30, 255, 40, 50, 60, 255, 0, 0, 0, 0], "RGBA")  # entry 2 unused
    out, note = outputs.for_format(image, "JPEG")
    assert note is None
    assert out.mode == "P"
    assert np.array_equal(np.asarray(out.convert("RGB")), np.asarray(image.convert("RGB")))
    assert not codec.has_transparency(out)


def test_jpeg_output_is_quality_95_without_chroma_subsampling(runner, tmp_path):
    from PIL import JpegImagePlugin

    rng = np.random.default_rng(2)
    labels = rng.integers(0, 16, (48, 64), dtype=np.uint8)
    palette = rng.integers(0, 256, (16, 3), dtype=np.uint8)
    src = tmp_path / "dithered.kpal"
    with pytest.warns(kpal.KpalWarning, match="lossless"):
        kpal.save(palette[labels], src, k=16)
    out = tmp_path / "out.jpg"
    assert runner.invoke(cli, ["decode", str(src), "-o", str(out)]).exit_code == 0
    with Image.open(out) as jpeg:
        assert JpegImagePlugin.get_sampling(jpeg) == 0  # 4:4:4
        got = np.asarray(jpeg.convert("RGB")).astype(float)
        default = tmp_path / "default.jpg"
        kpal.decode(src).convert("RGB").save(default)  # Pillow's quality 75, 4:2:0
    want = palette[labels].astype(float)
    with Image.open(default) as low:
        low_error = np.mean((np.asarray(low.convert("RGB")) - want) ** 2)
    assert np.mean((got - want) ** 2) < low_error / 3


# ------------------------------------------------------------------ palettes, sizes, names
def _shared_palette_file(tmp_path, used: list[int]):
    """A file on a 64-entry palette with a transparent last entry, using only ``used``."""
    rng = np.random.default_rng(5)
    palette = np.concatenate([rng.integers(0, 256, (64, 3), dtype=np.uint8),
                              np.full((64, 1), 255, np.uint8)], axis=1)
    palette[63] = 0
    labels = np.array(used, np.uint8)[rng.integers(0, len(used), (12, 10))]
    path = tmp_path / "tile.kpal"
    kpal.save(Image.fromarray(palette[labels], "RGBA"), path, palette=palette)  # as given
    return path, palette, labels


def test_gif_and_png_keep_a_shared_palette_and_the_indices(runner, tmp_path):
    """Pillow's GIF writer renumbered the colours a file uses, and the PNG lost the
    palette's alpha when the used entries were opaque: a shared palette was not shared."""
    path, palette, labels = _shared_palette_file(tmp_path, [32, 33, 35, 40, 57])
    for ext in ("gif", "png"):
        out = tmp_path / f"tile.{ext}"
        result = runner.invoke(cli, ["decode", str(path), "-o", str(out)])
        assert result.exit_code == 0, result.output
        with Image.open(out) as back:
            assert back.mode == "P"
            np.testing.assert_array_equal(np.asarray(back), labels)
            kept = np.array(back.getpalette("RGB")).reshape(-1, 3)
            np.testing.assert_array_equal(kept[:64], palette[:, :3])
            if ext == "png":  # the transparent entry: PNG's tRNS, read back as its index
                assert back.info["transparency"] == 63


def test_blp_keeps_alpha_when_the_profile_is_converted(runner, soft, tmp_path):
    from .test_decode_profile import swapped_primaries_profile

    p3 = swapped_primaries_profile()  # not sRGB: the palette is converted for BLP
    rgba = _rgba(soft)
    profiled = tmp_path / "profiled.kpal"
    image = Image.fromarray(rgba, "RGBA")
    image.info["icc_profile"] = p3  # not sRGB to the BLP writer, which takes no profile
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kpal.save(image, profiled, k=8)
    out = tmp_path / "profiled.blp"
    result = runner.invoke(cli, ["decode", str(profiled), "-o", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as back:
        np.testing.assert_array_equal(np.asarray(back.convert("RGBA"))[..., 3], rgba[..., 3])


def test_lossy_jpeg_kin_get_the_same_care_and_lossless_writers_compress():
    assert outputs.writer_options("MPO") == outputs.writer_options("JPEG")
    assert outputs.writer_options("AVIF") == {"quality": 95, "subsampling": "4:4:4"}
    assert outputs.writer_options("TIFF") == {"compression": "tiff_adobe_deflate"}
    assert outputs.writer_options("GIF") == {"optimize": False, "interlace": False}


@pytest.mark.parametrize(("flag", "magic"), [("pgm", b"P5"), ("pbm", b"P4"), ("ppm", b"P6")])
def test_the_format_flag_picks_the_netpbm_variant_on_stdout(runner, soft, flag, magic):
    result = runner.invoke(cli, ["decode", str(soft), "-o", "-", "--format", flag])
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes[:2] == magic


def test_one_file_into_a_folder_is_named_as_a_batch_names_it(runner, soft, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    for flag, name in (("jpg", "soft.jpg"), ("tif", "soft.tif"), ("pgm", "soft.pgm")):
        result = runner.invoke(cli, ["decode", str(soft), "-o", f"{folder}/", "--format", flag])
        assert result.exit_code == 0, result.output
        assert (folder / name).exists()
    assert (folder / "soft.pgm").read_bytes()[:2] == b"P5"


def test_msp_is_written_black_and_white_with_a_note(runner, soft, tmp_path):
    out = tmp_path / "soft.msp"
    result = runner.invoke(cli, ["decode", str(soft), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "MSP holds black and white only" in result.output
    with Image.open(out) as back:
        assert back.mode == "1"


def test_icns_is_a_usage_error_before_any_file_is_decoded(runner, soft, tmp_path):
    result = runner.invoke(cli, ["decode", str(soft), str(soft.with_name("other.kpal")), "-o",
                                 str(tmp_path / "out"), "--format", "icns"])
    assert result.exit_code == 2
    assert "ICNS holds only square icons" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("ext", ["tga", "blp", "gif", "png"])
def test_one_transparent_entry_survives_the_profile_conversion(runner, tmp_path, ext):
    """A file with a profile and one fully transparent entry (info["transparency"] an index
    beside an RGBA palette): the formats without profiles kept the index, lost the alpha."""
    from .test_decode_profile import swapped_primaries_profile

    profile = swapped_primaries_profile()  # not sRGB: the palette is converted
    rgba = np.zeros((6, 7, 4), np.uint8)
    rgba[..., :3] = (200, 40, 10)
    rgba[::2, :, 3] = 255  # every other row opaque, the rest fully transparent
    image = Image.fromarray(rgba, "RGBA")
    image.info["icc_profile"] = profile
    path = tmp_path / "one.kpal"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kpal.save(image, path, k=4)
    out = tmp_path / f"one.{ext}"
    result = runner.invoke(cli, ["decode", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as back:
        np.testing.assert_array_equal(np.asarray(back.convert("RGBA"))[..., 3], rgba[..., 3])


def test_netpbm_extensions_that_disagree_with_the_format_are_refused(runner, soft, tmp_path):
    """.pgm and .ppm are one Pillow format, but a grey and a colour file."""
    one = runner.invoke(cli, ["decode", str(soft), "--format", "pgm", "-o",
                              str(tmp_path / "r.ppm")])
    assert one.exit_code == 2
    assert "the extension '.ppm' does not agree with --format pgm" in one.output
    many = runner.invoke(cli, ["decode", str(soft), str(soft.with_name("x.kpal")), "-o",
                               str(tmp_path / "d"), "--ext", ".ppm", "--format", "pgm"])
    assert many.exit_code == 2
    assert "the extension '.ppm' does not agree with the format pgm" in many.output
    assert not any(tmp_path.glob("r.*")) and not (tmp_path / "d").exists()


def test_a_grey_palette_decodes_to_a_grey_jpeg_in_one_file_and_in_a_batch(runner, tmp_path):
    """JPEG takes no palette image: a grey palette gives an "L" file, a colour one "RGB"."""
    levels = np.random.default_rng(4).integers(0, 256, (24, 30), dtype=np.uint8)
    Image.fromarray(levels, "L").save(tmp_path / "grey.png")
    colour = np.random.default_rng(5).integers(0, 256, (24, 30, 3), dtype=np.uint8)
    Image.fromarray(colour, "RGB").save(tmp_path / "colour.png")
    for name in ("grey", "colour"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kpal.save(tmp_path / f"{name}.png", tmp_path / f"{name}.kpal", 8)
    def one_and_batch(ext: str):
        """grey.kpal decoded alone, and in a batch with colour.kpal: the same bytes."""
        one = runner.invoke(cli, ["decode", str(tmp_path / "grey.kpal"), "-o",
                                  str(tmp_path / f"one.{ext}")])
        assert one.exit_code == 0, one.output
        many = runner.invoke(cli, ["decode", str(tmp_path / "grey.kpal"),
                                   str(tmp_path / "colour.kpal"), "-o", str(tmp_path / ext),
                                   "--format", ext, "-j", "1"])
        assert many.exit_code == 0, many.output
        assert (tmp_path / f"one.{ext}").read_bytes() == \
            (tmp_path / ext / f"grey.{ext}").read_bytes()
        return tmp_path / f"one.{ext}", tmp_path / ext / f"colour.{ext}"

    grey_levels = np.asarray(kpal.decode(tmp_path / "grey.kpal").convert("L"))
    grey_jpg, colour_jpg = one_and_batch("jpg")
    with Image.open(grey_jpg) as grey, Image.open(colour_jpg) as c:
        assert grey.mode == "L" and c.mode == "RGB"
        assert np.abs(np.asarray(grey, np.int16) - grey_levels).mean() < 3  # quality 95
    # .ppm holds colour whatever the palette (Pillow's PPM writer picks P5 for "L")
    assert one_and_batch("ppm")[0].read_bytes()[:2] == b"P6"
    # QOI takes neither "P" nor "L": RGB
    with Image.open(one_and_batch("qoi")[0]) as decoded:
        assert decoded.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(decoded.convert("L")), grey_levels)
