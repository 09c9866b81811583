"""Hostile entropy payloads (coding 2) against a real photo of the same pixel count.

Each crafted case is a small, checksum-valid ``.kpal`` file that a decoder
without the bounds of spec/kpal.md §7 (at most 190 wavefront steps, at least
one lane per 1024 pixels) took minutes or hundreds of megabytes to decode. For
each case and each decode path (numpy, compiled), a child process decodes the
file (``kpal.codec.decode_indices``: header, checksum and payload) and reports
the median CPU time of ``--repeats`` runs (CPU, not wall-clock, time: the
machine is shared) and the peak memory growth over them
(Linux: the peak ``VmHWM`` is reset through ``/proc/self/clear_refs`` just
before, minus the size then; the compiled path is warmed up on a tiny file
first, so importing numba is not counted). The reference is a real
photo with the same number of pixels: ``samples/rocket.jpg`` quantized to
k = 16 by kpal, tiled to the size, coded by kpal's default entropy encoder
(``x photo``). Random indices cost several times a photo whatever the layout
(most pixels are literals of b bits), so decoded cases are also compared with
the same pixels written by the default encoder (``x default``; for a thin
image, random content of the same k in a near-square shape).

Usage::

    python bench/bench_entropy_bounds.py            # about a minute
    python bench/bench_entropy_bounds.py --full     # also the 16.7 MP cases
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kpal import container  # noqa: E402
from kpal.coding import _rans, entropy  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "samples" / "rocket.jpg"


# ------------------------------------------------------------------ crafted payloads
def step_pixel_counts(width: int, height: int, tile_log2: int) -> list[int]:
    """Pixels on each wavefront step (spec §7.2), summed over all tiles.

    Parameters
    ----------
    width, height : int
        Image size.
    tile_log2 : int
        Tile side is ``2**tile_log2``; any value, also one the spec now rejects.

    Returns
    -------
    list of int
        One count per step ``s = 0 .. S - 1``.
    """
    tile = 1 << tile_log2
    rows, cols = min(tile, height), min(tile, width)
    # tile rows holding row i of a tile, and tile columns holding column j
    in_rows = -(-(height - np.arange(rows)) // tile)
    in_cols = -(-(width - np.arange(cols)) // tile)
    # step s = 2*i + j: a convolution of the row counts (at even offsets) with the columns'
    spread = np.zeros(2 * rows - 1, dtype=np.int64)
    spread[::2] = in_rows
    return [int(c) for c in np.convolve(spread, in_cols)]


def constant_payload(width: int, height: int, tile_log2: int, n_lanes: int) -> bytes:
    """Entropy payload of an all-zero image (any k >= 2), built from spec §7 alone.

    Every pixel has L = A = D = R = LL = AA = 0, so pattern 127, and one
    decision ``F1 = 1``; only the counts of pattern 127 change. Any
    ``tile_log2`` and lane count can be written, including ones the spec no
    longer allows, so the result is what an attacker would send.

    Parameters
    ----------
    width, height : int
        Image size.
    tile_log2, n_lanes : int
        The payload's header fields.

    Returns
    -------
    bytes
    """
    probs = []
    c0, c1 = 1, 1
    for count in step_pixel_counts(width, height, tile_log2):
        if count:
            p1 = min(_rans.PROB_ONE - 1, max(1, (c1 << _rans.PROB_BITS) // (c0 + c1)))
            probs.append(np.full(count, p1, dtype=np.uint16))
            c1 += 2 * count
        if c0 + c1 > 1 << 13:  # after every step, even one without pixels
            c0, c1 = (c0 + 1) >> 1, (c1 + 1) >> 1
    p = np.concatenate(probs)
    header = bytes([tile_log2]) + n_lanes.to_bytes(2, "big")
    if n_lanes >= 64:  # the encoder's own coder, one round per n_lanes decisions
        states, words = _rans.encode(p, np.ones(p.size, bool), [p.size], n_lanes)
        return header + states.astype(">u4").tobytes() + words.astype(">u2").tobytes()
    # few lanes: spec §7.6 encoding, decision by decision (a numpy round per
    # decision would be slower than plain Python)
    state = [_rans.STATE_LOW] * n_lanes
    emitted = []
    for g in range(p.size - 1, -1, -1):
        f = int(p[g])  # a 1: frequency p1, start 4096 - p1
        x = state[g % n_lanes]
        if x >= f << 20:
            emitted.append(x & 0xFFFF)
            x >>= 16
        state[g % n_lanes] = (x // f << 12) + x % f + _rans.PROB_ONE - f
    words = np.array(emitted[::-1], dtype=">u2")
    return header + np.array(state, dtype=">u4").tobytes() + words.tobytes()


def encoded_payload(labels: np.ndarray, k: int, tile_log2: int = entropy.TILE_LOG2) -> bytes:
    """Payload of kpal's encoder for ``labels`` with another (allowed) tile size."""
    saved = entropy.TILE_LOG2
    entropy.TILE_LOG2 = tile_log2
    try:
        return entropy.encode(labels, k)
    finally:
        entropy.TILE_LOG2 = saved


def wrap(payload: bytes, k: int, width: int, height: int) -> bytes:
    """A checksum-valid ``.kpal`` file (coding 2) around ``payload``."""
    header = container.Header.for_image(coding=entropy.CODING_ID, k=k, width=width,
                                        height=height, payload_length=len(payload))
    palette = np.arange(3 * k, dtype=np.uint8).reshape(k, 3)
    return container.write(header, palette, payload)


def random_labels(height: int, width: int, k: int, seed: int = 0) -> np.ndarray:
    """Uniformly random indices: nearly every pixel a literal, the costliest content."""
    return np.random.default_rng(seed).integers(0, k, (height, width), dtype=np.uint8)


@functools.cache
def _photo_base(k: int) -> np.ndarray:
    from PIL import Image

    from kpal import quantize

    rgb = np.asarray(Image.open(PHOTO).convert("RGB"))
    return quantize(rgb.reshape(-1, 3), k, seed=0).labels.reshape(rgb.shape[:2])


def photo_labels(height: int, width: int, k: int = 16) -> np.ndarray:
    """``samples/rocket.jpg`` quantized by kpal to ``k`` colours, tiled to the size."""
    base = _photo_base(k)
    reps = (-(-height // base.shape[0]), -(-width // base.shape[1]))
    return np.ascontiguousarray(np.tile(base.astype(np.uint8), reps)[:height, :width])


def photo_shape(n_pixels: int) -> tuple[int, int]:
    """A near-square (height, width) with exactly ``n_pixels`` pixels when one exists."""
    width = math.isqrt(n_pixels)
    while n_pixels % width and width > math.isqrt(n_pixels) // 2:
        width -= 1
    if n_pixels % width:
        width = math.isqrt(n_pixels)
    return -(-n_pixels // width), width


# ------------------------------------------------------------------ cases
Case = tuple[str, int, int, int, Callable[[], bytes], Callable[[], bytes] | None]


def crafted_cases(full: bool) -> list[Case]:
    """(name, k, width, height, payload builder, builder of the same pixels at the defaults).

    The last is ``None`` for files that are rejected (their pixels are all 0).
    For a thin image it is a near-square image of the same random content.
    """
    def default(height: int, width: int, k: int) -> Callable[[], bytes]:
        return lambda: entropy.encode(random_labels(height, width, k), k)

    def small_tiles(height: int, width: int, k: int) -> Callable[[], bytes]:
        return lambda: encoded_payload(random_labels(height, width, k), k, 2)

    cases: list[Case] = [
        ("1x65536, tile_log2 15, 1 lane", 2, 1, 65536,
         lambda: constant_payload(1, 65536, 15, 1), None),
        ("65536x1, tile_log2 15, 1 lane", 2, 65536, 1,
         lambda: constant_payload(65536, 1, 15, 1), None),
        ("1x1048575, tile_log2 15, 1 lane", 2, 1, 1048575,
         lambda: constant_payload(1, 1048575, 15, 1), None),
        ("1023x1024 flat, 1 lane", 2, 1023, 1024,
         lambda: constant_payload(1023, 1024, 6, 1), None),
        ("1x1048575 random k=256", 256, 1, 1048575,
         default(1048575, 1, 256), default(1025, 1023, 256)),
        ("1x1048575 flat, default lanes", 2, 1, 1048575,
         lambda: constant_payload(1, 1048575, 6, 1023),
         lambda: constant_payload(1023, 1025, 6, 1023)),
        ("1024x1024 random k=256, tile_log2 2", 256, 1024, 1024,
         small_tiles(1024, 1024, 256), default(1024, 1024, 256)),
        ("2048x2048 random k=16, tile_log2 2", 16, 2048, 2048,
         small_tiles(2048, 2048, 16), default(2048, 2048, 16)),
    ]
    if full:
        cases += [
            ("1x16777215, tile_log2 15, 4096 lanes", 2, 1, 16777215,
             lambda: constant_payload(1, 16777215, 15, 4096), None),
            ("4096x4096 random k=256, tile_log2 2", 256, 4096, 4096,
             small_tiles(4096, 4096, 256), default(4096, 4096, 256)),
        ]
    return cases


# ------------------------------------------------------------------ measuring
_CHILD = r"""
import json, os, sys, time
import numpy as np
from kpal import codec
from kpal.errors import KpalError
from PIL import Image
Image.MAX_IMAGE_PIXELS = None
path, repeats = sys.argv[1], int(sys.argv[2])
data = open(path, "rb").read()
if os.environ["KPAL_PURE_NUMPY"] == "0":  # load numba and the compiled code first
    from kpal.coding import entropy
    entropy.decode(entropy.encode(np.zeros((2, 2), np.uint8), 2), 2, 2, 2)
def status(field):  # bytes, from /proc/self/status
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")  # reset the peak (VmHWM) to the current size
before = status("VmRSS")
times, outcome = [], "decoded"
for _ in range(repeats):
    start = time.process_time()
    try:
        codec.decode_indices(data)
    except KpalError as error:
        outcome = "rejected: " + str(error)
    times.append(time.process_time() - start)
print(json.dumps({"seconds": sorted(times)[len(times) // 2], "outcome": outcome,
                  "peak_mb": (status("VmHWM") - before) / 2**20}))
"""


def measure(data: bytes, compiled: bool, repeats: int) -> dict:
    """Decode ``data`` in a child process; return seconds, peak MB and the outcome."""
    with tempfile.NamedTemporaryFile(suffix=".kpal", delete=False) as handle:
        handle.write(data)
    try:
        env = {**os.environ, "KPAL_PURE_NUMPY": "0" if compiled else "1"}
        done = subprocess.run([sys.executable, "-c", _CHILD, handle.name, str(repeats)],
                              capture_output=True, text=True, env=env, check=True, cwd=ROOT)
    finally:
        os.unlink(handle.name)
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> None:
    """Print the table of crafted cases against photos of the same pixel count."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="Also the 16.7 MP cases.")
    parser.add_argument("--repeats", type=int, default=3, help="Decodes per measurement.")
    args = parser.parse_args(argv)
    photos: dict[int, bytes] = {}
    photo_runs: dict[tuple[int, bool], dict] = {}
    rows = []
    for name, k, width, height, build, same_pixels in crafted_cases(args.full):
        n = width * height
        data = wrap(build(), k, width, height)
        if n not in photos:
            ph, pw = photo_shape(n)
            photos[n] = wrap(entropy.encode(photo_labels(ph, pw), 16), 16, pw, ph)
        reference = None
        if same_pixels is not None:
            ref_payload = same_pixels()
            # a near-square reference has the same pixel count in another shape
            rh, rw = (height, width) if min(width, height) > 1 else photo_shape(n)
            reference = wrap(ref_payload, k, rw, rh)
        for compiled in (False, True):
            crafted = measure(data, compiled, args.repeats)
            if (n, compiled) not in photo_runs:
                photo_runs[n, compiled] = measure(photos[n], compiled, args.repeats)
            photo = photo_runs[n, compiled]
            row = {
                "case": name, "bytes": len(data), "path": "compiled" if compiled else "numpy",
                "outcome": crafted["outcome"][:60],
                "s": crafted["seconds"], "MB": crafted["peak_mb"],
                "photo s": photo["seconds"], "photo MB": photo["peak_mb"],
                "x photo s": crafted["seconds"] / photo["seconds"],
                "x photo MB": crafted["peak_mb"] / max(photo["peak_mb"], 0.1),
                "x default s": "", "x default MB": "",
            }
            if reference is not None:
                ref = measure(reference, compiled, args.repeats)
                row["x default s"] = crafted["seconds"] / ref["seconds"]
                row["x default MB"] = crafted["peak_mb"] / max(ref["peak_mb"], 0.1)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        cells = [f"{row[c]:.3g}" if isinstance(row[c], float) else str(row[c])
                 for c in columns]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
