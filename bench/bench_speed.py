"""Encode speed and memory: kpal's numpy and compiled paths, pngquant and libimagequant.

Images: a 0.25 MP photo (scikit-image's coffee resized to 600x420) and a
14.7 MP mosaic (5760x2560) of 36 tiles of 640x640 cut from real photos
(scikit-image, scikit-learn and matplotlib sample photos, each tile a
different crop, scale or flip, so the mosaic has the colour count of a large
photo; an upscale of one photo would not).

Every figure is file to file through the CLI (``kpal encode -q``: no report, as
pngquant prints none), in a child process, the median
of ``--repeats`` runs taken in turns; peak memory is the child's ``ru_maxrss``.
Ratios are against pngquant (``--nofs``, default speed 4) in the same run, and
against libimagequant (pngquant's library, through the ``imagequant`` Python
binding, at its default speed, no dithering) run file to file by a short
script (Pillow reads the PNG and writes the PNG-8).
"numpy" runs with ``KPAL_PURE_NUMPY=1``, "compiled" with ``KPAL_PURE_NUMPY=0``
(the compiled kernels at every size, numba's start-up included) and a numba
cache per image (``bench/.cache/numba-cli/``, filled by an untimed warm-up of
each command: the cache of a command-line user who encodes such images);
"same bytes" compares the two output files.

Usage::

    python bench/bench_speed.py                 # the table
    python bench/bench_speed.py --core          # adds the quantizer core alone, in process
    python bench/bench_speed.py --profile 256   # where the encode time goes, in process
    python bench/bench_speed.py --profile 16 --sort tottime
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_machine_info, print_table, run_cmd_measured  # noqa: E402
from corpus import DEFAULT_CACHE  # noqa: E402

#: Tile size and grid of the mosaic: 9 x 4 tiles of 640 x 640 = 5760 x 2560 = 14.7 MP.
TILE = 640
GRID = (9, 4)


def _sources() -> list[np.ndarray]:
    """Real RGB photos available offline, largest first."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    photos = [data.retina(), data.hubble_deep_field(), *data.stereo_motorcycle()[:2],
              data.astronaut(), data.coffee(), data.chelsea(), data.rocket(),
              data.immunohistochemistry(), *load_sample_images().images]
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as file:
        photos.append(np.asarray(Image.open(file).convert("RGB")))
    return [np.ascontiguousarray(p[..., :3]) for p in photos]


def _tile(photo: np.ndarray, variant: int) -> np.ndarray:
    """A TILE x TILE crop of ``photo``, scaled so its short side covers the tile at one of
    a few scales, from a corner chosen by ``variant``, flipped on odd variants."""
    image = Image.fromarray(photo)
    scale = TILE / min(image.size) * (1.0, 1.3, 1.7)[variant % 3]
    size = (max(TILE, round(image.width * scale)), max(TILE, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.LANCZOS)
    x = (0, size[0] - TILE, (size[0] - TILE) // 2)[variant % 3]
    y = (size[1] - TILE, 0, (size[1] - TILE) // 2)[(variant // 3) % 3]
    tile = np.asarray(image)[y : y + TILE, x : x + TILE]
    return tile[:, ::-1] if variant % 2 else tile


def mosaic() -> np.ndarray:
    """The 14.7 MP mosaic, ndarray of shape (2560, 5760, 3), uint8."""
    photos = _sources()
    columns, rows = GRID
    out = np.empty((rows * TILE, columns * TILE, 3), dtype=np.uint8)
    for i in range(columns * rows):
        r, c = divmod(i, columns)
        out[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE] = _tile(
            photos[i % len(photos)], i // len(photos) + i)
    return out


def corpus(cache: Path = DEFAULT_CACHE) -> dict[str, Path]:
    """Write (if missing) and return the two benchmark PNGs by name."""
    cache.mkdir(parents=True, exist_ok=True)
    paths = {"coffee 0.25 MP": cache / "coffee_600x420.png",
             "mosaic 14.7 MP": cache / "mosaic_14mp.png"}
    if not paths["coffee 0.25 MP"].exists():
        from skimage import data

        Image.fromarray(data.coffee()).resize((600, 420), Image.Resampling.LANCZOS).save(
            paths["coffee 0.25 MP"], compress_level=1)
    if not paths["mosaic 14.7 MP"].exists():
        Image.fromarray(mosaic()).save(paths["mosaic 14.7 MP"], compress_level=1)
    return paths


def profile(path: Path, k: int, top: int = 25, sort: str = "cumulative") -> None:
    """Print the profile of one in-process encode (after a warm-up), sorted by ``sort``."""
    import kpal

    rgb = np.asarray(Image.open(path).convert("RGB"))
    kpal.encode(rgb[:64, :64], k)  # imports and compiled kernels out of the way
    start = time.perf_counter()
    profiler = cProfile.Profile()
    profiler.enable()
    kpal.encode(rgb, k)
    profiler.disable()
    print(f"{path.name} k={k}: {time.perf_counter() - start:.2f} s in process "
          f"(compiled kernels: {'off' if os.environ.get('KPAL_PURE_NUMPY') == '1' else 'on'})")
    pstats.Stats(profiler).sort_stats(sort).print_stats(top)


def _kpal_argv(source: Path, target: Path, k: int) -> list[str]:
    # -q: like pngquant, print nothing (the report would add SSIMULACRA2 on small
    # images, which imports scipy: about 0.8 s more on the 0.25 MP photo).
    return [str(Path(sys.executable).with_name("kpal")), "encode", str(source), "-o", str(target),
            "-k", str(k), "--force", "-q"]


def _pngquant_argv(source: Path, target: Path, k: int) -> list[str]:
    return ["pngquant", "--nofs", "--speed", "4", "--force", "--output", str(target),
            str(k), str(source)]


#: libimagequant file to file through its Python binding: PNG in, PNG-8 out, no dithering
#: (what pngquant --nofs does, without pngquant's own PNG code).
_IMAGEQUANT_SCRIPT = """
import sys
import imagequant
from PIL import Image
source, target, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
with Image.open(source) as im:
    rgba = im.convert("RGBA")
width, height = rgba.size
data = rgba.tobytes()
del rgba
indices, palette = imagequant.quantize_raw_rgba_bytes(data, width, height,
                                                      dithering_level=0.0, max_colors=k)
out = Image.frombytes("P", (width, height), indices)
out.putpalette(palette, "RGBA")
out.save(target)
"""


def _imagequant_argv(source: Path, target: Path, k: int) -> list[str]:
    return [sys.executable, "-c", _IMAGEQUANT_SCRIPT, str(source), str(target), str(k)]


def core(path: Path, ks: list[int], repeats: int) -> list[dict]:
    """Time the quantizer core alone (colours in, palette and labels out), in this process.

    kpal: ``kpal.cluster.quantize`` on the RGB pixels, compiled and numpy
    paths (switched by ``KPAL_PURE_NUMPY`` at each call); libimagequant:
    ``quantize_raw_rgba_bytes`` (histogram, palette and remapping, no
    dithering) on the same pixels as RGBA bytes made beforehand. Medians of
    ``repeats`` runs after one untimed warm-up of each.
    """
    import imagequant

    from kpal.cluster import quantize

    rgb = np.asarray(Image.open(path).convert("RGB"))
    height, width = rgb.shape[:2]
    pixels = rgb.reshape(-1, 3)
    rgba = np.empty((height, width, 4), np.uint8)
    rgba[..., :3] = rgb
    rgba[..., 3] = 255
    data = rgba.tobytes()
    del rgba
    saved = os.environ.get("KPAL_PURE_NUMPY")

    def kpal_path(flag: str):
        def run(k: int) -> None:
            os.environ["KPAL_PURE_NUMPY"] = flag
            quantize(pixels, k, seed=0)
        return run

    def liq(k: int) -> None:
        imagequant.quantize_raw_rgba_bytes(data, width, height, dithering_level=0.0,
                                           max_colors=k)

    contenders = {"kpal compiled": kpal_path("0"), "kpal numpy": kpal_path("1"),
                  "libimagequant": liq}
    rows = []
    try:
        for k in ks:
            times: dict[str, list[float]] = {c: [] for c in contenders}
            for run in contenders.values():
                run(k)  # warm-up: imports, compiled kernels
            for _ in range(repeats):
                for c, run in contenders.items():
                    start = time.perf_counter()
                    run(k)
                    times[c].append(time.perf_counter() - start)
            med = {c: statistics.median(t) for c, t in times.items()}
            rows.append({"image": f"{path.stem} {width * height / 1e6:.1f} MP", "k": k,
                         **{f"{c} s": med[c] for c in contenders},
                         "compiled/liq": med["kpal compiled"] / med["libimagequant"]})
    finally:
        if saved is None:
            os.environ.pop("KPAL_PURE_NUMPY", None)
        else:
            os.environ["KPAL_PURE_NUMPY"] = saved
    return rows


def run(repeats: int, sizes: list[str], ks: list[int]) -> list[dict]:
    """Time every contender in turns; return one row per image and k."""
    paths = corpus()
    pure = {**os.environ, "KPAL_PURE_NUMPY": "1"}
    # The compiled path at every size (by default small images, and images
    # under kpal.cluster.compiled_cold_pixels(k) in a fresh process, take numpy),
    # with a numba cache per image: what that image's commands compiled, as for a
    # user of the command line. kpal's prefetch loads every cached variant of a
    # kernel, so a cache filled by other uses (the test suite's dtypes, small images
    # forced onto the compiled path) would add about 0.5 MiB per variant.
    def fast_env(name: str) -> dict[str, str]:
        cache = Path(DEFAULT_CACHE) / "numba-cli" / name.split()[0]
        return {**os.environ, "KPAL_PURE_NUMPY": "0", "NUMBA_CACHE_DIR": str(cache)}

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        # A warm-up of every command so the kernels they take are cached before timing.
        for name in sizes:
            for k in ks:
                run_cmd_measured(_kpal_argv(paths[name], out / "w.kpal", k), env=fast_env(name))
        for name in sizes:
            source = paths[name]
            for k in ks:
                contenders = {
                    "numpy": (_kpal_argv(source, out / "a.kpal", k), pure),
                    "compiled": (_kpal_argv(source, out / "b.kpal", k), fast_env(name)),
                    "pngquant": (_pngquant_argv(source, out / "c.png", k), None),
                    "libimagequant": (_imagequant_argv(source, out / "d.png", k), None),
                }
                runs: dict[str, list[tuple[float, int]]] = {c: [] for c in contenders}
                for _ in range(repeats):
                    for c, (argv, env) in contenders.items():
                        wall, rss, code = run_cmd_measured(argv, env=env)
                        if code != 0:
                            msg = f"{' '.join(argv)} exited with {code}"
                            raise RuntimeError(msg)
                        runs[c].append((wall, rss))
                same = (out / "a.kpal").read_bytes() == (out / "b.kpal").read_bytes()
                med = {c: statistics.median(w for w, _ in r) for c, r in runs.items()}
                peak = {c: max(m for _, m in r) / 2**20 for c, r in runs.items()}
                rows.append({
                    "image": name, "k": k,
                    "numpy s": med["numpy"], "compiled s": med["compiled"],
                    "pngquant s": med["pngquant"], "liq s": med["libimagequant"],
                    "numpy/pq": med["numpy"] / med["pngquant"],
                    "compiled/pq": med["compiled"] / med["pngquant"],
                    "compiled/liq": med["compiled"] / med["libimagequant"],
                    "numpy MiB": peak["numpy"], "compiled MiB": peak["compiled"],
                    "pngquant MiB": peak["pngquant"], "liq MiB": peak["libimagequant"],
                    "same bytes": "yes" if same else "NO",
                })
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--k", type=int, nargs="+", default=[16, 256])
    parser.add_argument("--small-only", action="store_true", help="Only the 0.25 MP photo.")
    parser.add_argument("--profile", type=int, metavar="K",
                        help="Profile one in-process encode of the mosaic at this k.")
    parser.add_argument("--core", action="store_true",
                        help="Also time the quantizer core alone on the mosaic, in process.")
    parser.add_argument("--sort", default="cumulative", choices=["cumulative", "tottime"],
                        help="Order of the --profile listing.")
    args = parser.parse_args(argv)
    if args.profile:
        profile(corpus()["mosaic 14.7 MP"], args.profile, sort=args.sort)
        return
    if shutil.which("pngquant") is None:
        parser.error("pngquant is not on PATH")
    for module, what in (("numba", "the compiled path"), ("imagequant", "libimagequant")):
        if importlib.util.find_spec(module) is None:  # else it would time the numpy path
            parser.error(f"{module} is not installed, so {what} cannot be timed: "
                         "pip install -e \".[bench]\"")
    sizes = ["coffee 0.25 MP"] + ([] if args.small_only else ["mosaic 14.7 MP"])
    print_machine_info()
    rows = run(args.repeats, sizes, args.k)
    print_table(rows, list(rows[0]), title="encode file to file (medians)")
    if args.core:
        rows = core(corpus()["mosaic 14.7 MP"], args.k, args.repeats)
        print_table(rows, list(rows[0]), title="quantizer core in process (medians)")


if __name__ == "__main__":
    main()
