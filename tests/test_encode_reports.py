"""What encode reports and refuses in corner cases: a quality target that was only met at
its lower bound, k = 1 on an image with a transparency mask, the Pillow plugin's
icc_profile keyword, and the API's refusal to overwrite."""

from __future__ import annotations

import errno
import io
import warnings

import numpy as np
import pytest
from PIL import Image

import kpal
from kpal.cli import cli


def test_a_quality_target_met_only_at_its_lower_bound_says_so(runner, tmp_path):
    rng = np.random.default_rng(5)
    source = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(source)
    result = runner.invoke(cli, ["encode", str(source), "--quality", "5-90", "-o",
                                 str(tmp_path / "q.kpal")])
    assert result.exit_code == 0, result.output
    assert "short of 90 dB and within the accepted 5" in result.output
    assert "smallest k reaching" not in result.output


def _masked(tmp_path):
    indices = np.random.default_rng(0).integers(0, 4, (6, 7)).astype(np.uint8)
    image = Image.fromarray(indices, "P")
    image.putpalette([10, 20, 30, 200, 0, 0, 0, 200, 0, 0, 0, 200])
    path = tmp_path / "mask.png"
    image.save(path, transparency=0)
    return path


def test_k1_on_a_masked_image_warns_that_the_mask_is_lost(runner, tmp_path):
    result = runner.invoke(cli, ["encode", str(_masked(tmp_path)), "-k", "1", "-o",
                                 str(tmp_path / "one.kpal")])
    assert result.exit_code == 0, result.output
    assert "k=1: one palette entry cannot keep both the fully transparent pixels" in \
        result.output
    assert "own palette kept" not in result.output  # the label of a lossless palette image


def test_the_plugin_stores_no_profile_when_told_none(tmp_path):
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (5, 6, 3), np.uint8))
    image.info["icc_profile"] = profile
    for value in (None, b""):
        path = tmp_path / "x.kpal"
        image.save(path, k=4, icc_profile=value)
        with Image.open(path) as back:
            assert "icc_profile" not in back.info
    image.save(path, k=4)  # no keyword: the image's own profile
    with Image.open(path) as back:
        assert back.info["icc_profile"] == profile


def test_save_refuses_an_existing_file_with_its_errno(tmp_path):
    path = tmp_path / "x.kpal"
    pixels = np.random.default_rng(2).integers(0, 256, (5, 6, 3), np.uint8)
    kpal.save(pixels, path, k=4)
    with pytest.raises(FileExistsError) as caught:
        kpal.save(pixels, path, k=4)
    assert caught.value.errno == errno.EEXIST
    assert "pass force=True to overwrite" in str(caught.value)
    assert "None" not in str(caught.value)


def test_a_profile_with_trailing_padding_is_stored_not_converted():
    from PIL import ImageCms

    from tests.test_decode_profile import swapped_primaries_profile

    profile = swapped_primaries_profile()
    pixels = np.array([[[200, 30, 30], [30, 200, 30], [1, 2, 3]]], dtype=np.uint8)
    image = Image.fromarray(pixels)
    image.info["icc_profile"] = profile + b"\0" * 4
    with pytest.warns(UserWarning, match="lossless"):
        back = kpal.decode(kpal.encode(image, k=4))
    assert back.info["icc_profile"] == profile
    assert np.array_equal(np.asarray(back.convert("RGB")), pixels)  # not converted to sRGB
    assert ImageCms.ImageCmsProfile(io.BytesIO(back.info["icc_profile"])) is not None


def _grey_photo(tmp_path):
    rng = np.random.default_rng(2)
    ramp = np.linspace(0, 255, 64)[None, :] + rng.normal(0, 6, (48, 64))
    path = tmp_path / "grey.png"
    Image.fromarray(np.clip(ramp, 0, 255).astype(np.uint8), "L").save(path)
    return path


@pytest.mark.parametrize("k, smaller", [(16, True), (256, False)])
def test_a_grey_image_is_also_measured_against_raw_8_bit_grey(runner, tmp_path, k, smaller):
    out = tmp_path / "grey.kpal"
    result = runner.invoke(cli, ["encode", str(_grey_photo(tmp_path)), "-k", str(k), "-o",
                                 str(out)])
    assert result.exit_code == 0, result.output
    assert "raw 8-bit grey 3,072 bytes (every palette entry is grey)" in result.output
    size = out.stat().st_size
    expected = (f"{3072 / size:,.2f}× smaller than raw 8-bit grey" if smaller
                else f"{size / 3072:,.2f}× larger than raw 8-bit grey (the palette and header")
    assert expected in result.output
    assert smaller == (size < 3072)
    info = runner.invoke(cli, ["info", str(out)])
    assert info.exit_code == 0, info.output
    assert f"every palette entry is grey: {expected}" in info.output


def test_a_colour_image_has_no_grey_comparison(runner, tmp_path):
    source = tmp_path / "colour.png"
    rgb = np.random.default_rng(4).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(source)
    out = tmp_path / "colour.kpal"
    result = runner.invoke(cli, ["encode", str(source), "-k", "8", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "grey" not in result.output
    assert "grey" not in runner.invoke(cli, ["info", str(out)]).output


def test_a_file_larger_than_raw_blames_the_palette_and_header(runner, tmp_path):
    """7x5 pixels, 35 colours at k = 256: the palette alone outweighs raw 24-bit."""
    src = tmp_path / "tiny.png"
    Image.fromarray(np.arange(105, dtype=np.uint8).reshape(5, 7, 3), "RGB").save(src)
    out = tmp_path / "tiny.kpal"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = runner.invoke(cli, ["encode", str(src), "-k", "256", "-o", str(out)])
    assert result.exit_code == 0, result.output
    ratio = f"{out.stat().st_size / 105:.2f}× larger than raw 24-bit"
    line = (f"{ratio} (the palette and header outweigh what the indices save)")
    assert line in result.output
    assert line in runner.invoke(cli, ["info", str(out)]).output


def test_the_fixed_width_comparison_counts_this_files_header(runner, tmp_path):
    """Radix at k = 4 is the fixed-width payload bit for bit: an RGBA file (a 31-byte
    header) compares as 1.000x, not 1.001x against a version 1 file's overhead."""
    rgba = np.random.default_rng(6).integers(0, 256, (30, 40, 4), dtype=np.uint8)
    rgba[:10, :, 3] = 0
    src = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(src)
    sizes = {}
    for coding in ("fixed", "radix"):
        out = tmp_path / f"{coding}.kpal"
        result = runner.invoke(cli, ["encode", str(src), "-k", "4", "--coding", coding,
                                     "-o", str(out)])
        assert result.exit_code == 0, result.output
        sizes[coding] = (out.stat().st_size, result.output)
    assert sizes["radix"][0] == sizes["fixed"][0]
    assert f"{sizes['radix'][0]:,} bytes, 1.000× the fixed-width file" in sizes["radix"][1]


def test_info_lists_twenty_metadata_blocks_and_counts_the_rest(runner, tmp_path):
    """A file of many empty skippable blocks prints 21 metadata lines, not one a block."""
    from kpal import coding as codings
    from kpal import container

    labels = np.zeros((1, 3), np.uint8)
    palette = np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
    metadata = [("zzzz", b"")] * 5000
    payload = codings.get("fixed").encode(labels, 2)
    header = container.Header.for_image(
        coding=0, k=2, width=3, height=1, payload_length=len(payload),
        metadata_length=len(container.pack_metadata(metadata)))
    path = tmp_path / "blocks.kpal"
    path.write_bytes(container.write(header, palette, payload, metadata=metadata))
    result = runner.invoke(cli, ["info", str(path)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.lstrip().startswith("metadata")]
    assert len(lines) == 21
    assert lines[0].split(None, 1)[1] == "zzzz 0 bytes, unknown to this reader: skipped"
    assert lines[-1].split(None, 1)[1] == "4,980 more blocks, 0 bytes in all"


def test_a_file_larger_than_raw_for_its_metadata_says_so(runner, tmp_path):
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "tiny.png"
    pixels = np.zeros((6, 5, 3), np.uint8)
    pixels[:, 2:] = 200
    Image.fromarray(pixels, "RGB").save(src, icc_profile=profile)
    out = tmp_path / "tiny.kpal"
    result = runner.invoke(cli, ["encode", str(src), "-k", "2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    why = "(the palette, header and metadata outweigh what the indices save)"
    assert why in result.output
    assert why in runner.invoke(cli, ["info", str(out)]).output


def test_the_report_lists_the_metadata_a_kpal_file_does_not_hold(runner, tmp_path):
    exif = Image.Exif()
    exif[0x8298] = "© a photographer"  # Copyright
    exif[0x0110] = "a camera"  # Model
    source = tmp_path / "photo.jpg"
    Image.new("RGB", (8, 6), (40, 90, 200)).save(source, exif=exif.tobytes(),
                                                  comment=b"shot at dawn")
    result = runner.invoke(cli, ["encode", str(source), "-k", "2", "-o",
                                 str(tmp_path / "p.kpal")])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "not stored" in line]
    assert rows == [f"  not stored     EXIF ({len(exif.tobytes())} bytes), comment (12 bytes): "
                    "a .kpal file holds an ICC profile, no other metadata"]
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 6)).save(plain)
    result = runner.invoke(cli, ["encode", str(plain), "-o", str(tmp_path / "q.kpal")])
    assert "not stored" not in result.output


def _grey_with_profile(tmp_path):
    from tests.test_codec_defects import gray_profile

    ramp = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (4, 1))
    source = tmp_path / "grey.png"
    Image.fromarray(ramp, "L").save(source, icc_profile=gray_profile())
    return source


def test_a_grey_profile_converted_is_said_even_when_quiet(runner, tmp_path):
    source = _grey_with_profile(tmp_path)
    result = runner.invoke(cli, ["encode", str(source), "-k", "4", "-o",
                                 str(tmp_path / "g.kpal")])
    assert result.exit_code == 0, result.output
    assert (f"kpal: warning: {source}: the image's ICC profile ('linear grey', a GRAY "
            "profile) was applied: its pixels were converted to sRGB") in result.stderr
    result = runner.invoke(cli, ["encode", str(source), "-k", "4", "-q", "-f", "-o",
                                 str(tmp_path / "g.kpal")])
    assert result.exit_code == 0 and result.stdout == ""
    # -q drops the report, not what happened to the colours (as for a dropped profile)
    assert "a GRAY profile) was applied" in result.stderr


def test_the_palette_figure_shows_the_colours_encode_stores_for_a_grey_profile(runner,
                                                                               tmp_path):
    pytest.importorskip("matplotlib")
    from kpal import plot

    source = _grey_with_profile(tmp_path)
    seen = {}
    real = plot.palette

    def spy(image, *args, **kwargs):
        seen["pixels"] = np.asarray(image)
        return real(image, *args, **kwargs)

    import unittest.mock

    with unittest.mock.patch.object(plot, "palette", spy):
        result = runner.invoke(cli, ["plot", str(source), "--kind", "palette", "-k", "256",
                                     "-o", str(tmp_path / "p.png")])
    assert result.exit_code == 0, result.output
    assert "the figures show its colours converted to sRGB" in result.stderr
    with pytest.warns(UserWarning):
        stored = kpal.decode(kpal.encode(source, 256)).convert("RGB")
    np.testing.assert_array_equal(seen["pixels"], np.asarray(stored))


def test_png_text_chunks_are_listed_as_not_stored(runner, tmp_path):
    from PIL import PngImagePlugin

    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "hello there")
    text.add_itxt("Author", "Ann")
    source = tmp_path / "t.png"
    Image.new("RGB", (8, 6), (9, 9, 9)).save(source, pnginfo=text)
    result = runner.invoke(cli, ["encode", str(source), "-k", "2", "-o", str(tmp_path / "t.kpal")])
    assert result.exit_code == 0, result.output
    assert ("  not stored     PNG text Comment, Author (14 bytes): a .kpal file holds an ICC "
            "profile, no other metadata") in result.stdout.splitlines()


def test_plot_of_a_transparent_grey_profiled_image_says_each_thing_once(runner, tmp_path):
    pytest.importorskip("matplotlib")
    from tests.test_codec_defects import gray_profile

    pixels = np.zeros((16, 32, 2), np.uint8)
    pixels[..., 0] = np.arange(32) * 8
    pixels[..., 1] = np.linspace(0, 255, 16)[:, None].astype(np.uint8)
    source = tmp_path / "greyA.png"
    Image.fromarray(pixels, "LA").save(source, icc_profile=gray_profile())
    for kind, k in (("compare", ["-k", "4"]), ("curve", [])):
        result = runner.invoke(cli, ["plot", str(source), "--kind", kind, *k, "-o",
                                     str(tmp_path / f"{kind}.png")])
        assert result.exit_code == 0, result.output
        assert result.stderr.count("ICC profile") == 1, result.stderr


def test_a_quiet_batch_still_says_a_profile_was_dropped(runner, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (6, 4), (10, 20, 30)).save(folder / "junk.png", icc_profile=b"not a profile")
    Image.new("RGB", (6, 4), (10, 20, 30)).save(folder / "plain.png")
    result = runner.invoke(cli, ["encode", str(folder), "-o", str(tmp_path / "out"), "-q",
                                 "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"kpal: warning: {folder / 'junk.png'}: the image's ICC profile is dropped")
