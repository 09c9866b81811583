"""Dithering and perceptual palettes: kpal's variants against pngquant, on SSIMULACRA2.

Every photo of ``bench/photos.py`` (26 real photos, two of them 1920 x 1280)
is quantized by kpal at each k twice: k-means in RGB (``quantize``, today's
default) and in Oklab (``quantize_perceptual``). Each palette is applied with:

- ``none``: the nearest colour (RGB palette: RGB distance, today's output;
  Oklab palette: Oklab distance); every variant with an Oklab palette
  measures "nearest" in Oklab (``space="oklab"``);
- ``fs``: serpentine Floyd--Steinberg (``dither_image``);
- ``fs adaptive``: error scaled by the edge/noise map;
- ``ordered``: blue-noise ordered dithering;

and pngquant (Debian package) runs at the same k with its defaults
(``pngquant``, dithered) and with ``--nofs``.

Columns: PSNR (dB), SSIMULACRA2 (the ``ssimulacra2`` package; higher is
better, 90 is visually lossless), the worst per-photo gap to pngquant's
default, the entropy-coded index size (``kpal.coding.get("entropy")``) and
its ratio to the undithered labels of the same palette. Then the 12 MP
timing: numpy against compiled remap, medians of 3 runs.

Usage::

    python bench/bench_dither.py                      # all photos, k = 16, 64, 256
    python bench/bench_dither.py --k 16 --images coffee astronaut --no-12mp
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import median_time, print_machine_info, print_table, psnr  # noqa: E402
from bench.photos import BIG, PHOTOS, load  # noqa: E402
from kpal.cluster import quantize  # noqa: E402
from kpal.cluster.histogram import color_histogram  # noqa: E402
from kpal.cluster.perceptual import quantize_perceptual  # noqa: E402
from kpal.cluster.remap import dither_image, remap  # noqa: E402
from kpal.coding import get as get_coding  # noqa: E402

#: (name, palette space, dither_image keywords)
KPAL_VARIANTS = (
    ("none rgb", "rgb", {"dither": "none"}),
    ("fs rgb", "rgb", {"dither": "fs"}),
    ("none oklab", "oklab", {"dither": "none"}),
    ("fs oklab", "oklab", {"dither": "fs"}),
    ("fs adaptive oklab", "oklab", {"dither": "fs", "adaptive": True}),
    ("ordered oklab", "oklab", {"dither": "ordered"}),
)


class Reference:
    """SSIMULACRA2 against one original, its half of the work done once.

    The same steps as ``ssimulacra2.compute_ssimulacra2`` (version 0.3.0, no
    alpha), with the original's colour conversion and blurs kept between
    calls; checked against the package at start-up.
    """

    def __init__(self, original: np.ndarray) -> None:
        from ssimulacra2 import ssimulacra2 as s2

        self.s2 = s2
        linear = s2.srgb_to_linear(original.astype(np.float64))
        self.scales = []
        for scale in range(s2.kNumScales):
            xyb = s2.make_positive_xyb(s2.linear_rgb_to_xyb(linear))
            if xyb.shape[0] < 8 or xyb.shape[1] < 8:
                break
            self.scales.append((xyb, s2.blur_image(xyb * xyb), s2.blur_image(xyb)))
            if scale < s2.kNumScales - 1:
                linear = s2.downsample(linear, 2, 2)

    def score(self, distorted: np.ndarray) -> float:
        s2 = self.s2
        linear = s2.srgb_to_linear(distorted.astype(np.float64))
        msssim = s2.Msssim()
        for scale, (img1, sigma1_sq, mu1) in enumerate(self.scales):
            img2 = s2.make_positive_xyb(s2.linear_rgb_to_xyb(linear))
            sigma2_sq = s2.blur_image(img2 * img2)
            sigma12 = s2.blur_image(img1 * img2)
            mu2 = s2.blur_image(img2)
            data = s2.MsssimScale()
            data.avg_ssim = s2.ssim_map(mu1, mu2, sigma1_sq, sigma2_sq, sigma12)
            data.avg_edgediff = s2.edge_diff_map(img1, mu1, img2, mu2)
            msssim.scales.append(data)
            if scale < len(self.scales) - 1:
                linear = s2.downsample(linear, 2, 2)
        return float(msssim.score())


def entropy_bytes(labels: np.ndarray, k: int) -> int:
    """Length of the entropy-coded indices."""
    return len(get_coding("entropy").encode(np.ascontiguousarray(labels), k))


def pngquant(pixels: np.ndarray, k: int, dither: bool,
             folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """pngquant at ``k`` colours, default settings (or ``--nofs``): labels and palette."""
    source, target = folder / "in.png", folder / "out.png"
    Image.fromarray(pixels).save(source, compress_level=1)
    argv = ["pngquant", str(k), "--force", "--output", str(target), str(source)]
    if not dither:
        argv.insert(2, "--nofs")
    subprocess.run(argv, check=True)
    with Image.open(target) as image:
        labels = np.asarray(image)
        palette = np.array(image.getpalette()[: 3 * (int(labels.max()) + 1)], dtype=np.uint8)
    return labels, palette.reshape(-1, 3)


def photo_rows(job: tuple[str, list[int], bool, list[str]]) -> list[dict]:
    """Every variant of one photo at every k."""
    name, ks, with_pngquant, variants = job
    pixels = load(name)
    reference = Reference(pixels)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in ks:
            flat = pixels.reshape(-1, 3)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "lossless": expected
                spaces = {space for variant, space, _ in KPAL_VARIANTS if variant in variants}
                palettes = {"rgb": quantize(flat, k).palette if "rgb" in spaces else None,
                            "oklab": quantize_perceptual(flat, k, space="oklab").palette}
            runs = {}
            # As the encoder: an image of at most k colours is kept exactly, not dithered.
            lossless = len(color_histogram(flat)) <= k
            for variant, space, kwargs in KPAL_VARIANTS:
                if variant not in variants:
                    continue
                if lossless:
                    kwargs = {"dither": "none"}
                start = time.perf_counter()
                palette, labels = dither_image(pixels, palettes[space], space=space, **kwargs)
                runs[variant] = (labels, palette, time.perf_counter() - start)
            if with_pngquant:
                for variant, dither in (("pngquant --nofs", False), ("pngquant", True)):
                    runs[variant] = (*pngquant(pixels, k, dither, Path(tmp)), float("nan"))
            for variant, (labels, palette, seconds) in runs.items():
                out = palette[labels]
                rows.append({
                    "image": name, "k": k, "variant": variant, "PSNR": psnr(pixels, out),
                    "SSIMULACRA2": reference.score(out),
                    "entropy B": entropy_bytes(labels, max(palette.shape[0], 2)),
                    "s": seconds,
                })
    print(f"  {name} done", file=sys.stderr, flush=True)
    return rows


def summary(rows: list[dict], ks: list[int]) -> list[dict]:
    """Means over photos per (k, variant); gaps to pngquant; size relative to undithered."""
    out = []
    for k in ks:
        at_k = [r for r in rows if r["k"] == k]
        ref = {r["image"]: r["SSIMULACRA2"] for r in at_k if r["variant"] == "pngquant"}
        sizes = {(r["image"], r["variant"]): r["entropy B"] for r in at_k}
        for variant in dict.fromkeys(r["variant"] for r in at_k):
            group = [r for r in at_k if r["variant"] == variant]
            if variant.endswith(" rgb") or variant.endswith(" oklab"):
                undithered = "none " + variant.rsplit(" ", 1)[1]
                if (group[0]["image"], undithered) not in sizes:
                    undithered = None  # not run: no ratio
            else:
                undithered = "pngquant --nofs"
            gaps = [r["SSIMULACRA2"] - ref[r["image"]] for r in group if r["image"] in ref]
            worst = min(gaps) if gaps else float("nan")
            worst_image = (min(group, key=lambda r: r["SSIMULACRA2"] - ref.get(r["image"], 0))
                           ["image"] if gaps else "")
            out.append({
                "k": k, "variant": variant,
                "PSNR": statistics.fmean(r["PSNR"] for r in group),
                "SSIMULACRA2": statistics.fmean(r["SSIMULACRA2"] for r in group),
                "vs pngquant": statistics.fmean(gaps) if gaps else float("nan"),
                "worst gap": worst, "worst photo": worst_image,
                "entropy B": statistics.fmean(r["entropy B"] for r in group),
                "size vs undithered": float("nan") if undithered is None else statistics.fmean(
                    r["entropy B"] / sizes[(r["image"], undithered)] for r in group),
            })
    return out


def _time(pixels: np.ndarray, palette: np.ndarray, kwargs: dict, threads: int,
          repeats: int) -> float:
    return median_time(lambda: remap(pixels, palette, threads=threads, **kwargs), repeats)[0]


def twelve_mp_rows(ks: list[int]) -> list[dict]:
    """Remap time on a 12 MP photo (retina_big upscaled to 4000 x 3000): numpy vs compiled."""
    pixels = np.asarray(Image.fromarray(load("retina_big")).resize(
        (4000, 3000), Image.Resampling.LANCZOS))
    rows = []
    part = pixels[:250]  # 1 MP: the numpy error diffusion is timed here, times 12
    for k in ks:
        palette = quantize(np.ascontiguousarray(pixels[::8, ::8]).reshape(-1, 3), k).palette
        for variant, kwargs in (("none", {}), ("ordered", {"dither": "ordered"}),
                                ("fs", {"dither": "fs"}),
                                ("fs adaptive", {"dither": "fs", "adaptive": True}),
                                ("ordered oklab", {"dither": "ordered", "space": "oklab"}),
                                ("fs oklab", {"dither": "fs", "space": "oklab"})):
            row = {"k": k, "variant": variant}
            os.environ["KPAL_PURE_NUMPY"] = "0"
            remap(pixels[:64, :1000], palette, **kwargs)  # load the compiled kernels
            for threads in (1, 2):
                row[f"compiled s ({threads} thr)"] = _time(pixels, palette, kwargs, threads, 3)
            os.environ["KPAL_PURE_NUMPY"] = "1"
            if variant.startswith("fs"):
                row["numpy s"] = 12 * _time(part, palette, kwargs, 1, 1)
                row["numpy note"] = "1 MP x 12"
            else:
                row["numpy s"] = _time(pixels, palette, kwargs, 1, 1)
                row["numpy note"] = "12 MP"
            del os.environ["KPAL_PURE_NUMPY"]
            rows.append(row)
            print(f"  12 MP k={k} {variant} done", file=sys.stderr, flush=True)
    base = {r["k"]: r["compiled s (1 thr)"] for r in rows if r["variant"] == "none"}
    for row in rows:
        row["compiled added s"] = row["compiled s (1 thr)"] - base[row["k"]]
    return rows


def figure(path: Path, name: str = "astronaut", box: tuple[int, int, int, int] = (0, 0, 256, 192),
           k: int = 16, zoom: int = 2) -> None:
    """One crop at ``k`` colours, side by side: original, kpal none, kpal fs, pngquant.

    The palettes are fitted on the whole photo; ``box`` is (left, top, width,
    height); each panel is enlarged ``zoom`` times (nearest) so the pattern
    of the dithering shows.
    """
    from PIL import ImageDraw

    pixels = load(name)
    flat = pixels.reshape(-1, 3)
    oklab = quantize_perceptual(flat, k, space="oklab").palette
    panels = [("original", pixels)]
    palette, labels = dither_image(pixels, quantize(flat, k).palette, dither="none")
    panels.append((f"kpal k={k}, no dither", palette[labels]))
    palette, labels = dither_image(pixels, oklab, dither="fs", space="oklab")
    panels.append((f"kpal k={k}, --dither fs --space oklab", palette[labels]))
    with tempfile.TemporaryDirectory() as tmp:
        labels, palette = pngquant(pixels, k, True, Path(tmp))
    panels.append((f"pngquant {k} (default)", palette[labels]))
    left, top, width, height = box
    label_height = 22
    sheet = Image.new("RGB", (len(panels) * (width * zoom + 8) - 8,
                              height * zoom + label_height), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (title, image) in enumerate(panels):
        crop = Image.fromarray(np.ascontiguousarray(image[top:top + height, left:left + width]))
        x = i * (width * zoom + 8)
        sheet.paste(crop.resize((width * zoom, height * zoom), Image.Resampling.NEAREST),
                    (x, label_height))
        draw.text((x + 4, 4), title, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)


def check_reference() -> None:
    """The cached SSIMULACRA2 equals the package's on one pair."""
    import io

    from ssimulacra2 import compute_ssimulacra2

    pixels = load("chelsea")
    out = quantize(pixels.reshape(-1, 3), 16)
    distorted = out.palette[out.labels].reshape(pixels.shape)

    def png(array: np.ndarray) -> io.BytesIO:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        buffer.seek(0)
        return buffer

    ours, theirs = Reference(pixels).score(distorted), compute_ssimulacra2(png(pixels),
                                                                          png(distorted))
    if abs(ours - theirs) > 1e-9:
        msg = f"cached SSIMULACRA2 {ours} differs from the package's {theirs}"
        raise RuntimeError(msg)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[16, 64, 256], help="Palette sizes.")
    parser.add_argument("--images", nargs="+", default=list(PHOTOS), choices=list(PHOTOS),
                        help="Photos to use.")
    parser.add_argument("--jobs", type=int, default=2, help="Photos measured side by side.")
    parser.add_argument("--variants", nargs="+", default=[v[0] for v in KPAL_VARIANTS],
                        choices=[v[0] for v in KPAL_VARIANTS], help="kpal variants to run.")
    parser.add_argument("--no-12mp", action="store_true", help="Skip the 12 MP timing.")
    parser.add_argument("--only-12mp", action="store_true", help="Only the 12 MP timing.")
    parser.add_argument("--figure", type=Path,
                        help="Only write the k=16 comparison picture to this PNG file.")
    args = parser.parse_args(argv)
    if args.figure is not None:
        figure(args.figure)
        return
    with_pngquant = shutil.which("pngquant") is not None
    print_machine_info()
    if not with_pngquant:
        print("pngquant not found: its rows are left out\n")
    if not args.only_12mp:
        check_reference()
        # The large photos first: the pool then ends with the short jobs.
        names = sorted(args.images, key=lambda n: n not in BIG)
        # spawn, not fork: the parent has already started OpenMP threads.
        with get_context("spawn").Pool(args.jobs) as pool:
            parts = pool.map(photo_rows, [(n, args.k, with_pngquant, args.variants) for n in names],
                             chunksize=1)
        rows = [row for part in parts for row in part]
        print_table(summary(rows, args.k),
                    ["k", "variant", "PSNR", "SSIMULACRA2", "vs pngquant", "worst gap",
                     "worst photo", "entropy B", "size vs undithered"],
                    f"Means over {len(names)} photos (bench/photos.py)")
        print_table(rows, ["image", "k", "variant", "PSNR", "SSIMULACRA2", "entropy B", "s"],
                    "Every photo")
    if not args.no_12mp:
        print_table(twelve_mp_rows(args.k),
                    ["k", "variant", "compiled s (1 thr)", "compiled s (2 thr)",
                     "compiled added s", "numpy s", "numpy note"],
                    "12 MP (retina_big upscaled to 4000 x 3000), medians of 3 (numpy: 1 run)")


if __name__ == "__main__":
    main()
