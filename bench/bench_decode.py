"""Decode benchmark: a 12 MP .kpal to an RGB numpy array, against Pillow reading PNG-8.

For every index width 1..8 bits (k = 2, 4, …, 256) the same indexed image is
stored twice — as ``.kpal`` (fixed-width packing) and as an indexed PNG saved
by Pillow — and the time to get an ``(height, width, 3)`` uint8 array back is
measured in this process (median of ``--repeats`` rounds, the three routes
taking turns within a round; file read included):

- ``kpal.decode``: ``np.asarray(kpal.decode(path).convert("RGB"))``, the
  public Pillow route;
- ``kpal indices``: ``kpal.codec.decode_indices(bytes)`` then
  ``np.take(palette, labels, axis=0)``, the numpy route;
- ``Pillow PNG``: ``np.asarray(Image.open(png).convert("RGB"))``.

The indexed images are real-photo quantizations: the 12 MP corpus image is
quantized once to 256 colours (Pillow median cut), the palette sorted by
luminance, and for width ``b`` each index is mapped to its rank >> (8 - b), so
every width keeps the photo's structure and uses all 2**b indices.

Usage::

    python bench/bench_decode.py                 # 12 MP, widths 1..8, 5 runs
    python bench/bench_decode.py --bits 1 8 --repeats 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
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

KPAL_DECODE = "kpal.decode"
KPAL_INDICES = "kpal indices"
PILLOW_PNG = "Pillow PNG"


def base_quantization(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quantize once to 256 colours; return (palette sorted by luminance, labels).

    Returns
    -------
    palette : ndarray of shape (n, 3), uint8
    labels : ndarray of shape (height, width), uint8
        Indices into the sorted palette.
    """
    quantized = Image.fromarray(rgb, "RGB").quantize(256, method=Image.Quantize.MEDIANCUT,
                                                     dither=Image.Dither.NONE)
    # Keep only the palette entries in use, so every rank below is a real colour.
    used, compact = np.unique(np.asarray(quantized), return_inverse=True)
    full_palette = np.asarray(quantized.getpalette("RGB"), np.uint8).reshape(-1, 3)
    palette = full_palette[used]
    luminance = palette @ np.array([299, 587, 114])
    order = np.argsort(luminance, kind="stable")
    rank = np.empty(len(used), np.uint8)
    rank[order] = np.arange(len(used), dtype=np.uint8)
    return palette[order], rank[compact.reshape(rgb.shape[:2])]


def indexed_image(palette: np.ndarray, labels: np.ndarray, bits: int) -> Image.Image:
    """Reduce the base quantization to ``2**bits`` indices, all of them used.

    Each new colour is the mean of the base colours grouped under it, so the
    picture stays a plausible quantization of the photo.
    """
    k = 1 << bits
    if len(palette) < k:
        msg = f"the base quantization has {len(palette)} colours, fewer than k={k}"
        raise ValueError(msg)
    # Spread the base ranks evenly over k groups (works when fewer than 256 are used).
    group_of_rank = (np.arange(len(palette)) * k // len(palette)).astype(np.uint8)
    reduced = group_of_rank[labels]
    sums = np.zeros((k, 3))
    np.add.at(sums, group_of_rank, palette.astype(np.float64))
    counts = np.bincount(group_of_rank, minlength=k)[:, None]
    new_palette = np.rint(sums / np.maximum(counts, 1)).astype(np.uint8)
    image = Image.fromarray(reduced, "P")
    image.putpalette(new_palette.tobytes(), "RGB")
    return image


def _png_bit_depth(path: Path) -> int:
    with open(path, "rb") as fh:
        head = fh.read(25)
    return head[24]  # IHDR bit depth: 8-byte signature + 8-byte chunk head + 8 bytes of size


def measure(image: corpus.CorpusImage, bits_list: list[int], repeats: int,
            workdir: Path) -> list[dict[str, Any]]:
    """Time the three decode routes for every index width; one row per width."""
    import kpal
    from kpal.codec import decode_indices

    rgb = corpus.load_rgb(image)
    palette, labels = base_quantization(rgb)
    del rgb
    rows = []
    for bits in bits_list:
        k = 1 << bits
        indexed = indexed_image(palette, labels, bits)
        kpal_path = workdir / f"k{k}.kpal"
        png_path = workdir / f"k{k}.png"
        kpal_path.write_bytes(kpal.encode(indexed))  # a "P" image is stored as is
        indexed.save(png_path, format="PNG")
        expected = np.asarray(indexed.convert("RGB"))

        def via_decode(path: Path = kpal_path) -> np.ndarray:
            return np.asarray(kpal.decode(path).convert("RGB"))

        def via_indices(path: Path = kpal_path) -> np.ndarray:
            _, pal, idx = decode_indices(path.read_bytes())
            return np.take(pal, idx, axis=0)  # ~3x faster than pal[idx] on 12 MP

        def via_png(path: Path = png_path) -> np.ndarray:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))

        row: dict[str, Any] = {"bits": bits, "k": k,
                               "kpal bytes": kpal_path.stat().st_size,
                               "PNG bytes": png_path.stat().st_size,
                               "PNG depth": _png_bit_depth(png_path)}
        routes = {KPAL_DECODE: via_decode, KPAL_INDICES: via_indices, PILLOW_PNG: via_png}
        for name, fn in routes.items():
            if not np.array_equal(fn(), expected):  # also warms caches before timing
                msg = f"{name} at k={k} does not give back the stored pixels"
                raise AssertionError(msg)
        for name, (seconds, _) in interleaved_median_times(routes, repeats).items():
            row[name] = seconds
        row["decode/PNG"] = row[KPAL_DECODE] / row[PILLOW_PNG]
        row["indices/PNG"] = row[KPAL_INDICES] / row[PILLOW_PNG]
        rows.append(row)
        print(f"  k={k} done", file=sys.stderr, flush=True)
    return rows


COLUMNS = ["bits", "k", KPAL_DECODE, KPAL_INDICES, PILLOW_PNG, "decode/PNG", "indices/PNG",
           "kpal bytes", "PNG bytes", "PNG depth"]


def acceptance(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue-3 decode target, per width, for the faster public kpal route."""
    checks = []
    for row in rows:
        best = min(row["decode/PNG"], row["indices/PNG"])
        route = KPAL_DECODE if row["decode/PNG"] <= row["indices/PNG"] else KPAL_INDICES
        checks.append({"target": f"12 MP decode ≤ 1.0× Pillow PNG-8 (bits={row['bits']})",
                       "measured": f"{best:.2f}× via {route}",
                       "met": "yes" if best <= 1.0 else "NO"})
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=corpus.TWELVE_MP,
                        help="Corpus image to decode (default the 12 MP one).")
    parser.add_argument("--bits", nargs="+", type=int, default=list(range(1, 9)),
                        choices=range(1, 9), metavar="B", help="Index widths 1..8.")
    parser.add_argument("--repeats", type=int, default=5, help="Timed runs per figure.")
    parser.add_argument("--cache", type=Path, default=corpus.DEFAULT_CACHE,
                        help="Corpus folder.")
    args = parser.parse_args(argv)
    image = corpus.ensure(args.image, args.cache)

    print_machine_info()
    print(f"Image: {image.name} ({image.megapixels:.2f} MP); seconds are medians of "
          f"{args.repeats} runs, file read included")
    print()
    with tempfile.TemporaryDirectory(prefix="kpal-bench-") as tmp:
        rows = measure(image, args.bits, args.repeats, Path(tmp))
    print_table(rows, COLUMNS, "Decode to an RGB array: seconds and ratios")
    print_table(acceptance(rows), ["target", "measured", "met"], "Issue 3 acceptance (decode)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
