"""The ``kpal sample`` and ``kpal plot`` commands, through click's CliRunner."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from kpal.cli import cli
from kpal.cluster.gmm import sample_image


@pytest.fixture
def photo_png(tmp_path, photo):
    path = tmp_path / "photo.png"
    photo.save(path)
    return path


def test_sample_writes_an_image_of_the_input_size(runner, photo_png, photo, tmp_path):
    out = tmp_path / "drawn.png"
    result = runner.invoke(
        cli, ["sample", str(photo_png), "-k", "4", "--seed", "3", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    with Image.open(out) as drawn:
        assert drawn.mode == "RGB" and drawn.size == photo.size
        pixels = np.asarray(drawn)
    # Exactly what the library draws: the CLI is a shell around sample_image.
    np.testing.assert_array_equal(pixels, sample_image(np.asarray(photo), 4, seed=3))
    # Same colour distribution, no spatial structure: means agree, neighbours do not.
    source = np.asarray(photo).reshape(-1, 3).astype(float)
    assert np.all(np.abs(pixels.reshape(-1, 3).mean(axis=0) - source.mean(axis=0)) < 8)
    flat = pixels.astype(float)
    horizontal = np.corrcoef(flat[:, :-1, 0].ravel(), flat[:, 1:, 0].ravel())[0, 1]
    original = np.asarray(photo).astype(float)
    original_h = np.corrcoef(original[:, :-1, 0].ravel(), original[:, 1:, 0].ravel())[0, 1]
    assert abs(horizontal) < 0.15 < original_h


def test_sample_is_repeatable_and_seeded(runner, photo_png, tmp_path):
    paths = [tmp_path / name for name in ("a.png", "b.png", "c.png")]
    for path, seed in zip(paths, ("1", "1", "2"), strict=True):
        args = ["sample", str(photo_png), "-k", "3", "--seed", seed, "-o", str(path)]
        assert runner.invoke(cli, args).exit_code == 0
    a, b, c = (np.asarray(Image.open(p)) for p in paths)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_sample_single_colour_notes_it(runner, tmp_path):
    src = tmp_path / "flat.png"
    Image.new("RGB", (9, 7), (10, 120, 250)).save(src)
    out = tmp_path / "out.png"
    result = runner.invoke(cli, ["sample", str(src), "-k", "4", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"kpal: warning: {src}: only 1 distinct colour for k=4" in result.stderr
    np.testing.assert_array_equal(np.asarray(Image.open(out)), np.full((7, 9, 3), [10, 120, 250]))


def test_sample_of_an_image_with_transparency_is_drawn_over_white(runner, tmp_path):
    # It raised a ValueError traceback: the mixture is fitted to the colours seen over white.
    rng = np.random.default_rng(4)
    rgba = rng.integers(0, 256, (12, 10, 4), dtype=np.uint8)
    rgba[..., 3] = np.where(rng.random((12, 10)) < 0.5, 0, 255)
    src, out = tmp_path / "cut.png", tmp_path / "out.png"
    Image.fromarray(rgba, "RGBA").save(src)
    result = runner.invoke(cli, ["sample", str(src), "-k", "3", "--seed", "5", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (
        f"note: {src} has transparency; the sample is drawn from it over white")
    over_white = np.where(rgba[..., 3:] == 255, rgba[..., :3], 255).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(Image.open(out)),
                                  sample_image(over_white, 3, seed=5))


def test_sample_of_a_16_bit_image_names_the_file(runner, tmp_path):
    src = tmp_path / "deep.png"
    Image.new("I;16", (6, 5), 3000).save(src)
    result = runner.invoke(cli, ["sample", str(src), "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 1
    assert result.output.startswith(f"kpal: error: {src}: mode I;16 (samples wider than 8 bits)")


def test_sample_errors(runner, photo_png, tmp_path):
    result = runner.invoke(cli, ["sample", str(photo_png), "-k", "4"])
    assert result.exit_code == 2 and "Missing option '-o'" in result.output
    result = runner.invoke(
        cli, ["sample", str(photo_png), "-k", "0", "-o", str(tmp_path / "x.png")]
    )
    assert result.exit_code == 2
    assert "-k/--colors: k=0 must be an integer between 1 and 256" in result.output
    result = runner.invoke(cli, ["sample", str(photo_png), "-o", str(tmp_path / "x.what")])
    assert result.exit_code == 2
    assert "kpal: error: " in result.output and "unknown image extension '.what'" in result.output
    existing = tmp_path / "taken.png"
    existing.write_bytes(b"keep")
    result = runner.invoke(cli, ["sample", str(photo_png), "-o", str(existing)])
    assert result.exit_code == 2 and "file exists (use --force to overwrite)" in result.output
    assert existing.read_bytes() == b"keep"


@pytest.mark.parametrize("kind", ["compare", "palette", "scatter", "iterations", "curve"])
def test_plot_each_kind(runner, photo_png, tmp_path, kind):
    pytest.importorskip("matplotlib")
    out = tmp_path / f"{kind}.png"
    k = [] if kind == "curve" else ["-k", "4"]  # the curve measures every k
    args = ["plot", str(photo_png), *k, "--kind", kind, "-o", str(out), "--size", "320x240"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    with Image.open(out) as figure:
        assert figure.format == "PNG" and figure.size == (320, 240)
        colours = np.unique(np.asarray(figure.convert("RGB")).reshape(-1, 3), axis=0)
    assert colours.shape[0] > 20


def test_plot_compare_reports_the_real_file_sizes(runner, photo_png, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import kpal
    from kpal import plot as plots

    captured = {}
    original = plots.compare

    def spy(*args, **kwargs):
        captured.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(plots, "compare", spy)
    out = tmp_path / "c.svg"
    args = ["plot", str(photo_png), "-k", "8", "--kind", "compare", "-o", str(out)]
    result = runner.invoke(cli, [*args, "--method", "gmm"])
    assert result.exit_code == 0, result.output
    assert out.read_text().lstrip().startswith("<?xml")
    assert captured["original_bytes"] == photo_png.stat().st_size
    expected = kpal.encode(photo_png, 8, method="gmm", max_iter=100, tol=1e-3)
    assert captured["compressed_bytes"] == len(expected)


def test_plot_without_matplotlib_says_what_to_install(runner, photo_png, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "p.png"
    result = runner.invoke(cli, ["plot", str(photo_png), "--kind", "palette", "-o", str(out)])
    assert result.exit_code == 1
    assert result.output.strip().endswith(
        'kpal: error: plots need matplotlib, which is not installed: pip install "kpal[plot]"'
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "pie"], "Invalid value for '--kind'"),
        (["--kind", "palette", "--size", "big"], "'big' must be WIDTHxHEIGHT in pixels"),
        (["--kind", "palette", "--size", "20x20"], "must be between 50x50 and 10000x10000"),
        (["--kind", "iterations", "--method", "gmm"], "--kind iterations shows k-means"),
        (["--kind", "palette", "-o", "fig.jpg"], "figures are written as .png, .svg or .pdf"),
        (["--kind", "scatter", "--dither", "fs"], "dithering does not change: drop --dither"),
    ],
)
def test_plot_usage_errors(runner, photo_png, tmp_path, args, message):
    if "-o" not in args:
        args = [*args, "-o", str(tmp_path / "fig.png")]
    result = runner.invoke(cli, ["plot", str(photo_png), *args])
    assert result.exit_code == 2
    assert message in result.output


def write_png(path, array):
    Image.fromarray(array, "RGB").save(path)
    return path


@pytest.mark.parametrize("kind", ["compare", "palette", "scatter", "iterations", "curve"])
@pytest.mark.parametrize("shape", [(1, 1), (20_000, 1), (1, 20_000)])
def test_plot_odd_shapes(runner, tmp_path, kind, shape):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    src = write_png(tmp_path / "odd.png", image)
    out = tmp_path / "figure.png"
    k = [] if kind == "curve" else ["-k", "4"]  # the curve measures every k
    result = runner.invoke(cli, ["plot", str(src), "--kind", kind, *k, "-o", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as figure:
        assert figure.format == "PNG"
        colours = np.unique(np.asarray(figure.convert("RGB")).reshape(-1, 3), axis=0)
    assert colours.shape[0] > 2


def test_plot_too_small_size_is_a_one_line_error(runner, photo_png, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "small.png"
    args = ["plot", str(photo_png), "--kind", "compare", "-o", str(out), "--size", "100x60"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 2  # a usage error, found before the fit
    assert ("--size: figure size 100x60 is too small for the compare figure (at least "
            "240x160 pixels)") in result.output
    assert not out.exists()


@pytest.mark.parametrize(("kind", "args", "title"), [
    ("palette", ["--method", "gmm"], "Palette: 4 colours (Gaussian mixture), by share of pixels"),
    ("compare", ["--space", "oklab"], "Compressed to 4 colours (k-means in Oklab)"),
    ("scatter", [], "the 4 palette colours (stars, k-means)"),
    ("palette", ["--dither", "fs"], "Palette: 4 colours (k-means, Floyd-Steinberg dithering)"),
])
def test_plot_titles_say_how_the_palette_was_made(runner, photo_png, tmp_path, monkeypatch,
                                                  kind, args, title):
    pytest.importorskip("matplotlib")
    from kpal import plot

    figures = []
    drawn = getattr(plot, kind)

    def keep(*a, **kw):
        figures.append(drawn(*a, **kw))
        return figures[-1]

    monkeypatch.setattr(plot, kind, keep)
    out = tmp_path / "f.png"
    result = runner.invoke(cli, ["plot", str(photo_png), "--kind", kind, "-k", "4", *args,
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    fig, = figures
    texts = [t.get_text() for t in fig.texts] + [ax.get_title() for ax in fig.axes]
    if fig._suptitle is not None:
        texts.append(fig._suptitle.get_text())
    assert any(title in " ".join(t.split()) for t in texts), texts


def test_plot_keeps_a_palette_images_own_palette_as_encode_does(runner, photo_png, tmp_path,
                                                                monkeypatch):
    """-k at least the image's colours keeps them (kpal encode's rule); fewer refits."""
    pytest.importorskip("matplotlib")
    from kpal import plot

    src = tmp_path / "p16.png"
    with Image.open(photo_png) as im:
        im.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(src)
    titles = []
    drawn = plot.palette

    def keep(*a, **kw):
        fig = drawn(*a, **kw)
        titles.append(" ".join(fig._suptitle.get_text().split()))
        return fig

    monkeypatch.setattr(plot, "palette", keep)
    for k in ("64", "8"):
        result = runner.invoke(cli, ["plot", str(src), "--kind", "palette", "-k", k, "-o",
                                     str(tmp_path / f"p{k}.png")])
        assert result.exit_code == 0, result.output
    assert titles == ["Palette: 16 colours (the image's own palette), by share of pixels",
                      "Palette: 8 colours (k-means), by share of pixels"]


def test_plot_of_a_transparent_palette_image_names_its_own_palette(runner, photo_png,
                                                                  tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from kpal import plot

    src = tmp_path / "p16t.png"
    with Image.open(photo_png) as im:
        im.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(
            src, transparency=3)
    titles = []
    drawn = plot.compare

    def keep(*a, **kw):
        fig = drawn(*a, **kw)
        titles.append([ax.get_title() for ax in fig.axes])
        return fig

    monkeypatch.setattr(plot, "compare", keep)
    result = runner.invoke(cli, ["plot", str(src), "--kind", "compare", "-k", "32", "-q",
                                 "-o", str(tmp_path / "c.png")])
    assert result.exit_code == 0, result.output
    assert "Compressed to 16 colours (the image's own palette)" in titles[0]


def test_compare_names_metadata_when_it_outweighs_the_pixels():
    pytest.importorskip("matplotlib")
    from kpal import plot

    image = np.zeros((4, 4, 3), np.uint8)
    fig = plot.compare(image, quantization=(np.zeros((1, 3), np.uint8),
                                            np.zeros(16, np.uint8)),
                       compressed_bytes=700, metadata_bytes=596)
    caption = " ".join(t.get_text() for t in fig.texts)
    assert "(the palette, header and metadata outweigh what the indices save)" in caption
