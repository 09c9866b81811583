"""The command line's ways to decide the palette: --quality, --max-size, --palette, `kpal palette`,
and the remap flags (--dither, --space) as the encode command wires them."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

import kpal
from kpal.cli import QUALITY_EXIT, cli
from kpal.palettes import load_palette


@pytest.fixture
def photo_path(tmp_path):
    rng = np.random.default_rng(5)
    base = np.linspace(0, 255, 40 * 30 * 3).reshape(40, 30, 3)
    noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(noisy, "RGB").save(path)
    return path


def _encode(runner, *args):
    return runner.invoke(cli, ["encode", *map(str, args)])


def test_quality_picks_a_k_and_reports_it(runner, photo_path, tmp_path):
    out = tmp_path / "q.kpal"
    result = _encode(runner, photo_path, "--quality", "28-30", "-o", out)
    assert result.exit_code == 0, result.output
    assert "chosen" in result.output and "smallest k reaching 30 dB, accepting 28" in result.output
    encoded = kpal.codec.encode_image(photo_path, quality=(28, 30))
    assert out.read_bytes() == encoded.data
    assert encoded.psnr() >= 28


def test_unreachable_quality_exits_99_and_writes_nothing(runner, photo_path, tmp_path):
    out = tmp_path / "q.kpal"
    result = _encode(runner, photo_path, "--quality", "99", "-o", out)
    assert result.exit_code == QUALITY_EXIT == 99
    assert "cannot be reached" in result.output
    assert not out.exists()


def test_max_size_fits_the_file(runner, photo_path, tmp_path):
    out = tmp_path / "m.kpal"
    result = _encode(runner, photo_path, "--max-size", "700", "-o", out)
    assert result.exit_code == 0, result.output
    assert out.stat().st_size <= 700
    assert "largest k whose file fits 700 bytes" in result.output
    result = _encode(runner, photo_path, "--max-size", "20", "-o", tmp_path / "none.kpal")
    assert result.exit_code == 99 and not (tmp_path / "none.kpal").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["-k", "8", "--quality", "30"], "-k and --quality both decide the palette"),
    (["--quality", "30", "--max-size", "9k"], "--quality and --max-size both decide the palette"),
    (["--max-size", "9k", "--dither", "fs"],
     "--max-size measures the undithered file, and --dither fs"),
    (["--quality", "35", "--dither", "fs"], "--quality measures the undithered PSNR"),
    (["--quality", "35", "--dither", "ordered"],
     "--quality measures the undithered PSNR, and --dither ordered"),
    (["--quality", "30", "--method", "gmm"], "--quality chooses k with its own k-means search"),
    (["--quality", "40-30"], "MIN 40 is above MAX 30"),
    (["--space", "oklab", "--method", "gmm"], "--method gmm is available with --space rgb only"),
    (["--dither-strength", "0.5"], "--dither-strength 0.5 has no effect without --dither "),
    (["--palette", "x.gpl", "--sample", "0.5"], "--palette maps onto given colours: --sample 0.5 "),
    (["-k", "4", "--max-size", "9k", "--palette", "x.gpl"],
     "-k, --max-size and --palette all decide the palette"),
])
def test_conflicting_targets_are_usage_errors(runner, photo_path, tmp_path, args, message):
    result = _encode(runner, photo_path, *args, "-o", tmp_path / "x.kpal")
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "x.kpal").exists()


def test_shared_palette_file_then_encode_onto_it(runner, photo_path, tmp_path):
    other = tmp_path / "other.png"
    Image.fromarray(np.asarray(Image.open(photo_path))[::-1].copy()).save(other)
    for ext in ("gpl", "act", "hex", "png", "kpal"):
        shared = tmp_path / f"shared.{ext}"
        result = runner.invoke(cli, ["palette", str(photo_path), str(other), "-k", "6", "-o",
                                     str(shared)])
        assert result.exit_code == 0, result.output
        assert "6 colours from 2 images" in result.output
        colours = load_palette(shared)
        assert colours.shape == (6, 3)
        out = tmp_path / f"on_{ext}.kpal"
        result = _encode(runner, photo_path, "--palette", shared, "-o", out)
        assert result.exit_code == 0, result.output
        assert "given palette" in result.output
        decoded = kpal.decode(out)
        stored = np.asarray(decoded.getpalette("RGB")[:18], np.uint8).reshape(6, 3)
        np.testing.assert_array_equal(stored, colours)  # the given palette, as given


def test_shared_rgba_palette_from_icons_with_transparency(runner, tmp_path):
    icons = []
    for seed in (1, 2):
        rng = np.random.default_rng(seed)
        rgba = rng.integers(0, 256, (24, 32, 4), dtype=np.uint8)
        rgba[:, :8, 3] = 0          # transparent, hiding random colours
        rgba[:, 8:20, 3] = 255      # opaque
        rgba[:, 20:, 3] = 128       # translucent
        path = tmp_path / f"icon{seed}.png"
        Image.fromarray(rgba, "RGBA").save(path)
        icons.append((path, rgba))
    shared = tmp_path / "shared.kpal"
    result = runner.invoke(cli, ["palette", *(str(p) for p, _ in icons), "-k", "16", "-o",
                                 str(shared)])
    assert result.exit_code == 0, result.output
    assert "16 colours with alpha from 2 images" in result.output
    colours = load_palette(shared)
    assert colours.shape == (16, 4) and colours[0].tolist() == [0, 0, 0, 0]
    assert set(colours[1:, 3].tolist()) == {128, 255}
    for path, rgba in icons:
        out = tmp_path / f"{path.stem}.kpal"
        result = _encode(runner, path, "--palette", shared, "-o", out)
        assert result.exit_code == 0, result.output
        decoded = kpal.decode(out)
        np.testing.assert_array_equal(
            np.asarray(decoded.getpalette("RGBA"), np.uint8).reshape(-1, 4)[:16], colours)
        np.testing.assert_array_equal(np.asarray(decoded.convert("RGBA"))[..., 3], rgba[..., 3])
    result = runner.invoke(cli, ["palette", str(icons[0][0]), "-k", "4", "-o", "-"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("#")]
    assert len(lines) == 4 and lines[0] == "#00000000" and all(len(x) == 9 for x in lines)
    result = runner.invoke(cli, ["palette", str(icons[0][0]), "-o", str(tmp_path / "x.gpl")])
    assert result.exit_code == 1 and "alpha" in result.output
    assert not (tmp_path / "x.gpl").exists()


def test_palette_command_weights_and_errors(runner, photo_path, tmp_path):
    shared = tmp_path / "w.gpl"
    result = runner.invoke(cli, ["palette", str(photo_path), "-w", "1", "-w", "2", "-o",
                                 str(shared)])
    assert result.exit_code == 2
    assert "2 --weight values for 1 image: give one per image, or none" in result.output
    result = runner.invoke(cli, ["palette", str(photo_path), str(photo_path), "-w", "1", "-w",
                                 "2", "-o", str(shared)])
    assert result.exit_code == 2 and not shared.exists()
    assert ("2 --weight values for 1 image (an image named more than once counts once)"
            in result.output)
    folder = tmp_path / "photos"  # a folder and an image in it: that image counts once
    folder.mkdir()
    (folder / "a.png").write_bytes(photo_path.read_bytes())
    result = runner.invoke(cli, ["palette", str(folder), str(folder / "a.png"), "-w", "1", "-w",
                                 "2", "-o", str(shared)])
    assert result.exit_code == 2 and not shared.exists()
    assert ("2 --weight values for 1 image (an image named more than once counts once)"
            in result.output)
    result = runner.invoke(cli, ["palette", str(tmp_path / "*.nothing"), "-o", str(shared)])
    assert result.exit_code != 0 and not shared.exists()
    shared.write_text("keep me")
    result = runner.invoke(cli, ["palette", str(photo_path), "-o", str(shared)])
    assert result.exit_code == 2 and "file exists" in result.output
    assert shared.read_text() == "keep me"


def test_missing_palette_file_is_named(runner, photo_path, tmp_path):
    result = _encode(runner, photo_path, "--palette", tmp_path / "nope.gpl", "-o",
                     tmp_path / "x.kpal")
    assert result.exit_code == 2  # named wrong, as a missing input is: a usage error
    assert f"palette file {tmp_path / 'nope.gpl'}: cannot read" in result.output


def test_dither_and_space_flags_reach_the_codec(runner, photo_path, tmp_path):
    out = tmp_path / "d.kpal"
    result = _encode(runner, photo_path, "-k", "4", "--dither", "fs", "--dither-strength",
                     "0.5", "--space", "oklab", "-o", out)
    assert result.exit_code == 0, result.output
    assert "Floyd-Steinberg" in result.output and "strength 0.5" in result.output
    assert "oklab" in result.output
    assert out.read_bytes() == kpal.encode(photo_path, k=4, dither="fs", dither_strength=0.5,
                                           space="oklab")
    plain = kpal.encode(photo_path, k=4)
    assert out.read_bytes() != plain
    # Strength 0 is no dithering at all: the same file as --dither none.
    assert kpal.encode(photo_path, k=4, dither="fs", dither_strength=0) == plain


def test_plot_compare_shows_dithered_beside_undithered(runner, photo_path, tmp_path):
    pytest.importorskip("matplotlib")
    two, three = tmp_path / "two.png", tmp_path / "three.png"
    result = runner.invoke(cli, ["plot", str(photo_path), "--kind", "compare", "-k", "4",
                                 "-o", str(two)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["plot", str(photo_path), "--kind", "compare", "-k", "4",
                                 "--dither", "fs", "-o", str(three)])
    assert result.exit_code == 0, result.output
    with Image.open(two) as a, Image.open(three) as b:
        assert b.width == a.width * 3 // 2  # a third panel of the same width


def test_plot_compare_fits_once_and_dithers_onto_that_palette(runner, photo_path, tmp_path,
                                                              monkeypatch):
    pytest.importorskip("matplotlib")
    from kpal import plot as plots
    from kpal.cluster import kmeans

    seen, fits = {}, []
    original_compare, original_fit = plots.compare, kmeans.fit_histogram

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original_compare(*args, **kwargs)

    def counting_fit(*args, **kwargs):
        fits.append(1)
        return original_fit(*args, **kwargs)

    monkeypatch.setattr(plots, "compare", spy)
    monkeypatch.setattr("kpal.cluster.fit_histogram", counting_fit)
    result = runner.invoke(cli, ["plot", str(photo_path), "--kind", "compare", "-k", "4",
                                 "--dither", "fs", "-o", str(tmp_path / "c.png")])
    assert result.exit_code == 0, result.output
    assert len(fits) == 1
    palette, _ = seen["quantization"]
    d_palette, d_labels = seen["dithered"]
    assert np.array_equal(d_palette, palette)
    # The dithered panel is the file `kpal encode --dither fs` writes, and its size is shown.
    dithered_file = kpal.encode(photo_path, k=4, dither="fs")
    assert seen["dithered_bytes"] == len(dithered_file)
    decoded = np.asarray(kpal.decode(dithered_file).convert("RGB"))
    assert np.array_equal(np.asarray(d_palette)[np.asarray(d_labels)], decoded)


@pytest.mark.parametrize("content, message, code", [
    (None, "palette file {path}: cannot read: No such file or directory", 2),
    (b"zzz\n", "palette file {path}:1: 'zzz' is not a GIMP palette header (expected "
               "'GIMP Palette')", 1),
])
def test_bad_palette_file_is_reported_before_the_input_is_read(tmp_path, content, message,
                                                                code):
    import os
    import subprocess
    import sys

    path = tmp_path / "shared.gpl"
    if content is not None:
        path.write_bytes(content)
    fifo = tmp_path / "in.png"
    os.mkfifo(fifo)  # nobody writes to it: reading the input first would block
    result = subprocess.run([sys.executable, "-m", "kpal.cli", "encode", str(fifo), "--palette",
                             str(path), "-o", str(tmp_path / "out.kpal")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == code
    assert result.stderr == f"kpal: error: {message.format(path=path)}\n"
    assert not (tmp_path / "out.kpal").exists()


def test_ssimulacra2_is_reported_only_when_asked(runner, photo_path, tmp_path):
    pytest.importorskip("ssimulacra2")
    plain = _encode(runner, photo_path, "-k", "8", "-o", tmp_path / "a.kpal")
    assert plain.exit_code == 0 and "SSIMULACRA2" not in plain.output
    asked = _encode(runner, photo_path, "-k", "8", "-o", tmp_path / "b.kpal", "--ssimulacra2")
    assert asked.exit_code == 0, asked.output
    from kpal.metrics import ssimulacra2

    original = np.asarray(Image.open(photo_path).convert("RGB"))
    decoded = np.asarray(kpal.decode(tmp_path / "b.kpal").convert("RGB"))
    score = ssimulacra2(original, decoded)
    assert f"  SSIMULACRA2    {score:.2f} (perceptual" in asked.output


def test_ssimulacra2_without_the_package_is_a_usage_error_before_any_work(
        runner, photo_path, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ssimulacra2" else real(name, *a))
    result = _encode(runner, photo_path, "-o", tmp_path / "x.kpal", "--ssimulacra2")
    assert result.exit_code == 1  # a missing extra, as for plots: not a usage error
    assert '--ssimulacra2 needs the metric: pip install "kpal[metrics]"' in result.output
    assert not (tmp_path / "x.kpal").exists()


@pytest.mark.parametrize("target", [["--quality", "30-40"], ["--max-size", "1k"]])
def test_a_target_on_fewer_colours_than_k_reports_the_stored_k(runner, tmp_path, target):
    src = tmp_path / "solid.png"
    Image.new("RGB", (20, 20), (5, 5, 5)).save(src)
    out = tmp_path / "solid.kpal"
    result = _encode(runner, src, *target, "-o", out)
    assert result.exit_code == 0, result.output
    assert "chosen         k = 1: the image has only 1 colour, all kept (lossless)" \
        in result.output
    assert kpal.codec.read_header(out.read_bytes())[0].k == 1


@pytest.mark.parametrize("coding", ["entropy", "context"])
@pytest.mark.parametrize("alpha", [False, True])
def test_a_generous_size_budget_takes_the_largest_k(tmp_path, coding, alpha):
    """Flat images grow about a byte per doubling of k: the search must not overflow."""
    two = np.zeros((30, 40, 4 if alpha else 3), np.uint8)
    two[:, :20] = 255
    if alpha:
        two[:10, ..., 3] = 0
    photo = np.random.default_rng(3).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    for image in (two, photo):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = kpal.encode(image, max_size=1_000_000, coding=coding)
            expected = kpal.encode(image, 256, coding=coding)
        assert data == expected  # the largest k (256, or the image's own colours) fits
