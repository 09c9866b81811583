"""The JavaScript decoder (js/kpal.js in Node) against the Python reader, side by side.

The same files are decoded by both, in one invocation, on the same machine:

- ``Node``: ``decode(bytes).toRGBA()`` in one Node process: the first (cold, the
  engine still compiling) run, and the median of ``--repeats`` further runs;
- ``Python``: ``kpal.codec.decode_indices(bytes)`` then ``np.take(palette, labels,
  axis=0)`` (RGB), the numpy route of bench_decode.py; the entropy coding through
  its compiled path (``KPAL_PURE_NUMPY=0``, numba) and, for the small image, also
  the pure numpy path. Medians of ``--repeats`` runs after one warm-up run.

Files: the 12 MP corpus photo (astronaut_12mp, 4000x3000) quantized to 256 colours
(Pillow median cut, as bench_decode.py does) in the fixed-width and the entropy
coding, and a 768x512 photo (coffee, resized) at k = 100 in all three codings.
Targets: 12 MP fixed-width k = 256 to RGBA in at most 0.15 s; 12 MP entropy at most
1.5 times the compiled Python path.

Also the size of the module: raw, gzip, and minified with esbuild or terser when
``--minifier-dir`` names a folder where one is installed from npm (``npm install
--prefix DIR esbuild``); nothing is installed by this script.

Usage::

    python bench/bench_js.py                      # 5 repeats
    python bench/bench_js.py --repeats 3 --minifier-dir /tmp/minify
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import corpus  # noqa: E402
from bench.bench_decode import base_quantization  # noqa: E402
from bench.common import median_time, print_machine_info, print_table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "js" / "kpal.js"
#: Colours of the 768x512 image: not a power of two, so radix differs from fixed width.
SMALL_K = 100

#: Decodes every file given, ``repeats + 1`` times each; prints one JSON line per file.
_NODE_SCRIPT = """
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
const [module, repeats, ...paths] = process.argv.slice(2);
const kpal = await import(pathToFileURL(module).href);
for (const path of paths) {
  const data = new Uint8Array(readFileSync(path));
  const runs = [];
  for (let r = 0; r <= Number(repeats); r++) {
    const start = performance.now();
    const rgba = kpal.decode(data).toRGBA();
    runs.push((performance.now() - start) / 1000);
    if (rgba.length === 0) throw new Error('empty');
  }
  console.log(JSON.stringify({ path, runs }));
}
"""


def write_file(path: Path, labels: np.ndarray, palette: np.ndarray, coding: str) -> Path:
    """Write a file with exactly this palette and these indices in one coding."""
    from kpal import coding as codings
    from kpal import container

    chosen = codings.get(coding)
    os.environ["KPAL_PURE_NUMPY"] = "0"  # the compiled encoder: 12 MP in seconds
    payload = chosen.encode(labels, len(palette))
    height, width = labels.shape
    header = container.Header.for_image(coding=chosen.id, k=len(palette), width=width,
                                        height=height, payload_length=len(payload))
    path.write_bytes(container.write(header, palette, payload))
    return path


def build_files(workdir: Path) -> list[dict[str, Any]]:
    """Write the benchmark files into ``workdir``; one dict per file (image, k, coding, path)."""
    big = corpus.load_rgb(corpus.ensure("astronaut_12mp"))
    palette, labels = base_quantization(big)
    del big
    height, width = labels.shape
    size = f"{width}x{height}"
    files = [
        {"image": size, "k": len(palette), "coding": coding,
         "path": write_file(workdir / f"big_{coding}.kpal", labels, palette, coding)}
        for coding in ("fixed", "entropy")
    ]
    small = np.asarray(Image.fromarray(corpus.load_rgb(corpus.ensure("coffee")))
                       .resize((768, 512), Image.Resampling.LANCZOS))
    palette, labels = base_quantization(small)
    # SMALL_K colours: neighbouring luminance ranks of the base quantization merged,
    # each new colour the mean of those it replaces (as bench_decode.indexed_image does)
    group = (np.arange(len(palette)) * SMALL_K // len(palette)).astype(np.uint8)
    reduced = group[labels]
    sums = np.zeros((SMALL_K, 3))
    np.add.at(sums, group, palette.astype(np.float64))
    counts = np.bincount(group, minlength=SMALL_K)[:, None]
    small_palette = np.rint(sums / np.maximum(counts, 1)).astype(np.uint8)
    for coding in ("fixed", "radix", "entropy"):
        files.append({"image": "768x512", "k": SMALL_K, "coding": coding,
                      "path": write_file(workdir / f"small_{coding}.kpal", reduced,
                                         small_palette, coding)})
    return files


def node_times(node: str, paths: list[Path], repeats: int) -> dict[str, list[float]]:
    """Run every file through the JS decoder in one Node process; path -> seconds per run."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "bench.mjs"
        script.write_text(_NODE_SCRIPT)
        out = subprocess.run([node, str(script), str(MODULE), str(repeats),
                              *map(str, paths)], capture_output=True, text=True, check=True)
    results = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return {r["path"]: r["runs"] for r in results}


def python_time(path: Path, repeats: int, pure_numpy: bool = False) -> float:
    """Median seconds of decode_indices + palette lookup to RGB, after one warm-up run."""
    from kpal.codec import decode_indices

    os.environ["KPAL_PURE_NUMPY"] = "1" if pure_numpy else "0"
    data = path.read_bytes()

    def run() -> None:
        _, palette, labels = decode_indices(data)
        np.take(palette, labels, axis=0)

    run()
    return median_time(run, repeats=repeats)[0]


def module_sizes(minifier_dir: Path | None) -> list[dict[str, Any]]:
    """Bytes of js/kpal.js: raw, gzip -9, and minified (+ gzip) by esbuild or terser."""
    source = MODULE.read_bytes()
    rows = [{"form": "source", "bytes": len(source),
             "gzip -9": len(gzip.compress(source, 9)), "tool": ""}]
    bins = (minifier_dir / "node_modules" / ".bin") if minifier_dir else None
    for tool, args in (("esbuild", ["--minify", "--format=esm"]),
                       ("terser", ["--module", "--compress", "--mangle"])):
        exe = bins / tool if bins else None
        if exe is None or not exe.exists():
            continue
        out = subprocess.run([str(exe), str(MODULE), *args], capture_output=True, check=True)
        rows.append({"form": "minified", "bytes": len(out.stdout),
                     "gzip -9": len(gzip.compress(out.stdout, 9)), "tool": tool})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="Timed runs per file and side.")
    parser.add_argument("--minifier-dir", type=Path,
                        help="A folder with esbuild or terser installed from npm.")
    args = parser.parse_args(argv)
    node = shutil.which("node")
    if node is None:
        raise SystemExit("bench_js: node is not on PATH")
    if importlib.util.find_spec("numba") is None:  # the Python side is the compiled path
        raise SystemExit('bench_js: numba is not installed: pip install -e ".[bench]"')
    print_machine_info()
    print(f"node {subprocess.run([node, '--version'], capture_output=True, text=True).stdout}")
    with tempfile.TemporaryDirectory(prefix="kpal-bench-js-") as tmp:
        files = build_files(Path(tmp))
        js = node_times(node, [f["path"] for f in files], args.repeats)
        rows = []
        for f in files:
            runs = js[str(f["path"])]
            node_median = float(np.median(runs[1:]))
            python = python_time(f["path"], args.repeats)
            row = {"image": f["image"], "k": f["k"], "coding": f["coding"],
                   "bytes": f["path"].stat().st_size, "Node first s": runs[0],
                   "Node s": node_median, "Python s": python,
                   "Node / Python": node_median / python, "Python numpy s": None}
            if f["coding"] == "entropy" and f["image"] == "768x512":
                row["Python numpy s"] = python_time(f["path"], args.repeats, pure_numpy=True)
            rows.append(row)
    print_table(rows, ["image", "k", "coding", "bytes", "Node first s", "Node s", "Python s",
                       "Node / Python", "Python numpy s"],
                "Decode to RGB(A): Node (js/kpal.js) vs Python (compiled entropy path)")
    print_table(module_sizes(args.minifier_dir), ["form", "tool", "bytes", "gzip -9"],
                "Size of js/kpal.js")


if __name__ == "__main__":
    main()
