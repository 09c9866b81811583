"""The figures' inputs: images go through the codec's mode rules (a 16-bit image is refused,
not clipped), transparency is flattened over white as on the command line, and options a
figure cannot show are refused instead of ignored."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kpal.cli import cli
from kpal.errors import KpalError, OptionError

pytest.importorskip("matplotlib")

from kpal import plot  # noqa: E402 - needs matplotlib


def test_a_16_bit_image_is_refused_with_advice():
    image = Image.new("I;16", (4, 3))
    image.putdata(list(range(0, 60000, 5000)))
    with pytest.raises(KpalError, match="scale the values to 0..255"):
        plot.palette(image, k=2)


def test_an_empty_array_is_a_value_error():
    with pytest.raises(ValueError, match="height and width >= 1"):
        plot.palette(np.zeros((0, 0, 3), dtype=np.uint8), k=2)


def test_transparency_is_flattened_over_white():
    pixels = np.zeros((2, 3, 4), dtype=np.uint8)
    pixels[..., 0] = 200  # a colour hidden under alpha 0 ...
    pixels[0, 0, 3] = 255  # ... except one opaque pixel
    rgb = plot._rgb_array(Image.fromarray(pixels, "RGBA"))
    assert rgb[0, 0].tolist() == [200, 0, 0]
    assert (rgb.reshape(-1, 3)[1:] == 255).all()


@pytest.mark.parametrize("kind", ["curve", "iterations"])
@pytest.mark.parametrize("flag", [["--space", "oklab"], ["--dither", "fs"]])
def test_curve_and_iterations_refuse_what_they_cannot_show(runner, tmp_path, kind, flag):
    source = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
        source)
    out = tmp_path / "fig.png"
    result = runner.invoke(cli, ["plot", str(source), "--kind", kind, "-o", str(out), *flag])
    assert result.exit_code == 2
    assert f"--kind {kind} measures undithered k-means in RGB" in result.output
    assert not out.exists()


def test_a_palette_image_keeps_its_own_palette_unless_k_is_given(runner, tmp_path,
                                                                 monkeypatch):
    rng = np.random.default_rng(3)
    colours = rng.integers(0, 256, (100, 3), dtype=np.uint8)
    image = Image.fromarray(rng.integers(0, 100, (40, 50)).astype(np.uint8), "P")
    image.putpalette(colours.reshape(-1).tolist())
    source = tmp_path / "p100.png"
    image.save(source)
    seen = []
    real = plot.palette

    def spy(pixels, *args, quantization=None, **kwargs):
        seen.append(len(quantization[0]))
        return real(pixels, *args, quantization=quantization, **kwargs)

    monkeypatch.setattr(plot, "palette", spy)
    for extra, expected in (([], 100), (["-k", "8"], 8)):
        result = runner.invoke(cli, ["plot", str(source), "--kind", "palette", "-o",
                                     str(tmp_path / "fig.png"), "--force", *extra])
        assert result.exit_code == 0, result.output
        assert seen[-1] == expected


def test_matplotlib_imsave_writes_a_kpal_file(tmp_path):
    """imsave passes dpi= to every Pillow writer: the plugin ignores it."""
    import matplotlib

    import kpal  # noqa: F401 - registers the plugin

    matplotlib.use("Agg")
    from matplotlib import pyplot

    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), np.uint8)
    pyplot.imsave(tmp_path / "figure.kpal", pixels)
    with Image.open(tmp_path / "figure.kpal") as im:
        assert im.format == "KPAL" and im.size == (30, 20) and im.info["k"] == 16


def test_figures_of_a_photo_with_a_wide_gamut_profile_are_in_srgb(tmp_path, monkeypatch):
    """A figure is an untagged sRGB image: the photo's colours are converted, with a note."""
    import io

    from click.testing import CliRunner
    from PIL import ImageCms

    from kpal import plot
    from kpal.cli import cli

    from .test_decode_profile import swapped_primaries_profile

    profile = swapped_primaries_profile()
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    src = tmp_path / "wide.png"
    Image.fromarray(raw).save(src, icc_profile=profile)
    want = np.asarray(ImageCms.profileToProfile(
        Image.fromarray(raw), ImageCms.ImageCmsProfile(io.BytesIO(profile)),
        ImageCms.createProfile("sRGB"), outputMode="RGB"))
    seen = []

    def spy(real):
        def figure(rgb, *args, **kwargs):
            seen.append(rgb)
            return real(rgb, *args, **kwargs)
        return figure

    for kind in ("compare", "palette", "scatter"):
        monkeypatch.setattr(plot, kind, spy(getattr(plot, kind)))
        result = CliRunner().invoke(cli, ["plot", str(src), "--kind", kind, "-k", "4", "-o",
                                          str(tmp_path / f"{kind}.png")])
        assert result.exit_code == 0, result.output
        assert "has an ICC profile: the figures show its colours converted to sRGB" \
            in result.output
    for rgb in seen:
        assert np.array_equal(rgb, want)


@pytest.mark.parametrize(("ks", "match"), [
    ((2, 300), r"^ks=\[2, 300\]: k=300 must be an integer between 1 and 256$"),
    ((2, 8.5), r"^ks=\[2, 8.5\]: k=8.5 must be an integer"),
    ((0,), r"^ks=\[0\]: k=0 must be"),
    ((), r"^ks=\[\] must hold at least one k"),
])
def test_curve_refuses_ks_as_an_option_error(ks, match):
    """A bad k in ks is an OptionError naming the list and the value, as -k's is."""
    image = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(OptionError, match=match):
        plot.curve(image, ks=ks)
