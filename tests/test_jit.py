"""The loader of compiled kernels: the "compiling once" notice looks for the right cache files."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np
import pytest

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


# The prefetch runs in a fresh interpreter: this one may have imported numba already.
PREFETCH = r"""
import os, sys, numpy as np
from PIL import Image
from kpal import _jit, codec, options

side = int(sys.argv[3])
rng = np.random.default_rng(0)
pixels = rng.integers(0, 256, (side, side, 4), dtype=np.uint8)  # mostly translucent
Image.fromarray(pixels).convert(sys.argv[1]).save("big.png", compress_level=0)
im = Image.open("big.png")  # header only: the pixels are not decoded yet
codec.prefetch_kernels(im, options.EncodeOptions(**eval(sys.argv[2])))
started = _jit._prefetching is not None
im.load()
_jit._wait_for_prefetch()
assert sys.getswitchinterval() == 0.005, sys.getswitchinterval()  # Python's, restored
print(started, sorted(name for name in sys.modules if name.endswith("_fast")))
"""
ALPHA = "['kpal.cluster._alpha_fast', 'kpal.cluster._kmeans_fast', 'kpal.cluster._remap_fast']"
KMEANS = "['kpal.cluster._kmeans_fast']"


def _prefetched(tmp_path, mode, opts, side=1500, **env):
    import subprocess
    import sys

    env = {**{k: v for k, v in os.environ.items() if k != "KPAL_PURE_NUMPY"}, **env}
    done = subprocess.run([sys.executable, "-c", PREFETCH, mode, opts, str(side)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.split("\n")[-2]


@pytest.mark.parametrize(("mode", "opts", "side", "expected"), [
    ("RGBA", "{'k': 16}", 1500, f"True {ALPHA}"),  # 2.25 MP with alpha: the pixel path
    ("LA", "{}", 1500, f"True {ALPHA}"),
    ("RGBA", "{'k': 16}", 1000, "False []"),  # 1 MP: numpy
    ("RGBA", "{'k': 16, 'background': (255, 255, 255)}", 1500, "False []"),  # flattened
    ("RGBA", "{'k': 16, 'space': 'oklab'}", 1500, "False []"),  # not the pixel path
    ("RGBA", "{'k': 1}", 1500, "False []"),
    ("RGB", "{'k': 64}", 2300, f"True {KMEANS}"),  # 5.3 MP, k > 32: compiled k-means
    ("RGB", "{'k': 16}", 2300, "False []"),  # k <= 32 takes it from 12 MP only
    ("RGB", "{'k': 64, 'quality': None, 'space': 'oklab'}", 2300, "False []"),
    ("RGB", "{'quality': (30, 40)}", 2300, "False []"),  # the search decides its own way
])
def test_a_large_image_loads_the_kernels_it_will_take_while_it_decodes(tmp_path, mode, opts,
                                                                      side, expected):
    pytest.importorskip("numba")
    assert _prefetched(tmp_path, mode, opts, side) == expected


def test_no_prefetch_with_pure_numpy(tmp_path):
    assert _prefetched(tmp_path, "RGBA", "{'k': 16}", KPAL_PURE_NUMPY="1") == "False []"


def test_load_waits_for_the_prefetch_thread(monkeypatch):
    """A module half-imported by the prefetch thread is never handed out."""
    import threading

    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    monkeypatch.setattr(_jit, "_prefetching", thread)
    thread.start()
    waited = []
    loader = threading.Thread(target=lambda: waited.append(
        _jit.load("kpal.cluster._alpha_fast", 0)))
    loader.start()
    loader.join(0.3)
    assert loader.is_alive() and not waited  # still waiting for the prefetch
    release.set()
    loader.join(10)
    assert waited == [None]  # then decides as usual: 0 pixels take numpy


def test_the_command_line_writes_the_same_file_with_and_without_the_prefetch(tmp_path):
    """The prefetch only moves numba's start: the compiled and numpy paths agree."""
    pytest.importorskip("numba")
    import subprocess
    import sys

    from PIL import Image

    y, x = np.mgrid[0:1500, 0:1500]
    rgb = np.random.default_rng(1).integers(0, 256, (1500, 1500, 3), dtype=np.uint8)
    alpha = np.clip(x // 6 + y // 12, 0, 255).astype(np.uint8)  # a soft ramp, 2.25 MP
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "big.png", compress_level=1)
    files = []
    for pure in ("", "1"):
        env = {k: v for k, v in os.environ.items() if k != "KPAL_PURE_NUMPY"}
        if pure:
            env["KPAL_PURE_NUMPY"] = pure
        out = tmp_path / f"out{pure}.kpal"
        done = subprocess.run([sys.executable, "-m", "kpal", "encode", "big.png", "-k", "8",
                               "-o", out.name, "-q"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        files.append(out.read_bytes())
    assert files[0] == files[1]
    assert Image.open(tmp_path / "out.kpal").convert("RGBA").size == (1500, 1500)


def test_encoding_a_path_prefetches_for_a_large_image_with_alpha(tmp_path, monkeypatch):
    from PIL import Image

    import kpal

    calls = []
    monkeypatch.setattr(_jit, "prefetch", lambda *modules: calls.append(modules))
    y, x = np.mgrid[0:1500, 0:1500]
    rgba = np.dstack([np.zeros((1500, 1500, 3), np.uint8), (x // 6).astype(np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "big.png")
    kpal.encode(tmp_path / "big.png", k=4, background=(255, 255, 255))
    assert calls == []  # flattened: the RGB path
    kpal.encode(tmp_path / "big.png", k=4)
    assert calls == [("kpal.cluster._alpha_fast", "kpal.cluster._kmeans_fast")]
    kpal.encode(rgba, k=4)  # an array: no decoding to overlap
    assert len(calls) == 1


WARM = r"""
import numpy as np, kpal
rng = np.random.default_rng(0)
pixels = rng.integers(0, 256, (1100, 1000, 4), dtype=np.uint8)
pixels[..., 3] = rng.integers(1, 255, (1100, 1000))  # 1.1 MP translucent: the pixel path
kpal.encode(np.ascontiguousarray(pixels[..., :3]), k=4)
kpal.encode(pixels, k=4)
"""
LOAD_CACHED = r"""
import sys
from kpal import _jit
fast = _jit._import(sys.argv[1])
before = sum(len(k.overloads) for k in vars(fast).values() if hasattr(k, "overloads"))
loaded = _jit.load_cached(fast)
after = sum(len(k.overloads) for k in vars(fast).values() if hasattr(k, "overloads"))
print(before, loaded, after, _jit.load_cached(fast))
"""


@pytest.mark.parametrize("module", ["kpal.cluster._kmeans_fast", "kpal.cluster._alpha_fast"])
def test_load_cached_reads_every_cached_kernel_once_and_compiles_nothing(module):
    """In a fresh process, after another one ran (and so cached) the kernels."""
    pytest.importorskip("numba")
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "KPAL_PURE_NUMPY"}
    subprocess.run([sys.executable, "-c", WARM], env={**env, "KPAL_PURE_NUMPY": "0"},
                   check=True, timeout=600)
    done = subprocess.run([sys.executable, "-c", LOAD_CACHED, module], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    before, loaded, after, again = map(int, done.stdout.split())
    assert before == 0 and loaded > 0 and loaded == after and again == 0


def test_threads_that_load_a_module_at_once_each_get_the_whole_module(tmp_path, monkeypatch):
    """A module another thread is still importing is waited for, never handed out half-made."""
    pytest.importorskip("numba")
    import sys
    import threading

    (tmp_path / "kpal_slow_kernels.py").write_text(
        "import time\ntime.sleep(0.5)  # numba's import, say\nVALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "kpal_slow_kernels", raising=False)
    barrier = threading.Barrier(8)
    found, errors = [], []

    def first_use():
        barrier.wait()
        try:
            found.append(_jit._import("kpal_slow_kernels").VALUE)
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(repr(e))

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (found, errors) == ([42] * 8, [])


SWITCH = r"""
import sys, numpy as np
from PIL import Image
from kpal import _jit, codec, options

pixels = np.random.default_rng(0).integers(0, 256, (1500, 1500, 4), dtype=np.uint8)
Image.fromarray(pixels).save("big.png", compress_level=0)
im = Image.open("big.png")
codec.prefetch_kernels(im, options.EncodeOptions(k=16))
shortened = sys.getswitchinterval()
sys.setswitchinterval(0.002)  # the program's own choice, while the kernels load
_jit._wait_for_prefetch()
print(shortened < 0.001, sys.getswitchinterval())
"""


def test_the_programs_own_switch_interval_is_left_alone(tmp_path):
    pytest.importorskip("numba")
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "KPAL_PURE_NUMPY"}
    done = subprocess.run([sys.executable, "-c", SWITCH], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "True 0.002"
