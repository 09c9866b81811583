"""Palette files, and one palette fitted to many images.

A palette is an ndarray of shape (n, 3), uint8, with 1 <= n <= 256 (what a
``.kpal`` file can store), or of shape (n, 4) when some entry has an alpha
below 255 (straight RGBA, as a ``.kpal`` file with transparency stores it; a
palette whose entries are all opaque is always read as (n, 3)).
:func:`load_palette` reads one from any of these files, recognised by their
content first and their extension second:

======================  =====================================================
format                  what is read
======================  =====================================================
``.kpal``               the file's palette, all ``k`` entries, with their
                        alpha when the file has an RGBA palette (the header,
                        length and checksum are checked; the indices are not
                        decoded)
GIMP ``.gpl``           the ``R G B [name]`` lines after ``GIMP Palette``;
                        ``Name:``/``Columns:`` lines and ``#`` comments skipped
Adobe ``.act``          768 bytes of 256 RGB triplets, optionally followed by
                        a big-endian u16 colour count and a u16 transparent
                        index (ignored: the entry keeps its colour); the
                        count says how many entries are real
PNG-8, GIF              the palette entries that at least one pixel uses, in
                        index order (a GIF palette is padded to a power of two
                        and a PNG one may hold unused entries; the used ones
                        are the palette a reader sees), with the alpha of
                        the image's transparency (a PNG ``tRNS`` chunk, a
                        GIF transparent index). The image must have mode
                        "P"; a GIF gives its first frame's palette
hex text (``.hex``,     one colour per line, ``#rrggbb``, ``#rrggbbaa`` (with
``.txt``)               alpha) or the same without ``#``, then anything (a
                        name); blank lines and lines starting with ``;``,
                        ``//`` or ``#`` plus a space are comments. In a
                        Paint.NET palette (a comment naming ``paint.net``)
                        8 digits are ``aarrggbb``, alpha first
======================  =====================================================

Duplicate colours are kept, in file order, so that index ``i`` of the array is
entry ``i`` of the file; nearest-colour mapping picks the lowest index among
equal colours. :func:`save_palette` writes every format by extension (a
``.kpal``, PNG or GIF palette is written as a one-row swatch image, one pixel
per entry, which reads back as the same palette). An RGBA palette is written
to ``.kpal``, PNG and hex files (``#rrggbbaa``), and to GIF when its only
non-opaque entry is one of alpha 0; GIMP and Adobe palettes hold no alpha, so
writing one there is refused.

:func:`fit_palette` fits one palette to many images: their colour histograms
are merged one image at a time (memory bounded by the number of distinct
colours, not by the number of images) and the merged histogram is clustered
exactly as :func:`kpal.cluster.quantize` clusters one image's.
"""

from __future__ import annotations

import io
import os
import re
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

import numpy as np

from kpal import container, options
from kpal.cluster.histogram import color_histogram, unpack_rgb
from kpal.errors import FormatError, KpalError, refuse_text_mode, warn
from kpal.io import read_up_to

__all__ = [
    "FORMATS",
    "MAX_COLORS",
    "as_palette",
    "dump_palette",
    "fit_palette",
    "format_of_path",
    "load_palette",
    "map_to_palette",
    "merge_histograms",
    "parse_palette",
    "save_palette",
]

#: Format names, and the extensions that select them when saving or loading.
FORMATS = {
    "kpal": (".kpal",),
    "gpl": (".gpl",),
    "act": (".act",),
    "png": (".png",),
    "gif": (".gif",),
    "hex": (".hex", ".txt"),
}
#: A ``.kpal`` file stores 1..256 colours, so a palette holds as many.
MAX_COLORS = options.MAX_K

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_GIF_MAGICS = (b"GIF87a", b"GIF89a")
_GPL_MAGIC = "GIMP Palette"
#: Adobe Color Table: 256 RGB triplets, then optionally count and transparent index.
_ACT_COLORS = 768
_ACT_TRAILER = struct.Struct(">HH")
_ACT_NO_TRANSPARENCY = 0xFFFF
_HEX_COLOUR = re.compile(r"(#?)([0-9a-fA-F]{6}|[0-9a-fA-F]{8})")
_GPL_LINE = re.compile(r"(\d{1,3})\s+(\d{1,3})\s+(\d{1,3})(?:\s.*)?")
#: Weighted counts stay integers below this total, so k-means sums stay exact.
_EXACT_TOTAL = float(1 << 50)
#: Weights up to this multiply counts as they are (an image's count is below 2**32);
#: larger ones are divided by the largest first.
_LARGEST_WEIGHT = float(1 << 20)
#: Formats without alpha, as messages name them.
_FORMAT_NAMES = {"gpl": "a GIMP (.gpl)", "act": "an Adobe (.act)"}

PaletteSource = str | os.PathLike | IO[bytes]


# ---------------------------------------------------------------- reading
def load_palette(source: PaletteSource) -> np.ndarray:
    """Read a palette file in any format of the module docstring.

    Parameters
    ----------
    source : path or binary file object
        The palette file. The format is recognised from the content (the
        ``.kpal``, PNG and GIF signatures, a ``GIMP Palette`` first line),
        then from the extension (``.act``, ``.gpl``, ``.hex``, ``.txt``), then
        from the length (768 or 772 bytes: ``.act``); anything else is read
        as hex text.

    Returns
    -------
    ndarray of shape (n, 3) or (n, 4), uint8
        The colours in file order, ``1 <= n <= 256``, duplicates kept; with
        their alpha (straight RGBA) when the file gives some entry an alpha
        below 255.

    Raises
    ------
    KpalError
        A malformed file, in one line naming the file (and, for text formats,
        the line number and the offending text), or fewer than 1 / more than
        256 colours.
    OSError
        The file cannot be read.
    TypeError
        ``source`` is neither a path nor a binary file object (a file open in
        text mode, say).

    Examples
    --------
    >>> import io
    >>> load_palette(io.BytesIO(b"#ff0000\\n; comment\\n00ff80\\n")).tolist()
    [[255, 0, 0], [0, 255, 128]]
    """
    if isinstance(source, (str, os.PathLike, bytes)):  # bytes: a path, as open() takes it
        name = os.fsdecode(source)
        with open(source, "rb") as f:
            data = _read_bounded(f, name)
    elif isinstance(source, io.TextIOBase) or not callable(getattr(source, "read", None)):
        refuse_text_mode(source)
        msg = f"a palette is read from a path or a binary file object, not {type(source).__name__}"
        raise TypeError(msg)
    else:
        name = str(getattr(source, "name", "<palette>"))
        data = _read_bounded(source, name)
    return parse_palette(data, name=name)


#: A text palette (GIMP, hex) of 256 colours is a few kilobytes: past this it is not one.
_MAX_TEXT_PALETTE = 1 << 20
#: The most read of any palette file (a .kpal, PNG or GIF palette image).
_MAX_PALETTE_FILE = 1 << 28


def _read_bounded(f: IO[bytes], name: str) -> bytes:
    """A palette file's bytes; one far larger than any palette (``/dev/zero``) refused."""
    data = read_up_to(f, _MAX_TEXT_PALETTE + 1)
    refuse_text_mode(data)
    if len(data) > _MAX_TEXT_PALETTE:
        _refuse_long_text(data, _detect(data, name), name)  # before reading any more
        data = bytes(data) + bytes(read_up_to(f, _MAX_PALETTE_FILE + 1 - len(data)))
        if len(data) > _MAX_PALETTE_FILE:
            msg = f"{name}: more than {_MAX_PALETTE_FILE:,} bytes, too large for a palette file"
            raise KpalError(msg)
    return bytes(data)


def _refuse_long_text(data: bytes, format: str, name: str) -> None:
    if format in ("gpl", "hex") and len(data) > _MAX_TEXT_PALETTE:
        msg = (f"{name}: more than {_MAX_TEXT_PALETTE:,} bytes, not a text palette (256 "
               "colours take a few kilobytes)")
        raise KpalError(msg)


def parse_palette(data: bytes, format: str | None = None, *, name: str = "<palette>"
                  ) -> np.ndarray:
    """Parse the bytes of a palette file (see :func:`load_palette`).

    Parameters
    ----------
    data : bytes
        The whole file.
    format : {"kpal", "gpl", "act", "png", "gif", "hex"}, optional
        Skip detection and read this format.
    name : str, default "<palette>"
        File name used in messages, and for detection by extension.

    Returns
    -------
    ndarray of shape (n, 3) or (n, 4), uint8
    """
    data = bytes(data)
    if format is None:
        format = _detect(data, name)
    elif format not in FORMATS:
        msg = f"{name}: unknown palette format {format!r} (known: {', '.join(FORMATS)})"
        raise KpalError(msg)
    _refuse_long_text(data, format, name)
    reader = {"kpal": _read_kpal, "gpl": _read_gpl, "act": _read_act, "png": _read_image,
              "gif": _read_image, "hex": _read_hex}[format]
    palette = reader(data, name)
    return _checked(palette, name)


def _detect(data: bytes, name: str) -> str:
    if data.startswith(container.MAGIC):
        return "kpal"
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data.startswith(_GIF_MAGICS):
        return "gif"
    if data.lstrip(b"\xef\xbb\xbf").startswith(_GPL_MAGIC.encode()):
        return "gpl"
    by_extension = _format_of_extension(name)
    if by_extension is not None:  # a .png that is not a PNG is refused as one, not read as text
        return by_extension
    if len(data) in (_ACT_COLORS, _ACT_COLORS + _ACT_TRAILER.size):
        return "act"
    return "hex"


def _format_of_extension(name: str) -> str | None:
    suffix = Path(name).suffix.lower()
    for fmt, suffixes in FORMATS.items():
        if suffix in suffixes:
            return fmt
    return None


def _checked(palette: np.ndarray, name: str) -> np.ndarray:
    n = palette.shape[0]
    if n == 0:
        msg = f"{name}: the palette holds no colours"
        raise KpalError(msg)
    if n > MAX_COLORS:
        msg = f"{name}: the palette holds {n} colours, a .kpal palette at most {MAX_COLORS}"
        raise KpalError(msg)
    return _opaque_as_rgb(np.ascontiguousarray(palette, dtype=np.uint8).reshape(n, -1))


def _opaque_as_rgb(palette: np.ndarray) -> np.ndarray:
    """An RGBA palette whose entries are all opaque is an RGB palette."""
    if palette.shape[1] == 4 and bool((palette[:, 3] == 255).all()):
        return np.ascontiguousarray(palette[:, :3])
    return palette


def _read_kpal(data: bytes, name: str) -> np.ndarray:
    try:
        _, palette, blocks, _ = container.read_parts(data)
    except FormatError as error:
        msg = f"{name}: {error}"
        raise FormatError(msg) from None
    return _in_srgb(palette.copy(), dict(blocks).get(container.ICC_BLOCK), name)


def _in_srgb(entries: np.ndarray, icc_profile: bytes | None, name: str) -> np.ndarray:
    """A palette file's entries in sRGB, as palette colours are: converted, with a note,
    when the file carries a profile of another space (a wide-gamut photo's .kpal, PNG-8)."""
    if not icc_profile or not entries.size:
        return entries
    from kpal.codec import srgb_array  # imported here: the codec may use this module

    converted, changed = srgb_array(np.ascontiguousarray(entries[None]), icc_profile)
    if changed:
        warn(f"palette file {name}: its ICC profile is not sRGB: its entries were converted "
             "to sRGB, as palette colours are")
    return np.ascontiguousarray(converted[0])


def _read_act(data: bytes, name: str) -> np.ndarray:
    if len(data) not in (_ACT_COLORS, _ACT_COLORS + _ACT_TRAILER.size):
        msg = (f"{name}: an .act palette is {_ACT_COLORS} or "
               f"{_ACT_COLORS + _ACT_TRAILER.size} bytes, got {len(data)}")
        raise KpalError(msg)
    colours = np.frombuffer(data[:_ACT_COLORS], dtype=np.uint8).reshape(256, 3)
    if len(data) == _ACT_COLORS:
        return colours.copy()
    count, _transparent = _ACT_TRAILER.unpack_from(data, _ACT_COLORS)
    if not 1 <= count <= 256:
        msg = f"{name}: .act colour count {count} is outside 1..256"
        raise KpalError(msg)
    return colours[:count].copy()


def _read_gpl(data: bytes, name: str) -> np.ndarray:
    lines = _text_lines(data, name)
    if not lines or lines[0].strip() != _GPL_MAGIC:
        first = lines[0].strip() if lines else ""
        msg = f"{name}:1: {first!r} is not a GIMP palette header (expected {_GPL_MAGIC!r})"
        raise KpalError(msg)
    colours = []
    for number, line in enumerate(lines[1:], start=2):
        text = line.strip()
        if not text or text.startswith("#") or text.startswith(("Name:", "Columns:")):
            continue
        match = _GPL_LINE.fullmatch(text)
        values = [int(v) for v in match.groups()] if match else []
        if not values or max(values) > 255:
            msg = (f"{name}:{number}: {text!r} is not a colour line "
                   "(expected 'R G B [name]' with each value 0..255)")
            raise KpalError(msg)
        colours.append(values)
    return np.array(colours, dtype=np.uint8).reshape(-1, 3)


def _read_hex(data: bytes, name: str) -> np.ndarray:
    colours = []
    lines = _text_lines(data, name)
    # Paint.NET writes aarrggbb, and says so in its first comment lines.
    paint_net = any(_is_comment(line.strip()) and "paint.net" in line.lower() for line in lines)
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if _is_comment(text):
            continue
        token = text.split()[0]
        match = _HEX_COLOUR.fullmatch(token)
        if match is None:
            msg = f"{name}:{number}: {token!r} is not a colour (expected #rrggbb or #rrggbbaa)"
            raise KpalError(msg)
        colour = bytes.fromhex(match.group(2))
        if len(colour) == 4 and paint_net and not match.group(1):  # alpha first
            colour = colour[1:] + colour[:1]
        colours.append(colour)
    if all(len(colour) == 3 for colour in colours):
        return np.frombuffer(b"".join(colours), dtype=np.uint8).reshape(-1, 3)
    # Some carry alpha: the others are opaque.
    return np.array([list(c) + [255] * (4 - len(c)) for c in colours],
                    dtype=np.uint8).reshape(-1, 4)


def _is_comment(text: str) -> bool:
    """Blank, ``;`` or ``//`` lines, and ``#`` not followed by a colour (``# note``, ``##``)."""
    if not text or text.startswith((";", "//")):
        return True
    return text.startswith("#") and (len(text) == 1 or not text[1].isalnum())


def _text_lines(data: bytes, name: str) -> list[str]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        msg = f"{name}:{line}: not a text palette (byte 0x{data[error.start]:02x} is not UTF-8)"
        raise KpalError(msg) from None
    return text.splitlines()


def _read_image(data: bytes, name: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.mode != "P":  # before the pixels are decoded
                msg = (f"{name}: a {im.format} palette must be a palette image (mode P), "
                       f"this one has mode {im.mode}")
                raise KpalError(msg)
            im.load()
            indices = np.asarray(im)
            entries = np.asarray(im.getpalette("RGB") or [], dtype=np.uint8).reshape(-1, 3)
            entries = _with_transparency(entries, im.info.get("transparency"))
            profile = im.info.get("icc_profile")
    except UnidentifiedImageError:
        msg = f"{name}: not a PNG or GIF image (a palette image was expected)"
        raise KpalError(msg) from None
    except Image.DecompressionBombError as error:  # which file: the palette, not the image
        raise KpalError(f"{name}: {error}") from None
    except (OSError, SyntaxError) as error:
        msg = f"{name}: cannot read the image palette: {error}"
        raise KpalError(msg) from None
    used = np.flatnonzero(np.bincount(indices.reshape(-1), minlength=256))
    if used.size and used[-1] >= entries.shape[0]:
        msg = (f"{name}: pixels use palette index {used[-1]} but the palette has "
               f"{entries.shape[0]} entries")
        raise KpalError(msg)
    return _in_srgb(entries[used], profile, name)


def _with_transparency(entries: np.ndarray, transparency: object) -> np.ndarray:
    """A palette image's entries with the alpha of its transparency: a PNG ``tRNS``
    (one alpha per entry, the rest opaque) or a transparent index (alpha 0)."""
    if transparency is None:
        return entries
    alpha = np.full(entries.shape[0], 255, dtype=np.uint8)
    if isinstance(transparency, int):
        if 0 <= transparency < alpha.size:
            alpha[transparency] = 0
    else:
        given = np.frombuffer(bytes(transparency), dtype=np.uint8)[: alpha.size]
        alpha[: given.size] = given
    return np.concatenate([entries, alpha[:, None]], axis=1)


# ---------------------------------------------------------------- writing
def save_palette(palette: object, path: str | os.PathLike, format: str | None = None, *,
                 force: bool = False) -> None:
    """Write a palette file atomically (see :func:`kpal.io.write_atomic`).

    Parameters
    ----------
    palette : array-like of shape (n, 3) or (n, 4)
        1..256 colours, integers 0..255 (RGBA: straight alpha).
    path : str or PathLike
        Destination; its extension chooses the format unless ``format`` is
        given (``.kpal``, ``.gpl``, ``.act``, ``.png``, ``.gif``, ``.hex``,
        ``.txt``).
    format : {"kpal", "gpl", "act", "png", "gif", "hex"}, optional
    force : bool, default False
        Replace an existing file.

    Raises
    ------
    KpalError
        An unknown extension or format, an invalid palette, or alpha in a
        format that cannot hold it.
    FileExistsError
        ``path`` exists and ``force`` is false.
    """
    from kpal.io import write_atomic

    if format is None:
        format = format_of_path(path)
    write_atomic(path, dump_palette(palette, format), force=force)


def format_of_path(path: str | os.PathLike) -> str:
    """The palette format :func:`save_palette` writes for ``path``, from its extension.

    Raises
    ------
    KpalError
        An extension no palette format has, named with the known ones.
    """
    format = _format_of_extension(os.fspath(path))
    if format is None:
        known = ", ".join(s for suffixes in FORMATS.values() for s in suffixes)
        msg = (f"{os.fspath(path)}: unknown palette extension "
               f"{Path(path).suffix or '(none)'!r} (known: {known})")
        raise KpalError(msg)
    return format


def dump_palette(palette: object, format: str) -> bytes:
    """Return the bytes of a palette file in ``format`` (see :func:`save_palette`).

    Examples
    --------
    >>> dump_palette([[255, 0, 0], [0, 255, 128]], "hex")
    b'#ff0000\\n#00ff80\\n'
    """
    palette = as_palette(palette)
    if format not in FORMATS:
        msg = f"unknown palette format {format!r} (known: {', '.join(FORMATS)})"
        raise KpalError(msg)
    if palette.shape[1] == 4 and format in ("gpl", "act"):
        n = int((palette[:, 3] < 255).sum())
        msg = (f"{_FORMAT_NAMES[format]} palette holds no alpha, and {n} of its "
               f"{palette.shape[0]} entries {'is' if n == 1 else 'are'} not opaque: write "
               ".hex, .kpal or .png")
        raise KpalError(msg)
    if format in ("png", "gif"):
        return _dump_image(palette, format)
    return {"kpal": _dump_kpal, "gpl": _dump_gpl, "act": _dump_act, "hex": _dump_hex}[format](
        palette)


def _dump_hex(palette: np.ndarray) -> bytes:
    return "".join("#" + "".join(f"{v:02x}" for v in entry) + "\n"
                   for entry in palette.tolist()).encode()


def _dump_gpl(palette: np.ndarray) -> bytes:
    lines = [_GPL_MAGIC, "Name: kpal", f"Columns: {min(16, palette.shape[0])}", "#"]
    lines += [f"{r:3d} {g:3d} {b:3d}\t#{r:02x}{g:02x}{b:02x}" for r, g, b in palette.tolist()]
    return ("\n".join(lines) + "\n").encode()


def _dump_act(palette: np.ndarray) -> bytes:
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: palette.shape[0]] = palette
    return table.tobytes() + _ACT_TRAILER.pack(palette.shape[0], _ACT_NO_TRANSPARENCY)


def _dump_kpal(palette: np.ndarray) -> bytes:
    from kpal import coding

    n = palette.shape[0]
    fixed = coding.get("fixed")
    payload = fixed.encode(np.arange(n, dtype=np.uint8).reshape(1, n), n)
    header = container.Header.for_image(coding=fixed.id, k=n, width=n, height=1,
                                        payload_length=len(payload),
                                        alpha=palette.shape[1] == 4)
    return container.write(header, palette, payload)


def _dump_image(palette: np.ndarray, format: str) -> bytes:
    from PIL import Image

    n = palette.shape[0]
    swatch = Image.fromarray(np.arange(n, dtype=np.uint8).reshape(1, n), "P")
    swatch.putpalette(palette[:, :3].tobytes(), "RGB")
    extra = {}
    if palette.shape[1] == 4:
        alpha = palette[:, 3]
        if format == "gif":
            clear = np.flatnonzero(alpha < 255)
            if clear.size > 1 or alpha[clear[0]] != 0:
                msg = ("a GIF palette holds one transparent entry (alpha 0) at most, and this "
                       f"one has {clear.size} entries with alpha below 255: write .png, "
                       ".hex or .kpal")
                raise KpalError(msg)
            extra["transparency"] = int(clear[0])
        else:
            extra["transparency"] = alpha.tobytes()
    out = io.BytesIO()
    # optimize=False: Pillow would otherwise drop or reorder entries of a GIF palette.
    swatch.save(out, format.upper(), optimize=False, **extra)
    return out.getvalue()


def as_palette(value: object) -> np.ndarray:
    """A palette from a file path, a file object or 1..256 RGB (or RGBA) colours.

    Parameters
    ----------
    value : path, binary file object or array-like of shape (n, 3) or (n, 4)
        Colours must be integers 0..255 (an ndarray of any integer dtype,
        a list or tuple of triplets or quadruplets, straight alpha last).

    Returns
    -------
    ndarray of shape (n, 3) or (n, 4), uint8, ``1 <= n <= 256``
        (n, 4) only when some alpha is below 255.

    Raises
    ------
    KpalError
        Not a palette, with the shape or the value that is wrong.
    """
    if isinstance(value, (str, os.PathLike)) or hasattr(value, "read"):
        return load_palette(value)  # type: ignore[arg-type]
    array = np.asarray(value)
    if array.ndim != 2 or array.shape[1] not in (3, 4) \
            or not 1 <= array.shape[0] <= MAX_COLORS:
        msg = (f"palette must have shape (n, 3) or (n, 4) with 1 <= n <= {MAX_COLORS}, "
               f"got {array.shape}")
        raise KpalError(msg)
    if array.dtype != np.uint8:
        if array.dtype.kind not in "iu" or array.min() < 0 or array.max() > 255:
            bad = "non-integer values" if array.dtype.kind not in "iu" else \
                f"value {int(array.min() if array.min() < 0 else array.max())}"
            msg = f"palette colours must be integers 0..255, got {bad}"
            raise KpalError(msg)
    return _opaque_as_rgb(np.ascontiguousarray(array, dtype=np.uint8))


# ---------------------------------------------------------------- one palette, many images
def merge_histograms(images: Iterable[object], weights: Sequence[float] | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Merge the colour histograms of many images, one image at a time.

    Parameters
    ----------
    images : iterable of images
        Each a uint8 ndarray of shape (height, width, 3 or 4) or
        (n_pixels, 3 or 4) (RGB, or straight RGBA; an empty one adds
        nothing), or anything :func:`kpal.codec.to_rgb` takes (a PIL image, a
        path, bytes), which applies the same mode rules as encoding (an image
        with transparency gives RGBA); the colours of an image with an ICC
        profile other than sRGB are converted to sRGB, as palette colours are
        (arrays are taken as sRGB). A generator is read lazily: only one
        image's pixels are in memory at a time.
    weights : sequence of float, optional
        A non-negative weight per image, multiplying its pixel counts
        (default 1 each). To give every image the same say whatever its size,
        pass ``1 / n_pixels`` of each.

    Returns
    -------
    colors : ndarray of shape (n_colors, 3) or (n_colors, 4), uint8
        The distinct colours of all images, in ascending ``r, g, b(, a)``
        order: RGB when every pixel is opaque, else straight RGBA, with every
        fully transparent pixel counted as ``(0, 0, 0, 0)`` (its colour does
        not show).
    counts : ndarray of shape (n_colors,), float64
        Their weighted pixel counts. Integer-valued: counts are used as they
        are when every weight is an integer; otherwise they are rescaled to
        integers summing to about 2**50 (the relative weights are kept to 15
        significant digits) so the clustering's sums stay exact.

    Raises
    ------
    KpalError
        No image, a bad weight (the message names its index and value), the
        number of weights differing from the number of images, or all weights 0.

    Examples
    --------
    >>> icon = np.array([[(255, 0, 0, 255), (9, 9, 9, 0)], [(7, 7, 7, 0), (0, 0, 255, 128)]],
    ...                 dtype=np.uint8)
    >>> colors, counts = merge_histograms([icon, np.zeros((1, 1, 3), np.uint8)])
    >>> colors.tolist(), counts.tolist()
    ([[0, 0, 0, 0], [0, 0, 0, 255], [0, 0, 255, 128], [255, 0, 0, 255]], [2.0, 1.0, 1.0, 1.0])
    """
    if (isinstance(images, (str, bytes, os.PathLike, np.ndarray))
            or (hasattr(images, "mode") and hasattr(images, "size"))):  # one PIL image
        msg = (f"images must be a list (or other iterable) of images, got one "
               f"{type(images).__name__}: wrap it in a list, e.g. [image]")
        raise TypeError(msg)
    # Colours are packed as r << 24 | g << 16 | b << 8 | a: RGB ones with a = 255.
    packed = np.empty(0, dtype=np.uint32)
    counts = np.empty(0, dtype=np.float64)
    weight_list = None if weights is None else [_check_weight(i, w) for i, w in
                                                enumerate(weights)]
    if weight_list and max(weight_list) > _LARGEST_WEIGHT:  # only their ratios matter
        largest = max(weight_list)
        weight_list = [w / largest for w in weight_list]  # no count times 1e308 overflows
    n_images = 0
    for index, image in enumerate(images):
        n_images += 1
        weight = 1.0
        if weight_list is not None:
            if index >= len(weight_list):
                msg = f"got more images than the {len(weight_list)} weights"
                raise KpalError(msg)
            weight = weight_list[index]
        pixels = _image_pixels(image)
        if weight == 0 or pixels.shape[0] == 0:  # e.g. the opaque pixels of a clear image
            continue
        image_packed, image_counts = _packed_histogram(pixels)
        image_counts = image_counts.astype(np.float64) * weight
        union = np.union1d(packed, image_packed)
        merged = np.zeros(union.shape[0], dtype=np.float64)
        merged[np.searchsorted(union, packed)] += counts
        merged[np.searchsorted(union, image_packed)] += image_counts
        packed, counts = union, merged
    if n_images == 0:
        msg = "no images given"
        raise KpalError(msg)
    if weight_list is not None and n_images != len(weight_list):
        msg = f"got {n_images} images but {len(weight_list)} weights"
        raise KpalError(msg)
    if packed.size == 0:
        msg = "every image has weight 0 or no pixels"
        raise KpalError(msg)
    total = float(counts.sum())
    if not np.array_equal(counts, np.rint(counts)) or total > _EXACT_TOTAL:
        counts = np.rint(counts / total * _EXACT_TOTAL)  # / first: a total of 1e-300 too
        keep = counts > 0
        packed, counts = packed[keep], counts[keep]
    if np.all(packed & 0xFF == 0xFF):
        return unpack_rgb(packed >> 8), counts
    return packed.byteswap().view(np.uint8).reshape(-1, 4), counts


def _packed_histogram(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ascending distinct packed colours (``r << 24 | g << 16 | b << 8 | a``) and counts."""
    if pixels.shape[1] == 3:
        hist = color_histogram(pixels)  # a table lookup, faster than a sort
        return (hist.packed.astype(np.uint32) << 8) | 0xFF, hist.counts
    keys = np.ascontiguousarray(pixels).view(">u4").reshape(-1).astype(np.uint32)
    keys[pixels[:, 3] == 0] = 0  # a transparent pixel's colour does not show
    return np.unique(keys, return_counts=True)


def _check_weight(index: int, weight: object) -> float:
    try:
        value = float(weight)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = float("nan")
    if not np.isfinite(value) or value < 0:
        msg = f"weights[{index}]={weight!r} must be a finite number >= 0"
        raise KpalError(msg)
    return value


def _image_pixels(image: object) -> np.ndarray:
    """The pixels of ``image`` as rows: (n, 3) RGB, or (n, 4) straight RGBA
    when some pixel is not opaque."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim in (2, 3) \
            and image.shape[-1] in (3, 4):
        pixels = image.reshape(-1, image.shape[-1])
    else:
        from PIL import Image

        # imported here: the codec may use this module
        from kpal.codec import colour_managed, open_image, srgb_array, to_rgb

        if not isinstance(image, (Image.Image, np.ndarray)):
            image = open_image(image)  # type: ignore[arg-type]
        profile = None
        if isinstance(image, Image.Image):
            image, profile = colour_managed(image)
        pixels, _ = to_rgb(image)  # type: ignore[arg-type]
        if profile is not None:  # palette colours are sRGB: so must the image's be
            pixels, _ = srgb_array(pixels, profile)
        pixels = pixels.reshape(-1, pixels.shape[-1])
    if pixels.shape[1] == 4 and (pixels.shape[0] == 0 or int(pixels[:, 3].min()) == 255):
        return pixels[:, :3]
    return pixels


def fit_palette(
    images: Iterable[object],
    k: int,
    *,
    weights: Sequence[float] | None = None,
    method: str = "kmeans",
    init: str = "k-means++",
    seed: int = 0,
    max_iter: int | None = None,
    tol: float | None = None,
) -> np.ndarray:
    """Fit one palette of at most ``k`` colours to many images.

    The images' histograms are merged (:func:`merge_histograms`) and the
    merged histogram is clustered exactly as :func:`kpal.cluster.quantize`
    clusters one image's: one image with weight 1 gets the palette
    ``quantize`` gives it, for the same options. When some pixel is not
    opaque the palette is RGBA, fitted as
    :func:`kpal.cluster.alpha.quantize_rgba` fits one image with
    transparency (which it gives one image, below 2**20 translucent
    pixels): one ``(0, 0, 0, 0)`` entry, first, when some pixel is fully
    transparent; opaque pixels only on opaque entries; translucent ones
    clustered by the error of their composites over black and white.

    Parameters
    ----------
    images : iterable of images
        See :func:`merge_histograms`.
    k : int
        Palette size, 1..256 (the transparent entry included).
    weights : sequence of float, optional
        Per-image weights multiplying pixel counts (default 1 each).
    method, init, seed, max_iter, tol
        As for :func:`kpal.cluster.quantize`.

    Returns
    -------
    ndarray of shape (k_used, 3) or (k_used, 4), uint8
        Every entry is the nearest palette colour of at least one pixel;
        ``k_used < k`` when the images hold fewer than ``k`` distinct colours
        (those colours then, exactly, in ascending ``r, g, b(, a)`` order).
        RGBA when some pixel is not opaque.

    Warns
    -----
    KpalWarning
        When the images hold ``k`` or fewer distinct colours.

    Examples
    --------
    >>> red = np.full((2, 2, 3), (200, 0, 0), np.uint8)
    >>> blue = np.array([[(0, 0, 94), (0, 0, 90), (0, 0, 89)]], np.uint8)
    >>> fit_palette([red, blue], 2).tolist()
    [[200, 0, 0], [0, 0, 91]]
    >>> clear = np.zeros((2, 2, 4), np.uint8)  # fully transparent
    >>> fit_palette([red, blue, clear], 3).tolist()
    [[0, 0, 0, 0], [200, 0, 0, 255], [0, 0, 91, 255]]
    """
    options.SPECS["k"].checker(k)  # required here: None is not "the default"
    opts = options.EncodeOptions(k=k, method=method, init=init, seed=seed, max_iter=max_iter,
                                 tol=tol)
    k = opts.k
    colors, counts = merge_histograms(images, weights)
    n_colors = colors.shape[0]
    if n_colors <= k:
        warn(
            f"the images have {n_colors} distinct colour{'' if n_colors == 1 else 's'}, "
            f"no more than k={k}: the palette holds exactly those colours")
        return colors
    if colors.shape[1] == 4:
        return _fit_rgba(colors, counts, opts)
    return _fit_rgb(colors, counts, k, opts)


def _fit_rgb(colors: np.ndarray, counts: np.ndarray, k: int,
             opts: options.EncodeOptions) -> np.ndarray:
    """k entries for an RGB histogram of more than ``k`` colours, as ``quantize``."""
    from kpal.cluster import fit_histogram_palette
    from kpal.cluster.histogram import ColorHistogram

    if opts.method == "kmeans":
        counts = counts.astype(np.float64)  # as quantize: the same weights, the same fit
    opts = opts.replace(k=k) if k != opts.k else opts
    hist = ColorHistogram(colors, counts)
    return fit_histogram_palette(hist, opts, np.random.default_rng(opts.seed)).palette


def _fit_rgba(colors: np.ndarray, counts: np.ndarray, opts: options.EncodeOptions
              ) -> np.ndarray:
    """The RGBA palette of a histogram with alpha, as ``quantize_rgba`` fits one image."""
    from kpal.cluster.alpha import TRANSPARENT, fit_histogram_rgba

    has_t = int(colors[0, 3] == 0)  # (0, 0, 0, 0) sorts first
    translucent = (colors[:, 3] > 0) & (colors[:, 3] < 255)
    k = opts.k
    if k == 1 and has_t and (colors[:, 3] == 255).any():
        warn("k=1: one palette entry cannot keep both the fully transparent pixels and the "
             "opaque ones: the entry is their premultiplied mean, which an encode onto this "
             "palette (--palette, palette=) refuses for images with opaque pixels (k=2 keeps "
             "the mask)")
    if k == 1 or translucent.any():
        return fit_histogram_rgba(colors, counts, opts)
    # A 0/255 mask: the opaque colours as an RGB histogram, over k - 1 entries.
    opaque = colors[has_t:, :3]
    if opaque.shape[0] <= k - has_t:
        return colors
    rgb = _fit_rgb(opaque, counts[has_t:], k - has_t, opts)
    palette = np.empty((has_t + rgb.shape[0], 4), dtype=np.uint8)
    palette[:has_t] = TRANSPARENT
    palette[has_t:, :3] = rgb
    palette[has_t:, 3] = 255
    return palette


def map_to_palette(pixels: np.ndarray, palette: object, *, dither: str = "none",
                   strength: float = 1.0, seed: int = 0) -> np.ndarray:
    """Palette index of every pixel, for a palette chosen elsewhere (no clustering).

    Parameters
    ----------
    pixels : ndarray of shape (height, width, 3 or 4) or (n_pixels, 3 or 4), uint8
        RGB, or straight RGBA.
    palette : palette file, file object or array-like of shape (k, 3) or (k, 4)
        Anything :func:`as_palette` takes.
    dither, strength, seed
        As for :func:`kpal.cluster.remap.remap`; ``"none"`` (default) gives
        the exact nearest colour (ties: the lowest index). With RGBA pixels or
        an RGBA palette, as :func:`kpal.cluster.remap.remap_rgba` (an RGB
        palette's entries and RGB pixels are opaque).

    Returns
    -------
    ndarray of shape (height, width) or (n_pixels,), uint8
    """
    from kpal.cluster.remap import remap, remap_rgba

    palette = as_palette(palette)
    pixels = np.asarray(pixels)
    flat = pixels.ndim == 2
    image = pixels.reshape(-1, 1, pixels.shape[-1]) if flat else pixels
    if palette.shape[1] == 4 or image.shape[-1] == 4:
        labels = remap_rgba(_opaque_rgba(image), _opaque_rgba(palette[None])[0], dither=dither,
                            strength=strength, seed=seed)
    else:
        labels = remap(image, palette, dither=dither, strength=strength, seed=seed)
    return labels.reshape(-1) if flat else labels


def _opaque_rgba(colours: np.ndarray) -> np.ndarray:
    """RGB colours (last axis 3) with alpha 255 added; RGBA ones as they are."""
    if colours.shape[-1] == 4:
        return np.ascontiguousarray(colours)
    out = np.full((*colours.shape[:-1], 4), 255, dtype=np.uint8)
    out[..., :3] = colours
    return out
