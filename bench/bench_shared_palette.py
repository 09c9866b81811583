"""What does one shared palette cost? Per-image palettes vs one palette for 20 images.

Two sets of 20 images of 256×256:

- *frames*: a camera pan, 20 crops sliding across scikit-image's coffee photo
  (600×400), as the frames of an animation;
- *photos*: 20 crops of 10 different photos (scikit-image's astronaut,
  chelsea, coffee, rocket, hubble_deep_field and retina, scikit-learn's china
  and flower, matplotlib's grace_hopper, samples/hubble.jpg), two each.

For each k, the mean PSNR over the 20 images of: every image quantized with its
own palette (``kpal.quantize``); every image mapped to one palette fitted to
all 20 (``kpal.palettes.fit_palette``, then the exact nearest colour,
``map_to_palette``); and Pillow's ``Image.quantize(palette=...)`` with the same
shared palette and ``dither=NONE``, which maps through a coarse colour cache.
The mapping times are per image (medians of ``--repeats``).

A second table does the same for the ten images with transparency of
``bench/alpha_corpus.py`` (icons, logos, cut-outs, a vignette; PSNR of the
composites over black and over white): own palettes (``quantize_rgba``), the
shared RGBA palette ``fit_palette`` fits when some image has alpha, and, for
comparison, a palette of ``k - 1`` colours fitted to the colours that show
(opaque and translucent pixels, alpha dropped) plus the transparent entry the
encoder adds, which is what a shared palette without alpha gives these images.
A lossless image counts as 100 dB.

Usage::

    python bench/bench_shared_palette.py            # about 2 minutes
    python bench/bench_shared_palette.py --quick    # k = 64 only
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from alpha_corpus import load_corpus  # noqa: E402
from common import median_time, print_machine_info, print_table  # noqa: E402

from kpal import metrics  # noqa: E402
from kpal.cluster import quantize  # noqa: E402
from kpal.cluster.alpha import composite_mse, quantize_rgba  # noqa: E402
from kpal.palettes import fit_palette, map_to_palette  # noqa: E402

SIDE = 256
#: A lossless image's PSNR (infinite) is counted as this, as in bench_alpha.py.
PSNR_CAP = 100.0
N_IMAGES = 20
SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def _photos() -> dict[str, np.ndarray]:
    from matplotlib import cbook
    from skimage import data
    from sklearn.datasets import load_sample_images

    photos = {name: getattr(data, name)()[..., :3]
              for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
                           "retina")}
    china, flower = load_sample_images().images
    photos.update(china=china, flower=flower)
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        photos["grace_hopper"] = np.asarray(Image.open(f).convert("RGB"))
    photos["hubble.jpg"] = np.asarray(Image.open(SAMPLES / "hubble.jpg").convert("RGB"))
    return {name: np.ascontiguousarray(p) for name, p in photos.items()}


def frames() -> list[np.ndarray]:
    """A pan across coffee: 20 overlapping 256×256 crops."""
    from skimage import data

    coffee = data.coffee()
    height, width = coffee.shape[:2]
    xs = np.linspace(0, width - SIDE, N_IMAGES).astype(int)
    ys = np.linspace(0, height - SIDE, N_IMAGES).astype(int)
    return [np.ascontiguousarray(coffee[y:y + SIDE, x:x + SIDE]) for x, y in zip(xs, ys,
                                                                                   strict=True)]


def photos() -> list[np.ndarray]:
    """Two 256×256 crops (top-left quarter, bottom-right quarter) of each of 10 photos."""
    crops = []
    for photo in _photos().values():
        height, width = photo.shape[:2]
        for y, x in ((height // 4 - SIDE // 2, width // 4 - SIDE // 2),
                     (3 * height // 4 - SIDE // 2, 3 * width // 4 - SIDE // 2)):
            y, x = min(max(y, 0), height - SIDE), min(max(x, 0), width - SIDE)
            crops.append(np.ascontiguousarray(photo[y:y + SIDE, x:x + SIDE]))
    return crops[:N_IMAGES]


def pillow_map(image: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Pillow's mapping onto a given palette, as RGB pixels.

    The palette is padded to 256 entries with copies of its first colour, so
    Pillow cannot pick a colour that is not in it.
    """
    padded = np.concatenate([palette, np.repeat(palette[:1], 256 - len(palette), axis=0)])
    holder = Image.new("P", (1, 1))
    holder.putpalette(padded.tobytes())
    mapped = Image.fromarray(image).quantize(palette=holder, dither=Image.Dither.NONE)
    return np.asarray(mapped.convert("RGB"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print_machine_info()
    warnings.simplefilter("ignore", UserWarning)
    sets = {"frames (pan across coffee)": frames(), "photos (10 photos, 2 crops each)": photos()}
    ks = (64,) if args.quick else (16, 64, 256)
    rows = []
    for set_name, images in sets.items():
        assert len(images) == N_IMAGES and all(im.shape == (SIDE, SIDE, 3) for im in images)
        for k in ks:
            own = [metrics.psnr_from_mse(quantize(im.reshape(-1, 3), k).inertia / 3)
                   for im in images]
            shared = fit_palette(images, k)
            kpal_db, pillow_db, kpal_s, pillow_s = [], [], [], []
            for im in images:
                kpal_db.append(metrics.psnr(im, shared[map_to_palette(im, shared)]))
                pillow_db.append(metrics.psnr(im, pillow_map(im, shared)))
                kpal_s.append(median_time(lambda im=im, p=shared: map_to_palette(im, p),
                                          args.repeats)[0])
                pillow_s.append(median_time(lambda im=im, p=shared: pillow_map(im, p),
                                            args.repeats)[0])
            mean = statistics.fmean
            rows.append({
                "images": set_name, "k": k, "shared k": len(shared),
                "own palettes dB": mean(own), "shared, kpal dB": mean(kpal_db),
                "shared, Pillow dB": mean(pillow_db),
                "cost of sharing dB": mean(own) - mean(kpal_db),
                "Pillow - kpal dB": mean(pillow_db) - mean(kpal_db),
                "worst image, shared dB": min(kpal_db),
                "kpal map ms": 1000 * mean(kpal_s), "Pillow map ms": 1000 * mean(pillow_s),
            })
    print_table(rows, ["images", "k", "shared k", "own palettes dB", "shared, kpal dB",
                       "shared, Pillow dB", "cost of sharing dB", "Pillow - kpal dB",
                       "worst image, shared dB", "kpal map ms", "Pillow map ms"],
                title=f"One palette for {N_IMAGES} images of {SIDE}x{SIDE}: mean PSNR")

    print_table(transparent_rows(ks), ["k", "own palettes dB", "shared RGBA palette dB",
                                       "shared RGB palette + transparent entry dB",
                                       "RGBA - RGB dB", "worst image, RGBA - RGB dB",
                                       "fit s"],
                title="One palette for the 10 images with transparency: mean composite PSNR")


def transparent_rows(ks: tuple[int, ...]) -> list[dict]:
    images = [image for _, image in load_corpus()]
    rows = []
    for k in ks:
        own = [min(PSNR_CAP, metrics.psnr_from_mse(quantize_rgba(im.reshape(-1, 4), k).inertia / 3))
               for im in images]
        start = time.perf_counter()
        shared = fit_palette(images, k)
        fit_s = time.perf_counter() - start
        visible = fit_palette([im[im[..., 3] > 0][:, :3] for im in images], k - 1)
        columns = []
        for palette in (shared, visible):
            columns.append([_composite_psnr(im, palette) for im in images])
        gains = [a - b for a, b in zip(*columns, strict=True)]
        rows.append({"k": k, "own palettes dB": statistics.fmean(own),
                     "shared RGBA palette dB": statistics.fmean(columns[0]),
                     "shared RGB palette + transparent entry dB": statistics.fmean(columns[1]),
                     "RGBA - RGB dB": statistics.fmean(gains),
                     "worst image, RGBA - RGB dB": min(gains), "fit s": fit_s})
    return rows


def _composite_psnr(image: np.ndarray, palette: np.ndarray) -> float:
    """Composite PSNR of ``image`` mapped onto ``palette`` as the encoder maps it."""
    import kpal

    decoded = np.asarray(kpal.decode(kpal.encode(image, palette=palette)).convert("RGBA"))
    mse = composite_mse(image.reshape(-1, 4), decoded.reshape(-1, 4))
    return min(PSNR_CAP, metrics.psnr_from_mse(mse))


if __name__ == "__main__":
    main()
