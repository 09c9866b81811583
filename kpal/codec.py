"""The encode and decode flows (see ARCHITECTURE.md).

Encode: image → RGB pixels (mode rules below) → ``quantize`` → payload coding →
``container.write``. Decode: bytes → ``container.read`` (header, length,
checksum) → payload coding → a Pillow "P" image.

Mode rules for encoding (``to_rgb``):

=====================  ===================================================
input                  what is stored
=====================  ===================================================
RGB                    quantized to ``k`` colours
L, 1                   grey levels as RGB, then quantized (lossless when
                       there are at most ``k`` levels)
P                      its own palette and indices, unchanged (lossless),
                       unless ``k`` is given and smaller than the number of
                       palette entries used: then its RGB is quantized
RGBA, LA, PA, RGBX     the colour channels when every pixel is opaque; an
                       image with any transparent pixel is rejected (the
                       format has no alpha channel yet)
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

import numpy as np
from PIL import Image

from kpal import coding as codings
from kpal import container, metrics
from kpal.cluster import quantize
from kpal.cluster.histogram import pack_rgb
from kpal.errors import ChecksumError, FormatError, KpalError

__all__ = [
    "encode", "encode_image", "decode", "decode_indices", "inspect", "save", "to_rgb", "Encoded",
    "check_decompression_bomb",
]

ImageSource = Image.Image | str | os.PathLike | np.ndarray
DEFAULT_K = 16

_GREY_MODES = {"L", "1"}
_ALPHA_MODES = {"RGBA": "RGB", "LA": "L", "PA": "P", "RGBa": None, "La": None}
_CONVERTED_MODES = {"CMYK", "YCbCr", "LAB", "HSV", "RGBX"}
_WIDE_MODES = {"I", "F", "I;16", "I;16L", "I;16B", "I;16N"}


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
        The RGB pixels that were encoded (for quality reports).
    method : str
        ``"kmeans"``, ``"gmm"`` or ``"palette"`` (a "P" image stored as is).
    n_iter : int or None
        Quantizer iterations run.
    inertia : float or None
        Mean squared RGB distance between each pixel and its palette colour.
    n_colors : int
        Distinct colours in the source.
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

    @property
    def lossless(self) -> bool:
        """True when the decoded image equals the source exactly."""
        return bool(np.array_equal(self.palette[self.labels], self.source))

    def psnr(self) -> float:
        """PSNR of the decoded image against the source, in dB."""
        if self.inertia is not None:
            # The quantizer's inertia is already the exact per-pixel squared error
            # against the uint8 palette: no need to rebuild the decoded image.
            return metrics.psnr_from_mse(self.inertia / 3)
        return metrics.psnr(self.source, self.palette[self.labels])

    def size_report(self) -> metrics.SizeReport:
        """Size accounting of this file (see :func:`kpal.metrics.size_report`)."""
        return metrics.size_report(self.header.k, self.header.n_pixels, len(self.data),
                                   payload_bytes=self.header.payload_length, labels=self.labels)


# ---------------------------------------------------------------- input rules
def open_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file with Pillow and load it, rejecting multi-frame files.

    Raises
    ------
    OSError
        Missing, unreadable, not an image, or truncated.
    KpalError
        More than one frame.
    """
    with Image.open(path) as im:
        _reject_multiframe(im, str(path))
        im.load()
        return im.copy()  # keeps info (e.g. transparency) and the palette


def _reject_multiframe(im: Image.Image, name: str) -> None:
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        msg = f"{name}: has {frames} frames; a .kpal file holds one image (extract a frame first)"
        raise KpalError(msg)


def to_rgb(image: ImageSource) -> tuple[np.ndarray, Image.Image | None]:
    """Apply the mode rules: return RGB pixels and, for a "P" image, the image itself.

    Parameters
    ----------
    image : PIL.Image.Image, path or ndarray
        An ndarray must be uint8 of shape (H, W, 3), (H, W, 4) or (H, W).

    Returns
    -------
    rgb : ndarray of shape (height, width, 3), uint8
    p_image : PIL.Image.Image or None
        The "P" image when the input had a palette (mode P, or PA with no
        transparency), so its palette can be kept.
    """
    if isinstance(image, np.ndarray):
        if image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8 and image.size:
            return np.ascontiguousarray(image), None  # already RGB: no copies through Pillow
        image = _array_to_image(image)
    elif not isinstance(image, Image.Image):
        image = open_image(image)
    else:
        _reject_multiframe(image, "image")
    if image.width == 0 or image.height == 0:
        msg = f"image is {image.width}x{image.height}: nothing to encode"
        raise KpalError(msg)
    mode = image.mode
    if mode in _ALPHA_MODES:
        image = _drop_opaque_alpha(image)
        mode = image.mode
    if mode == "P":
        _reject_transparent_index(image)
        return np.asarray(image.convert("RGB")), image
    if mode == "RGB":
        return np.asarray(image), None
    if mode in _GREY_MODES or mode in _CONVERTED_MODES:
        return np.asarray(image.convert("RGB")), None
    if mode in _WIDE_MODES:
        msg = (f"mode {mode} (samples wider than 8 bits) is not supported: convert to "
               f"8 bits first, e.g. im.convert('L') or scale the values yourself")
        raise KpalError(msg)
    msg = f"mode {mode} is not supported (use RGB, L, P or an opaque RGBA/LA)"
    raise KpalError(msg)


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


def _drop_opaque_alpha(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBa", "La"):  # premultiplied: convert to straight alpha first
        image = image.convert("RGBA" if image.mode == "RGBa" else "LA")
    alpha = image.getchannel("A")
    low, _ = alpha.getextrema()
    if low < 255:
        msg = (f"mode {image.mode} with transparent pixels is not supported yet (.kpal has "
               f"no alpha channel); flatten it first, e.g. im.convert('RGB')")
        raise KpalError(msg)
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
            msg = (f"mode P with a transparent colour (index {transparency}) is not supported "
                   f"yet (.kpal has no alpha channel); flatten it first, e.g. im.convert('RGB')")
            raise KpalError(msg)
    elif transparency is not None:  # bytes: one alpha value per palette entry
        alphas = np.frombuffer(bytes(transparency), np.uint8)
        used = np.unique(np.asarray(image))
        used = used[used < alphas.size]
        if used.size and (alphas[used] < 255).any():
            msg = ("mode P with transparent palette entries is not supported yet "
                   "(.kpal has no alpha channel); flatten it first, e.g. im.convert('RGB')")
            raise KpalError(msg)


def _own_palette(p_image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """Palette truncated to the highest index used, and the indices unchanged."""
    labels = np.asarray(p_image)
    k = int(labels.max()) + 1
    flat = p_image.getpalette("RGB") or []
    palette = np.zeros((k, 3), np.uint8)
    entries = np.asarray(flat[: 3 * k], np.uint8).reshape(-1, 3)
    palette[: len(entries)] = entries
    return palette, labels


# ---------------------------------------------------------------- encode
def encode_image(
    image: ImageSource,
    k: int | None = None,
    *,
    method: str = "kmeans",
    init: str = "k-means++",
    seed: int = 0,
    max_iter: int | None = None,
    tol: float | None = None,
    sample: float | None = None,
    coding: str = "fixed",
    entropy: bool = False,
) -> Encoded:
    """Encode an image and return the file bytes with what went into them.

    Takes the same parameters as :func:`encode`.

    Returns
    -------
    Encoded
    """
    if entropy:
        coding = "entropy"
    chosen = codings.get(coding)
    if k is not None and not (isinstance(k, (int, np.integer)) and 1 <= k <= 256):
        msg = f"k={k!r} must be an integer between 1 and 256"
        raise KpalError(msg)
    rgb, p_image = to_rgb(image)
    height, width = rgb.shape[:2]
    pixels = rgb.reshape(-1, 3)
    n_iter = inertia = None
    if p_image is not None:
        palette, labels = _own_palette(p_image)
        used = np.flatnonzero(np.bincount(labels.reshape(-1), minlength=len(palette)))
    if p_image is not None and (k is None or used.size <= k):
        used_method = "palette"
        # Distinct colours of the image: those of the palette entries in use.
        n_colors = len(np.unique(pack_rgb(palette[used])))
    else:
        result = quantize(pixels, DEFAULT_K if k is None else int(k), method=method,
                          init=init, seed=seed, max_iter=max_iter, tol=tol, sample=sample)
        palette, labels = result.palette, result.labels.reshape(height, width)
        used_method, n_iter, inertia, n_colors = (result.method, result.n_iter, result.inertia,
                                                  result.n_colors)
    k_stored = len(palette)
    payload = chosen.encode(labels, k_stored)
    header = container.Header.for_image(coding=chosen.id, k=k_stored, width=width,
                                        height=height, payload_length=len(payload))
    data = container.write(header, palette, payload)
    return Encoded(data=data, header=header, palette=palette, labels=labels, source=rgb,
                   method=used_method, n_iter=n_iter, inertia=inertia, n_colors=n_colors)


def encode(image: ImageSource, k: int | None = None, **options) -> bytes:
    """Encode an image as a ``.kpal`` file.

    Parameters
    ----------
    image : PIL.Image.Image, str, PathLike or ndarray
        The image, a path to any file Pillow reads, or a uint8 array of shape
        (height, width, 3). Modes follow the rules in this module's docstring.
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
    entropy : bool, default False
        Shorthand for ``coding="entropy"``.

    Returns
    -------
    bytes
        The complete file.

    Examples
    --------
    >>> import numpy as np, kpal
    >>> data = kpal.encode(np.zeros((2, 3, 3), np.uint8), k=4)
    >>> len(data)  # 26-byte header + 1 colour + empty payload + 4-byte CRC
    33
    """
    return encode_image(image, k, **options).data


def save(image: ImageSource, path: str | os.PathLike, k: int | None = None, *,
         force: bool = False, **options) -> Encoded:
    """Encode ``image`` and write it to ``path`` atomically.

    The file appears complete or not at all; an existing ``path`` is replaced
    only with ``force=True``. Other parameters are those of :func:`encode`.

    Returns
    -------
    Encoded
    """
    from kpal.io import write_atomic

    encoded = encode_image(image, k, **options)
    write_atomic(path, encoded.data, force=force)
    return encoded


# ---------------------------------------------------------------- decode
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
    # Same order of checks as the Pillow plugin, so both report the same problem.
    header = container.read_header(data)
    chosen = codings.get(header.coding)
    container.check_payload_length(
        header, chosen.payload_size(header.k, header.width, header.height))
    header, palette, payload = container.read(data)
    check_decompression_bomb(header)
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
    what = (f"image size ({n} pixels) exceeds limit of {{}} pixels, could be a "
            "decompression bomb DOS attack")
    if n > 2 * limit:
        raise Image.DecompressionBombError(what.format(2 * limit))
    if n > limit:
        warnings.warn(what.format(limit), Image.DecompressionBombWarning, stacklevel=3)


def decode(source: bytes | bytearray | memoryview | str | os.PathLike) -> Image.Image:
    """Decode a ``.kpal`` file into a Pillow "P" image.

    The result is what ``Image.open(path)`` gives after ``load()``: mode "P",
    the stored palette, ``format == "KPAL"`` and ``info`` with ``k``,
    ``bits_per_index``, ``coding`` and ``version``.

    Parameters
    ----------
    source : bytes or path
        The file's bytes, or its path.

    Raises
    ------
    FormatError
        Not a .kpal file, or any invalid field, length, checksum or payload.
    OSError
        The path cannot be read.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        fp = io.BytesIO(bytes(source))
    else:
        fp = open(Path(source), "rb")  # noqa: SIM115 - closed by the with below
    with fp:
        container.read_header(fp.read(container.HEADER_SIZE))
        fp.seek(0)
        im = Image.open(fp, formats=["KPAL"])
        im.load()
    return im


def inspect(data: bytes) -> dict:
    """Describe a file for ``kpal info``: header, palette, sizes and checksum status.

    Unlike :func:`decode` it reports a bad checksum or payload instead of
    raising, so a damaged file can still be looked at; only a header that
    cannot be parsed raises.

    Returns
    -------
    dict
        ``header`` (fields), ``coding`` (name), ``palette`` (``#rrggbb``
        strings, as many as the file holds), ``size`` (see
        :class:`kpal.metrics.SizeReport`), ``checksum`` ("ok", "mismatch" or
        "not checked") and ``problem`` (None or the error message).

    Raises
    ------
    FormatError
        The header is not valid.
    PIL.Image.DecompressionBombError
        The header claims more than twice ``Image.MAX_IMAGE_PIXELS`` pixels
        (checked before decoding, see :func:`check_decompression_bomb`).
    """
    header = container.read_header(data)
    start = container.HEADER_SIZE
    raw_palette = bytes(data[start : start + header.palette_size])
    labels = None
    checksum, problem = "ok", None
    try:  # in the order decode checks them, so both name the same problem
        container.check_payload_length(header, codings.get(header.coding).payload_size(
            header.k, header.width, header.height))
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
    size = metrics.size_report(header.k, header.n_pixels, len(data),
                               payload_bytes=header.payload_length, labels=labels)
    colours = [raw_palette[i : i + 3].hex() for i in range(0, len(raw_palette) - 2, 3)]
    return {
        "header": asdict(header),
        "coding": container.KNOWN_CODINGS[header.coding],
        "palette": ["#" + c for c in colours],
        "size": size.as_dict(),
        "checksum": checksum,
        "problem": problem,
    }
