"""Payload codings benchmark: fixed, radix, entropy and context against JPEG XL, WebP, PNG-8, GIF.

Every photo of ``bench/photos.py`` (26 real photos built offline; ``--corpus
classic`` for the older seven) is quantized once by kpal (k-means, seed 0) at
each k; the same indexed image (same labels, same palette) is then stored by
every contender in the same run, and every contender is checked to give back
exactly the same pixels:

- kpal ``fixed``, ``radix``, ``entropy``, ``context``: whole ``.kpal`` file
  (30 + 3·k + payload bytes); encode / decode seconds are for the payload
  coding alone (median of ``--repeats`` runs, contenders taking turns);
- JPEG XL lossless: ``cjxl -d 0 -e 9`` on the indexed PNG, decoded by ``djxl``;
- WebP lossless: ``cwebp -lossless -z 9 -exact`` on the indexed PNG;
- PNG-8: Pillow, ``optimize=True``; GIF: Pillow writes it, then ``gifsicle -O3``.

Results are cached per photo and k in ``bench/.cache/coding/`` (labels as
``.npz``, sizes and times as ``.json``), keyed by the sources of the
quantizer (``kpal/cluster/``) and the codings (``kpal/coding/``) and the
peers' versions, so a re-run only measures what changed (``--fresh`` ignores
the cache).

Then the 12 MP speed check (``--twelve-mp``): time the entropy and context
payload codings add to an encode, and the whole decode of the ``.kpal`` file
to an RGB array, against the fixed-width file in the same run; entropy once
on the pure-numpy path (``KPAL_PURE_NUMPY=1``) and once compiled, context
compiled only (its plain-Python kernel refuses images above
``context.PLAIN_MAX_PIXELS``; its speed is measured on a small image and
extrapolated). The compiled path's first call is timed separately in fresh
processes.

Last, the radix bound table: payload bits / (N·log2 k) for every k in 2..256 at
N = 512·512, fixed width beside it.

Usage::

    python bench/bench_coding.py --k 16 64 256            # the 26 photos, all peers
    python bench/bench_coding.py --k 16 64 256 --twelve-mp
    python bench/bench_coding.py --images astronaut --no-peers
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
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

from bench import corpus, photos  # noqa: E402
from bench.common import (  # noqa: E402
    interleaved_median_times,
    print_machine_info,
    print_table,
)
from kpal import codec, container  # noqa: E402
from kpal.coding import context, fixed, get, radix  # noqa: E402

CODINGS = ("fixed", "radix", "entropy", "context")
#: Real photos: the corpus's, plus more of scikit-image's bundled photographs.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
          "immunohistochemistry", "retina")
CONTAINER_BYTES = 30  # header 26 + checksum 4 (spec/kpal.md §1)
CACHE = Path(__file__).resolve().parent / ".cache" / "coding"
#: Size targets of the context coding (issue 15): mean size / cjxl -e 9 per k.
JXL_TARGETS = {16: 0.95, 256: 0.85}


def load_photo(name: str) -> np.ndarray:
    """RGB array of a photo of bench/photos.py, a corpus image, or a scikit-image photo."""
    if name in photos.PHOTOS:
        return photos.load(name)
    if name in corpus.BUILDERS:
        return corpus.load_rgb(corpus.ensure(name))
    from skimage import data

    return np.ascontiguousarray(getattr(data, name)()[..., :3])


def indexed(rgb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """kpal's own quantization: labels (height, width) and palette (k', 3)."""
    sample = 0.1 if rgb.shape[0] * rgb.shape[1] > 4_000_000 else None
    encoded = codec.encode_image(rgb, k, seed=0, sample=sample)
    return encoded.labels, encoded.palette


def _tool_version(command: list[str]) -> str:
    if not shutil.which(command[0]):
        return "missing"
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0] if lines else "?"


def quantizer_key() -> str:
    """Digest of the quantizer's sources: the labels every coder stores depend on them."""
    digest = hashlib.sha256()
    for path in sorted((Path(codec.__file__).parent / "cluster").glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cache_key() -> str:
    """Digest of the quantizer's and payload codings' sources and the peers' versions."""
    digest = hashlib.sha256(quantizer_key().encode())
    for path in sorted((Path(codec.__file__).parent / "coding").glob("*.py")):
        digest.update(path.read_bytes())
    for command in (["cjxl", "--version"], ["cwebp", "-version"], ["gifsicle", "--version"]):
        digest.update(_tool_version(command).encode())
    return digest.hexdigest()[:16]


def cached_indexed(name: str, k: int, fresh: bool) -> tuple[np.ndarray, np.ndarray]:
    """Labels and palette of ``name`` at ``k``, from the cache when there."""
    path = CACHE / f"{name}_k{k}_{quantizer_key()}.npz"
    if path.exists() and not fresh:
        with np.load(path) as saved:
            return saved["labels"], saved["palette"]
    labels, palette = indexed(load_photo(name), k)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, labels=labels, palette=palette)
    return labels, palette


def _same_pixels(path: Path, rgb: np.ndarray, what: str) -> None:
    with Image.open(path) as back:
        got = np.asarray(back.convert("RGB"))
    if not np.array_equal(got, rgb):
        msg = f"{what} did not give back the same pixels"
        raise AssertionError(msg)


def peer_sizes(labels: np.ndarray, palette: np.ndarray, folder: Path) -> dict[str, int]:
    """Bytes of JPEG XL, WebP lossless, PNG-8 and GIF for the same indexed image, each
    checked to decode to the same pixels (GIF only when gifsicle is installed)."""
    image = Image.fromarray(labels, "P")
    image.putpalette(palette.reshape(-1).tolist())
    rgb = palette[labels]
    png, gif, gif_opt, webp, jxl, back = (
        folder / n for n in ("i.png", "i.gif", "o.gif", "o.webp", "o.jxl", "b.png"))
    image.save(png, optimize=True)
    _same_pixels(png, rgb, "PNG-8")
    sizes = {"png8": png.stat().st_size}
    if shutil.which("gifsicle") and len(palette) <= 256:
        image.save(gif)
        subprocess.run(["gifsicle", "-O3", str(gif), "-o", str(gif_opt)], check=True)
        _same_pixels(gif_opt, rgb, "GIF")
        sizes["gif"] = gif_opt.stat().st_size
    if shutil.which("cwebp"):
        subprocess.run(["cwebp", "-quiet", "-lossless", "-z", "9", "-exact", str(png),
                        "-o", str(webp)], check=True)
        _same_pixels(webp, rgb, "WebP")
        sizes["webp"] = webp.stat().st_size
    if shutil.which("cjxl") and shutil.which("djxl"):
        subprocess.run(["cjxl", "-d", "0", "-e", "9", "--quiet", str(png), str(jxl)],
                       check=True, capture_output=True)
        subprocess.run(["djxl", str(jxl), str(back)], check=True, capture_output=True)
        _same_pixels(back, rgb, "JPEG XL")
        sizes["jxl"] = jxl.stat().st_size
    return sizes


def measure(name: str, k: int, repeats: int, peers: bool, folder: Path) -> dict:
    """One row: sizes of every coding and peer, coding times, for ``name`` at ``k``."""
    labels, palette = cached_indexed(name, k, fresh=False)
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
        {c: partial(get(c).decode, payloads[c], kk, width, height) for c in CODINGS}, repeats)
    sizes = {c: CONTAINER_BYTES + 3 * kk + len(payloads[c]) for c in CODINGS}
    if peers:
        sizes.update(peer_sizes(labels, palette, folder))
    row: dict = {"image": name, "k": k, "pixels": n}
    for key, value in sizes.items():
        row[f"{key} B"] = value
    for c in ("entropy", "context"):
        row[f"{c} bpp"] = round(8 * sizes[c] / n, 3)
    for peer in ("jxl", "webp", "png8", "gif", "entropy"):
        if peer in sizes:
            row[f"ctx/{peer}"] = round(sizes["context"] / sizes[peer], 3)
    for peer in ("jxl", "webp", "png8", "gif"):
        if peer in sizes:
            row[f"ent/{peer}"] = round(sizes["entropy"] / sizes[peer], 3)
    for c in CODINGS:
        row[f"{c} enc s"] = round(enc[c][0], 3)
        row[f"{c} dec s"] = round(dec[c][0], 3)
    return row


def size_rows(names: list[str], ks: list[int], repeats: int, peers: bool,
              fresh: bool = False) -> list[dict]:
    rows = []
    key = cache_key()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            for k in ks:
                path = CACHE / f"{name}_k{k}_{key}_{'peers' if peers else 'alone'}.json"
                if path.exists() and not fresh:
                    rows.append(json.loads(path.read_text()))
                    continue
                row = measure(name, k, repeats, peers, Path(tmp))
                CACHE.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(row))
                rows.append(row)
                print(f"  {name} k={k} done", file=sys.stderr, flush=True)
    return rows


def _spread(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ({min(values):.2f} .. {max(values):.2f})"


def print_size_tables(rows: list[dict]) -> None:
    size_cols = ["image", "k", "pixels", "fixed B", "entropy B", "context B", "jxl B",
                 "webp B", "png8 B", "gif B", "context bpp", "ctx/entropy", "ctx/jxl",
                 "ctx/webp", "ent/jxl"]
    print_table(rows, [c for c in size_cols if c in rows[0]],
                "Sizes: whole files, same indexed image (kpal k-means, seed 0), every "
                "coder checked lossless")
    time_cols = ["image", "k"] + [f"{c} {d} s" for c in CODINGS for d in ("enc", "dec")]
    print_table(rows, time_cols, "Payload coding seconds (median), labels <-> payload only")
    summary = []
    for k in sorted({r["k"] for r in rows}):
        mine = [r for r in rows if r["k"] == k]
        line: dict = {"k": k, "images": len(mine)}
        for coder in ("entropy", "jxl", "webp", "png8", "gif"):
            key = f"ctx/{coder}"
            if key not in mine[0]:
                continue
            ratios = [r[key] for r in mine]
            line[f"{key} mean (min .. max)"] = _spread(ratios)
            line[f"context wins vs {coder}"] = f"{sum(x < 1 for x in ratios)}/{len(ratios)}"
        if "ent/jxl" in mine[0]:
            line["ent/jxl mean (min .. max)"] = _spread([r["ent/jxl"] for r in mine])
        if "ctx/jxl" in mine[0] and k in JXL_TARGETS:
            mean = float(np.mean([r["ctx/jxl"] for r in mine]))
            line[f"target ctx/jxl <= {JXL_TARGETS[k]}"] = (
                "met" if mean <= JXL_TARGETS[k] else "MISSED")
        if "ctx/webp" in mine[0]:
            line["<= webp on every image"] = (
                "met" if max(r["ctx/webp"] for r in mine) <= 1 else "MISSED")
        summary.append(line)
    for line in summary:  # one small table per k: the columns are long
        print_table([line], list(line), f"Context coding against the peers, k = {line['k']}")


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
        # "0": the compiled path at any size (a 64x64 image would otherwise stay on numpy)
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "KPAL_PURE_NUMPY": "0"}
        for label in ("compile (cold cache)", "load (warm cache)"):
            done = subprocess.run([sys.executable, "-c", script], env=env, check=True,
                                  capture_output=True, text=True)
            out[label] = float(done.stdout.split()[-1])
    return out


def encode_entropy_file(image: Image.Image) -> bytes:
    return codec.encode_image(image, coding="entropy").data


def file_with_coding(labels: np.ndarray, palette: np.ndarray, coding: str) -> bytes:
    """The ``.kpal`` file of these labels and palette in ``coding``, assembled directly."""
    chosen = get(coding)
    payload = chosen.encode(labels, len(palette))
    height, width = labels.shape
    header = container.Header.for_image(coding=chosen.id, k=len(palette), width=width,
                                        height=height, payload_length=len(payload),
                                        alpha=False, metadata_length=0)
    return container.write(header, palette, payload)


def plain_context_seconds_per_pixel() -> float:
    """Decode seconds per pixel of the context coding's plain-Python kernel (128x128, k=16)."""
    labels = np.kron(np.random.default_rng(0).integers(0, 16, (32, 32)),
                     np.ones((4, 4), np.int64)).astype(np.uint8)
    with entropy_path("numpy"):
        payload = context.encode(labels, 16)
        start = time.perf_counter()
        context.decode(payload, 16, 128, 128)
    return (time.perf_counter() - start) / labels.size


def twelve_mp(ks: list[int], repeats: int) -> None:
    """Entropy and context coding on the 12 MP image against fixed width."""
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
        if "compiled" in paths:
            files["context"] = on_path("compiled", file_with_coding, labels, palette, "context")
            encoders["context"] = partial(on_path, "compiled", context.encode, labels, kk)
            decoders["context"] = partial(on_path, "compiled", decode_to_rgb, files["context"])
        enc = interleaved_median_times(encoders, repeats)
        dec = interleaved_median_times(decoders, repeats)
        row = {"k": k, "fixed B": len(files["fixed"]), "entropy B": len(files["numpy"]),
               "entropy bpp": round(8 * len(files["numpy"]) / labels.size, 3),
               "fixed coding s": round(enc["fixed"][0], 2),
               "fixed dec->RGB s": round(dec["fixed"][0], 2)}
        for path in paths:
            adds = enc[path][0] - enc["fixed"][0]
            row[f"entropy {path} adds s"] = round(adds, 2)
            row[f"entropy {path} dec->RGB s"] = round(dec[path][0], 2)
        if "context" in files:
            adds = enc["context"][0] - enc["fixed"][0]
            row["context B"] = len(files["context"])
            row["context bpp"] = round(8 * len(files["context"]) / labels.size, 3)
            row["context adds s"] = round(adds, 2)
            row["context dec->RGB s"] = round(dec["context"][0], 2)
            row["context (adds<=3, dec<=1.5)"] = (
                "met" if adds <= 3 and dec["context"][0] <= 1.5 else "MISSED")
        rows.append(row)
    print_table(rows, list(rows[0]),
                f"12 MP ({corpus.TWELVE_MP}, 4000x3000): coding speed, median of "
                f"{repeats}; entropy paths: {', '.join(paths)} (identical bytes); context "
                "compiled")
    per_pixel = plain_context_seconds_per_pixel()
    print(f"context, plain-Python kernel: {per_pixel * 1e6:.0f} us per pixel on a 128x128 "
          f"k=16 image, so about {per_pixel * 12e6 / 60:.0f} min for 12 MP; kpal refuses "
          f"images above {context.PLAIN_MAX_PIXELS} pixels without the compiled kernels\n")
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
    parser.add_argument("--k", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--corpus", choices=("photos", "classic"), default="photos",
                        help="the 26 photos of bench/photos.py, or the older seven")
    parser.add_argument("--images", nargs="+", help="only these images")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-peers", action="store_true",
                        help="skip JPEG XL, WebP, PNG-8 and GIF (cjxl -e 9 is slow)")
    parser.add_argument("--fresh", action="store_true", help="ignore the cached results")
    parser.add_argument("--twelve-mp", action="store_true",
                        help="also time entropy and context coding on the 12 MP corpus image")
    parser.add_argument("--no-radix-table", action="store_true")
    args = parser.parse_args(argv)
    names = args.images or (list(photos.PHOTOS) if args.corpus == "photos" else list(PHOTOS))
    print_machine_info()
    started = time.perf_counter()
    if not args.no_peers and not (shutil.which("cjxl") and shutil.which("djxl")):
        print("note: cjxl/djxl not found (apt-get install libjxl-tools): the JPEG XL "
              "columns and the context coding's JPEG XL target are left out", file=sys.stderr)
    rows = size_rows(names, args.k, args.repeats, not args.no_peers, args.fresh)
    print_size_tables(rows)
    if args.twelve_mp:
        twelve_mp(args.k, args.repeats)
    if not args.no_radix_table:
        radix_table()
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
