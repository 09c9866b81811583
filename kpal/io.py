"""Safe file output: write to a temporary file beside the target, then rename.

A reader of the destination sees either the old file or the complete new one,
never a partial write: after an error, Ctrl-C, SIGTERM or SIGHUP (the CLI turns
them into exceptions) the temporary file is removed and any earlier file is
intact.

What "the destination" is depends on what the path names:

- a regular file, or nothing yet: the temporary file is renamed onto it; a file
  replaced with ``force`` keeps its permission bits (and, where allowed, its
  owner and group);
- a symbolic link: the file it points to, written atomically in *that* file's
  folder; the link stays a link;
- a device or a named pipe (``/dev/null``, ``/dev/full``, a FIFO): written
  straight through, never replaced, renamed or unlinked, and without ``force``
  (atomicity means nothing for a stream).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import stat
import tempfile
from pathlib import Path
from typing import IO

import numpy as np

from kpal.errors import refuse_text_mode

__all__ = ["write_atomic", "write_all", "is_stream_target", "check_destination", "temp_prefix",
           "read_up_to"]

#: Bytes of a file's name kept in its temporary file's name: ``.NAME.`` plus 8
#: random characters and ``.tmp`` must fit in 255 bytes, most file systems' limit.
_TEMP_NAME_BYTES = 255 - 2 - 8 - 4


def temp_prefix(name: str) -> str:
    """``.NAME.``, the prefix of a temporary file written before it is renamed to ``NAME``.

    A long ``NAME`` is cut so that the temporary name still fits in 255 bytes:
    any name the file system accepts can be written.

    Examples
    --------
    >>> temp_prefix("photo.kpal")
    '.photo.kpal.'
    >>> len(os.fsencode(temp_prefix("x" * 255)))
    243
    """
    return "." + os.fsdecode(os.fsencode(name)[:_TEMP_NAME_BYTES]) + "."

#: How much one ``os.write`` call is asked to take: pipes accept 64 KiB at a time anyway.
_CHUNK = 1 << 20


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def is_stream_target(path: str | os.PathLike) -> bool:
    """Whether ``path`` (after symbolic links) is a device, a named pipe or a socket.

    Such a target is written straight through: it cannot be replaced by a
    temporary file, and "it already exists" is no reason to refuse it.

    Parameters
    ----------
    path : str or PathLike
        The output path.

    Returns
    -------
    bool
        False for a regular file, a folder or a path that does not exist.
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of ``data`` to file descriptor ``fd``, or raise.

    ``os.write`` may take only part of the buffer (a pipe, a nearly full disk,
    a signal); this loops until all bytes are written, so a short write can
    never pass for success. A non-blocking descriptor is waited on.

    Parameters
    ----------
    fd : int
        An open file descriptor.
    data : bytes-like
        What to write.

    Raises
    ------
    OSError
        The write failed: ``ENOSPC`` (disk full), ``EPIPE`` (the reader is
        gone; ``BrokenPipeError``), ...
    """
    view = memoryview(data).cast("B")
    while view:
        try:
            written = os.write(fd, view[:_CHUNK])
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        if written == 0:  # never for a file or a pipe; refuse to spin on anything else
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        view = view[written:]


def check_destination(path: str | os.PathLike, *, force: bool = False) -> None:
    """Check that :func:`write_atomic` could write ``path``, before any long work.

    A device or a named pipe is always writable this way. For a file: it must
    not exist unless ``force``, must not be a folder, and its folder must
    exist and take a new file (probed by creating and removing a temporary
    file there, which also catches read-only filesystems and, as root,
    folders that permission bits would not stop).

    Raises
    ------
    FileExistsError
        ``path`` exists and ``force`` is false.
    IsADirectoryError
        ``path`` is a folder.
    FileNotFoundError
        The folder does not exist.
    OSError
        The folder does not take new files (permission, read-only, full, ...).
    TypeError
        ``force`` is not True or False.
    """
    _check_force(force)
    target = Path(path)
    if is_stream_target(target):
        return
    given = os.fspath(path)
    if isinstance(given, str) and given.endswith(("/", os.sep)) and not target.is_dir():
        # Path("new/") is Path("new"): without this a file named "new" would be written.
        raise FileNotFoundError(errno.ENOENT, f"{given}: no such folder")
    if target.is_dir():
        msg = f"{target}: is a directory"
        raise IsADirectoryError(errno.EISDIR, msg)
    if target.exists() and not force:
        msg = f"{target}: file exists (pass force=True to overwrite)"
        raise FileExistsError(msg)
    real = Path(os.path.realpath(target)) if os.path.islink(target) else target
    folder = real.parent
    if not folder.is_dir():
        if folder.exists():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
        raise FileNotFoundError(errno.ENOENT, f"folder {str(folder)!r} does not exist")
    # An unnamed file (O_TMPFILE on Linux): a signal during the probe leaves nothing behind.
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=temp_prefix(real.name), suffix=".tmp"):
            pass
    except OSError as e:
        raise _naming(e, target) from None


def _naming(error: OSError, target: Path) -> OSError:
    """``error`` about a temporary file beside ``target``, said of ``target`` itself."""
    if error.errno is None:
        return error
    return type(error)(error.errno, error.strerror, str(target))


def _check_force(force: object) -> None:
    if not isinstance(force, (bool, np.bool_)):  # "no" is truthy: it would overwrite
        msg = f"force={force!r} must be True or False"
        raise TypeError(msg)


def write_atomic(path: str | os.PathLike, data: bytes, *, force: bool = False) -> None:
    """Write ``data`` to ``path`` atomically.

    Parameters
    ----------
    path : str or PathLike
        Destination file. Its folder must exist. A symbolic link is followed:
        its target is replaced atomically and the link is kept. A device or a
        named pipe is written straight through (see the module docstring).
    data : bytes
        The complete file contents.
    force : bool, default False
        Replace an existing file, keeping its permission bits. Without it an
        existing ``path`` raises ``FileExistsError`` and is left untouched.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``force`` is false.
    OSError
        The folder is missing or not writable, the disk is full, ...; the
        destination is then unchanged.
    TypeError
        ``force`` is not True or False.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "x.kpal"
    >>> write_atomic(out, b"abc")
    >>> out.read_bytes()
    b'abc'
    """
    _check_force(force)
    target = Path(path)
    try:
        existing = os.stat(target)  # follows symbolic links: the file that will change
    except FileNotFoundError:
        existing = None
    if existing is not None and not stat.S_ISREG(existing.st_mode) \
            and not stat.S_ISDIR(existing.st_mode):
        _write_through(target, data)
        return
    if existing is not None and stat.S_ISDIR(existing.st_mode):
        msg = f"{target}: is a directory"
        raise IsADirectoryError(errno.EISDIR, msg)
    if not force and existing is not None:
        msg = f"{target}: file exists (pass force=True to overwrite)"
        raise FileExistsError(msg)
    # A link (even a dangling one) is written through: the temporary file goes
    # beside the file it points to, so the final rename stays on one filesystem.
    real = Path(os.path.realpath(target)) if os.path.islink(target) else target
    try:
        fd, tmp_name = tempfile.mkstemp(dir=real.parent, prefix=temp_prefix(real.name),
                                        suffix=".tmp")
    except OSError as e:
        raise _naming(e, target) from None
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        _copy_mode_and_owner(tmp_name, existing)
        try:
            if force:
                os.replace(tmp_name, real)
            else:
                _link_no_clobber(tmp_name, real, shown=target)
        except FileExistsError:
            raise
        except OSError as e:  # said of the destination, not of the temporary file
            raise _naming(e, target) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


def _write_through(target: Path, data: bytes) -> None:
    # No O_CREAT: the device or pipe exists; no O_TRUNC: meaningless for a stream.
    fd = os.open(target, os.O_WRONLY | getattr(os, "O_NOCTTY", 0))
    try:
        write_all(fd, data)
    finally:
        os.close(fd)


def _copy_mode_and_owner(tmp_name: str, existing: os.stat_result | None) -> None:
    if existing is None:
        # mkstemp creates 0600; give the file the mode a plain open() would.
        os.chmod(tmp_name, 0o666 & ~_umask())
        return
    # The replaced file's permission bits, without set-user/group-ID (as cp does).
    os.chmod(tmp_name, stat.S_IMODE(existing.st_mode) & 0o777)
    mine = os.stat(tmp_name)
    if (mine.st_uid, mine.st_gid) != (existing.st_uid, existing.st_gid):
        # Only root may give a file away; anyone may keep a group they belong to.
        with contextlib.suppress(OSError):
            os.chown(tmp_name, existing.st_uid, existing.st_gid)


def _link_no_clobber(tmp_name: str, target: Path, shown: Path) -> None:
    # os.link fails atomically if the target appeared since the check above.
    try:
        os.link(tmp_name, target)
    except FileExistsError:
        msg = f"{shown}: file exists (pass force=True to overwrite)"
        raise FileExistsError(msg) from None
    except OSError:  # a filesystem without hard links
        if target.exists():
            msg = f"{shown}: file exists (pass force=True to overwrite)"
            raise FileExistsError(msg) from None
        os.replace(tmp_name, target)
        return
    os.unlink(tmp_name)


def read_up_to(fp: IO[bytes], size: int) -> bytes | bytearray:
    """Up to ``size`` bytes: fewer only at the end of the file (a raw stream may return less).

    Read in pieces of at most ``_READ_PIECE`` bytes: ``fp.read(n)`` sets aside
    ``n`` bytes first, and ``size`` may be what a damaged header claims.
    """
    data = fp.read(min(size, _READ_PIECE))
    refuse_text_mode(data)  # a duck-typed reader that gives text
    if data is None or len(data) >= size:
        return data or b""
    data = bytearray(data)
    while len(data) < size:
        piece = fp.read(min(size - len(data), _READ_PIECE))
        if not piece:
            break
        data += piece
    return data


#: The most :func:`read_up_to` asks of a file at once.
_READ_PIECE = 1 << 24
