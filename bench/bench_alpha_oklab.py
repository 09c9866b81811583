"""Side-by-side benchmark: RGBA palettes chosen in Oklab against RGB.

Corpus: bench/alpha_corpus.py. For every image and k (default 16 and 64),
``kpal.cluster.alpha.quantize_rgba(pixels, k, space=...)`` for ``"rgb"`` and
``"oklab"``, nearest entry, no dithering, in one run:

ΔE
    Mean Oklab ΔE (Euclidean distance of Oklab coordinates, times 100) between
    the original's and the result's composites over black and over white
    (``c·a + bg·(1 - a)`` in sRGB values, as a browser blends, not rounded),
    averaged over both backgrounds; a pixel of alpha 0 in both counts 0.
PSNR
    Composite PSNR (:func:`kpal.cluster.alpha.composite_mse`), what
    bench/bench_alpha.py measures; lossless counts as ``PSNR_CAP``.
time
    Medians of ``--repeats`` interleaved runs of both spaces.

``--large WxH`` adds one soft-alpha photo of that size
(:func:`alpha_corpus.large_vignette`), at the k given.
``--picture PATH`` writes a comparison (original, rgb, oklab at the first k,
composited over a checkerboard) of the image ``--picture-image``.

Run::

    python bench/bench_alpha_oklab.py
    python bench/bench_alpha_oklab.py --images vignette-astronaut --k 16 --repeats 1
    python bench/bench_alpha_oklab.py --images none --large 2000x1500 --k 16 64
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from alpha_corpus import large_vignette, load_corpus  # noqa: E402
from common import interleaved_median_times, print_machine_info, print_table  # noqa: E402

from kpal.cluster.alpha import composite_mse, quantize_rgba  # noqa: E402
from kpal.cluster.perceptual import oklab_from_srgb8  # noqa: E402

PSNR_CAP = 60.0
SPACES = ("rgb", "oklab")


def delta_e(original: np.ndarray, quantized: np.ndarray) -> float:
    """Mean Oklab ΔE (×100) of the composites over black and over white, averaged."""
    a = original.reshape(-1, 4).astype(np.float64)
    b = quantized.reshape(-1, 4).astype(np.float64)
    total = 0.0
    step = 1 << 20
    for start in range(0, a.shape[0], step):
        x, y = a[start:start + step], b[start:start + step]
        for background in (0.0, 255.0):
            over_x = x[:, :3] * (x[:, 3:] / 255.0) + background * (1 - x[:, 3:] / 255.0)
            over_y = y[:, :3] * (y[:, 3:] / 255.0) + background * (1 - y[:, 3:] / 255.0)
            diff = oklab_from_srgb8(over_x) - oklab_from_srgb8(over_y)
            total += float(np.sqrt(np.einsum("nd,nd->n", diff, diff)).sum()) * 100.0 / 255.0
    return total / (2 * a.shape[0])


def psnr(original: np.ndarray, quantized: np.ndarray) -> float:
    mse = composite_mse(original, quantized)
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * np.log10(255.0**2 / mse))


def run(name: str, image: np.ndarray, k: int, repeats: int) -> dict:
    pixels = image.reshape(-1, 4)
    results = {}

    def fit(space: str):
        def go():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                results[space] = quantize_rgba(pixels, k, space=space)
        return go

    times = interleaved_median_times({space: fit(space) for space in SPACES}, repeats)
    row = {"image": name, "k": k}
    for space in SPACES:
        q = results[space]
        out = q.palette[q.labels]
        row[f"ΔE {space}"] = round(delta_e(pixels, out), 3)
        row[f"PSNR {space}"] = round(psnr(pixels, out), 2)
        row[f"s {space}"] = round(times[space][0], 3)
    row["time ratio"] = round(times["oklab"][0] / times["rgb"][0], 2)
    return row


def checkerboard_picture(image: np.ndarray, k: int, path: str) -> None:
    """Original, rgb and oklab results side by side over a checkerboard, 2x."""
    from PIL import Image

    h, w = image.shape[:2]
    y, x = np.mgrid[0:h, 0:w]
    board = np.where(((y // 12 + x // 12) % 2)[..., None] == 0, 205.0, 120.0)
    panels = [image]
    for space in SPACES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            q = quantize_rgba(image.reshape(-1, 4), k, space=space)
        panels.append(q.palette[q.labels].reshape(image.shape))
    shown = []
    for panel in panels:
        a = panel[..., 3:].astype(np.float64) / 255.0
        shown.append(np.rint(panel[..., :3] * a + board * (1 - a)).astype(np.uint8))
    strip = np.concatenate(shown, axis=1)
    Image.fromarray(strip).resize((strip.shape[1] * 2, strip.shape[0] * 2),
                                  Image.NEAREST).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--images", nargs="*", default=None,
                        help="Corpus images to run (all by default; 'none' for none).")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large", default=None, help="Add a soft-alpha photo of WxH pixels.")
    parser.add_argument("--picture", default=None)
    parser.add_argument("--picture-image", default="vignette-astronaut")
    args = parser.parse_args()
    print_machine_info()
    corpus = [] if args.images == ["none"] else load_corpus(args.images)
    if args.large:
        width, height = (int(v) for v in args.large.split("x"))
        corpus.append((f"large {width}x{height}", large_vignette(width, height)))
    for k in args.k:
        rows = [run(name, image, k, args.repeats) for name, image in corpus]
        if len(rows) > 1:
            mean = {"image": "mean", "k": k}
            for column in rows[0]:
                if column not in ("image", "k"):
                    mean[column] = round(statistics.fmean(r[column] for r in rows), 3)
            rows.append(mean)
        print_table(rows, list(rows[0]), f"k = {k}")
    if args.picture:
        image = dict(load_corpus([args.picture_image]))[args.picture_image]
        checkerboard_picture(image, args.k[0], args.picture)


if __name__ == "__main__":
    main()
