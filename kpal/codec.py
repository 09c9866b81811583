"""The encode and decode flows (see ARCHITECTURE.md).

Encode: options (:class:`~kpal.options.EncodeOptions`, checked first) → image
→ upright RGB or RGBA pixels (mode rules below) → ``quantize`` (RGB) or
``quantize_rgba`` (premultiplied RGBA) → payload coding → ``container.write``.
Decode: bytes → :func:`read_header` (header, payload and file length) →
checksum → payload coding → a Pillow "P" image.

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
any transparency       kept: transparent pixels (RGBA, LA, PA), a
                       transparent palette entry in use (P) or a colour key
                       that matches a pixel (RGB or L with a PNG tRNS
                       colour, which becomes alpha 0) give RGBA pixels,
                       quantized in premultiplied RGBA to an RGBA palette
                       (format version 2); with ``background``, flattened
                       onto that colour first
CMYK, YCbCr, LAB, HSV  converted to RGB by Pillow, then quantized
I;16*, I, F            rejected: samples wider than 8 bits need an explicit
                       choice of scaling
multi-frame images     rejected: a ``.kpal`` file holds one image; a
                       multi-picture JPEG (MPO: phone photos, Ultra HDR)
                       gives its primary image
=====================  ===================================================

An ICC profile (the image's, or ``icc_profile=``) is stored when it is an RGB
profile. The pixels of an image with a profile of another colour space (grey,
CMYK, Lab) are converted to sRGB with LittleCMS (``PIL.ImageCms``) and no
profile is stored, sRGB being what a file without one means (spec/kpal.md);
a profile LittleCMS cannot use is dropped with a warning, the pixels kept as
they are. An encode that needs sRGB values (a given ``palette``, whose
colours are sRGB, or ``space="oklab"``) converts the pixels of an RGB
profile other than sRGB too, with a warning, and stores no profile.
"""

from __future__ import annotations

import errno
import functools
import io
import numbers
import os
import re
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from kpal import coding as codings
from kpal import container, metrics
from kpal.cluster import quantize
from kpal.cluster.histogram import pack_rgb
from kpal.errors import (
    ChecksumError,
    FormatError,
    KpalError,
    OptionError,
    refuse_text_mode,
    silenced,
    warn,
)
from kpal.io import read_up_to
from kpal.options import DEFAULT_K, MAX_K, PALETTE_DECIDERS, EncodeOptions, _describe

__all__ = [
    "encode", "encode_image", "decode", "decode_indices", "inspect", "save", "to_rgb", "Encoded",
    "check_decompression_bomb", "bomb_message", "read_header", "open_image", "flatten",
    "has_transparency", "colour_managed", "is_srgb_profile", "srgb_array", "srgb_colour_in",
    "PRIMARY_IMAGE_FORMATS", "kpal_name_problem",
]

#: What the encoders take: an image, a path, an encoded image file's bytes or
#: a binary file object (anything Pillow opens), or a uint8 array.
ImageSource = (Image.Image | str | os.PathLike | bytes | bytearray | memoryview | IO[bytes]
               | np.ndarray)
#: What the decoders take: a file's bytes, its path or a binary file object.
KpalSource = bytes | bytearray | memoryview | str | os.PathLike | IO[bytes]
T = TypeVar("T")

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
    palette : ndarray of shape (k, 3) or (k, 4), uint8
        RGB, or straight RGBA when some entry has alpha below 255.
    labels : ndarray of shape (height, width), uint8
    source : ndarray of shape (height, width, 3) or (height, width, 4), uint8
        The pixels that were encoded (for quality reports), upright: RGB, or
        straight RGBA whenever the palette has alpha.
    method : str
        ``"kmeans"``, ``"gmm"``, ``"palette"`` (a "P" image stored as is) or
        ``"given palette"`` (``palette=``: mapped, not fitted).
    n_iter : int or None
        Quantizer iterations run.
    inertia : float or None
        Mean over pixels of the squared RGB distance between each pixel and
        its palette colour: the squared error summed over the three channels,
        three times the per-channel MSE that PSNR uses.
    n_colors : int
        Distinct colours in the source (0 when not counted: a given palette).
    options : EncodeOptions
        The options of this encode.
    orientation : int
        The EXIF orientation (2..8) that was applied to turn the pixels
        upright, or 1 when the image needed no turning.
    choice : kpal.choose.Choice or None
        With ``quality`` or ``max_size``: the k chosen and the curve measured.
    """

    # The bytes and pixel arrays stay out of the repr: a notebook showing
    # ``kpal.save(...)`` would print the whole file.
    data: bytes = field(repr=False)
    header: container.Header
    palette: np.ndarray
    labels: np.ndarray = field(repr=False)
    source: np.ndarray = field(repr=False)
    method: str
    n_iter: int | None
    inertia: float | None
    n_colors: int
    options: EncodeOptions = EncodeOptions()
    orientation: int = 1
    choice: object = None

    @property
    def lossless(self) -> bool:
        """True when the decoded image equals the source exactly.

        With transparency, the colour under a fully transparent pixel does not
        count: it is stored as ``(0, 0, 0, 0)``.
        """
        if self.source.shape[-1] == 3:
            return bool(np.array_equal(self.palette[self.labels], self.source))
        return bool(np.array_equal(_premultiplied(self._decoded_rgba()),
                                   _premultiplied(self.source)))

    @property
    def mse(self) -> float:
        """Mean squared error per channel value, the one PSNR is computed from.

        With transparency, the mean of the errors of the image composited
        over black and over white, so colour errors weigh as much as they show.
        """
        if self.inertia is not None:
            return self.inertia / 3
        if self.source.shape[-1] == 3:
            return metrics.mse(self.source, self.palette[self.labels])
        from kpal.cluster.alpha import composite_mse

        return composite_mse(self.source, self._decoded_rgba())

    def _decoded_rgba(self) -> np.ndarray:
        palette = self.palette
        if palette.shape[1] == 3:
            palette = np.concatenate([palette, np.full((len(palette), 1), 255, np.uint8)], 1)
        return palette[self.labels]

    def psnr(self) -> float:
        """PSNR of the decoded image against the source, in dB."""
        # The quantizer's inertia is already the exact per-pixel squared error
        # against the uint8 palette: no need to rebuild the decoded image.
        return metrics.psnr_from_mse(self.mse)

    def size_report(self) -> metrics.SizeReport:
        """Size accounting of this file (see :func:`kpal.metrics.size_report`)."""
        return metrics.size_report(self.header.k, self.header.n_pixels, len(self.data),
                                   payload_bytes=self.header.payload_length, labels=self.labels,
                                   coding=codings.get(self.header.coding).name,
                                   entry_bits=8 * self.header.channels)


def _premultiplied(rgba: np.ndarray) -> np.ndarray:
    """Colour times alpha (0..255 scale) beside alpha, as float64."""
    values = rgba.astype(np.float64)
    values[..., :3] *= values[..., 3:] / 255
    return values


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
    if options is not None and not isinstance(options, EncodeOptions):
        msg = (f"options={_describe(options)} must be a kpal.EncodeOptions "
               "(or give the options as keywords, e.g. kpal.encode(image, k=16))")
        raise OptionError(msg)
    if options is None:
        return EncodeOptions.from_keywords(keywords)
    given = {name: value for name, value in keywords.items() if value is not None}
    if any(name in given for name in PALETTE_DECIDERS):  # k=4 overrides a preset's quality
        given = {name: None for name in PALETTE_DECIDERS} | given
    return options.replace(**given) if given else options


# ---------------------------------------------------------------- input rules
def open_image(source: str | os.PathLike | bytes | bytearray | memoryview | IO[bytes], *,
               before_load: Callable[[Image.Image], object] | None = None) -> Image.Image:
    """Open an image with Pillow and load it, rejecting multi-frame files.

    A multi-picture JPEG (:data:`PRIMARY_IMAGE_FORMATS`) gives its primary image.

    Parameters
    ----------
    source : path, bytes or binary file object
        A path, the bytes of an encoded image file (JPEG, PNG, ...), or a file
        object open for reading in binary mode.
    before_load : callable, optional
        Called with the opened image once its header is read (size and mode
        known), before its pixels are decoded; :func:`encode` uses it to start
        loading compiled kernels meanwhile (:func:`prefetch_kernels`).

    Raises
    ------
    OSError
        Missing, unreadable, not an image, or truncated
        (``PIL.UnidentifiedImageError`` is an ``OSError``).
    KpalError
        Empty input, or more than one frame.
    TypeError
        ``source`` is none of these (a list, None, ...).
    """
    name = "image"
    hint = ""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            msg = "the image data is empty (0 bytes)"
            raise KpalError(msg)
        if len(source) < 4096 and os.path.isfile(bytes(source)):
            hint = " (these bytes name a file: pass a path as str or pathlib.Path)"
        source = io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
    elif not callable(getattr(source, "read", None)):
        msg = (f"expected an image: a PIL image, a uint8 array, or the path, bytes or "
               f"binary file object of an image file, got {type(source).__name__}")
        raise TypeError(msg)
    else:
        refuse_text_mode(source)
    try:
        opened = Image.open(source)
    except UnidentifiedImageError:  # an OSError, as documented; without the object's address
        msg = f"{name}: not an image Pillow can read{hint}"
        raise UnidentifiedImageError(msg) from None
    with opened as im:
        _reject_multiframe(im, name)
        if im.format in PRIMARY_IMAGE_FORMATS:
            im.seek(0)  # the primary image
        if before_load is not None:
            before_load(im)
        try:
            im.load()
        except OSError as e:  # "image file is truncated": say which file, when it has a name
            if name == "image" or str(e).startswith(name):
                raise
            raise OSError(f"{name}: {e}") from e
        return im.copy()  # keeps info (e.g. transparency, EXIF) and the palette


#: Multi-frame formats whose first frame is the image: a multi-picture JPEG
#: (CIPA DC-007) holds the photo, then its previews, stereo views or HDR gain map.
PRIMARY_IMAGE_FORMATS = frozenset({"MPO"})


def _reject_multiframe(im: Image.Image, name: str) -> None:
    """Refuse an image of several frames, except a multi-picture JPEG (its primary image).

    Raises
    ------
    KpalError
        ``im`` has more than one frame, naming how many.
    """
    frames = getattr(im, "n_frames", 1)
    if frames > 1 and im.format not in PRIMARY_IMAGE_FORMATS:
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
    rgb : ndarray of shape (height, width, 3) or (height, width, 4), uint8
        RGB, or straight RGBA when the image has transparency.
    p_image : PIL.Image.Image or None
        The "P" image when the input had a palette (mode P, or PA with no
        transparency), so its palette can be kept.
    """
    rgb, p_image, _ = _pixels(image)
    return rgb, p_image


def _pixels(image: ImageSource, background: tuple[int, int, int] | None = None
            ) -> tuple[np.ndarray, Image.Image | None, int]:
    """:func:`to_rgb`, plus the EXIF orientation that was applied.

    With ``background``, transparency is flattened onto that colour first.
    """
    if isinstance(image, np.ndarray):
        if image.ndim in (2, 3) and image.size:
            container.check_size(image.shape[1], image.shape[0])  # before any work
        if image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8 and image.size:
            return np.ascontiguousarray(image), None, 1  # already RGB: no Pillow copies
        if image.ndim == 3 and image.shape[2] == 4 and image.dtype == np.uint8 and image.size \
                and background is None:
            # Straight RGBA: what the Pillow path gives, without its copies.
            if int(image[..., 3].min()) == 255:
                return np.ascontiguousarray(image[..., :3]), None, 1
            return np.ascontiguousarray(image), None, 1
        image = _array_to_image(image)
    elif not isinstance(image, Image.Image):
        image = open_image(image)
    else:
        _reject_multiframe(image, "image")
    if image.width == 0 or image.height == 0:
        msg = f"image is {image.width}x{image.height}: nothing to encode"
        raise KpalError(msg)
    container.check_size(image.width, image.height)  # before any pixel is converted
    image, orientation = upright(image)
    if background is not None and has_transparency(image):
        return np.asarray(flatten(image, background)), None, orientation
    mode = image.mode
    if mode in _ALPHA_MODES:
        if not _opaque(image):
            return _rgba(image), None, orientation
        image = _drop_alpha(image)
        mode = image.mode
    if mode == "P":
        if _transparent_index_in_use(image):
            return _rgba(image), image, orientation
        # The entries in use are opaque (checked above): Pillow's advice to convert
        # transparent palettes to RGBA does not apply, and its warning is avoided
        # without touching the process's warning filters (not thread-safe).
        return np.asarray(_without_transparency(image).convert("RGB")), image, orientation
    if mode in _WIDE_MODES:
        msg = (f"mode {mode} (samples wider than 8 bits) is not supported: scale the values "
               f"to 0..255 first (16-bit samples: divide by 257, e.g. numpy's "
               f"(a // 257).astype('uint8'), or save the image with 8 bits per sample from an "
               f"image editor); Pillow's im.convert('L') clips them instead")
        raise KpalError(msg)
    if mode not in _GREY_MODES and mode not in _CONVERTED_MODES and mode != "RGB":
        msg = f"mode {mode} is not supported (use RGB, L, P or an opaque RGBA/LA)"
        raise KpalError(msg)
    rgb = np.asarray(image if mode == "RGB" else image.convert("RGB"))
    if _colour_key_hit(image, rgb):
        return _rgba(image), None, orientation
    return rgb, None, orientation


def flatten(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """``image`` composited over an opaque ``background`` colour, as an RGB image.

    Parameters
    ----------
    image : PIL.Image.Image
        Any mode; its alpha channel, transparent palette entries or tRNS
        colour key say how much of the background shows through.
    background : (r, g, b)

    Examples
    --------
    >>> half = Image.new("RGBA", (1, 1), (255, 0, 0, 128))
    >>> flatten(half, (0, 0, 255)).getpixel((0, 0))
    (128, 0, 127)
    """
    from kpal.cluster.alpha import flatten as composite  # the one rounding rule

    return Image.fromarray(composite(_rgba(image), background), "RGB")


def has_transparency(image: Image.Image) -> bool:
    """Whether an image has an alpha channel, an RGBA palette or a transparency key."""
    if image.mode == "P" and image.palette is not None and image.palette.mode == "RGBA":
        return True
    return image.mode in _ALPHA_MODES or "transparency" in image.info


def prefetch_kernels(image: Image.Image, opts: EncodeOptions) -> None:
    """Start loading the compiled kernels a large image will take.

    Called with an opened image whose pixels are not decoded yet, so that
    numba's start-up overlaps the decoding (see
    :func:`kpal.cluster.prefetch_kernels` and
    :func:`kpal.cluster.alpha.prefetch_kernels`); the path taken and the
    bytes written stay the same.
    """
    n_pixels = image.width * image.height
    if image.mode in _ALPHA_MODES:
        from kpal.cluster.alpha import prefetch_kernels as prefetch_alpha

        prefetch_alpha(n_pixels, opts)
    elif image.mode in ("RGB", "CMYK", "YCbCr") and "transparency" not in image.info:
        from kpal.cluster import prefetch_kernels as prefetch_rgb

        prefetch_rgb(n_pixels, opts)


def _array_to_image(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8 or not (
        array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))
    ):
        msg = (f"array of shape {array.shape} and dtype {array.dtype}: expected uint8 of "
               f"shape (height, width, 3), (height, width, 4) or (height, width)")
        raise KpalError(msg)
    if array.ndim == 2:
        height, width = array.shape
        if width in (3, 4) and height >= 16:  # most likely a list of colours, not a picture
            warn(f"an array of shape ({height}, {width}) is read as a grey image {height} "
                 f"pixels high and {width} wide; for {height} {'RGB' if width == 3 else 'RGBA'} "
                 f"pixels pass array.reshape(-1, 1, {width})")
        return Image.fromarray(array, "L")
    return Image.fromarray(array, "RGB" if array.shape[2] == 3 else "RGBA")


def _rgba(image: Image.Image) -> np.ndarray:
    """Straight RGBA pixels of an image with transparency (alpha, palette entries or key)."""
    if image.mode == "RGBA":
        return np.asarray(image)  # one copy, not two
    if image.mode in ("RGBa", "La"):  # premultiplied: Pillow converts to straight alpha
        image = image.convert("RGBA" if image.mode == "RGBa" else "LA")
    key = image.info.get("transparency")
    if image.mode == "P" and isinstance(key, bytes) and len(key) > 256:
        # A PNG's tRNS may run past the palette (PNG's reader keeps it, its writer
        # takes it); Pillow's convert refuses it: only 256 entries can be in use.
        image = image.copy()
        image.info["transparency"] = key[:256]
    return np.asarray(image.convert("RGBA"))  # Pillow warns on RGB only, not on this


def _without_transparency(image: Image.Image) -> Image.Image:
    """A palette image without ``info["transparency"]``, sharing the pixels when it has none.

    For a conversion to RGB whose transparent entries are unused: Pillow warns
    when ``info["transparency"]`` is bytes.
    """
    if "transparency" not in image.info:
        return image
    plain = image.copy()
    del plain.info["transparency"]
    return plain


def _opaque(image: Image.Image) -> bool:
    alpha = image.getchannel("A") if image.mode not in ("RGBa", "La") else \
        image.convert("RGBA" if image.mode == "RGBa" else "LA").getchannel("A")
    return alpha.getextrema()[0] == 255


def _drop_alpha(image: Image.Image) -> Image.Image:
    """An image whose alpha is 255 everywhere, without its alpha channel.

    A ``transparency`` key left in its ``info`` is dropped: it meant nothing
    beside the alpha channel, and would make opaque pixels transparent.
    """
    if image.mode in ("RGBa", "La"):
        image = image.convert("RGBA" if image.mode == "RGBa" else "LA")
    if image.mode == "PA":
        rgb_palette = image.getpalette("RGB")
        out = Image.frombytes("P", image.size, image.getchannel(0).tobytes())
        out.putpalette(rgb_palette)
        return out
    out = image.convert(_ALPHA_MODES[image.mode])
    out.info.pop("transparency", None)
    return out


def _transparent_index_in_use(image: Image.Image) -> bool:
    """A "P" image one of whose used entries is (partly) transparent.

    An entry's alpha comes from an RGBA palette (what ``kpal.decode`` of a
    version 2 file and Pillow's ``quantize()`` of an RGBA image give) or from
    ``info["transparency"]`` (an index, or one alpha per entry, as in PNG's tRNS).
    """
    transparency = image.info.get("transparency")
    rgba_palette = image.palette is not None and image.palette.mode == "RGBA"
    if transparency is None and not rgba_palette:
        return False
    alphas = np.full(256, 255, np.uint8)
    if rgba_palette:
        entries = np.asarray(image.getpalette("RGBA") or [], np.uint8)[3::4][:256]
        alphas[: entries.size] = entries
    if isinstance(transparency, int):
        if 0 <= transparency < 256:
            alphas[transparency] = 0
    elif isinstance(transparency, (bytes, bytearray)):
        keys = np.frombuffer(bytes(transparency), np.uint8)[:256]  # one alpha per entry
        alphas[: keys.size] = np.minimum(alphas[: keys.size], keys)
    used = np.bincount(np.asarray(image).reshape(-1), minlength=256) > 0
    return bool((alphas[used[:256]] < 255).any())


def _colour_key_hit(image: Image.Image, rgb: np.ndarray) -> bool:
    """An RGB or L image whose tRNS colour key matches a pixel has transparent pixels."""
    key = image.info.get("transparency")
    if key is None or image.mode not in ("RGB", "L", "1"):
        return False
    if image.mode == "RGB":
        if not (isinstance(key, tuple) and len(key) == 3):
            return False
        colour = np.asarray(key, np.int64)
    else:
        if not isinstance(key, int):
            return False
        colour = np.full(3, 255 if (image.mode == "1" and key) else key, np.int64)
    if (colour < 0).any() or (colour > 255).any():
        return False
    return bool(np.isin(pack_rgb(rgb.reshape(-1, 3)),
                        pack_rgb(colour.astype(np.uint8)[None])).any())


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
                 options: EncodeOptions | None = None, icc_profile: bytes | None = None,
                 **keywords) -> Encoded:
    """Encode an image and return the file bytes with what went into them.

    Takes the same parameters as :func:`encode`, or an :class:`EncodeOptions`
    as ``options`` (with ``k`` and keywords applied on top).

    Returns
    -------
    Encoded
    """
    opts = encode_options(k, options, keywords)  # every option checked before any work
    chosen = codings.get(opts.coding)
    given = given_palette(opts.palette) if opts.palette is not None else None
    if not isinstance(image, (np.ndarray, Image.Image)):
        image = open_image(image, before_load=lambda im: prefetch_kernels(im, opts))
    if icc_profile is None and isinstance(image, Image.Image):
        icc_profile = image.info.get("icc_profile")
    image, icc_profile = colour_managed(image, icc_profile)
    if icc_profile is not None and (given is not None or opts.space != "rgb"):
        image, icc_profile = _srgb_for(image, icc_profile, "the given palette's colours are "
                                       "sRGB" if given is not None else "oklab is computed "
                                       "from sRGB colours")
    metadata = _metadata(icc_profile)
    # The background is sRGB (#rrggbb): flattened onto, it must show as that colour.
    background = None if opts.background is None else srgb_colour_in(opts.background,
                                                                      icc_profile)
    pixels, p_image, orientation = _pixels(image, background)
    del image  # a path's or bytes' Pillow image (4 bytes a pixel) is no longer needed
    height, width = pixels.shape[:2]
    if chosen.check is not None:
        chosen.check(width, height)  # e.g. a coding that needs kpal[fast]: before the fit
    if given is not None and given.shape[1] == 4 and pixels.shape[2] == 3:
        # An RGBA palette is stored as given, so that shared indices stay shared:
        # the opaque pixels take its opaque entries.
        opaque = np.full((height, width, 4), 255, dtype=np.uint8)
        opaque[..., :3] = pixels
        pixels = opaque
    fit = None
    # A target's sizes are those of the file written: its metadata (a profile) included.
    metadata_bytes = len(container.pack_metadata(metadata)) if metadata else 0
    if pixels.shape[2] == 4:
        fit = _fit_rgba(pixels, opts, given, from_palette=p_image is not None,
                        metadata_bytes=metadata_bytes)
    elif p_image is not None and given is None and opts.quality is None \
            and opts.max_size is None:
        palette, labels = _own_palette(p_image)
        if opts.k is None or len(palette) <= opts.k:  # kept as it is: lossless
            fit = _Fit(palette, labels, "palette", None, None, len(palette))
    if fit is None:
        fit = _fit(pixels, opts, given, metadata_bytes)
    palette, labels = fit.palette, fit.labels
    k_stored = len(palette)
    alpha = palette.shape[1] == 4 and bool((palette[:, 3] < 255).any())
    if palette.shape[1] == 4 and not alpha:
        palette = np.ascontiguousarray(palette[:, :3])  # opaque after all: the RGB layout
    payload = fit.payload if fit.payload is not None else chosen.encode(labels, k_stored)
    header = container.Header.for_image(
        coding=chosen.id, k=k_stored, width=width, height=height, payload_length=len(payload),
        alpha=alpha, metadata_length=len(container.pack_metadata(metadata)))
    data = container.write(header, palette, payload, metadata=metadata)
    return Encoded(data=data, header=header, palette=palette, labels=labels, source=pixels,
                   method=fit.method, n_iter=fit.n_iter, inertia=fit.inertia,
                   n_colors=fit.n_colors, options=opts, orientation=orientation,
                   choice=fit.choice)


def _profile_bytes(icc_profile: object) -> bytes | None:
    """An ``icc_profile`` argument as bytes: bytes-like, or a Pillow ``ImageCmsProfile``."""
    if icc_profile is None or isinstance(icc_profile, bytes):
        return icc_profile
    if isinstance(icc_profile, (bytearray, memoryview)):
        return bytes(icc_profile)
    try:
        from PIL import ImageCms
    except ImportError:  # a Pillow built without LittleCMS
        ImageCms = None  # noqa: N806
    if ImageCms is not None and isinstance(icc_profile, ImageCms.ImageCmsProfile):
        return icc_profile.tobytes()
    msg = f"icc_profile must be the profile's bytes, not {type(icc_profile).__name__}"
    raise OptionError(msg)


def colour_managed(image: Image.Image | np.ndarray, icc_profile: bytes | None = None
                   ) -> tuple[Image.Image | np.ndarray, bytes | None]:
    """The image to encode and the ICC profile to store with it.

    An RGB profile a ``.kpal`` file can hold is kept, the pixels as they are.
    The pixels of an image with a profile of another colour space (grey, CMYK,
    Lab) are converted to sRGB with LittleCMS (perceptual intent) and no
    profile is kept: a file without one is sRGB (spec/kpal.md). A profile
    that cannot be read, or not used for the image's mode, is dropped with a
    one-line ``KpalWarning``, the pixels kept as they are. :func:`encode_image`
    calls this; call it yourself before turning an image into an array.

    Parameters
    ----------
    image : PIL.Image.Image or ndarray
    icc_profile : bytes, optional
        The profile; default the image's own ``info["icc_profile"]``.

    Returns
    -------
    image : PIL.Image.Image or ndarray
        ``image`` itself, or a new RGB (RGBA with transparency) image in sRGB
        with the same ``info`` but the profile.
    icc_profile : bytes or None
        The profile to store.
    """
    if icc_profile is None and isinstance(image, Image.Image):
        icc_profile = image.info.get("icc_profile")
    icc_profile = _profile_bytes(icc_profile)
    if not icc_profile:
        return image, None
    declared = int.from_bytes(icc_profile[:4], "big") if len(icc_profile) >= 4 else 0
    if 128 <= declared < len(icc_profile):
        # Bytes after the size the profile declares (padding some writers add) are
        # not part of it: the profile itself is stored, not converted away.
        icc_profile = icc_profile[:declared]
    try:
        container.parse_metadata(container.pack_metadata({container.ICC_BLOCK: icc_profile}))
    except FormatError as e:
        # The container's words, without the block's position in a file not yet written.
        problem = re.sub(r"^iccp block at byte \d+:? ", "", str(e))
        if problem.startswith("holds "):
            problem = "the profile " + problem
    else:
        return image, icc_profile  # an RGB profile: stored, the palette in its space
    try:
        from PIL import ImageCms
    except ImportError:  # a Pillow built without LittleCMS
        _drop_profile(f"{problem}, and this Pillow has no LittleCMS to convert the pixels")
        return image, None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
    except (OSError, ValueError, ImageCms.PyCMSError):
        _drop_profile(f"it cannot be read ({problem})")
        return image, None
    space = profile.profile.xcolor_space.strip() or "unknown"
    if not isinstance(image, Image.Image):
        _drop_profile(f"its colour space is {space} and the pixels are an RGB array")
        return image, None
    if image.mode in _WIDE_MODES:
        return image, None  # refused by the mode rules, which say how to scale it first
    try:
        converted = _to_srgb(image, profile)
    except (OSError, ValueError, ImageCms.PyCMSError) as e:
        _drop_profile(f"its colour space is {space} and LittleCMS cannot convert a mode "
                      f"{image.mode} image with it ({e})")
        return image, None
    if space == "RGB":  # an RGB profile the format cannot store as it is: say so
        warn(f"the image's ICC profile cannot be stored ({problem}): its pixels "
             "were converted to sRGB with it")
    else:  # a grey or CMYK photo's colours changed: say so, as for an RGB profile
        name = profile_description(icc_profile)
        warn(f"the image's ICC profile ({f'{name!r}, ' if name else ''}a {space} profile) "
             "was applied: its pixels were converted to sRGB and no profile is stored, "
             "because a .kpal file holds RGB profiles only")
    return converted, None


#: Colours whose conversion tells whether a profile is sRGB under another name.
_PROFILE_PROBE = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128],
                            [200, 120, 40], [30, 160, 220], [250, 250, 250], [10, 10, 10]]],
                          dtype=np.uint8)


@functools.lru_cache(maxsize=16)
def _srgb_verdict(icc_profile: bytes) -> bool | None:
    try:
        from PIL import ImageCms
    except ImportError:  # a Pillow built without LittleCMS
        return None
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        same = ImageCms.profileToProfile(Image.fromarray(_PROFILE_PROBE), source,
                                         ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (OSError, ValueError, ImageCms.PyCMSError):
        return None
    return bool(np.abs(np.asarray(same, dtype=int) - _PROFILE_PROBE).max() <= 1)


def is_srgb_profile(icc_profile: bytes) -> bool:
    """True when an RGB ICC profile is sRGB under another name.

    The profile is sRGB when LittleCMS maps a probe of saturated, grey and
    mid colours from it to sRGB onto themselves, within one level; a profile
    it cannot read (or a Pillow without LittleCMS) counts as sRGB, since its
    colours can only be taken as they are.
    """
    return _srgb_verdict(bytes(icc_profile)) is not False


def srgb_array(pixels: np.ndarray, icc_profile: bytes) -> tuple[np.ndarray, bool]:
    """RGB or RGBA uint8 ``pixels`` in the space of an RGB ``icc_profile``, in sRGB.

    Converted with LittleCMS (perceptual intent), alpha kept. Returns the
    pixels and whether they were converted: an sRGB profile (see
    :func:`is_srgb_profile`) leaves them as they are.
    """
    if is_srgb_profile(icc_profile):
        return pixels, False
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(io.BytesIO(bytes(icc_profile)))
    image = Image.fromarray(np.ascontiguousarray(pixels),
                            "RGBA" if pixels.shape[-1] == 4 else "RGB")
    return np.asarray(_to_srgb(image, profile)), True


def profile_description(icc_profile: bytes) -> str | None:
    """An ICC profile's own name ("Display P3", "Adobe RGB (1998)"), or None if unreadable."""
    try:
        from PIL import ImageCms
    except ImportError:  # a Pillow built without LittleCMS
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(bytes(icc_profile)))
        name = (profile.profile.profile_description or "").strip()
    except (OSError, ValueError, ImageCms.PyCMSError):
        return None
    return name or None


def srgb_colour_in(colour: tuple[int, int, int], icc_profile: bytes | None
                   ) -> tuple[int, int, int]:
    """An sRGB colour (a ``background=``, ``#rrggbb`` as CSS means it) in an RGB profile's space.

    The values that, stored with the profile, show as ``colour``; the colour
    itself when there is no profile, or it is sRGB (:func:`is_srgb_profile`).
    """
    if not icc_profile or is_srgb_profile(icc_profile):
        return colour
    from PIL import ImageCms

    try:
        target = ImageCms.ImageCmsProfile(io.BytesIO(bytes(icc_profile)))
        pixel = ImageCms.profileToProfile(Image.new("RGB", (1, 1), tuple(colour)),
                                          ImageCms.createProfile("sRGB"), target,
                                          outputMode="RGB")
    except (OSError, ValueError, ImageCms.PyCMSError) as e:
        # An input-only profile (a scanner's, a camera's: no sRGB -> profile direction).
        warn(f"the background colour is used as given: the image's ICC profile cannot "
             f"take colours into its space ({' '.join(str(e).split())})")
        return colour
    assert pixel is not None  # inPlace=False: a new image
    return tuple(int(v) for v in pixel.getpixel((0, 0)))  # type: ignore[return-value]


def _srgb_for(image: Image.Image | np.ndarray, icc_profile: bytes, why: str
              ) -> tuple[Image.Image | np.ndarray, bytes | None]:
    """An image with an RGB profile, for an encode that needs sRGB colours.

    An sRGB profile is kept as it is. Any other is applied: the pixels are
    converted to sRGB and no profile is stored, with a note saying ``why``.
    """
    if is_srgb_profile(icc_profile):
        return image, icc_profile
    if isinstance(image, np.ndarray) and not (
            image.dtype == np.uint8 and image.size and (
                image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4)))):
        return image, icc_profile  # the mode rules (_pixels) refuse it, saying why
    converted: Image.Image | np.ndarray
    if isinstance(image, np.ndarray):
        converted = srgb_array(image if image.ndim == 3 else image[..., None].repeat(3, axis=2),
                               icc_profile)[0]
    else:
        from PIL import ImageCms

        converted = _to_srgb(image, ImageCms.ImageCmsProfile(io.BytesIO(icc_profile)))
    name = profile_description(icc_profile) or "not sRGB"
    warn(f"the image's ICC profile ({name}) was applied: its pixels were converted "
         f"to sRGB and no profile is stored, because {why}")
    return converted, None


def _drop_profile(why: str) -> None:
    warn(f"the image's ICC profile is dropped: {why}; its pixels are kept as they "
         "are, read as sRGB")


#: The mode holding an image's colour channels for LittleCMS, without alpha.
_COLOUR_MODES = {"1": "L", "LA": "L", "La": "L", "RGBA": "RGB", "RGBa": "RGB", "RGBX": "RGB",
                 "P": "RGB", "PA": "RGB"}


def _to_srgb(image: Image.Image, profile: object) -> Image.Image:
    """``image`` converted from ``profile`` to sRGB (perceptual intent), alpha and
    ``info`` (EXIF orientation, ...) kept, without the profile."""
    from PIL import ImageCms

    alpha = _rgba(image)[..., 3] if has_transparency(image) else None
    mode = _COLOUR_MODES.get(image.mode, image.mode)
    colour = image if image.mode == mode else image.convert(mode)
    srgb = ImageCms.createProfile("sRGB")
    out = ImageCms.profileToProfile(colour, profile, srgb, outputMode="RGB")
    assert out is not None  # inPlace=False: a new image
    if alpha is not None and int(alpha.min()) < 255:
        out.putalpha(Image.fromarray(alpha, "L"))
    out.info = {key: value for key, value in image.info.items()
                if key not in ("icc_profile", "transparency")}
    return out


def _metadata(icc_profile: bytes | None) -> dict[str, bytes]:
    """The metadata blocks of a file: the ICC profile, when the image has one."""
    return {"iccp": bytes(icc_profile)} if icc_profile else {}


def _fit_rgba(pixels: np.ndarray, opts: EncodeOptions, given: np.ndarray | None, *,
              from_palette: bool, metadata_bytes: int = 0) -> _Fit:
    """Quantize an image with transparency (premultiplied RGBA, see cluster.alpha).

    The same ways as :func:`_fit`: a given palette (an RGB one: its colours
    opaque, plus one transparent entry; an RGBA one as given, see
    :func:`_rgba_given`), a quality or size target, or ``k``; then nearest
    entry or dithered (:func:`kpal.cluster.remap.remap_rgba`).
    """
    from kpal.cluster.alpha import quantize_rgba

    height, width = pixels.shape[:2]
    if given is not None:
        palette = _with_transparent_entry(given) if given.shape[1] == 3 else \
            _rgba_given(given, pixels)
        return _Fit(palette, _remap(pixels, palette, opts), "given palette", None, None, 0)
    if opts.quality is not None or opts.max_size is not None:
        from kpal.choose import choose_k_rgba

        choice = choose_k_rgba(pixels, quality=opts.quality, max_size=opts.max_size,
                               coding=opts.coding, init=opts.init, seed=opts.seed,
                               max_iter=opts.max_iter, tol=opts.tol,
                               metadata_bytes=metadata_bytes)
        palette, labels = choice.palette, choice.labels.reshape(height, width)
        inertia, payload = 3 * choice.mse, choice.payload
        if _dithers(opts) and choice.psnr != float("inf"):
            palette, labels = _used_only(palette, _remap(pixels, palette, opts))
            inertia = payload = None
        _warn_if_mask_lost(pixels, palette)
        return _Fit(palette, labels, "kmeans", None, inertia, choice.n_colors, choice, payload)
    # A palette image keeps all its colours unless told otherwise (it has at most 256).
    k = opts.k if opts.k is not None else (MAX_K if from_palette else DEFAULT_K)
    # Keeping a palette image's colours is no news (as for an opaque one, _own_palette).
    with silenced("the image has") if from_palette else nullcontext():
        result = quantize_rgba(pixels.reshape(-1, 4), k, method=opts.method, init=opts.init,
                               seed=opts.seed, max_iter=opts.max_iter, tol=opts.tol,
                               sample=opts.sample, space=opts.space)
    _warn_if_mask_lost(pixels, result.palette)
    # A palette image kept as it is (not the one entry of k = 1, which also runs no iteration).
    lossless = result.n_iter == 0 and result.n_colors <= k
    method = "palette" if from_palette and lossless else result.method
    palette, labels = result.palette, result.labels.reshape(height, width)
    inertia = result.inertia
    if _dithers(opts) and result.n_iter > 0:  # n_iter 0: every colour kept, nothing to dither
        palette, labels = _used_only(palette, _remap(pixels, palette, opts))
        inertia = None
    return _Fit(palette, labels, method, result.n_iter, inertia, result.n_colors)


def _warn_if_mask_lost(pixels: np.ndarray, palette: np.ndarray) -> None:
    """Warn when one entry stands for fully transparent and other pixels (k = 1)."""
    if palette.shape[0] != 1:
        return
    alpha = pixels[..., 3]
    transparent = alpha == 0
    if transparent.any() and not transparent.all():
        warn(
            "k=1: one palette entry cannot keep both the fully transparent pixels and the "
            "others, so the mask is not kept: the entry is their premultiplied mean (k=2 "
            "keeps it)")


def _with_transparent_entry(given: np.ndarray) -> np.ndarray:
    """A given (RGB) palette for an image with transparency: its colours, opaque, in
    order (so shared palettes keep their indices), then one ``(0, 0, 0, 0)`` entry."""
    if given.shape[0] >= MAX_K:
        msg = (f"palette has {given.shape[0]} colours: an image with transparency needs one "
               f"more entry for its transparent pixels, so at most {MAX_K - 1}")
        raise KpalError(msg)
    palette = np.full((given.shape[0] + 1, 4), 255, dtype=np.uint8)
    palette[:-1, :3] = given
    palette[-1] = 0
    return palette


def _rgba_given(given: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """A given RGBA palette, as given, for RGBA ``pixels``: one ``(0, 0, 0, 0)``
    entry is added at the end when some pixel has alpha 0 and no entry does.

    Raises
    ------
    KpalError
        Opaque pixels and no opaque entry (they take only alpha 255 entries),
        or a transparent entry to add to a palette of 256.
    """
    alpha = pixels[..., 3]
    if not (given[:, 3] == 255).any() and (alpha == 255).any():
        msg = (f"palette has no opaque entry (alpha 255) for the {int((alpha == 255).sum())} "
               "opaque pixels, which keep their alpha exactly: add one")
        raise KpalError(msg)
    if (alpha == 0).any() and not (given[:, 3] == 0).any():
        if given.shape[0] >= MAX_K:
            msg = (f"palette has {given.shape[0]} entries and none of alpha 0: the image's "
                   "transparent pixels need one more, so at most "
                   f"{MAX_K - 1} entries (or give one of alpha 0)")
            raise KpalError(msg)
        given = np.concatenate([given, np.zeros((1, 4), dtype=np.uint8)])
    return given


@dataclass(frozen=True)
class _Fit:
    """A palette and the labels of every pixel, and how they were found."""

    palette: np.ndarray
    labels: np.ndarray  # (height, width)
    method: str
    n_iter: int | None
    inertia: float | None  # None when it must be measured from the labels
    n_colors: int
    choice: object = None
    payload: bytes | None = None  # the labels already coded with the chosen coding


def given_palette(value: str | tuple) -> np.ndarray:
    """The colours of ``palette=``: read from its file, or the colours given; (k, 4)
    only when some alpha is below 255.

    An entry that repeats an earlier one is dropped, with a warning: it could
    never be the nearest colour, and would only widen the indices (an old
    ``.act`` file padded with black to 256 entries would cost 8 bits a pixel).
    """
    if isinstance(value, str):
        from kpal.palettes import load_palette

        try:
            colours = load_palette(value)  # an OSError (no such file) is raised as it is
        except KpalError as e:
            raise KpalError(f"palette file {e}") from None  # its message starts with the name
        where = f"palette file {value}"
    else:
        colours = np.array(value, dtype=np.uint8).reshape(len(value), -1)
        where = "palette"
        if colours.shape[1] == 4 and (colours[:, 3] == 255).all():
            colours = np.ascontiguousarray(colours[:, :3])
    rows = np.ascontiguousarray(colours).view(f"V{colours.shape[1]}").ravel()
    _, first = np.unique(rows, return_index=True)
    if first.size < colours.shape[0]:
        kept = np.sort(first)
        warn(f"{where}: {colours.shape[0] - kept.size} of its {colours.shape[0]} "
             f"entries repeat earlier ones; the {kept.size} distinct colours are "
             f"used (k={kept.size})")
        colours = np.ascontiguousarray(colours[kept])
    return colours


def _fit(rgb: np.ndarray, opts: EncodeOptions, given: np.ndarray | None,
         metadata_bytes: int = 0) -> _Fit:
    """Choose the palette (fitted, chosen by a target, or given) and label every pixel."""
    height, width = rgb.shape[:2]
    pixels = rgb.reshape(-1, 3)
    if given is not None:
        labels = _remap(rgb, given, opts)
        return _Fit(given, labels, "given palette", None, None, 0)
    fit_options = {"method": opts.method, "init": opts.init, "seed": opts.seed,
                   "max_iter": opts.max_iter, "tol": opts.tol, "sample": opts.sample}
    if opts.quality is not None or opts.max_size is not None:
        from kpal.choose import choose_k

        choice = choose_k(rgb, quality=opts.quality, max_size=opts.max_size, coding=opts.coding,
                          init=opts.init, seed=opts.seed, max_iter=opts.max_iter, tol=opts.tol,
                          metadata_bytes=metadata_bytes)
        palette, labels = choice.palette, choice.labels.reshape(height, width)
        inertia, payload = 3 * choice.mse, choice.payload
        if _dithers(opts) and choice.psnr != float("inf"):
            palette, labels = _used_only(*_dither(rgb, palette, opts))
            inertia = payload = None
        return _Fit(palette, labels, "kmeans", None, inertia, choice.n_colors, choice, payload)
    k = DEFAULT_K if opts.k is None else opts.k
    if opts.space == "rgb":
        result = quantize(pixels, k, **fit_options)
    else:
        from kpal.cluster.perceptual import quantize_perceptual

        result = quantize_perceptual(pixels, k, space=opts.space, **fit_options)
    palette, labels = result.palette, result.labels.reshape(height, width)
    inertia = result.inertia
    if _dithers(opts) and result.n_iter > 0:  # n_iter 0: every colour kept, nothing to dither
        palette, labels = _used_only(*_dither(rgb, palette, opts))
        inertia = None
    return _Fit(palette, labels, result.method, result.n_iter, inertia, result.n_colors)


def _used_only(palette: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A fitted palette without the entries dithering left unused, the labels renumbered.

    The spec's "store only entries that are used" (§3): an ordered dither may
    pass over an entry that nearest-colour mapping gave pixels to.
    """
    used = np.bincount(labels.ravel(), minlength=palette.shape[0]) > 0
    if used.all():
        return palette, labels
    renumbered = (np.cumsum(used) - 1).astype(labels.dtype)
    return np.ascontiguousarray(palette[used]), renumbered[labels]


def _dithers(opts: EncodeOptions) -> bool:
    return opts.dither != "none" and opts.dither_strength > 0


def _exact_on(pixels: np.ndarray, palette: np.ndarray) -> bool:
    """Every pixel is a palette entry (alpha 0 counting as the transparent entry's)."""
    from kpal.cluster.remap import in_palette

    if pixels.shape[2] == 4:
        if (pixels[..., 3] == 0).any() and not (palette[:, 3] == 0).any():
            return False
        return all(bool(in_palette(row[row[:, 3] > 0], palette).all()) for row in pixels)
    # Row by row: a photo fails at its first row, a sprite set is read once.
    return all(bool(in_palette(row, palette).all()) for row in pixels)


def _remap(rgb: np.ndarray, palette: np.ndarray, opts: EncodeOptions) -> np.ndarray:
    """Labels of every pixel on a given ``palette``: nearest colour (in ``space``), or dithered.

    RGB or RGBA pixels (with an RGBA palette: premultiplied, alpha kept exact).
    An image whose every pixel is a palette entry is mapped exactly, not
    dithered, as a fitted palette that holds every colour is.
    """
    if _dithers(opts) and palette.shape[1] == rgb.shape[2] and _exact_on(rgb, palette):
        opts = opts.replace(dither="none")
    if rgb.shape[2] == 4:
        from kpal.cluster.remap import remap_rgba

        # Dithered, the nearest entry is the one of least composite error whatever
        # the space the palette was chosen in (the Oklab dither table is built for
        # opaque colours); undithered, it is measured in the space.
        return remap_rgba(rgb, palette, dither=opts.dither if _dithers(opts) else "none",
                          strength=opts.dither_strength, seed=opts.seed,
                          space="rgb" if _dithers(opts) else opts.space)
    if _dithers(opts):
        return _dither(rgb, palette, opts)[1]
    from kpal.cluster.remap import remap

    return remap(rgb, palette, space=opts.space)


def _dither(rgb: np.ndarray, palette: np.ndarray, opts: EncodeOptions
            ) -> tuple[np.ndarray, np.ndarray]:
    """Dither onto ``palette``; the palette is kept (refitting it to the dithered
    result measured 0.6-0.7 SSIMULACRA2 points worse, bench/bench_dither.py)."""
    from kpal.cluster.remap import dither_image

    return dither_image(rgb, palette, dither=opts.dither, strength=opts.dither_strength,
                        seed=opts.seed, space=opts.space, refine=False)


def encode(image: ImageSource, k: int | None = None, **options) -> bytes:
    """Encode an image as a ``.kpal`` file.

    Parameters
    ----------
    image : PIL.Image.Image, path, bytes, binary file object or ndarray
        The image; a path to, the bytes of, or an open binary file of any
        image file Pillow reads; or a uint8 array of shape (height, width, 3)
        (RGB), (height, width, 4) (straight RGBA) or (height, width) (grey).
        Modes follow the rules in this module's docstring; an EXIF
        orientation is applied, so the pixels are stored upright.
    k : int, optional
        Number of colours, 1..256 (default 16; for a "P" image, default its
        own palette, kept losslessly). An image with fewer distinct colours
        than ``k`` is stored exactly (lossless), with a ``KpalWarning``.
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
    coding : {"fixed", "radix", "entropy", "context"}, default "fixed"
        Payload coding (spec/kpal.md §5–7 and §12).
    dither : {"none", "fs", "ordered"}, default "none"
        Map pixels to the palette by nearest colour, Floyd-Steinberg error
        diffusion or a 64x64 blue-noise threshold map.
    dither_strength : float, default 1.0
        How much of the error is diffused (0..1); needs ``dither``.
    space : {"rgb", "oklab"}, default "rgb"
        Where the clustering measures distances; the palette is stored as sRGB.
    palette : path or sequence of (r, g, b) or (r, g, b, a), optional
        Map onto these colours (a palette file or the colours) instead of
        fitting; repeated entries are dropped with a warning.
    quality : float, str or (float, float), optional
        The smallest k whose PSNR reaches MAX dB (``40``, ``"35-40"``,
        ``(35, 40)``); MIN is accepted when no k reaches MAX.
    max_size : int or str, optional
        The largest k whose file fits this many bytes (``50000``, ``"50k"``).
    background : colour, optional
        Flatten transparency onto this colour (``"white"``, ``"#rrggbb"``, a triple).
    options : EncodeOptions, optional
        All of the above at once (:class:`kpal.options.EncodeOptions`); keywords
        given as well override its fields, and one of ``k``, ``quality``,
        ``max_size`` and ``palette`` replaces whichever of them it holds.

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
    kpal.choose.QualityError
        ``quality``: not even the largest k reaches MIN (a ``KpalError``).
    kpal.choose.SizeError
        ``max_size``: not even k = 1 fits (a ``QualityError``).
    OSError
        The image, or the ``palette`` file, cannot be read.

    Examples
    --------
    >>> import numpy as np, kpal
    >>> image = np.arange(18, dtype=np.uint8).reshape(2, 3, 3)  # 6 distinct colours
    >>> data = kpal.encode(image, k=4)
    >>> len(data)  # 26-byte header + 4 colours x 3 bytes + 6 indices x 2 bits + 4-byte CRC
    44
    """
    return encode_image(image, k, **options).data


#: Palette-file extensions that no image format claims (kpal.palettes reads and writes them).
_PALETTE_SUFFIXES = {".gpl": "a GIMP palette", ".act": "an Adobe colour table"}


def kpal_name_problem(name: str) -> str | None:
    """Why ``name`` would mislead as the name of a .kpal file, or None.

    A .kpal file named ``x.png`` (any extension Pillow reads as another
    format) would not be a PNG: no viewer would open it.

    Examples
    --------
    >>> kpal_name_problem("small.png")
    'a .kpal file named .png would not be a PNG image; name it .kpal (kpal decode writes a PNG)'
    >>> kpal_name_problem("small.k16.kpal") is None and kpal_name_problem("small") is None
    True
    """
    suffix = Path(name).suffix.lower()
    if suffix in ("", ".kpal"):
        return None
    if suffix in _PALETTE_SUFFIXES:
        return (f"a .kpal file named {suffix} would not be {_PALETTE_SUFFIXES[suffix]}; "
                "name it .kpal (kpal palette writes palette files)")
    Image.init()
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt == "KPAL":
        return None
    return (f"a .kpal file named {suffix} would not be a {fmt} image; name it .kpal "
            f"(kpal decode writes a {fmt})")


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

    Raises
    ------
    KpalError
        ``path`` names another image format (``photo.png``): no viewer would
        open the .kpal bytes in it.
    FileExistsError
        ``path`` exists and ``force`` is false.
    """
    from kpal.io import check_destination, write_atomic

    opts = encode_options(k, options.pop("options", None), options)
    problem = kpal_name_problem(os.fspath(path))
    if problem:
        msg = f"{os.fspath(path)}: {problem}"
        raise KpalError(msg)
    try:
        check_destination(path, force=force)  # before the fit: a refusal costs nothing
    except FileExistsError as e:
        msg = f"{os.fspath(path)}: file exists (pass force=True to overwrite)"
        raise FileExistsError(e.errno or errno.EEXIST, msg) from None
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
        At least the header: the first ``container.MAX_HEADER_SIZE`` bytes of
        the file (31; 26 are enough for a version 1 file).
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

    Checks in the order of spec/kpal.md §8: header, lengths, metadata blocks,
    pixel limit, checksum, payload (the metadata blocks themselves are in
    :func:`decode_metadata`).

    Returns
    -------
    header : container.Header
    palette : ndarray of shape (k, 3), or (k, 4) RGBA when ``header.alpha``, uint8
    labels : ndarray of shape (height, width), uint8

    Raises
    ------
    FormatError
        Any invalid field, length, checksum or payload.
    PIL.Image.DecompressionBombError
        More than twice ``Image.MAX_IMAGE_PIXELS`` pixels.
    """
    header, chosen = read_header(data, file_size=len(data))
    container.parse_metadata(data[header.metadata_offset : header.payload_offset],
                             header.metadata_offset)
    check_decompression_bomb(header)
    header, palette, payload = container.read(data)
    labels = chosen.decode(payload, header.k, header.width, header.height)
    return header, palette, labels


def decode_metadata(data: bytes) -> list[tuple[str, bytes]]:
    """The metadata blocks of a whole, valid file, e.g. ``[("iccp", profile)]``.

    Checks what :func:`decode_indices` checks, payload included, so no block
    of a file that readers reject is returned.

    Returns
    -------
    list of (type, data)
        In file order; empty for version 1 files.
    """
    decode_indices(data)
    return container.read_parts(data)[2]


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
    if n > 2 * limit:
        raise Image.DecompressionBombError(bomb_message(n, 2 * limit))
    if n > limit:
        warnings.warn(bomb_message(n, limit), Image.DecompressionBombWarning, stacklevel=3)


def bomb_message(n_pixels: int, limit: int) -> str:
    """Pillow's own words for an image over its pixel limit: the same problem reads the same
    on every path."""
    return (f"Image size ({n_pixels} pixels) exceeds limit of {limit} pixels, could be "
            "decompression bomb DOS attack.")


def read_bytes(source: KpalSource) -> bytes:
    """The bytes of a ``.kpal`` file given as bytes, a path or a binary file object.

    The header is read and checked first (:func:`read_header`), so a file that
    is not a ``.kpal`` file, or claims an impossible size, is refused before
    the rest of it is read, and so is a file longer than the header implies
    (without reading the rest: see :func:`read_rest`).

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
    return _from_file(source, lambda fp: read_rest(fp, _read_head(fp)))


def _from_file(source: str | os.PathLike | IO[bytes], read: Callable[[IO[bytes]], T]) -> T:
    """``read`` of a path, opened, or of a binary file object."""
    if isinstance(source, (str, os.PathLike)):
        with open(Path(source), "rb") as fp:
            return read(fp)
    return read(_binary_reader(source))


def read_shown(source: KpalSource, file_bytes: int | None = None) -> tuple[bytes, int]:
    """A file's bytes up to one past the length its header implies, and its real length.

    For :func:`inspect` and the viewer, which describe a file that is too long
    instead of refusing it: what lies past the implied length is measured (a
    file that can seek) or counted in pieces (a stream), never kept, so a
    37-byte file followed by gigabytes costs no memory. One byte past the
    implied length is kept, so that a reader of the bytes alone still finds
    the file too long.

    Parameters
    ----------
    source : bytes, path or binary file object
        The file, or (bytes) its first bytes as this function gave them.
    file_bytes : int, optional
        With bytes only: the length of the file they start, at least theirs.

    Returns
    -------
    data : bytes
        The file's first bytes: all of them, up to the implied length and one.
    file_bytes : int
        The file's length.

    Raises
    ------
    FormatError
        The header is not valid, or a stream runs on more than 1 GiB past the
        length it implies (counting stops there).
    OSError
        The path cannot be read.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):  # measured before, or all here
        data = bytes(source)
        container.read_header(data)  # the fields; the lengths are inspect's to report
        return data, len(data) if file_bytes is None else _checked_file_bytes(file_bytes, data)
    if file_bytes is not None:
        msg = "file_bytes is for the first bytes of a file given as bytes, not a path or file"
        raise TypeError(msg)
    return _from_file(source, _read_shown_file)


def _read_shown_file(fp: IO[bytes]) -> tuple[bytes, int]:
    head = _read_head(fp)
    header, _ = read_header(head)
    left = length_to_end(fp)
    wanted = max(header.file_size + 1 - len(head), 0)
    if left is not None:  # what is there, not what a damaged header claims
        return head + bytes(read_up_to(fp, min(wanted, left))), len(head) + left
    data = head + bytes(read_up_to(fp, wanted))
    length = len(data)
    # A stream: count the rest, keeping none of it, up to a bound (an endless pipe).
    while length - header.file_size <= _COUNTED_LIMIT and (piece := fp.read(_COUNTED_PIECE)):
        length += len(piece)
    if length - header.file_size > _COUNTED_LIMIT:
        msg = (f"file has trailing data: more than {_COUNTED_LIMIT:,} bytes past the "
               f"{header.file_size} bytes the header implies (counting stopped there)")
        raise FormatError(msg)
    return data, length


def _checked_file_bytes(file_bytes: object, data: bytes) -> int:
    """``file_bytes``, the length of a file of which ``data`` is the start, checked.

    Raises
    ------
    ValueError
        Not a whole number at least ``len(data)``.
    """
    if isinstance(file_bytes, bool) or not isinstance(file_bytes, numbers.Integral) \
            or file_bytes < len(data):
        msg = (f"file_bytes={file_bytes!r} must be a whole number of bytes, at least the "
               f"{len(data)} given")
        raise ValueError(msg)
    return int(file_bytes)


#: Bytes read at a time when a stream's trailing data is counted (:func:`read_shown`),
#: and how many past the implied length are counted before the stream is given up.
_COUNTED_PIECE = 1 << 20
_COUNTED_LIMIT = 1 << 30


def _binary_reader(source: object) -> IO[bytes]:
    if not callable(getattr(source, "read", None)):
        msg = (f"expected the bytes, path or binary file object of a .kpal file, "
               f"got {type(source).__name__}")
        raise TypeError(msg)
    refuse_text_mode(source)  # before a read that would fail to decode text
    return source


def _read_head(fp: IO[bytes]) -> bytes:
    """The first ``container.MAX_HEADER_SIZE`` bytes, fewer only at the end of the file."""
    head = fp.read(container.MAX_HEADER_SIZE)
    refuse_text_mode(head)
    if head and len(head) < container.MAX_HEADER_SIZE:  # a raw pipe may give less
        head = bytes(head) + bytes(read_up_to(fp, container.MAX_HEADER_SIZE - len(head)))
    return bytes(head or b"")


def length_to_end(fp: IO[bytes]) -> int | None:
    """Bytes from ``fp``'s position to its end, when it can seek (``None`` for a pipe)."""
    try:
        here = fp.tell()
        fp.seek(0, os.SEEK_END)  # its return value: None for mmap and some streams
        end = fp.tell()
        fp.seek(here)
        return end - here
    except (OSError, AttributeError, ValueError, TypeError, io.UnsupportedOperation):
        return None


def read_rest(fp: IO[bytes], head: bytes) -> bytes:
    """The whole ``.kpal`` file whose first bytes, ``head``, were just read from ``fp``.

    The header is checked first; a file that can seek is then checked against
    the length the header implies before anything more is read, and a stream
    is read up to that length and one byte more: a 37-byte file followed by
    gigabytes (or an endless pipe) is refused without reading them.

    Raises
    ------
    FormatError
        The header is not valid, or the file is longer than it implies.
    """
    left = length_to_end(fp)
    header, _ = read_header(head, file_size=None if left is None else len(head) + left)
    rest = read_up_to(fp, max(header.file_size - len(head), 0) + 1)  # +1: trailing data
    if len(head) + len(rest) > header.file_size:
        msg = (f"file has trailing data: more than the {header.file_size} bytes the header "
               "implies")
        raise FormatError(msg)
    return head + bytes(rest)


def decode(source: KpalSource) -> Image.Image:
    """Decode a ``.kpal`` file into a Pillow "P" image.

    The result is what ``Image.open(path)`` gives after ``load()``: mode "P",
    the stored palette, ``format == "KPAL"`` and ``info`` with ``k``,
    ``bits_per_index``, ``coding`` and ``version``. A file with an RGBA
    palette gives a palette of mode "RGBA", and ``info["transparency"]``
    (the entry's index, as Pillow's PNG reader sets it) when exactly one entry
    is transparent and every other opaque; ``convert("RGBA")`` gives the
    pixels back. An ICC profile is ``info["icc_profile"]``.

    Parameters
    ----------
    source : bytes, path or binary file object
        The file's bytes, its path, or a file open for reading in binary mode.

    Raises
    ------
    FormatError
        Not a .kpal file, or any invalid field, length, checksum or payload
        (for a path, the message starts with it).
    PIL.Image.DecompressionBombError
        More than twice ``Image.MAX_IMAGE_PIXELS`` pixels (a warning above it).
    OSError
        The path cannot be read.
    """
    try:
        with io.BytesIO(read_bytes(source)) as fp:
            im = Image.open(fp, formats=["KPAL"])
            im.load()
    except KpalError as e:
        if not isinstance(source, (str, os.PathLike)):
            raise
        raise type(e)(f"{os.fspath(source)}: {e}") from None  # which file, when it has a name
    return im


def inspect(data: KpalSource, *, file_bytes: int | None = None) -> dict:
    """Describe a file for ``kpal info``: header, palette, sizes and checksum status.

    Unlike :func:`decode` it reports a bad length, metadata block, checksum or
    payload instead of raising, so a damaged file can still be looked at; only
    a header that cannot be parsed raises.

    Parameters
    ----------
    data : bytes, path or binary file object
        What :func:`decode` takes: the file's bytes (or a bytearray or
        memoryview), its path or a binary file object. A file longer than its
        header implies is measured, not read to its end (:func:`read_shown`).
    file_bytes : int, optional
        The file's length, when ``data`` is bytes holding only its first bytes,
        as :func:`read_shown` gives them; at least ``len(data)``.

    Returns
    -------
    dict
        ``header`` (fields, with ``flags`` and ``metadata_length``, 0 in
        version 1), ``coding`` (name), ``reader_needs`` (``None``, or what a
        reader needs to decode an optional coding), ``alpha`` (whether palette entries are
        RGBA), ``palette`` (``#rrggbb`` strings, ``#rrggbbaa`` with alpha, as
        many as the file holds), ``metadata`` (one dict per block: ``type``,
        ``bytes``, ``known``, and for an ICC profile its ``description``, the
        name it gives itself, or None; ``None`` when the blocks cannot be read),
        ``layout`` (bytes of ``header``, ``palette``, ``metadata``,
        ``payload`` and ``checksum``), ``size`` (see
        :class:`kpal.metrics.SizeReport`, with the palette counted at 32 bits
        an entry for RGBA; ``overhead_bytes`` includes the metadata; ``None``
        when the file's length is not the one its header implies, since then
        there is nothing to account for), ``file_bytes`` (the length found),
        ``expected_bytes`` (the length the header implies), ``checksum``
        ("ok", "mismatch" or "not checked") and ``problem`` (None or the
        error message).

    Raises
    ------
    FormatError
        The header is not valid.
    PIL.Image.DecompressionBombError
        The header claims more than twice ``Image.MAX_IMAGE_PIXELS`` pixels
        (checked before decoding, see :func:`check_decompression_bomb`).
    """
    data, length = read_shown(data, file_bytes)
    header = container.read_header(data)
    chosen = codings.get(header.coding)
    start = header.header_size
    raw_palette = bytes(data[start : start + header.palette_size])
    labels = None
    checksum, problem = "ok", None
    try:  # in the order decode checks them, so both name the same problem
        read_header(data, file_size=length)
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
        except KpalError:  # a valid file this installation cannot decode: reader_needs says why
            pass
    metadata = None
    if len(data) >= header.payload_offset:
        try:
            blocks = container.parse_metadata(
                data[header.metadata_offset : header.payload_offset], header.metadata_offset)
        except FormatError:
            pass
        else:
            metadata = [{"type": name, "bytes": len(body),
                         "known": name in container.KNOWN_BLOCKS}
                        | ({"description": profile_description(body)}
                           if name == container.ICC_BLOCK else {})
                        for name, body in blocks]
    size = None
    if length == header.file_size:
        size = metrics.size_report(header.k, header.n_pixels, length,
                                   payload_bytes=header.payload_length, labels=labels,
                                   coding=chosen.name, entry_bits=8 * header.channels).as_dict()
    step = header.channels
    colours = [raw_palette[i : i + step].hex()
               for i in range(0, len(raw_palette) - step + 1, step)]
    return {
        "header": asdict(header),
        "coding": chosen.name,
        "reader_needs": chosen.reader_needs,
        "alpha": header.alpha,
        "palette": ["#" + c for c in colours],
        "metadata": metadata,
        "layout": {"header": header.header_size, "palette": header.palette_size,
                   "metadata": header.metadata_length, "payload": header.payload_length,
                   "checksum": container.CHECKSUM_SIZE},
        "size": size,
        "file_bytes": length,
        "expected_bytes": header.file_size,
        "checksum": checksum,
        "problem": problem,
    }
