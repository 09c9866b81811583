"""Pictures of what kpal does to an image, as matplotlib figures.

Five kinds, each a function returning a :class:`matplotlib.figure.Figure`
(save it with ``fig.savefig("out.png")``, or show it in a notebook):

=============  ==============================================================
``compare``    the original beside the compressed image, sizes and PSNR below
``palette``    the k colours as swatches with hex values and pixel shares
``scatter``    sampled pixels as a 3D cloud in RGB space, centroids as stars
``iterations`` the k-means centroids after each iteration, init to convergence
``curve``      PSNR and file size against k = 2, 4, 8, ..., 256
=============  ==============================================================

matplotlib is an optional extra (``pip install "kpal[plot]"``) and is only
imported when a figure is drawn. Figures are built with
:class:`matplotlib.figure.Figure` directly, not ``pyplot``: no global state, no
GUI backend, safe in scripts, servers and tests.

Every figure lays itself out for the size asked for (matplotlib's constrained
layout, fonts scaled with the figure, long titles wrapped), and refuses sizes
below a minimum per kind (:data:`MIN_SIZES`) with a :class:`~kpal.errors.KpalError`.
Images far from square (1×100000) are shown stretched to at most 4:1, nearest
neighbour, so they stay visible; a figure with nothing to show (an image of one
colour has no k-means iterations) says so in words.
"""

from __future__ import annotations

import math
import textwrap
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from kpal import metrics, options
from kpal.cluster import Quantization, _check_pixels, quantize
from kpal.cluster.histogram import color_histogram
from kpal.cluster.init import kmeans_plusplus, random_init
from kpal.cluster.kmeans import KMeans, tolerance, validate_params
from kpal.errors import KpalError, OptionError, warn

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "KINDS",
    "MIN_SIZES",
    "MISSING_MATPLOTLIB",
    "check_size",
    "compare",
    "curve",
    "fit_options",
    "iterations",
    "kmeans_history",
    "palette",
    "scatter",
]

#: The figure kinds, in the order the CLI lists them.
KINDS = ("compare", "palette", "scatter", "iterations", "curve")

#: What to tell someone without matplotlib.
MISSING_MATPLOTLIB = 'plots need matplotlib, which is not installed: pip install "kpal[plot]"'

#: Default figure sizes in pixels (width, height), drawn at 100 dpi.
_DPI = 100
_DEFAULT_SIZES = {
    "compare": (1200, 640),
    "palette": (900, 600),
    "scatter": (800, 800),
    "iterations": (1200, 900),
    "curve": (900, 560),
}
#: Smallest figure of each kind, in pixels (width, height): below it titles and
#: labels no longer fit without overlapping at a legible font size.
MIN_SIZES = {
    "compare": (240, 160),
    "palette": (160, 120),
    "scatter": (240, 200),
    "iterations": (240, 180),
    "curve": (280, 200),
}
#: Images are shown at most this many times longer than wide (or wide than long),
#: so a 1×100000 image is a visible strip, not a line thinner than a pixel.
_MAX_ASPECT = 4.0
#: Smallest font drawn, in points.
_MIN_FONT = 5.0
#: Average width of a character as a fraction of the font size (DejaVu Sans is
#: about 0.55; a little more, so that wrapped lines surely fit).
_CHAR_WIDTH = 0.62


def check_size(kind: str, size: tuple[int, int] | None) -> None:
    """Refuse a figure size below :data:`MIN_SIZES` for ``kind`` (None: the default size).

    Raises
    ------
    KpalError
        The size cannot hold the figure's text.
    """
    if size is None:
        return
    width, height = size
    min_width, min_height = MIN_SIZES[kind]
    if width < min_width or height < min_height:
        msg = (f"figure size {width}x{height} is too small for the {kind} figure "
               f"(at least {min_width}x{min_height} pixels)")
        raise KpalError(msg)


def _figure(kind: str, size: tuple[int, int] | None) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(MISSING_MATPLOTLIB) from error
    width, height = size or _DEFAULT_SIZES[kind]
    check_size(kind, (width, height))
    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI, layout="constrained")
    pad = 4 / 72 * min(1.0, _scale(fig, kind))  # inches
    fig.get_layout_engine().set(w_pad=pad, h_pad=pad, wspace=0.02, hspace=0.02)
    return fig


def _scale(fig: Figure, kind: str) -> float:
    """Font scale of a figure: 1 at the kind's default size, smaller or larger with it.

    The square root of the size ratio: text shrinks slower than the figure, so
    a small figure still has legible labels.
    """
    width, height = fig.get_size_inches() * _DPI
    default_width, default_height = _DEFAULT_SIZES[kind]
    ratio = min(width / default_width, height / default_height)
    return min(1.6, max(0.4, math.sqrt(ratio)))


def _font(points: float, scale: float) -> float:
    return max(_MIN_FONT, points * scale)


def _wrap(pieces: Sequence[str], fontsize: float, width_px: float, sep: str = "    ") -> str:
    """Join ``pieces`` with ``sep``, breaking lines between pieces to fit ``width_px``.

    A piece longer than a whole line is itself wrapped at spaces.
    """
    per_line = max(6, int(width_px / (_CHAR_WIDTH * fontsize * _DPI / 72)))
    lines: list[str] = []
    for piece in pieces:
        for part in textwrap.wrap(piece, per_line) or [""]:
            if lines and len(lines[-1]) + len(sep) + len(part) <= per_line:
                lines[-1] += sep + part
            else:
                lines.append(part)
    return "\n".join(lines)


def _wrap_words(text: str, fontsize: float, width_px: float) -> str:
    """``text`` broken at any space to fit ``width_px`` (see :func:`_wrap`)."""
    return _wrap(text.split(" "), fontsize, width_px, " ")


def _suptitle(fig: Figure, pieces: Sequence[str], fontsize: float) -> str:
    """Set the figure's title, ``pieces`` wrapped to its width; return the wrapped text."""
    title = _wrap(pieces, fontsize, fig.get_size_inches()[0] * _DPI - 12, " ")
    fig.suptitle(title, fontsize=fontsize)
    return title


def _psnr_text(quality: float, over_white: bool = False) -> str:
    """``PSNR 31.00 dB``; ``over white`` when an image with alpha is compared as shown."""
    if math.isinf(quality):
        return "lossless"
    return f"PSNR {quality:.2f} dB" + (" (over white)" if over_white else "")


def _shown_ratio(height: int, width: int) -> float:
    """Height over width of an image as displayed: its own, kept within 1:4 and 4:1."""
    return min(_MAX_ASPECT, max(1 / _MAX_ASPECT, height / width))


#: Longest side of an image as handed to matplotlib: a panel is at most a few
#: thousand pixels wide, and matplotlib resamples through float RGBA copies
#: (32 bytes a pixel: 2 GB for the three panels of a 24 MP compare).
_MAX_SHOWN_SIDE = 2048


def _show_image(ax, picture: np.ndarray) -> bool:
    """Draw an image, nearest neighbour, stretched if too thin to see; True if stretched.

    A large image is subsampled first (every n-th pixel, as nearest-neighbour
    drawing picks them anyway), to at most :data:`_MAX_SHOWN_SIDE` a side.
    """
    height, width = picture.shape[:2]
    shown = _shown_ratio(height, width)
    step = max(1, math.ceil(max(height, width) / _MAX_SHOWN_SIDE))
    ax.imshow(picture[::step, ::step], interpolation="nearest", aspect=shown * width / height,
              extent=(0, width, height, 0))
    ax.set_axis_off()
    return not math.isclose(shown, height / width)


def _no_content(
    fig: Figure, kind: str, title: str, message: str, colours: np.ndarray | None = None
) -> Figure:
    """A figure whose kind has nothing to show: the title, why in words, and ``colours``.

    ``colours`` (shape (n, 3), uint8), if given, are drawn as a row of swatches
    below the message.
    """
    scale = _scale(fig, kind)
    width_px = fig.get_size_inches()[0] * _DPI
    _suptitle(fig, title.split(" "), _font(13, scale))
    ax = fig.add_subplot(1, 1, 1)
    ax.set_axis_off()
    font = _font(12, scale)
    text_y = 0.5 if colours is None else 0.8
    ax.text(0.5, text_y, _wrap_words(message, font, 0.9 * width_px), ha="center",
            va="center", fontsize=font, transform=ax.transAxes)
    if colours is not None:
        n = len(colours)
        # Swatches in the lower half of the axes, at most as tall as they are wide.
        ax.set_xlim(0, max(n, 3))
        ax.set_ylim(0, 2)
        for i, colour in enumerate(colours):
            ax.add_patch(_rectangle((i + 0.05 + (max(n, 3) - n) / 2, 0.1), 0.9, 1.0,
                                    colour / 255.0, edge="0.4"))
    return fig


def _rgb_array(image: Any) -> np.ndarray:
    """An (height, width, 3) uint8 array from a PIL image or an array.

    A PIL image goes through the codec's mode rules (so a 16-bit image is
    refused with advice instead of being clipped), its colours are converted
    to sRGB when it has an ICC profile of another space (a figure is an sRGB
    image: a Display P3 or Adobe RGB photo would look washed out), with a
    ``KpalWarning``, and transparency is flattened onto white, as the command
    line's figures show it. A uint8 array of grey levels (height, width) or
    of RGBA (height, width, 4) is taken as the PIL image it would make.
    """
    if (isinstance(image, np.ndarray) and image.dtype == np.uint8
            and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 4))):
        from PIL import Image

        image = Image.fromarray(np.ascontiguousarray(image), "L" if image.ndim == 2 else "RGBA")
    if hasattr(image, "convert"):  # a PIL image; PIL itself need not be imported here
        from kpal import codec

        image, profile = codec.colour_managed(image)
        rgb, _ = codec.to_rgb(image)
        if rgb.shape[-1] == 4:
            rgb = np.asarray(codec.flatten(image, (255, 255, 255)))
        if profile is not None:
            rgb, converted = codec.srgb_array(rgb, profile)
            if converted:
                warn("the image has an ICC profile: the figure shows its colours converted "
                     "to sRGB")
        image = rgb
    array = np.asarray(image) if isinstance(image, (np.ndarray, list, tuple)) else None
    if (array is None or array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8
            or not array.shape[0] or not array.shape[1]):
        got = type(image).__name__ if array is None else f"{array.dtype} {array.shape}"
        msg = (
            "image must be a PIL image or a uint8 array of shape (height, width, 3), "
            f"(height, width, 4) or (height, width) with height and width >= 1, got {got}"
        )
        raise ValueError(msg)
    return array


def _quantize(
    rgb: np.ndarray, k: int, method: str, seed: int, sample: float | None
) -> Quantization:
    return quantize(
        rgb.reshape(-1, 3), k, method=method, seed=seed, sample=sample, **fit_options(method)
    )


def fit_options(method: str) -> dict[str, float]:
    """Iteration budget the figures quantize with: the method's own defaults.

    For ``"gmm"`` that is :class:`~kpal.cluster.gmm.GaussianMixture`'s 100
    iterations and ``tol=1e-3`` (mean log-likelihood): quantize's k-means
    defaults make EM run far longer for no visible change in a figure.
    """
    return {"max_iter": 100, "tol": 1e-3} if method == "gmm" else {}


def _hex(colour: np.ndarray) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in colour))


def _text_colour(colour: np.ndarray) -> str:
    # Rec. 601 luma: dark text on light swatches, white on dark ones.
    luma = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    return "black" if luma > 140 else "white"


def _colours(k: int) -> str:
    return "1 colour" if k == 1 else f"{k} colours"


#: How each method is named in a figure's titles.
METHOD_NAMES = {"kmeans": "k-means", "gmm": "Gaussian mixture"}


def _fitted(fitted_by: str | None, method: str, given: bool) -> str:
    """``"k-means"``: how the palette was made, for a title; empty when unknown."""
    if fitted_by is None and not given:
        fitted_by = METHOD_NAMES.get(method, method)
    return fitted_by or ""


def _size_ratio(raw_bytes: int, compressed_bytes: int, raw_bits: int = 24,
                metadata: bool = False) -> str:
    """``"4.2× smaller than raw 24-bit"``, or larger for a tiny image (as kpal info says it)."""
    if compressed_bytes <= raw_bytes:
        return f"{raw_bytes / compressed_bytes:.1f}× smaller than raw {raw_bits}-bit"
    return (f"{compressed_bytes / raw_bytes:.1f}× larger than raw {raw_bits}-bit "
            f"({metrics.why_larger(metadata)})")


def _fixed_bytes(k: int, n_pixels: int) -> int:
    """Bytes of palette plus fixed-width indices: ``ceil((k·24 + N·b) / 8)``."""
    return metrics.size_report(k, n_pixels, on_disk_bytes=1).theoretical_bytes


def _sample_rows(pixels: np.ndarray, n: int, seed: int) -> np.ndarray:
    if pixels.shape[0] <= n:
        return pixels
    rng = np.random.default_rng(seed)
    return pixels[rng.choice(pixels.shape[0], size=n, replace=False)]


# ------------------------------------------------------------------ compare


def compare(
    image: Any,
    k: int = 16,
    *,
    method: str = "kmeans",
    seed: int = 0,
    sample: float | None = None,
    quantization: tuple[np.ndarray, np.ndarray] | Quantization | None = None,
    fitted_by: str | None = None,
    original_bytes: int | None = None,
    compressed_bytes: int | None = None,
    size: tuple[int, int] | None = None,
    dithered: tuple[np.ndarray, np.ndarray] | None = None,
    dithered_title: str = "dithered",
    dithered_bytes: int | None = None,
    raw_bits: int = 24,
    metadata_bytes: int = 0,
) -> Figure:
    """The original and the compressed image side by side (and a dithered one).

    Parameters
    ----------
    image : PIL.Image.Image or ndarray of shape (height, width, 3), uint8
    k : int, default 16
        Palette size (ignored when ``quantization`` is given).
    method : {"kmeans", "gmm"}, default "kmeans"
    seed : int, default 0
    sample : float, optional
        Fit on this fraction of the pixels (see :func:`kpal.cluster.quantize`).
    quantization : (palette, labels), optional
        A palette of shape (k, 3) and labels of shape (height*width,) or
        (height, width) already computed, e.g. from the encoded file.
    fitted_by : str, optional
        How the palette was made, in the titles' brackets (e.g. "k-means in
        Oklab"); default: the method's name ("k-means", "Gaussian mixture")
        when the palette is fitted here, nothing for a given ``quantization``.
    original_bytes : int, optional
        Size of the original file; default: the raw 24-bit size ``3·N``.
    compressed_bytes : int, optional
        Size of the ``.kpal`` file; default: the ``k·24 + N·b`` bits of
        palette and fixed-width indices.
    size : (int, int), optional
        Figure size in pixels (width, height), at least ``MIN_SIZES[kind]``;
        fonts scale with it.
    dithered : (palette, labels), optional
        The same image dithered onto a palette: shown as a third panel, and
        the caption gives PSNR and (with the ``ssimulacra2`` package, on images
        up to 2 MP) SSIMULACRA2 of both compressed images.
    dithered_title : str, default "dithered"
        How the third panel's title names the dithering.
    dithered_bytes : int, optional
        Size of the dithered ``.kpal`` file, given in the caption beside its
        scores when known.
    raw_bits : {24, 32}, default 24
        Bits per pixel of the raw image the caption compares the file with:
        32 for a file with an RGBA palette (shown composited, as the original;
        its PSNR is then said to be over white).
    metadata_bytes : int, default 0
        Bytes of metadata blocks (an ICC profile) in ``compressed_bytes``: a
        file larger than raw then names them among what outweighs the indices.

    Returns
    -------
    matplotlib.figure.Figure
        Panels titled "Original" and "Compressed to K colours (k-means)", the
        sizes and the PSNR in the caption.

    Raises
    ------
    KpalError
        If ``size`` is below ``MIN_SIZES["compare"]`` (every kind does the same).
    """
    _check_raw_bits(raw_bits)
    rgb = _rgb_array(image)
    height, width = rgb.shape[:2]
    n_panels = 2 if dithered is None else 3
    auto_size = size is None
    if size is None:
        # The images side by side at this width, plus room for titles and caption.
        panel_width = _DEFAULT_SIZES["compare"][0] // 2
        panel_height = int(panel_width * _shown_ratio(height, width))
        size = (n_panels * panel_width,
                min(1600, max(MIN_SIZES["compare"][1], panel_height + 110)))
    fig = _figure("compare", size)
    scale = _scale(fig, "compare")
    fig_width = fig.get_size_inches()[0] * _DPI
    fitted = _fitted(fitted_by, method, quantization is not None)
    fitted = fitted and f" ({fitted})"
    if quantization is None:
        quantization = _quantize(rgb, k, method, seed, sample)
    colours, labels = quantization
    compressed = np.asarray(colours)[np.asarray(labels).reshape(height, width)]
    k_used = len(colours)
    n_pixels = height * width
    quality = metrics.psnr(rgb, compressed)
    if original_bytes is None:
        original_text = f"{3 * n_pixels:,} bytes (raw 24-bit)"
    else:
        original_text = f"{original_bytes:,} bytes"
    if compressed_bytes is None:
        compressed_bytes = _fixed_bytes(k_used, n_pixels)
        compressed_text = f"{compressed_bytes:,} bytes (k·24 + N·b bits)"
    else:
        compressed_text = f"{compressed_bytes:,} bytes"
    # An image with alpha is shown, and compared, over white (kpal encode's PSNR
    # averages the composites over black and white).
    over_white = raw_bits == 32
    psnr_text = _psnr_text(quality, over_white)

    title_font = _font(13, scale)
    panels = [(rgb, "Original"), (compressed, f"Compressed to {_colours(k_used)}{fitted}")]
    pieces = [
        f"Original: {original_text}",
        f"Compressed: {compressed_text}",
        _size_ratio(raw_bits // 8 * n_pixels, compressed_bytes, raw_bits, metadata_bytes > 0),
        psnr_text,
    ]
    if dithered is not None:
        d_colours, d_labels = dithered
        d_image = np.asarray(d_colours)[np.asarray(d_labels).reshape(height, width)]
        panels = [(rgb, "Original"), (compressed, f"{_colours(k_used)}{fitted}, not dithered"),
                  (d_image, f"{len(d_colours)} colours, {dithered_title}")]
        d_text = "" if dithered_bytes is None else f"{dithered_bytes:,} bytes, "
        pieces = [f"Original: {original_text}",
                  f"not dithered: {compressed_text}, {_scores(rgb, compressed, over_white)}",
                  f"{dithered_title}: {d_text}{_scores(rgb, d_image, over_white)}"]
    title_lines = 1
    for index, (picture, title) in enumerate(panels):
        ax = fig.add_subplot(1, n_panels, index + 1)
        if _show_image(ax, picture) and index == 0:
            title = f"{title} ({width}×{height}, stretched)"
        title = _wrap_words(title, title_font, fig_width / n_panels - 12)
        title_lines = max(title_lines, title.count("\n") + 1)
        ax.set_title(title, fontsize=title_font)
    caption_font = _font(11, scale)
    caption = _wrap(pieces, caption_font, fig_width - 12)
    fig.supxlabel(caption, fontsize=caption_font)
    if auto_size:
        # The default height has room for one line of title and two of caption:
        # grow it by the lines a long title or caption wraps to, or they are cut
        # off. Twice their height (of 1.2 lines per font size): the images keep
        # their aspect and stay centred, so half of it goes below them.
        extra = (title_lines - 1) * title_font + max(0, caption.count("\n") - 1) * caption_font
        fig.set_size_inches(fig.get_size_inches() + (0, 2.4 * extra / 72))
    return fig


def _scores(original: np.ndarray, compressed: np.ndarray, over_white: bool = False) -> str:
    """PSNR, and SSIMULACRA2 when the package is installed and the image is small enough."""
    quality = metrics.psnr(original, compressed)
    text = _psnr_text(quality, over_white)
    height, width = original.shape[:2]
    if min(height, width) >= 8 and height * width <= _SSIM_MAX_PIXELS:
        score = metrics.ssimulacra2(original, compressed)
        if score is not None:
            text += f", SSIMULACRA2 {score:.1f}"
    return text


#: SSIMULACRA2 (numpy, about 3 s per megapixel) is left out of figures above this size.
_SSIM_MAX_PIXELS = 2_000_000


# ------------------------------------------------------------------ palette


def palette(
    image: Any,
    k: int = 16,
    *,
    method: str = "kmeans",
    seed: int = 0,
    sample: float | None = None,
    quantization: tuple[np.ndarray, np.ndarray] | Quantization | None = None,
    fitted_by: str | None = None,
    size: tuple[int, int] | None = None,
) -> Figure:
    """The palette as swatches, most used first, with hex values and pixel shares.

    Parameters are as in :func:`compare`, except that ``image`` may also be
    RGBA (an array of shape (height, width, 4) or a PIL image with
    transparency) and the palette of ``quantization`` of shape (k, 4), straight
    RGBA as :func:`kpal.cluster.alpha.quantize_rgba` returns it.

    Returns
    -------
    matplotlib.figure.Figure
        With an RGBA palette every swatch is drawn with its alpha over a
        light/dark checkerboard and labelled ``#rrggbbaa``.
    """
    fig = _figure("palette", size)
    pixels = _palette_pixels(image)
    fitted = _fitted(fitted_by, method, quantization is not None)
    fitted = fitted and f" ({fitted})"
    if quantization is None:
        quantization = _palette_quantize(pixels, k, method, seed, sample)
    colours, labels = (np.asarray(part) for part in quantization)
    if colours.ndim != 2 or colours.shape[1] not in (3, 4):
        msg = f"palette must have shape (k, 3) or (k, 4), got {colours.shape}"
        raise ValueError(msg)
    with_alpha = colours.shape[1] == 4
    share = np.bincount(labels.reshape(-1), minlength=len(colours)) / labels.size
    order = np.argsort(-share, kind="stable")
    n = len(colours)
    scale = _scale(fig, "palette")
    fig_w, fig_h = fig.get_size_inches() * _DPI
    title_font = _font(13, scale)
    kind = ("RGBA colour" if with_alpha else "colour") + ("" if n == 1 else "s")
    title = f"Palette: {n} {kind}{fitted}, by share of pixels"
    title = _suptitle(fig, title.split(" "), title_font)
    # The swatch area: the figure below the title (an estimate made before layout).
    area_w = fig_w - 12
    area_h = fig_h - 12 - (title.count("\n") + 1) * 1.4 * title_font * _DPI / 72
    # A grid about as wide as the area's aspect asks for.
    columns = max(1, min(n, math.ceil(math.sqrt(n * area_w / max(area_h, 1.0)))))
    rows = math.ceil(n / columns)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_axis_off()
    if with_alpha:
        _checkerboard(ax, columns, rows, n)
    ax.set_xlim(0, columns)
    ax.set_ylim(rows, 0)
    # Two monospace lines (7 characters, 9 with alpha) must fit inside a swatch;
    # when even the smallest font does not, the swatches go without labels.
    chars = 9 if with_alpha else 7
    swatch_w, swatch_h = 0.92 * area_w / columns, 0.92 * area_h / rows
    font = min(12.0 * max(scale, 1.0), 0.8 * swatch_w / (chars * 0.6) * 72 / _DPI,
               0.75 * swatch_h / (2 * 1.25) * 72 / _DPI)
    for slot, j in enumerate(order):
        row, column = divmod(slot, columns)
        colour = colours[j]
        ax.add_patch(
            _rectangle((column + 0.04, row + 0.04), 0.92, 0.92, colour / 255.0, edge="0.6")
        )
        if font < _MIN_FONT:
            continue
        ax.text(
            column + 0.5,
            row + 0.5,
            f"{_swatch_hex(colour)}\n{100 * share[j]:.1f} %",
            ha="center",
            va="center",
            fontsize=font,
            color=_text_colour(_over_checks(colour)),
            family="monospace",
        )
    return fig


#: Grey levels of the checkerboard under RGBA swatches, and its squares per swatch side.
CHECK_LIGHT = 224
CHECK_DARK = 160
_CHECKS = 4
#: Pixels per grid cell of the checkerboard image (the swatch is 92 % of a cell).
_CHECK_CELL = 100


def _palette_pixels(image: Any) -> np.ndarray:
    """(height, width, 3) or (height, width, 4) uint8 pixels for :func:`palette`."""
    if hasattr(image, "convert"):  # a PIL image: the codec's mode rules, alpha kept
        from kpal import codec

        image, _ = codec.to_rgb(image)
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 4 and array.dtype == np.uint8:
        return array
    return _rgb_array(array)


def _palette_quantize(pixels: np.ndarray, k: int, method: str, seed: int,
                      sample: float | None) -> tuple[np.ndarray, np.ndarray]:
    if pixels.shape[2] == 3:
        palette, labels = _quantize(pixels, k, method, seed, sample)
        return palette, labels
    from kpal.cluster.alpha import quantize_rgba

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # fewer colours than k: lossless
        result = quantize_rgba(pixels.reshape(-1, 4), k, method=method, seed=seed,
                               sample=sample, **fit_options(method))
    return result.palette, result.labels


def _checkerboard(ax, columns: int, rows: int, n: int) -> None:
    """Light/dark squares under the first ``n`` swatches of a ``columns`` x ``rows`` grid."""
    cell = _CHECK_CELL
    inset = round(0.04 * cell)
    side = cell - 2 * inset
    # Position of every pixel inside its cell: the checks, or -1 in the gaps.
    inside = np.arange(cell) - inset
    square = np.where((inside >= 0) & (inside < side), inside * _CHECKS // side, -1)
    y_sq, x_sq = square[:, None], square[None, :]
    checks = np.where((y_sq + x_sq) % 2 == 0, CHECK_LIGHT, CHECK_DARK).astype(np.uint8)
    tile = np.zeros((cell, cell, 4), dtype=np.uint8)
    tile[..., :3] = checks[..., None]
    tile[..., 3] = np.where((y_sq >= 0) & (x_sq >= 0), 255, 0)
    board = np.zeros((rows * cell, columns * cell, 4), dtype=np.uint8)
    for slot in range(n):
        row, column = divmod(slot, columns)
        board[row * cell : (row + 1) * cell, column * cell : (column + 1) * cell] = tile
    ax.imshow(board, extent=(0, columns, rows, 0), interpolation="nearest", aspect="auto",
              zorder=0)


def _swatch_hex(colour: np.ndarray) -> str:
    """``#rrggbb``, or ``#rrggbbaa`` for an RGBA colour."""
    return "#" + "".join(f"{int(c):02x}" for c in colour)


def _over_checks(colour: np.ndarray) -> np.ndarray:
    """An RGBA colour composited over the checkerboard's mean grey (RGB as is)."""
    if colour.shape[0] == 3:
        return colour
    alpha = colour[3] / 255.0
    return colour[:3] * alpha + (CHECK_LIGHT + CHECK_DARK) / 2 * (1 - alpha)


def _rectangle(xy, width, height, face, edge):
    from matplotlib.patches import Rectangle

    return Rectangle(xy, width, height, facecolor=face, edgecolor=edge, linewidth=0.5)


# ------------------------------------------------------------------ scatter


def _check_raw_bits(raw_bits: object) -> None:
    if raw_bits not in (24, 32) or isinstance(raw_bits, bool):
        msg = f"raw_bits={raw_bits!r} must be 24 (RGB) or 32 (RGBA)"
        raise OptionError(msg)


def _check_counts(**counts: object) -> None:
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            msg = f"{name}={value!r} must be a whole number >= 1"
            raise OptionError(msg)


def scatter(
    image: Any,
    k: int = 16,
    *,
    method: str = "kmeans",
    seed: int = 0,
    sample: float | None = None,
    n_points: int = 4000,
    quantization: tuple[np.ndarray, np.ndarray] | Quantization | None = None,
    fitted_by: str | None = None,
    size: tuple[int, int] | None = None,
) -> Figure:
    """Sampled pixels as a 3D cloud in RGB space, the palette colours as large stars.

    Parameters
    ----------
    n_points : int, default 4000
        Pixels drawn at random (without replacement) for the cloud.
    image, k, method, seed, sample, quantization, fitted_by, size
        As for :func:`compare`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    _check_counts(n_points=n_points)
    fig = _figure("scatter", size)
    rgb = _rgb_array(image)
    fitted = _fitted(fitted_by, method, quantization is not None)
    if quantization is None:
        quantization = _quantize(rgb, k, method, seed, sample)
    colours = np.asarray(next(iter(quantization)))
    points = _sample_rows(rgb.reshape(-1, 3), n_points, seed)
    scale = _scale(fig, "scatter")
    ax = fig.add_subplot(projection="3d")
    # Shrink the cube a little so the axis labels stay inside ("blue", at the right,
    # was cut at 700x700), more on a small figure.
    ax.set_box_aspect(None, zoom=0.85 if scale < 0.8 else 0.92)
    ax.scatter(*points.T, c=points / 255.0, s=4 * min(1.0, scale), alpha=0.6,
               depthshade=False, linewidths=0)
    ax.scatter(
        *colours.T,
        c=colours / 255.0,
        marker="*",
        s=420 * min(1.0, scale) ** 2,
        edgecolors="black",
        linewidths=1.0,
        depthshade=False,
    )
    font = _font(10, scale)
    # Fewer ticks on a small figure, so their labels do not run into each other.
    ticks = (0, 64, 128, 192, 255) if scale >= 0.8 else (0, 128, 255)
    for axis, name in zip("xyz", ("red", "green", "blue"), strict=True):
        getattr(ax, f"set_{axis}lim")(0, 255)
        getattr(ax, f"set_{axis}ticks")(ticks)
        getattr(ax, f"set_{axis}label")(name, fontsize=font, labelpad=0)
    ax.tick_params(labelsize=_font(8, scale), pad=0)
    title = (
        f"{len(points):,} pixel{'' if len(points) == 1 else 's'} in RGB space and the "
        f"{len(colours)} palette colour{'' if len(colours) == 1 else 's'} "
        f"(stars{fitted and f', {fitted}'})"
    )
    _suptitle(fig, title.split(" "), _font(12, scale))
    return fig


# ------------------------------------------------------------------ iterations


def kmeans_history(
    pixels: np.ndarray,
    k: int,
    *,
    init: str = "k-means++",
    seed: int = 0,
    max_iter: int = 100,
    tol: float = 1e-4,
) -> list[np.ndarray]:
    """Centroid positions from the initialization through each k-means iteration.

    Runs kpal's own :class:`~kpal.cluster.kmeans.KMeans` one Lloyd step at a
    time, each step starting from the previous centres, on the colour
    histogram of ``pixels``: the textbook algorithm, step for step what
    ``KMeans(k, seed=seed).fit(colours, sample_weight=counts)`` does. (On uint8
    pixels ``KMeans`` takes a faster coarse-to-fine path to a similar result.)

    Parameters
    ----------
    pixels : ndarray of shape (n_pixels, 3) or (height, width, 3), uint8
    k : int
        Number of centroids, 1..256 (fewer when the pixels have fewer distinct colours).
    init : {"k-means++", "random"}
    seed : int
    max_iter : int
        Most iterations recorded.
    tol : float
        Stop as :class:`~kpal.cluster.kmeans.KMeans` does: when the total squared
        centroid shift is at most ``tol`` times the colours' mean variance.

    Returns
    -------
    list of ndarray of shape (k, 3)
        ``history[0]`` is the initialization, ``history[i]`` the centres after
        iteration ``i``; the last entry is the converged position.

    Raises
    ------
    kpal.errors.OptionError
        ``k``, ``init``, ``seed``, ``max_iter`` or ``tol`` out of range (the
        messages of :class:`~kpal.cluster.kmeans.KMeans`).
    kpal.errors.KpalError
        ``pixels`` is not a uint8 array of shape (n_pixels, 3) or (h, w, 3).
    """
    validate_params(k, init, seed, max_iter, tol)  # as KMeans checks them, before any work
    if isinstance(init, np.ndarray):
        msg = "init must be 'k-means++' or 'random' here: the history starts from a draw"
        raise OptionError(msg)
    pixels = np.asarray(pixels)
    if pixels.ndim == 3 and pixels.shape[2] == 3:  # an (h, w, 3) image, as elsewhere here
        pixels = pixels.reshape(-1, 3)
    _check_pixels(pixels)
    hist = color_histogram(pixels)
    points = hist.colors.astype(np.float64)
    weights = hist.counts.astype(np.float64)
    k = min(k, len(hist))
    rng = np.random.default_rng(seed)
    pick = random_init if init == "random" else kmeans_plusplus
    centres = pick(points, weights, k, rng)
    history = [centres]
    threshold = tolerance(points, weights, tol)
    for _ in range(max_iter):
        step = KMeans(k, init=centres, max_iter=1, tol=0.0, seed=seed)
        step.fit(points, sample_weight=weights)
        shift = step.cluster_centers_ - centres
        centres = step.cluster_centers_
        history.append(centres)
        if float(np.sum(shift * shift)) <= threshold:
            break
    return history


def _panel_steps(n_steps: int, n_panels: int) -> list[int]:
    """Which recorded steps get a panel: the first few, then spread out, always the last."""
    if n_steps <= n_panels:
        return list(range(n_steps))
    if n_panels == 1:
        return [n_steps - 1]
    early = list(range(max(1, n_panels // 2)))
    n_spread = n_panels - len(early)
    spread = np.linspace(early[-1] + 1, n_steps - 1, n_spread) if n_spread > 1 else [n_steps - 1]
    return early + [int(round(s)) for s in spread]


def iterations(
    image: Any,
    k: int = 16,
    *,
    seed: int = 0,
    init: str = "k-means++",
    max_iter: int = 100,
    n_panels: int = 9,
    n_points: int = 3000,
    size: tuple[int, int] | None = None,
) -> Figure:
    """How the k-means centroids move, from the initialization to convergence.

    A grid of panels, one per chosen iteration (the first few, then spread out
    to the last). Each shows the sampled pixels and the centroids (stars, in
    their own colour) with the path each centroid has travelled so far, in
    the plane of the two main directions of the colour cloud (its first two
    principal components), where the pixels spread the most. An image with no
    more than ``k`` distinct colours has no iterations: the figure says so and
    shows those colours.

    Parameters
    ----------
    init : {"k-means++", "random"}, default "k-means++"
        How k-means starts.
    max_iter : int, default 100
        Iterations at most.
    n_panels : int, default 9
        Panels in the grid.
    n_points : int, default 3000
        Pixels drawn for the background cloud.
    image, k, seed, size
        As for :func:`compare`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    validate_params(k, init, seed, max_iter, 1e-4)
    _check_counts(n_panels=n_panels, n_points=n_points)
    fig = _figure("iterations", size)
    pixels = _rgb_array(image).reshape(-1, 3)
    hist = color_histogram(pixels)
    n_colours = len(hist)
    scale = _scale(fig, "iterations")
    if n_colours <= k:
        noun = "colour" if n_colours == 1 else "colours"
        return _no_content(
            fig,
            "iterations",
            f"k-means with k = {k}: no iterations",
            f"The image has {n_colours} distinct {noun}, no more than k = {k}: each colour "
            "is its own centroid from the start, so k-means has nothing to move.",
            colours=hist.colors,
        )
    history = kmeans_history(pixels, k, init=init, seed=seed, max_iter=max_iter)
    cloud = _sample_rows(pixels, n_points, seed).astype(np.float64)
    centre, axes = _principal_plane(cloud)
    cloud_2d = (cloud - centre) @ axes
    paths = np.stack([(h - centre) @ axes for h in history])  # (steps, k, 2)
    # As many panels as fit with about 110×100 pixels each.
    fig_w, fig_h = fig.get_size_inches() * _DPI
    fit_panels = max(1, int(fig_w // 110)) * max(1, int((fig_h - 40 * scale) // 100))
    steps = _panel_steps(len(history), max(1, min(n_panels, fit_panels)))
    columns = math.ceil(math.sqrt(len(steps)))
    rows = math.ceil(len(steps) / columns)
    low = np.minimum(cloud_2d.min(axis=0), paths.reshape(-1, 2).min(axis=0))
    high = np.maximum(cloud_2d.max(axis=0), paths.reshape(-1, 2).max(axis=0))
    margin = np.maximum(0.05 * (high - low), 1.0)
    last = len(history) - 1
    title_font = _font(10, scale)
    panel_w = fig_w / columns - 8
    star = 160 * min(1.0, scale) ** 2
    for panel, step in enumerate(steps):
        ax = fig.add_subplot(rows, columns, panel + 1)
        ax.scatter(*cloud_2d.T, c=cloud / 255.0, s=2, alpha=0.5, linewidths=0)
        for j in range(paths.shape[1]):
            ax.plot(*paths[: step + 1, j].T, color="0.25", linewidth=0.8)
        current = np.clip(history[step], 0, 255) / 255.0
        ax.scatter(*paths[step].T, c=current, marker="*", s=star, edgecolors="black",
                   linewidths=0.7)
        ax.set_xlim(low[0] - margin[0], high[0] + margin[0])
        ax.set_ylim(low[1] - margin[1], high[1] + margin[1])
        ax.set_xticks([])
        ax.set_yticks([])
        if step == 0:
            title = f"Initialization ({init})"
        elif step == last:
            title = f"Iteration {step} (converged)" if step < max_iter else f"Iteration {step}"
        else:
            title = f"Iteration {step}"
        ax.set_title(_wrap_words(title, title_font, panel_w), fontsize=title_font)
    shown = ("after each iteration" if len(steps) == len(history)
             else f"after {len(steps) - 1} of its {last} iterations (paths show every one)")
    _suptitle(fig, [f"k-means with k = {paths.shape[1]}: centroids {shown}",
                    "(textbook Lloyd on the colour histogram; kpal encode fits coarse to fine "
                    "and may end a little elsewhere; pixels projected on their two main "
                    "directions)"], _font(12, scale))
    return fig


def _principal_plane(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and the two leading principal directions (3, 2) of a point cloud."""
    centre = points.mean(axis=0)
    centred = points - centre
    # The SVD of the 3×3 scatter matrix: the same directions as the SVD of the
    # points, and always three of them, even for one or two points.
    _, _, vt = np.linalg.svd(np.einsum("ni,nj->ij", centred, centred))
    return centre, vt[:2].T


# ------------------------------------------------------------------ curve

#: k values of the trade-off curve: every width of index, 1 to 8 bits.
CURVE_KS = (2, 4, 8, 16, 32, 64, 128, 256)


def curve(
    image: Any,
    ks: Sequence[int] = CURVE_KS,
    *,
    method: str = "kmeans",
    seed: int = 0,
    sample: float | None = None,
    overhead_bytes: int = 0,
    size_of: Callable[[Quantization, int, int], int] | None = None,
    size: tuple[int, int] | None = None,
    points: Sequence[tuple[int, float, int]] | None = None,
    raw_bits: int = 24,
) -> Figure:
    """PSNR and file size against k: the trade-off a user chooses from.

    Parameters
    ----------
    image : PIL.Image.Image or ndarray of shape (height, width, 3), uint8
    ks : sequence of int, default (2, 4, 8, ..., 256)
    method, seed, sample
        As in :func:`compare`.
    overhead_bytes : int, default 0
        Bytes every file adds to the ``k·24 + N·b`` bits of palette and fixed-width
        indices (header and checksum); with it the sizes are the on-disk sizes of
        fixed-width files.
    size_of : callable, optional
        ``size_of(quantization, width, height) -> bytes`` for another coding;
        replaces the formula above.
    size : (int, int), optional
        Figure size in pixels, as in :func:`compare`.
    points : sequence of (k, psnr, bytes), optional
        Points already measured (e.g. :func:`kpal.choose.measure_curve`, or a
        :class:`kpal.choose.Choice`'s ``curve``): drawn as given, nothing fitted.
    raw_bits : {24, 32}, default 24
        Bits per raw pixel in the title; 32 for an image with alpha, whose
        points are then PSNRs of its composites over black and white.

    Returns
    -------
    matplotlib.figure.Figure
        PSNR (dB, left axis) and size (KiB, or bytes under 1 KiB, right axis)
        against k on a log2 axis.

    Raises
    ------
    kpal.errors.OptionError
        A value of ``ks`` is not an integer in 1..256, or ``ks`` is empty;
        ``raw_bits`` is not 24 or 32.
    """
    _check_raw_bits(raw_bits)
    ks = options.check_ks(ks)
    fig = _figure("curve", size)
    rgb = _rgb_array(image)
    height, width = rgb.shape[:2]
    n_pixels = height * width
    used_ks, psnrs, sizes = [], [], []
    for k, psnr, nbytes in points or ():
        used_ks.append(int(k))
        psnrs.append(float(psnr))
        sizes.append(int(nbytes))
    for k in ks if points is None else ():
        with warnings.catch_warnings():
            # Few colours, lossless: the curve shows it as its PSNR ceiling.
            warnings.simplefilter("ignore", UserWarning)
            result = _quantize(rgb, k, method, seed, sample)
        k_used = len(result.palette)
        if used_ks and k_used == used_ks[-1]:
            break  # the image has no more colours: the curve has reached its end
        quality = metrics.psnr(rgb.reshape(-1, 3), result.palette[result.labels])
        used_ks.append(k_used)
        psnrs.append(quality)
        if size_of is None:
            sizes.append(_fixed_bytes(k_used, n_pixels) + overhead_bytes)
        else:
            sizes.append(size_of(result, width, height))
    finite = [p for p in psnrs if math.isfinite(p)]
    ceiling = (max(finite) + 6) if finite else 60.0
    plotted = [p if math.isfinite(p) else ceiling for p in psnrs]

    scale = _scale(fig, "curve")
    font = _font(10, scale)
    small = _font(8, scale)
    fig_w = fig.get_size_inches()[0] * _DPI
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(used_ks, plotted, "o-", color="tab:blue", label="PSNR",
            markersize=6 * min(1.0, scale))
    # A value label above each point, as long as neighbours leave room for it.
    room = (fig_w - 120 * scale) / max(len(used_ks), 1)
    for k, p, shown in zip(used_ks, psnrs, plotted, strict=True):
        label = "lossless" if math.isinf(p) else f"{p:.1f}"
        if len(label) * _CHAR_WIDTH * small * _DPI / 72 > 0.9 * room:
            continue
        ax.annotate(
            label,
            (k, shown),
            textcoords="offset points",
            xytext=(0, 5),
            ha="center",
            fontsize=small,
            color="tab:blue",
            # Readable where the size line crosses it.
            bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none",
                  "alpha": 0.9},
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(used_ks, [str(k) for k in used_ks])
    ax.minorticks_off()
    ax.set_xlabel("k (palette colours)", fontsize=font)
    ax.set_ylabel("PSNR (dB)", color="tab:blue", fontsize=font)
    ax.tick_params(labelsize=small)
    ax.grid(True, alpha=0.3)
    # Both curves rise with k, and with axes fitted to each they would lie on one
    # another: the PSNR curve takes the upper half of the plot (with headroom for its
    # labels), the sizes the lower half.
    bottom, top = ax.get_ylim()
    ax.set_ylim(bottom - 0.9 * (top - bottom), top + 0.12 * (top - bottom))
    # dB ticks only where PSNRs were measured: none in the sizes' half (it would read
    # -20 dB), none beside a lossless point (drawn above the rest, at no dB value).
    ticks = ax.get_yticks()
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    low, high = (min(finite), max(finite)) if finite else (math.inf, -math.inf)
    ax.set_yticks([t for t in ticks if low - step < t <= high + 1e-9 * step])
    ax.set_ylim(bottom - 0.9 * (top - bottom), top + 0.12 * (top - bottom))
    right = ax.twinx()
    # KiB, or bytes for files under 1 KiB (a tiny image would read 0.00 KiB).
    unit, divisor = ("KiB", 1024) if max(sizes) >= 1024 else ("bytes", 1)
    shown_sizes = np.array(sizes) / divisor
    right.plot(used_ks, shown_sizes, "s--", color="tab:red", label="file size",
               markersize=6 * min(1.0, scale))
    right.set_ylabel(f"file size ({unit})", color="tab:red", fontsize=font)
    right.tick_params(labelsize=small)
    right.set_ylim(0, shown_sizes.max() * 2.0)
    # The PSNR axes (line and value labels) above the size line, which would hide them.
    ax.set_zorder(right.get_zorder() + 1)
    ax.patch.set_visible(False)
    raw = raw_bits // 8 * n_pixels
    raw_text = f"{raw / 1024:,.0f} KiB" if raw >= 10 * 1024 else f"{raw:,} bytes"
    title_font = _font(12, scale)
    pieces = [f"Quality against size, {width}×{height} image ({method});",
              f"raw {raw_bits}-bit is {raw_text}"]
    if raw_bits == 32:
        pieces.append("(PSNR of the composites over black and white)")
    if len(used_ks) == 1 and math.isinf(psnrs[0]):
        # A single point: say why there is no curve.
        noun = "colour" if used_ks[0] == 1 else "colours"
        pieces.append(f"{used_ks[0]} {noun}: lossless from k = {used_ks[0]}")
    ax.set_title(_wrap(pieces, title_font, fig_w - 20, " "), fontsize=title_font)
    lines = ax.get_lines()[:1] + right.get_lines()[:1]
    ax.legend(lines, [line.get_label() for line in lines], loc="upper left", fontsize=small)
    return fig
