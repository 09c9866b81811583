"""The one loader of kpal's compiled modules (numba, the ``kpal[fast]`` extra).

Every compiled module (``kpal.coding._entropy_fast``, ``kpal.cluster._kmeans_fast``)
has a numpy twin that writes the same bytes, so the compiled path is only
ever a speed-up. :func:`load` decides whether to take it:

- ``KPAL_PURE_NUMPY=1``: never; ``KPAL_PURE_NUMPY=0``: at any size (tests);
- otherwise only for images of at least :data:`MIN_PIXELS` pixels: below
  that, importing numba (about 1 s in a fresh process) costs more than the
  compiled loops save, so small images never import it;
- numba not installed: never.

A caller that knows early that an image will take compiled kernels (the
command line, from a PNG's header) can start numba on a background thread
with :func:`prefetch`, so that its start-up overlaps the decoding of the
pixels; :func:`load` waits for that thread and then decides as above.

numba keeps compiled machine code in ``__pycache__`` beside the module; when
that folder is not writable (a read-only site-packages) the cache goes to
``$XDG_CACHE_HOME/kpal/numba`` (default ``~/.cache/kpal/numba``), through
``NUMBA_CACHE_DIR``, which must be set before numba is imported. The first
compile takes 10-15 s per machine; on a terminal, a line on stderr says so.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import threading
from pathlib import Path
from types import ModuleType

__all__ = ["MIN_PIXELS", "cache_dir", "load", "load_cached", "prefetch", "skip_blas_probe"]

#: Images below this many pixels take the numpy path (unless KPAL_PURE_NUMPY=0).
MIN_PIXELS = 1 << 20

#: Printed once per process, on a terminal, when the compiled code is not cached yet.
COMPILING = "compiling kpal's fast kernels, once (10-15 s)"

_announced = False
#: Python's thread switch interval while :func:`prefetch`'s thread runs (seconds).
_SWITCH_INTERVAL = 1e-4
#: The thread started by :func:`prefetch`, until :func:`load` has waited for it.
_prefetching: threading.Thread | None = None
_prefetch_lock = threading.Lock()


def user_cache_dir() -> Path:
    """The per-user folder for numba's cache: ``$XDG_CACHE_HOME/kpal/numba``."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "kpal" / "numba"


def cache_dir(module: str) -> Path:
    """Where numba caches the compiled code of ``module`` (a dotted name of a kpal module).

    ``NUMBA_CACHE_DIR`` when set (numba then mirrors the source path below
    it), else the module's own ``__pycache__``.
    """
    spec = importlib.util.find_spec(module)
    source = Path(spec.origin)  # type: ignore[union-attr, arg-type]
    configured = os.environ.get("NUMBA_CACHE_DIR")
    if configured:
        return Path(configured)
    return source.parent / "__pycache__"


def _use_user_cache_if_needed(module: str) -> None:
    if "numba" in sys.modules or os.environ.get("NUMBA_CACHE_DIR"):
        return  # too late to change, or already chosen
    spec = importlib.util.find_spec(module)
    folder = Path(spec.origin).parent  # type: ignore[union-attr, arg-type]
    pycache = folder / "__pycache__"
    if os.access(pycache if pycache.exists() else folder, os.W_OK):
        return
    target = user_cache_dir()
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # numba then caches nothing, which is slow but correct
    os.environ["NUMBA_CACHE_DIR"] = str(target)


def skip_blas_probe() -> None:
    """Spare numba's BLAS probe, which imports scipy (0.3-0.9 s, 13 MiB), in this process.

    numba's first compile or cache load imports ``numba.np.arraymath``, which
    checks for BLAS by importing ``scipy.linalg.cython_blas``. No kpal kernel
    (``kpal.cluster._kmeans_fast``, ``kpal.cluster._remap_fast``,
    ``kpal.coding._entropy_fast``) uses BLAS, so :func:`load` calls this
    before numba's first import. Skipping it (numba 0.68) only means
    that compiled ``np.correlate`` and ``np.convolve`` on floats use a plain
    loop instead of BLAS; compiled ``np.dot`` and ``np.linalg`` still work
    (they import scipy themselves when compiled). Nothing happens when
    scipy or numba's array maths are already imported.
    """
    if "scipy" in sys.modules or "numba.np.arraymath" in sys.modules:
        return
    if importlib.util.find_spec("numba") is None:
        return
    sys.modules["scipy"] = None  # type: ignore[assignment]  # import scipy -> ImportError
    try:
        importlib.import_module("numba.np.arraymath")
    finally:
        if sys.modules.get("scipy", 0) is None:
            del sys.modules["scipy"]


#: numba names a cache file after the source file of the compiled function: these
#: modules compile functions written in another module (so the plain path can run them too).
_SOURCE_OF = {"kpal.coding._context_fast": "kpal.coding._context_kernel"}


def _is_cold(module: str) -> bool:
    """No cached machine code for ``module`` yet (numba's ``<source>.<function>-*.nbi`` files)."""
    stem = _SOURCE_OF.get(module, module).rsplit(".", 1)[-1]
    folder = cache_dir(module)
    pattern = f"{stem}.*.nbi"
    if os.environ.get("NUMBA_CACHE_DIR"):
        return next(folder.rglob(pattern), None) is None if folder.exists() else True
    return next(folder.glob(pattern), None) is None if folder.exists() else True


def load(module: str, n_pixels: int, min_pixels: int = MIN_PIXELS,
         cold_min_pixels: int | None = None) -> ModuleType | None:
    """The compiled module ``module`` for an image of ``n_pixels``, or None for numpy.

    Read at every call, so tests can switch paths with ``KPAL_PURE_NUMPY``;
    both paths write identical bytes.

    Parameters
    ----------
    module : str
        Dotted name, e.g. ``"kpal.cluster._kmeans_fast"``.
    n_pixels : int
        Pixels of the image at hand.
    min_pixels : int, default MIN_PIXELS
        Smallest image worth the compiled path for this module.
    cold_min_pixels : int, optional
        Smallest image worth it while numba is not imported yet in this
        process: starting numba and loading cached kernels costs about 1 s
        on the 2-core reference machine (0.3-0.5 s importing numba, 0.4 s
        for numba's type registries at the first cached kernel, about 20 ms
        per further kernel), which only large images win back.

    Returns
    -------
    module or None
        None when numba is missing, ``KPAL_PURE_NUMPY=1``, or the image is
        smaller than ``min_pixels`` (unless ``KPAL_PURE_NUMPY=0``).
    """
    choice = os.environ.get("KPAL_PURE_NUMPY")
    _wait_for_prefetch()
    if cold_min_pixels is not None and "numba" not in sys.modules:
        min_pixels = max(min_pixels, cold_min_pixels)
    if choice == "1" or (choice != "0" and n_pixels < min_pixels):
        return None
    return _import(module)


def _import(module: str) -> ModuleType | None:
    global _announced
    loaded = sys.modules.get(module)
    if loaded is not None and not getattr(loaded.__spec__, "_initializing", False):
        return loaded
    # Not imported yet, or being imported by another thread (numba takes about
    # a second): import_module then waits for that import to finish.
    if importlib.util.find_spec("numba") is None:
        return None
    _use_user_cache_if_needed(module)
    if not _announced and sys.stderr is not None and sys.stderr.isatty() and _is_cold(module):
        print(COMPILING, file=sys.stderr, flush=True)
        _announced = True
    try:
        skip_blas_probe()  # no kpal kernel uses BLAS: 0.3-0.9 s less start-up
        return importlib.import_module(module)
    except ImportError:  # numba present but broken (e.g. a numpy it does not support)
        return None


def prefetch(*modules: str) -> None:
    """Start importing ``modules`` (and numba) and loading their cached kernels, on a thread.

    For a caller that knows, before the pixels are decoded, that the image
    will take these modules' kernels: numba's start (about 1 s: the import,
    its type registries, then each kernel's machine code read from the
    cache) then runs on a second core while the main thread decodes the
    image (Pillow's decoders release the GIL). Every kernel whose machine
    code is cached is loaded (:func:`load_cached`), whether or not this
    image needs it. The next :func:`load` waits for the thread before it
    looks at ``sys.modules``, so no kernel is used half-loaded or from two
    threads at once; it still decides the path as it would have. Does
    nothing when a prefetch already ran, ``KPAL_PURE_NUMPY=1``, or numba is
    not installed. Any error on the thread is dropped: :func:`load` then
    imports (and reports) as usual. Python's thread switch interval is 0.1 ms
    while the thread runs (see the comment below), then back to what it was,
    unless the program changed it meanwhile.
    """
    global _prefetching
    if (_prefetching is not None or all(module in sys.modules for module in modules)
            or os.environ.get("KPAL_PURE_NUMPY") == "1"
            or importlib.util.find_spec("numba") is None):
        return
    with _prefetch_lock:  # one prefetch per process, whichever thread asks first
        if _prefetching is not None:
            return
        # The decoding thread gets the GIL back after each piece of the image it
        # decodes (a 64 KiB PNG chunk): with Python's 5 ms switch interval it would
        # wait that long each time while this thread runs Python code, and decode
        # at a third of its speed.
        interval = sys.getswitchinterval()
        shortened = min(interval, _SWITCH_INTERVAL)

        def run() -> None:
            try:
                for module in modules:
                    with contextlib.suppress(Exception):
                        loaded = _import(module)
                        if loaded is not None:
                            load_cached(loaded)
            finally:
                # Put back the program's interval, unless it set its own meanwhile.
                if sys.getswitchinterval() == applied:
                    sys.setswitchinterval(interval)

        sys.setswitchinterval(shortened)
        applied = sys.getswitchinterval()  # as Python stores it (whole microseconds)
        _prefetching = threading.Thread(target=run, name="kpal-prefetch", daemon=True)
        _prefetching.start()


def load_cached(module: ModuleType) -> int:
    """Load the machine code numba has cached for every kernel of ``module``; how many.

    numba reads a kernel's cached code at its first call, about 25 ms each
    (17 kernels for a large k-means). Only overloads whose cache entry
    matches the kernel's current source are loaded, so nothing is compiled
    here. This reads numba's cache index through its internals
    (``Dispatcher._cache``); with another numba that changed them, nothing
    is loaded and the kernels load at their first call, as usual.
    """
    from numba.core.dispatcher import Dispatcher

    count = 0
    for kernel in list(vars(module).values()):
        if not isinstance(kernel, Dispatcher) or kernel.py_func.__module__ not in (
                module.__name__, _SOURCE_OF.get(module.__name__)):
            continue
        try:
            cache = kernel._cache  # noqa: SLF001 - numba's cache of this kernel
            codegen = kernel.targetctx.codegen()
            for key in cache._cache_file._load_index():  # noqa: SLF001
                signature = key[0]
                if signature not in kernel.overloads and cache._index_key(  # noqa: SLF001
                        signature, codegen) == key:
                    kernel.compile(signature)
                    count += 1
        except Exception:  # noqa: BLE001 - a speed-up only: any surprise skips it
            continue
    return count


def _wait_for_prefetch() -> None:
    """Join the :func:`prefetch` thread, if one runs (not from that thread itself)."""
    thread = _prefetching
    if thread is not None and thread is not threading.current_thread():
        thread.join()
