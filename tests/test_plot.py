"""Tests for kpal.plot: every figure kind renders under Agg with real content."""

from __future__ import annotations

import io
import sys
import warnings

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from PIL import Image  # noqa: E402

from kpal import metrics, plot  # noqa: E402
from kpal.cluster import quantize  # noqa: E402
from kpal.cluster.histogram import color_histogram  # noqa: E402
from kpal.cluster.kmeans import KMeans  # noqa: E402
from kpal.errors import KpalError  # noqa: E402


def gradient_image(height: int = 48, width: int = 64) -> np.ndarray:
    """Smooth colour gradients plus noise: a few thousand distinct colours."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 4.0, y * 5.0, 200 - x * 2.0 + y], axis=-1)
    image += rng.normal(0, 8, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


IMAGE = gradient_image()


def render(fig) -> Image.Image:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def assert_rich_picture(picture: Image.Image, size: tuple[int, int], min_colours: int):
    assert picture.size == size
    pixels = np.asarray(picture).reshape(-1, 3)
    distinct = np.unique(pixels, axis=0).shape[0]
    assert distinct >= min_colours, f"only {distinct} distinct colours: figure looks blank"
    # Not mostly one colour: at least 10 % of the pixels differ from the most common one.
    _, counts = np.unique(pixels, axis=0, return_counts=True)
    assert counts.max() < 0.9 * pixels.shape[0]


def all_texts(fig) -> list[str]:
    texts = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        texts += [ax.get_title()] + [t.get_text() for t in ax.texts]
    for label in (fig._suptitle, fig._supxlabel):
        if label is not None:
            texts.append(label.get_text())
    return texts


def drawn_text_boxes(fig) -> list[tuple[str, object]]:
    """(text, window bbox) of every non-empty text the figure actually draws."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    tick_texts, shown = set(), []
    for ax in fig.axes:
        axes = [getattr(ax, name) for name in ("xaxis", "yaxis", "zaxis") if hasattr(ax, name)]
        for axis in axes:
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                tick_texts.update({id(tick.label1), id(tick.label2)})
            if not (ax.axison and axis.get_visible()):
                tick_texts.add(id(axis.label))
                continue
            # Only the ticks inside the view are drawn.
            for tick in axis._update_ticks():
                shown += [label for label in (tick.label1, tick.label2) if label.get_visible()]
    shown += [t for t in fig.findobj(Text) if id(t) not in tick_texts and t.get_visible()]
    return [(t.get_text(), t.get_window_extent(renderer)) for t in shown if t.get_text().strip()]


def assert_texts_fit(fig):
    """No two drawn texts overlap and every one lies inside the figure."""
    boxes = drawn_text_boxes(fig)
    assert boxes, "the figure draws no text at all"
    width, height = fig.bbox.width, fig.bbox.height
    for text, box in boxes:
        assert box.x0 >= -1 and box.y0 >= -1, f"{text!r} sticks out: {box.bounds}"
        assert box.x1 <= width + 1 and box.y1 <= height + 1, f"{text!r} sticks out: {box.bounds}"
    for i, (text_a, a) in enumerate(boxes):
        for text_b, b in boxes[i + 1 :]:
            overlap_w = min(a.x1, b.x1) - max(a.x0, b.x0)
            overlap_h = min(a.y1, b.y1) - max(a.y0, b.y0)
            assert overlap_w <= 0.5 or overlap_h <= 0.5, f"{text_a!r} overlaps {text_b!r}"


def test_compare_titles_sizes_and_psnr():
    fig = plot.compare(IMAGE, 8, size=(640, 300))
    assert_rich_picture(render(fig), (640, 300), 200)
    texts = all_texts(fig)
    assert "Original" in texts and "Compressed to 8 colours (k-means)" in texts
    palette, labels = quantize(IMAGE.reshape(-1, 3), 8)
    expected_psnr = metrics.psnr(IMAGE.reshape(-1, 3), palette[labels])
    caption = next(t for t in texts if "PSNR" in t)
    assert f"PSNR {expected_psnr:.2f} dB" in caption
    assert f"{3 * IMAGE.shape[0] * IMAGE.shape[1]:,} bytes (raw 24-bit)" in caption
    n = IMAGE.shape[0] * IMAGE.shape[1]
    assert f"{(8 * 24 + n * 3 + 7) // 8:,} bytes" in caption


def test_compare_uses_given_quantization_and_sizes():
    palette = np.array([[0, 0, 0], [255, 255, 255]], dtype=np.uint8)
    labels = (IMAGE.sum(axis=2) > 300).astype(np.uint8)
    fig = plot.compare(
        IMAGE, quantization=(palette, labels), original_bytes=12345, compressed_bytes=678
    )
    caption = next(t for t in all_texts(fig) if "PSNR" in t)
    assert "Original: 12,345 bytes" in caption and "Compressed: 678 bytes" in caption
    assert "Compressed to 2 colours" in all_texts(fig)
    # The right panel shows exactly the palette image.
    shown = fig.axes[1].get_images()[0].get_array()
    np.testing.assert_array_equal(shown, palette[labels])


def test_compare_default_size_follows_the_image_aspect():
    fig = plot.compare(IMAGE, 4)
    width, height = render(fig).size
    assert width == 1200 and height == 600 * IMAGE.shape[0] // IMAGE.shape[1] + 110


def test_compare_grows_for_a_long_dithered_title():
    palette, labels = quantize(IMAGE.reshape(-1, 3), 4)
    title = "dithered by a method whose description takes several lines " * 3
    fig = plot.compare(IMAGE, 4, quantization=(palette, labels),
                       dithered=(palette, labels), dithered_title=title.strip())
    assert_texts_fit(fig)
    short = plot.compare(IMAGE, 4, quantization=(palette, labels),
                         dithered=(palette, labels), dithered_title="dithered")
    assert fig.get_size_inches()[1] > short.get_size_inches()[1]
    assert short.get_size_inches()[1] * 100 == 600 * IMAGE.shape[0] // IMAGE.shape[1] + 110


def test_palette_swatches_show_hex_and_shares():
    fig = plot.palette(IMAGE, 6, size=(500, 320))
    assert_rich_picture(render(fig), (500, 320), 6)
    result = quantize(IMAGE.reshape(-1, 3), 6)
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert len(labels) == 6
    hexes = {"#{:02x}{:02x}{:02x}".format(*c) for c in result.palette}
    assert {text.split()[0] for text in labels} == hexes
    shares = [float(text.split()[1]) for text in labels]
    assert shares == sorted(shares, reverse=True)
    assert sum(shares) == pytest.approx(100, abs=0.3)


def test_scatter_draws_pixels_and_centroids():
    fig = plot.scatter(IMAGE, 5, n_points=1500, size=(420, 400))
    assert_rich_picture(render(fig), (420, 400), 100)
    ax = fig.axes[0]
    cloud, stars = ax.collections
    assert len(cloud.get_offsets()) == 1500
    assert len(stars.get_offsets()) == 5
    # Points are drawn in their own colours.
    assert np.unique(cloud.get_facecolors()[:, :3], axis=0).shape[0] > 500


def test_kmeans_history_ends_where_kmeans_ends():
    pixels = IMAGE.reshape(-1, 3)
    history = plot.kmeans_history(pixels, 6, seed=2)
    assert len(history) >= 3
    hist = color_histogram(pixels)
    fitted = KMeans(6, seed=2).fit(hist.colors.astype(float), sample_weight=hist.counts)
    np.testing.assert_allclose(history[-1], fitted.cluster_centers_, atol=1e-9)
    assert len(history) - 1 == fitted.n_iter_
    # The first step really moves the centroids.
    assert np.abs(history[1] - history[0]).max() > 0.5


def test_iterations_panels_from_init_to_convergence():
    fig = plot.iterations(IMAGE, 6, seed=2, n_panels=6, n_points=800, size=(600, 420))
    assert_rich_picture(render(fig), (600, 420), 100)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 6
    assert titles[0] == "Initialization (k-means++)"
    assert titles[-1].endswith("(converged)")
    steps = [int(t.split()[1]) for t in titles[1:]]
    assert steps == sorted(steps) and steps[0] == 1
    # The title says which iterations the panels show, when they are not all of them.
    last = steps[-1]
    title = " ".join(fig._suptitle.get_text().split())
    if len(steps) < last:
        assert f"centroids after {len(steps)} of its {last} iterations" in title
    else:
        assert "centroids after each iteration" in title


def test_compare_of_an_image_with_alpha_says_its_psnr_is_over_white():
    fig = plot.compare(IMAGE, 8, raw_bits=32)
    caption = next(t for t in all_texts(fig) if "PSNR" in t)
    assert "smaller than raw 32-bit" in caption
    assert " dB (over white)" in caption
    assert " dB (over white)" not in next(t for t in all_texts(plot.compare(IMAGE, 8))
                                          if "PSNR" in t)


def test_panel_steps():
    assert plot._panel_steps(4, 9) == [0, 1, 2, 3]
    steps = plot._panel_steps(40, 9)
    assert len(steps) == 9 and steps[:4] == [0, 1, 2, 3] and steps[-1] == 39


def test_curve_psnr_and_size_against_k():
    fig = plot.curve(IMAGE, ks=(2, 4, 8, 16), overhead_bytes=30, size=(500, 300))
    assert_rich_picture(render(fig), (500, 300), 50)
    ax = fig.axes[0]
    psnr_line = ax.get_lines()[0]
    size_line = fig.axes[1].get_lines()[0]
    np.testing.assert_array_equal(psnr_line.get_xdata(), [2, 4, 8, 16])
    psnrs = np.asarray(psnr_line.get_ydata())
    assert np.all(np.diff(psnrs) > 0)
    n = IMAGE.shape[0] * IMAGE.shape[1]
    expected = [
        ((24 * k + n * b + 7) // 8 + 30) / 1024 for k, b in [(2, 1), (4, 2), (8, 3), (16, 4)]
    ]
    np.testing.assert_allclose(size_line.get_ydata(), expected)


def test_curve_stops_at_the_number_of_colours():
    few = np.zeros((10, 10, 3), dtype=np.uint8)
    few[:, 5:] = [200, 10, 10]
    few[5:, :] = [10, 10, 200]
    fig = plot.curve(few, size=(400, 300))
    line = fig.axes[0].get_lines()[0]
    # Three colours: k=4 keeps exactly those 3 (lossless) and larger k adds nothing.
    np.testing.assert_array_equal(line.get_xdata(), [2, 3])
    assert "lossless" in [t.get_text() for t in fig.axes[0].texts]


def test_pil_image_input():
    fig = plot.palette(Image.fromarray(IMAGE).convert("P"), 4, size=(300, 200))
    assert render(fig).size == (300, 200)


def test_bad_image_and_size():
    with pytest.raises(ValueError, match=r"uint8 array of shape \(height, width, 3\)"):
        plot.palette(np.zeros((4, 4)), 2)
    with pytest.raises(KpalError, match=r"figure size 10x10 is too small"):
        plot.palette(IMAGE, 2, size=(10, 10))


def test_missing_matplotlib_says_what_to_install(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'pip install "kpal\[plot\]"'):
        plot.compare(IMAGE, 4)


# ------------------------------------------------------------------ layout and odd shapes


def ramp_image(height: int, width: int, n_colours: int = 48) -> np.ndarray:
    """A strip of ``n_colours`` hues repeated along the image: thin shapes stay cheap to fit."""
    t = np.linspace(0, 2 * np.pi, n_colours, endpoint=False)
    hues = np.stack([127 + 120 * np.sin(t), 127 + 120 * np.sin(t + 2), 127 + 120 * np.sin(t + 4)])
    ramp = np.rint(hues.T).astype(np.uint8)
    index = np.arange(height * width) * n_colours // (height * width)
    return ramp[index].reshape(height, width, 3)


def two_colours() -> np.ndarray:
    image = np.zeros((30, 40, 3), dtype=np.uint8)
    image[:, 20:] = [240, 200, 20]
    return image


ODD_IMAGES = {
    "1x1": np.array([[[200, 40, 40]]], dtype=np.uint8),
    "1x100000": ramp_image(100_000, 1),
    "100000x1": ramp_image(1, 100_000),
    "two colours": two_colours(),
}


def draw(kind: str, image: np.ndarray, size=None, k: int = 4):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # fewer colours than k
        if kind == "curve":
            return plot.curve(image, ks=(2, 4, 8), size=size)
        return getattr(plot, kind)(image, k, size=size)


@pytest.mark.parametrize("kind", plot.KINDS)
@pytest.mark.parametrize("size", [None, (300, 200), "minimum", (1800, 1400)])
def test_every_kind_lays_out_at_every_size(kind, size):
    size = plot.MIN_SIZES[kind] if size == "minimum" else size
    fig = draw(kind, IMAGE, size)
    picture = render(fig)
    if size is not None:
        assert picture.size == size
    assert_texts_fit(fig)


@pytest.mark.parametrize("kind", plot.KINDS)
@pytest.mark.parametrize("name", list(ODD_IMAGES))
def test_every_kind_draws_odd_shapes_and_few_colours(kind, name):
    fig = draw(kind, ODD_IMAGES[name])
    picture = np.asarray(render(fig))
    assert picture.shape[0] >= plot.MIN_SIZES[kind][1]
    assert_texts_fit(fig)
    # Something beyond text is drawn: a coloured pixel (text is black, white or blue).
    assert (np.ptp(picture.astype(int), axis=2) > 60).any()


@pytest.mark.parametrize("name", ["1x100000", "100000x1"])
def test_thin_images_are_visible(name):
    image = ODD_IMAGES[name]
    fig = plot.compare(image, 4)
    picture = np.asarray(render(fig)).astype(int)
    height = picture.shape[0]
    for ax in fig.axes:
        box = ax.get_window_extent()
        area = picture[height - int(box.y1) : height - int(box.y0), int(box.x0) : int(box.x1)]
        drawn = (np.abs(area - 255).sum(axis=2) > 30).mean()
        assert drawn > 0.9, f"only {drawn:.0%} of the image panel is drawn"
        # Shown stretched to at most 4:1, not as a line one pixel thick.
        assert 0.24 <= box.height / box.width <= 4.1 or 0.24 <= box.width / box.height <= 4.1
    assert "stretched" in fig.axes[0].get_title()


@pytest.mark.parametrize("image", [ODD_IMAGES["1x1"], two_colours()])
def test_iterations_says_when_there_is_nothing_to_show(image):
    fig = plot.iterations(image, 4)
    texts = " ".join(all_texts(fig))
    assert "no iterations" in texts and "nothing to move" in texts
    n = len(np.unique(image.reshape(-1, 3), axis=0))
    assert f"{n} distinct colour" in texts


@pytest.mark.parametrize("kind", plot.KINDS)
def test_too_small_sizes_name_the_minimum(kind):
    width, height = plot.MIN_SIZES[kind]
    message = rf"too small for the {kind} figure \(at least {width}x{height} pixels\)"
    with pytest.raises(KpalError, match=message):
        draw(kind, IMAGE, (width - 1, height))
    with pytest.raises(KpalError, match=message):
        draw(kind, IMAGE, (width, height - 1))


def test_small_figures_use_smaller_fonts():
    small, large = plot.palette(IMAGE, 4, size=(300, 200)), plot.palette(IMAGE, 4)
    assert small._suptitle.get_fontsize() < large._suptitle.get_fontsize()


def test_curve_of_a_tiny_image_counts_bytes():
    fig = plot.curve(ODD_IMAGES["1x1"], size=(400, 300))
    assert fig.axes[1].get_ylabel() == "file size (bytes)"
    title = fig.axes[0].get_title().replace("\n", " ")
    assert "raw 24-bit is 3 bytes" in title and "1 colour: lossless from k = 1" in title


def test_curve_of_two_colours_says_why_it_is_one_point():
    fig = plot.curve(two_colours(), size=(400, 300))
    assert "2 colours: lossless from k = 2" in fig.axes[0].get_title().replace("\n", " ")


def test_compare_caption_words_tiny_images_right():
    from kpal.plot import _colours, _size_ratio

    assert _colours(1) == "1 colour" and _colours(16) == "16 colours"
    assert _size_ratio(3, 33) == ("11.0× larger than raw 24-bit (the palette and header "
                                  "outweigh what the indices save)")
    assert _size_ratio(3000, 330) == "9.1× smaller than raw 24-bit"
    assert _size_ratio(4000, 330, 32) == "12.1× smaller than raw 32-bit"


def test_curve_value_labels_are_drawn_above_the_size_line():
    fig = plot.curve(IMAGE, ks=(2, 4, 8, 16), overhead_bytes=30, size=(500, 300))
    psnr_axes, size_axes = fig.axes
    assert psnr_axes.get_ylabel() == "PSNR (dB)" and size_axes.get_ylabel().startswith("file")
    assert psnr_axes.get_zorder() > size_axes.get_zorder()
    assert psnr_axes.texts and not psnr_axes.patch.get_visible()
