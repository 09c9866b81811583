"""The loader of compiled kernels: the "compiling once" notice looks for the right cache
files, and a preload on a thread is waited for and changes no output."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kpal import _jit

COMPILED = ["kpal.coding._context_fast", "kpal.coding._entropy_fast",
            "kpal.cluster._kmeans_fast", "kpal.cluster._remap_fast", "kpal.cluster._alpha_fast"]


@pytest.mark.parametrize("module", COMPILED)
def test_cache_files_are_looked_for_under_the_kernels_source_file(module):
    numba = pytest.importorskip("numba")
    loaded = importlib.import_module(module)
    source = _jit._SOURCE_OF.get(module, module)
    kernels = [f for f in vars(loaded).values()  # its own kernels, not imported ones
               if isinstance(f, numba.core.dispatcher.Dispatcher)
               and f.py_func.__module__ in (module, source)]
    assert kernels
    # numba names a cache file after the source file of the compiled function.
    sources = {Path(f.py_func.__code__.co_filename).stem for f in kernels}
    assert sources == {source.rsplit(".", 1)[-1]}


def test_a_module_without_cache_files_is_cold(tmp_path, monkeypatch):
    monkeypatch.setattr(_jit, "cache_dir", lambda module: tmp_path)
    assert _jit._is_cold("kpal.coding._context_fast")
    (tmp_path / "_context_kernel.code-35.py311.nbi").write_bytes(b"")
    assert not _jit._is_cold("kpal.coding._context_fast")
    assert _jit._is_cold("kpal.coding._entropy_fast")


def test_load_waits_for_the_preloading_thread(monkeypatch):
    done = threading.Event()

    def slow_import():
        time.sleep(0.2)
        done.set()

    thread = threading.Thread(target=slow_import)
    monkeypatch.setitem(_jit._preloading, "kpal.not_a_module", thread)
    thread.start()
    # Too small for the compiled path, but the half-imported module must not be seen first.
    assert _jit.load("kpal.not_a_module", 1, min_pixels=10) is None
    assert done.is_set() and "kpal.not_a_module" not in _jit._preloading


_PRELOAD_RUN = """
import sys
from kpal import _jit
import kpal.cli as cli
started = []
original = _jit.preload
def spy(*args, **kwargs):
    started.append(original(*args, **kwargs))
    return started[-1]
_jit.preload = spy
if sys.argv[3] == "off":
    cli._preload_kernels = lambda *args: None
try:
    cli.cli(["encode", sys.argv[1], "-k", "8", "-o", sys.argv[2], "-q"])
except SystemExit as e:
    assert e.code == 0, e.code
print(bool(started and started[0] is not None), "numba" in sys.modules)
"""


@pytest.mark.parametrize("pure", ["0", "1"])
def test_encode_preloads_the_kernels_while_decoding_and_writes_the_same_bytes(tmp_path, pure):
    pytest.importorskip("numba")
    rng = np.random.default_rng(3)
    src = tmp_path / "in.png"
    Image.fromarray(rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)).save(src)
    env = {**os.environ, "KPAL_PURE_NUMPY": pure}
    outputs = []
    for mode in ("on", "off"):
        out = tmp_path / f"{mode}.kpal"
        run = subprocess.run([sys.executable, "-c", _PRELOAD_RUN, str(src), str(out), mode],
                             env=env, capture_output=True, text=True, check=True)
        outputs.append(out.read_bytes())
        started, numba_loaded = run.stdout.split()
        compiled = pure == "0"
        assert started == str(compiled and mode == "on")
        assert numba_loaded == str(compiled)
    assert outputs[0] == outputs[1]
