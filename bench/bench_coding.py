"""Payload codings benchmark: fixed, radix and entropy against PNG-8, GIF and WebP lossless.

Every real photo is quantized once by kpal (k-means, seed 0) at each k; the
same indexed image (same labels, same palette) is then stored by every
contender in the same run:

- kpal ``fixed``, ``radix``, ``entropy``: whole ``.kpal`` file
  (30 + 3·k + payload bytes); encode / decode seconds are for the payload
  coding alone (median of ``--repeats`` runs, contenders taking turns);
- PNG-8: Pillow, ``optimize=True``;
- GIF: Pillow writes it, then ``gifsicle -O3``;
- WebP lossless: ``cwebp -lossless -z 9 -exact`` on the indexed PNG.

Then the 12 MP speed check (``--twelve-mp``): time the entropy payload coding
adds to an encode, and the whole decode of the ``.kpal`` file to an RGB array,
against the fixed-width file in the same run; once on the pure-numpy path
(``KPAL_PURE_NUMPY=1``) and once on the compiled one when numba is installed
(``kpal[fast]``), which must write the same bytes. The compiled path's first
call (numba compiling, then loading its on-disk cache) is timed separately in
fresh processes.

Last, the radix bound table: payload bits / (N·log2 k) for every k in 2..256 at
N = 512·512, fixed width beside it.

Usage::

    python bench/bench_coding.py                     # photos at k = 16 and 256
    python bench/bench_coding.py --k 16 64 256 --twelve-mp
    python bench/bench_coding.py --images astronaut --no-peers
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import corpus  # noqa: E402
from bench.common import (  # noqa: E402
    interleaved_median_times,
    print_machine_info,
    print_table,
)
from kpal import codec  # noqa: E402
from kpal.coding import fixed, get, radix  # noqa: E402

CODINGS = ("fixed", "radix", "entropy")
#: Real photos: the corpus's, plus more of scikit-image's bundled photographs.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
          "immunohistochemistry", "retina")
CONTAINER_BYTES = 30  # header 26 + checksum 4 (spec/kpal.md §1)


def load_photo(name: str) -> np.ndarray:
    """RGB array of a corpus image, or of a scikit-image photo by its function name."""
    if name in corpus.BUILDERS:
        return corpus.load_rgb(corpus.ensure(name))
    from skimage import data

    return np.ascontiguousarray(getattr(data, name)()[..., :3])


def indexed(rgb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """kpal's own quantization: labels (height, width) and palette (k', 3)."""
    sample = 0.1 if rgb.shape[0] * rgb.shape[1] > 4_000_000 else None
    encoded = codec.encode_image(rgb, k, seed=0, sample=sample)
    return encoded.labels, encoded.palette


def peer_sizes(labels: np.ndarray, palette: np.ndarray, folder: Path) -> dict[str, int]:
    """Bytes of PNG-8, GIF (gifsicle -O3) and WebP lossless for the same indexed image."""
    image = Image.fromarray(labels, "P")
    image.putpalette(palette.reshape(-1).tolist())
    png, gif, gif_opt, webp = (folder / n for n in ("i.png", "i.gif", "o.gif", "o.webp"))
    image.save(png, optimize=True)
    sizes = {"png8": png.stat().st_size}
    if shutil.which("gifsicle"):
        image.save(gif)
        subprocess.run(["gifsicle", "-O3", str(gif), "-o", str(gif_opt)], check=True)
        sizes["gif"] = gif_opt.stat().st_size
    if shutil.which("cwebp"):
        subprocess.run(["cwebp", "-quiet", "-lossless", "-z", "9", "-exact", str(png),
                        "-o", str(webp)], check=True)
        sizes["webp"] = webp.stat().st_size
    return sizes


def size_rows(names: list[str], ks: list[int], repeats: int, peers: bool) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            rgb = load_photo(name)
            for k in ks:
                labels, palette = indexed(rgb, k)
                kk = len(palette)
                height, width = labels.shape
                n = labels.size
                payloads = {c: get(c).encode(labels, kk) for c in CODINGS}
                for c in CODINGS:
                    decoded = get(c).decode(payloads[c], kk, width, height)
                    assert np.array_equal(decoded, labels), (name, k, c)
                enc = interleaved_median_times(
                    {c: partial(get(c).encode, labels, kk) for c in CODINGS}, repeats)
                dec = interleaved_median_times(
                    {c: partial(get(c).decode, payloads[c], kk, width, height)
                     for c in CODINGS}, repeats)
                sizes = {c: CONTAINER_BYTES + 3 * kk + len(payloads[c]) for c in CODINGS}
                if peers:
                    sizes.update(peer_sizes(labels, palette, Path(tmp)))
                row = {"image": name, "k": k, "pixels": n}
                for key, value in sizes.items():
                    row[f"{key} B"] = value
                row["entropy bpp"] = round(8 * sizes["entropy"] / n, 3)
                for peer in ("webp", "png8", "gif"):
                    if peer in sizes:
                        row[f"ent/{peer}"] = round(sizes["entropy"] / sizes[peer], 3)
                for c in CODINGS:
                    row[f"{c} enc s"] = round(enc[c][0], 3)
                    row[f"{c} dec s"] = round(dec[c][0], 3)
                rows.append(row)
                print(f"  {name} k={k} done", file=sys.stderr, flush=True)
    return rows


def print_size_tables(rows: list[dict]) -> None:
    size_cols = ["image", "k", "pixels", "fixed B", "radix B", "entropy B", "png8 B", "gif B",
                 "webp B", "entropy bpp", "ent/webp", "ent/png8", "ent/gif"]
    print_table(rows, [c for c in size_cols if c in rows[0]],
                "Sizes: whole files, same indexed image (kpal k-means, seed 0)")
    time_cols = ["image", "k"] + [f"{c} {d} s" for c in CODINGS for d in ("enc", "dec")]
    print_table(rows, time_cols, "Payload coding seconds (median), labels <-> payload only")
    summary = []
    for k in sorted({r["k"] for r in rows}):
        mine = [r for r in rows if r["k"] == k]
        line = {"k": k, "images": len(mine)}
        if "ent/webp" in mine[0]:
            line["mean ent/webp"] = round(float(np.mean([r["ent/webp"] for r in mine])), 3)
            line["target <= 0.90"] = "met" if line["mean ent/webp"] <= 0.90 else "MISSED"
        for peer in ("png8", "gif"):
            key = f"ent/{peer}"
            if key in mine[0]:
                line[f"max {key}"] = max(r[key] for r in mine)
                line[f"<= {peer} on every image"] = (
                    "met" if line[f"max {key}"] <= 1.0 else "MISSED")
        summary.append(line)
    print_table(summary, list(summary[0]), "Entropy coding targets")


@contextlib.contextmanager
def entropy_path(path: str) -> Iterator[None]:
    """Force the entropy coding's pure-numpy path, or leave the compiled one on."""
    before = os.environ.pop("KPAL_PURE_NUMPY", None)
    if path == "numpy":
        os.environ["KPAL_PURE_NUMPY"] = "1"
    try:
        yield
    finally:
        os.environ.pop("KPAL_PURE_NUMPY", None)
        if before is not None:
            os.environ["KPAL_PURE_NUMPY"] = before


def on_path(path: str, fn: Callable[..., Any], *args: Any) -> Any:
    with entropy_path(path):
        return fn(*args)


def entropy_paths() -> tuple[str, ...]:
    """``numpy``, plus ``compiled`` when numba is installed (``kpal[fast]``)."""
    return ("numpy", "compiled") if importlib.util.find_spec("numba") else ("numpy",)


def first_call_seconds() -> dict[str, float]:
    """Fresh interpreters coding a 64x64 image: numba compiling, then loading its cache.

    ``NUMBA_CACHE_DIR`` points at an empty folder so the first run really compiles.
    """
    script = ("import time, numpy as np; from kpal.coding import entropy; "
              "t = time.perf_counter(); "
              "p = entropy.encode(np.arange(4096, dtype=np.uint8).reshape(64, 64) % 16, 16); "
              "entropy.decode(p, 16, 64, 64); print(time.perf_counter() - t)")
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        env.pop("KPAL_PURE_NUMPY", None)
        for label in ("compile (cold cache)", "load (warm cache)"):
            done = subprocess.run([sys.executable, "-c", script], env=env, check=True,
                                  capture_output=True, text=True)
            out[label] = float(done.stdout.split()[-1])
    return out


def encode_entropy_file(image: Image.Image) -> bytes:
    return codec.encode_image(image, coding="entropy").data


def twelve_mp(ks: list[int], repeats: int) -> None:
    """Entropy coding on the 12 MP image: numpy path and compiled path against fixed width."""
    rgb = load_photo(corpus.TWELVE_MP)
    paths = entropy_paths()
    rows = []
    for k in ks:
        labels, palette = indexed(rgb, k)
        kk = len(palette)
        image = labels_to_image(labels, palette)
        files = {"fixed": codec.encode_image(image, coding="fixed").data}
        for path in paths:
            files[path] = on_path(path, encode_entropy_file, image)
        assert all(files[p] == files["numpy"] for p in paths), "paths wrote different bytes"
        encoders = {"fixed": partial(fixed.encode, labels, kk)}
        decoders = {"fixed": partial(decode_to_rgb, files["fixed"])}
        for path in paths:
            encoders[path] = partial(on_path, path, get("entropy").encode, labels, kk)
            decoders[path] = partial(on_path, path, decode_to_rgb, files[path])
        enc = interleaved_median_times(encoders, repeats)
        dec = interleaved_median_times(decoders, repeats)
        row = {"k": k, "fixed B": len(files["fixed"]), "entropy B": len(files["numpy"]),
               "entropy bpp": round(8 * len(files["numpy"]) / labels.size, 3),
               "fixed coding s": round(enc["fixed"][0], 2),
               "fixed dec->RGB s": round(dec["fixed"][0], 2)}
        for path in paths:
            adds = enc[path][0] - enc["fixed"][0]
            row[f"{path} adds s"] = round(adds, 2)
            row[f"{path} dec->RGB s"] = round(dec[path][0], 2)
            row[f"{path} (adds<=2, dec<=1)"] = (
                "met" if adds <= 2 and dec[path][0] <= 1 else "MISSED")
        rows.append(row)
    print_table(rows, list(rows[0]),
                f"12 MP ({corpus.TWELVE_MP}, 4000x3000): entropy coding speed, median of "
                f"{repeats}; paths: {', '.join(paths)} (identical bytes)")
    if "compiled" in paths:
        first = first_call_seconds()
        print("compiled path, first call in a fresh process (64x64 encode + decode): "
              + ", ".join(f"{label} {seconds:.1f} s" for label, seconds in first.items()) + "\n")


def decode_to_rgb(data: bytes) -> np.ndarray:
    """The whole decode: ``.kpal`` bytes to an (height, width, 3) uint8 array."""
    return np.asarray(codec.decode(data).convert("RGB"))


def labels_to_image(labels: np.ndarray, palette: np.ndarray) -> Image.Image:
    """A "P" image kpal stores losslessly with this exact palette and labels."""
    image = Image.fromarray(labels, "P")
    image.putpalette(palette.reshape(-1).tolist())
    return image


def radix_table(width: int = 512, height: int = 512) -> None:
    n = width * height
    rows = []
    for k in range(2, 257):
        bound = n * math.log2(k)
        m, w = radix.group_shape(k)
        rows.append({"k": k, "m": m, "w": w,
                     "fixed/bound": 8 * fixed.payload_size(k, width, height) / bound,
                     "radix/bound": 8 * radix.payload_size(k, width, height) / bound})
    # four k per printed line keeps 255 rows readable
    wide = []
    for start in range(0, len(rows), 4):
        line = {}
        for offset, row in enumerate(rows[start : start + 4]):
            line[f"k{offset}"] = row["k"]
            line[f"m,w{offset}"] = f"{row['m']},{row['w']}"
            line[f"fixed{offset}"] = f"{row['fixed/bound']:.4f}"
            line[f"radix{offset}"] = f"{row['radix/bound']:.4f}"
        wide.append(line)
    cols = [f"{c}{o}" for o in range(4) for c in ("k", "m,w", "fixed", "radix")]
    print_table(wide, cols, f"Radix bound table: payload bits / (N·log2 k), N = {width}x{height}")
    worst = max(rows, key=lambda r: r["radix/bound"])
    mean = float(np.mean([r["radix/bound"] for r in rows]))
    verdict = "met" if worst["radix/bound"] <= 1.02 else "MISSED"
    print(f"radix/bound: mean {mean:.4f}, worst {worst['radix/bound']:.4f} at k={worst['k']} "
          f"(target <= 1.02 for every k: {verdict}); fixed/bound worst "
          f"{max(r['fixed/bound'] for r in rows):.4f}\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[16, 256])
    parser.add_argument("--images", nargs="+", default=list(PHOTOS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-peers", action="store_true",
                        help="skip PNG-8, GIF and WebP (cwebp -z 9 is slow)")
    parser.add_argument("--twelve-mp", action="store_true",
                        help="also time entropy coding on the 12 MP corpus image")
    parser.add_argument("--no-radix-table", action="store_true")
    args = parser.parse_args(argv)
    print_machine_info()
    started = time.perf_counter()
    rows = size_rows(args.images, args.k, args.repeats, not args.no_peers)
    print_size_tables(rows)
    if args.twelve_mp:
        twelve_mp(args.k, args.repeats)
    if not args.no_radix_table:
        radix_table()
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
