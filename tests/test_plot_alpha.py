"""The palette figure of an RGBA palette: alpha swatches over a checkerboard."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import kpal  # noqa: E402
from kpal import plot  # noqa: E402
from kpal.cluster.alpha import flatten  # noqa: E402

LIGHT = (plot.CHECK_LIGHT,) * 3
DARK = (plot.CHECK_DARK,) * 3


def _render(fig) -> np.ndarray:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    with Image.open(io.BytesIO(buffer.getvalue())) as im:
        return np.asarray(im.convert("RGB"))


def _count(picture: np.ndarray, colour) -> int:
    return int(np.all(np.abs(picture.astype(int) - np.array(colour)) <= 1, axis=-1).sum())


def _two_swatches(palette: np.ndarray) -> np.ndarray:
    # Entry 0 covers 3/4 of the pixels (first swatch, left), entry 1 the rest (right).
    labels = np.array([0, 0, 0, 1], dtype=np.uint8)
    image = palette[labels].reshape(2, 2, palette.shape[1])
    fig = plot.palette(image, quantization=(palette, labels), size=(600, 300))
    return _render(fig), fig


def test_transparent_swatch_shows_the_checkerboard_and_opaque_one_its_colour():
    palette = np.array([[0, 0, 0, 0], [255, 0, 0, 255]], dtype=np.uint8)
    picture, fig = _two_swatches(palette)
    width = picture.shape[1]
    left, right = picture[:, : width // 2], picture[:, width // 2 :]
    # The transparent swatch: both greys of the checkerboard, in large areas.
    assert _count(left, LIGHT) > 2000
    assert _count(left, DARK) > 2000
    # The opaque swatch hides the checkerboard entirely.
    assert _count(right, (255, 0, 0)) > 8000
    assert _count(right, LIGHT) < 100 and _count(right, DARK) < 100  # edges only
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == ["#00000000\n75.0 %", "#ff0000ff\n25.0 %"]


def test_translucent_swatch_is_composited_over_both_greys():
    palette = np.array([[0, 0, 255, 128], [255, 255, 255, 255]], dtype=np.uint8)
    picture, _ = _two_swatches(palette)
    left = picture[:, : picture.shape[1] // 2]
    a = 128 / 255
    over_light = tuple(round(c * a + plot.CHECK_LIGHT * (1 - a)) for c in (0, 0, 255))
    over_dark = tuple(round(c * a + plot.CHECK_DARK * (1 - a)) for c in (0, 0, 255))
    assert _count(left, over_light) > 2000
    assert _count(left, over_dark) > 2000
    assert _count(left, LIGHT) < 100


def test_rgb_palette_has_no_checkerboard():
    palette = np.array([[0, 0, 0], [255, 0, 0]], dtype=np.uint8)
    picture, fig = _two_swatches(palette)
    assert _count(picture, LIGHT) < 100 and _count(picture, DARK) < 100
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["#000000\n75.0 %",
                                                               "#ff0000\n25.0 %"]


def test_rgba_image_is_quantized_with_alpha():
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[:, 4:] = (30, 200, 40, 255)  # opaque half; the other half fully transparent
    fig = plot.palette(rgba, 4)
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == ["#00000000\n50.0 %", "#1ec828ff\n50.0 %"]
    picture = _render(fig)
    assert _count(picture, LIGHT) > 0 and _count(picture, DARK) > 0
    # A PIL image with transparency takes the same path.
    fig = plot.palette(Image.fromarray(rgba, "RGBA"), 4)
    assert sorted(t.get_text() for t in fig.axes[0].texts) == texts


def test_palette_of_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"palette must have shape \(k, 3\) or \(k, 4\)"):
        plot.palette(np.zeros((2, 2, 4), dtype=np.uint8),
                     quantization=(np.zeros((2, 5), dtype=np.uint8), np.zeros(4, dtype=np.uint8)))


def _spied_compare(tmp_path, monkeypatch) -> tuple:
    """A translucent gradient PNG, and the keywords ``plot.compare`` will be called with."""
    g = np.tile(np.linspace(0, 255, 40).astype(np.uint8), (30, 1))
    src = tmp_path / "logo.png"
    Image.fromarray(np.dstack([g, 255 - g, g, g]), "RGBA").save(src)
    seen = {}
    real = plot.compare

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(plot, "compare", spy)
    return src, seen


def test_compare_caption_gives_the_size_of_the_file_encode_writes(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from kpal.cli import cli

    src, seen = _spied_compare(tmp_path, monkeypatch)
    runner = CliRunner()
    result = runner.invoke(cli, ["plot", str(src), "--kind", "compare", "-o",
                                 str(tmp_path / "cmp.png")])
    assert result.exit_code == 0, result.output
    assert runner.invoke(cli, ["encode", str(src), "-o", str(tmp_path / "x.kpal"),
                               "-q"]).exit_code == 0
    written = (tmp_path / "x.kpal").read_bytes()
    assert kpal.codec.read_header(written)[0].version == 2  # an RGBA palette
    assert seen["compressed_bytes"] == len(written)
    # the picture is that file's entries over white, and the ratio is against raw 32-bit
    header, palette, labels = kpal.codec.decode_indices(written)
    shown_palette, shown_labels = seen["quantization"]
    assert np.array_equal(shown_palette, flatten(palette, (255, 255, 255)))
    assert np.array_equal(np.asarray(shown_labels).reshape(labels.shape), labels)
    assert seen["raw_bits"] == 32


def test_compare_dithered_panel_of_a_transparent_image_is_the_rgba_file(tmp_path, monkeypatch):
    """The dithered panel is the file `kpal encode --dither fs` writes with the same RGBA
    palette (so the same size), shown over white, not an opaque re-encode of the flattening."""
    from click.testing import CliRunner

    from kpal.cli import cli

    src, seen = _spied_compare(tmp_path, monkeypatch)
    result = CliRunner().invoke(cli, ["plot", str(src), "--kind", "compare", "-k", "6",
                                      "--dither", "fs", "-o", str(tmp_path / "cmp.png")])
    assert result.exit_code == 0, result.output
    assert seen["dithered_bytes"] == seen["compressed_bytes"]
    written = kpal.encode(src, k=6)
    _, palette, _ = kpal.codec.decode_indices(written)
    dithered = kpal.encode(src, palette=tuple(map(tuple, palette.tolist())), dither="fs")
    header, dithered_palette, dithered_labels = kpal.codec.decode_indices(dithered)
    assert header.alpha
    shown_palette, shown_labels = seen["dithered"]
    assert np.array_equal(shown_palette, flatten(dithered_palette, (255, 255, 255)))
    assert np.array_equal(np.asarray(shown_labels).reshape(dithered_labels.shape),
                          dithered_labels)
