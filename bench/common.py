"""Shared helpers for the side-by-side benchmarks in bench/.

Timing, whole-process memory of a child process, table printing, PSNR and a
description of the machine. Nothing here is imported by the kpal package.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

try:  # the project's own metric, so the benchmark and the library agree
    from kpal.metrics import psnr
except ImportError:  # kpal.metrics not written yet, or kpal not installed

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        """Peak signal-to-noise ratio in dB over all channels (inf when equal).

        Parameters
        ----------
        a, b : ndarray of uint8, same shape
            Images to compare.

        Returns
        -------
        float
            ``10 * log10(255**2 / MSE)``.
        """
        if a.shape != b.shape:
            msg = f"shapes differ: {a.shape} vs {b.shape}"
            raise ValueError(msg)
        err = mse(a, b)
        if err == 0.0:
            return float("inf")
        return float(10.0 * np.log10(255.0**2 / err))


def compile_kpal() -> None:
    """Compile kpal's modules to bytecode, as ``pip install`` does, before anything is timed.

    From a checkout installed in editable mode with ``PYTHONDONTWRITEBYTECODE``
    set, Python would otherwise compile every kpal module from source at each
    command's start (about 0.1 s), which an installed kpal never pays.
    Only files whose bytecode is missing or stale are compiled.
    """
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("kpal")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            compileall.compile_dir(folder, quiet=1)


compile_kpal()


def mse(a: np.ndarray, b: np.ndarray, chunk_rows: int = 1 << 20) -> float:
    """Mean squared error over all channels, computed in bounded chunks.

    Parameters
    ----------
    a, b : ndarray of uint8, same shape
        Images to compare.
    chunk_rows : int
        Elements processed per step; keeps float64 temporaries small on
        100 MP images.

    Returns
    -------
    float
        Mean of the squared differences.
    """
    flat_a = a.reshape(-1)
    flat_b = b.reshape(-1)
    total = 0.0
    for start in range(0, flat_a.size, chunk_rows):
        diff = flat_a[start : start + chunk_rows].astype(np.int32)
        diff -= flat_b[start : start + chunk_rows]
        total += float(np.dot(diff, diff))
    return total / max(flat_a.size, 1)


def median_time(fn: Callable[[], Any], repeats: int = 3,
                budget: float | None = None) -> tuple[float, list[float]]:
    """Run ``fn`` ``repeats`` times and return the median wall time.

    Parameters
    ----------
    fn : callable
        Zero-argument callable to time.
    repeats : int
        Number of runs (at least 1).
    budget : float, optional
        Stop repeating once the runs so far add up to more than this many
        seconds (a peer taking minutes per run is then timed fewer times;
        callers report how many runs they got).

    Returns
    -------
    median : float
        Median of the runs in seconds (``time.perf_counter``).
    runs : list of float
        Every run, in order.
    """
    runs = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
        if budget is not None and sum(runs) > budget:
            break
    return statistics.median(runs), runs


def interleaved_median_times(
    fns: Mapping[str, Callable[[], Any]], repeats: int = 3
) -> dict[str, tuple[float, list[float]]]:
    """Time several callables in turns (A B C, A B C, ...) and return each median.

    Taking turns spreads a burst of load from other processes over all the
    contenders instead of landing on one, so their ratio is steadier.

    Parameters
    ----------
    fns : mapping of str to callable
        Zero-argument callables, by name.
    repeats : int
        Rounds (at least 1).

    Returns
    -------
    dict
        Name to ``(median seconds, every run)``.
    """
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(max(1, repeats)):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times), times) for name, times in runs.items()}


# A small launcher run as a fresh interpreter: it forks, execs the command in the child
# and waits for it with os.wait4. The detour matters because Linux carries ru_maxrss
# across execve, and subprocess spawns with vfork: a command started straight from this
# (large) process would report at least this process's own peak RSS. Forked from the
# launcher instead, the child starts from the launcher's ~7 MiB, the floor of every
# figure. The launcher times fork-to-reap itself so interpreter start-up is not counted.
_LAUNCHER = """\
import os, sys, time
fd = int(sys.argv[1])
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
os.write(fd, b"%r %d %d" % (wall, usage.ru_maxrss, os.waitstatus_to_exitcode(status)))
"""


def run_cmd_measured(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    capture: bool = True,
) -> tuple[float, int, int]:
    """Run a command and measure its wall time and peak resident memory.

    The command is forked from a small launcher interpreter which waits for it
    with ``os.wait4`` on its pid, so the ``ru_maxrss`` returned is the peak RSS
    of that one process (plus any children it waited for), not of this Python
    process. Starting the command directly from here would inherit this
    process's peak, because Linux keeps ``ru_maxrss`` across ``execve``; the
    launcher's own ~7 MiB is the floor of the figure.

    Parameters
    ----------
    argv : sequence of str
        Command and arguments.
    env : mapping, optional
        Environment for the command; default inherits ours.
    capture : bool
        Send the command's stdout/stderr to /dev/null when True (a chatty
        command could otherwise block on a full pipe); inherit ours when False.

    Returns
    -------
    wall_seconds : float
        Wall time from fork to reap, measured by the launcher.
    peak_rss_bytes : int
        ``ru_maxrss`` of the command converted to bytes. On Linux ``ru_maxrss``
        is in KiB (on macOS it is in bytes).
    returncode : int
        Exit status (negative signal number when killed by a signal; 127 when
        the command could not be executed).
    """
    out = subprocess.DEVNULL if capture else None
    read_fd, write_fd = os.pipe()
    try:
        launcher = [sys.executable, "-S", "-I", "-c", _LAUNCHER, str(write_fd), *argv]
        proc = subprocess.Popen(launcher, env=dict(env) if env is not None else None,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                pass_fds=(write_fd,))
        os.close(write_fd)
        write_fd = -1
        report = b""
        while chunk := os.read(read_fd, 4096):
            report += chunk
        launcher_code = proc.wait()
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    if not report:
        msg = f"launcher failed (exit {launcher_code}) for {' '.join(argv)}"
        raise RuntimeError(msg)
    wall_text, rss_text, code_text = report.split()
    scale = 1 if sys.platform == "darwin" else 1024
    return float(wall_text), int(rss_text) * scale, int(code_text)


def _format_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        if abs(value) >= 100:
            return f"{value:.1f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    return str(value)


def format_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    title: str | None = None,
) -> str:
    """Render rows as an aligned Markdown table (readable as plain text too).

    Parameters
    ----------
    rows : sequence of mapping
        One mapping per row; missing keys print as empty cells.
    columns : sequence of str
        Column keys, in order; used as the header.
    title : str, optional
        Printed as a Markdown heading line above the table.

    Returns
    -------
    str
        The table, lines joined by newlines, no trailing newline.
    """
    cells = [[_format_cell(row.get(col)) for col in columns] for row in rows]
    widths = [len(col) for col in columns]
    for line in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, line, strict=True)]
    numeric = [
        all(_looks_numeric(line[i]) for line in cells if line[i]) for i in range(len(columns))
    ]

    def render(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "| " + " | ".join(parts) + " |"

    rule = "|" + "|".join(
        ("-" * (w + 1) + ":") if num else ("-" * (w + 2))
        for w, num in zip(widths, numeric, strict=True)
    ) + "|"
    lines = []
    if title:
        lines += [f"### {title}", ""]
    lines += [render(list(columns)), rule]
    lines += [render(line) for line in cells]
    return "\n".join(lines)


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text in ("inf", "-inf", "n/a")
    return True


def print_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    title: str | None = None,
) -> None:
    """Print :func:`format_table` output followed by a blank line."""
    print(format_table(rows, columns, title))
    print(flush=True)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, str]:
    """Describe the machine and library versions a benchmark ran on.

    Returns
    -------
    dict of str to str
        Keys ``date`` (UTC), ``cpu``, ``cores``, ``python``, ``numpy``,
        ``pillow``, ``platform``.
    """
    import PIL

    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "platform": platform.platform(),
    }


def print_machine_info() -> None:
    """Print :func:`machine_info` as one Markdown line."""
    info = machine_info()
    print("Machine: " + ", ".join(f"{key} {value}" for key, value in info.items()))
    print(flush=True)
