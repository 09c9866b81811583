"""Exceptions raised by kpal.

Every error about bad *data* (a corrupt or unsupported ``.kpal`` file, an image
kpal cannot encode, an option out of range) is a :class:`KpalError`, which is a
``ValueError`` so code that already catches ``ValueError`` keeps working.
Warnings kpal issues (fewer colours than k, a profile it could not apply, a
palette entry repeated, ...) are :class:`KpalWarning`, a ``UserWarning``, so
``warnings.filterwarnings("ignore", category=KpalWarning)`` silences kpal's
and only kpal's. I/O problems stay ``OSError``; Pillow's own ``DecompressionBombError`` passes
through unchanged. A file shorter than its header says is both: a
:class:`TruncatedError` is a ``FormatError`` and an ``OSError``, as Pillow
reports a short image file.
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
import warnings
from collections.abc import Iterator

__all__ = ["KpalError", "OptionError", "FormatError", "ChecksumError", "LimitError",
           "TruncatedError", "KpalWarning", "warn", "silenced", "recording"]


class KpalError(ValueError):
    """Base class for every data error kpal raises."""


class OptionError(KpalError):
    """An encode option is unknown, of the wrong type or out of range.

    Raised before any input is read or any work is done; the message names the
    option, the value given and what is accepted.
    """


class FormatError(KpalError):
    """The bytes are not a valid ``.kpal`` file: bad magic, field value or length."""


class ChecksumError(FormatError):
    """The CRC-32 stored in the file does not match its contents."""


class LimitError(FormatError):
    """A header field is outside the limits the specification allows."""


class TruncatedError(FormatError, OSError):
    """The file ends before its header says it does: in the header, palette, metadata or payload.

    Also an ``OSError``, which is how Pillow's readers report a short file:
    ``PIL.ImageFile.Parser`` (fed a file piece by piece, as web frameworks do
    to read an upload's size) then waits for more data instead of failing.
    """


TEXT_MODE = "the file object is open in text mode; open it with 'rb'"


def refuse_text_mode(data: object, mode: str = "rb") -> None:
    """Raise ``TypeError`` if *data* (a file object or what it read) is text.

    Called on the file object before reading (``io.TextIOBase``) and on what a
    duck-typed reader returned (a ``str``), so every reader of bytes says the
    same; a writer passes ``mode="wb"``.
    """
    if isinstance(data, (io.TextIOBase, str)):
        raise TypeError(TEXT_MODE.replace("'rb'", repr(mode)))


class KpalWarning(UserWarning):
    """Base class for every warning kpal issues: the input was accepted, with a caveat.

    For example: the image has no more colours than k (stored losslessly), an
    ICC profile could not be applied, a palette file repeats an entry.
    """


#: Per thread: the message prefixes :func:`silenced` holds back (``""``: every one).
_silence = threading.local()


def warn(message: str, stacklevel: int | None = None) -> None:
    """Issue a :class:`KpalWarning`, unless :func:`silenced` holds it back in this thread.

    ``stacklevel`` counts from the caller, as for ``warnings.warn``; None
    points at the first caller outside kpal (and Pillow, whose ``save`` and
    ``open`` call kpal's plugin), however deep the call.
    """
    if any(message.startswith(prefix) for prefix in getattr(_silence, "prefixes", ())):
        return
    messages = getattr(_recorded, "messages", None)
    if messages is not None:  # recording() in this thread: every one, whatever the filters
        messages.append(message)
        return
    if stacklevel is None:
        frame, stacklevel = sys._getframe(1), 1  # noqa: SLF001 - the callers' frames
        while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] \
                in ("kpal", "PIL"):  # Pillow's too: im.save("x.kpal") is the user's line
            frame, stacklevel = frame.f_back, stacklevel + 1
    warnings.warn(message, KpalWarning, stacklevel=stacklevel + 1)


@contextlib.contextmanager
def silenced(*prefixes: str) -> Iterator[None]:
    """Hold back kpal's warnings that start with one of ``prefixes`` (all, without any).

    For kpal's own use, where a step's warning is news to nobody (the lossless
    fit of a palette image, a budgeted EM fit). Unlike ``warnings.catch_warnings``,
    which swaps the process's filters, it acts in this thread only, so
    concurrent encodes neither lose each other's warnings nor leave a filter
    behind.
    """
    previous = getattr(_silence, "prefixes", ())
    _silence.prefixes = previous + (prefixes or ("",))
    try:
        yield
    finally:
        _silence.prefixes = previous


#: Per thread: the list :func:`recording` collects into, or None.
_recorded = threading.local()
_hook_lock = threading.Lock()
#: Recordings in progress, all threads: the hook is in place while there are any.
_active = 0


def _show(message, category, filename, lineno, file=None, line=None):
    """``warnings.showwarning`` while :func:`recording` is used: to the recording
    thread's list, else to the function it replaced."""
    messages = getattr(_recorded, "messages", None)
    if messages is None:
        return _show.shown(message, category, filename, lineno, file, line)
    messages.append(str(message))
    return None


@contextlib.contextmanager
def recording() -> Iterator[list[str]]:
    """Collect, in order, the warnings this thread issues inside the block, instead of showing them.

    kpal's own warnings are all collected, whatever the warning filters say;
    others (Pillow's, numpy's) as far as the filters let them through (Python's
    default shows each once per place in the code). Unlike
    ``warnings.catch_warnings(record=True)``, which swaps the whole process's
    filters and ``showwarning`` and is undone out of order when two threads
    use it at once, it acts in this thread only: on a Dask worker running
    several files at once, each file gets its own warnings and nothing is
    left behind. While any thread records, ``warnings.showwarning`` is
    wrapped (threads that are not recording see no difference); after the
    last recording the function it wrapped is put back, unless someone
    replaced the wrapper meanwhile.
    """
    global _active
    with _hook_lock:
        if warnings.showwarning is not _show:
            _show.shown = warnings.showwarning  # type: ignore[attr-defined]
            warnings.showwarning = _show
        _active += 1
    previous = getattr(_recorded, "messages", None)
    messages: list[str] = []
    _recorded.messages = messages
    try:
        yield messages
    finally:
        _recorded.messages = previous
        with _hook_lock:
            _active -= 1
            if not _active and warnings.showwarning is _show:
                warnings.showwarning = _show.shown  # type: ignore[attr-defined]
