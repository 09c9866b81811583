"""The loader of compiled kernels: the "compiling once" notice looks for the right cache files."""

from __future__ import annotations

import importlib
from pathlib import Path

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
