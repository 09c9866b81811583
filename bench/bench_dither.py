"""Dithering benchmark: kpal's remap variants against Pillow and pngquant.

Every photo is quantized once by kpal (k-means, seed 0) at each k; that
palette is then applied by every kpal variant and by Pillow, so the rows
differ only in how pixels are mapped to it:

- ``none``: exact nearest colour (``kpal.cluster.remap``, ``dither="none"``);
- ``ordered``: blue-noise ordered dithering;
- ``fs``: serpentine Floyd--Steinberg (banded, pure numpy);
- ``fs adaptive``: the same, error scaled by the local-contrast map;
- ``pillow none`` / ``pillow fs``: ``Image.quantize(palette=..., dither=...)``
  with kpal's palette (Pillow's C code, colours looked up through its cache);
- ``pngquant --nofs`` / ``pngquant``: pngquant's own palette and remap at the
  same k (reference rows: its time includes its quantization and PNG writing).

Columns: PSNR (dB), SSIMULACRA2 (the ``ssimulacra2`` package, Python
implementation; higher is better, 90 is visually lossless), the size of the
entropy-coded indices (``kpal.coding.get("entropy")``) and the remap time on
these small photos. Then Pillow's lookup against the exact nearest colour
(how many pixels get another colour, and the PSNR it costs), and the 12 MP
timing: astronaut upscaled to 4000 x 3000, one run per variant.

Usage::

    python bench/bench_dither.py                    # 7 photos, k = 16 and 64, 12 MP timing
    python bench/bench_dither.py --k 16 --images astronaut coffee --no-12mp
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_machine_info, print_table, psnr  # noqa: E402
from kpal.cluster import quantize  # noqa: E402
from kpal.cluster.remap import blue_noise, remap  # noqa: E402
from kpal.coding import get as get_coding  # noqa: E402

SAMPLES = Path(__file__).resolve().parent.parent / "samples"

KPAL_VARIANTS = {
    "none": {"dither": "none"},
    "ordered": {"dither": "ordered"},
    "fs": {"dither": "fs"},
    "fs adaptive": {"dither": "fs", "adaptive": True},
}


def _skimage(name: str, width: int | None = None) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        image = Image.fromarray(np.ascontiguousarray(getattr(data, name)()[..., :3]), "RGB")
        if width is not None and image.width > width:
            image = image.resize((width, round(image.height * width / image.width)),
                                 Image.Resampling.LANCZOS)
        return np.asarray(image)

    return load


def _sample(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        with Image.open(SAMPLES / name) as image:
            return np.asarray(image.convert("RGB"))

    return load


#: Real photos (public domain): scikit-image's bundled data and samples/.
PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "coffee": _skimage("coffee"),
    "chelsea": _skimage("chelsea"),
    "rocket": _skimage("rocket"),
    "immunohisto": _skimage("immunohistochemistry"),
    "retina": _skimage("retina", width=640),
    "hubble": _sample("hubble.jpg"),
}


def ssimulacra2_score(original: np.ndarray, distorted: np.ndarray) -> float:
    """SSIMULACRA2 of ``distorted`` against ``original`` (NaN when unavailable)."""
    try:
        from ssimulacra2 import compute_ssimulacra2
    except ImportError:
        return float("nan")

    def png(pixels: np.ndarray) -> io.BytesIO:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
        buffer.seek(0)
        return buffer

    return float(compute_ssimulacra2(png(original), png(distorted)))


def entropy_bytes(labels: np.ndarray, k: int) -> int:
    """Length of the entropy-coded indices."""
    return len(get_coding("entropy").encode(labels, k))


def pillow_quantize(pixels: np.ndarray, palette: np.ndarray, dither: bool) -> np.ndarray:
    """Pillow's ``quantize`` with a fixed palette: labels, shape (height, width)."""
    holder = Image.new("P", (1, 1))
    holder.putpalette(palette.reshape(-1).tolist())  # k entries, no padding
    mode = Image.Dither.FLOYDSTEINBERG if dither else Image.Dither.NONE
    out = Image.fromarray(pixels, "RGB").quantize(palette=holder, dither=mode)
    return np.asarray(out)


def pngquant(pixels: np.ndarray, k: int, dither: bool,
             folder: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """pngquant at ``k`` colours: labels, its palette and the CLI's wall time."""
    source, target = folder / "in.png", folder / "out.png"
    Image.fromarray(pixels).save(source, compress_level=1)
    argv = ["pngquant", str(k), "--force", "--output", str(target), str(source)]
    if not dither:
        argv.insert(2, "--nofs")
    start = time.perf_counter()
    subprocess.run(argv, check=True)
    seconds = time.perf_counter() - start
    with Image.open(target) as image:
        labels = np.asarray(image)
        palette = np.array(image.getpalette()[: 3 * (int(labels.max()) + 1)], dtype=np.uint8)
    return labels, palette.reshape(-1, 3), seconds


def _timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def photo_rows(names: list[str], ks: list[int], with_pngquant: bool,
               with_ssim: bool) -> tuple[list[dict], list[dict]]:
    """Quality, size and time of every variant on every photo; Pillow's lookup errors."""
    rows, lookup = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            pixels = PHOTOS[name]()
            for k in ks:
                palette = quantize(pixels.reshape(-1, 3), k).palette
                runs: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
                for variant, kwargs in KPAL_VARIANTS.items():
                    labels, seconds = _timed(
                        lambda kw=kwargs, px=pixels, pal=palette: remap(px, pal, **kw))
                    runs[variant] = (labels, palette, seconds)
                for variant, dither in (("pillow none", False), ("pillow fs", True)):
                    labels, seconds = _timed(
                        lambda d=dither, px=pixels, pal=palette: pillow_quantize(px, pal, d))
                    runs[variant] = (labels, palette, seconds)
                if with_pngquant:
                    for variant, dither in (("pngquant --nofs", False), ("pngquant", True)):
                        runs[variant] = pngquant(pixels, k, dither, Path(tmp))
                for variant, (labels, used, seconds) in runs.items():
                    out = used[labels]
                    rows.append({
                        "image": name, "k": k, "variant": variant,
                        "PSNR": psnr(pixels, out),
                        "SSIMULACRA2": ssimulacra2_score(pixels, out) if with_ssim
                        else float("nan"),
                        "entropy B": entropy_bytes(labels, used.shape[0]),
                        "s": seconds,
                    })
                exact = palette[runs["none"][0]]
                pillow = palette[runs["pillow none"][0]]
                differs = np.any(exact != pillow, axis=2)
                lookup.append({
                    "image": name, "k": k,
                    "pixels differing %": 100.0 * float(differs.mean()),
                    "PSNR exact": psnr(pixels, exact),
                    "PSNR pillow": psnr(pixels, pillow),
                    "dB lost": psnr(pixels, exact) - psnr(pixels, pillow),
                })
                print(f"  {name} k={k} done", file=sys.stderr, flush=True)
    return rows, lookup


def summary(rows: list[dict], ks: list[int]) -> list[dict]:
    """Means over photos per (k, variant); size relative to ``none`` on the same photo."""
    out = []
    for k in ks:
        at_k = [r for r in rows if r["k"] == k]
        base = {r["image"]: r["entropy B"] for r in at_k if r["variant"] == "none"}
        for variant in dict.fromkeys(r["variant"] for r in at_k):
            group = [r for r in at_k if r["variant"] == variant]
            out.append({
                "k": k, "variant": variant,
                "PSNR": statistics.fmean(r["PSNR"] for r in group),
                "SSIMULACRA2": statistics.fmean(r["SSIMULACRA2"] for r in group),
                "min SSIMULACRA2": min(r["SSIMULACRA2"] for r in group),
                "entropy B": statistics.fmean(r["entropy B"] for r in group),
                "size vs none": statistics.fmean(r["entropy B"] / base[r["image"]]
                                                 for r in group),
                "s": statistics.fmean(r["s"] for r in group),
            })
    return out


def twelve_mp_rows(ks: list[int], with_pngquant: bool) -> list[dict]:
    """Remap time of every variant on astronaut upscaled to 4000 x 3000 (one run each)."""
    from skimage import data

    pixels = np.asarray(Image.fromarray(data.astronaut()).resize(
        (4000, 3000), Image.Resampling.LANCZOS))
    rows = []
    for k in ks:
        # The palette only has to be realistic: fit it on every 8th pixel.
        palette = quantize(np.ascontiguousarray(pixels[::8, ::8]).reshape(-1, 3), k).palette
        for variant, kwargs in KPAL_VARIANTS.items():
            _, seconds = _timed(lambda kw=kwargs, pal=palette: remap(pixels, pal, **kw))
            rows.append({"k": k, "variant": variant, "s": seconds})
            print(f"  12 MP k={k} {variant}: {seconds:.2f} s", file=sys.stderr, flush=True)
        for variant, dither in (("pillow none", False), ("pillow fs", True)):
            _, seconds = _timed(lambda d=dither, pal=palette: pillow_quantize(pixels, pal, d))
            rows.append({"k": k, "variant": variant, "s": seconds})
        if with_pngquant:
            with tempfile.TemporaryDirectory() as tmp:
                for variant, dither in (("pngquant --nofs (whole CLI)", False),
                                        ("pngquant (whole CLI)", True)):
                    *_, seconds = pngquant(pixels, k, dither, Path(tmp))
                    rows.append({"k": k, "variant": variant, "s": seconds})
    base = {r["k"]: r["s"] for r in rows if r["variant"] == "none"}
    for row in rows:
        row["× none"] = row["s"] / base[row["k"]]
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[16, 64], help="Palette sizes.")
    parser.add_argument("--images", nargs="+", default=list(PHOTOS), choices=list(PHOTOS),
                        help="Photos to use.")
    parser.add_argument("--no-12mp", action="store_true", help="Skip the 12 MP timing.")
    parser.add_argument("--only-12mp", action="store_true", help="Only the 12 MP timing.")
    parser.add_argument("--no-ssim", action="store_true", help="Skip SSIMULACRA2 (slow).")
    args = parser.parse_args(argv)
    with_pngquant = shutil.which("pngquant") is not None
    print_machine_info()
    blue_noise()  # computed once per process: keep it out of the ordered timings
    if not with_pngquant:
        print("pngquant not found: its rows are left out\n")
    if not args.only_12mp:
        rows, lookup = photo_rows(args.images, args.k, with_pngquant, not args.no_ssim)
        columns = ["k", "variant", "PSNR", "SSIMULACRA2", "min SSIMULACRA2", "entropy B",
                   "size vs none", "s"]
        print_table(summary(rows, args.k), columns,
                    f"Means over {len(args.images)} photos ({', '.join(args.images)})")
        print_table(rows, ["image", "k", "variant", "PSNR", "SSIMULACRA2", "entropy B", "s"],
                    "Every photo")
        print_table(lookup, ["image", "k", "pixels differing %", "PSNR exact", "PSNR pillow",
                             "dB lost"],
                    "Pillow's colour lookup (dither=NONE) against the exact nearest colour")
    if not args.no_12mp:
        print_table(twelve_mp_rows(args.k, with_pngquant), ["k", "variant", "s", "× none"],
                    "12 MP (astronaut upscaled to 4000x3000), one run each")


if __name__ == "__main__":
    main()
