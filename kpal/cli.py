"""The ``kpal`` command line: encode, decode and inspect ``.kpal`` files.

The CLI is a thin shell around :mod:`kpal.codec`: it parses options, calls the
library and prints a report. Every failure is one line on stderr, ``kpal:
error: ...``, with exit code 2 for usage errors and 1 for bad data or I/O.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import click
from PIL import Image, UnidentifiedImageError

from kpal import codec, container
from kpal import coding as codings
from kpal.errors import KpalError

STDIO = "-"


class KpalGroup(click.Group):
    """A click group that reports every error as a single line, never a traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        previous = _raise_on_sigterm()
        previous_showwarning, warnings.showwarning = warnings.showwarning, _warn_one_line
        try:
            rv = super().main(args=args, prog_name=prog_name or "kpal",
                              complete_var=complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as e:
            click.echo(e.ctx.get_help(), err=True)
            sys.exit(2)
        except click.UsageError as e:
            _fail(e.format_message(), 2)
        except click.ClickException as e:
            _fail(e.format_message(), e.exit_code)
        except (click.Abort, KeyboardInterrupt):
            _fail("interrupted", 130)
        except Terminated:
            _fail("terminated", 128 + signal.SIGTERM)
        except (KpalError, OSError, Image.DecompressionBombError) as e:
            _fail(str(e), 1)
        except MemoryError:
            _fail("out of memory", 1)
        finally:
            signal.signal(signal.SIGTERM, previous)
            warnings.showwarning = previous_showwarning
        sys.exit(rv if isinstance(rv, int) else 0)


def _warn_one_line(message, category, filename, lineno, file=None, line=None) -> None:
    # e.g. Pillow's DecompressionBombWarning: one line, not Python's source-quoting two.
    click.echo(f"kpal: warning: {message}", err=True)


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C, so atomic writes clean up after themselves."""


def _raise_on_sigterm():
    # Not a KeyboardInterrupt: click would print a blank line for it, as after ^C.
    def handler(signum, frame):
        raise Terminated

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (some test runners)
        return signal.getsignal(signal.SIGTERM)


def _fail(message: str, code: int):
    click.echo(f"kpal: error: {message}", err=True)
    sys.exit(code)


@click.group(cls=KpalGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kpal")
def cli() -> None:
    """kpal: compress images to k-colour palettes (.kpal files) and back."""


# ------------------------------------------------------------------ helpers
def _read_input(path: str, kpal: bool = False) -> tuple[str, bytes]:
    """Return a display name and the bytes of IN (a file or - for stdin).

    With ``kpal``, the header is read and checked first, so a file that is
    not a .kpal file (or has an impossible header) is refused before the
    rest of it is read.
    """
    name = "<stdin>" if path == STDIO else path
    if path != STDIO:
        p = Path(path)
        if p.is_dir():
            raise click.UsageError(f"{path}: is a directory, expected a file")
        if not p.exists():
            raise click.UsageError(f"{path}: no such file")
        if p.is_char_device() or p.is_block_device():  # /dev/zero would be read forever
            raise click.UsageError(f"{path}: is a device, expected a file (use - for stdin)")
    try:
        source = nullcontext(sys.stdin.buffer) if path == STDIO else open(path, "rb")  # noqa: SIM115
        with source as f:
            head = f.read(container.HEADER_SIZE) if kpal else b""
            if kpal:
                try:
                    container.read_header(head)
                except KpalError as e:
                    raise click.ClickException(f"{name}: {e}") from None
            return name, head + f.read()
    except OSError as e:
        raise click.ClickException(f"{path}: cannot read: {e.strerror or e}") from None


def _check_output(src: str, out: str, force: bool) -> None:
    if out == STDIO:
        return
    target = Path(out)
    if src != STDIO and target.exists() and os.path.samefile(src, target):
        raise click.UsageError(f"{out}: output is the input file; choose another -o")
    if target.exists() and not force:
        raise click.UsageError(f"{out}: file exists (use --force to overwrite)")
    if target.is_dir():
        raise click.UsageError(f"{out}: is a directory")
    if not target.parent.exists():
        raise click.UsageError(f"{out}: folder {str(target.parent)!r} does not exist")


def _write_output(out: str, data: bytes, force: bool) -> None:
    if out == STDIO:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    from kpal.io import write_atomic

    try:
        write_atomic(out, data, force=force)
    except FileExistsError as e:
        raise click.UsageError(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"{out}: cannot write: {e.strerror or e}") from None


def _open_image(name: str, data: bytes) -> Image.Image:
    if not data:
        raise click.ClickException(f"{name}: file is empty")
    try:
        im = Image.open(io.BytesIO(data))
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            raise KpalError(f"has {frames} frames; a .kpal file holds one image "
                            "(extract a frame first)")
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


def _k_option(ctx, param, value):
    if value is not None and not 2 <= value <= 256:
        raise click.BadParameter(f"k={value} must be between 2 and 256")
    return value


def _sample_option(ctx, param, value):
    if value is not None and not 0 < value <= 1:
        raise click.BadParameter(f"{value} must be in (0, 1]")
    return value


def _bytes(n: int) -> str:
    return f"{n:,} bytes"


# ------------------------------------------------------------------ encode
@cli.command()
@click.argument("src", metavar="IN", type=click.Path(dir_okay=True, allow_dash=True))
@click.option("-o", "--output", "out", type=click.Path(allow_dash=True),
              help="Output file; default: IN with the extension .kpal (stdout when IN is -).")
@click.option("-k", "--colors", "k", type=int, callback=_k_option,
              help="Number of colours, 2..256 (default 16; a P image keeps its own palette).")
@click.option("--method", type=click.Choice(["kmeans", "gmm"]), default="kmeans",
              show_default=True, help="How the palette is chosen.")
@click.option("--init", type=click.Choice(["k-means++", "random"]), default="k-means++",
              show_default=True, help="How k-means chooses its starting centres.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed; the same seed gives byte-identical files.")
@click.option("--sample", type=float, callback=_sample_option,
              help="Fit on this fraction of the pixels (0 < F <= 1), then assign all.")
@click.option("--max-iter", type=click.IntRange(min=1),
              help="Maximum iterations (default 300 for k-means, 100 for EM).")
@click.option("--tol", type=click.FloatRange(min=0),
              help="Convergence tolerance (default 1e-4 for k-means, 1e-3 for EM).")
@click.option("--packing", type=click.Choice(["fixed", "radix"]), default="fixed",
              show_default=True, help="Index packing: fixed ceil(log2 k) bits or exact radix.")
@click.option("--entropy", is_flag=True, help="Entropy-code the indices (smallest files).")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
def encode(src, out, k, method, init, seed, sample, max_iter, tol, packing, entropy, force,
           quiet):
    """Compress image IN to a .kpal file and report its size against the bound."""
    if out is None:
        out = STDIO if src == STDIO else str(Path(src).with_suffix(".kpal"))
    _check_output(src, out, force)
    start = time.perf_counter()
    name, data = _read_input(src)
    original_bytes = len(data)
    image = _pixels_for_encoding(name, data)
    del data  # the encoded input is no longer needed: keep the peak memory down
    options = dict(method=method, init=init, seed=seed, max_iter=max_iter, tol=tol)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            encoded = codec.encode_image(image, k, sample=sample,
                                         coding="entropy" if entropy else packing, **options)
        except KpalError as e:
            raise click.ClickException(f"{name}: {e}") from None
    del image
    _write_output(out, encoded.data, force)
    seconds = time.perf_counter() - start
    if quiet:
        return
    echo = _reporter(out)
    for w in caught:
        if issubclass(w.category, UserWarning):
            echo(f"note: {w.message}")
    _report_encode(echo, name, out, original_bytes, encoded, k, seconds)
    if sample is not None and encoded.method != "palette":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            full_psnr = codec.encode_image(encoded.source, k, **options).psnr()
        echo(f"  {'sampling cost':<14} {full_psnr - encoded.psnr():+.2f} dB "
             f"(fitting all pixels gives {full_psnr:.2f} dB)")


def _pixels_for_encoding(name: str, data: bytes):
    """IN's pixels as the codec takes them: an RGB array, or the palette image itself."""
    im = _open_image(name, data)
    if im.mode in ("P", "PA"):
        # The codec applies the mode rules and keeps the palette; converting
        # here too would expand the pixels to RGB twice.
        return im
    try:
        rgb, p_image = codec.to_rgb(im)
    except KpalError as e:
        raise click.ClickException(f"{name}: {e}") from None
    if p_image is not None:
        return p_image
    im.close()  # np.asarray copied the pixels: release Pillow's copy
    return rgb


def _reporter(out: str):
    # With the file on stdout, the report goes to stderr.
    return (lambda s: click.echo(s, err=True)) if out == STDIO else click.echo


def _report_encode(echo, name, out, original_bytes, encoded, k_requested, seconds):
    h = encoded.header
    r = encoded.size_report()
    psnr = encoded.psnr()
    how = {"palette": "own palette kept (lossless)"}.get(encoded.method, encoded.method)
    rows = [
        ("pixels", f"{h.width}×{h.height} = {h.n_pixels:,}"),
        ("colours", f"k = {h.k}" + (f" (asked {k_requested})" if k_requested not in (None, h.k)
                                     else "") + f", {h.bits_per_index} bits per index, {how}"),
    ]
    if encoded.n_iter is not None:
        rows.append(("fit", f"{encoded.n_iter} iterations (all coarse-to-fine levels), "
                            f"inertia (MSE) {encoded.inertia:.2f}"))
    rows += [
        ("coding", codings.get(h.coding).name),
        ("original file", _bytes(original_bytes)),
        ("raw 24-bit", _bytes(r.raw_bytes)),
        ("theoretical", f"{r.formula} = {_bytes(r.theoretical_bytes)}"),
        ("on disk", f"{_bytes(r.on_disk_bytes)} (overhead {r.overhead_bytes} bytes: header "
                    f"{container.HEADER_SIZE} + checksum {container.CHECKSUM_SIZE})"),
        ("ratio", f"{r.ratio:.2f}× smaller than raw, {r.bits_per_pixel:.3f} bits per pixel"),
        ("PSNR", "lossless (inf dB)" if psnr == float("inf") else f"{psnr:.2f} dB"),
    ]
    rows.append(("time", f"{seconds:.2f} s"))
    echo(f"{name} → {out if out != STDIO else '<stdout>'}")
    for label, value in rows:
        echo(f"  {label:<14} {value}")


# ------------------------------------------------------------------ decode
@cli.command()
@click.argument("src", metavar="IN", type=click.Path(dir_okay=True, allow_dash=True))
@click.option("-o", "--output", "out", type=click.Path(allow_dash=True),
              help="Output image; its extension picks the format (default: IN as .png).")
@click.option("--format", "fmt", help="Output format when OUT is - or has no known extension "
                                      "(e.g. PNG, BMP, TIFF).")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file.")
def decode(src, out, fmt, force):
    """Decode a .kpal file IN to any image format Pillow writes."""
    if out is None:
        out = STDIO if src == STDIO else str(Path(src).with_suffix(".png"))
    if fmt is None:
        if out == STDIO:
            fmt = "PNG"
        else:
            ext = Path(out).suffix.lower()
            fmt = Image.registered_extensions().get(ext)
            if fmt is None:
                raise click.UsageError(f"{out}: unknown image extension {ext!r}; use --format")
    _check_output(src, out, force)
    name, data = _read_input(src, kpal=True)
    try:
        im = codec.decode(data)
    except (KpalError, Image.DecompressionBombError) as e:
        raise click.ClickException(f"{name}: {e}") from None
    buffer = io.BytesIO()
    try:
        im.save(buffer, format=fmt)
    except (OSError, ValueError):  # the format has no palette mode (e.g. JPEG)
        buffer = io.BytesIO()
        im.convert("RGB").save(buffer, format=fmt)
    except KeyError:
        raise click.UsageError(f"unknown output format {fmt!r}") from None
    _write_output(out, buffer.getvalue(), force)


# ------------------------------------------------------------------ info
@cli.command()
@click.argument("src", metavar="IN", type=click.Path(dir_okay=True, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="Print the fields as JSON.")
def info(src, as_json):
    """Show a .kpal file's header, palette, size accounting and checksum status."""
    name, data = _read_input(src, kpal=True)
    try:
        report = codec.inspect(data)
    except (KpalError, Image.DecompressionBombError) as e:
        raise click.ClickException(f"{name}: {e}") from None
    if as_json:
        click.echo(json.dumps({"file": name, **report}, indent=2))
    else:
        _print_info(name, report)
    if report["problem"]:
        raise click.ClickException(f"{name}: {report['problem']}")


def _print_info(name: str, report: dict) -> None:
    h, s = report["header"], report["size"]
    click.echo(name)
    click.echo(f"  version        {h['version']}")
    click.echo(f"  size           {h['width']}×{h['height']} = {s['n_pixels']:,} pixels")
    click.echo(f"  k              {h['k']} colours, {h['bits_per_index']} bits per index")
    click.echo(f"  coding         {report['coding']}")
    click.echo(f"  palette        {' '.join(report['palette'])}")
    click.echo(f"  fixed bound    {s['formula']} = {_bytes(s['theoretical_bytes'])}")
    click.echo(f"  log2 k bound   {s['log2_bound_bits'] / 8:,.0f} bytes")
    if s["entropy_bound_bits"] is not None:
        click.echo(f"  entropy bound  {s['entropy_bound_bits'] / 8:,.0f} bytes (order 0)")
    click.echo(f"  on disk        {_bytes(s['on_disk_bytes'])} (payload "
               f"{_bytes(h['payload_length'])}, overhead {s['overhead_bytes']} bytes)")
    click.echo(f"  ratio          {s['ratio']:.2f}× smaller than raw 24-bit")
    click.echo(f"  checksum       {report['checksum']}")


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


def _echo_notes(caught) -> None:
    for w in caught:
        if issubclass(w.category, UserWarning):
            click.echo(f"note: {w.message}", err=True)


@cli.command()
@click.argument("src", metavar="IN", type=click.Path(dir_okay=True, allow_dash=True))
@click.option("-o", "--output", "out", required=True, type=click.Path(allow_dash=True),
              help="Output image; its extension picks the format (PNG keeps it exact).")
@click.option("-k", "--colors", "k", type=int, default=16, show_default=True,
              callback=_k_option, help="Number of mixture components, 2..256.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed of the fit and of the draw.")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file.")
def sample(src, out, k, seed, force):
    """Draw a new image from the colours of IN.

    Fits a Gaussian mixture of K components to IN's pixels and writes an image
    of IN's size whose pixels are drawn independently from it: IN's colour
    distribution without its spatial structure.
    """
    from kpal.cluster.gmm import sample_image

    fmt = "PNG" if out == STDIO else _output_format(out)
    _check_output(src, out, force)
    name, data = _read_input(src)
    rgb, _ = codec.to_rgb(_open_image(name, data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        drawn = sample_image(rgb, k, seed=seed)
    _echo_notes(caught)
    buffer = io.BytesIO()
    Image.fromarray(drawn, "RGB").save(buffer, format=fmt)
    _write_output(out, buffer.getvalue(), force)


def _output_format(out: str) -> str:
    ext = Path(out).suffix.lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None:
        raise click.UsageError(f"{out}: unknown image extension {ext!r}")
    return fmt


# ------------------------------------------------------------------ plot
@cli.command()
@click.argument("src", metavar="IN", type=click.Path(dir_okay=True, allow_dash=True))
@click.option("--kind", required=True,
              type=click.Choice(["compare", "palette", "scatter", "iterations", "curve"]),
              help="compare: original beside compressed; palette: swatches; scatter: RGB "
                   "cloud and centroids; iterations: k-means steps; curve: PSNR and size "
                   "against k.")
@click.option("-o", "--output", "out", required=True, type=click.Path(allow_dash=True),
              help="Output figure (.png, .svg or .pdf).")
@click.option("-k", "--colors", "k", type=int, default=16, show_default=True,
              callback=_k_option, help="Number of colours (curve: ignored, k = 2..256).")
@click.option("--method", type=click.Choice(["kmeans", "gmm"]), default="kmeans",
              show_default=True, help="How the palette is chosen.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--size", callback=_size_option, metavar="WxH",
              help="Figure size in pixels, e.g. 1200x800 (default depends on the kind).")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file.")
def plot(src, kind, out, k, method, seed, size, force):
    """Draw a figure of what kpal does to image IN (needs pip install "kpal[plot]")."""
    from kpal import plot as plots

    if kind == "iterations" and method != "kmeans":
        raise click.UsageError("--kind iterations shows k-means iterations; drop --method gmm")
    fmt = "png" if out == STDIO else (Path(out).suffix.lower().lstrip(".") or "png")
    if fmt not in ("png", "svg", "pdf"):
        raise click.UsageError(f"{out}: figures are written as .png, .svg or .pdf")
    _check_output(src, out, force)
    name, data = _read_input(src)
    im = _open_image(name, data)
    rgb, _ = codec.to_rgb(im)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if kind in ("compare", "palette", "scatter"):
                # The real encoding, so the figure shows the file kpal would write.
                encoded = codec.encode_image(rgb, k, method=method, seed=seed,
                                             **plots.fit_options(method))
                sizes = {"original_bytes": len(data), "compressed_bytes": len(encoded.data)}
                fig = getattr(plots, kind)(rgb, quantization=(encoded.palette, encoded.labels),
                                           size=size, **(sizes if kind == "compare" else {}))
            elif kind == "iterations":
                fig = plots.iterations(rgb, k, seed=seed, size=size)
            else:
                overhead = container.HEADER_SIZE + container.CHECKSUM_SIZE
                fig = plots.curve(rgb, method=method, seed=seed, overhead_bytes=overhead,
                                  size=size)
        except ImportError as e:
            raise click.ClickException(str(e)) from None
    _echo_notes(w for w in caught if "distinct colours" in str(w.message))
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=fig.dpi)
    _write_output(out, buffer.getvalue(), force)


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":  # pragma: no cover
    main()
