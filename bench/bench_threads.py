"""GaussianMixture fit time on a busy machine: BLAS limited to one thread or not.

``GaussianMixture.fit`` runs with BLAS limited to one thread. This benchmark
shows why: it fits a 2 MP photo (scikit-image's astronaut, upscaled with
Lanczos) while ``--load`` busy-loop processes keep the cores occupied, the way
a shared machine is, and times in a fresh process each:

``limited``
    ``fit`` as shipped (one BLAS thread inside the fit).
``default``
    the same EM with BLAS at whatever thread count the environment gives
    (``GaussianMixture.fit.__wrapped__``: the fit without the limit).

each under ``OPENBLAS_NUM_THREADS`` unset and ``=1``. The table gives the median
wall time of ``--repeats`` runs taken in turns, and a digest of the fitted
means, covariances and labels: the four runs must agree byte for byte for the
limited fit.

Run::

    python bench/bench_threads.py               # k 16, load one per core, 3 repeats
    python bench/bench_threads.py --load 0      # idle machine
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(ROOT))

from bench.common import print_table  # noqa: E402

#: One fit in a child process; prints {"seconds": ..., "digest": ...}.
CHILD = textwrap.dedent(
    """
    import hashlib, json, sys, time, warnings
    import numpy as np
    import skimage.data
    from PIL import Image
    from kpal.cluster.gmm import GaussianMixture

    variant, k, scale = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    im = Image.fromarray(skimage.data.astronaut())
    im = im.resize((im.width * scale, im.height * scale), Image.Resampling.LANCZOS)
    pixels = np.asarray(im).reshape(-1, 3)
    gm = GaussianMixture(k, seed=0)
    fit = gm.fit if variant == "limited" else GaussianMixture.fit.__wrapped__.__get__(gm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        start = time.perf_counter()
        fit(pixels)
        seconds = time.perf_counter() - start
    labels = gm.predict(pixels)
    digest = hashlib.sha256(
        gm.means_.tobytes() + gm.covariances_.tobytes() + labels.tobytes()
    ).hexdigest()[:12]
    print(json.dumps({"seconds": seconds, "digest": digest, "n_iter": gm.n_iter_}))
    """
)


def run_child(variant: str, threads: str | None, k: int, scale: int) -> dict:
    env = dict(os.environ)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(name, None)
    if threads is not None:
        env["OPENBLAS_NUM_THREADS"] = threads
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, variant, str(k), str(scale)],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out.splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", type=int, default=16, help="mixture components")
    parser.add_argument("--scale", type=int, default=3, help="upscale 512x512 by this")
    parser.add_argument("--load", type=int, default=os.cpu_count() or 1,
                        help="busy-loop processes in the background (default: one per core)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    configs = [(variant, threads) for variant in ("limited", "default")
               for threads in (None, "1")]
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(args.load)]
    try:
        runs: dict[tuple[str, str | None], list[dict]] = {c: [] for c in configs}
        for _ in range(args.repeats):
            for variant, threads in configs:  # in turns, so drifting load hits all alike
                result = run_child(variant, threads, args.k, args.scale)
                runs[variant, threads].append(result)
                print(f"{variant:8} OPENBLAS_NUM_THREADS={threads or 'unset':5} "
                      f"{result['seconds']:7.2f} s  {result['digest']}", flush=True)
    finally:
        for process in busy:
            process.kill()
            process.wait()
    reference = statistics.median(r["seconds"] for r in runs["limited", "1"])
    rows = []
    for (variant, threads), results in runs.items():
        seconds = statistics.median(r["seconds"] for r in results)
        rows.append({
            "fit": variant,
            "OPENBLAS_NUM_THREADS": threads or "unset",
            "median s": seconds,
            "runs s": " ".join(f"{r['seconds']:.1f}" for r in results),
            "vs limited, =1": seconds / reference,
            "digests": " ".join(sorted({r["digest"] for r in results})),
        })
    size = 512 * args.scale
    print_table(rows, list(rows[0]),
                f"GaussianMixture(k={args.k}).fit, astronaut {size}x{size}, "
                f"{args.load} busy processes, {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
