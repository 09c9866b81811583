"""The command line's plumbing: standard streams, output files, signals, one-line errors.

:mod:`kpal.cli` declares the commands; this module is what makes them behave
like Unix tools:

- every failure is one line on stderr, ``kpal: error: ...``: exit 2 for a
  usage error, 1 for bad data or I/O, 128 + the signal number after SIGINT
  (130), SIGHUP (129) or SIGTERM (143), whenever the signal arrives (the
  output file is then absent, untouched or complete, never partial);
- every warning is one line, ``kpal: warning: ...``, shown once;
- output goes through :func:`kpal.io.write_atomic` (devices and pipes straight
  through), stdout is written until every byte is out, and a reader that
  stops early (``kpal info x.kpal | head -1``) ends kpal quietly with
  141 (128 + SIGPIPE), as it ends ``cat``;
- a closed stdin or stdout is an error when kpal needs it, not a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import signal
import stat
import sys
import tempfile
import unicodedata
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import IO, TypeVar

import click
import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from kpal import codec, outputs
from kpal.errors import KpalError
from kpal.io import check_destination, is_stream_target, write_all, write_atomic

T = TypeVar("T")

__all__ = ["STDIO", "FilePath", "KpalGroup", "Terminated", "encode_image_file"]

STDIO = "-"

#: The signals that end kpal cleanly, and the word its error line uses for each.
SIGNAL_WORDS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}
if hasattr(signal, "SIGHUP"):  # not on Windows
    SIGNAL_WORDS[signal.SIGHUP] = "hangup"

#: Exit code when the reader of stdout went away: what a shell reports for a
#: process killed by SIGPIPE (13), e.g. ``cat`` in ``cat big | head -1``.
BROKEN_PIPE_EXIT = 128 + 13


class KpalGroup(click.Group):
    """A click group that reports every error as a single line, never a traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        reserve_standard_fds()
        _signal_received.clear()
        previous = _raise_on_sigterm()
        previous_showwarning, warnings.showwarning = warnings.showwarning, _warn_one_line
        _shown_warnings.clear()
        closed_stdout = sys.stdout is None
        if closed_stdout:
            sys.stdout = _closed_stdout()
        _replace_unencodable()
        try:
            rv = super().main(args=args, prog_name=prog_name or "kpal",
                              complete_var=complete_var, standalone_mode=False, **extra)
            _flush_stdout()
            if _signal_received:
                # A library swallowed the signal's exception (e.g. an import failing
                # because of it, inside a fallback): the signal still decides the exit.
                _fail("", 1)
        except click.exceptions.NoArgsIsHelpError as e:
            click.echo(e.ctx.get_help(), err=True)
            sys.exit(2)
        except click.UsageError as e:
            # click lists choices on indented lines ("Choose from:\n\tcompare,\n\t..."):
            # one line here, as every kpal error is
            _fail(e.format_message().replace("\n\t", " "), 2)
        except click.ClickException as e:
            _fail(e.format_message(), e.exit_code)
        except (click.Abort, KeyboardInterrupt) as e:
            # click has started a new line after the ^C when it turned it into Abort.
            _fail("interrupted", 128 + signal.SIGINT, new_line=not isinstance(e, click.Abort))
        except Terminated as e:
            _fail(SIGNAL_WORDS[e.signum], 128 + e.signum)
        except _ReaderGone:
            _silence_stdout()
            sys.exit(BROKEN_PIPE_EXIT)
        except OSError as e:
            if _stdout_failed(e):
                _fail(f"<stdout>: cannot write: {e.strerror or e}", 1)
            elif e.filename is not None and e.strerror:
                # e.g. a name too long for the file system, met while checking a path:
                # the user's to change, as a usage error.
                _fail(f"{e.filename}: {e.strerror}", 2 if e.errno == errno.ENAMETOOLONG else 1)
            _fail(str(e), 1)
        except (KpalError, Image.DecompressionBombError) as e:
            _fail(str(e), 1)
        except MemoryError:
            _fail("out of memory", 1)
        except Exception:
            # A signal's exception raised inside a library may come out as another
            # one (numpy turns it into an ImportError): still the signal's outcome.
            if not _signal_received:
                raise
            _fail("", 1)
        finally:
            _restore_signals(previous)
            warnings.showwarning = previous_showwarning
            if closed_stdout:
                sys.stdout = None
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx):
        # click swallows EPIPE and returns as if all went well: take it first.
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise _ReaderGone from None


class _ReaderGone(BaseException):
    """The reader of stdout went away: not an Exception, so click lets it pass."""


# ------------------------------------------------------------------ warnings
_shown_warnings: set = set()


def _warn_one_line(message, category, filename, lineno, file=None, line=None) -> None:
    """Show a warning as one ``kpal: warning:`` line, and each warning only once.

    Pillow's and kpal's decompression-bomb warnings word the same fact
    differently: that category is shown once whatever its text.
    """
    text = " ".join(str(message).split())
    key = category if issubclass(category, Image.DecompressionBombWarning) else (category, text)
    if key in _shown_warnings:
        return
    _shown_warnings.add(key)
    click.echo(f"kpal: warning: {printable(text)}", err=True)


# ------------------------------------------------------------------ signals
class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C, so atomic writes clean up after themselves.

    Parameters
    ----------
    signum : int
        The signal's number; the exit code is 128 + signum.
    """

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_on_sigterm() -> dict:
    """Make SIGINT, SIGTERM and SIGHUP raise; return the handlers they replace.

    SIGINT raises KeyboardInterrupt (click prints a blank line after the
    terminal's ^C), the others :class:`Terminated`. Only the first signal
    raises: later ones are ignored, so the clean-up it triggers cannot itself
    be interrupted. A signal the parent ignored stays ignored (``nohup``, a
    shell's background jobs).
    """
    def handler(signum, frame):
        _signal_received.append(signum)
        _mute(previous)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signum)

    previous: dict = {}
    for signum in SIGNAL_WORDS:
        try:
            if signal.getsignal(signum) is signal.SIG_IGN:
                continue
            previous[signum] = signal.signal(signum, handler)
        except ValueError:  # not the main thread (some test runners)
            return previous
    return previous


#: The signal that raised during the current command (at most one: then muted).
_signal_received: list[int] = []


def _mute(signums) -> None:
    for signum in signums:
        with contextlib.suppress(ValueError):
            signal.signal(signum, _ignore)


def _ignore(signum, frame) -> None:
    """A second signal while the first one's clean-up runs: already on the way out."""


def _restore_signals(previous: dict) -> None:
    for signum, handler in previous.items():
        with contextlib.suppress(ValueError, TypeError):
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


#: Format characters a name is written with: the zero-width non-joiner and joiner
#: (Persian names, emoji sequences) and the tag characters (flag emoji). Every
#: other format character (bidirectional controls, zero-width spaces, a byte
#: order mark) is invisible or reorders what a terminal shows: escaped.
_KEPT_FORMAT = frozenset("\u200c\u200d")


def _escaped(c: str) -> bool:
    category = unicodedata.category(c)
    if category in ("Cc", "Cs", "Zl", "Zp"):  # controls, undecodable bytes, line breaks
        return True
    return category == "Cf" and c not in _KEPT_FORMAT and not "\U000e0020" <= c <= "\U000e007f"


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``): for file names in
    messages, which must stay one line and must not drive the terminal.

    Control characters, line and paragraph separators, the surrogates Python
    uses for a file name's bytes that are not UTF-8 (a raw ``0x9b`` is a
    terminal's 8-bit CSI) and invisible format characters are escaped; the
    joiners and tags names are written with are kept.
    """
    return "".join(c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   if _escaped(c) else c for c in text)


def _fail(message: str, code: int, *, new_line: bool = True):
    """Print the error line and exit; after a signal, whatever the error, the signal's.

    After SIGINT the line starts on a new line (the terminal shows ``^C``),
    unless ``new_line`` is false because click has already started one.
    """
    lead = ""
    if _signal_received:
        signum = _signal_received[0]
        message, code = SIGNAL_WORDS[signum], 128 + signum
        lead = "\n" if signum == signal.SIGINT and new_line else ""
    click.echo(f"{lead}kpal: error: {printable(message)}", err=True)
    sys.exit(code)


# ------------------------------------------------------------------ standard streams
def reserve_standard_fds() -> None:
    """Open ``/dev/null`` on any of descriptors 0, 1 and 2 that is closed.

    Otherwise the next file kpal opens would get that number, and anything
    writing to "stdout" or "stderr" at the C level would write into it.
    Python has already set ``sys.stdin``/``sys.stdout``/``sys.stderr`` to None
    for a closed descriptor, so kpal still knows it was closed.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:  # a lower descriptor was free after all
                os.dup2(null, fd)
                os.close(null)


class _ClosedOutput(io.RawIOBase):
    """Stands in for a closed stdout: writing to it fails instead of vanishing."""

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if not len(data):
            return 0
        raise click.ClickException("<stdout>: cannot write: standard output is closed")


def _closed_stdout() -> io.TextIOWrapper:
    return io.TextIOWrapper(_ClosedOutput(), encoding="utf-8", write_through=True)


def _flush_stdout() -> None:
    # Text still buffered would otherwise fail at interpreter exit, as a warning.
    if sys.stdout is None:
        return
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise _ReaderGone from None
    except OSError as e:
        _silence_stdout()
        raise click.ClickException(f"<stdout>: cannot write: {e.strerror or e}") from None


def _replace_unencodable() -> None:
    """Print what the terminal's encoding cannot show as ``?`` instead of failing.

    With a Latin-1 or ASCII stdout (``LANG=C`` on older systems,
    ``PYTHONIOENCODING``), the report's arrows and file names with other
    characters would otherwise raise after the output file was written.
    """
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict":
            with contextlib.suppress(AttributeError, ValueError, OSError):
                stream.reconfigure(errors="replace")


def _stdout_failed(error: OSError) -> bool:
    """Whether ``error`` came from writing a report to stdout (``click.echo``, not ``err``).

    ``kpal info x.kpal > /dev/full`` then says ``<stdout>: cannot write: No
    space left on device``, not a bare ``[Errno 28]``.
    """
    if error.filename is not None:
        return False
    tb = error.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code is click.utils.echo.__code__ and not frame.f_locals.get("err"):
            _silence_stdout()  # the text still buffered would fail again at exit
            return True
        tb = tb.tb_next
    return False


def _silence_stdout() -> None:
    """Point descriptor 1 at /dev/null, so exiting flushes nothing into a broken pipe.

    This is the remedy of Python's documentation ("Note on SIGPIPE"): without
    it the interpreter prints "Exception ignored ... BrokenPipeError" at exit.
    """
    with contextlib.suppress(OSError, ValueError, AttributeError):
        fd = sys.stdout.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)


# ------------------------------------------------------------------ input
def _read_input(path: str, kpal: bool = False, stdin: bool = True) -> tuple[str, bytes]:
    """Return a display name and the bytes of IN (a file or - for stdin).

    With ``kpal``, the header is read and checked first, so a file that is
    not a .kpal file (or has an impossible header) is refused before the
    rest of it is read, and so is a file longer than its header implies.
    """
    return _read_with(path, stdin, codec.read_bytes if kpal else _read_all)


def _read_shown(path: str) -> tuple[str, bytes, int]:
    """The display name, first bytes and length of a .kpal IN that kpal info or view shows.

    A file longer than its header implies is shown, and said, without reading
    it to its end (:func:`kpal.codec.read_shown`).
    """
    name, (data, length) = _read_with(path, True, codec.read_shown)
    return name, data, length


def _read_all(f: IO[bytes]) -> bytes:
    return f.read()


def _read_with(path: str, stdin: bool, read: Callable[[IO[bytes]], T]) -> tuple[str, T]:
    name = "<stdin>" if path == STDIO else path
    if path != STDIO:
        _check_input(path, stdin)
    elif sys.stdin is None:
        raise click.ClickException("<stdin>: cannot read: standard input is closed")
    elif _is_terminal(sys.stdin):  # it would wait, silently, for bytes typed in
        raise click.UsageError("-: standard input is a terminal; pipe or redirect a file "
                               "into it (kpal ... - < photo.png) or give the file's name")
    try:
        source = nullcontext(sys.stdin.buffer) if path == STDIO else open(path, "rb")  # noqa: SIM115
        with source as f:
            try:
                return name, read(f)
            except KpalError as e:  # the one header reader's message, first checks first
                raise click.ClickException(f"{name}: {e}") from None
    except OSError as e:
        raise click.ClickException(f"{name}: cannot read: {e.strerror or e}") from None


def _rgb_array(im: Image.Image) -> np.ndarray:
    """The pixels of an "RGB" image as an ndarray of shape (height, width, 3), uint8.

    ``np.asarray(im)`` goes through ``im.tobytes()``, which collects Pillow's
    raw encoder's chunks in a list and then joins them into the array's bytes:
    for a moment both are held, beside Pillow's own copy (4 bytes a pixel).
    The same encoder's chunks are copied here straight into the array while
    they are in cache: 3 bytes a pixel less at that moment (300 MiB at 100 MP),
    in a third of the time.
    """
    encoder_for = getattr(Image, "_getencoder", None)
    if encoder_for is None:  # a Pillow without it: the usual way
        return np.asarray(im)
    width, height = im.size
    out = np.empty(height * width * 3, dtype=np.uint8)
    encoder = encoder_for("RGB", "raw", "RGB")
    try:
        encoder.setimage(im.im, (0, 0, width, height))
        chunk = max(ImageFile.MAXBLOCK, width * 4)  # as Image.tobytes
        filled = 0
        while True:
            _, status, data = encoder.encode(chunk)
            out[filled : filled + len(data)] = np.frombuffer(data, dtype=np.uint8)
            filled += len(data)
            if status:
                break
    finally:
        encoder.cleanup()
    if status < 0 or filled != out.size:
        msg = f"cannot convert the pixels (encoder status {status})"
        raise OSError(msg)
    return out.reshape(height, width, 3)


def default_output(src: str, suffix: str) -> str:
    """OUT when none is given: stdout for stdin, else IN with ``suffix`` beside it.

    An input that is not a regular file (``/dev/stdin``, a named pipe, a
    device) has no folder of its own to write beside: -o is then required.
    """
    if src == STDIO:
        return STDIO
    _check_input(src)  # a missing input, a folder or a device: said as such first
    path = Path(src)
    if not path.is_file():
        raise click.UsageError(f"{printable(src)}: not a regular file, so there is no name to "
                               f"write beside it: give -o OUT (- for stdout)")
    # "x.png." names x.png's output as "x.png" does, not "x.png..kpal".
    return str(path.with_name(path.name.rstrip(".") or path.name).with_suffix(suffix))


def refuse_input_as_output(src: str, out: str) -> None:
    """Refuse OUT when it is IN (by name, link or hard link): the first thing to say."""
    if src == STDIO or out == STDIO:
        return
    _check_input(src)
    target = Path(out)
    if target.exists() and os.path.samefile(src, target):
        raise click.UsageError(f"{printable(out)}: output is the input file; choose another -o")


def stdout_alias(out: str) -> str:
    """``-`` when OUT names this process's standard output (``/dev/stdout``,
    ``/dev/fd/1``, or the very file stdout is redirected to), else OUT.

    Written to through its name, a redirected file would be replaced by a
    new one (and the report would go into the image data): as ``-``, the
    image goes to the descriptor and the report to stderr.
    """
    if out == STDIO or sys.stdout is None:
        return out
    try:
        named, ours = os.stat(out), os.fstat(sys.stdout.fileno())
        if stat.S_ISCHR(ours.st_mode) and not os.isatty(sys.stdout.fileno()):
            return out  # /dev/null both ways: the report stays where stdout sends it
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return out
    return STDIO if (named.st_dev, named.st_ino) == (ours.st_dev, ours.st_ino) else out


def _open_image(name: str, data: bytes,
                before_load: Callable[[Image.Image], None] | None = None) -> Image.Image:
    """IN's image, loaded; ``before_load`` sees it once its header is read."""
    if not data:
        raise click.ClickException(f"{name}: file is empty")
    with warnings.catch_warnings(record=True) as caught:  # Pillow's, about a large image
        warnings.simplefilter("always")
        try:
            return _opened(name, data, before_load)
        finally:
            for w in caught:
                _warn_one_line(f"{name}: {w.message}", w.category, w.filename, w.lineno)


def _opened(name: str, data: bytes,
            before_load: Callable[[Image.Image], None] | None) -> Image.Image:
    try:
        im = Image.open(io.BytesIO(data))
        frames = getattr(im, "n_frames", 1)
        if frames > 1 and im.format not in codec.PRIMARY_IMAGE_FORMATS:
            context = click.get_current_context(silent=True)
            command = context.info_name if context is not None else None
            why = ("a .kpal file holds one image" if command in (None, "encode")
                   else f"kpal {command} reads one image from each file")
            raise KpalError(f"has {frames} frames; {why} (extract a frame first)")
        if before_load is not None:
            before_load(im)
        im.load()
    except UnidentifiedImageError:
        raise click.ClickException(f"{name}: not an image Pillow can read") from None
    except KpalError as e:
        raise click.ClickException(f"{name}: {e}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise click.ClickException(f"{name}: cannot decode image: {e}") from None
    except Image.DecompressionBombError as e:
        raise click.ClickException(f"{name}: {e}") from None
    return im


class FilePath(click.Path):
    """``click.Path`` that refuses an empty argument: ``Path("")`` would be the current folder.

    It does not check permissions: a file that cannot be read (or written) is
    an I/O failure, reported by the command that opens it (``IN: cannot read:
    Permission denied``, exit 1), as for a file found inside a folder.
    """

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - click.Path's
        kwargs.setdefault("readable", False)
        super().__init__(*args, **kwargs)

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        if isinstance(value, str) and not value:
            self.fail("the path is empty", param, ctx)
        return super().convert(value, param, ctx)


def _check_input(path: str, stdin: bool = True) -> None:
    """Refuse an input file that is missing, a folder or a device, naming it."""
    p = Path(path)
    if p.is_dir():
        raise click.UsageError(f"{path}: is a directory, expected a file")
    if not p.exists():
        try:
            p.stat()
        except OSError as e:  # a symlink loop, a denied folder: not "no such file"
            if e.errno not in (errno.ENOENT, errno.ENOTDIR):
                raise click.UsageError(f"{path}: {e.strerror or e}") from None
        raise click.UsageError(f"{path}: no such file")
    if p.is_char_device() or p.is_block_device():  # /dev/zero would be read forever
        hint = " (use - for stdin)" if stdin else ""
        raise click.UsageError(f"{path}: is a device, expected a file{hint}")


# ------------------------------------------------------------------ output
def _check_output(src: str, out: str, force: bool, *, binary: bool = True,
                  stdin: bool = True) -> None:
    """Refuse an output that would overwrite the input, or a file, without --force.

    A device or a named pipe (``-o /dev/null``) is not "a file that exists":
    it is written straight through and needs no --force. A missing input is
    reported first: it is the real problem. Binary output (not ``binary=False``:
    an HTML page, hex colours) is not written to a terminal, as gzip refuses to.
    """
    if src != STDIO:
        _check_input(src, stdin)
    if out == STDIO:
        if binary and _is_terminal(sys.stdout):
            raise click.UsageError("-o -: binary output is not written to a terminal; "
                                   "redirect it (> file, | program) or give -o FILE")
        return
    refuse_input_as_output(src, out)
    target = Path(out)
    if is_stream_target(target):
        return
    if target.is_dir():
        raise click.UsageError(f"{out}: is a directory, expected a file")
    if out.endswith(("/", os.sep)):  # Path() drops the slash: "new/" would become a file
        raise click.UsageError(f"{out}: no such folder")
    if target.exists() and not force:
        raise click.UsageError(f"{out}: file exists (use --force to overwrite)")
    if not target.parent.exists():
        raise click.UsageError(f"{out}: folder {str(target.parent)!r} does not exist")
    try:  # before a long fit, not after it
        check_destination(target, force=force)
    except FileExistsError:
        raise click.UsageError(f"{out}: file exists (use --force to overwrite)") from None
    except OSError as e:
        raise click.ClickException(f"{out}: cannot write: {e.strerror or e}") from None


def output_in_folder(src: str, out: str | None, suffix: str) -> str | None:
    """OUT as given, or, when it names a folder, the file for SRC in it (as ``cp`` does).

    ``-o photos/`` or ``-o photos`` (an existing folder) writes
    ``photos/<IN's name><suffix>``; a path ending in ``/`` that is not a
    folder is refused, never written as a file.
    """
    if out is None or out == STDIO:
        return out
    if not Path(out).is_dir():
        if out.endswith(("/", os.sep)):  # Path() drops the slash: "new/" would become a file
            raise click.UsageError(f"{out}: no such folder")
        return out
    if src == STDIO:
        raise click.UsageError(f"{out}: is a directory; with standard input, -o names the "
                               "output file")
    return str(Path(out) / (Path(src).stem + suffix))


def _is_terminal(stream) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def _write_output(out: str, data: bytes, force: bool) -> None:
    """Write OUT: a file atomically (devices and pipes straight through), or all of stdout."""
    if out == STDIO:
        _write_stdout(data)
        return
    try:
        write_atomic(out, data, force=force)
    except FileExistsError:
        raise click.UsageError(f"{out}: file exists (use --force to overwrite)") from None
    except OSError as e:
        raise click.ClickException(f"{out}: cannot write: {e.strerror or e}") from None


def _write_stdout(data: bytes) -> None:
    stream = sys.stdout
    try:
        stream.flush()  # anything printed earlier goes first
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation: in-memory
            fd = None
        if fd is None:
            _write_all_to_stream(stream.buffer, data)
            stream.buffer.flush()
        else:
            write_all(fd, data)
    except BrokenPipeError:
        raise _ReaderGone from None
    except OSError as e:
        _silence_stdout()  # nothing more can reach it; do not fail again at exit
        raise click.ClickException(f"<stdout>: cannot write: {e.strerror or e}") from None


def _write_all_to_stream(binary, data: bytes) -> None:
    # A raw (unbuffered) stream may take part of the buffer and say how much.
    view = memoryview(data)
    while view:
        written = binary.write(view)
        if written is None:  # non-blocking and full: nothing taken
            continue
        if written == 0:
            raise OSError(5, "nothing written")
        view = view[written:]


def encode_image_file(im: Image.Image, fmt: str, out: str) -> bytes:
    """Return ``im`` encoded as Pillow format ``fmt``, or a one-line error naming OUT.

    A palette image goes to a format without palettes (JPEG) as RGB. Any
    failure of the format's encoder (an image too wide or tall for GIF, TGA,
    PCX, ICO, WebP, ...) becomes ``OUT: cannot write a WxH image as FORMAT:
    reason``; nothing is written, as the caller writes only what this returns.

    Parameters
    ----------
    im : PIL.Image.Image
        The image to encode.
    fmt : str
        A Pillow format name, e.g. "PNG".
    out : str
        The output path (``-`` for stdout), for the message only.

    Returns
    -------
    bytes
        The encoded file.

    Raises
    ------
    click.UsageError
        Pillow cannot write ``fmt`` at all.
    click.ClickException
        The format's encoder failed on this image.
    """
    named = outputs.pillow_format(fmt)
    if named is None:  # from the name's extension: --format was checked before
        where = "<stdout>" if out == STDIO else out
        raise click.UsageError(f"{where}: unknown output format {fmt!r} (Pillow cannot "
                               "write it)")
    fmt = named
    failures = []
    for attempt in outputs.save_attempts(im, fmt):
        data, problem = _save_to_bytes(attempt, fmt)
        if data is not None:
            return data
        failures.append(problem)
    # One attempt may only have failed on the mode ("cannot write mode P as JPEG",
    # "cannot write mode RGB as Palm"): the other one's reason is the real one.
    reason = next((text for text in reversed(failures) if "mode" not in text.lower()),
                  failures[-1])
    where = "<stdout>" if out == STDIO else out
    raise click.ClickException(f"{where}: cannot write a {im.width}x{im.height} image as "
                               f"{fmt.upper()}: {reason}")


def _save_to_bytes(image: Image.Image, fmt: str) -> tuple[bytes | None, str | None]:
    """Run Pillow's encoder for ``fmt``; return (bytes, None) or (None, one-line reason).

    What C libraries print on descriptor 2 meanwhile (libjpeg: "Maximum
    supported image dimension is 65500 pixels") is caught: it becomes the
    reason of the failure, or a one-line warning after a success, never a
    stray line of its own.
    """
    buffer = io.BytesIO()
    problem = None
    with _c_level_stderr() as said, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            image.save(buffer, format=fmt, **outputs.writer_options(fmt, image))
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - any encoder failure is reported
            problem = " ".join(str(e).split()) or type(e).__name__
        c_text = said()
    for w in caught:  # shown now that descriptor 2 is back
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if problem is not None:
        return None, c_text or problem
    if c_text:
        warnings.warn(c_text, stacklevel=3)
    return buffer.getvalue(), None


@contextlib.contextmanager
def _c_level_stderr():
    """Redirect descriptor 2 to a temporary file; yield a function reading it as one line."""
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 to redirect
        yield lambda: ""
        return
    with tempfile.TemporaryFile() as capture:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            sys.stderr.flush()
        os.dup2(capture.fileno(), 2)
        try:
            yield lambda: "; ".join(line.strip() for line in _read_back(capture).splitlines()
                                    if line.strip())
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _read_back(capture) -> str:
    capture.seek(0)
    return capture.read().decode("utf-8", "replace")
