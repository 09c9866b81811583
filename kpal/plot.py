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
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from kpal import metrics
from kpal.cluster import Quantization, quantize
from kpal.cluster.histogram import color_histogram
from kpal.cluster.init import kmeans_plusplus, random_init
from kpal.cluster.kmeans import KMeans, tolerance

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "KINDS",
    "MISSING_MATPLOTLIB",
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


def _figure(kind: str, size: tuple[int, int] | None) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(MISSING_MATPLOTLIB) from error
    width, height = size or _DEFAULT_SIZES[kind]
    if width < 50 or height < 50:
        msg = f"figure size {width}x{height} is too small (at least 50x50 pixels)"
        raise ValueError(msg)
    return Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)


def _rgb_array(image: Any) -> np.ndarray:
    """An (height, width, 3) uint8 array from a PIL image or an array."""
    if hasattr(image, "convert"):  # a PIL image; PIL itself need not be imported here
        image = image.convert("RGB")
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        msg = (
            "image must be a PIL image or a uint8 array of shape (height, width, 3), "
            f"got {array.dtype} {array.shape}"
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
    original_bytes: int | None = None,
    compressed_bytes: int | None = None,
    size: tuple[int, int] | None = None,
) -> Figure:
    """The original and the compressed image side by side.

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
    original_bytes : int, optional
        Size of the original file; default: the raw 24-bit size ``3·N``.
    compressed_bytes : int, optional
        Size of the ``.kpal`` file; default: the ``k·24 + N·b`` bits of
        palette and fixed-width indices.
    size : (int, int), optional
        Figure size in pixels (width, height).

    Returns
    -------
    matplotlib.figure.Figure
        Panels titled "Original" and "Compressed to K colours", the sizes and
        the PSNR in the caption.
    """
    rgb = _rgb_array(image)
    height, width = rgb.shape[:2]
    if size is None:
        # Two images side by side at this width, plus room for titles and caption.
        panel_width = _DEFAULT_SIZES["compare"][0] // 2
        size = (2 * panel_width, min(1600, int(panel_width * height / width) + 110))
    fig = _figure("compare", size)
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
    psnr_text = "lossless" if math.isinf(quality) else f"PSNR {quality:.2f} dB"

    for index, (picture, title) in enumerate(
        [(rgb, "Original"), (compressed, f"Compressed to {k_used} colours")]
    ):
        ax = fig.add_subplot(1, 2, index + 1)
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(title, fontsize=13)
        ax.set_axis_off()
    fig_height = fig.get_size_inches()[1] * _DPI
    fig.text(
        0.5,
        20 / fig_height,
        f"Original: {original_text}    Compressed: {compressed_text}    "
        f"{3 * n_pixels / compressed_bytes:.1f}× smaller than raw    {psnr_text}",
        ha="center",
        fontsize=11,
    )
    fig.subplots_adjust(
        left=0.01, right=0.99, top=1 - 40 / fig_height, bottom=60 / fig_height, wspace=0.03
    )
    return fig


# ------------------------------------------------------------------ palette


def palette(
    image: Any,
    k: int = 16,
    *,
    method: str = "kmeans",
    seed: int = 0,
    sample: float | None = None,
    quantization: tuple[np.ndarray, np.ndarray] | Quantization | None = None,
    size: tuple[int, int] | None = None,
) -> Figure:
    """The palette as swatches, most used first, with hex values and pixel shares.

    Parameters are as in :func:`compare`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = _figure("palette", size)
    rgb = _rgb_array(image)
    if quantization is None:
        quantization = _quantize(rgb, k, method, seed, sample)
    colours, labels = (np.asarray(part) for part in quantization)
    share = np.bincount(labels.reshape(-1), minlength=len(colours)) / labels.size
    order = np.argsort(-share, kind="stable")
    n = len(colours)
    # A grid about as wide as the figure's aspect asks for.
    fig_w, fig_h = fig.get_size_inches()
    columns = max(1, min(n, math.ceil(math.sqrt(n * fig_w / fig_h))))
    rows = math.ceil(n / columns)
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.9))
    ax.set_xlim(0, columns)
    ax.set_ylim(rows, 0)
    ax.set_axis_off()
    font = max(4.0, min(12.0, 70.0 / columns))
    for slot, j in enumerate(order):
        row, column = divmod(slot, columns)
        colour = colours[j]
        ax.add_patch(
            _rectangle((column + 0.04, row + 0.04), 0.92, 0.92, colour / 255.0, edge="0.6")
        )
        ax.text(
            column + 0.5,
            row + 0.5,
            f"{_hex(colour)}\n{100 * share[j]:.1f} %",
            ha="center",
            va="center",
            fontsize=font,
            color=_text_colour(colour),
            family="monospace",
        )
    fig.suptitle(f"Palette: {n} colours, by share of pixels", fontsize=13)
    return fig


def _rectangle(xy, width, height, face, edge):
    from matplotlib.patches import Rectangle

    return Rectangle(xy, width, height, facecolor=face, edgecolor=edge, linewidth=0.5)


# ------------------------------------------------------------------ scatter


def scatter(
    image: Any,
    k: int = 16,
    *,
    method: str = "kmeans",
    seed: int = 0,
    sample: float | None = None,
    n_points: int = 4000,
    quantization: tuple[np.ndarray, np.ndarray] | Quantization | None = None,
    size: tuple[int, int] | None = None,
) -> Figure:
    """Sampled pixels as a 3D cloud in RGB space, the palette colours as large stars.

    Parameters
    ----------
    n_points : int, default 4000
        Pixels drawn at random (without replacement) for the cloud.

    Other parameters are as in :func:`compare`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = _figure("scatter", size)
    rgb = _rgb_array(image)
    if quantization is None:
        quantization = _quantize(rgb, k, method, seed, sample)
    colours = np.asarray(next(iter(quantization)))
    points = _sample_rows(rgb.reshape(-1, 3), n_points, seed)
    ax = fig.add_subplot(projection="3d")
    ax.scatter(*points.T, c=points / 255.0, s=4, alpha=0.6, depthshade=False, linewidths=0)
    ax.scatter(
        *colours.T,
        c=colours / 255.0,
        marker="*",
        s=420,
        edgecolors="black",
        linewidths=1.0,
        depthshade=False,
    )
    for axis, name in zip("xyz", ("red", "green", "blue"), strict=True):
        getattr(ax, f"set_{axis}lim")(0, 255)
        getattr(ax, f"set_{axis}label")(name)
    ax.set_title(
        f"{len(points):,} pixels in RGB space and the {len(colours)} palette colours (stars)"
    )
    fig.subplots_adjust(left=0.0, right=0.95, top=0.93, bottom=0.03)
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
    pixels : ndarray of shape (n_pixels, 3), uint8
    k : int
        Number of centroids (at most the number of distinct colours).
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
    """
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
    early = list(range(n_panels // 2))
    spread = np.linspace(early[-1] + 1, n_steps - 1, n_panels - len(early))
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
    principal components), where the pixels spread the most.

    Parameters
    ----------
    init : {"k-means++", "random"}, default "k-means++"
    max_iter : int, default 100
    n_panels : int, default 9
    n_points : int, default 3000
        Pixels drawn for the background cloud.

    Other parameters are as in :func:`compare`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = _figure("iterations", size)
    pixels = _rgb_array(image).reshape(-1, 3)
    history = kmeans_history(pixels, k, init=init, seed=seed, max_iter=max_iter)
    cloud = _sample_rows(pixels, n_points, seed).astype(np.float64)
    centre, axes = _principal_plane(cloud)
    cloud_2d = (cloud - centre) @ axes
    paths = np.stack([(h - centre) @ axes for h in history])  # (steps, k, 2)
    steps = _panel_steps(len(history), n_panels)
    columns = math.ceil(math.sqrt(len(steps)))
    rows = math.ceil(len(steps) / columns)
    low = np.minimum(cloud_2d.min(axis=0), paths.reshape(-1, 2).min(axis=0))
    high = np.maximum(cloud_2d.max(axis=0), paths.reshape(-1, 2).max(axis=0))
    margin = 0.05 * (high - low)
    last = len(history) - 1
    for panel, step in enumerate(steps):
        ax = fig.add_subplot(rows, columns, panel + 1)
        ax.scatter(*cloud_2d.T, c=cloud / 255.0, s=2, alpha=0.5, linewidths=0)
        for j in range(paths.shape[1]):
            ax.plot(*paths[: step + 1, j].T, color="0.25", linewidth=0.8)
        current = np.clip(history[step], 0, 255) / 255.0
        ax.scatter(*paths[step].T, c=current, marker="*", s=160, edgecolors="black", linewidths=0.7)
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
        ax.set_title(title, fontsize=10)
    fig.suptitle(
        f"k-means with k = {paths.shape[1]}: centroids after each iteration "
        "(pixels projected on their two main directions)",
        fontsize=12,
    )
    fig.subplots_adjust(left=0.02, right=0.98, top=0.91, bottom=0.02, wspace=0.06, hspace=0.15)
    return fig


def _principal_plane(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and the two leading principal directions (3, 2) of a point cloud."""
    centre = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - centre, full_matrices=False)
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
        Figure size in pixels.

    Returns
    -------
    matplotlib.figure.Figure
        PSNR (dB, left axis) and size (KiB, right axis) against k on a log2 axis.
    """
    fig = _figure("curve", size)
    rgb = _rgb_array(image)
    height, width = rgb.shape[:2]
    n_pixels = height * width
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1 or ks[-1] > 256:
        msg = f"ks={list(ks)} must be values between 1 and 256"
        raise ValueError(msg)
    used_ks, psnrs, sizes = [], [], []
    for k in ks:
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

    ax = fig.add_subplot(1, 1, 1)
    ax.plot(used_ks, plotted, "o-", color="tab:blue", label="PSNR")
    for k, p, shown in zip(used_ks, psnrs, plotted, strict=True):
        ax.annotate(
            "lossless" if math.isinf(p) else f"{p:.1f}",
            (k, shown),
            textcoords="offset points",
            xytext=(0, 7),
            ha="center",
            fontsize=8,
            color="tab:blue",
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(used_ks, [str(k) for k in used_ks])
    ax.set_xlabel("k (palette colours)")
    ax.set_ylabel("PSNR (dB)", color="tab:blue")
    ax.grid(True, alpha=0.3)
    right = ax.twinx()
    kib = np.array(sizes) / 1024
    right.plot(used_ks, kib, "s--", color="tab:red", label="file size")
    right.set_ylabel("file size (KiB)", color="tab:red")
    right.set_ylim(0, kib.max() * 1.15)
    raw = 3 * n_pixels / 1024
    ax.set_title(
        f"Quality against size, {width}×{height} image ({method}); raw 24-bit is {raw:,.0f} KiB"
    )
    lines = ax.get_lines()[:1] + right.get_lines()[:1]
    ax.legend(lines, [line.get_label() for line in lines], loc="lower right")
    fig.subplots_adjust(left=0.09, right=0.9, top=0.9, bottom=0.11)
    return fig
