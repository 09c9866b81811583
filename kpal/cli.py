"""The ``kpal`` command line: encode, decode and inspect ``.kpal`` files.

The CLI is a thin shell around :mod:`kpal.codec`: it parses options, calls the
library and prints a report. Every failure is one line on stderr, ``kpal:
error: ...``, with exit code 2 for usage errors and 1 for bad data or I/O.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import io
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import click
import numpy as np
from PIL import Image

from kpal import batch, codec, container, metrics, options, outputs, progress
from kpal.cliio import (  # noqa: F401 - the shell plumbing the commands below use
    STDIO,
    FilePath,
    KpalGroup,
    Terminated,
    _check_input,
    _check_output,
    _fail,
    _is_terminal,
    _open_image,
    _raise_on_sigterm,
    _read_input,
    _read_shown,
    _rgb_array,
    _warn_one_line,
    _write_output,
    default_output,
    encode_image_file,
    output_in_folder,
    printable,
    refuse_input_as_output,
    stdout_alias,
)
from kpal.errors import KpalError, KpalWarning, OptionError, silenced, warn
from kpal.io import is_stream_target


@click.group(cls=KpalGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kpal")
def cli() -> None:
    """kpal: compress images to k-colour palettes (.kpal files) and back."""


# ------------------------------------------------------------------ helpers
def _bytes(n: int) -> str:
    return f"{n:,} byte" + ("" if n == 1 else "s")


def _times(factor: float) -> str:
    """``factor`` (at least 1) as ``2.50×``, or as a percentage where that reads 1.00×."""
    if factor < 1.005:
        return f"{(factor - 1) * 100:.1f} %"
    return f"{factor:,.2f}×"


def _ratio(ratio: float, bits: int = 24, metadata: bool = False) -> str:
    """Raw 24-bit (32-bit with alpha) size against the file, the right way round."""
    if ratio >= 1:
        return f"{_times(ratio)} smaller than raw {bits}-bit"
    return f"{_times(1 / ratio)} larger than raw {bits}-bit ({metrics.why_larger(metadata)})"



def _layout_sum(layout: dict) -> str:
    """A file's parts, in file order, summed by hand: ``header 26 + palette 48 + ...``."""
    parts = [f"{name} {layout[name]:,}" for name in ("header", "palette", "metadata", "payload",
                                                     "checksum") if layout.get(name)]
    return " + ".join(parts)


def _grey_ratio(n_pixels: int, on_disk: int, metadata: bool = False) -> str:
    """A grey image's file against its raw 8-bit grey size, the right way round."""
    if on_disk <= n_pixels:
        return f"{_times(n_pixels / on_disk)} smaller than raw 8-bit grey"
    return (f"{_times(on_disk / n_pixels)} larger than raw 8-bit grey "
            f"({metrics.why_larger(metadata)})")


def _is_grey(palette: np.ndarray) -> bool:
    """Every entry an opaque grey: the image is grey, and 8-bit grey is its raw size."""
    return bool(palette.size) and bool((palette[:, 0] == palette[:, 1]).all()
                                       and (palette[:, 1] == palette[:, 2]).all()
                                       and (palette.shape[1] == 3 or (palette[:, 3] == 255).all()))


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


# ------------------------------------------------------------------ options
def option_flags(*names: str, helps: dict | None = None):
    """Declare encode options as command-line flags, from :data:`kpal.options.SPECS`.

    Every flag is read as text and checked by :func:`encode_options`, so the
    command line gives the same messages, ranges and defaults as the API.
    ``helps`` replaces an option's help where a command gives it another use.
    """
    def decorate(command):
        for name in reversed(names):
            spec = options.SPECS[name]
            default = "" if spec.default is None else f" [default: {spec.default}]"
            text = (helps or {}).get(name, spec.help + default)
            command = click.option(*spec.flags, name, default=None, metavar=spec.metavar,
                                   help=text)(command)
        return command

    return decorate


def encode_options(values: dict, *, coding_flags: dict | None = None) -> options.EncodeOptions:
    """Build the options of a command from its flag values, or fail with exit code 2.

    Parameters
    ----------
    values : dict
        Option name to the flag's text (``None`` when not given).
    coding_flags : dict, optional
        Every flag that chooses the payload coding (``--coding``, ``--packing``,
        ``--entropy``) and the coding it asks for, ``None`` when not given:
        giving two is a usage error, not a silent choice.
    """
    given = {flag: value for flag, value in (coding_flags or {}).items() if value is not None}
    if len(given) > 1:
        raise click.UsageError(f"{' and '.join(given)} both choose the payload coding; give one")
    if given:
        values = {**values, "coding": next(iter(given.values()))}
    values = {name: value for name, value in values.items() if value is not None}
    for name, value in values.items():
        try:
            options.check(name, value)
        except OptionError as e:
            flags = "/".join(options.SPECS[name].flags)
            raise click.UsageError(f"{flags}: {e}") from None
    try:
        with options.flag_names():  # "-k and --quality", not "k and quality"
            return options.EncodeOptions.from_keywords(values)
    except OptionError as e:  # options that exclude each other: a usage error too
        raise click.UsageError(str(e)) from None


def _checked(name: str, value: object, flag: str):
    """A flag's value checked by the option's own checker (usage error when bad).

    The message is worded as encode's option errors are: ``--flag: problem``.
    """
    if value is None:
        return None
    try:
        return options.check(name, value)
    except OptionError as e:
        raise click.UsageError(f"{flag}: {e}") from None


# ------------------------------------------------------------------ many files
def _batch_flags(ext_example: str):
    """The flags every command that takes many files shares (``ext_example``: for --ext's help)."""
    flags = [
        click.option("-r", "--recursive", is_flag=True,
                     help="Take the files of sub-folders too (and let ** span folders)."),
        click.option("-j", "--jobs", type=click.IntRange(min=1), metavar="N",
                     help="Worker processes for several files (default: the number of "
                          "cores)."),
        click.option("--ext", metavar="EXT",
                     help="Extension of the outputs written beside their inputs (or in "
                          f"-o's folder), replacing the input's, e.g. {ext_example}."),
        click.option("--skip-existing", is_flag=True,
                     help="Leave inputs whose output exists alone (resumes a batch)."),
        click.option("--dask", metavar="ADDRESS", callback=_dask_address,
                     help="Run the files on this Dask scheduler (e.g. tcp://host:8786); "
                          "paths must be reachable from its workers (pip install "
                          "\"kpal[dask]\")."),
    ]

    def decorate(command):
        for flag in reversed(flags):
            command = flag(command)
        return command
    return decorate


def _is_batch(srcs: tuple, out: str | None, ext: str | None) -> bool:
    """Several inputs, a pattern, --ext, a URL, or a folder with -o: the many-files path.

    One file (with or without -o) keeps the single-file behaviour and report.
    """
    if len(srcs) > 1 or ext is not None:
        return True
    src = srcs[0]
    if src == STDIO:
        return False
    if batch.is_url(src) or (out is not None and batch.is_url(out)):
        return True  # URLs (fsspec) go through the batch path; -o URL names a folder
    return batch.is_glob(src) or (out is not None and Path(src).is_dir())


def _check_batch_output(srcs: tuple, out: str | None) -> None:
    if STDIO in srcs:
        raise click.UsageError("- (standard input) cannot be one of several inputs")
    if out is None:
        return
    if out == STDIO:
        raise click.UsageError("-o -: several outputs cannot all go to standard output")
    target = Path(out)
    why = _why_batch(srcs)
    if target.exists() and not target.is_dir():
        raise click.UsageError(f"{out}: {why}, -o names a folder; this is a file")
    if not target.exists() and target.suffix.lower() in Image.registered_extensions():
        raise click.UsageError(f"{out}: {why}, -o names a folder, and this looks "
                               f"like a file name (make the folder first to use this name)")


def _why_batch(srcs: tuple) -> str:
    """Why these inputs run as a batch, whose -o names a folder: said in its message."""
    if len(srcs) > 1:
        return "with several inputs"
    src = srcs[0]
    if batch.is_url(src):  # a URL input runs as a batch even alone (fsspec paths)
        return "a URL input runs as a batch"
    if batch.is_glob(src):
        return "with a pattern as input"
    if Path(src).is_dir():
        return "with a folder as input"
    return "with --ext"


def _refuse_lone_folder(src: str, ext: str = ".kpal") -> None:
    """A folder alone, without -o or --ext: say how to make it a batch."""
    if src != STDIO and Path(src).is_dir():
        raise click.UsageError(f"{src}: is a directory; to take its files, give -o FOLDER for "
                               f"the outputs, or --ext (e.g. --ext {ext}) to write them beside "
                               "the inputs")


def _plan(kind: str, srcs: tuple, out: str | None, **how) -> list:
    try:
        return batch.plan(kind, srcs, out, command_line=True, **how)
    except (batch.OutputFolderError, batch.MissingExtraError) as e:  # not usage: exit 1
        raise click.ClickException(str(e)) from None
    except batch.BatchError as e:
        raise click.UsageError(str(e)) from None


def _check_force_or_skip(force: bool, skip_existing: bool) -> None:
    if force and skip_existing:  # one replaces an existing output, the other leaves it
        raise click.UsageError("--force and --skip-existing contradict each other: give one")


def _skip(out: str, skip_existing: bool, quiet: bool) -> bool:
    """--skip-existing with one file: say so and do nothing when OUT exists."""
    if not skip_existing or out == STDIO or not Path(out).exists():
        return False
    if not quiet:
        click.echo(f"{out}: exists, skipped")
    return True


def _refuse_existing(planned: list, force: bool, skip_existing: bool) -> None:
    """Before any work: an existing output needs --force or --skip-existing."""
    if force or skip_existing:
        return
    existing = [job.output for job in planned if batch.exists(job.output)]
    if existing:
        more = f" and {_plural(len(existing) - 1, 'other')}" if len(existing) > 1 else ""
        raise click.UsageError(f"{existing[0]}{more}: file exists (use --force to overwrite or "
                               f"--skip-existing to resume)")


def _close_quietly(client) -> None:
    """Close a Dask client; one still reconnecting to a lost scheduler logs the
    cancelled reconnection as an ERROR with tracebacks, which the batch has said in one line."""
    import logging

    quiet = client.status != "running"
    logger = logging.getLogger("distributed.client")
    level = logger.level
    if quiet:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        with contextlib.suppress(Exception):  # already closed under the batch
            client.close()
    finally:
        logger.setLevel(level)


def _dask_address(ctx, param, value: str | None) -> str | None:
    """``--dask ""`` (an unset variable, say) is a mistake, not a local batch."""
    if value is not None and not value.strip():
        raise click.BadParameter("give the Dask scheduler's address, e.g. tcp://host:8786")
    return value


def _connect(address: str):
    try:
        return batch.connect(address, "--dask")
    except (batch.SchedulerError, batch.MissingExtraError) as e:  # not usage: exit 1
        raise click.ClickException(str(e)) from None
    except batch.BatchError as e:
        raise click.UsageError(str(e)) from None


def _run_batch(planned: list, verb: str, *, jobs, dask, quiet: bool, force: bool,
               skip_existing: bool, on_result=None) -> None:
    """Run the files, showing progress on a terminal; print errors, notes and a summary.

    Exits with code 1 when any file failed, 99 when every failure is a missed
    ``--quality`` or ``--max-size`` target.
    """
    if verb != "described":
        _refuse_existing(planned, force, skip_existing)
    started = time.perf_counter()
    client = _connect(dask) if dask else None
    seen: list = []
    bar_on = not quiet and sys.stderr is not None and sys.stderr.isatty()
    bar = progress.Progress(len(planned), sys.stderr) if bar_on else None

    def say(line: str) -> None:
        line = printable(line)  # file names must not drive the terminal
        if bar is not None:
            bar.say(line)
        else:
            click.echo(line, err=True)

    lost = None
    try:
        results = batch.run(planned, jobs, client=client, skip_existing=skip_existing)
        # Files run here (one job) record Pillow's warnings each time, as workers do.
        with contextlib.closing(results), bar or contextlib.nullcontext(), \
                warnings.catch_warnings():
            warnings.simplefilter("always")
            for result in results:
                seen.append(result)
                if result.error is not None:
                    say(f"kpal: error: {result.error}")
                else:  # -q: only what changed the colours (a profile applied or dropped)
                    for note in result.notes:
                        if not quiet or "ICC profile" in note:
                            say(f"kpal: warning: {result.path}: {note}")
                if on_result is not None:
                    on_result(result)
                if bar is not None:
                    # As the summary counts them: the files written (a failed one read no image).
                    bar.add(result.bytes_in if result.error is None else 0, result.bytes_out)
    except batch.SchedulerLost as e:  # the Dask scheduler lost mid-batch: what finished, then why
        lost = str(e)
    except batch.BatchError as e:  # before any file ran (a scheduler without workers, ...)
        raise click.ClickException(str(e)) from None
    finally:
        if client is not None:
            _close_quietly(client)
    summary = batch.summarize(seen)
    if not quiet and verb != "described" and (seen or lost is None):
        _print_summary(summary, verb, time.perf_counter() - started)
    if lost is not None:
        raise click.ClickException(lost)
    if summary.failed:
        # As for one file: 99 when no file failed but for missing its target (pngquant's).
        missed_only = all(r.target_missed for r in seen if r.error is not None)
        click.get_current_context().exit(QUALITY_EXIT if missed_only else 1)


def _print_summary(s, verb: str, seconds: float) -> None:
    for line in progress.summary_lines(s, verb, seconds):
        click.echo(printable(line))


# ------------------------------------------------------------------ encode
@cli.command(short_help="Compress images to .kpal files, reporting the size.")
@click.argument("srcs", metavar="IN...", nargs=-1, required=True,
                type=FilePath(dir_okay=True, allow_dash=True))
@click.option("-o", "--output", "out", type=FilePath(allow_dash=True),
              help="Output file; default: IN with the extension .kpal (stdout when IN is -). "
                   "With several inputs, a folder or a pattern: the folder of the outputs, "
                   "which mirror the inputs' tree (several files or a pattern without -o: "
                   "beside each input; a folder needs -o or --ext).")
@option_flags("k", "method", "init", "seed", "sample", "max_iter", "tol", "coding", "dither",
              "dither_strength", "space", "palette", "quality", "max_size", "background")
@click.option("--packing", type=click.Choice(["fixed", "radix"]),
              help="Shorthand for --coding fixed|radix.")
@click.option("--entropy", is_flag=True, default=None, help="Shorthand for --coding entropy.")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("-q", "--quiet", is_flag=True,
              help="Print no report, progress or notes; what changed the input's colours "
                   "(an ICC profile applied or dropped) is still said.")
@click.option("--ssimulacra2", "ssim", is_flag=True,
              help="Report the perceptual SSIMULACRA2 score beside PSNR (needs kpal[metrics]; "
                   "about 3 s and 0.5 GB per megapixel).")
@_batch_flags(".kpal or -k16.kpal")
def encode(srcs, out, packing, entropy, force, quiet, recursive, jobs, ext, skip_existing,
           dask, ssim, **values):
    """Compress images to .kpal files and report their size against the bound.

    IN is an image file, or several files, folders (with -r, their
    sub-folders too) and glob patterns ('photos/*.jpg'): those are encoded in
    parallel, each with the same options, with a progress bar and a summary.
    """
    start = time.perf_counter()
    opts = encode_options(values, coding_flags={"--coding": values.pop("coding"),
                                                "--packing": packing,
                                                "--entropy": "entropy" if entropy else None})
    _check_palette_file(opts)
    _check_force_or_skip(force, skip_existing)
    if ssim and _is_batch(srcs, out, ext):  # the report's row: one file's
        raise click.UsageError("--ssimulacra2 scores one file in its report: give one input "
                               "and an output file (a batch prints a summary instead)")
    if ssim and importlib.util.find_spec("ssimulacra2") is None:  # before any work
        # A missing extra is not a usage error: exit 1, as for plots and coding 3.
        raise click.ClickException('--ssimulacra2 needs the metric: pip install "kpal[metrics]"')
    if _is_batch(srcs, out, ext):
        _check_batch_output(srcs, out)
        opts = _palette_read_once(opts, quiet)
        planned = _plan("encode", srcs, out, ext=".kpal" if ext is None else ext,
                        recursive=recursive,
                        wanted=batch.image_file, options=opts, force=force)
        _run_batch(planned, "encoded", jobs=jobs, dask=dask, quiet=quiet, force=force,
                   skip_existing=skip_existing)
        return
    src = srcs[0]
    _refuse_lone_folder(src)
    if out is None:
        out = default_output(src, ".kpal")
    out = stdout_alias(output_in_folder(src, out, ".kpal"))
    if (isinstance(opts.palette, str) and out != STDIO and Path(out).exists()
            and os.path.samefile(opts.palette, out)):
        raise click.UsageError(f"{out}: output is the --palette file; choose another -o")
    if _skip(out, skip_existing, quiet):
        return
    refuse_input_as_output(src, out)
    _check_kpal_name(out)  # before "file exists": --force, which that suggests, cannot help
    _check_output(src, out, force)
    name, data = _read_input(src)
    original_bytes = len(data)
    image, source, icc_profile = _pixels_for_encoding(name, data, opts.background,
                                                      prefetch=opts)
    del data  # the encoded input is no longer needed: keep the peak memory down
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            encoded = codec.encode_image(image, options=opts, icc_profile=icc_profile)
        except KpalError as e:
            error = click.ClickException(f"{name}: {e}")
            if _target_missed(e):
                error.exit_code = QUALITY_EXIT
            raise error from None
    del image
    # The report first: then the pixels and labels it reads go before the write, which
    # was the encode's peak memory (a 14.7 MP photo's 44 MB of pixels, 15 MB of labels).
    rows = [] if quiet else _report_rows(encoded, original_bytes, source)
    file_bytes = encoded.data
    if not ssim:  # the perceptual score compares the pixels after the write, as before
        del encoded
    _write_output(out, file_bytes, force)
    if quiet:
        return
    echo = _reporter(out)
    for w in caught:  # on stderr, naming the file, as a batch says them
        if issubclass(w.category, UserWarning):
            _warn_one_line(f"{name}: {w.message}", w.category, w.filename, w.lineno)
    if ssim:
        rows += _ssimulacra2_rows(encoded, ssim)
    rows.append(("time", f"{time.perf_counter() - start:.2f} s"))
    echo(printable(f"{name} → {out if out != STDIO else '<stdout>'}"))
    for label, value in rows:  # an ICC profile's name comes from the image
        echo(printable(f"  {label:<14} {value}"))


def _check_kpal_name(out: str) -> None:
    """Refuse to give a .kpal file another image format's extension (x.png would not be a PNG)."""
    problem = None if out == STDIO else batch.kpal_name_problem(out)
    if problem:
        raise click.UsageError(f"{out}: {problem}")


def _palette_read_once(opts: options.EncodeOptions, quiet: bool) -> options.EncodeOptions:
    """A batch's ``--palette FILE`` as its colours: its notes said once, not once per file."""
    if not isinstance(opts.palette, str):
        return opts
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opts = batch.palette_read_once(opts)
    if not quiet:
        _echo_notes(caught)
    return opts


def _check_palette_file(opts: options.EncodeOptions) -> None:
    """Read ``--palette FILE`` before any input, so a bad palette costs no decoding."""
    if not isinstance(opts.palette, str):
        return
    from kpal.palettes import load_palette

    try:
        with silenced("palette file"):  # its notes come with the encode that uses it
            load_palette(opts.palette)
    except OSError as e:
        message = f"palette file {opts.palette}: cannot read: {e.strerror or e}"
        if e.errno in (errno.ENOENT, errno.EISDIR, errno.ENOTDIR):  # named wrong: as for IN
            raise click.UsageError(message) from None
        raise click.ClickException(message) from None
    except KpalError as e:  # its message starts with the file's name
        raise click.ClickException(f"palette file {e}") from None


def _pixels_for_encoding(name: str, data: bytes, background: tuple | None = None,
                         prefetch: options.EncodeOptions | None = None):
    """IN's pixels as the codec takes them, the EXIF orientation applied, what the
    report says of IN (:class:`_Source`) and its ICC profile.

    The pixels are an RGB or RGBA array, or the palette image itself; with
    ``background``, transparency flattened onto it. With ``prefetch`` (the
    options of the encode to come), a large image with an alpha band starts
    loading the compiled kernels while its pixels are decoded.
    """
    im = _open_image(name, data,
                     None if prefetch is None else lambda im: codec.prefetch_kernels(im, prefetch))
    dropped = _not_stored(im)
    try:
        with _warnings_about(name):
            im, icc_profile = codec.colour_managed(im)
        im, turned = codec.upright(im)
        source = _Source(turned, dropped)
        if background is not None and codec.has_transparency(im):
            # #rrggbb is sRGB: in the profile's space, so that it shows as that colour
            with _warnings_about(name):
                shown = codec.srgb_colour_in(background, icc_profile)
            return np.asarray(codec.flatten(im, shown)), source, icc_profile
        if im.mode in ("P", "PA"):
            # The codec applies the mode rules and keeps the palette; converting
            # here too would expand the pixels to RGB twice.
            return im, source, icc_profile
        if im.mode == "RGB" and "transparency" not in im.info and im.width and im.height:
            # No mode rule applies: the codec takes the array as it is.
            rgb = _rgb_array(im)
            im.close()
            return rgb, source, icc_profile
        rgb, p_image = codec.to_rgb(im)
    except KpalError as e:
        raise click.ClickException(f"{name}: {e}") from None
    if p_image is not None:
        return p_image, source, icc_profile
    im.close()  # np.asarray copied the pixels: release Pillow's copy
    return rgb, source, icc_profile


class _Source(NamedTuple):
    """What the encode report says of IN beyond its pixels."""

    orientation: int
    #: Metadata IN holds that a .kpal file does not: (name, bytes).
    not_stored: tuple[tuple[str, int], ...]


#: Pillow's ``info`` keys of metadata a .kpal file does not hold, and their names.
_UNSTORED_METADATA = {"exif": "EXIF", "xmp": "XMP", "XML:com.adobe.xmp": "XMP",
                      "photoshop": "IPTC/Photoshop", "comment": "comment"}


def _not_stored(im: Image.Image) -> tuple[tuple[str, int], ...]:
    found: dict[str, int] = {}
    for key, label in _UNSTORED_METADATA.items():
        value = im.info.get(key)
        parts = value.values() if isinstance(value, dict) else [value]  # IPTC: by resource
        size = sum(len(v.encode() if isinstance(v, str) else v) for v in parts
                   if isinstance(v, (bytes, str)))
        if size and label not in found:
            found[label] = size
    text = getattr(im, "text", None) if im.format == "PNG" else None  # tEXt, zTXt, iTXt
    if isinstance(text, dict):
        keys = [key for key in text if key not in _UNSTORED_METADATA]  # XMP counted above
        size = sum(len(str(text[key]).encode()) for key in keys)
        if size:
            found[f"PNG text {', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''}"] = size
    return tuple(found.items())


def _reporter(out: str):
    # With the file on stdout, the report goes to stderr.
    return (lambda s: click.echo(s, err=True)) if out == STDIO else click.echo


_TURNS = {2: "mirrored", 3: "rotated 180°", 4: "flipped", 5: "transposed",
          6: "rotated 90° clockwise", 7: "transversed", 8: "rotated 90° anticlockwise"}


#: Exit status when --quality or --max-size cannot be met (as pngquant's --quality).
QUALITY_EXIT = 99


def _target_missed(error: Exception) -> bool:
    choose = sys.modules.get("kpal.choose")  # imported only when a target was given
    return choose is not None and isinstance(error, choose.QualityError)


def _db(value: float, target: float | None = None) -> str:
    """``value`` with 2 decimals, or as many (up to 4) as it takes to stay on its side of
    ``target``: 39.9989 dB is not shown as 40.00 beside a target of 40."""
    for places in (2, 3, 4):
        text = f"{value:.{places}f}"
        if target is None or (float(text) >= target) == (value >= target):
            return text
    return text


def _choice_text(choice, opts: options.EncodeOptions, stored_k: int | None = None) -> str:
    """How ``--quality`` or ``--max-size`` chose k, with the nearest k it measured.

    ``stored_k``: the k of the file, smaller than the chosen one when the
    image has fewer colours (then kept exactly, whatever the target).
    """
    if stored_k is not None and stored_k < choice.k and choice.psnr == float("inf"):
        return (f"k = {stored_k}: the image has only {_plural(stored_k, 'colour')}, "
                "all kept (lossless)")
    goal = opts.quality[1] if opts.quality is not None else None

    def point(p) -> str:
        parts = [f"k = {p.k}"]
        if p.psnr is not None:
            parts.append("lossless" if p.psnr == float("inf") else f"{_db(p.psnr, goal)} dB")
        if p.size is not None:
            parts.append(_bytes(p.size))
        return " ".join(parts)

    if opts.quality is not None:
        low, high = opts.quality
        target = f"{high:g} dB" if low == high else f"{high:g} dB, accepting {low:g}"
        if choice.psnr is not None and choice.psnr < high:
            # No k reached MAX: the file is the best one found within MIN..MAX.
            text = (f"k = {choice.k}: {_db(choice.psnr, high)} dB, short of {high:g} dB and within "
                    f"the accepted {low:g}")
        else:
            text = f"k = {choice.k}: smallest k reaching {target}"
    else:
        text = f"k = {choice.k}: largest k whose file fits {_bytes(opts.max_size)}"
    neighbours = [point(p) for p in choice.neighbours() if p is not None]
    measured = f"; {len(choice.curve)} k measured"
    # The nearest k measured on either side: not k - 1 and k + 1 unless the search got there.
    nearest = f" (nearest measured: {', '.join(neighbours)})" if neighbours else ""
    return text + nearest + measured


def _ssimulacra2_rows(encoded: codec.Encoded, wanted: bool) -> list:
    """The SSIMULACRA2 row, when asked for (it costs more than the encode of a small image)."""
    if not wanted:
        return []
    if encoded.source.shape[-1] != 3:
        return [("SSIMULACRA2", "- (the metric compares RGB images; this one has alpha)")]
    h = encoded.header
    if min(h.width, h.height) < 8:
        return [("SSIMULACRA2", "- (the metric needs at least 8×8 pixels)")]
    from kpal.metrics import ssimulacra2

    score = ssimulacra2(encoded.source, encoded.palette[encoded.labels])
    return [("SSIMULACRA2", f"{score:.2f} (perceptual; 100 = identical, ~90 visually "
                            "lossless)")]


def _report_rows(encoded: codec.Encoded, original_bytes: int, source: _Source) -> list:
    """The encode report, as (label, value) rows."""
    h, opts = encoded.header, encoded.options
    orientation = source.orientation
    r = encoded.size_report()
    how = {"palette": "own palette kept (lossless)"}.get(encoded.method, encoded.method)
    asked = "" if opts.k in (None, h.k) else f" (asked {opts.k})"
    rows = [("pixels", f"{h.width}×{h.height} = {h.n_pixels:,}")]
    if orientation != 1:
        rows.append(("orientation", f"EXIF orientation {orientation} applied: "
                                    f"{_TURNS[orientation]}, stored upright"))
    rows.append(("colours", f"k = {h.k}{asked}, {_plural(h.bits_per_index, 'bit')} per index, "
                            f"{how}"))
    if h.alpha:
        why = "the image has transparency" if int(encoded.source[..., 3].min()) < 255 \
            else "the given palette has alpha"
        rows.append(("alpha", f"RGBA palette (32 bits per entry): {why}"))
    if h.metadata_length:
        blocks = container.parse_metadata(
            encoded.data[h.metadata_offset : h.payload_offset], h.metadata_offset)
        profile = dict(blocks).get(container.ICC_BLOCK)
        named = codec.profile_description(profile) if profile else None
        space = ("" if profile and codec.is_srgb_profile(profile)
                 else "; palette values in its space")
        rows.append(("metadata", f"ICC profile {f'{named!r} ' if named else ''}kept "
                                 f"({_bytes(h.metadata_length)} with its block header{space})"))
    if source.not_stored:
        what = ", ".join(f"{label} ({_bytes(size)})" for label, size in source.not_stored)
        rows.append(("not stored", f"{what}: a .kpal file holds an ICC profile, no other "
                                   "metadata"))
    if encoded.choice is not None:
        rows.append(("chosen", _choice_text(encoded.choice, opts, h.k)))
    if encoded.n_iter is not None and encoded.method != "palette":  # kept: nothing fitted
        steps = (f"{_plural(encoded.n_iter, 'iteration')} (all coarse-to-fine levels)"
                 if encoded.method == "kmeans" else f"{_plural(encoded.n_iter, 'EM iteration')}")
        rows.append(("fit", f"{steps}, MSE {encoded.mse:.2f} per channel"))
        if opts.sample is not None and opts.sample < 1:
            # Each pixel is drawn with probability --sample: the count is not known here,
            # and a draw with no more colours than k falls back to every pixel.
            rows.append(("sample", f"fitted on a random {100 * opts.sample:.3g}% of the pixels "
                                   "(all of them if the draw has no more colours than k), "
                                   "then every pixel assigned"))
    if opts.space != "rgb" and encoded.n_iter is not None:
        rows.append(("space", f"{opts.space} (clustered there; palette stored as 8-bit sRGB)"))
    if opts.dither != "none" and opts.dither_strength > 0 and encoded.method != "palette" \
            and not (encoded.n_iter == 0):
        name = {"fs": "Floyd-Steinberg error diffusion (serpentine)",
                "ordered": "ordered (blue-noise threshold map)"}[opts.dither]
        strength = "" if opts.dither_strength == 1 else f", strength {opts.dither_strength:g}"
        rows.append(("dither", f"{name}{strength}"))
    coding = r.coding
    rows.append(("coding", {"fixed": "fixed (ceil(log2 k) bits per index)",
                            "radix": "radix (groups of indices as base-k numbers)",
                            "entropy": "entropy (context model + rANS)",
                            "context": "context (context mixing + arithmetic coder)"}[coding]))
    rows += [
        ("original file", _bytes(original_bytes)),
        (f"raw {r.entry_bits}-bit", _bytes(r.raw_bytes)),
    ]
    grey = _is_grey(encoded.palette)
    if grey:
        rows.append(("raw 8-bit grey", f"{_bytes(h.n_pixels)} (every palette entry is grey)"))
    metadata = f" + metadata {h.metadata_length:,}" if h.metadata_length else ""
    layout = (f"header {h.header_size} + palette {h.palette_size:,}{metadata} + payload "
              f"{h.payload_length:,} + checksum {container.CHECKSUM_SIZE} bytes")
    overhead = f"header {h.header_size}{metadata} + checksum {container.CHECKSUM_SIZE}"
    if coding == "fixed":
        rows += [
            ("theoretical", f"{r.formula} = {_bytes(r.theoretical_bytes)}"),
            ("on disk", f"{_bytes(r.on_disk_bytes)} (overhead {r.overhead_bytes:,} bytes: "
                        f"{overhead})"),
        ]
    else:
        rows += [
            ("fixed width", f"{r.formula} = {_bytes(r.theoretical_bytes)} (the textbook size)"),
            ("log2 k", f"{h.k}×{r.entry_bits} + {h.n_pixels}×log2({h.k}) = "
                       f"{_bytes(math.ceil(r.log2_bound_bits / 8))}"),
        ]
        if r.order0_entropy_bits is not None:
            rows.append(("order-0", f"{h.k}×{r.entry_bits} + {h.n_pixels}×H0 = "
                                    f"{_bytes(math.ceil(r.order0_entropy_bits / 8))} (each "
                                    f"index coded alone; context models go below it)"))
        # The same file with a fixed-width payload: this file's header and metadata.
        fixed_file = (r.theoretical_bytes + h.header_size + h.metadata_length
                      + container.CHECKSUM_SIZE)
        rows += [
            ("on disk", f"{_bytes(r.on_disk_bytes)}, {r.on_disk_bytes / fixed_file:.3f}× the "
                        f"fixed-width file"),
            ("layout", layout),
        ]
    psnr = encoded.psnr()
    rows += [
        ("ratio", f"{_ratio(r.ratio, r.entry_bits, h.metadata_length > 0)}, "
                  f"{r.bits_per_pixel:.3f} bits per pixel"
                  + (f"; {_grey_ratio(h.n_pixels, r.on_disk_bytes, h.metadata_length > 0)}"
                     if grey else "")),
        ("PSNR", ("lossless (inf dB)" if psnr == float("inf") else f"{psnr:.2f} dB")
                 + (" (composites over black and white)" if h.alpha else "")),
    ]
    return rows


# ------------------------------------------------------------------ decode
@cli.command()
@click.argument("srcs", metavar="IN...", nargs=-1, required=True,
                type=FilePath(dir_okay=True, allow_dash=True))
@click.option("-o", "--output", "out", type=FilePath(allow_dash=True),
              help="Output image; its extension picks the format (default: IN as .png). "
                   "With several inputs, a folder or a pattern: the folder of the outputs.")
@click.option("--format", "fmt", help="Output format (e.g. PNG, BMP, TIFF) when OUT is -, a "
                                      "folder or has no known extension; with several files, "
                                      "the format of every output (default PNG). It must agree "
                                      "with OUT's extension.")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="Print no notes, and no progress or summary "
                                                  "for several files.")
@click.option("--background", metavar="COLOR",
              callback=lambda ctx, param, value: _checked("background", value, "--background"),
              help="Flatten transparency onto this colour (#rrggbb, a name or r,g,b); formats "
                   "without alpha (JPEG, BMP) get white otherwise.")
@_batch_flags(".png or -decoded.png")
def decode(srcs, out, fmt, force, quiet, recursive, jobs, ext, skip_existing, dask,
           background):
    """Decode .kpal files to any image format Pillow writes.

    WebP is written lossless; JPEG and AVIF are lossy formats.

    IN is a .kpal file, or several files, folders (their .kpal files; with
    -r, sub-folders too) and glob patterns, decoded in parallel.
    """
    _check_force_or_skip(force, skip_existing)
    if _is_batch(srcs, out, ext):
        _check_batch_output(srcs, out)
        try:
            fmt, ext = batch.output_format(fmt, ext)
        except batch.BatchError as e:
            raise click.UsageError(str(e)) from None
        planned = _plan("decode", srcs, out, ext=ext, recursive=recursive,
                        wanted=batch.kpal_file, fmt=fmt, force=force, background=background)
        _run_batch(planned, "decoded", jobs=jobs, dask=dask, quiet=quiet, force=force,
                   skip_existing=skip_existing)
        return
    src = srcs[0]
    _refuse_lone_folder(src, ".png")
    # The extension --format means, as a batch names its files (--format jpg: .jpg;
    # pgm: .pgm, grey levels, where the Pillow format is PPM).
    fmt_suffix, fmt_as_given = None, fmt
    if fmt is not None:
        named = outputs.pillow_format(fmt)  # --format jpg is JPEG, tif is TIFF
        if named is None:
            raise click.UsageError(f"unknown output format {fmt!r}")
        try:
            fmt_suffix = batch.output_format(fmt, None)[1]
        except batch.BatchError as e:
            raise click.UsageError(str(e)) from None
        fmt = named
    if out is None or (out != STDIO and (Path(out).is_dir() or out.endswith(("/", os.sep)))):
        try:
            suffix = fmt_suffix or batch.output_format(fmt, None)[1]
        except batch.BatchError as e:
            raise click.UsageError(str(e)) from None
        out = default_output(src, suffix) if out is None else output_in_folder(src, out, suffix)
    out = stdout_alias(out)
    if _skip(out, skip_existing, quiet):
        return
    _check_output(src, out, force)
    if out != STDIO:
        ext = Path(out).suffix.lower()
        by_name = Image.registered_extensions().get(ext)
        if fmt is None and by_name is None and not _extensionless_stream(out):
            raise click.UsageError(f"{out}: unknown image extension {ext!r}; use --format")
        if fmt is not None and by_name is not None and by_name != fmt:
            raise click.UsageError(f"{out}: the extension {ext!r} means {by_name}, but "
                                   f"--format says {fmt}; drop one of them")
        if batch.netpbm_disagrees(fmt_suffix, ext):
            # .pgm and .ppm are both Pillow's PPM, and still disagree (grey, colour)
            raise click.UsageError(f"{out}: the extension {ext!r} does not agree with "
                                   f"--format {fmt_as_given}; drop one of them")
        fmt = fmt or by_name
    fmt = fmt or "PNG"
    # What the bytes hold: the name's extension, else (-o -, a pipe) the --format's.
    out_suffix = (Path(out).suffix.lower() if out != STDIO else "") or fmt_suffix
    problem = outputs.output_problem(fmt, out_suffix)
    if problem:
        raise click.UsageError(f"{out if out != STDIO else '-o -'}: {problem}")
    name, data = _read_input(src, kpal=True)
    try:
        with _warnings_about(name):
            im = codec.decode(data)
    except (KpalError, Image.DecompressionBombError) as e:
        raise click.ClickException(f"{name}: {e}") from None
    im, note = outputs.for_format(im, fmt, background, out_suffix,
                                background_option="--background")
    with _warnings_about("<stdout>" if out == STDIO else out):
        encoded = encode_image_file(im, fmt, out)
    _write_output(out, encoded, force)
    if note and not quiet:
        click.echo(f"note: {name}: {note}", err=True)


# ------------------------------------------------------------------ info
@cli.command(short_help="Show .kpal files' header, palette and size accounting.")
@click.argument("srcs", metavar="IN...", nargs=-1, required=True,
                type=FilePath(dir_okay=True, allow_dash=True))
@click.option("--json", "as_json", is_flag=True,
              help="Print the fields as JSON (one line per file with several files).")
@click.option("-r", "--recursive", is_flag=True,
              help="Describe the .kpal files of a folder and its sub-folders.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), metavar="N", default=1,
              show_default=True, help="Worker processes for several files.")
@click.option("--dask", metavar="ADDRESS", callback=_dask_address,
              help="Run the files on this Dask scheduler.")
def info(srcs, as_json, recursive, jobs, dask):
    """Show .kpal files' header, palette, size accounting and checksum status.

    A damaged file is still described, with what is wrong; the exit code is
    then 1. With --json the same goes to stdout as JSON, with a "problem" field.
    IN is a file, or several files, glob patterns and folders (their own
    files; with -r their sub-folders' too): each is described in turn, as
    JSON lines with --json.
    """
    src = srcs[0]
    if (len(srcs) > 1 or batch.is_glob(src) or batch.is_url(src) or recursive
            or (src != STDIO and Path(src).is_dir())):
        _check_batch_output(srcs, None)
        planned = _plan("info", srcs, None, ext="", recursive=recursive,
                        wanted=batch.kpal_file)

        # Files finish in any order with several jobs: they are shown in the input's.
        places: dict[str, list[int]] = {}
        for index, job in enumerate(planned):
            places.setdefault(job.path, []).append(index)
        finished: dict[int, object] = {}
        shown = 0

        def show(result) -> None:
            if result.report is None:
                return
            for note in result.notes:  # a large image's warning, named
                _warn_one_line(f"{result.path}: {note}", UserWarning, "", 0)
            if as_json:
                click.echo(json.dumps(result.report))
            elif "header" in result.report:
                _print_info(result.path, result.report)

        def in_order(result) -> None:
            nonlocal shown
            waiting = places.get(result.path)
            finished[waiting.pop(0) if waiting else len(planned) + len(finished)] = result
            while shown in finished:
                show(finished.pop(shown))
                shown += 1

        try:
            _run_batch(planned, "described", jobs=jobs, dask=dask, quiet=True, force=False,
                       skip_existing=False, on_result=in_order)
        finally:  # after Ctrl-C or a lost worker, what did finish
            for index in sorted(finished):
                show(finished[index])
        return
    try:
        name, data, length = _read_shown(src)
        with _warnings_about(name):
            report = codec.inspect(data, file_bytes=length)
    except click.UsageError:
        raise
    except click.ClickException as e:  # not a .kpal header: still say so in the JSON
        if as_json:
            name = "<stdin>" if src == STDIO else src
            click.echo(json.dumps({"file": name, "problem": e.format_message()
                                   .removeprefix(f"{name}: ")}, indent=2))
        raise
    except (KpalError, Image.DecompressionBombError) as e:
        if as_json:
            click.echo(json.dumps({"file": name, "problem": str(e)}, indent=2))
        raise click.ClickException(f"{name}: {e}") from None
    if as_json:
        click.echo(json.dumps({"file": name, **report}, indent=2))
    else:
        _print_info(name, report)
    if report["problem"]:
        raise click.ClickException(f"{name}: {report['problem']}")


#: Metadata blocks kpal info lists one per line; the rest are counted on one.
_METADATA_ROWS = 20


def _print_info(name: str, report: dict) -> None:
    h, s = report["header"], report["size"]
    n = h["width"] * h["height"]
    rows = [
        ("version", h["version"]),
        ("size", f"{h['width']}×{h['height']} = {_plural(n, 'pixel')}"),
        ("k", f"{_plural(h['k'], 'colour')}, {_plural(h['bits_per_index'], 'bit')} per index"),
        ("coding", report["coding"]),
        ("palette", " ".join(report["palette"])),
    ]
    if report.get("alpha"):
        rows.insert(3, ("alpha", "RGBA palette (32 bits per entry)"))
    if report.get("reader_needs"):
        rows.insert(rows.index(("coding", report["coding"])) + 1,
                    ("reader needs", report["reader_needs"]))
    blocks = report.get("metadata") or ()
    for index, block in enumerate(blocks):
        if index >= _METADATA_ROWS:  # a file of a million empty blocks: one line for the rest
            left = blocks[index:]
            rows.append(("metadata", f"{len(left):,} more blocks, "
                                     f"{_bytes(sum(b['bytes'] for b in left))} in all"))
            break
        known = "" if block.get("known", True) else ", unknown to this reader: skipped"
        named = f" ({block['description']!r})" if block.get("description") else ""
        rows.append(("metadata", f"{block['type']} {_bytes(block['bytes'])}{named}{known}"))
    if s is None:  # truncated or extended: there is no file to account for
        what = "short" if report["file_bytes"] < report["expected_bytes"] else "long"
        rows.append(("on disk", f"{_bytes(report['file_bytes'])}, but the header implies "
                                f"{_bytes(report['expected_bytes'])} (the file is too {what})"))
    else:
        rows += [
            ("fixed width", f"{s['formula']} = {_bytes(s['theoretical_bytes'])}"),
            ("log2 k", f"{_bytes(math.ceil(s['log2_bound_bits'] / 8))}"),
        ]
        if s["order0_entropy_bits"] is not None:
            rows.append(("order-0", f"{_bytes(math.ceil(s['order0_entropy_bits'] / 8))} (each "
                                    f"index coded alone; context models go below it)"))
        rows += [
            ("on disk", f"{_bytes(s['on_disk_bytes'])} = {_layout_sum(report['layout'])}"),
            ("ratio", _ratio(s["ratio"], 32 if report.get("alpha") else 24,
                             h.get("metadata_length", 0) > 0)),
        ]
        entries = report.get("palette") or []
        if entries and all(len(e) == 7 and e[1:3] == e[3:5] == e[5:7] for e in entries):
            grey = _grey_ratio(h["width"] * h["height"], s["on_disk_bytes"],
                               h.get("metadata_length", 0) > 0)
            rows.append(("grey", f"every palette entry is grey: {grey}"))
    rows.append(("checksum", report["checksum"]))
    click.echo(printable(name))
    for label, value in rows:  # an ICC profile's name comes from the file too
        if label == "palette":  # 256 entries: lines of 8 (6 with alpha), not 2,000 columns
            entries = value.split()
            per_line = 6 if report.get("alpha") else 8
            lines = [" ".join(entries[i : i + per_line])
                     for i in range(0, len(entries), per_line)] or [""]
            click.echo(f"  {label:<14} " + ("\n" + " " * 17).join(lines))  # hex digits only
            continue
        click.echo(printable(f"  {label:<14} {value}"))


# ------------------------------------------------------------------ sample
def _size_option(ctx, param, value):
    if value is None:
        return None
    try:
        width, height = (int(part) for part in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{value!r} must be WIDTHxHEIGHT in pixels, e.g. 1200x800") \
            from None
    if not (50 <= width <= 10_000 and 50 <= height <= 10_000):
        raise click.BadParameter(f"{value} must be between 50x50 and 10000x10000 pixels")
    return width, height


@contextlib.contextmanager
def _warnings_about(name: str | None):
    """Show the warnings raised inside as ``kpal: warning:`` lines, naming ``name`` first."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        text = str(w.message) if name is None else f"{name}: {w.message}"
        _warn_one_line(text, w.category, w.filename, w.lineno)


def _echo_notes(caught, name: str | None = None) -> None:
    """kpal's warnings caught during a command, as ``kpal: warning: NAME:`` lines."""
    for w in caught:
        if issubclass(w.category, UserWarning):
            text = str(w.message) if name is None else f"{name}: {w.message}"
            _warn_one_line(text, w.category, w.filename, w.lineno)


@cli.command()
@click.argument("src", metavar="IN", type=FilePath(dir_okay=True, allow_dash=True))
@click.option("-o", "--output", "out", required=True, type=FilePath(allow_dash=True),
              help="Output image; its extension picks the format (PNG keeps it exact).")
@option_flags("k", "seed", helps={"k": "Components of the Gaussian mixture, 1..256 (default "
                                        "16); a .kpal output holds K colours."})
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="Print no notes.")
def sample(src, out, force, quiet, **values):
    """Draw a new image from the colours of IN.

    Fits a Gaussian mixture of K components to IN's pixels and writes an image
    of IN's size whose pixels are drawn independently from it: IN's colour
    distribution without its spatial structure. An image with transparency is
    sampled as it looks over white.
    """
    from kpal.cluster.gmm import sample_image

    opts = encode_options(values)
    k, seed = opts.k or options.DEFAULT_K, opts.seed
    out = stdout_alias(out)  # -o /dev/stdout redirected to a file: written as -o -
    fmt = "PNG" if out == STDIO or _extensionless_stream(out) else _output_format(out)
    _check_output(src, out, force)
    name, data = _read_input(src)
    try:
        im = _open_image(name, data)
        profile = im.info.get("icc_profile")  # the drawn colours are in its space too
        rgb, _ = codec.to_rgb(im)
    except KpalError as e:
        raise click.ClickException(f"{name}: {e}") from None
    if rgb.shape[-1] == 4:  # the mixture is fitted to colours: those seen over white
        rgb = _over_white(name, rgb, "the sample is drawn from it", quiet)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        drawn = sample_image(rgb, k, seed=seed)
        if fmt == "KPAL":  # the drawn colours, quantized to K like the mixture
            written = codec.encode_image(drawn, options=options.EncodeOptions(k=k, seed=seed),
                                         icc_profile=profile).data
        else:
            image = Image.fromarray(drawn, "RGB")
            if profile:
                image.info["icc_profile"] = profile
            # A format without profiles gets the colours converted to sRGB, with a note.
            image, note = outputs.for_format(image, fmt, None, Path(out).suffix.lower())
            if note:
                warnings.warn(note, KpalWarning, stacklevel=1)
            written = encode_image_file(image, fmt, out)
    if not quiet:
        _echo_notes(caught, name)
        if fmt in _LOSSY_FOR_SAMPLES:
            click.echo(f"note: {printable(out)}: {_LOSSY_FOR_SAMPLES[fmt]}: the drawn colours "
                       "are not kept exactly (.png keeps them)", err=True)
    _write_output(out, written, force)


#: Output formats that change the colours ``kpal sample`` draws (a photo's
#: sample has tens of thousands), and why.
_LOSSY_FOR_SAMPLES = {"GIF": "GIF holds at most 256 colours", "JPEG": "JPEG is lossy",
                      "AVIF": "AVIF is written lossy"}


def _over_white(name: str, rgba: np.ndarray, what: str, quiet: bool) -> np.ndarray:
    """RGBA pixels composited over white, with a note saying so (``what`` over white)."""
    from kpal.cluster.alpha import flatten

    if not quiet:
        click.echo(f"note: {printable(name)} has transparency; {what} over white", err=True)
    return flatten(rgba, (255, 255, 255))


@cli.command(name="palette", short_help="Fit one palette of K colours to many images.")
@click.argument("srcs", metavar="IMAGES...", nargs=-1, required=True,
                type=FilePath(dir_okay=True, allow_dash=True))
@click.option("-o", "--output", "out", required=True, type=FilePath(allow_dash=True),
              help="Palette file; its extension picks the format: .gpl (GIMP), .act (Adobe), "
                   ".png or .gif (a palette image), .kpal, or .txt/.hex (hex colours).")
@option_flags("k", "method", "init", "seed", "max_iter", "tol",
              helps={"k": "Number of colours, 1..256 (default 16)."})
@click.option("-w", "--weight", "weights", multiple=True, metavar="W",
              help="Weight of each image, in the order given (default 1 each); repeat it "
                   "once per image.")
@click.option("-r", "--recursive", is_flag=True, help="Take the images in sub-folders too.")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
def palette_command(srcs, out, weights, recursive, force, quiet, **values):
    """Fit one palette of K colours to many images, for encode --palette.

    IMAGES are files, folders (with -r, their sub-folders too) and glob
    patterns. Their colour histograms are merged (memory follows the number
    of distinct colours, not of images) and clustered once, so every image
    encoded with ``kpal encode IMG --palette FILE`` shares the same colours.
    When some image has transparency the palette has alpha, fitted as encode
    fits one such image: K entries in all, one of them fully transparent
    when some pixel is (save it as .kpal, .png, .gif or hex).
    """
    from kpal.palettes import fit_palette, format_of_path, save_palette

    opts = encode_options(values)
    out = stdout_alias(out)  # -o /dev/stdout redirected to a file: written as -o -
    for src in srcs:
        if batch.is_url(src):
            raise click.UsageError(f"{src}: kpal palette reads local files and - (copy "
                                   "the images here first)")
    if srcs.count(STDIO) > 1:
        raise click.UsageError("-: standard input can be read once; name it once")
    if STDIO in srcs and sys.stdin is not None and _is_terminal(sys.stdin):
        raise click.UsageError("-: standard input is a terminal; pipe or redirect a file "
                               "into it (kpal ... - < photo.png) or give the file's name")

    def collected(named) -> list[str]:
        return [str(path) for path, _ in batch.collect(named, recursive=recursive,
                                                       wanted=batch.image_file)] if named else []

    try:
        paths = collected([src for src in srcs if src != STDIO])
        if STDIO in srcs:  # standard input's image, in its place among the others (--weight)
            paths.insert(len(collected(list(srcs[: srcs.index(STDIO)]))), STDIO)
    except batch.BatchError as e:
        raise click.UsageError(str(e)) from None
    if not paths:
        raise click.UsageError(f"no image files in {' '.join(srcs)}")
    if weights and len(weights) != len(paths):
        # Each source's images counted apart: more than together when some image is named
        # twice (the same file, or a file and its folder).
        apart = sum(len(collected([src])) if src != STDIO else 1 for src in srcs)
        twice = " (an image named more than once counts once)" if apart > len(paths) else ""
        raise click.UsageError(f"{_plural(len(weights), '--weight value')} for "
                               f"{_plural(len(paths), 'image')}{twice}: give one per image, "
                               "or none")
    try:
        given = [float(w) for w in weights] or None
    except ValueError:
        raise click.UsageError(f"--weight: {weights} must be numbers") from None
    if given is not None and (min(given) < 0 or not all(math.isfinite(w) for w in given)
                              or sum(given) == 0):
        raise click.UsageError("--weight: weights must be finite, >= 0, not all 0")
    for path in paths:
        _check_output(path, out, force, binary=False, stdin=False)  # -o -: hex colours, text
    stream = _extensionless_stream(out)  # -o /dev/null: any format will do
    if out != STDIO and not stream:
        try:  # before the fit, not after it
            format_of_path(out)
        except KpalError as e:
            raise click.UsageError(str(e)) from None

    def images():  # one image in memory at a time
        failed = None  # after a bad image, the rest are only checked: every bad one is named
        for path in paths:
            try:
                name, data = _read_input(path, stdin=False)  # no "-" inside folders
                pixels, _, icc_profile = _pixels_for_encoding(name, data)
            except click.ClickException as e:  # each named in turn, the last one raised
                if failed is not None:
                    click.echo(f"kpal: error: {failed.format_message()}", err=True)
                failed = e
                continue
            if failed is not None:
                continue
            if isinstance(pixels, Image.Image):  # a "P" image: its colours, alpha included
                pixels = codec.to_rgb(pixels)[0]
            if icc_profile is not None:  # a palette's colours are sRGB
                pixels, converted = codec.srgb_array(pixels, icc_profile)
                if converted:
                    warn(f"{name}: its ICC profile is not sRGB: its colours were converted "
                         "to sRGB, as a palette's are")
            yield pixels
        if failed is not None:  # before the clustering: no palette from some of the images
            raise failed

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            colours = fit_palette(images(), options.DEFAULT_K if opts.k is None else opts.k,
                                  weights=given, method=opts.method, init=opts.init,
                                  seed=opts.seed, max_iter=opts.max_iter, tol=opts.tol)
        except KpalError as e:
            raise click.ClickException(str(e)) from None
    if out == STDIO:
        click.echo("\n".join("#" + bytes(entry).hex() for entry in colours.tolist()))
    else:
        try:
            save_palette(colours, out, "gpl" if stream else None, force=force)
        except KpalError as e:
            message = str(e)
            raise click.ClickException(message if message.startswith(out)
                                       else f"{out}: {message}") from None
        except OSError as e:  # a full disk, a failing device: named as other commands do
            raise click.ClickException(f"{out}: cannot write: {e.strerror or e}") from None
    if not quiet:
        _echo_notes(caught)
        alpha = " with alpha" if colours.shape[1] == 4 else ""
        click.echo(f"{_plural(len(colours), 'colour')}{alpha} from "
                   f"{_plural(len(paths), 'image')} → {out if out != STDIO else '<stdout>'}",
                   err=out == STDIO)


def _encoded_curve(pixels, icc_profile: bytes | None, opts: options.EncodeOptions,
                   ks) -> list[tuple[int, float, int]]:
    """(k, PSNR, bytes) of the file ``kpal encode -k`` writes at each of ``ks``, up to the
    first that holds every colour: an image's alpha and profile as encode keeps them."""
    points: list[tuple[int, float, int]] = []
    for k in ks:
        encoded = codec.encode_image(pixels, icc_profile=icc_profile, options=opts.replace(k=k))
        if points and encoded.header.k == points[-1][0]:
            break  # no more colours: the curve has reached its end
        points.append((encoded.header.k, encoded.psnr(), len(encoded.data)))
    return points


def _dither_name(opts: options.EncodeOptions) -> str:
    """``Floyd-Steinberg``, ``ordered 0.5``: the dithering and a strength below 1."""
    name = {"fs": "Floyd-Steinberg", "ordered": "ordered"}[opts.dither]
    return name + ("" if opts.dither_strength == 1 else f" {opts.dither_strength:g}")


def _dither_title(opts: options.EncodeOptions) -> str:
    return f"dithered ({_dither_name(opts)})"


def _extensionless_stream(out: str) -> bool:
    """``-o /dev/null`` (a device or a pipe) without an extension: the format is the default."""
    return out != STDIO and not Path(out).suffix and is_stream_target(out)


def _output_format(out: str) -> str:
    if Path(out).is_dir():  # said as such, not as a name without an extension
        raise click.UsageError(f"{printable(out)}: is a directory, expected a file")
    if out.endswith(("/", os.sep)):  # Path() drops the slash: "new/" is a folder's name
        raise click.UsageError(f"{printable(out)}: no such folder")
    ext = Path(out).suffix.lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None:
        raise click.UsageError(f"{out}: unknown image extension {ext!r}")
    return fmt


# ------------------------------------------------------------------ plot
@cli.command(short_help="Draw a figure of what kpal does to an image.")
@click.argument("src", metavar="IN", type=FilePath(dir_okay=True, allow_dash=True))
@click.option("--kind", required=True,
              type=click.Choice(["compare", "palette", "scatter", "iterations", "curve"]),
              help="compare: original beside compressed; palette: swatches; scatter: RGB "
                   "cloud and centroids; iterations: k-means steps; curve: PSNR and size "
                   "against k.")
@click.option("-o", "--output", "out", required=True, type=FilePath(allow_dash=True),
              help="Output figure (.png, .svg or .pdf).")
@option_flags("k", "method", "seed", "dither", "dither_strength", "space",
              helps={"seed": "Random seed of the fit; the same input and seed give the same "
                             "figure."})
@click.option("--size", callback=_size_option, metavar="WxH",
              help="Figure size in pixels, e.g. 1200x800 (default depends on the kind).")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="Print no notes.")
def plot(src, kind, out, size, force, quiet, **values):
    """Draw a figure of what kpal does to image IN (needs pip install "kpal[plot]")."""
    opts = encode_options(values)
    k = opts.k or options.DEFAULT_K
    if kind == "curve" and opts.k is not None:
        raise click.UsageError("--kind curve measures k = 2, 4, 8, ..., 256: drop -k")
    if kind == "iterations" and opts.method != "kmeans":
        raise click.UsageError("--kind iterations shows k-means iterations; drop --method gmm")
    if kind == "scatter" and opts.dither != "none":
        raise click.UsageError("--kind scatter shows the palette, which dithering does not "
                               "change: drop --dither (compare and palette take it)")
    if kind in ("curve", "iterations") and (opts.space != "rgb" or opts.dither != "none"):
        raise click.UsageError(f"--kind {kind} measures undithered k-means in RGB; drop "
                               "--space and --dither (compare, palette and scatter take them)")
    try:
        from kpal.plot import check_size

        check_size(kind, size)  # before the fit, which can take seconds
    except KpalError as e:
        raise click.UsageError(f"--size: {e}") from None
    out = stdout_alias(out)
    if out != STDIO and Path(out).is_dir():
        raise click.UsageError(f"{printable(out)}: is a directory, expected a file")
    fmt = "png" if out == STDIO else (Path(out).suffix.lower().lstrip(".") or "png")
    if fmt not in ("png", "svg", "pdf"):
        raise click.UsageError(f"{out}: figures are written as .png, .svg or .pdf")
    _check_output(src, out, force)
    name, data = _read_input(src)
    im = _open_image(name, data)
    # A grey or CMYK profile is applied as kpal encode applies it; an RGB one below.
    applied = False
    if im.info.get("icc_profile"):
        with silenced("the image's ICC profile"):  # encode's words are about the file
            managed, _ = codec.colour_managed(im)
        applied = managed is not im
        im = managed
    try:
        rgb, p_image = codec.to_rgb(im)
    except KpalError as e:
        raise click.ClickException(f"{name}: {e}") from None
    if applied and not quiet:
        click.echo(f"note: {printable(name)} has an ICC profile: the figures show its "
                   "colours converted to sRGB", err=True)
    # What kpal encode writes keeps the alpha and the ICC profile the figure leaves out.
    flattened_or_profiled = im.info.get("icc_profile") is not None
    converted = False  # an RGB profile's colours, converted for the figure only
    if flattened_or_profiled:
        # A figure is an sRGB image: a Display P3 or Adobe RGB photo's colours drawn as
        # they are would look washed out, so they are converted first.
        rgb, converted = codec.srgb_array(rgb, im.info["icc_profile"])
        if converted and not quiet:
            click.echo(f"note: {printable(name)} has an ICC profile: the figures show its "
                       "colours converted to sRGB", err=True)
        if converted:
            if p_image is not None:  # its palette in sRGB: the figures keep the file's k
                entries = np.asarray(p_image.getpalette("RGB"), np.uint8).reshape(1, -1, 3)
                p_image = p_image.copy()
                p_image.putpalette(codec.srgb_array(entries, im.info["icc_profile"])[0]
                                   .reshape(-1).tolist())
                p_image.info.pop("icc_profile", None)
    # An opaque palette image keeps its own palette unless -k is smaller, as encode does.
    keep_palette = p_image is not None and rgb.shape[-1] == 3
    alpha = rgb.shape[-1] == 4
    if alpha and kind != "palette":  # the palette draws alpha on a checkerboard
        rgb = _over_white(name, rgb, "the figures show it", quiet)
        flattened_or_profiled = True
    source = p_image if keep_palette else rgb

    def shown_entries(palette: np.ndarray) -> np.ndarray:
        """A file's RGBA entries as the figure shows them: over white, in sRGB."""
        from kpal.cluster.alpha import flatten

        entries = flatten(palette, (255, 255, 255))
        if converted:
            entries = codec.srgb_array(np.ascontiguousarray(entries[None]),
                                       im.info["icc_profile"])[0][0]
        return entries

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            from kpal import plot as plots

            if kind in ("compare", "palette", "scatter"):
                # The real encoding, so the figure shows the file kpal would write.
                plain = (opts.replace(dither="none", dither_strength=1.0) if kind == "compare"
                         else opts)
                encoded = codec.encode_image(source, options=plain)
                shown = (encoded.palette, encoded.labels)
                extra = {}
                if kind == "compare":
                    written, pixels, icc_profile = encoded, rgb, None
                    if flattened_or_profiled:  # the size of the real file, not the figure's
                        with silenced("the image's ICC profile"):  # said once, above
                            pixels, _, icc_profile = _pixels_for_encoding(name, data,
                                                                          opts.background)
                        written = codec.encode_image(pixels, options=plain,
                                                     icc_profile=icc_profile)
                    extra = {"original_bytes": len(data),
                             "compressed_bytes": len(written.data),
                             "metadata_bytes": written.header.metadata_length}
                    if written.palette.shape[1] == 4:
                        # The file's own RGBA entries over white, as the original is shown:
                        # the picture, PSNR and sizes all describe the file kpal writes.
                        shown = (shown_entries(written.palette), written.labels)
                        extra["raw_bits"] = 32
                    if opts.dither != "none" and opts.dither_strength > 0:
                        # Dithered beside undithered: the file's palette, remapped with
                        # dithering (RGBA entries kept, then shown over white as above).
                        same = tuple(map(tuple, written.palette.tolist()))
                        dithered = codec.encode_image(
                            pixels, icc_profile=icc_profile,
                            options=opts.replace(k=None, method="kmeans", sample=None,
                                                 palette=same))
                        dithered_shown = dithered.palette
                        if dithered_shown.shape[1] == 4:
                            dithered_shown = shown_entries(dithered_shown)
                        extra.update(dithered=(dithered_shown, dithered.labels),
                                     dithered_title=_dither_title(opts),
                                     dithered_bytes=len(dithered.data))
                # A P image's own colours kept: as its palette (opaque) or every colour
                # of its pixels (with transparency, fitted as RGBA without iterations).
                kept = encoded.method == "palette" or (p_image is not None
                                                       and encoded.n_iter == 0)
                fitted_by = _fitted_by(opts, kept)
                if kind == "palette" and opts.dither != "none" and opts.dither_strength > 0:
                    fitted_by += f", {_dither_name(opts)} dithering"  # the shares dithered
                fig = getattr(plots, kind)(rgb, quantization=shown, size=size,
                                           fitted_by=fitted_by, **extra)
            elif kind == "iterations":
                fig = plots.iterations(rgb, k, seed=opts.seed, size=size)
            else:
                # Each k fitted as encode -k fits it: the curve shows the files encode writes.
                points = None
                if flattened_or_profiled:  # alpha or a profile: measured on the real files
                    with silenced("the image's ICC profile"):  # said once, above
                        pixels, _, icc_profile = _pixels_for_encoding(name, data)
                    points = _encoded_curve(pixels, icc_profile, opts, plots.CURVE_KS)
                fig = plots.curve(rgb, method=opts.method, seed=opts.seed,
                                  overhead_bytes=container.OVERHEAD, size=size, points=points,
                                  raw_bits=32 if alpha else 24)
        except ImportError as e:
            raise click.ClickException(str(e)) from None
        except ValueError as e:  # KpalError, or a figure size that cannot hold the figure
            raise click.ClickException(f"{name}: {e}") from None
    if not quiet:
        _echo_notes((w for w in caught if "distinct colour" in str(w.message)), name)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=fig.dpi)
    _write_output(out, buffer.getvalue(), force)


def _fitted_by(opts: options.EncodeOptions, kept: bool) -> str:
    """How a figure's palette was made, as its titles say it (``kept``: a P image's own)."""
    from kpal.plot import METHOD_NAMES

    if kept:
        return "the image's own palette"
    return METHOD_NAMES[opts.method] + (" in Oklab" if opts.space == "oklab" else "")


# ------------------------------------------------------------------ view
@cli.command()
@click.argument("src", metavar="IN", type=FilePath(dir_okay=True, allow_dash=True))
@click.option("-o", "--output", "out", type=FilePath(allow_dash=True),
              help="Write the page here: a .html file, a folder (IN's name with .html) or - "
                   "for stdout; default: a new temporary folder.")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("--no-open", is_flag=True, help="Write the page without opening a browser.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success (not the page's "
                                                  "path, nor notes).")
def view(src, out, force, no_open, quiet):
    """Show .kpal file IN (- for stdin) in the web browser.

    Writes one self-contained HTML page (the viewer, the decoder and the file,
    nothing to fetch) and prints its path; with -o -, the page goes to stdout
    and no browser opens. A damaged file is still shown, with what is wrong;
    the exit code is then 1, as for kpal info.
    """
    from kpal import view as viewer

    if batch.is_url(src):
        raise click.UsageError(f"{src}: kpal view shows a local file or - (kpal decode and "
                               "info read URLs)")
    if no_open and quiet and out is None:  # the page would go where nobody is told
        raise click.UsageError("--no-open -q without -o writes a page and says nothing of "
                               "where; give -o PAGE.html (or drop -q to see its path)")
    if src != STDIO:
        _check_input(src)  # "x.kpal: no such file", as every command says it
    if out is not None:
        out = stdout_alias(out)
        if out != STDIO and is_stream_target(Path(out)):  # a device or a pipe: no browser
            no_open = True
    if out is not None and out != STDIO and not _extensionless_stream(out):
        if Path(out).is_dir() or out.endswith(("/", os.sep)):  # a folder, as cp takes one
            if not Path(out).is_dir():
                raise click.UsageError(f"{out}: no such folder")
            stem = "image" if src == STDIO else Path(src).stem
            out = str(Path(out) / f"{stem}.html")
        elif Path(out).suffix.lower() not in (".html", ".htm"):
            raise click.UsageError(f"{out}: the page is HTML; name it .html (or give a folder)")
    if out is not None:
        # Never the input itself, nor a file without --force; the page is text.
        _check_output(src, out, force, binary=False)
    # Read once: IN may be a pipe (a FIFO, <(...)) that gives its bytes only once.
    name, data, length = _read_shown(src)
    shown = "image.kpal" if src == STDIO else Path(src).name
    try:
        if out == STDIO:
            page = viewer.to_html(data, name=shown, file_bytes=length)
            _write_output(STDIO, page.encode("utf-8"), force)
        else:
            with _warnings_about(None):
                page = viewer.view(shown if src == STDIO else src, open_browser=not no_open,
                                   output=out, data=data, file_bytes=length)
            if not quiet:
                click.echo(page)
    except KpalError as e:
        raise click.ClickException(f"{name}: {e}") from None
    except OSError as e:
        where = out or getattr(e, "filename", None) or "the page"
        raise click.ClickException(f"{where}: cannot write: {e.strerror or e}") from None
    try:
        with _warnings_about(name):
            report = codec.inspect(data, file_bytes=length)
    except (KpalError, Image.DecompressionBombError) as e:
        raise click.ClickException(f"{name}: {e}") from None
    if report["reader_needs"] is not None and not report["problem"] and not quiet:
        # a valid file in an optional coding the page's reader lacks; this installation
        # decoded it (its indices were counted), or needs what reader_needs says
        decoded = (report["size"] or {}).get("order0_entropy_bits") is not None
        _warn_one_line(f"{name}: the page cannot decode coding {report['header']['coding']} "
                       f"({report['coding']}), an optional one: it shows the header only "
                       f"({'kpal decode reads it' if decoded else report['reader_needs']})",
                       UserWarning, __file__, 0)
    if report["problem"]:
        raise click.ClickException(f"{name}: {report['problem']}")


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":  # pragma: no cover
    main()
