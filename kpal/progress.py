"""What a batch shows while it runs and when it ends: a progress line and a summary.

The progress line is for a terminal: one line rewritten in place (a carriage
return, then spaces over what is left of the previous line; no escape
sequences, so the cursor is never hidden), cut to the terminal's width so it
never wraps, the bar taking whatever room the figures leave. Where the
terminal cannot rewrite a line (``TERM=dumb``, as in an editor's shell
buffer, or no ``TERM`` at all) a plain line is printed now and then instead.

:func:`summary_lines` words a batch's totals (:class:`kpal.batch.Summary`)
for people: sizes compared with the inputs as a factor or a percentage,
whichever reads naturally, and lossless files counted apart from the mean PSNR.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable
from typing import IO, Any

__all__ = ["Progress", "columns", "rewrites_lines", "size_change", "psnr_text",
           "summary_lines"]

#: Seconds between two redraws of the progress line (the last one is always drawn).
REDRAW_EVERY = 0.1
#: Seconds between two plain progress lines where a line cannot be rewritten.
PLAIN_EVERY = 10.0
#: Fewest cells worth a bar (with its brackets).
MIN_BAR = 7


def columns(stream: IO[str] | None = None) -> int:
    """The width to fit: ``COLUMNS``, else ``stream``'s terminal, else stdout's, else 80."""
    size = shutil.get_terminal_size((0, 0))  # COLUMNS, else stdout's terminal
    if os.environ.get("COLUMNS", "").isdigit() and size.columns > 0:
        return size.columns
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (AttributeError, OSError, ValueError):
        return size.columns or 80


def rewrites_lines(environ: dict | None = None) -> bool:
    """Whether the terminal can rewrite a line in place: not ``TERM=dumb`` (nor no ``TERM``)."""
    term = (os.environ if environ is None else environ).get("TERM", "")
    return term not in ("", "dumb")


def _can_encode(stream: IO[str], text: str) -> bool:
    try:
        text.encode(getattr(stream, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _short(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    return f"{n / 1e6:,.1f} MB" if n >= 1e6 else f"{n / 1e3:,.1f} kB"


def _clock_text(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02}:{rest % 60:02}" if hours else f"{rest // 60}:{rest % 60:02}"


class Progress:
    """The progress line of a batch on a terminal; a context manager.

    Parameters
    ----------
    total : int
        Files in the batch.
    stream : text stream
        Where to draw (the terminal's stderr).
    width : int, optional
        Columns to fit in (default: the terminal's, read again at each redraw).
    rewrite : bool, optional
        Rewrite one line in place (default: unless ``TERM`` is dumb or unset);
        otherwise print a plain line every :data:`PLAIN_EVERY` seconds.
    clock : callable, default time.monotonic

    Examples
    --------
    >>> import io
    >>> out, times = io.StringIO(), iter([0.0, 2.0])
    >>> with Progress(4, out, width=60, rewrite=True, clock=lambda: next(times)) as bar:
    ...     bar.add(bytes_in=3_000_000, bytes_out=500_000)
    >>> out.getvalue().split("\\r")[1]
    'kpal 1/4 [#    ] 3.0 MB → 500.0 kB, 0.5 images/s, 0:06 left'
    """

    def __init__(self, total: int, stream: IO[str], *, width: int | None = None,
                 rewrite: bool | None = None, clock: Callable[[], float] = time.monotonic):
        self.total, self.stream, self.width, self.clock = total, stream, width, clock
        self.rewrite = rewrites_lines() if rewrite is None else rewrite
        self.done = self.bytes_in = self.bytes_out = 0
        self.started = clock()
        self._drawn = 0  # length of the line on screen
        self._last = -math.inf
        self._arrow = " → " if _can_encode(stream, "→") else " -> "

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def add(self, bytes_in: int = 0, bytes_out: int = 0) -> None:
        """Count one more file done, with its sizes, and redraw when it is time."""
        self.done += 1
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out
        now = self.clock()
        every = REDRAW_EVERY if self.rewrite else PLAIN_EVERY
        if now - self._last >= every or (self.rewrite and self.done == self.total):
            self._last = now
            self._draw(now)

    def say(self, line: str) -> None:
        """Print ``line`` (an error, a warning) on its own line, the progress line after it."""
        self._erase()
        self.stream.write(line + "\n")
        if self.rewrite and self.done:
            self._draw(self.clock())
        else:
            self.stream.flush()

    def close(self) -> None:
        """Take the progress line off the screen (the summary follows)."""
        self._erase()
        self.stream.flush()

    def line(self, now: float, width: int) -> str:
        """The progress text at time ``now``, at most ``width - 1`` characters.

        What does not fit goes, the images per second first, then the sizes,
        then the time left; the bar takes the room left over (up to 30 cells).
        """
        room = max(width - 1, 1)  # the last column would wrap on some terminals
        rate = self.done / max(now - self.started, 1e-9)
        figures = {"sizes": f"{_short(self.bytes_in)}{self._arrow}{_short(self.bytes_out)}",
                   "rate": f"{rate:.1f} images/s"}
        if 0 < self.done < self.total:
            figures["left"] = f"{_clock_text((self.total - self.done) / rate)} left"
        count = f"kpal {self.done}/{self.total}"

        def compose(bar: str) -> str:
            return " ".join(filter(None, [count, bar, ", ".join(figures.values())]))

        for name in ("rate", "sizes", "left"):
            if len(compose("")) <= room:
                break
            figures.pop(name, None)
        cells = room - len(compose("")) - 1
        if cells < MIN_BAR:
            return compose("")[:room]
        inner = min(cells, 32) - 2
        filled = inner * self.done // max(self.total, 1)
        return compose("[" + "#" * filled + " " * (inner - filled) + "]")

    def _draw(self, now: float) -> None:
        width = self.width or columns(self.stream)
        text = self.line(now, width)
        if self.rewrite:
            self.stream.write("\r" + text + " " * max(self._drawn - len(text), 0))
            self._drawn = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _erase(self) -> None:
        if self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self._drawn = 0


# ------------------------------------------------------------------ summary
def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def size_change(bytes_in: int, bytes_out: int) -> str:
    """The outputs' size against the inputs', as people say it.

    Examples
    --------
    >>> size_change(1000, 250), size_change(1000, 850), size_change(1000, 998)
    ('4.00× smaller than the inputs', '15 % smaller than the inputs', 'the size of the inputs')
    >>> size_change(1000, 1300), size_change(1000, 2500)
    ('30 % larger than the inputs', '2.50× larger than the inputs')
    """
    if bytes_in <= 0 or bytes_out <= 0:
        return ""
    change = bytes_out / bytes_in
    if round(abs(1 - change) * 100) == 0:
        return "the size of the inputs"
    if change <= 0.5:
        return f"{1 / change:.2f}× smaller than the inputs"
    if change < 1:
        return f"{(1 - change) * 100:.0f} % smaller than the inputs"
    if change < 2:
        return f"{(change - 1) * 100:.0f} % larger than the inputs"
    return f"{change:.2f}× larger than the inputs"


def psnr_text(mean_psnr: float | None, lossless: int, lossy: int) -> str | None:
    """The PSNR row: the mean over the lossy files, the lossless ones counted apart.

    Examples
    --------
    >>> psnr_text(31.234, 0, 4), psnr_text(31.234, 2, 3), psnr_text(None, 2, 0)
    ('31.23 dB', '31.23 dB over 3 files; 2 more lossless', 'lossless (all 2 files)')
    >>> psnr_text(None, 1, 0), psnr_text(None, 0, 0) is None
    ('lossless', True)
    """
    if mean_psnr is None:
        if not lossless:
            return None
        return "lossless" if lossless == 1 else f"lossless (all {lossless:,} files)"
    if not lossless:
        return f"{mean_psnr:.2f} dB"
    return f"{mean_psnr:.2f} dB over {_plural(lossy, 'file')}; {lossless:,} more lossless"


def summary_lines(s: Any, verb: str, seconds: float) -> list[str]:
    """The summary printed after a batch: a headline, then one indented row per figure.

    Parameters
    ----------
    s : kpal.batch.Summary
    verb : str
        What was done to each file: ``"encoded"``, ``"decoded"``.
    seconds : float
        The batch's wall time.
    """
    parts = [f"{s.done:,} {verb}"]
    if s.skipped:
        parts.append(f"{s.skipped:,} skipped (output exists)")
    if s.failed:
        parts.append(f"{s.failed:,} failed")
    change = size_change(s.bytes_in, s.bytes_out) if verb == "encoded" else ""
    rows = [("bytes in", f"{s.bytes_in:,} bytes"),
            ("bytes out", f"{s.bytes_out:,} bytes" + (f" ({change})" if change else ""))]
    psnr = psnr_text(s.mean_psnr, s.lossless, s.done - s.lossless) if verb == "encoded" \
        else None
    if psnr is not None:
        rows.append(("mean PSNR", psnr))
    if s.slowest is not None:
        rows.append(("slowest", f"{s.slowest.path} ({s.slowest.seconds:.2f} s)"))
    rate = s.done / seconds if seconds > 0 else 0.0
    rows.append(("time", f"{seconds:.2f} s, {rate:.1f} images/s"))
    rows += [("failed", error) for error in s.errors]
    return [f"{_plural(s.files, 'file')}: {', '.join(parts)}",
            *(f"  {label:<14} {value}" for label, value in rows)]
