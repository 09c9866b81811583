"""Worker processes of local batches that never run the caller's main script again.

A spawned or fork-server child normally imports the parent's ``__main__``
again (as ``__mp_main__``) before its task, so that functions defined there
can be unpickled. kpal's workers run only kpal's own functions, and that
re-import is what breaks a script without an ``if __name__ == "__main__":``
guard (its body runs again in every worker, and its batch call fails there)
or a script read from stdin (``python - < job.py``, whose path cannot be run
again). These process classes start while ``sys.modules["__main__"]`` is an
empty module, so the child is told of no main module to import.

Imported only when a batch starts worker processes (``multiprocessing`` costs
about 40 ms to import).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from multiprocessing import context as mp_context

__all__ = ["process_class"]


@contextlib.contextmanager
def _main_hidden() -> Iterator[None]:
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = type(sys)("__main__")
    try:
        yield
    finally:
        if main is None:
            del sys.modules["__main__"]
        else:
            sys.modules["__main__"] = main


class _StartWithoutMain:
    """Starts the process while the parent's ``__main__`` is hidden (see the module)."""

    def start(self) -> None:
        with _main_hidden():
            super().start()  # type: ignore[misc]


class SpawnWorker(_StartWithoutMain, mp_context.SpawnProcess):
    """A spawned process that does not import the parent's main script."""


if hasattr(mp_context, "ForkServerProcess"):

    class ForkServerWorker(_StartWithoutMain, mp_context.ForkServerProcess):
        """A fork-server process that does not import the parent's main script."""


def process_class(start_method: str) -> type:
    """The process class for ``start_method`` ("forkserver" or "spawn")."""
    return ForkServerWorker if start_method == "forkserver" else SpawnWorker
