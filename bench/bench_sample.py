"""Does ``--sample`` make the fit faster? Full fit against fits on a fraction of the pixels.

For each image and k, ``kpal.quantize`` is timed on all pixels and with
``sample=0.1`` and ``sample=0.3``, in turns (medians of ``--repeats``), and the
PSNR of each result against the original pixels is printed beside it. The
images are a 2×2 mosaic of four real photos (scikit-image's astronaut, coffee,
chelsea and rocket, each resized to 960×640 with Lanczos, 2.5 MP), the same
mosaic with Gaussian sensor noise (σ = 6, so most pixels have a colour of
their own, the case where a fit on a sample has the most to save), and the
12 MP upscaled astronaut of the corpus.

Usage::

    python bench/bench_sample.py            # about 3 minutes
    python bench/bench_sample.py --quick    # the mosaics at k = 64 only
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import interleaved_median_times, print_machine_info, print_table  # noqa: E402
from corpus import TWELVE_MP, ensure, load_rgb  # noqa: E402

from kpal.cluster import quantize  # noqa: E402
from kpal.metrics import psnr_from_mse  # noqa: E402

FRACTIONS = (None, 0.1, 0.3)


def mosaic(noise: float = 0.0) -> np.ndarray:
    """Four real photos side by side, 1920×1280, optionally with sensor noise."""
    from skimage import data

    tiles = [np.asarray(Image.fromarray(np.ascontiguousarray(getattr(data, name)()[..., :3]))
                        .resize((960, 640), Image.Resampling.LANCZOS))
             for name in ("astronaut", "coffee", "chelsea", "rocket")]
    image = np.concatenate([np.concatenate(tiles[:2], 1), np.concatenate(tiles[2:], 1)], 0)
    if noise:
        rng = np.random.default_rng(0)
        noisy = image.astype(np.float64) + rng.normal(0, noise, image.shape)
        image = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return image


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print_machine_info()
    images = {"mosaic 2.5 MP": mosaic(), "mosaic + noise 2.5 MP": mosaic(6.0)}
    if not args.quick:
        images["astronaut 12 MP"] = load_rgb(ensure(TWELVE_MP))
    ks = (64,) if args.quick else (16, 64, 256)
    rows = []
    warnings.simplefilter("ignore", UserWarning)
    for name, image in images.items():
        pixels = image.reshape(-1, 3)
        for k in ks:
            results = {}

            def fit(fraction, k=k, pixels=pixels, results=results):
                results[fraction] = quantize(pixels, k, sample=fraction)

            times = interleaved_median_times(
                {fraction: (lambda f=fraction: fit(f)) for fraction in FRACTIONS},
                repeats=args.repeats)
            row = {"image": name, "k": k}
            full = times[None][0]
            for fraction in FRACTIONS:
                label = "all" if fraction is None else f"{fraction:g}"
                row[f"{label} s"] = f"{times[fraction][0]:.2f}"
                row[f"{label} dB"] = f"{psnr_from_mse(results[fraction].inertia / 3):.2f}"
                if fraction is not None:
                    row[f"{label}/all"] = f"{times[fraction][0] / full:.2f}"
            rows.append(row)
    columns = ["image", "k", "all s", "all dB", "0.1 s", "0.1 dB", "0.1/all", "0.3 s", "0.3 dB",
               "0.3/all"]
    print_table(rows, columns, title="kpal.quantize: all pixels vs a sample (medians, seconds)")


if __name__ == "__main__":
    main()
