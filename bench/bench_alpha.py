"""Side-by-side benchmark: kpal's RGBA quantization against pngquant ``--nofs``.

Corpus: bench/alpha_corpus.py (10 RGBA images of different kinds: logos and
icons with anti-aliased edges, cut-out photos, a soft vignette, a GIF-style
sprite, translucent UI art). For every image and k in {16, 64, 256}, in one run:

quality
    PSNR of the premultiplied RGBA error, taken as the average of the squared
    errors of the composites over black and over white
    (:func:`kpal.cluster.alpha.composite_mse`), for kpal
    (``quantize_rgba``, nearest entry, no dithering) and for pngquant
    ``--nofs`` (its PNG read back with Pillow, ``convert("RGBA")``). A lossless
    result (infinite PSNR) counts as ``PSNR_CAP`` dB in the means.
mask
    Whether every alpha 0 pixel came back with alpha 0 and every alpha 255
    pixel with alpha 255.
size
    kpal: the size of a ``.kpal`` file with an RGBA palette and ``--entropy``
    coding, ``container.OVERHEAD_V2 + 4·k + len(payload)`` where the payload is
    ``kpal.coding.get("entropy").encode(labels, k)`` (an opaque palette is
    written as version 1, ``30 + 3·k + len(payload)``). pngquant: its PNG, and
    that PNG after ``oxipng`` level 6 (``-o max``) when the ``oxipng`` module
    (PyPI ``pyoxipng``) can be imported.
speed
    The encode of the RGBA image against that of its RGB channels, three
    ways: the quantizer alone (``quantize_rgba`` on the RGBA pixels against
    ``kpal.cluster.quantize`` on their RGB), the whole encode in process
    (``kpal.codec.encode_image``, default coding, array to file bytes) and
    ``kpal encode`` file to file (PNG in, a process each, so start-up and
    decoding count); medians of ``--repeats`` interleaved runs, and
    pngquant's wall time (process included) for reference.

Targets (issue 12): mean PSNR >= pngquant + 0.3 dB at each k and never more
than 0.2 dB below it on any image; exact alpha 0/255; mean size <= pngquant's
optimized PNG; RGBA encode time <= 1.3x the RGB encode time.

``--large`` adds the speed case of a 12 MP photo with a soft vignette alpha
(:func:`alpha_corpus.large_vignette`), quality and time only (no pngquant):
the quantizer, the in-process encode and the CLI file to file (PNG in), each
RGBA against the RGB of the same photo.

Run::

    python bench/bench_alpha.py                     # every image, k 16 64 256
    python bench/bench_alpha.py --k 64 --images sprite ui-panel --repeats 1
    python bench/bench_alpha.py --large --images sprite --k 16 256
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from alpha_corpus import CORPUS, large_vignette, load_corpus  # noqa: E402
from common import (  # noqa: E402
    interleaved_median_times,
    print_machine_info,
    print_table,
    run_cmd_measured,
)
from PIL import Image  # noqa: E402

from kpal import container  # noqa: E402
from kpal.cluster import quantize  # noqa: E402
from kpal.cluster.alpha import composite_mse, quantize_rgba  # noqa: E402
from kpal.codec import encode_image  # noqa: E402
from kpal.coding import get as get_coding  # noqa: E402

#: PSNR counted for a lossless result in the means (dB).
PSNR_CAP = 100.0
#: Bytes of an RGBA ``.kpal`` file besides palette and payload (header v2 + CRC).
RGBA_OVERHEAD = getattr(container, "OVERHEAD_V2", 35)
#: The same for an opaque (version 1) file.
RGB_OVERHEAD = getattr(container, "OVERHEAD", 30)

try:
    import oxipng
except ImportError:
    oxipng = None


def psnr(err: float) -> float:
    return PSNR_CAP if err == 0 else min(PSNR_CAP, 10 * np.log10(255.0**2 / err))


def mask_exact(original: np.ndarray, result: np.ndarray) -> bool:
    a, b = original[..., 3], result[..., 3]
    return bool(np.all(b[a == 0] == 0) and np.all(b[a == 255] == 255))


def kpal_size(palette: np.ndarray, labels_hw: np.ndarray) -> int:
    k = palette.shape[0]
    payload = get_coding("entropy").encode(labels_hw, k)
    if np.all(palette[:, 3] == 255):
        return RGB_OVERHEAD + 3 * k + len(payload)
    return RGBA_OVERHEAD + 4 * k + len(payload)


def run_pngquant(image: np.ndarray, k: int, folder: str) -> tuple[np.ndarray, int, int | None,
                                                                  float]:
    source = os.path.join(folder, "in.png")
    target = os.path.join(folder, "out.png")
    Image.fromarray(image, "RGBA").save(source)
    start = time.perf_counter()
    subprocess.run(["pngquant", "--nofs", "--force", "--output", target, str(k), source],
                   check=True)
    seconds = time.perf_counter() - start
    data = Path(target).read_bytes()
    with Image.open(target) as im:
        result = np.asarray(im.convert("RGBA"))
    optimized = None
    if oxipng is not None:
        optimized = len(oxipng.optimize_from_memory(data, level=6))
    return result, len(data), optimized, seconds


def _cli_runs(image: np.ndarray, k: int, folder: str, tag: str) -> dict:
    """File-to-file encodes through the CLI of the RGBA image and of its RGB
    channels (PNG in, a process each), for :func:`interleaved_median_times`."""
    kpal_cli = str(Path(sys.executable).with_name("kpal"))
    runs = {}
    for name, array in (("rgba", image), ("rgb", np.ascontiguousarray(image[..., :3]))):
        source = Path(folder) / f"{tag}_{name}.png"
        if not source.exists():
            Image.fromarray(array).save(source, compress_level=1)
        argv = [kpal_cli, "encode", str(source), "-o", str(Path(folder) / f"{tag}_{name}.kpal"),
                "-k", str(k), "--force", "-q"]
        runs[f"{name} cli"] = lambda argv=argv: run_cmd_measured(argv)
    return runs


def _timed(image: np.ndarray, k: int, repeats: int, folder: str,
           tag: str) -> tuple[object, dict]:
    """The RGBA quantization of ``image``, and the median times of the RGBA and RGB
    quantizer, in-process encode and CLI encode (files named after ``tag``)."""
    pixels = image.reshape(-1, 4)
    rgb = np.ascontiguousarray(pixels[:, :3])
    rgb_image = np.ascontiguousarray(image[..., :3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = quantize_rgba(pixels, k)
        times = interleaved_median_times(
            {"rgba": lambda: quantize_rgba(pixels, k), "rgb": lambda: quantize(rgb, k),
             "rgba encode": lambda: encode_image(image, k),
             "rgb encode": lambda: encode_image(rgb_image, k),
             **_cli_runs(image, k, folder, tag)},
            repeats)
    return result, times


def bench_one(name: str, image: np.ndarray, k: int, repeats: int, folder: str) -> dict:
    height, width = image.shape[:2]
    result, times = _timed(image, k, repeats, folder, name)
    ours = result.palette[result.labels].reshape(image.shape)
    theirs, png_bytes, oxi_bytes, pq_seconds = run_pngquant(image, k, folder)
    ours_db = psnr(composite_mse(image, ours))
    theirs_db = psnr(composite_mse(image, theirs))
    return {
        "image": name, "k": k, "kpal dB": ours_db, "pngquant dB": theirs_db,
        "delta dB": ours_db - theirs_db,
        "kpal mask": mask_exact(image, ours), "pq mask": mask_exact(image, theirs),
        "kpal k": result.palette.shape[0],
        "kpal bytes": kpal_size(result.palette, result.labels.reshape(height, width)),
        "png bytes": png_bytes, "oxipng bytes": oxi_bytes,
        "rgba s": times["rgba"][0], "rgb s": times["rgb"][0],
        "quantizer ratio": times["rgba"][0] / times["rgb"][0],
        "encode ratio": times["rgba encode"][0] / times["rgb encode"][0],
        "cli ratio": times["rgba cli"][0] / times["rgb cli"][0],
        "pngquant s": pq_seconds,
    }


def summarize(rows: list[dict], k: int) -> dict:
    rows = [r for r in rows if r["k"] == k]
    sizes = [r["oxipng bytes"] if r["oxipng bytes"] is not None else r["png bytes"]
             for r in rows]
    mean_ours = statistics.fmean(r["kpal dB"] for r in rows)
    mean_theirs = statistics.fmean(r["pngquant dB"] for r in rows)
    return {
        "k": k, "kpal dB": mean_ours, "pngquant dB": mean_theirs,
        "mean delta": mean_ours - mean_theirs,
        "worst delta": min(r["delta dB"] for r in rows),
        "masks exact": bool(all(r["kpal mask"] for r in rows)),
        "kpal bytes": statistics.fmean(r["kpal bytes"] for r in rows),
        "png bytes": statistics.fmean(r["png bytes"] for r in rows),
        "oxipng bytes": statistics.fmean(sizes) if oxipng is not None else None,
        "size ratio": statistics.fmean(r["kpal bytes"] for r in rows) / statistics.fmean(sizes),
        "median quantizer ratio": statistics.median(r["quantizer ratio"] for r in rows),
        "median encode ratio": statistics.median(r["encode ratio"] for r in rows),
        "worst encode ratio": max(r["encode ratio"] for r in rows),
        "median cli ratio": statistics.median(r["cli ratio"] for r in rows),
        "quality target": bool(mean_ours - mean_theirs >= 0.3
                               and min(r["delta dB"] for r in rows) >= -0.2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--images", nargs="+", choices=[name for name, _ in CORPUS])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large", action="store_true",
                        help="also time a 12 MP photo with a soft vignette alpha")
    args = parser.parse_args()
    if shutil.which("pngquant") is None:
        sys.exit("pngquant is not installed (apt install pngquant)")
    print_machine_info()
    print(f"pngquant {subprocess.run(['pngquant', '--version'], capture_output=True, text=True).stdout.strip()}; "  # noqa: E501
          f"oxipng {'level 6' if oxipng is not None else 'not available'}")
    corpus = load_corpus(args.images)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, image in corpus:
            for k in args.k:
                rows.append(bench_one(name, image, k, args.repeats, folder))
    columns = ["image", "k", "kpal dB", "pngquant dB", "delta dB", "kpal mask", "pq mask",
               "kpal k", "kpal bytes", "png bytes", "oxipng bytes", "rgba s", "rgb s",
               "quantizer ratio", "encode ratio", "cli ratio", "pngquant s"]
    print_table(rows, columns, "per image (PSNR of composites over black and white)")
    summary = [summarize(rows, k) for k in args.k]
    print_table(summary, list(summary[0]), "means over the corpus")
    if args.large:
        image = large_vignette()
        with tempfile.TemporaryDirectory() as folder:
            large = [bench_large(image, k, args.repeats, folder) for k in args.k]
        print_table(large, list(large[0]), "12 MP photo with a soft vignette alpha")


def bench_large(image: np.ndarray, k: int, repeats: int, folder: str) -> dict:
    """quantize_rgba against quantize on the RGB of a large image, its PSNR, the
    whole encode (``kpal.codec.encode_image``, default coding) of the RGBA
    image against that of its RGB, and the same file to file through the CLI
    (PNG in, ``.kpal`` out, a process each, so start-up and PNG decoding count)."""
    pixels = image.reshape(-1, 4)
    result, times = _timed(image, k, repeats, folder, "large")
    ours = result.palette[result.labels].reshape(image.shape)
    return {"k": k, "pixels": pixels.shape[0], "kpal dB": psnr(composite_mse(image, ours)),
            "mask": mask_exact(image, ours), "rgba s": times["rgba"][0],
            "rgb s": times["rgb"][0], "quantizer ratio": times["rgba"][0] / times["rgb"][0],
            "rgba encode s": times["rgba encode"][0], "rgb encode s": times["rgb encode"][0],
            "encode ratio": times["rgba encode"][0] / times["rgb encode"][0],
            "rgba cli s": times["rgba cli"][0], "rgb cli s": times["rgb cli"][0],
            "cli ratio": times["rgba cli"][0] / times["rgb cli"][0]}


if __name__ == "__main__":
    main()
