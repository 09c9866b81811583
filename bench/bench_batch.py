"""A folder of photos at k = 64: kpal's batch against pngquant under xargs, locally and on Dask.

The corpus is ``--images`` (100) real photos made reproducibly (seeded) from
scikit-image's bundled photos (astronaut, coffee, chelsea, rocket,
hubble_deep_field, immunohistochemistry, retina) and the project's samples
(samples/astronaut.jpg, hubble.jpg, rocket.jpg): for each image, a source is
taken in turn, a random crop keeping 40–100 % of its width and of its height
is cut, and the crop is rescaled with Lanczos so that its longer side is
between 256 and 1024 pixels; it is written as PNG (pngquant reads only PNG)
into ``bench/.cache/batch-<images>/``.

Contenders, timed in turns (``--repeats`` rounds, medians reported; memory
is sampled in ``--memory-runs`` extra runs of each command, since reading every process's
memory map costs CPU the timed runs should not lose):

``kpal batch``
    ``kpal encode DIR -o OUT -k 64 -j 2 -q --force``, the whole command
    (interpreter start-up and worker start-up included).
``pngquant xargs``
    ``ls *.png | xargs -P 2 -I{} pngquant 64 --nofs --force --output OUT/{} {}``,
    one pngquant process per file, two at a time (``--nofs``: no dithering,
    as kpal).
``kpal API``
    ``kpal.batch.encode_many(DIR, OUT, jobs=2, k=64, force=True)`` in this
    process (worker start-up included).
``kpal Dask``
    the same call with ``client=`` a ``LocalCluster(n_workers=2,
    threads_per_worker=1, processes=True)`` started once beforehand (its
    start-up is reported apart); the Dask overhead is its time against
    ``kpal API``. Its outputs are checked to be byte-identical to the local
    batch's.

Peak memory: the sum over the ``kpal encode`` process and its workers (and
the fork server) of their resident memory, RSS and PSS (shared pages split
between the processes sharing them), sampled every 5 ms or so from
``/proc/PID/smaps_rollup``, for the batch (median over ``--memory-runs``
extra runs) and for a single ``kpal encode`` of the corpus's largest image.

Run::

    python bench/bench_batch.py                       # 100 images, 3 rounds
    python bench/bench_batch.py --images 10 --repeats 1   # a quick look
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(ROOT))

from bench.common import print_machine_info, print_table  # noqa: E402

SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
                  "immunohistochemistry", "retina")
SAMPLE_PHOTOS = ("astronaut.jpg", "hubble.jpg", "rocket.jpg")
KPAL = [sys.executable, "-c",
        "import sys, _kpal_launcher; sys.argv[0] = 'kpal'; sys.exit(_kpal_launcher.main())"]


# ------------------------------------------------------------------ corpus
def sources() -> list[tuple[str, np.ndarray]]:
    """The photos every corpus image is cut from, as RGB arrays."""
    import skimage.data

    photos = [(name, getattr(skimage.data, name)()) for name in SKIMAGE_PHOTOS]
    for name in SAMPLE_PHOTOS:
        with Image.open(ROOT / "samples" / name) as im:
            photos.append((name, np.asarray(im.convert("RGB"))))
    return photos


def make_corpus(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """Write ``count`` crops and rescales of :func:`sources` as PNG; reuse them if present."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:03}.png" for i in range(count)]
    if all(p.exists() for p in paths):
        return paths
    rng = np.random.default_rng(seed)
    photos = sources()
    for i, path in enumerate(paths):
        name, rgb = photos[i % len(photos)]
        h, w = rgb.shape[:2]
        ch, cw = (max(16, int(d * rng.uniform(0.4, 1.0))) for d in (h, w))
        top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = Image.fromarray(rgb[top:top + ch, left:left + cw])
        longer = int(rng.integers(256, 1025))
        scale = longer / max(crop.size)
        size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
        crop.resize(size, Image.Resampling.LANCZOS).save(path, compress_level=1)
    return paths


# ------------------------------------------------------------------ measuring
def _rollup(pid: int) -> tuple[int, int]:
    """RSS and PSS of one process in bytes, from ``/proc/PID/smaps_rollup`` (Linux 4.14+)."""
    values = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("Rss", "Pss"):
                values[name] = int(rest.split()[0]) * 1024
    return values["Rss"], values["Pss"]


def _tree(root) -> set[int]:  # noqa: ANN001 - a psutil.Process
    import psutil

    return {p.pid for p in [root, *root.children(recursive=True)]
            if p.status() != psutil.STATUS_ZOMBIE}


def run_tree_measured(argv: list[str], cwd: Path | None = None, *,
                      memory: bool = True) -> tuple[float, int, int, int]:
    """Run a command; return wall time, peak total RSS and PSS of its process tree, exit code.

    The memory of the process and all its descendants (workers, fork server,
    resource tracker) is summed, sampled every 5 ms or so (plus the time a
    sample takes, a few ms): RSS counts pages shared by forked workers once
    per process, PSS (Linux) splits them between the processes sharing them,
    so the PSS sum is what the machine actually gives the command. A sample
    reads the processes one after the other; one during which a process of
    the tree started or ended is dropped, since the pages an exiting worker
    shared would then be counted in full in the processes read after it.
    """
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    peak_rss = peak_pss = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_rss, peak_pss
        try:
            root = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        while not done.is_set():
            rss = pss = 0
            try:
                family = _tree(root)
                for pid in family:
                    pid_rss, pid_pss = _rollup(pid)
                    rss, pss = rss + pid_rss, pss + pid_pss
                if _tree(root) != family:
                    continue
            except (psutil.Error, OSError, KeyError):
                if proc.poll() is not None:
                    break
                continue
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample if memory else lambda: None, daemon=True)
    sampler.start()
    code = proc.wait()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    return wall, peak_rss, peak_pss, code


def _clear(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("-k", type=int, default=64)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-runs", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / ".cache")
    args = parser.parse_args(argv)
    if shutil.which("pngquant") is None:  # before the corpus and the kpal rows
        parser.error("pngquant is not on PATH (apt-get install pngquant)")

    from distributed import Client, LocalCluster

    from kpal import batch

    corpus_dir = args.cache / f"batch-{args.images}"
    paths = make_corpus(corpus_dir, args.images)
    pixels = [Image.open(p).size for p in paths]
    megapixels = sum(w * h for w, h in pixels) / 1e6
    largest = max(paths, key=lambda p: np.prod(Image.open(p).size))
    print_machine_info()
    print(f"corpus: {len(paths)} PNG photos in {corpus_dir}, {megapixels:.1f} MP in all, "
          f"{megapixels / len(paths):.3f} MP each on average; largest {largest.name} "
          f"{Image.open(largest).size}; k = {args.k}, {args.jobs} workers\n")

    work = Path(tempfile.mkdtemp(prefix="kpal-bench-batch-"))
    outs = {name: work / name for name in ("cli", "pngquant", "api", "dask", "one")}
    k, jobs = str(args.k), args.jobs
    started = time.perf_counter()
    cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=logging.ERROR)
    client = Client(cluster)
    client.wait_for_workers(jobs)
    cluster_start = time.perf_counter() - started

    def kpal_cli(memory: bool = False) -> tuple[float, int, int]:
        _clear(outs["cli"])
        wall, rss, pss, code = run_tree_measured([*KPAL, "encode", str(corpus_dir), "-o",
                                                  str(outs["cli"]), "-k", k, "-j", str(jobs),
                                                  "-q", "--force"], memory=memory)
        assert code == 0, f"kpal exited with {code}"
        return wall, rss, pss

    def pngquant(memory: bool = False) -> tuple[float, int, int]:
        _clear(outs["pngquant"])
        script = (f"ls *.png | xargs -P {jobs} -I{{}} pngquant {k} --nofs --force "
                  f"--output {outs['pngquant']}/{{}} {{}}")
        wall, rss, pss, code = run_tree_measured(["sh", "-c", script], cwd=corpus_dir,
                                                 memory=memory)
        assert code == 0, f"pngquant exited with {code}"
        return wall, rss, pss

    def api(name: str, **how) -> float:
        _clear(outs[name])
        start = time.perf_counter()
        results = list(batch.encode_many(corpus_dir, outs[name], k=args.k, force=True, **how))
        wall = time.perf_counter() - start
        assert all(r.ok for r in results) and len(results) == len(paths)
        return wall

    times: dict[str, list[float]] = {n: [] for n in ("kpal batch", "pngquant xargs",
                                                     "kpal API", "kpal Dask")}
    peaks: dict[str, list[int]] = {"kpal batch": [], "pngquant xargs": []}
    pss_peaks: dict[str, list[int]] = {"kpal batch": [], "pngquant xargs": []}
    for _ in range(max(1, args.repeats)):
        for name, fn in (("kpal batch", kpal_cli), ("pngquant xargs", pngquant)):
            times[name].append(fn()[0])  # timed without the memory sampler's load
        times["kpal API"].append(api("api", jobs=jobs))
        times["kpal Dask"].append(api("dask", client=client))
    for _ in range(max(1, args.memory_runs)):
        for name, fn in (("kpal batch", kpal_cli), ("pngquant xargs", pngquant)):
            _, rss, pss = fn(memory=True)  # more runs, sampled for memory
            peaks[name].append(rss)
            pss_peaks[name].append(pss)
    identical = all((outs["dask"] / p.with_suffix(".kpal").name).read_bytes()
                    == (outs["api"] / p.with_suffix(".kpal").name).read_bytes()
                    == (outs["cli"] / p.with_suffix(".kpal").name).read_bytes()
                    for p in paths)
    client.close()
    cluster.close()

    outs["one"].mkdir()
    one_wall, one_rss, one_pss, code = run_tree_measured([*KPAL, "encode", str(largest), "-o",
                                                 str(outs["one"] / "x.kpal"), "-k", k, "-q"])
    assert code == 0
    shutil.rmtree(work, ignore_errors=True)

    medians = {name: statistics.median(runs) for name, runs in times.items()}
    reference = medians["pngquant xargs"]
    rows = []
    for name, runs in times.items():
        rows.append({
            "contender": name,
            "seconds": medians[name],
            "images/s": len(paths) / medians[name],
            "× pngquant images/s": reference / medians[name],
            "peak RSS MiB": (statistics.median(peaks[name]) / 2**20) if name in peaks else None,
            "peak PSS MiB": (statistics.median(pss_peaks[name]) / 2**20)
            if name in pss_peaks else None,
            "runs": " ".join(f"{t:.2f}" for t in runs),
        })
    print_table(rows, ["contender", "seconds", "images/s", "× pngquant images/s",
                       "peak RSS MiB", "peak PSS MiB", "runs"],
                f"{len(paths)} photos, k = {args.k}, {jobs} workers (medians of "
                f"{args.repeats})")
    overhead = medians["kpal Dask"] / medians["kpal API"] - 1
    print(f"Dask overhead against the local pool: {overhead:+.1%} "
          f"(cluster start-up, not counted: {cluster_start:.2f} s); Dask outputs "
          f"byte-identical to the local batch: {'yes' if identical else 'NO'}")
    batch_rss = statistics.median(peaks["kpal batch"]) / 2**20
    batch_pss = statistics.median(pss_peaks["kpal batch"]) / 2**20
    print(f"Peak memory of the whole process tree: batch RSS {batch_rss:.0f} MiB, PSS "
          f"{batch_pss:.0f} MiB; one `kpal encode` of the largest image ({largest.name}): "
          f"RSS {one_rss / 2**20:.0f} MiB, PSS {one_pss / 2**20:.0f} MiB, in {one_wall:.2f} s")

if __name__ == "__main__":
    main()
