"""Encodes that need sRGB colours (a given palette, oklab, a shared palette) apply a
profile that is not sRGB first, instead of mixing profile-space values with sRGB ones."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

import kpal
from kpal.cli import cli
from kpal.codec import is_srgb_profile, srgb_array
from kpal.palettes import fit_palette, load_palette

from .test_codec_defects import srgb_profile
from .test_decode_profile import _srgb, swapped_primaries_profile

PALETTE = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (120, 120, 120)]


def _photo() -> np.ndarray:
    """Reds, greens, blues and greys: the swapped profile moves the first two far."""
    rng = np.random.default_rng(3)
    base = np.array(PALETTE, dtype=np.int16)[rng.integers(0, 4, size=(24, 30))]
    return np.clip(base + rng.integers(-12, 13, size=base.shape), 0, 255).astype(np.uint8)


def _profiled(profile: bytes) -> Image.Image:
    image = Image.fromarray(_photo())
    image.info["icc_profile"] = profile
    return image


def _nearest(rgb: np.ndarray, palette) -> np.ndarray:
    entries = np.asarray(palette, dtype=np.int64)
    d = ((rgb.reshape(-1, 1, 3).astype(np.int64) - entries[None]) ** 2).sum(axis=2)
    return entries[d.argmin(axis=1)].reshape(rgb.shape).astype(np.uint8)


def test_the_probe_tells_srgb_from_another_space():
    assert is_srgb_profile(srgb_profile())
    assert not is_srgb_profile(swapped_primaries_profile())
    assert is_srgb_profile(b"not a profile at all")  # unreadable: taken as it is


def test_srgb_array_converts_only_another_space():
    photo = _photo()
    same, converted = srgb_array(photo, srgb_profile())
    assert same is photo and not converted
    moved, converted = srgb_array(photo, swapped_primaries_profile())
    assert converted and np.array_equal(moved, _srgb(photo, swapped_primaries_profile()))


@pytest.mark.parametrize("source", ["image", "array"])
def test_a_given_palette_maps_the_srgb_colours_of_a_profiled_photo(source):
    profile = swapped_primaries_profile()
    image = _profiled(profile)
    given = image if source == "image" else np.asarray(image)
    with pytest.warns(kpal.KpalWarning, match=r"profile \(.*\) was applied: its pixels were "
                      r"converted to sRGB and no profile is stored, because the given "
                      r"palette's colours are sRGB"):
        data = kpal.encode(given, palette=PALETTE, icc_profile=profile)
    back = kpal.decode(data)
    assert "icc_profile" not in back.info
    expected = _nearest(_srgb(_photo(), profile), PALETTE)
    assert np.array_equal(np.asarray(back.convert("RGB")), expected)
    # Without the conversion the reds would have taken the red entry.
    assert not np.array_equal(expected, _nearest(_photo(), PALETTE))


def test_an_srgb_profile_is_kept_with_a_given_palette():
    image = _profiled(srgb_profile())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = kpal.encode(image, palette=PALETTE)
    back = kpal.decode(data)
    assert back.info["icc_profile"] == srgb_profile()
    assert np.array_equal(np.asarray(back.convert("RGB")), _nearest(_photo(), PALETTE))


def test_oklab_clusters_the_srgb_colours_of_a_profiled_photo():
    profile = swapped_primaries_profile()
    with pytest.warns(kpal.KpalWarning, match="because oklab is computed from sRGB colours"):
        data = kpal.encode(_profiled(profile), k=8, space="oklab")
    back = kpal.decode(data)
    assert "icc_profile" not in back.info
    assert np.array_equal(np.asarray(back.convert("RGB")),
                          np.asarray(kpal.decode(kpal.encode(_srgb(_photo(), profile), k=8,
                                                             space="oklab")).convert("RGB")))


def test_rgb_k_means_keeps_the_profile_and_the_values_as_before():
    profile = swapped_primaries_profile()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = kpal.encode(_profiled(profile), k=8)
    assert kpal.decode(data).info["icc_profile"] == profile


def test_a_shared_palette_is_fitted_to_srgb_colours():
    profile = swapped_primaries_profile()
    converted = _srgb(_photo(), profile)
    expected = fit_palette([converted, _photo()], 6)
    assert np.array_equal(fit_palette([_profiled(profile), _photo()], 6), expected)
    # and an sRGB-tagged image is taken as it is
    assert np.array_equal(fit_palette([_profiled(srgb_profile()), _photo()], 6),
                          fit_palette([_photo(), _photo()], 6))


def test_kpal_palette_converts_a_profiled_photo_with_a_note(runner, tmp_path):
    profile = swapped_primaries_profile()
    wide, plain = tmp_path / "wide.png", tmp_path / "plain.png"
    _profiled(profile).save(wide, icc_profile=profile)
    Image.fromarray(_photo()).save(plain)
    out = tmp_path / "shared.gpl"
    result = runner.invoke(cli, ["palette", str(wide), str(plain), "-k", "6", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"{wide}: its ICC profile is not sRGB: its colours were converted to sRGB" \
        in result.stderr
    assert str(plain) not in result.stderr
    expected = fit_palette([_srgb(_photo(), profile), _photo()], 6)
    assert np.array_equal(load_palette(str(out)), expected)


def test_encode_palette_on_the_command_line_writes_srgb(runner, tmp_path):
    profile = swapped_primaries_profile()
    wide = tmp_path / "wide.png"
    _profiled(profile).save(wide, icc_profile=profile)
    hexes = tmp_path / "p.hex"
    hexes.write_text("".join(f"#{r:02x}{g:02x}{b:02x}\n" for r, g, b in PALETTE))
    out = tmp_path / "wide.kpal"
    result = runner.invoke(cli, ["encode", str(wide), "--palette", str(hexes), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "no profile is stored, because the given palette's colours are sRGB" \
        in result.output
    back = kpal.decode(out)
    assert "icc_profile" not in back.info
    assert np.array_equal(np.asarray(back.convert("RGB")),
                          _nearest(_srgb(_photo(), profile), PALETTE))


@pytest.mark.parametrize("coding", ["fixed", "entropy"])
@pytest.mark.parametrize("alpha", [False, True])
def test_a_size_target_counts_the_profile_and_the_longer_header(coding, alpha):
    from kpal.choose import SizeError

    profile = swapped_primaries_profile()
    pixels = _photo()
    if alpha:
        mask = np.full(pixels.shape[:2], 255, np.uint8)
        mask[:, :5] = 0
        pixels = np.dstack([pixels, mask])
    image = Image.fromarray(pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", kpal.KpalWarning)  # k=1 loses the mask: said
        sizes = {k: len(kpal.encode(image, k=k, coding=coding, icc_profile=profile))
                 for k in (1, 8, 9)}
    assert sizes[8] < sizes[9]
    data = kpal.encode(image, max_size=sizes[8], coding=coding, icc_profile=profile)
    assert len(data) <= sizes[8]
    assert kpal.decode(data).info["k"] >= 8
    assert kpal.decode(data).info["icc_profile"] == profile
    with pytest.raises(SizeError):
        kpal.encode(image, max_size=sizes[1] - 1, coding=coding, icc_profile=profile)


def _cut_out(profile: bytes) -> Image.Image:
    """One opaque colour with its two left columns fully transparent, tagged with ``profile``."""
    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[..., :3] = (200, 60, 40)
    rgba[..., 3] = 255
    rgba[:, :2, 3] = 0
    image = Image.fromarray(rgba, "RGBA")
    image.info["icc_profile"] = profile
    return image


def test_decoding_a_profiled_transparent_file_to_gif_converts_its_palette(runner, tmp_path):
    profile = swapped_primaries_profile()
    source = tmp_path / "cut.kpal"
    image = _cut_out(profile)
    with pytest.warns(kpal.KpalWarning, match="lossless"):
        kpal.save(image, source, k=4)

    out = tmp_path / "cut.gif"
    result = runner.invoke(cli, ["decode", str(source), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "GIF cannot hold the ICC profile: the palette was converted to sRGB" in result.output
    with Image.open(out) as back:
        got = np.asarray(back.convert("RGBA"))
    expected = _srgb(np.array([[[200, 60, 40]]], np.uint8), profile)[0, 0]
    assert got[0, 5].tolist() == [*expected.tolist(), 255]
    assert got[0, 0, 3] == 0  # the transparent pixels stay transparent


def _managed(path) -> np.ndarray:
    from PIL import ImageCms

    with Image.open(path) as im:
        rgb = im.convert("RGB")
        profile = im.info.get("icc_profile")
    if not profile:
        return np.asarray(rgb)
    source = ImageCms.ImageCmsProfile(__import__("io").BytesIO(profile))
    return np.asarray(ImageCms.profileToProfile(rgb, source, ImageCms.createProfile("sRGB")))


@pytest.mark.parametrize("where", ["encode", "decode"])
def test_a_background_colour_is_srgb_whatever_the_profile(runner, tmp_path, where):
    profile = swapped_primaries_profile()
    source = tmp_path / "cut.png"
    _cut_out(profile).save(source, icc_profile=profile)
    encoded = tmp_path / "cut.kpal"
    argv = ["encode", str(source), "-k", "4", "-o", str(encoded)]
    runner.invoke(cli, argv + (["--background", "#3366cc"] if where == "encode" else []))
    out = tmp_path / "flat.png"
    argv = ["decode", str(encoded), "-o", str(out)]
    result = runner.invoke(cli, argv + (["--background", "#3366cc"] if where == "decode" else []))
    assert result.exit_code == 0, result.output
    shown = _managed(out)[0, 0]
    assert np.abs(shown.astype(int) - [0x33, 0x66, 0xCC]).max() <= 1, shown


@pytest.mark.parametrize("kind", ["kpal", "png"])
def test_a_palette_file_with_a_profile_gives_srgb_entries(tmp_path, kind):
    profile = swapped_primaries_profile()
    kpal_file = tmp_path / "wide.kpal"
    kpal.save(_profiled(profile), kpal_file, k=6)
    raw = np.asarray(kpal.decode(kpal_file).getpalette("RGB"), np.uint8).reshape(-1, 3)[:6]
    path = kpal_file
    if kind == "png":
        path = tmp_path / "wide.png"
        with Image.open(kpal_file) as im:
            im.save(path, icc_profile=profile)
    with pytest.warns(kpal.KpalWarning, match=f"palette file .*{path.name}: its ICC profile is "
                      "not sRGB: its entries were converted to sRGB"):
        entries = load_palette(str(path))
    assert np.array_equal(entries, _srgb(raw[None], profile)[0])
    # an sRGB-tagged one is read as it is
    kpal.save(_profiled(srgb_profile()), tmp_path / "srgb.kpal", k=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_palette(str(tmp_path / "srgb.kpal"))


def test_the_report_and_info_name_the_stored_profile(runner, tmp_path):
    profile = swapped_primaries_profile()
    source = tmp_path / "wide.png"
    _profiled(profile).save(source, icc_profile=profile)
    out = tmp_path / "wide.kpal"
    result = runner.invoke(cli, ["encode", str(source), "-k", "8", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert ("ICC profile 'sRGB built-in' kept (596 bytes with its block header; palette values "
            "in its space)") in result.output
    info = runner.invoke(cli, ["info", str(out)])
    assert "metadata       iccp 588 bytes ('sRGB built-in')" in info.output
    Image.fromarray(_photo()).save(source, icc_profile=srgb_profile())
    result = runner.invoke(cli, ["encode", str(source), "-k", "8", "-o", str(out), "--force"])
    assert "with its block header)" in result.output  # sRGB: nothing to say about the values


def test_plot_functions_show_a_profiled_image_in_srgb():
    pytest.importorskip("matplotlib")
    from kpal import plot

    profile = swapped_primaries_profile()
    with pytest.warns(kpal.KpalWarning, match="the figure shows its colours converted to sRGB"):
        shown = plot._rgb_array(_profiled(profile))
    assert np.array_equal(shown, _srgb(_photo(), profile))


def test_plot_of_a_profiled_kpal_keeps_its_palette(runner, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from kpal import plot

    profile = swapped_primaries_profile()
    path = tmp_path / "wide.kpal"
    kpal.save(_profiled(profile), path, k=24)
    seen = {}
    real = plot.palette

    def spy(image, quantization=None, **kwargs):
        seen["k"] = len(quantization[0])
        return real(image, quantization=quantization, **kwargs)

    monkeypatch.setattr(plot, "palette", spy)
    result = runner.invoke(cli, ["plot", str(path), "--kind", "palette", "-o",
                                 str(tmp_path / "p.png")])
    assert result.exit_code == 0, result.output
    assert seen["k"] == 24  # the file's palette, not a new 16-colour fit


def _scanner_profile() -> bytes:
    """An RGB input profile with only A2B0 (RGB -> Lab): LittleCMS cannot go into it."""
    from .test_codec_defects import _WHITE_POINT, _description, _profile, lab_lut

    grid = []
    for r in (0, 1):
        for g in (0, 1):
            for b in (0, 1):
                light, a, bb = 100 * (0.3 * r + 0.59 * g + 0.11 * b), 80 * (r - g), 64 * g - 90 * b
                grid += [round(light / 100 * 0xFF00), round((a + 128) * 256),
                         round((bb + 128) * 256)]
    return _profile(b"scnr", b"RGB ", b"Lab ", [(b"desc", _description("toy scanner")),
                                                 _WHITE_POINT, (b"A2B0", lab_lut(grid, 3))])


def test_a_background_over_an_input_only_profile_is_used_as_given(runner, tmp_path):
    profile = _scanner_profile()
    source = tmp_path / "scan.png"
    _cut_out(profile).save(source, icc_profile=profile)
    out = tmp_path / "scan.kpal"
    result = runner.invoke(cli, ["encode", str(source), "-k", "4", "--background", "white",
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "the background colour is used as given" in result.output
    assert np.asarray(kpal.decode(out).convert("RGB"))[0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4, 3)),
                                 np.zeros((4, 4, 1), np.uint8)])
def test_a_bad_array_with_a_profile_gets_the_mode_rules_message(bad):
    with pytest.raises(kpal.KpalError, match="expected uint8"):
        kpal.encode(bad, icc_profile=swapped_primaries_profile(), palette=[(0, 0, 0)])


def test_a_batch_says_a_palette_files_note_once(runner, tmp_path):
    profile = swapped_primaries_profile()
    palette = tmp_path / "wide.kpal"
    kpal.save(_profiled(profile), palette, k=6)
    for name in ("a", "b", "c"):
        Image.fromarray(_photo()).save(tmp_path / f"{name}.png")
    result = runner.invoke(cli, ["encode", *(str(tmp_path / f"{n}.png") for n in "abc"),
                                 "-o", str(tmp_path / "out"), "--palette", str(palette)])
    assert result.exit_code == 0, result.output
    assert result.output.count("its entries were converted to sRGB") == 1
    single = runner.invoke(cli, ["encode", str(tmp_path / "a.png"), "-o",
                                 str(tmp_path / "one.kpal"), "--palette", str(palette)])
    assert single.output.count("its entries were converted to sRGB") == 1
