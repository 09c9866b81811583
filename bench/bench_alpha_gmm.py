"""Benchmark: ``method="gmm"`` against k-means on RGBA images (kpal.cluster.alpha).

Corpus: bench/alpha_corpus.py. For every image and k, in one run: the
composite PSNR (over black and white, :func:`kpal.cluster.alpha.composite_mse`;
lossless counts as 99 dB) of ``quantize_rgba(pixels, k, method=...)`` for both
methods, whether alpha 0 and 255 came back exact, and the median times of
``--repeats`` interleaved runs with their ratio. Images whose alpha is only 0
and 255 go through the RGB quantizer (``mask`` in the table); the others
through :mod:`kpal.cluster.alpha_gmm`.

``--large W H`` adds a W×H photo with a soft vignette alpha
(:func:`alpha_corpus.large_vignette`), whose translucent pixels k-means takes
from the pixels and the mixture from the distinct colours, merged into cells;
for it the table also shows the mixture fitted from the pixels
(:func:`kpal.cluster.alpha_gmm.quantize_translucent_pixels`, compiled when
numba is installed), timed in the same turns.

Run::

    python bench/bench_alpha_gmm.py --k 16 64 --repeats 3
    python bench/bench_alpha_gmm.py --images none --large 2000 1500 --k 16
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from alpha_corpus import large_vignette, load_corpus  # noqa: E402
from common import interleaved_median_times, print_machine_info, print_table  # noqa: E402

from kpal import _jit, options  # noqa: E402
from kpal.cluster.alpha import _PIXEL_PATH, composite_mse, quantize_rgba  # noqa: E402
from kpal.cluster.alpha_gmm import quantize_translucent_pixels  # noqa: E402

PSNR_CAP = 99.0
METHODS = ("kmeans", "gmm")


def psnr(pixels: np.ndarray, result) -> float:
    mse = composite_mse(pixels, result.palette[result.labels])
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * math.log10(255.0**2 / mse))


def mask_exact(pixels: np.ndarray, result) -> bool:
    out = result.palette[result.labels]
    alpha = pixels[:, 3]
    return bool((out[alpha == 0] == 0).all() and (out[alpha == 255, 3] == 255).all())


def bench_one(name: str, image: np.ndarray, k: int, repeats: int) -> dict:
    pixels = np.ascontiguousarray(image.reshape(-1, 4))
    alpha = pixels[:, 3]
    kind = "mask" if not ((alpha > 0) & (alpha < 255)).any() else "soft"
    results = {}

    def run(method: str):
        def fit():
            results[method] = quantize_rgba(pixels, k, method=method)
        return fit

    fns = {m: run(m) for m in METHODS}
    many = int(np.count_nonzero((alpha > 0) & (alpha < 255))) >= _PIXEL_PATH
    if many:
        fast = _jit.load("kpal.cluster._alpha_fast", pixels.shape[0], min_pixels=0)
        opts = options.EncodeOptions(k=k, method="gmm")

        def from_pixels():
            results["gmm pixels"] = quantize_translucent_pixels(pixels, k, opts, fast)

        fns["gmm pixels"] = from_pixels
    times = interleaved_median_times(fns, repeats=repeats)
    row = {"image": name, "alpha": kind, "k": k}
    if many:
        row["gmm pixels dB"] = psnr(pixels, results["gmm pixels"])
        row["gmm pixels s"] = times["gmm pixels"][0]
    for method in METHODS:
        row[f"{method} dB"] = psnr(pixels, results[method])
        row[f"{method} s"] = times[method][0]
    row["gmm − kmeans dB"] = row["gmm dB"] - row["kmeans dB"]
    row["time gmm/kmeans"] = row["gmm s"] / row["kmeans s"]
    row["exact"] = "yes" if all(mask_exact(pixels, results[m]) for m in METHODS) else "NO"
    row["EM iter"] = results["gmm"].n_iter
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", nargs="*", default=None,
                        help="Corpus names to run (default all; 'none' for none).")
    parser.add_argument("--large", type=int, nargs=2, metavar=("W", "H"), default=None)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", UserWarning)
    print_machine_info()
    images = [] if args.images == ["none"] else load_corpus(args.images)
    if args.large:
        width, height = args.large
        images.append((f"vignette {width}×{height}", large_vignette(width, height)))
    columns = ["image", "alpha", "k", "kmeans dB", "gmm dB", "gmm − kmeans dB", "kmeans s",
               "gmm s", "time gmm/kmeans", "exact", "EM iter"]
    if args.large:
        columns += ["gmm pixels dB", "gmm pixels s"]
    for k in args.k:
        rows = [bench_one(name, image, k, args.repeats) for name, image in images]
        soft = [row for row in rows if row["alpha"] == "soft"]
        if len(soft) > 1:
            rows.append({"image": "mean (soft alpha)", "alpha": "", "k": k,
                         **{c: statistics.mean(r[c] for r in soft)
                            for c in ("kmeans dB", "gmm dB", "gmm − kmeans dB")},
                         "time gmm/kmeans": statistics.median(r["time gmm/kmeans"]
                                                              for r in soft)})
        print_table(rows, columns, f"k = {k}")


if __name__ == "__main__":
    main()
