"""Many files at once: a local process pool or Dask futures, one small record per file.

``kpal encode DIR -o OUT``, ``kpal decode ...`` and ``kpal info ...`` with
several inputs run here. The work is split into one task per file; a task
reads its input, does the work and writes its output itself
(:func:`kpal.io.write_atomic`), and sends back only a small :class:`Result`.
So whatever the number of files:

- memory stays bounded: tasks are submitted lazily, at most two per worker in
  flight, and a worker holds one image at a time;
- workers are forked from a fork server which, for a batch that encodes,
  has loaded numba and the compiled kernels once (``kpal._batch_server``):
  the workers share those pages instead of each loading its own copy;
- the output bytes do not depend on the number of workers: each file is
  encoded independently with the same :class:`~kpal.options.EncodeOptions`,
  exactly as ``kpal encode FILE`` encodes it;
- one bad file does not stop the batch: its record carries a one-line
  ``error`` naming the file, and the other files go on;
- on Ctrl-C the parent cancels what has not started and waits for the images
  in progress (at most one per worker, which ignore SIGINT): every output is
  complete or absent, and no temporary file is left. SIGTERM or SIGHUP make
  a worker abandon its image (its temporary file removed) and leave; a worker
  whose batch process was killed outright leaves the same way.

With a Dask ``client`` the same tasks run as Dask futures: tasks receive paths
and options and return records, so nothing but those crosses the scheduler;
the paths must be reachable from the workers (a shared filesystem). Dask is
imported only on that path.

Inputs (:func:`collect`) are files, folders (their image files; with
``recursive``, every level below) and glob patterns (``photos/*.jpg``; ``**``
with ``recursive``). An output mirrors its input's place below the folder or
the fixed part of the pattern it was found through, under ``out_dir``; with no
``out_dir`` it goes beside its input with the extension ``ext``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import dataclasses
import errno
import glob
import io
import math
import os
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, TypeVar

from PIL import Image, UnidentifiedImageError

from kpal import codec, outputs
from kpal import options as options_module
from kpal.errors import KpalError, recording, warn
from kpal.io import temp_prefix, write_atomic
from kpal.options import EncodeOptions

__all__ = ["Result", "Job", "BatchError", "MissingExtraError", "OutputFolderError",
           "SchedulerError", "SchedulerLost", "Summary", "collect", "plan", "run", "run_job",
           "encode_many", "decode_many",
           "info_many", "summarize", "default_jobs", "is_glob", "image_file", "kpal_file",
           "skip_reason", "ext_problem", "output_format", "is_url", "exists", "connect",
           "palette_read_once"]

T = TypeVar("T")

#: Tasks in flight per worker: one running, one queued so the worker never waits.
IN_FLIGHT_PER_WORKER = 2
#: Environment variables that size the thread pools of BLAS, OpenMP and numba: set to 1
#: in workers, which are already one per core.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS",
                    "NUMBA_NUM_THREADS")
_MAGIC = ("*", "?", "[")


class BatchError(ValueError):
    """The batch cannot start: no input matched, two inputs map to one output, ...

    Raised before any file is read or written.
    """


class MissingExtraError(BatchError, ImportError):
    """The batch needs an optional package that is not installed (Dask, fsspec).

    Also an ``ImportError``, as a missing extra is everywhere else in kpal.
    """


class OutputFolderError(BatchError):
    """The batch cannot start: its output folder cannot be created or take new files.

    Raised before any file is read; the message names the folder.
    """


@dataclass(frozen=True)
class Result:
    """What happened to one file of a batch.

    Attributes
    ----------
    path : str
        The input file.
    output : str or None
        The output file (``None`` for ``info``).
    bytes_in : int
        Size of the input file (0 when it could not be read).
    bytes_out : int
        Size of the output written (0 when none was).
    k : int or None
        Colours in the palette, when known.
    psnr : float or None
        PSNR of the encoded image against its source in dB (``inf`` when
        lossless); ``None`` for decode and info.
    seconds : float
        Time the task took, reading and writing included.
    error : str or None
        One line, ``FILE: problem``, when the file failed; else ``None``.
    skipped : bool
        The output existed and the batch was asked to skip existing outputs.
    notes : tuple of str
        Warnings the encode raised (e.g. fewer distinct colours than k).
    report : dict or None
        For ``info``: the fields ``kpal info --json`` prints for the file.
    target_missed : bool
        The file failed because no k meets its ``quality`` or ``max_size``
        (``kpal.choose.QualityError``): the command line's exit code 99.
    """

    path: str
    output: str | None
    bytes_in: int = 0
    bytes_out: int = 0
    k: int | None = None
    psnr: float | None = None
    seconds: float = 0.0
    error: str | None = None
    skipped: bool = False
    notes: tuple[str, ...] = ()
    report: dict | None = field(default=None, compare=False, hash=False)
    target_missed: bool = False

    @property
    def ok(self) -> bool:
        """True unless the file failed."""
        return self.error is None


@dataclass(frozen=True)
class Job:
    """One file's task: small and picklable, so it can travel to any worker.

    Attributes
    ----------
    kind : {"encode", "decode", "info"}
    path : str
        The input file.
    output : str or None
        Where to write (``None`` for ``info``).
    options : EncodeOptions or None
        The encode options (encode only).
    fmt : str or None
        The Pillow format to write (decode only), e.g. "PNG".
    force : bool
        Replace an existing output.
    background : (r, g, b) or None
        Decode only: flatten transparency onto this colour (formats without
        alpha get white otherwise).
    pillow : tuple
        The caller's Pillow settings when the job was made (see
        :func:`pillow_settings`), which the worker takes on before the file.
    command_line : bool
        Messages name the command line's options (``--force``), not the
        keywords of :func:`encode_many` (``force=True``).
    """

    kind: str
    path: str
    output: str | None
    options: EncodeOptions | None = None
    fmt: str | None = None
    force: bool = False
    background: tuple[int, int, int] | None = None
    pillow: tuple = field(default_factory=lambda: pillow_settings())
    command_line: bool = False

    @property
    def overwrite_hint(self) -> str:
        """How this job's messages say to replace an existing output."""
        return "use --force to overwrite" if self.command_line else "pass force=True to overwrite"


def pillow_settings() -> tuple[int | None, bool, tuple[str, ...]]:
    """The Pillow set-up of this process that decides what a worker reads.

    ``Image.MAX_IMAGE_PIXELS`` (the decompression-bomb limit),
    ``ImageFile.LOAD_TRUNCATED_IMAGES``, and the modules of the image plugins
    registered besides Pillow's own (``pillow_avif``, ``pillow_jxl``, ...). A
    worker process starts with Pillow's defaults; :func:`_take_pillow_settings`
    gives it these, so that a file is read the same way whatever the number of
    jobs.
    """
    from PIL import ImageFile

    Image.init()
    factories = [factory for factory, _ in Image.OPEN.values()] + list(Image.SAVE.values())
    modules = sorted({getattr(f, "__module__", None) or "" for f in factories})
    plugins = tuple(m for m in modules
                    if m and m.split(".")[0] not in ("PIL", "kpal", "__main__"))
    return Image.MAX_IMAGE_PIXELS, bool(ImageFile.LOAD_TRUNCATED_IMAGES), plugins


def _take_pillow_settings(settings: tuple) -> None:
    """Apply :func:`pillow_settings` of the batch's process in this (worker) process.

    A plugin module that registers itself when imported is imported; one that
    needs a call after its import (``pillow_heif.register_heif_opener()``)
    cannot be reached this way: register it in the workers' start-up, or run
    the batch with one job.
    """
    import importlib
    import sys

    from PIL import ImageFile

    max_pixels, truncated, plugins = settings
    Image.MAX_IMAGE_PIXELS = max_pixels
    ImageFile.LOAD_TRUNCATED_IMAGES = truncated
    for name in plugins:
        if name not in sys.modules:
            with contextlib.suppress(Exception):  # a plugin that fails to import: as before
                importlib.import_module(name)


# ------------------------------------------------------------------ inputs
def is_glob(path: str) -> bool:
    """True when ``path`` is a glob pattern rather than a path that exists."""
    if is_url(path):
        return any(c in path.split("://", 1)[1] for c in _MAGIC)
    return any(c in path for c in _MAGIC) and not os.path.lexists(path)


def is_url(path: str | os.PathLike) -> bool:
    """True for an fsspec URL (``s3://bucket/photos``, ``file:///data``), not a local path."""
    return isinstance(path, str) and "://" in path


def _filesystem(url: str):
    """The fsspec filesystem of ``url`` and the path inside it."""
    try:
        import fsspec
    except ImportError:
        msg = f"{url}: URLs need fsspec: pip install fsspec"
        raise MissingExtraError(msg) from None
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as e:  # the protocol's package is missing (s3fs, gcsfs, ...)
        msg = f"{url}: {e}"
        raise MissingExtraError(msg) from None
    except ValueError as e:  # an unknown protocol
        msg = f"{url}: {e}"
        raise BatchError(msg) from None


def exists(path: str) -> bool:
    """Whether a file (or link) is at ``path``, a local path or an fsspec URL."""
    if is_url(path):
        fs, inner = _filesystem(path)
        return bool(fs.exists(inner))
    return os.path.lexists(path)


def default_jobs() -> int:
    """The number of cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _fixed_part(pattern: str) -> Path:
    """The leading folders of a glob pattern, before the first one with a wildcard."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if any(c in part for c in _MAGIC):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _walk(folder: Path, recursive: bool, wanted: Callable[[Path], bool],
          skip: Path | None, rejected: list[Path]) -> Iterator[Path]:
    """The wanted files of ``folder`` (hidden ones left out), sorted, level by level.

    The files ``wanted`` turns down are added to ``rejected``.
    """
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue  # hidden files, and the temporary files of writes in progress
        path = Path(entry.path)
        try:
            is_dir, is_file = entry.is_dir(), entry.is_file()
        except OSError:  # a symbolic link loop: neither (a broken link is neither, too)
            continue
        if is_dir:
            if recursive and (skip is None or not _same(path, skip)):
                yield from _walk(path, recursive, wanted, skip, rejected)
        elif is_file and wanted(path):
            yield path
        elif is_file:
            rejected.append(path)


def _count(files: list) -> str:
    return f"{len(files):,} file{'' if len(files) == 1 else 's'}"


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def collect(paths: Iterable[str], *, recursive: bool = False,
            wanted: Callable[[Path], bool] | None = None,
            skip: str | os.PathLike | None = None,
            rejected: list[Path] | None = None) -> list[tuple[Path | str, Path]]:
    """The input files named by ``paths``, each with its place in the output tree.

    Parameters
    ----------
    paths : iterable of str
        Files (taken whatever their extension), folders (their files that
        ``wanted`` accepts; every level below with ``recursive``) and glob
        patterns (``*``, ``?``, ``[...]``; ``**`` spans folders with
        ``recursive``); any of them may be an fsspec URL
        (``s3://bucket/photos/``) when fsspec is installed.
    recursive : bool, default False
    wanted : callable, optional
        Which files of a folder or a pattern to take (default: all).
    skip : path, optional
        A folder never entered (the output folder, when it is inside an input).
    rejected : list, optional
        Receives the local files of folders and patterns that ``wanted``
        turned down (to say why nothing was found).

    Returns
    -------
    list of (Path or str, Path)
        Each input file (a URL stays a string) and its path relative to the folder (or the fixed
        part of the pattern) it was found through; a file named directly is
        relative to its own folder. Duplicates are dropped.

    Raises
    ------
    BatchError
        A path does not exist, or a pattern matches nothing (or only files
        ``wanted`` turns down: the message says why they were skipped).
    """
    wanted = wanted or (lambda p: True)
    rejected = [] if rejected is None else rejected
    skip_path = Path(skip) if skip is not None else None
    found: list[tuple[Path, Path]] = []
    seen: set[Path] = set()

    def add(path: Path, base: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append((path, path.relative_to(base)))

    for text in paths:
        path = Path(text)
        if is_url(text):
            for url, relative in _collect_url(text, recursive, wanted):
                if url not in seen:
                    seen.add(url)
                    found.append((url, relative))
            continue
        if is_glob(text):
            base = _fixed_part(text)
            matches = sorted(glob.glob(text, recursive=recursive))
            files = []
            turned_down = len(rejected)
            for match in map(Path, matches):
                if match.is_dir():
                    files += [(f, base) for f in _walk(match, recursive, wanted, skip_path,
                                                       rejected)]
                elif not match.is_file() or match.name.startswith("."):
                    continue
                elif wanted(match):
                    files.append((match, base))
                else:
                    rejected.append(match)
            skipped = rejected[turned_down:]
            if not files and skipped:
                msg = (f"{text}: matches {_count(skipped)}, "
                       f"{'skipped' if len(skipped) == 1 else 'all skipped'}: "
                       f"{skip_reason(skipped, wanted)}")
                raise BatchError(msg)
            if not files:
                msg = f"{text}: no file matches"
                raise BatchError(msg)
            for f, b in files:
                add(f, b)
        elif path.is_dir():
            for f in _walk(path, recursive, wanted, skip_path, rejected):
                add(f, path)
        elif path.exists():
            add(path, path.parent)
        else:
            raise BatchError(f"{text}: {_missing_reason(path)}")
    return found


def _missing_reason(path: Path) -> str:
    """Why ``path`` cannot be read: "no such file", or the system's words (a symlink loop)."""
    try:
        path.stat()
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ENOTDIR):
            return e.strerror or str(e)
    return "no such file"


def _collect_url(url: str, recursive: bool,
                 wanted: Callable[[Path], bool]) -> list[tuple[str, PurePosixPath]]:
    """:func:`collect` for one fsspec URL: (URL of each file, its relative path)."""
    fs, root = _filesystem(url)
    root = root.rstrip("/") or "/"
    if is_glob(url):
        parts = PurePosixPath(root).parts
        fixed = []
        for part in parts[:-1]:
            if any(c in part for c in _MAGIC):
                break
            fixed.append(part)
        base = PurePosixPath(*fixed) if fixed else PurePosixPath("/")
        spelled = url.split("/")
        base_url = "/".join(spelled[:next(i for i, part in enumerate(spelled)
                                          if any(c in part for c in _MAGIC))])
        candidates = []
        for match in sorted(fs.glob(root)):
            if fs.isdir(match):
                candidates += fs.find(match, maxdepth=None if recursive else 1)
            else:
                candidates.append(match)
        if not candidates:
            msg = f"{url}: no file matches"
            raise BatchError(msg)
    elif fs.isdir(root):
        base, base_url = PurePosixPath(root), url.rstrip("/")
        candidates = fs.find(root, maxdepth=None if recursive else 1)
    elif fs.exists(root):
        return [(url, PurePosixPath(PurePosixPath(root).name))]
    else:
        msg = f"{url}: no such file"
        raise BatchError(msg)
    found = []
    for name in sorted(candidates):
        relative = PurePosixPath(name).relative_to(base)
        if any(part.startswith(".") for part in relative.parts) or not wanted(Path(name)):
            continue
        found.append((f"{base_url}/{relative.as_posix()}", relative))  # as the user spelled it
    return found


def _output_path(src: str, relative: PurePosixPath | Path, out_dir, ext: str) -> str:
    """Where the output of ``src`` goes: its place below ``out_dir``, or beside it."""
    if out_dir is None:
        where = src
    elif is_url(os.fspath(out_dir)):
        where = f"{os.fspath(out_dir).rstrip('/')}/{PurePosixPath(relative).as_posix()}"
    else:
        where = str(Path(out_dir) / relative)
    if is_url(where):
        head, _, name = where.rpartition("/")
        return f"{head}/{_stem(name)}{ext}"
    where_path = Path(where)
    return str(where_path.with_name(_stem(where_path.name) + ext))


def _stem(name: str) -> str:
    """A file name without its extension, nor the dots a name may end with: "x.png." and
    "x.png" both give "x" (else "x.png..kpal")."""
    return PurePosixPath(name.rstrip(".") or name).stem


def _identity(path: str) -> str:
    return path if is_url(path) else str(Path(path).resolve())


def plan(kind: str, paths: Iterable[str], out_dir: str | os.PathLike | None, *,
         ext: str, recursive: bool = False, wanted: Callable[[Path], bool] | None = None,
         options: EncodeOptions | None = None, fmt: str | None = None,
         force: bool = False, background: tuple[int, int, int] | None = None,
         command_line: bool = False) -> list[Job]:
    """One :class:`Job` per input file, with its output path decided.

    Parameters
    ----------
    kind : {"encode", "decode", "info"}
    paths : iterable of str
        See :func:`collect`.
    out_dir : path or None
        The output tree's root; ``None`` writes each output beside its input.
    ext : str
        The outputs' extension (``.kpal``), or a suffix replacing the input's
        (``-k16.kpal``).
    recursive, wanted
        See :func:`collect`.
    options : EncodeOptions, optional
    fmt : str, optional
        The Pillow format of decoded images.
    force : bool, default False
    background : (r, g, b), optional
        Decoded images' transparency flattened onto this colour.
    command_line : bool, default False
        The jobs' messages name the command line's options (``--force``)
        instead of the keywords of :func:`encode_many` (``force=True``).

    Raises
    ------
    BatchError
        No input, an output folder that is a file, an ``ext`` that is not a
        file extension (see :func:`ext_problem`), an encode's ``ext`` naming
        another image format (``.png``), an output that is its own input, or two
        inputs with one output.
    OutputFolderError
        A local ``out_dir`` that cannot be created (a parent is a file, the
        filesystem refuses new entries) or does not take new files.
    """
    paths = list(paths)
    if not paths:
        msg = "no input given"
        raise BatchError(msg)
    if out_dir is not None and is_url(os.fspath(out_dir)):
        fs, inner = _filesystem(os.fspath(out_dir))  # an unknown protocol fails now
        if _url_is_file(fs, inner):  # as for a local folder: before any file is read
            msg = f"{os.fspath(out_dir)}: the output folder, or a folder above it, is a file"
            raise BatchError(msg)
    elif out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        msg = f"{os.fspath(out_dir)}: the output folder is a file"
        raise BatchError(msg)
    if kind != "info":
        problem = ext_problem(ext)
        if problem:
            msg = f"extension {ext!r}: {problem}"
            raise BatchError(msg)
    if kind == "encode":
        problem = kpal_name_problem(f"x{ext}")
        if problem:
            msg = f"extension {ext!r}: {problem}"
            raise BatchError(msg)
    rejected: list[Path] = []
    files = collect(paths, recursive=recursive, wanted=wanted, rejected=rejected,
                    skip=None if out_dir is None or is_url(os.fspath(out_dir)) else out_dir)
    if not files:
        hint = "" if recursive else " (-r, or recursive=True, takes sub-folders too)"
        skipped = (f": {_count(rejected)} skipped, {skip_reason(rejected, wanted)}"
                   if rejected else "")
        msg = f"{', '.join(paths)}: no input file found{skipped}{hint}"
        raise BatchError(msg)
    jobs: list[Job] = []
    outputs: dict[str, str] = {}
    pillow = pillow_settings()
    for src, relative in files:
        src = str(src)
        out = None
        if kind != "info":
            out = _output_path(src, relative, out_dir, ext)
            if _identity(out) == _identity(src):
                msg = f"{out}: output is the input file; choose another extension or folder"
                raise BatchError(msg)
            other = outputs.get(_identity(out))
            if other is not None:
                msg = (f"{other} and {src} would both be written to {out}; nothing was "
                       "written: rename one of them, or give them separately with "
                       "different output folders")
                raise BatchError(msg)
            outputs[_identity(out)] = src
        jobs.append(Job(kind, src, out, options=options, fmt=fmt, force=force,
                        background=background, pillow=pillow, command_line=command_line))
    if kind != "info" and out_dir is not None and not is_url(os.fspath(out_dir)):
        _check_output_folder(Path(out_dir))
        # The mirrored sub-folders: a file in the way of one fails now, not per file.
        for folder in sorted({Path(job.output).parent for job in jobs} - {Path(out_dir)}):
            _check_folder_path(folder)
    for job in jobs:
        if job.output is not None and not is_url(job.output) and os.path.isdir(job.output):
            msg = f"{job.output}: the output is a folder; remove it or choose another extension"
            raise OutputFolderError(msg)
    return jobs


def ext_problem(ext: str) -> str | None:
    """Why ``ext`` cannot replace an input's extension in an output's name, or None.

    It must be one file name's ending: no folder, and a file extension of
    its own (``.kpal``, or a suffix that ends with one, ``-k16.kpal``).

    Examples
    --------
    >>> ext_problem(".kpal") is None and ext_problem("-fs8.kpal") is None
    True
    >>> ext_problem("kpal")
    'it leaves the outputs without a file extension (photo → photokpal); start it with a dot: .kpal'
    >>> ext_problem("/x.kpal")
    "it cannot hold a path separator ('/'); write into another folder (-o, or out_dir=)"
    """
    if not ext:
        return "it is empty; give an extension such as .kpal"
    separators = {"/", os.sep, os.altsep} - {None}
    found = next((c for c in ext if c in separators), None)
    if found is not None:
        return (f"it cannot hold a path separator ({found!r}); write into another folder "
                "(-o, or out_dir=)")
    if "\0" in ext:
        return "it cannot hold a NUL character"
    if not PurePosixPath(f"a{ext}").suffix:
        hint = f"; start it with a dot: .{ext}" if ext.isalnum() else ""
        return f"it leaves the outputs without a file extension (photo → photo{ext}){hint}"
    return None


def _check_folder_path(folder: Path) -> Path:
    """The nearest part of ``folder`` that exists (itself or a parent), which must be a folder."""
    existing = next((p for p in (folder, *folder.parents) if os.path.lexists(p)), Path("."))
    if not existing.is_dir():
        msg = f"{folder}: cannot create the output folder: {existing} is a file"
        raise OutputFolderError(msg)
    return existing


def _check_output_folder(folder: Path) -> None:
    """Check now that ``folder`` can be created and take new files: fail once, not per file.

    Nothing is created: the nearest folder that exists (``folder`` itself or
    a parent) must be a folder and take a new file, probed with an unnamed
    temporary file (O_TMPFILE on Linux), which also catches read-only
    filesystems and, as root, folders that permission bits would not stop.
    """
    existing = _check_folder_path(folder)
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".kpal-probe.", suffix=".tmp"):
            pass
    except OSError as e:
        what = "cannot write in the output folder" if existing == folder else (
            f"cannot create the output folder in {existing}")
        msg = f"{folder}: {what}: {e.strerror or e}"
        raise OutputFolderError(msg) from None


#: Why a name would mislead as a .kpal file's (shared with :func:`kpal.codec.save`).
kpal_name_problem = codec.kpal_name_problem


# ------------------------------------------------------------------ one file
def run_job(job: Job) -> Result:
    """Do one file's work and return its record; never raises for a bad file.

    This is what runs in a worker process or as a Dask task.
    """
    start = time.perf_counter()
    try:
        _take_pillow_settings(job.pillow)
        fields = _WORK[job.kind](job)
    except MemoryError:
        fields = {"error": f"{job.path}: out of memory"}
    except _InfoProblem as e:
        fields = {"error": str(e), "bytes_in": e.bytes_in, "report": e.report}
    except _Failure as e:
        fields = {"error": str(e), "bytes_in": e.bytes_in, "target_missed": e.target_missed}
    except Exception as e:  # noqa: BLE001 - one file's unexpected failure must not end the batch
        fields = {"error": f"{job.path}: {type(e).__name__}: {e}"}
    return Result(path=job.path, output=job.output, seconds=time.perf_counter() - start,
                  **fields)


class _Failure(Exception):
    """One file failed: the message is its one-line error."""

    def __init__(self, message: str, bytes_in: int = 0, target_missed: bool = False) -> None:
        super().__init__(message)
        self.bytes_in = bytes_in
        self.target_missed = target_missed


def _read(path: str, kpal: bool = False) -> bytes:
    """The bytes of ``path``; with ``kpal``, no more than its header implies
    (:func:`kpal.codec.read_bytes`: a file too long is refused unread)."""
    return _read_with(path, codec.read_bytes if kpal else None)


def _read_with(path: str, read: Callable[[IO[bytes]], T] | None) -> T | bytes:
    """``read`` applied to ``path`` opened (a local path or a URL); None: its bytes."""
    try:
        if is_url(path):
            fs, inner = _filesystem(path)
            if read is None:
                return fs.cat_file(inner)
            with fs.open(inner, "rb") as f:
                return read(f)
        with open(path, "rb") as f:
            return f.read() if read is None else read(f)
    except BatchError as e:
        raise _Failure(str(e)) from None
    except KpalError as e:
        raise _Failure(f"{path}: {e}") from None
    except FileNotFoundError:  # fsspec's has no strerror: its text is the bare path
        raise _Failure(f"{path}: cannot read: no such file") from None
    except OSError as e:
        raise _Failure(f"{path}: cannot read: {e.strerror or e}") from None


def _write(job: Job, data: bytes) -> None:
    if is_url(job.output):
        _write_url(job, data)
        return
    out = Path(job.output)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # e.g. a file made since the batch started, where a folder goes
        raise _Failure(f"{out.parent}: cannot create the folder: {e.strerror or e}") from None
    try:
        write_atomic(out, data, force=job.force)
    except FileExistsError:
        if _holds(out, data):
            return  # a retried task (its worker died after writing): already done
        raise _Failure(f"{out}: file exists ({job.overwrite_hint})") from None
    except OSError as e:
        raise _Failure(f"{out}: cannot write: {e.strerror or e}") from None


def _holds(path: Path, data: bytes) -> bool:
    """Whether the file at ``path`` holds exactly ``data``."""
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def _write_url(job: Job, data: bytes) -> None:
    """Write an fsspec URL: a temporary name beside it, then moved into place."""
    from uuid import uuid4

    url = job.output
    try:
        fs, target = _filesystem(url)
        if fs.exists(target):
            if not job.force:
                if fs.cat_file(target) == data:
                    return  # a retried task, already done
                raise _Failure(f"{url}: file exists ({job.overwrite_hint})")
        folder, _, name = target.rpartition("/")
        if folder:
            fs.makedirs(folder, exist_ok=True)
        temporary = f"{folder}/{temp_prefix(name)}{uuid4().hex[:8]}.tmp"
        try:
            fs.pipe_file(temporary, data)
            fs.mv(temporary, target)
        except BaseException:
            with contextlib.suppress(Exception):
                fs.rm(temporary)
            raise
    except BatchError as e:
        raise _Failure(str(e)) from None
    except OSError as e:
        raise _Failure(f"{url}: cannot write: {e.strerror or e}") from None


def _encode(job: Job) -> dict:
    data = _read(job.path)
    size = len(data)
    if not data:
        raise _Failure(f"{job.path}: file is empty")
    with recording() as caught:
        try:
            encoded = codec.encode_image(data, options=job.options)
        except UnidentifiedImageError:
            raise _Failure(f"{job.path}: not an image Pillow can read", size) from None
        except (KpalError, Image.DecompressionBombError) as e:
            choose = sys.modules.get("kpal.choose")  # imported when a target was given
            missed = choose is not None and isinstance(e, choose.QualityError)
            raise _Failure(f"{job.path}: {_strip_name(e, job.path)}", size, missed) from None
        except (OSError, SyntaxError, ValueError) as e:
            raise _Failure(f"{job.path}: cannot decode image: {e}", size) from None
    del data
    _write(job, encoded.data)
    _bomb_note(caught, encoded.header.n_pixels)
    return {"bytes_in": size, "bytes_out": len(encoded.data), "k": encoded.header.k,
            "psnr": encoded.psnr(), "notes": _notes(caught)}


def _bomb_note(caught: list[str], n_pixels: int) -> None:
    """Add Pillow's decompression-bomb warning to a file's notes when the filters hid it.

    Python shows a warning once per place and text under its default filter, so
    the second image of the same size in a process (or on a Dask worker) would
    lose it: the note must not depend on what the process did before.
    """
    limit = Image.MAX_IMAGE_PIXELS
    if limit is None or not limit < n_pixels <= 2 * limit:
        return
    if not any(message.startswith("Image size (") for message in caught):
        caught.append(codec.bomb_message(n_pixels, limit))


def _notes(caught: list[str], *more: str | None) -> tuple[str, ...]:
    """A record's notes: the warnings of its file (once each, one line each), then ``more``."""
    texts = [" ".join(message.split()) for message in caught] + [m for m in more if m]
    return tuple(dict.fromkeys(texts))


def _strip_name(error: Exception, path: str) -> str:
    # codec names an opened image "image" (or its path): the record names the file itself.
    text = str(error)
    for prefix in ("image: ", f"{path}: "):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


def _decode(job: Job) -> dict:
    data = _read(job.path, kpal=True)
    size = len(data)
    with recording() as caught:  # a large image's warning: a note
        try:
            im = codec.decode(data)
        except (KpalError, Image.DecompressionBombError) as e:
            raise _Failure(f"{job.path}: {e}", size) from None
    _bomb_note(caught, im.width * im.height)
    k = im.info.get("k")
    # Transparency onto the background, or white for formats without alpha (JPEG & co).
    im, note = outputs.for_format(
        im, job.fmt or "PNG", job.background, os.path.splitext(job.output or "")[1].lower(),
        background_option="--background" if job.command_line else "background=")
    image_bytes = _save_image(im, job.fmt or "PNG", job.output)
    _write(job, image_bytes)
    return {"bytes_in": size, "bytes_out": len(image_bytes), "k": k,
            "notes": _notes(caught, note)}


def _save_image(im: Image.Image, fmt: str, out: str) -> bytes:
    """``im`` in Pillow format ``fmt``; without its palette when the format takes none."""
    failure = None
    for image in outputs.save_attempts(im, fmt):
        buffer = io.BytesIO()
        try:
            image.save(buffer, format=fmt, **outputs.writer_options(fmt, image))
            return buffer.getvalue()
        except (OSError, ValueError, KeyError) as e:
            failure = " ".join(str(e).split()) or type(e).__name__
    raise _Failure(f"{out}: cannot write a {im.width}x{im.height} image as {fmt.upper()}: "
                   f"{failure}")


def _info(job: Job) -> dict:
    try:  # a file longer than its header implies is measured, not read to its end
        data, size = _read_with(job.path, codec.read_shown)
    except _Failure as e:  # still one JSON line for the file
        raise _InfoProblem(job.path, 0, {"file": job.path,
                                         "problem": str(e).removeprefix(f"{job.path}: ")}) \
            from None
    with recording() as caught:  # a large image's warning: a note
        try:
            report = codec.inspect(data, file_bytes=size)
        except (KpalError, Image.DecompressionBombError) as e:
            problem = str(e)
            raise _InfoProblem(job.path, size, {"file": job.path, "problem": problem}) from None
    header = report["header"]
    _bomb_note(caught, header["width"] * header["height"])
    fields = {"bytes_in": size, "k": report["header"]["k"],
              "report": {"file": job.path, **report}, "notes": _notes(caught)}
    if report["problem"]:
        fields["error"] = f"{job.path}: {report['problem']}"
    return fields


class _InfoProblem(_Failure):
    """A file ``info`` cannot describe at all: its record still carries a report."""

    def __init__(self, path: str, bytes_in: int, report: dict) -> None:
        super().__init__(f"{path}: {report['problem']}", bytes_in)
        self.report = report


_WORK = {"encode": _encode, "decode": _decode, "info": _info}


# ------------------------------------------------------------------ running many
#: In a worker: the signal that asked it to stop (0: none), and whether a task is running.
_stopping = 0
_in_task = False


def _terminated(signum, frame) -> None:
    """SIGTERM or SIGHUP in a worker: unwind the task in progress, then leave.

    Unwinding lets a write in progress remove its temporary file; an idle
    worker has nothing to clean up and leaves at once.
    """
    global _stopping
    _stopping = _stopping or signum
    if not _in_task:
        os._exit(128 + signum)
    raise SystemExit(128 + signum)


def _worker_task(job: Job) -> Result:
    """:func:`run_job` as a worker process runs it: a stop signal ends the process after it."""
    global _in_task
    _in_task = True
    try:
        if _stopping:
            raise SystemExit(128 + _stopping)
        if _batch_stopped is not None and _batch_stopped.value:
            # Queued before the batch stopped: not started (nobody reads this record).
            return Result(path=job.path, output=job.output, error="not started: stopped")
        return run_job(job)
    finally:
        _in_task = False
        if _stopping:  # the pool would keep this worker waiting for work that never comes
            os._exit(128 + _stopping)


_thread_limits: Any = None
#: The batch's stop flag (a shared byte), set when it stops (:func:`_run_local`).
_batch_stopped: Any = None


def _init_worker(batch_pid: int, compiled: bool = False, stop: Any = None) -> None:
    """Set up a worker process: Ctrl-C is the parent's business, one thread per worker.

    With ``compiled`` (a batch that encodes), the compiled k-means kernels are
    loaded before the first task (see :func:`_load_compiled`).
    """
    global _thread_limits, _stopping, _in_task, _batch_stopped
    _stopping, _in_task, _batch_stopped = 0, False, stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # blocked since its start (_start_fork_server)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _terminated)
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, "1"))
    # Every file's warnings go to its record (recording()): Pillow's too, each time.
    warnings.simplefilter("always")
    with contextlib.suppress(ImportError):  # numpy's BLAS is loaded already: limit it now
        from threadpoolctl import threadpool_limits

        _thread_limits = threadpool_limits(1)
    threading.Thread(target=_watch_batch, args=(batch_pid,), daemon=True,
                     name="kpal-watch-batch").start()
    if compiled:
        import multiprocessing

        # A worker starts no processes. Under a fork-like default start method
        # numba guards its thread pool's start with a process lock (a named
        # semaphore) that a worker stopped by a signal would leave behind, and
        # the resource tracker would then warn about it on the terminal.
        multiprocessing.set_start_method("spawn", force=True)
        _load_compiled()


#: Encodes a batch runs in its own process before it loads the compiled kernels there.
IN_PROCESS_COMPILED_FILES = 4
_compiled_loaded = False
#: A threads-based Dask worker runs several tasks at once: one loads, the others wait.
_compiled_lock = threading.Lock()


def _load_compiled() -> None:
    """Load the compiled k-means kernels in this long-lived process, once.

    A single ``kpal encode`` of a small image never starts numba (about 1 s
    and 130 MiB, more than the kernels save on one such image). A worker
    encodes many images, so it pays that once and then takes the compiled
    path for every image, whatever its size: about 0.17 s of CPU per 0.34 MP
    photo at k = 64 instead of 0.45 s on the numpy path (bench/bench_batch.py's
    corpus). The output is the same either way.
    """
    global _compiled_loaded
    with _compiled_lock:  # a second task must not find numba half imported
        if not _compiled_loaded:
            from kpal.cluster import load_compiled

            # Only a speed-up: if numba fails here, every image takes the numpy path.
            with contextlib.suppress(Exception):
                load_compiled()
            _compiled_loaded = True


def _run_compiled(job: Job, task_threads: dict[str, int] | None = None) -> Result:
    """:func:`run_job` as a Dask task: the worker's process loads the compiled kernels once.

    ``task_threads`` gives, for each host, how many tasks its workers run at
    once: the compiled kernels of this task take that share of the host's
    cores (see :func:`_share_of_cores`).
    """
    if job.kind == "encode":
        _load_compiled()
        _share_of_cores(task_threads or {})
    return run_job(job)


def _share_of_cores(task_threads: dict[str, int]) -> None:
    """Run this thread's compiled kernels on its share of the host's cores.

    numba runs its parallel loops on every core by default, in each of a
    host's Dask workers at once: two single-threaded workers on two cores ran
    four kernel threads. A process-pool worker runs one (``NUMBA_NUM_THREADS``
    is set for it); a Dask task takes the host's cores divided by the number
    of tasks its workers run at once (at least one). numba's setting is per
    thread, so it is made in the task's thread, every task. The output does
    not depend on it.
    """
    numba = sys.modules.get("numba")
    if getattr(numba, "set_num_threads", None) is None:  # not loaded: no kernel threads
        return
    try:
        from distributed import get_worker
        from distributed.comm import get_address_host

        worker = get_worker()
        own = getattr(getattr(worker, "state", worker), "nthreads", 1)  # older distributed
        sharing = task_threads.get(get_address_host(worker.address), own)
    except (ImportError, ValueError, AttributeError):  # not inside a Dask worker
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with contextlib.suppress(ValueError):  # more than numba started with: it keeps its own
        numba.set_num_threads(max(1, min((cores or 1) // max(1, sharing),
                                         numba.config.NUMBA_NUM_THREADS)))


def _task_threads(nthreads: dict[str, int]) -> dict[str, int]:
    """The number of tasks each host's Dask workers run at once, from each worker's threads."""
    from distributed.comm import get_address_host

    threads: dict[str, int] = {}
    for address, count in nthreads.items():
        host = get_address_host(address)
        threads[host] = threads.get(host, 0) + count
    return threads


def _watch_batch(batch_pid: int) -> None:
    """Stop this worker (as SIGTERM would) once the batch's process is gone.

    A batch killed outright (SIGKILL, out of memory) cannot shut its pool
    down; its workers would otherwise wait for work forever (and, started by
    a fork server, keep that server alive too).
    """
    while True:
        time.sleep(0.5)
        try:
            os.kill(batch_pid, 0)
        except OSError:  # gone (or the number reused by another user's process)
            break
    os.kill(os.getpid(), signal.SIGTERM)


@contextlib.contextmanager
def _single_threaded_children():
    """Start child processes with one BLAS/OpenMP thread, before they import numpy."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, "1"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _start_fork_server(context) -> None:
    """Start the pool's fork server now, with SIGINT blocked in it from its first instruction.

    A process inherits its parent's signal mask. CPython's fork server only
    ignores SIGINT once its preload imports are done: a Ctrl-C while it
    starts Python and imports numba and the kernels (a second or more)
    ended it with a traceback after ``kpal: error: interrupted``. Started
    blocked, it cannot be interrupted there; it keeps SIGINT blocked (it
    would ignore it anyway), and so do the workers it forks until they
    ignore it (:func:`_init_worker`). CPython starts its resource tracker
    the same way. This process blocks SIGINT only while it spawns the
    server (no waiting), and a Ctrl-C meanwhile is delivered right after.
    """
    if context.get_start_method() != "forkserver" or not hasattr(signal, "pthread_sigmask"):
        return
    from multiprocessing import forkserver, resource_tracker

    # The tracker first: starting it unblocks SIGINT in this thread when it is done.
    resource_tracker.ensure_running()
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        forkserver.ensure_running()  # a server already running is kept
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)


#: Signals held back while a worker starts (:func:`_signals_deferred`).
_DEFERRED = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                  if hasattr(signal, name))


@contextlib.contextmanager
def _signals_deferred():
    """Hold a Ctrl-C (or SIGTERM, SIGHUP) back while a worker starts; raise it after.

    Starting a worker waits for the fork server to finish loading. Cut in
    half by a signal, the worker would read its set-up after this process had
    left and print a traceback of its own. A second signal is raised at once,
    should that start never end. Only the main thread handles signals: from
    another one, nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous: dict[int, object] = {}

    def restore() -> None:
        for signum, handler in previous.items():  # None: set outside Python, the default
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        previous.clear()

    def defer(signum, frame) -> None:
        received.append(signum)
        if len(received) == 2:  # the user will not wait
            restore()
            signal.raise_signal(signum)

    for signum in _DEFERRED:
        previous[signum] = signal.signal(signum, defer)
    try:
        yield
    finally:
        restore()
        if len(received) == 1:
            signal.raise_signal(received[0])  # now, to the handler it was meant for


def _context(compiled: bool = False):
    """The start method of worker processes: forkserver where there is one, else spawn.

    With ``compiled`` (a batch that encodes), a fork server started now also
    loads the compiled kernels once, and its workers share them (see
    ``kpal._batch_server``).
    """
    import multiprocessing

    # Never fork: a forked child inherits the parent's threads' locks (and BLAS state).
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # numpy and kpal imported once; a server already running keeps its modules.
        context.set_forkserver_preload(["kpal.batch", "kpal._batch_server"] if compiled
                                       else ["kpal.batch"])
        return _WithoutMain(context)
    return _WithoutMain(multiprocessing.get_context("spawn"))


class _WithoutMain:
    """A multiprocessing context whose processes do not import the caller's ``__main__``.

    See :mod:`kpal._workers`; everything but ``Process`` is the context's own.
    """

    def __init__(self, context) -> None:
        from kpal import _workers

        self._context = context
        self.Process = _workers.process_class(context.get_start_method())

    def __getattr__(self, name: str):
        return getattr(self._context, name)


def _lost(job: Job, error: BaseException, since: int | None = None) -> Result:
    """The record of a job whose worker's result never came back.

    With ``since`` (the batch's start, ns), a job that was in progress when the
    pool broke and whose output was written since is whole (outputs are
    renamed into place): its record says so, without the figures the worker
    took with it.
    """
    if (since is not None and isinstance(error, cf.process.BrokenProcessPool)
            and job.output is not None and not is_url(job.output)):
        with contextlib.suppress(OSError):
            written = os.stat(job.output)
            if written.st_mtime_ns >= since and os.path.isfile(job.output):
                return Result(path=job.path, output=job.output,
                              bytes_in=os.path.getsize(job.path), bytes_out=written.st_size,
                              notes=("written whole, but its figures were lost: a worker "
                                     "process died (killed, or out of memory) as it finished",))
        # A worker killed while it wrote could not remove its temporary file: the pool's
        # workers have stopped by now, so this batch's temporary file of that name goes.
        real = Path(job.output).resolve()
        pattern = os.path.join(glob.escape(str(real.parent)), glob.escape(temp_prefix(real.name)))
        for leftover in glob.glob(pattern + "*.tmp"):
            with contextlib.suppress(OSError):
                if os.stat(leftover).st_mtime_ns >= since:
                    os.remove(leftover)
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, cf.process.BrokenProcessPool):
        what = "not encoded or not finished" if job.kind == "encode" else "not done"
        text = f"{what}: a worker process died (killed, or out of memory), and the pool stopped"
    return Result(path=job.path, output=job.output, error=f"{job.path}: {text}")


def _url_is_file(fs: Any, inner: str) -> bool:
    """Whether an output folder's URL, or a folder above it, is a file (when it can be asked)."""
    folder = PurePosixPath(inner.rstrip("/") or "/")
    try:
        return any(fs.isfile(str(p)) for p in (folder, *folder.parents)
                   if str(p) not in ("/", "."))
    except Exception:  # noqa: BLE001 - a store that cannot say: the writes will
        return False


def _in_memory(path: str | None) -> bool:
    return path is not None and path.startswith("memory://")


def _run_local(todo: list[Job], workers: int, *, asked: bool = True) -> Iterator[Result]:
    encodes = sum(job.kind == "encode" for job in todo)
    import multiprocessing

    if workers > 1 and multiprocessing.current_process().daemon:
        # Inside a multiprocessing.Pool worker, which may not start processes of its own:
        # news only to a caller who asked for several (the default adapts silently).
        if asked:
            warn(f"this process is a daemonic worker, which cannot start worker "
                 f"processes: the {len(todo)} files run here, one at a time")
        workers = 1
    if workers > 1 and any(_in_memory(job.path) or _in_memory(job.output) for job in todo):
        # fsspec's memory:// holds its files in this process: a worker would find none.
        if asked:
            warn(f"memory:// files exist only in this process: the {len(todo)} files run "
                 "here, one at a time")
        workers = 1
    if workers == 1 or len(todo) == 1:
        if encodes >= IN_PROCESS_COMPILED_FILES:
            _load_compiled()
        for job in todo:  # in this process: Ctrl-C unwinds the write in progress
            yield run_job(job)
        return
    waiting = iter(todo)
    started = time.time_ns()
    context = _context(encodes > 1)
    with _single_threaded_children():
        _start_fork_server(context)
        # Set on Ctrl-C: the tasks the pool has already queued for its workers, which
        # cancel() cannot reach, then return at once (shared memory, no semaphore).
        stop = context.RawValue("b", 0)
        executor = cf.ProcessPoolExecutor(max_workers=min(workers, len(todo)),
                                          mp_context=context,
                                          initializer=_init_worker,
                                          initargs=(os.getpid(), encodes > 1, stop))
        in_flight: dict[cf.Future, Job] = {}

        broken: list[BaseException] = []

        def submit_next() -> Result | None:
            job = next(waiting, None)
            if job is None:
                return None
            try:
                with _signals_deferred():  # the worker it may start
                    in_flight[executor.submit(_worker_task, job)] = job
            except cf.process.BrokenProcessPool as e:
                broken.append(e)
                return _lost(job, e)
            return None

        try:
            for _ in range(workers * IN_FLIGHT_PER_WORKER):
                lost = submit_next()
                if lost is not None:
                    yield lost
            while in_flight:
                done, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    job = in_flight.pop(future)
                    try:
                        result = future.result()
                    except cf.process.BrokenProcessPool as e:
                        if not broken:  # the other workers stop, then the files are final
                            executor.shutdown(wait=True)
                        broken.append(e)
                        result = _lost(job, e, since=started)
                    lost = submit_next()
                    yield result
                    if lost is not None:
                        yield lost
            # A broken pool (a worker killed: out of memory, SIGKILL) runs nothing more:
            # every file not handed out yet still gets its record, as failed.
            for job in waiting if broken else ():
                yield _lost(job, broken[0])
        except BaseException:
            # Ctrl-C, SIGTERM, or the caller stopped: start nothing more, let the images
            # in progress finish (workers ignore SIGINT), so every output is whole or absent.
            stop.value = 1
            for future in in_flight:
                future.cancel()
            executor.shutdown(wait=True, cancel_futures=True)
            raise
        executor.shutdown(wait=True)


def _task_key(job: Job, index: int, token: str) -> str:
    return f"kpal-{job.kind}-{Path(job.path).name}-{token}-{index}"


def _run_dask(todo: list[Job], client) -> Iterator[Result]:
    from uuid import uuid4

    from distributed import wait

    token = uuid4().hex[:12]
    address = getattr(client.scheduler, "address", None)  # None once the client is closed
    nthreads = client.nthreads()
    threads = sum(nthreads.values())
    if not threads:
        msg = (f"the Dask scheduler {client.scheduler.address} has no workers: start some "
               "(dask worker ADDRESS), then run the batch again")
        raise BatchError(msg)
    task_threads = _task_threads(nthreads)
    waiting = enumerate(todo)
    in_flight: dict[Any, Job] = {}  # in submission order
    not_started = len(todo)

    def submit_next() -> None:
        nonlocal not_started
        index, job = next(waiting, (None, None))
        if job is None:
            return
        # Paths and options go out, a small Result comes back: no pixels through the scheduler.
        # A worker's working folder is not the caller's: local paths go out absolute.
        future = client.submit(_run_compiled, _absolute(job), task_threads,
                               key=_task_key(job, index, token), pure=False)
        in_flight[future] = job
        not_started -= 1

    try:
        for _ in range(threads * IN_FLIGHT_PER_WORKER):
            submit_next()
        while in_flight:
            # A bounded wait, so that a client closed under the batch, or one whose
            # scheduler died (then "connecting", its futures cancelled), is noticed
            # instead of waited on for ever.
            try:
                done = wait(list(in_flight), timeout=_DASK_POLL_SECONDS,
                            return_when="FIRST_COMPLETED").done
            except TimeoutError:
                done = set()
            except (Exception, asyncio.CancelledError):  # noqa: BLE001 - futures cancelled
                # (a scheduler restarted or lost): those are done, each its own record
                done = {f for f in in_flight if f.done()}
                if not done and client.status == "running":
                    raise
            for future in [f for f in in_flight if f in done]:
                if client.status != "running" and future.status == "cancelled":
                    continue  # cancelled with the scheduler: not done, counted below
                job = in_flight.pop(future)
                try:
                    result = _as_named(future.result(), job)
                # e.g. KilledWorker, or cancelled (asyncio's is a BaseException): this file failed
                except (Exception, asyncio.CancelledError) as e:  # noqa: BLE001
                    result = _lost(job, e)
                with contextlib.suppress(Exception):  # a closing client
                    future.release()
                if client.status == "running":
                    submit_next()
                yield result
            if client.status != "running":
                raise SchedulerLost(_scheduler_lost(client, address,
                                                    len(in_flight) + not_started))
        if not_started:  # cannot happen while the client runs: never leave files unsaid
            raise SchedulerLost(_scheduler_lost(client, address, not_started))
    except BaseException:
        with contextlib.suppress(Exception):  # a closed client cannot cancel: nothing runs
            client.cancel(list(in_flight))
        raise


#: How often a Dask batch checks that its client is still connected while it waits.
_DASK_POLL_SECONDS = 1.0


def _scheduler_lost(client: Any, address: str | None, left: int) -> str:
    """The one line a batch ends with when its Dask client closes, or loses its scheduler."""
    what = ("the Dask client was closed" if client.status in ("closing", "closed")
            else f"lost the Dask scheduler {address or ''} (the client is {client.status})")
    return (f"{' '.join(what.split())}: {left} file{'' if left == 1 else 's'} not done; run "
            "the batch again with --skip-existing (skip_existing=True) to finish it")


def _absolute(job: Job) -> Job:
    """``job`` with its local input and output paths absolute (URLs as they are)."""
    def absolute(path: str | None) -> str | None:
        return path if path is None or is_url(path) else os.path.abspath(path)

    return dataclasses.replace(job, path=absolute(job.path), output=absolute(job.output))


def _as_named(result: Result, job: Job) -> Result:
    """A worker's record with the paths spelled as the caller gave them."""
    renamed = dataclasses.replace(result, path=job.path, output=job.output)
    if renamed.report is not None and "file" in renamed.report:  # info's record names it too
        renamed = dataclasses.replace(renamed, report={**renamed.report, "file": job.path})
    if renamed.error is not None:  # the message names the file too
        renamed = dataclasses.replace(renamed, error=renamed.error.replace(
            os.path.abspath(job.path) if not is_url(job.path) else job.path, job.path))
    return renamed


def _check_client(client: Any) -> None:
    """Refuse what is not a connected ``distributed.Client``, naming the problem."""
    if not hasattr(client, "submit") or not hasattr(client, "nthreads"):
        msg = f"client={client!r} must be a distributed.Client (or a scheduler address)"
        raise BatchError(msg)
    status = getattr(client, "status", "running")
    if status != "running":
        msg = f"the Dask client is {status}: connect a new one (distributed.Client(address))"
        raise BatchError(msg)


def _started(planned: list[Job], jobs: int | None, client: Any, *,
             skip_existing: bool = False) -> Iterator[Result]:
    """:func:`run`, with a bad ``client`` refused now, not at the first record."""
    if client is not None and not isinstance(client, str):
        _check_client(client)
    return run(planned, jobs, client=client, skip_existing=skip_existing)


def run(jobs: Iterable[Job], workers: int | None = None, *, client=None,
        skip_existing: bool = False) -> Iterator[Result]:
    """Run jobs in a local process pool or on a Dask cluster; yield each file's record.

    Parameters
    ----------
    jobs : iterable of Job
        See :func:`plan`.
    workers : int, optional
        Worker processes (default: the number of cores); 1 runs in this process.
        Ignored with ``client``.
    client : distributed.Client or str, optional
        Run each file as a Dask task on this client's cluster; a scheduler
        address (``"tcp://scheduler:8786"``, as ``--dask`` takes) is connected
        to for the run and closed after it.
    skip_existing : bool, default False
        A job whose output exists is not run; its record says ``skipped``.

    Yields
    ------
    Result
        One per job, in the order they finish (skipped ones first).
    """
    if isinstance(client, str):
        with _connected(client) as connected:
            yield from run(jobs, workers, client=connected, skip_existing=skip_existing)
        return
    if client is not None:
        _check_client(client)
    todo = []
    for job in jobs:
        if skip_existing and job.output is not None and exists(job.output):
            yield Result(path=job.path, output=job.output, skipped=True)
        else:
            todo.append(job)
    if not todo:
        return
    if client is not None:
        yield from _run_dask(todo, client)
    else:
        yield from _run_local(todo, workers or default_jobs(), asked=workers is not None)


class SchedulerError(BatchError):
    """The Dask scheduler cannot be reached (an I/O failure: exit code 1 on the command line)."""


class SchedulerLost(SchedulerError):
    """The Dask client closed, or lost its scheduler, during a batch: the records made
    so far stand, the files not done are counted in the message."""


def connect(address: str, name: str = "client"):
    """A Dask client of the scheduler at ``address``, as ``--dask`` and ``client=`` take it.

    Parameters
    ----------
    address : str
        E.g. ``"tcp://scheduler:8786"``.
    name : str, default "client"
        What asked for it, for the message when Dask is not installed.

    Raises
    ------
    BatchError
        Dask (``kpal[dask]``) is not installed.
    SchedulerError
        The scheduler does not answer within 10 s.
    """
    try:
        from distributed import Client
    except ImportError:
        msg = f'{name} needs Dask: pip install "kpal[dask]"'
        raise MissingExtraError(msg) from None
    if not isinstance(address, str) or not address.strip():
        msg = f"{name}: give the Dask scheduler's address, e.g. tcp://host:8786"
        raise BatchError(msg)
    made: dict[str, Any] = {}
    given_up = threading.Event()

    def make() -> None:
        try:
            client = Client(address, timeout=f"{CONNECT_SECONDS}s")
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            made["error"] = e
            return
        if given_up.is_set():  # connected after the caller gave up: nobody will close it
            with contextlib.suppress(Exception):
                client.close()
        made["client"] = client

    # Client's timeout bounds the TCP connection, not Dask's handshake: a port that
    # answers something else (a web server) would be waited on for ever, so the
    # client is made on a thread that is given up on.
    maker = threading.Thread(target=make, name="kpal-dask-connect", daemon=True)
    maker.start()
    try:
        maker.join(CONNECT_SECONDS + 5)
    finally:  # on time, or Ctrl-C: a client that connects later closes itself
        if maker.is_alive():
            given_up.set()
    if maker.is_alive():
        msg = (f"{address}: cannot reach the Dask scheduler: no Dask handshake within "
               f"{CONNECT_SECONDS + 5} s (is it a Dask scheduler's address?)")
        raise SchedulerError(msg)
    error = made.get("error")
    if isinstance(error, MemoryError):  # a length read from a banner that is not Dask's
        msg = f"{address}: cannot reach the Dask scheduler: not a Dask scheduler (bad handshake)"
        raise SchedulerError(msg) from None
    # TypeError: tls:// without Dask's security settings, say
    if isinstance(error, (OSError, TimeoutError, ValueError, TypeError)):
        msg = f"{address}: cannot reach the Dask scheduler: {error}"
        raise SchedulerError(msg) from None
    if error is not None:
        raise error
    return made["client"]


#: Seconds a connection to a Dask scheduler may take (Client's own timeout).
CONNECT_SECONDS = 10


@contextlib.contextmanager
def _connected(address: str) -> Iterator[Any]:
    """:func:`connect`, the client closed on leaving."""
    client = connect(address, f"client={address!r}")
    try:
        yield client
    finally:
        client.close()


def _check_workers(jobs: int | None, **flags: object) -> None:
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        msg = f"jobs={jobs!r} must be a positive integer"
        raise BatchError(msg)
    for name, value in flags.items():  # force="false" would be true
        if not isinstance(value, bool):
            msg = f"{name}={value!r} must be True or False"
            raise TypeError(msg)
    if flags.get("force") and flags.get("skip_existing"):
        msg = "force and skip_existing contradict each other: give one"
        raise BatchError(msg)


def _as_list(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    if isinstance(paths, (str, os.PathLike, bytes)):  # one path (bytes: as os.fsdecode takes it)
        return [os.fsdecode(paths)]
    return [os.fsdecode(p) for p in paths]


def image_file(path: Path) -> bool:
    """Whether a file found in a folder is an image to encode: Pillow reads its extension."""
    Image.init()
    ext = path.suffix.lower()
    return ext != ".kpal" and ext in Image.registered_extensions()


def kpal_file(path: Path) -> bool:
    """Whether a file found in a folder is a ``.kpal`` file."""
    return path.suffix.lower() == ".kpal"


def skip_reason(rejected: list[Path], wanted: Callable[[Path], bool] | None) -> str:
    """Why the files of folders and patterns that ``wanted`` turned down were skipped.

    Examples
    --------
    >>> skip_reason([Path("a.kpal"), Path("b.kpal")], image_file)
    'they are .kpal files already'
    >>> skip_reason([Path("notes.txt")], kpal_file)
    'it is not a .kpal file'
    """
    one = len(rejected) == 1
    if wanted is image_file and all(kpal_file(p) for p in rejected):
        return "it is a .kpal file already" if one else "they are .kpal files already"
    if wanted is image_file:
        return ("it is" if one else "they are") + " not images Pillow reads, or .kpal files"
    if wanted is kpal_file:
        return "it is not a .kpal file" if one else "they are not .kpal files"
    return "not taken"


def palette_read_once(opts: EncodeOptions) -> EncodeOptions:
    """``opts`` with a palette file (``palette="x.gpl"``) replaced by its colours.

    A bad palette file fails here, not once per file; its notes (repeated
    entries, a profile applied) are said once, and every file gets the same
    colours, read and converted once.
    """
    if not isinstance(opts.palette, str):
        return opts
    colours = codec.given_palette(opts.palette)
    return opts.replace(palette=tuple(tuple(int(v) for v in entry) for entry in colours))


def encode_many(paths, out_dir=None, jobs: int | None = None, *, recursive: bool = False,
                skip_existing: bool = False, force: bool = False, client=None,
                options: EncodeOptions | None = None, ext: str = ".kpal",
                **option_keywords) -> Iterator[Result]:
    """Encode many images, each independently, in parallel; yield one record per file.

    Parameters
    ----------
    paths : str, path or iterable of them
        Files, folders and glob patterns (see :func:`collect`); a folder
        contributes the files whose extension Pillow reads.
    out_dir : path, optional
        Root of the output tree, which mirrors the inputs' tree (created as
        needed). Default: each output beside its input.
    jobs : int, optional
        Worker processes (default: the number of cores).
    recursive : bool, default False
        Descend into sub-folders (and let ``**`` span folders in patterns).
    skip_existing : bool, default False
        Leave files whose output exists alone (to resume a batch).
    force : bool, default False
        Replace existing outputs; otherwise such a file fails, unless it
        already holds exactly the bytes it would get (so a task retried after
        its worker died succeeds).
    client : distributed.Client or str, optional
        Run the files as tasks on a Dask cluster (a client, or its
        scheduler's address); paths must be reachable from its workers.
    options : EncodeOptions, optional
        The encode options of every file, with ``option_keywords`` on top.
    ext : str, default ".kpal"
        The outputs' extension, or a suffix replacing the input's extension.
    **option_keywords
        Encode options by name (``k=64``, ``seed=3``, ...; see :func:`kpal.encode`).

    Returns
    -------
    iterator of Result
        One record per input file, in the order they finish. Options and
        inputs are checked when this is called, before any file is read.

    Raises
    ------
    OptionError
        An unknown or invalid encode option.
    BatchError
        No input file, a missing path, or two inputs with the same output.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from PIL import Image
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(folder / "a.png")
    >>> [(r.k, r.error) for r in encode_many(folder, folder / "out", jobs=1, k=4)]
    [(4, None)]
    >>> sorted(p.name for p in (folder / "out").iterdir())
    ['a.kpal']
    """
    opts = codec.encode_options(None, options, option_keywords)
    _check_workers(jobs, recursive=recursive, skip_existing=skip_existing, force=force)
    opts = palette_read_once(opts)
    planned = plan("encode", _as_list(paths), out_dir, ext=ext, recursive=recursive,
                   wanted=image_file, options=opts, force=force)
    return _started(planned, jobs, client, skip_existing=skip_existing)


def decode_many(paths, out_dir=None, jobs: int | None = None, *, fmt: str = "PNG",
                ext: str | None = None, recursive: bool = False, skip_existing: bool = False,
                force: bool = False, client=None, background=None) -> Iterator[Result]:
    """Decode many ``.kpal`` files to image files; yield one record per file.

    Parameters are those of :func:`encode_many`, with ``fmt`` the Pillow
    format to write (default PNG), ``ext`` defaulting to the format's usual
    extension (``.png``) and ``background`` a colour (as the ``background``
    encode option takes it) that transparency is flattened onto. Folders
    contribute their ``.kpal`` files.
    """
    _check_workers(jobs, recursive=recursive, skip_existing=skip_existing, force=force)
    if background is not None:
        background = options_module.check("background", background)
    fmt, ext = output_format(fmt, ext)
    planned = plan("decode", _as_list(paths), out_dir, ext=ext, recursive=recursive,
                   wanted=kpal_file, fmt=fmt, force=force, background=background)
    return _started(planned, jobs, client, skip_existing=skip_existing)


def info_many(paths, jobs: int | None = None, *, recursive: bool = False,
              client=None) -> Iterator[Result]:
    """Describe many ``.kpal`` files; yield one record per file, its ``report`` filled in.

    Parameters are those of :func:`encode_many`. A file that cannot be
    described still has a report, ``{"file": ..., "problem": ...}``.
    """
    _check_workers(jobs, recursive=recursive)
    planned = plan("info", _as_list(paths), None, ext="", recursive=recursive,
                   wanted=kpal_file)
    return _started(planned, jobs, client)


#: Extensions Pillow writes as one format (PPM), each a different kind of netpbm file.
NETPBM_SUFFIXES = (".pbm", ".pgm", ".ppm", ".pnm")


def netpbm_disagrees(given: str | None, suffix: str | None) -> bool:
    """Whether a format given as ``.pgm`` or ``.pbm`` and a name's other netpbm ``suffix``
    disagree (grey, bilevel, colour); PPM is also Pillow's name for all of them."""
    return given in (".pgm", ".pbm") and suffix in NETPBM_SUFFIXES and suffix != given


def output_format(fmt: str | None, ext: str | None) -> tuple[str, str]:
    """The Pillow format and the extension of decoded images, from either or both.

    Raises
    ------
    BatchError
        An unknown format, an extension Pillow does not know and no format, an
        extension that means another format than ``fmt`` (``.png`` with
        JPEG), or an ``ext`` that is not a file extension (see :func:`ext_problem`).
    """
    problem = None if ext is None else ext_problem(ext)
    if problem:
        msg = f"extension {ext!r}: {problem}"
        raise BatchError(msg)
    Image.init()
    known = Image.registered_extensions()
    if fmt is None:
        suffix = Path(f"x{ext or '.png'}").suffix.lower()
        fmt = known.get(suffix)
        if fmt is None:
            msg = f"unknown image extension {suffix!r}; name the format (--format, or fmt=)"
            raise BatchError(msg)
    named = outputs.pillow_format(fmt)
    if named is None:
        msg = f"unknown output format {fmt!r}"
        raise BatchError(msg)
    given, fmt = f".{fmt.lower().lstrip('.')}", named
    by_name = None if ext is None else known.get(Path(f"x{ext}").suffix.lower())
    if netpbm_disagrees(given, None if ext is None else Path(f"x{ext}").suffix.lower()):
        msg = (f"the extension {ext!r} does not agree with the format {given.lstrip('.')}; "
               "give only one of them, or ones that agree")
        raise BatchError(msg)
    if by_name is not None and by_name != fmt:
        # A .png name holding JPEG bytes would mislead every program that opens it.
        msg = (f"the extension {ext!r} means {by_name}, but the format is {fmt}; "
               "give only one of them, or ones that agree")
        raise BatchError(msg)
    if ext is None:
        usual = [e for e, f in known.items() if f == fmt]
        # The format as given when it is an extension of it (--format jpg: .jpg files).
        ext = next((e for e in (given, f".{fmt.lower()}") if e in usual), (usual or [".img"])[0])
    problem = outputs.output_problem(fmt, Path(f"x{ext}").suffix.lower())
    if problem:
        raise BatchError(problem)
    return fmt, ext


# ------------------------------------------------------------------ summary
@dataclass(frozen=True)
class Summary:
    """Totals of a batch.

    Attributes
    ----------
    files, done, skipped, failed : int
        Records seen; of them written, skipped and failed.
    bytes_in, bytes_out : int
        Totals over the files written.
    mean_psnr : float or None
        Mean PSNR in dB over the lossy encodes (None when there were none).
    lossless : int
        Encodes that were lossless.
    slowest : Result or None
        The file that took longest.
    errors : tuple of str
        The failures' one-line errors.
    """

    files: int
    done: int
    skipped: int
    failed: int
    bytes_in: int
    bytes_out: int
    mean_psnr: float | None
    lossless: int
    slowest: Result | None
    errors: tuple[str, ...]


def summarize(results: Iterable[Result]) -> Summary:
    """Add up a batch's records.

    Examples
    --------
    >>> s = summarize([Result("a.png", "a.kpal", 100, 40, 16, 30.0, 0.2),
    ...                Result("b.png", "b.kpal", error="b.png: file is empty")])
    >>> s.done, s.failed, s.bytes_in, s.mean_psnr
    (1, 1, 100, 30.0)
    """
    results = list(results)
    written = [r for r in results if r.ok and not r.skipped]
    lossy = [r.psnr for r in written if r.psnr is not None and math.isfinite(r.psnr)]
    return Summary(
        files=len(results), done=len(written), skipped=sum(r.skipped for r in results),
        failed=sum(not r.ok for r in results),
        bytes_in=sum(r.bytes_in for r in written), bytes_out=sum(r.bytes_out for r in written),
        mean_psnr=sum(lossy) / len(lossy) if lossy else None,
        lossless=sum(r.psnr == math.inf for r in written),
        slowest=max(written, key=lambda r: r.seconds, default=None),
        errors=tuple(r.error for r in results if not r.ok),
    )
