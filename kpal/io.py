"""Safe file output: write to a temporary file beside the target, then rename.

A reader of the destination sees either the old file or the complete new one,
never a partial write: after an error, Ctrl-C or SIGTERM (the CLI turns it into
an exception) the temporary file is removed and any earlier file is intact.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["write_atomic"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike, data: bytes, *, force: bool = False) -> None:
    """Write ``data`` to ``path`` atomically.

    Parameters
    ----------
    path : str or PathLike
        Destination file. Its folder must exist.
    data : bytes
        The complete file contents.
    force : bool, default False
        Replace an existing file. Without it an existing ``path`` raises
        ``FileExistsError`` and is left untouched.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``force`` is false.
    OSError
        The folder is missing or not writable, the disk is full, ...; the
        destination is then unchanged.
    """
    target = Path(path)
    if not force and target.exists():
        msg = f"{target}: file exists (use --force to overwrite)"
        raise FileExistsError(msg)
    folder = target.parent
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        # mkstemp creates 0600; give the file the mode a plain open() would.
        os.chmod(tmp_name, 0o666 & ~_umask())
        if force:
            os.replace(tmp_name, target)
        else:
            _link_no_clobber(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


def _link_no_clobber(tmp_name: str, target: Path) -> None:
    # os.link fails atomically if the target appeared since the check above.
    try:
        os.link(tmp_name, target)
    except FileExistsError:
        msg = f"{target}: file exists (use --force to overwrite)"
        raise FileExistsError(msg) from None
    except OSError:  # a filesystem without hard links
        if target.exists():
            msg = f"{target}: file exists (use --force to overwrite)"
            raise FileExistsError(msg) from None
        os.replace(tmp_name, target)
        return
    os.unlink(tmp_name)
