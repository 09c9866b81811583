"""Imported by the fork server of a batch that encodes: the compiled kernels, once for all workers.

A batch's workers are forked from a fork server (see ``kpal.batch``).
Loading numba and the compiled k-means kernels there, before any worker
exists, lets every worker start with them already loaded and share those
pages with the server and with each other (copy-on-write) instead of each
holding its own copy: about 130 MiB per worker, mostly numba's LLVM and type
registries.

Forking is only safe after numba's thread pool has started with the
``workqueue`` threading layer: GNU OpenMP aborts a process forked after it
started. The server therefore chooses ``workqueue`` unless the user set
another layer, in which case nothing is loaded here and each worker loads
the kernels itself. Workers run one thread each, so the layer makes no
difference to their speed or output.

The server starts with SIGINT blocked (``kpal.batch`` starts it so): a
Ctrl-C while it starts Python and runs these imports, before CPython's
fork server ignores SIGINT, would otherwise end it with a traceback.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing
import os
import sys

LAYER = "workqueue"


def preload() -> bool:
    """Load the compiled kernels in this process (the fork server); True when loaded."""
    if os.environ.get("KPAL_PURE_NUMPY") == "1":
        return False
    os.environ.setdefault("NUMBA_THREADING_LAYER", LAYER)
    try:
        import numba
    except ImportError:
        return False
    if numba.config.THREADING_LAYER != LAYER:
        return False
    # The fork server starts no processes: with "spawn" as its start method,
    # numba guards its thread pool's start with no named semaphore, so none
    # is left behind by a worker (or server) stopped by a signal.
    multiprocessing.set_start_method("spawn", force=True)
    from kpal import batch

    batch._load_compiled()  # noqa: SLF001 - the batch's own loader, shared with its workers
    settle()
    return batch._compiled_loaded  # noqa: SLF001


def settle() -> None:
    """Keep the pages workers inherit shared: freeze the objects, give freed memory back.

    A worker's garbage collector would otherwise walk (and so write to, and
    copy) every object inherited from the server; the allocator's free
    memory would be inherited as resident pages. The LLVM library's code
    that only loading the kernels ran (about 55 MiB of its pages) is handed
    back too.
    """
    gc.collect()
    gc.freeze()
    with contextlib.suppress(OSError, AttributeError):  # glibc's allocator only
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
        release_library_pages(libc, "llvmlite")


#: ``madvise`` advice that reclaims pages now (Linux 5.4+; older kernels refuse it).
MADV_PAGEOUT = 21


def release_library_pages(libc: ctypes.CDLL, name: str) -> int:
    """Drop the resident pages of the shared libraries whose path holds ``name``.

    Only the file-backed, read-only mappings (code and constants): they are
    read back from the page cache if this process or a worker forked from it
    runs that code again, so nothing changes but the memory held. Returns the
    number of bytes advised (0 where the kernel refuses the advice).
    """
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    advised = 0
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) < 6 or name not in fields[5] or "w" in fields[1]:
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if libc.madvise(start, end - start, MADV_PAGEOUT) == 0:
                advised += end - start
    return advised


def in_fork_server() -> bool:
    """True while ``multiprocessing.forkserver.main`` imports its preload modules.

    Only the fork server may preload: anywhere else (a test collecting
    doctests, a user importing every module) the threading layer and start
    method it sets would change the importing process, and numba's
    ``workqueue`` layer aborts when two threads of one process run a
    parallel kernel at once.
    """
    frame = sys._getframe(1)  # noqa: SLF001 - the importer's frames
    while frame is not None:
        if (frame.f_code.co_name == "main"
                and frame.f_globals.get("__name__") == "multiprocessing.forkserver"):
            return True
        frame = frame.f_back
    return False


# Only a speed-up and a saving: should it fail, each worker loads the kernels itself.
if in_fork_server():
    with contextlib.suppress(Exception):
        preload()
