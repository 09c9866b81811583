"""The encode and decode flows (see ARCHITECTURE.md).

Encode: options (:class:`~kpal.options.EncodeOptions`, checked first) → image
→ upright RGB pixels (mode rules below) → ``quantize`` → payload coding →
``container.write``. Decode: bytes → :func:`read_header` (header, payload and
file length) → checksum → payload coding → a Pillow "P" image.

Mode rules for encoding (``to_rgb``), after an EXIF orientation is applied as
``ImageOps.exif_transpose`` does:

=====================  ===================================================
input                  what is stored
=====================  ===================================================
RGB                    quantized to ``k`` colours
L, 1                   grey levels as RGB, then quantized (lossless when
                       there are at most ``k`` levels)
P                      the distinct colours of the palette entries in use,
                       the indices remapped to them (lossless; unchanged
                       when every entry is used and distinct), unless ``k``
                       is given and smaller than that number of colours:
                       then its RGB is quantized
RGBA, LA, PA, RGBX     the colour channels when every pixel is opaque
any transparency       rejected, with one message: transparent pixels
                       (RGBA, LA, PA), a transparent palette entry in use
                       (P) or a colour key that matches a pixel (RGB or L
                       with a PNG tRNS colour); the format has no alpha
                       channel yet
CMYK, YCbCr, LAB, HSV  converted to RGB by Pillow, then quantized
I;16*, I, F            rejected: samples wider than 8 bits need an explicit
                       choice of scaling
multi-frame images     rejected: a ``.kpal`` file holds one image
=====================  ===================================================
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps

from kpal import coding as codings
from kpal import container, metrics
from kpal.cluster import quantize
from kpal.cluster.histogram import pack_rgb
from kpal.errors import ChecksumError, FormatError, KpalError
from kpal.options import DEFAULT_K, EncodeOptions

__all__ = [
    "encode", "encode_image", "decode", "decode_indices", "inspect", "save", "to_rgb", "Encoded",
    "check_decompression_bomb", "read_header", "open_image",
]

#: What the encoders take: an image, a path, an encoded image file's bytes or
#: a binary file object (anything Pillow opens), or a uint8 array.
ImageSource = (Image.Image | str | os.PathLike | bytes | bytearray | memoryview | IO[bytes]
               | np.ndarray)
#: What the decoders take: a file's bytes, its path or a binary file object.
KpalSource = bytes | bytearray | memoryview | str | os.PathLike | IO[bytes]

_GREY_MODES = {"L", "1"}
_ALPHA_MODES = {"RGBA": "RGB", "LA": "L", "PA": "P", "RGBa": None, "La": None}
_CONVERTED_MODES = {"CMYK", "YCbCr", "LAB", "HSV", "RGBX"}
_WIDE_MODES = {"I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
#: EXIF tag 0x0112: how the stored pixels must be turned to be seen upright.
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class Encoded:
    """An encoded image: the file bytes and what went into them.

    Attributes
    ----------
    data : bytes
        The complete ``.kpal`` file.
    header : container.Header
    palette : ndarray of shape (k, 3), uint8
    labels : ndarray of shape (height, width), uint8
    source : ndarray of shape (height, width, 3), uint8
        The RGB pixels that were encoded (for quality reports), upright.
    method : str
        ``"kmeans"``, ``"gmm"`` or ``"palette"`` (a "P" image stored as is).
    n_iter : int or None
        Quantizer iterations run.
    inertia : float or None
        Mean over pixels of the squared RGB distance between each pixel and
        its palette colour: the squared error summed over the three channels,
        three times the per-channel MSE that PSNR uses.
    n_colors : int
        Distinct colours in the source.
    options : EncodeOptions
        The options of this encode.
    orientation : int
        The EXIF orientation (2..8) that was applied to turn the pixels
        upright, or 1 when the image needed no turning.
    """

    data: bytes
    header: container.Header
    palette: np.ndarray
    labels: np.ndarray
    source: np.ndarray
    method: str
    n_iter: int | None
    inertia: float | None
    n_colors: int
    options: EncodeOptions = EncodeOptions()
    orientation: int = 1

    @property
    def lossless(self) -> bool:
        """True when the decoded image equals the source exactly."""
        return bool(np.array_equal(self.palette[self.labels], self.source))

    @property
    def mse(self) -> float:
        """Mean squared error per channel value, the one PSNR is computed from."""
        if self.inertia is not None:
            return self.inertia / 3
        return metrics.mse(self.source, self.palette[self.labels])

    def psnr(self) -> float:
        """PSNR of the decoded image against the source, in dB."""
        # The quantizer's inertia is already the exact per-pixel squared error
        # against the uint8 palette: no need to rebuild the decoded image.
        return metrics.psnr_from_mse(self.mse)

    def size_report(self) -> metrics.SizeReport:
        """Size accounting of this file (see :func:`kpal.metrics.size_report`)."""
        return metrics.size_report(self.header.k, self.header.n_pixels, len(self.data),
                                   payload_bytes=self.header.payload_length, labels=self.labels,
                                   coding=codings.get(self.header.coding).name)


# ---------------------------------------------------------------- options
def encode_options(k: object = None, options: EncodeOptions | None = None,
                   keywords: dict | None = None) -> EncodeOptions:
    """The options of an encode call: ``options`` with ``k`` and ``keywords`` applied.

    Raises
    ------
    OptionError
        An unknown keyword (named, with the accepted ones) or a bad value.
    """
    keywords = dict(keywords or {})
    if k is not None:
        keywords["k"] = k  # a positional k and k= cannot both reach here
    if options is None:
        return EncodeOptions.from_keywords(keywords)
    given = {name: value for name, value in keywords.items() if value is not None}
    return options.replace(**given) if given else options


# ---------------------------------------------------------------- input rules
def open_image(source: str | os.PathLike | bytes | bytearray | memoryview | IO[bytes]
               ) -> Image.Image:
    """Open an image with Pillow and load it, rejecting multi-frame files.

    Parameters
    ----------
    source : path, bytes or binary file object
        A path, the bytes of an encoded image file (JPEG, PNG, ...), or a file
        object open for reading in binary mode.

    Raises
    ------
    OSError
        Missing, unreadable, not an image, or truncated
        (``PIL.UnidentifiedImageError`` is an ``OSError``).
    KpalError
        Empty input, or more than one frame.
    """
    name = "image"
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            msg = "the image data is empty (0 bytes)"
            raise KpalError(msg)
        source = io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
    with Image.open(source) as im:
        _reject_multiframe(im, name)
        im.load()
        return im.copy()  # keeps info (e.g. transparency, EXIF) and the palette


def _reject_multiframe(im: Image.Image, name: str) -> None:
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        msg = f"{name}: has {frames} frames; a .kpal file holds one image (extract a frame first)"
        raise KpalError(msg)


def exif_orientation(image: Image.Image) -> int:
    """The image's EXIF orientation (1..8; 1 when absent or invalid)."""
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - a damaged EXIF block means "no orientation"
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright(image: Image.Image) -> tuple[Image.Image, int]:
    """Apply the EXIF orientation, as ``ImageOps.exif_transpose`` does.

    Returns
    -------
    image : PIL.Image.Image
        The image turned upright (the same object when it needs no turning).
    orientation : int
        The orientation that was applied (1: none).
    """
    orientation = exif_orientation(image)
    if orientation == 1:
        return image, 1
    turned = ImageOps.exif_transpose(image)
    return (image, 1) if turned is None else (turned, orientation)


def to_rgb(image: ImageSource) -> tuple[np.ndarray, Image.Image | None]:
    """Apply the mode rules: return RGB pixels and, for a "P" image, the image itself.

    An image with an EXIF orientation is turned upright first.

    Parameters
    ----------
    image : PIL.Image.Image, path, bytes, file object or ndarray
        An ndarray must be uint8 of shape (H, W, 3), (H, W, 4) or (H, W).

    Returns
    -------
    rgb : ndarray of shape (height, width, 3), uint8
    p_image : PIL.Image.Image or None
        The "P" image when the input had a palette (mode P, or PA with no
        transparency), so its palette can be kept.
    """
    rgb, p_image, _ = _pixels(image)
    return rgb, p_image


def _pixels(image: ImageSource) -> tuple[np.ndarray, Image.Image | None, int]:
    """:func:`to_rgb`, plus the EXIF orientation that was applied."""
    if isinstance(image, np.ndarray):
        if image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8 and image.size:
            return np.ascontiguousarray(image), None, 1  # already RGB: no Pillow copies
        image = _array_to_image(image)
    elif not isinstance(image, Image.Image):
        image = open_image(image)
    else:
        _reject_multiframe(image, "image")
    if image.width == 0 or image.height == 0:
        msg = f"image is {image.width}x{image.height}: nothing to encode"
        raise KpalError(msg)
    image, orientation = upright(image)
    mode = image.mode
    if mode in _ALPHA_MODES:
        image = _drop_opaque_alpha(image)
        mode = image.mode
    if mode == "P":
        _reject_transparent_index(image)
        with warnings.catch_warnings():
            # The entries in use are opaque (checked above): Pillow's advice to
            # convert transparent palettes to RGBA does not apply.
            warnings.filterwarnings("ignore", "Palette images with Transparency", UserWarning)
            return np.asarray(image.convert("RGB")), image, orientation
    if mode in _WIDE_MODES:
        msg = (f"mode {mode} (samples wider than 8 bits) is not supported: convert to "
               f"8 bits first, e.g. im.convert('L') or scale the values yourself")
        raise KpalError(msg)
    if mode not in _GREY_MODES and mode not in _CONVERTED_MODES and mode != "RGB":
        msg = f"mode {mode} is not supported (use RGB, L, P or an opaque RGBA/LA)"
        raise KpalError(msg)
    rgb = np.asarray(image if mode == "RGB" else image.convert("RGB"))
    _reject_colour_key(image, rgb)
    return rgb, None, orientation


def _array_to_image(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8 or not (
        array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))
    ):
        msg = (f"array of shape {array.shape} and dtype {array.dtype}: expected uint8 of "
               f"shape (height, width, 3), (height, width, 4) or (height, width)")
        raise KpalError(msg)
    if array.ndim == 2:
        return Image.fromarray(array, "L")
    return Image.fromarray(array, "RGB" if array.shape[2] == 3 else "RGBA")


def _transparent(mode: str, how: str = "transparent pixels") -> KpalError:
    """The one message for every kind of transparency kpal cannot store yet."""
    msg = (f"mode {mode} with {how} is not supported yet (.kpal has no alpha channel); "
           f"flatten it first, e.g. im.convert('RGB')")
    return KpalError(msg)


def _drop_opaque_alpha(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBa", "La"):  # premultiplied: convert to straight alpha first
        image = image.convert("RGBA" if image.mode == "RGBa" else "LA")
    alpha = image.getchannel("A")
    low, _ = alpha.getextrema()
    if low < 255:
        raise _transparent(image.mode)
    if image.mode == "PA":
        rgb_palette = image.getpalette("RGB")
        out = Image.frombytes("P", image.size, image.getchannel(0).tobytes())
        out.putpalette(rgb_palette)
        return out
    return image.convert(_ALPHA_MODES[image.mode])


def _reject_transparent_index(image: Image.Image) -> None:
    transparency = image.info.get("transparency")
    if isinstance(transparency, int):
        used = np.bincount(np.asarray(image).reshape(-1), minlength=256)
        if transparency < used.size and used[transparency]:
            raise _transparent("P", f"a transparent colour (index {transparency})")
    elif transparency is not None:  # bytes: one alpha value per palette entry
        alphas = np.frombuffer(bytes(transparency), np.uint8)
        used = np.flatnonzero(np.bincount(np.asarray(image).reshape(-1), minlength=256))
        used = used[used < alphas.size]
        if used.size and (alphas[used] < 255).any():
            raise _transparent("P", "transparent palette entries")


def _reject_colour_key(image: Image.Image, rgb: np.ndarray) -> None:
    """An RGB or L image whose tRNS colour key matches a pixel has transparent pixels."""
    key = image.info.get("transparency")
    if key is None or image.mode not in ("RGB", "L", "1"):
        return
    if image.mode == "RGB":
        if not (isinstance(key, tuple) and len(key) == 3):
            return
        colour = np.asarray(key, np.int64)
    else:
        if not isinstance(key, int):
            return
        colour = np.full(3, 255 if (image.mode == "1" and key) else key, np.int64)
    if (colour < 0).any() or (colour > 255).any():
        return
    if np.isin(pack_rgb(rgb.reshape(-1, 3)), pack_rgb(colour.astype(np.uint8)[None])).any():
        shown = tuple(int(c) for c in key) if isinstance(key, tuple) else key
        raise _transparent(image.mode, f"a transparent colour {shown} (tRNS)")


def _own_palette(p_image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """The distinct colours of the palette entries in use, and the indices remapped to them.

    Unused entries are dropped and entries of the same colour merged, keeping
    the order of the entries; a P image that uses every entry of a palette of
    distinct colours keeps its indices unchanged.
    """
    labels = np.asarray(p_image)
    used = np.flatnonzero(np.bincount(labels.reshape(-1), minlength=256))
    flat = np.zeros(256 * 3, np.uint8)
    entries = np.asarray(p_image.getpalette("RGB") or [], np.uint8)[: flat.size]
    flat[: entries.size] = entries
    colours = flat.reshape(256, 3)[used]
    _, first, inverse = np.unique(pack_rgb(colours), return_index=True, return_inverse=True)
    # Number the distinct colours in the order of their first entry.
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    palette = colours[first[order]]
    remap = np.zeros(256, np.uint8)
    remap[used] = rank[inverse.reshape(-1)]
    if np.array_equal(used, np.arange(used.size)) and palette.shape[0] == used.size:
        return palette, labels  # every entry in use, all distinct: indices unchanged
    return palette, remap[labels]


# ---------------------------------------------------------------- encode
def encode_image(image: ImageSource, k: int | None = None, *,
                 options: EncodeOptions | None = None, **keywords) -> Encoded:
    """Encode an image and return the file bytes with what went into them.

    Takes the same parameters as :func:`encode`, or an :class:`EncodeOptions`
    as ``options`` (with ``k`` and keywords applied on top).

    Returns
    -------
    Encoded
    """
    opts = encode_options(k, options, keywords)  # every option checked before any work
    chosen = codings.get(opts.coding)
    rgb, p_image, orientation = _pixels(image)
    height, width = rgb.shape[:2]
    n_iter = inertia = None
    if p_image is not None:
        palette, labels = _own_palette(p_image)
    if p_image is not None and (opts.k is None or len(palette) <= opts.k):
        used_method, n_colors = "palette", len(palette)
    else:
        result = quantize(rgb.reshape(-1, 3), DEFAULT_K if opts.k is None else opts.k,
                          method=opts.method, init=opts.init, seed=opts.seed,
                          max_iter=opts.max_iter, tol=opts.tol, sample=opts.sample)
        palette, labels = result.palette, result.labels.reshape(height, width)
        used_method, n_iter, inertia, n_colors = (result.method, result.n_iter, result.inertia,
                                                  result.n_colors)
    k_stored = len(palette)
    payload = chosen.encode(labels, k_stored)
    header = container.Header.for_image(coding=chosen.id, k=k_stored, width=width,
                                        height=height, payload_length=len(payload))
    data = container.write(header, palette, payload)
    return Encoded(data=data, header=header, palette=palette, labels=labels, source=rgb,
                   method=used_method, n_iter=n_iter, inertia=inertia, n_colors=n_colors,
                   options=opts, orientation=orientation)


def encode(image: ImageSource, k: int | None = None, **options) -> bytes:
    """Encode an image as a ``.kpal`` file.

    Parameters
    ----------
    image : PIL.Image.Image, path, bytes, binary file object or ndarray
        The image; a path to, the bytes of, or an open binary file of any
        image file Pillow reads; or a uint8 array of shape (height, width, 3).
        Modes follow the rules in this module's docstring; an EXIF
        orientation is applied, so the pixels are stored upright.
    k : int, optional
        Number of colours, 1..256 (default 16; for a "P" image, default its
        own palette, kept losslessly). An image with fewer distinct colours
        than ``k`` is stored exactly (lossless), with a ``UserWarning``.
    method : {"kmeans", "gmm"}, default "kmeans"
        How the palette is chosen.
    init : {"k-means++", "random"}, default "k-means++"
    seed : int, default 0
        Same seed and input give byte-identical output.
    max_iter : int, optional
        Default 300 for k-means, 100 for EM.
    tol : float, optional
        Default 1e-4 for k-means, 1e-3 for EM.
    sample : float, optional
        Fit on this fraction of the pixels, then assign every pixel.
    coding : {"fixed", "radix", "entropy"}, default "fixed"
        Payload coding (spec/kpal.md §5–7).

    Returns
    -------
    bytes
        The complete file.

    Raises
    ------
    OptionError
        An unknown option (the message names it and the accepted ones) or a
        value out of range; raised before the image is read.
    KpalError
        An image kpal cannot encode (the mode rules above).
    OSError
        The image cannot be read.

    Examples
    --------
    >>> import numpy as np, kpal
    >>> image = np.arange(18, dtype=np.uint8).reshape(2, 3, 3)  # 6 distinct colours
    >>> data = kpal.encode(image, k=4)
    >>> len(data)  # 26-byte header + 4 colours x 3 bytes + 6 indices x 2 bits + 4-byte CRC
    44
    """
    return encode_image(image, k, **options).data


def save(image: ImageSource, path: str | os.PathLike, k: int | None = None, *,
         force: bool = False, **options) -> Encoded:
    """Encode ``image`` and write it to ``path`` atomically.

    The file appears complete or not at all; an existing ``path`` is replaced
    only with ``force=True`` (keeping its permission bits). The options and the
    destination are checked before the image is read. Other parameters are
    those of :func:`encode`.

    Returns
    -------
    Encoded
    """
    from kpal.io import check_destination, write_atomic

    opts = encode_options(k, options.pop("options", None), options)
    check_destination(path, force=force)  # before the fit: a refusal costs nothing
    encoded = encode_image(image, options=opts)
    write_atomic(path, encoded.data, force=force)
    return encoded


# ---------------------------------------------------------------- decode
def read_header(prefix: bytes, *, file_size: int | None = None
                ) -> tuple[container.Header, codings.Coding]:
    """Check a file's header, in the one order every reader uses (spec/kpal.md §8).

    1. the magic and every header field (:func:`kpal.container.read_header`);
    2. the payload length the coding implies, for codings that fix it;
    3. the whole file's length, when the caller knows it.

    The Pillow plugin, :func:`decode_indices`, :func:`inspect` and the
    command line all call this, so they name the same problem for the same
    file. The checksum and the payload come after it.

    Parameters
    ----------
    prefix : bytes
        At least the first ``container.HEADER_SIZE`` bytes of the file.
    file_size : int, optional
        The file's length in bytes, when known.

    Returns
    -------
    header : container.Header
    coding : kpal.coding.Coding

    Raises
    ------
    FormatError
        The first check that fails, naming the field and the value.
    """
    header = container.read_header(prefix)
    chosen = codings.get(header.coding)
    container.check_payload_length(
        header, chosen.payload_size(header.k, header.width, header.height))
    if file_size is not None:
        container.check_file_length(header, file_size)
    return header, chosen


def decode_indices(data: bytes) -> tuple[container.Header, np.ndarray, np.ndarray]:
    """Validate a whole file and return its header, palette and indices.

    Returns
    -------
    header : container.Header
    palette : ndarray of shape (k, 3), uint8
    labels : ndarray of shape (height, width), uint8

    Raises
    ------
    FormatError
        Any invalid field, length, checksum or payload.
    PIL.Image.DecompressionBombError
        More than twice ``Image.MAX_IMAGE_PIXELS`` pixels.
    """
    header, chosen = read_header(data, file_size=len(data))
    check_decompression_bomb(header)
    header, palette, payload = container.read(data)
    labels = chosen.decode(payload, header.k, header.width, header.height)
    return header, palette, labels


def check_decompression_bomb(header: container.Header) -> None:
    """Apply Pillow's decompression-bomb guard to a header, before any pixel is allocated.

    ``Image.open`` does this for :func:`decode`; paths that decode without
    Pillow (:func:`decode_indices`, hence ``kpal info``) call this. A k = 1 file
    stores no payload at all, so 33 bytes can claim 2**30 pixels: only this
    guard stops it.

    Raises
    ------
    PIL.Image.DecompressionBombError
        More than twice ``Image.MAX_IMAGE_PIXELS`` pixels (above the limit
        itself a ``DecompressionBombWarning`` is issued), as in Pillow.
    """
    limit = Image.MAX_IMAGE_PIXELS
    if limit is None:
        return
    n = header.n_pixels
    # Pillow's own words, so the same problem reads the same on every path.
    what = (f"Image size ({n} pixels) exceeds limit of {{}} pixels, could be decompression "
            "bomb DOS attack.")
    if n > 2 * limit:
        raise Image.DecompressionBombError(what.format(2 * limit))
    if n > limit:
        warnings.warn(what.format(limit), Image.DecompressionBombWarning, stacklevel=3)


def read_bytes(source: KpalSource) -> bytes:
    """The bytes of a ``.kpal`` file given as bytes, a path or a binary file object.

    The header is read and checked first (:func:`read_header`), so a file that
    is not a ``.kpal`` file, or claims an impossible size, is refused before
    the rest of it is read.

    Raises
    ------
    FormatError
        The header is not valid.
    OSError
        The path cannot be read.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        read_header(data)
        return data
    if isinstance(source, (str, os.PathLike)):
        with open(Path(source), "rb") as fp:
            return read_bytes(fp)
    if not callable(getattr(source, "read", None)):
        msg = (f"expected the bytes, path or binary file object of a .kpal file, "
               f"got {type(source).__name__}")
        raise TypeError(msg)
    head = source.read(container.HEADER_SIZE)
    if isinstance(head, str):
        msg = "the file object is open in text mode; open it with 'rb'"
        raise TypeError(msg)
    read_header(head)
    return head + source.read()


def decode(source: KpalSource) -> Image.Image:
    """Decode a ``.kpal`` file into a Pillow "P" image.

    The result is what ``Image.open(path)`` gives after ``load()``: mode "P",
    the stored palette, ``format == "KPAL"`` and ``info`` with ``k``,
    ``bits_per_index``, ``coding`` and ``version``.

    Parameters
    ----------
    source : bytes, path or binary file object
        The file's bytes, its path, or a file open for reading in binary mode.

    Raises
    ------
    FormatError
        Not a .kpal file, or any invalid field, length, checksum or payload.
    OSError
        The path cannot be read.
    """
    with io.BytesIO(read_bytes(source)) as fp:
        im = Image.open(fp, formats=["KPAL"])
        im.load()
    return im


def inspect(data: bytes) -> dict:
    """Describe a file for ``kpal info``: header, palette, sizes and checksum status.

    Unlike :func:`decode` it reports a bad length, checksum or payload instead
    of raising, so a damaged file can still be looked at; only a header that
    cannot be parsed raises.

    Returns
    -------
    dict
        ``header`` (fields), ``coding`` (name), ``palette`` (``#rrggbb``
        strings, as many as the file holds), ``size`` (see
        :class:`kpal.metrics.SizeReport`; ``None`` when the file's length is
        not the one its header implies, since then there is nothing to account
        for), ``file_bytes`` (the length found), ``expected_bytes`` (the
        length the header implies), ``checksum`` ("ok", "mismatch" or "not
        checked") and ``problem`` (None or the error message).

    Raises
    ------
    FormatError
        The header is not valid.
    PIL.Image.DecompressionBombError
        The header claims more than twice ``Image.MAX_IMAGE_PIXELS`` pixels
        (checked before decoding, see :func:`check_decompression_bomb`).
    """
    header = container.read_header(data)
    chosen = codings.get(header.coding)
    start = container.HEADER_SIZE
    raw_palette = bytes(data[start : start + header.palette_size])
    labels = None
    checksum, problem = "ok", None
    try:  # in the order decode checks them, so both name the same problem
        read_header(data, file_size=len(data))
        container.read(data)
    except ChecksumError as e:
        checksum, problem = "mismatch", str(e)
    except FormatError as e:
        checksum, problem = "not checked", str(e)
    if problem is None:
        try:
            labels = decode_indices(data)[2]
        except FormatError as e:
            problem = str(e)
    size = None
    if len(data) == header.file_size:
        size = metrics.size_report(header.k, header.n_pixels, len(data),
                                   payload_bytes=header.payload_length, labels=labels,
                                   coding=chosen.name).as_dict()
    colours = [raw_palette[i : i + 3].hex() for i in range(0, len(raw_palette) - 2, 3)]
    return {
        "header": asdict(header),
        "coding": chosen.name,
        "palette": ["#" + c for c in colours],
        "size": size,
        "file_bytes": len(data),
        "expected_bytes": header.file_size,
        "checksum": checksum,
        "problem": problem,
    }
