"""Side-by-side quantizer benchmark: kpal against pngquant, libimagequant, Pillow, scikit-learn.

For every image × k × method it measures, in its own child process so the
peak resident memory is that method's alone:

- wall seconds, median of ``--repeats`` runs (file to file for the two CLIs,
  the quantizer call alone for the in-process methods);
- PSNR in dB of the result (decoded back to RGB) against the original pixels;
- peak RSS of the whole child process (``ru_maxrss`` from ``os.wait4``);
- the ratio kpal / peer of the times and the difference kpal − peer in PSNR
  (CLI peers are compared with the kpal CLI, in-process peers with the
  in-process ``kpal.cluster.quantize``).

It ends with an acceptance summary against the targets of issue 3.

Quick run (about a minute)::

    python bench/bench_quantize.py --quick

Full run (documented in bench/README.md)::

    python bench/bench_quantize.py
    python bench/bench_quantize.py --huge            # adds the 100 MP memory test

Quality on the 26 photos of ``bench/photos.py`` instead: ``kpal``
against ``sklearn`` only, one run each, PSNR and the difference per photo and
k, then per k the mean, the worst photo and how many fall more than 0.05 dB
below scikit-learn::

    python bench/bench_quantize.py --photos          # -k and --images narrow it
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import corpus, photos  # noqa: E402
from bench.common import (  # noqa: E402
    median_time,
    print_machine_info,
    print_table,
    psnr,
    run_cmd_measured,
)

MIB = 1024 * 1024
KPAL_CLI = "kpal-cli"
KPAL = "kpal"
KPAL_GMM = "kpal-gmm"
KPAL_SAMPLE = "kpal-sample"
PNGQUANT = "pngquant"
IMAGEQUANT = "imagequant"
PIL_MEDIANCUT = "pil-mediancut"
PIL_FASTOCTREE = "pil-fastoctree"
SKLEARN = "sklearn"

CLI_METHODS = (KPAL_CLI, PNGQUANT)
ALL_METHODS = (KPAL_CLI, KPAL, KPAL_GMM, KPAL_SAMPLE, PNGQUANT, IMAGEQUANT,
               PIL_MEDIANCUT, PIL_FASTOCTREE, SKLEARN)
DEFAULT_METHODS = (KPAL_CLI, KPAL, PNGQUANT, IMAGEQUANT, PIL_MEDIANCUT, PIL_FASTOCTREE,
                   SKLEARN)
HUGE_METHODS = (KPAL_CLI, PNGQUANT)
DEFAULT_KS = (16, 64, 256)

# Explicit thread counts so the determinism check compares 1 against 2 threads.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _thread_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({var: str(threads) for var in THREAD_VARS})
    return env


# ---------------------------------------------------------------------------
# In-process methods (run inside a worker child process)
# ---------------------------------------------------------------------------

def _kpal_runner(rgb: np.ndarray, k: int, opts: dict[str, Any]) -> Callable[[], Any]:
    from kpal.cluster import quantize

    pixels = rgb.reshape(-1, 3)

    def run() -> Any:
        return quantize(pixels, k, method=opts.get("kpal_method", "kmeans"),
                        seed=opts.get("seed", 0), sample=opts.get("sample"))

    return run


def _kpal_result(result: Any, rgb: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    palette, labels = result
    info = {"n_iter": int(result.n_iter), "inertia": float(result.inertia),
            "colors": int(len(palette))}
    return palette[labels].reshape(rgb.shape), info


def _imagequant_runner(rgb: np.ndarray, k: int, opts: dict[str, Any]) -> Callable[[], Any]:
    import imagequant

    height, width = rgb.shape[:2]
    # The binding wants RGBA bytes; its own PIL helper builds them with a per-pixel
    # Python loop, so they are prepared here, outside the timed call.
    rgba = np.empty((height, width, 4), np.uint8)
    rgba[..., :3] = rgb
    rgba[..., 3] = 255
    data = rgba.tobytes()
    del rgba

    def run() -> Any:
        return imagequant.quantize_raw_rgba_bytes(data, width, height, dithering_level=0.0,
                                                  max_colors=k)

    return run


def _imagequant_result(result: Any, rgb: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    indices, palette = result
    pal = np.asarray(palette, np.uint8).reshape(-1, 4)[:, :3]
    idx = np.frombuffer(indices, np.uint8)
    return pal[idx].reshape(rgb.shape), {"colors": int(len(pal))}


def _pil_runner(method: Image.Quantize) -> Callable[..., Callable[[], Any]]:
    def make(rgb: np.ndarray, k: int, opts: dict[str, Any]) -> Callable[[], Any]:
        image = Image.fromarray(rgb, "RGB")

        def run() -> Any:
            return image.quantize(k, method=method, dither=Image.Dither.NONE)

        return run

    return make


def _pil_result(result: Image.Image, rgb: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    colors = len(result.getcolors(256) or [])
    return np.asarray(result.convert("RGB")), {"colors": colors}


def _sklearn_runner(rgb: np.ndarray, k: int, opts: dict[str, Any]) -> Callable[[], Any]:
    from sklearn.cluster import KMeans

    pixels = rgb.reshape(-1, 3)

    def run() -> Any:
        packed = (pixels[:, 0].astype(np.uint32) << 16) | (pixels[:, 1].astype(np.uint32) << 8)
        packed |= pixels[:, 2]
        unique, counts = np.unique(packed, return_counts=True)
        colors = np.stack([(unique >> 16) & 255, (unique >> 8) & 255, unique & 255], axis=1)
        model = KMeans(n_clusters=min(k, len(unique)), n_init=1, random_state=opts.get("seed", 0))
        model.fit(colors.astype(np.float64), sample_weight=counts)
        labels = model.predict(pixels.astype(np.float64))
        return model, labels

    return run


def _sklearn_result(result: Any, rgb: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    model, labels = result
    palette = np.clip(np.rint(model.cluster_centers_), 0, 255).astype(np.uint8)
    info = {"n_iter": int(model.n_iter_), "colors": int(len(palette))}
    return palette[labels].reshape(rgb.shape), info


IN_PROCESS: dict[str, tuple[Callable[..., Callable[[], Any]], Callable[..., Any]]] = {
    KPAL: (_kpal_runner, _kpal_result),
    KPAL_GMM: (_kpal_runner, _kpal_result),
    KPAL_SAMPLE: (_kpal_runner, _kpal_result),
    IMAGEQUANT: (_imagequant_runner, _imagequant_result),
    PIL_MEDIANCUT: (_pil_runner(Image.Quantize.MEDIANCUT), _pil_result),
    PIL_FASTOCTREE: (_pil_runner(Image.Quantize.FASTOCTREE), _pil_result),
    SKLEARN: (_sklearn_runner, _sklearn_result),
}


def worker(method: str, image_path: Path, k: int, repeats: int, opts: dict[str, Any],
           result_path: Path) -> None:
    """Time one in-process method in this process and write a JSON result.

    The palette image is converted back to RGB after the timed runs and
    compared with the original for PSNR.
    """
    import warnings

    rgb = corpus.load_rgb(corpus.CorpusImage(image_path.stem, image_path))
    make_runner, to_rgb = IN_PROCESS[method]
    if method == KPAL_GMM:
        opts = {**opts, "kpal_method": "gmm"}
    if method != KPAL_SAMPLE:
        opts = {**opts, "sample": None}
    run = make_runner(rgb, k, opts)
    holder: list[Any] = []

    def timed() -> None:
        holder[:] = [run()]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "fewer distinct colours than k" and similar
        seconds, runs = median_time(timed, repeats, opts.get("budget"))
    decoded, info = to_rgb(holder[0], rgb)
    result = {"seconds": seconds, "runs": runs, "psnr": psnr(rgb, decoded), **info}
    result_path.write_text(json.dumps(result))


# ---------------------------------------------------------------------------
# Parent: run each method in its own child, collect rows
# ---------------------------------------------------------------------------

def _kpal_cli_argv() -> list[str]:
    # The console script installed beside this interpreter, not the first `kpal` on PATH:
    # version-manager shims (pyenv) put a shell script there that adds ~0.5 s per run.
    beside = Path(sys.executable).with_name("kpal")
    script = str(beside) if beside.exists() else shutil.which("kpal")
    if script:
        return [script]
    return [sys.executable, "-c", "import sys; from kpal.cli import main; sys.exit(main())"]


def _last_error_line(argv: list[str]) -> str:
    """Run a failed command again to show the last line it printed on stderr."""
    import subprocess

    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as e:  # not installed: run_cmd_measured's shell said 127
        return f"cannot run {argv[0]}: {e.strerror or e} (install it, or leave it out of --methods)"
    lines = done.stderr.strip().splitlines()
    return lines[-1][-120:] if lines else "(no message)"


def _decode_output(method: str, path: Path) -> np.ndarray:
    if method == KPAL_CLI:
        import kpal

        return np.asarray(kpal.decode(path).convert("RGB"))
    with corpus.allow_large_images(), Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _cli_argv(method: str, image: corpus.CorpusImage, k: int, opts: dict[str, Any],
              out: Path) -> list[str]:
    if method == KPAL_CLI:
        return [*_kpal_cli_argv(), "encode", str(image.path), "-o", str(out), "-k", str(k),
                "--seed", str(opts.get("seed", 0)), "--force"]
    return ["pngquant", str(k), "--nofs", "--force", "--output", str(out), str(image.path)]


def _run_clis(methods: list[str], image: corpus.CorpusImage, k: int, repeats: int,
              opts: dict[str, Any], workdir: Path,
              original: np.ndarray) -> dict[str, dict[str, Any]]:
    """Run the file-to-file CLIs in turns (A B, A B, ...) so load bursts hit both alike."""
    suffix = {KPAL_CLI: ".kpal", PNGQUANT: ".png"}
    outs = {m: workdir / f"{image.name}_k{k}_{m}{suffix[m]}" for m in methods}
    argvs = {m: _cli_argv(m, image, k, opts, outs[m]) for m in methods}
    walls: dict[str, list[float]] = {m: [] for m in methods}
    rsss: dict[str, list[int]] = {m: [] for m in methods}
    rows: dict[str, dict[str, Any]] = {}
    for _ in range(repeats):
        for method in methods:
            if method in rows or (walls[method] and sum(walls[method]) > opts["budget"]):
                continue  # failed, or out of time budget
            outs[method].unlink(missing_ok=True)
            wall, rss, code = run_cmd_measured(argvs[method], env=_thread_env(2))
            if code != 0:
                argv = argvs[method]
                rows[method] = {"error": f"{argv[0]} exit {code}: {_last_error_line(argv)}"}
                continue
            walls[method].append(wall)
            rsss[method].append(rss)
    for method in methods:
        if method in rows:
            continue
        out = outs[method]
        row: dict[str, Any] = {"seconds": statistics.median(walls[method]),
                               "runs": walls[method], "rss": max(rsss[method]),
                               "bytes": out.stat().st_size}
        try:
            row["psnr"] = psnr(original, _decode_output(method, out))
        except Exception as exc:  # a file that does not decode is a result too
            row = {"error": f"decoding the output: {type(exc).__name__}: {exc}"[:160]}
        if method == KPAL_CLI and "error" not in row:
            # Determinism: one more encode with a single BLAS/OpenMP thread must give the
            # byte-identical file the two-thread runs gave.
            single = out.with_suffix(".t1.kpal")
            run_cmd_measured(_cli_argv(method, image, k, opts, single), env=_thread_env(1))
            row["deterministic"] = single.exists() and single.read_bytes() == out.read_bytes()
        rows[method] = row
    return rows


def _worker_argv(method: str, image_path: Path, k: int, repeats: int, opts: dict[str, Any],
                 result_path: Path) -> list[str]:
    """The command that runs ``worker`` in a child; clears ``result_path`` first."""
    result_path.unlink(missing_ok=True)
    argv = [sys.executable, str(Path(__file__).resolve()), "--worker", method,
            "--worker-image", str(image_path), "--worker-result", str(result_path),
            "-k", str(k), "--repeats", str(repeats), "--seed", str(opts.get("seed", 0)),
            "--budget", str(opts.get("budget", float("inf")))]
    if opts.get("sample") is not None:
        argv += ["--sample", str(opts["sample"])]
    return argv


def _run_in_process(method: str, image: corpus.CorpusImage, k: int, repeats: int,
                    opts: dict[str, Any], workdir: Path) -> dict[str, Any]:
    result_path = workdir / f"{method}_{image.name}_{k}.json"
    argv = _worker_argv(method, image.path, k, repeats, opts, result_path)
    _, rss, code = run_cmd_measured(argv, env=_thread_env(2), capture=False)
    if not result_path.exists():
        return {"error": f"worker exit {code}"}
    result = json.loads(result_path.read_text())
    return result if "error" in result else {**result, "rss": rss}


def measure(images: list[corpus.CorpusImage], ks: list[int], methods: list[str],
            repeats: int, opts: dict[str, Any], workdir: Path) -> list[dict[str, Any]]:
    """Run every method on every image and k; return one row per run."""
    rows = []
    for image in images:
        original = corpus.load_rgb(image)
        huge = image.name == corpus.HUNDRED_MP
        chosen = [m for m in methods if not huge or m in HUGE_METHODS]
        reps = 1 if huge else repeats
        megapixels = original.shape[0] * original.shape[1] / 1e6
        for k in ks:
            clis = [m for m in chosen if m in CLI_METHODS]
            print(f"  {image.name} k={k} {' + '.join(clis)} ...", file=sys.stderr, flush=True)
            results = _run_clis(clis, image, k, reps, opts, workdir, original) if clis else {}
            for method in chosen:
                if method not in CLI_METHODS:
                    print(f"  {image.name} k={k} {method} ...", file=sys.stderr, flush=True)
                    results[method] = _run_in_process(method, image, k, reps, opts, workdir)
            rows += [{"image": image.name, "megapixels": megapixels, "k": k, "method": method,
                      "repeats": reps, **results[method]} for method in chosen]
    return rows


def _reference_method(method: str) -> str:
    return KPAL_CLI if method in CLI_METHODS else KPAL


def add_comparisons(rows: list[dict[str, Any]]) -> None:
    """Fill ``time_ratio`` (kpal / peer) and ``psnr_delta`` (kpal − peer) in place."""
    index = {(r["image"], r["k"], r["method"]): r for r in rows}
    for row in rows:
        # kpal-sample and kpal-gmm are compared with plain kpal too: the dB column is then
        # the quality cost of sampling (or of the mixture model).
        if row["method"] in (KPAL, KPAL_CLI) or "error" in row:
            continue
        ref = index.get((row["image"], row["k"], _reference_method(row["method"])))
        if ref is None or "error" in ref:
            continue
        row["ref"] = ref["method"]
        row["time_ratio"] = ref["seconds"] / row["seconds"]
        row["psnr_delta"] = ref["psnr"] - row["psnr"]


def _notes(row: dict[str, Any]) -> str:
    if "error" in row:
        return "error: " + row["error"]
    parts = []
    if len(row.get("runs", ())) < row.get("repeats", 0):
        parts.append(f"{len(row['runs'])} run(s)")
    if "n_iter" in row:
        parts.append(f"iter {row['n_iter']}")
    if "inertia" in row:
        parts.append(f"mse {row['inertia']:.2f}")
    if "bytes" in row:
        parts.append(f"{row['bytes']} B")
    if "deterministic" in row:
        parts.append("1T==2T" if row["deterministic"] else "1T!=2T")
    return ", ".join(parts)


TABLE_COLUMNS = ["k", "method", "seconds", "PSNR dB", "peak MiB", "vs", "kpal/peer time",
                 "kpal−peer dB", "notes"]


def print_results(rows: list[dict[str, Any]]) -> None:
    """Print one table per image."""
    for name in dict.fromkeys(r["image"] for r in rows):
        mine = [r for r in rows if r["image"] == name]
        table = [{
            "k": r["k"], "method": r["method"], "seconds": r.get("seconds"),
            "PSNR dB": r.get("psnr"),
            "peak MiB": r["rss"] / MIB if "rss" in r else None,
            "vs": r.get("ref"), "kpal/peer time": r.get("time_ratio"),
            "kpal−peer dB": r.get("psnr_delta"), "notes": _notes(r),
        } for r in mine]
        print_table(table, TABLE_COLUMNS, f"{name} ({mine[0]['megapixels']:.2f} MP)")


# ---------------------------------------------------------------------------
# Acceptance summary (issue 3 targets)
# ---------------------------------------------------------------------------

def _find(rows: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [r for r in rows if "error" not in r and all(r.get(k) == v for k, v in match.items())]


def _kpal_quality_row(rows: list[dict[str, Any]], image: str, k: int) -> dict[str, Any] | None:
    for method in (KPAL, KPAL_CLI):
        found = _find(rows, image=image, k=k, method=method)
        if found:
            return found[0]
    return None


def acceptance(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Check each measurable issue-3 target; return one summary row per check."""
    checks: list[dict[str, Any]] = []

    def add(target: str, measured: str, ok: bool | None) -> None:
        checks.append({"target": target, "measured": measured,
                       "met": "n/a" if ok is None else ("yes" if ok else "NO")})

    pairs = sorted({(r["image"], r["k"]) for r in rows if r["image"] != corpus.HUNDRED_MP})
    for image, k in pairs:
        ours, theirs = _kpal_quality_row(rows, image, k), _find(rows, image=image, k=k,
                                                              method=SKLEARN)
        if ours and theirs:
            delta = ours["psnr"] - theirs[0]["psnr"]
            add(f"PSNR ≥ sklearn − 0.05 dB ({image}, k={k})",
                f"{ours['psnr']:.2f} vs {theirs[0]['psnr']:.2f} ({delta:+.2f} dB)",
                delta >= -0.05)

    deltas = []
    for image, k in pairs:
        if k != 256:
            continue
        ours, theirs = _kpal_quality_row(rows, image, k), _find(rows, image=image, k=k,
                                                              method=IMAGEQUANT)
        if ours and theirs:
            deltas.append(ours["psnr"] - theirs[0]["psnr"])
    if deltas:
        mean = float(np.mean(deltas))
        add("PSNR at k=256 ≥ libimagequant + 0.4 dB (corpus mean)",
            f"{mean:+.2f} dB over {len(deltas)} images", mean >= 0.4)

    speed_targets = [(corpus.TWELVE_MP, 256, 0.25), (corpus.TWELVE_MP, 16, 0.25)]
    speed_targets += [(corpus.QUARTER_MP, k, 1.0) for k in sorted({r["k"] for r in rows})]
    for image, k, limit in speed_targets:
        ours = _find(rows, image=image, k=k, method=KPAL_CLI)
        theirs = _find(rows, image=image, k=k, method=PNGQUANT)
        if ours and theirs:
            ratio = ours[0]["seconds"] / theirs[0]["seconds"]
            add(f"CLI time ≤ {limit}× pngquant ({image}, k={k})",
                f"{ours[0]['seconds']:.2f} s vs {theirs[0]['seconds']:.2f} s ({ratio:.2f}×)",
                ratio <= limit)

    for image, limit_mib in ((corpus.TWELVE_MP, 300), (corpus.HUNDRED_MP, 1536)):
        found = _find(rows, image=image, method=KPAL_CLI)
        if found:
            peak = max(r["rss"] for r in found) / MIB
            ks = ",".join(str(r["k"]) for r in found)
            add(f"CLI encode peak RSS ≤ {limit_mib} MiB ({image})",
                f"{peak:.0f} MiB (max over k={ks})", peak <= limit_mib)

    determinism = _find(rows, method=KPAL_CLI)
    if determinism:
        same = sum(bool(r.get("deterministic")) for r in determinism)
        add("byte-identical .kpal with 1 and 2 BLAS/OpenMP threads",
            f"{same}/{len(determinism)} encodes identical", same == len(determinism))
    return checks


# ---------------------------------------------------------------------------
# --photos: kpal against scikit-learn on the 26 photos of bench/photos.py
# ---------------------------------------------------------------------------

SKLEARN_TOLERANCE_DB = 0.05  # the target: kpal's PSNR ≥ scikit-learn's − 0.05 dB


def _run_once(method: str, image_path: Path, k: int, opts: dict[str, Any], workdir: Path,
              timeout: float) -> dict[str, Any]:
    """One run of an in-process method in a worker child, given up after ``timeout`` seconds."""
    result_path = workdir / f"{method}_{image_path.stem}_{k}.json"
    argv = _worker_argv(method, image_path, k, 1, {**opts, "sample": None}, result_path)
    try:
        code = subprocess.run(argv, env=_thread_env(2), timeout=timeout, check=False).returncode
    except subprocess.TimeoutExpired:
        return {"error": f"{method} took more than {timeout:.0f} s, skipped"}
    if not result_path.exists():
        return {"error": f"{method} worker exit {code}"}
    return json.loads(result_path.read_text())


def _psnr_delta(ours: float, theirs: float) -> float:
    # Both lossless (fewer distinct colours than k) is a tie, not inf − inf.
    return 0.0 if ours == theirs else ours - theirs


def measure_photos(names: list[str], ks: list[int], opts: dict[str, Any], workdir: Path,
                   timeout: float) -> list[dict[str, Any]]:
    """PSNR of ``kpal`` and ``sklearn`` on each photo and k; one row per (photo, k).

    Each photo is written as a PNG (lossless) for the same worker the main
    table uses, so both methods are exactly the ones measured there.
    """
    rows = []
    for name in names:
        path = workdir / f"{name}.png"
        Image.fromarray(photos.load(name), "RGB").save(path, compress_level=1)
        for k in ks:
            print(f"  {name} k={k} ...", file=sys.stderr, flush=True)
            ours, theirs = (_run_once(m, path, k, opts, workdir, timeout) for m in (KPAL, SKLEARN))
            row: dict[str, Any] = {"photo": name, "k": k, "kpal": ours.get("psnr"),
                                   "sklearn": theirs.get("psnr")}
            errors = [r["error"] for r in (ours, theirs) if "error" in r]
            if errors:
                row["note"] = "; ".join(errors)
                print(f"  {name} k={k}: {row['note']}", file=sys.stderr, flush=True)
            else:
                row["delta"] = _psnr_delta(ours["psnr"], theirs["psnr"])
                row["note"] = f"iter {ours['n_iter']} / {theirs['n_iter']}"
            rows.append(row)
    return rows


def photo_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per k: mean and minimum of kpal − scikit-learn, and the photos below the tolerance."""
    summary = []
    for k in dict.fromkeys(r["k"] for r in rows):
        measured = [r for r in rows if r["k"] == k and "delta" in r]
        if not measured:
            continue
        worst = min(measured, key=lambda r: r["delta"])
        finite = [r["delta"] for r in measured if np.isfinite(r["delta"])]
        summary.append({
            "k": k, "photos": len(measured),
            "mean dB": float(np.mean(finite)) if finite else None,
            "min dB": worst["delta"], "worst photo": worst["photo"],
            f"below −{SKLEARN_TOLERANCE_DB} dB": sum(
                r["delta"] < -SKLEARN_TOLERANCE_DB for r in measured),
        })
    return summary


def print_photo_results(rows: list[dict[str, Any]]) -> None:
    """Print the per-photo table, then the per-k summary."""
    table = [{"photo": r["photo"], "k": r["k"], "kpal dB": r["kpal"], "sklearn dB": r["sklearn"],
              "kpal−sklearn dB": r.get("delta"), "notes (iterations kpal / sklearn)": r["note"]}
             for r in rows]
    print_table(table, list(table[0]) if table else [], "kpal vs scikit-learn k-means, PSNR")
    summary = photo_summary(rows)
    columns = ["k", "photos", "mean dB", "min dB", "worst photo",
               f"below −{SKLEARN_TOLERANCE_DB} dB"]
    print_table(summary, columns, "kpal − sklearn per k")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", default=None,
                        help="Corpus images (default: every regular one: "
                        f"{', '.join(corpus.BUILDERS)}).")
    parser.add_argument("-k", "--ks", nargs="+", type=int, default=list(DEFAULT_KS),
                        help="Palette sizes.")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                        choices=ALL_METHODS, metavar="METHOD",
                        help=f"Methods to run, among: {', '.join(ALL_METHODS)}.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed runs per figure.")
    parser.add_argument("--budget", type=float, default=60.0,
                        help="Stop repeating a method once its runs add up to more than this "
                        "many seconds (scikit-learn on 12 MP at k=256 takes ~100 s a run).")
    parser.add_argument("--seed", type=int, default=0, help="Seed for kpal and scikit-learn.")
    parser.add_argument("--sample", type=float, default=0.1,
                        help="Fraction used by the kpal-sample method.")
    parser.add_argument("--huge", action="store_true",
                        help="Add the 100 MP image (kpal CLI and pngquant only, one run).")
    parser.add_argument("--quick", action="store_true",
                        help="astronaut and the 0.25 MP photo, k 16 and 256, one run each.")
    parser.add_argument("--photos", action="store_true",
                        help="Instead: kpal vs scikit-learn PSNR on the photos of "
                        "bench/photos.py (--images picks among them), one run each.")
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="With --photos: give up a run after this many seconds.")
    parser.add_argument("--cache", type=Path, default=corpus.DEFAULT_CACHE,
                        help="Corpus folder.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the raw rows here.")
    parser.add_argument("--worker", choices=list(IN_PROCESS), help=argparse.SUPPRESS)
    parser.add_argument("--worker-image", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker-result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    opts = {"seed": args.seed, "sample": args.sample, "budget": args.budget}

    if args.worker:
        try:
            worker(args.worker, args.worker_image, args.ks[0], args.repeats, opts,
                   args.worker_result)
        except Exception as exc:  # reported in the table instead of stopping the run
            error = f"{type(exc).__name__}: {exc}"[:160]
            args.worker_result.write_text(json.dumps({"error": error}))
            raise
        return 0

    if args.photos:
        return _main_photos(args, opts)
    if args.quick:
        names = args.images or ["astronaut", corpus.QUARTER_MP]
        ks = args.ks if args.ks != list(DEFAULT_KS) else [16, 256]
        repeats = 1
    else:
        names = args.images or list(corpus.BUILDERS)
        ks, repeats = args.ks, args.repeats
    if args.huge and corpus.HUNDRED_MP not in names:
        names = [*names, corpus.HUNDRED_MP]
    images = [corpus.ensure(name, args.cache) for name in names]

    print_machine_info()
    print(f"Runs per figure: {repeats} (median); methods: {', '.join(args.methods)}")
    if corpus.HUNDRED_MP in names:
        print(f"{corpus.HUNDRED_MP}: only {' and '.join(HUGE_METHODS)}, one run each")
    print()
    with tempfile.TemporaryDirectory(prefix="kpal-bench-") as tmp:
        rows = measure(images, ks, args.methods, repeats, opts, Path(tmp))
    add_comparisons(rows)
    print_results(rows)
    print_table(acceptance(rows), ["target", "measured", "met"], "Issue 3 acceptance")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


def _main_photos(args: argparse.Namespace, opts: dict[str, Any]) -> int:
    names = args.images or list(photos.PHOTOS)
    unknown = [name for name in names if name not in photos.PHOTOS]
    if unknown:
        print(f"unknown photo(s): {', '.join(unknown)}; known: {', '.join(photos.PHOTOS)}",
              file=sys.stderr)
        return 2
    print_machine_info()
    print(f"{len(names)} photos of bench/photos.py, k {', '.join(map(str, args.ks))}, "
          f"seed {args.seed}, one run each, no dithering; runs over {args.timeout:.0f} s "
          "are skipped")
    print()
    with tempfile.TemporaryDirectory(prefix="kpal-bench-") as tmp:
        rows = measure_photos(names, args.ks, {**opts, "budget": float("inf")}, Path(tmp),
                              args.timeout)
    print_photo_results(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
