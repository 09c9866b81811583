"""Image quality and size accounting.

The size accounting is the project's yardstick: a palette image of ``N`` pixels
and ``k`` colours needs ``k*24`` bits of palette plus ``N*b`` bits of indices
with ``b = ceil(log2 k)`` (the *fixed-width bound*). Two tighter bounds are
reported beside it: ``N*log2(k)`` bits (what exact radix packing approaches) and
``N*H`` bits, ``H`` being the order-0 entropy of the labels. ``N*H`` is the
least a coder that sees each index alone (no context) can reach; a coder with a
context model, such as coding 2, goes below it on real images, so it is a
reference point, not a bound.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["mse", "psnr", "psnr_from_mse", "ssimulacra2", "entropy_bits", "SizeReport",
           "size_report", "why_larger"]

_PEAK = 255.0


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error between two uint8 arrays of the same shape, over every channel.

    Examples
    --------
    >>> import numpy as np
    >>> mse(np.array([0, 0], np.uint8), np.array([3, 1], np.uint8))
    5.0
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        msg = f"shapes differ: {a.shape} and {b.shape}"
        raise ValueError(msg)
    if a.size == 0:
        msg = "cannot compare empty arrays"
        raise ValueError(msg)
    total = 0.0
    flat_a = a.reshape(-1)
    flat_b = b.reshape(-1)
    step = 1 << 22  # bounded temporaries on very large images
    for i in range(0, flat_a.size, step):
        # int64: a sum of 2**22 squares up to 255**2 overflows int32.
        d = flat_a[i : i + step].astype(np.int64) - flat_b[i : i + step].astype(np.int64)
        total += float(np.dot(d, d))
    return total / a.size


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 images (``inf`` when equal).

    ``PSNR = 10 * log10(255**2 / MSE)``, the MSE taken over all channels.
    """
    return psnr_from_mse(mse(a, b))


def ssimulacra2(original: np.ndarray, decoded: np.ndarray) -> float | None:
    """SSIMULACRA2 of ``decoded`` against ``original``, or ``None`` without the package.

    SSIMULACRA2 (the JPEG XL project's perceptual metric) scores how visible
    the difference is: 100 for identical images, about 90 for visually
    lossless, 50 to 70 for a clearly visible but acceptable loss, below 0 for
    a badly damaged image. It is computed by the optional ``ssimulacra2``
    package (``pip install "kpal[metrics]"``), a numpy implementation: about
    3 s and 0.5 GB per megapixel.

    Parameters
    ----------
    original, decoded : ndarray of shape (height, width, 3), uint8
        RGB images of the same shape, at least 8 x 8.

    Returns
    -------
    float or None
        The score; ``None`` when the ``ssimulacra2`` package is not installed.

    Raises
    ------
    ValueError
        When the shapes differ, are not (height, width, 3) uint8, or are
        smaller than 8 x 8 (the metric's smallest scale).
    """
    a, b = np.asarray(original), np.asarray(decoded)
    for name, image in (("original", a), ("decoded", b)):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            msg = (f"{name} must be a (height, width, 3) uint8 array, "
                   f"got {image.dtype} {image.shape}")
            raise ValueError(msg)
    if a.shape != b.shape:
        msg = f"shapes differ: {a.shape} and {b.shape}"
        raise ValueError(msg)
    if min(a.shape[:2]) < 8:
        msg = f"SSIMULACRA2 needs at least 8 x 8 pixels, got {a.shape[1]} x {a.shape[0]}"
        raise ValueError(msg)
    try:
        from ssimulacra2 import compute_ssimulacra2
    except ImportError:
        return None
    from PIL import Image

    def ppm(pixels: np.ndarray) -> io.BytesIO:
        # The package reads files; PPM is the cheapest lossless file to write.
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(pixels), "RGB").save(buffer, format="PPM")
        buffer.seek(0)
        return buffer

    return float(compute_ssimulacra2(ppm(a), ppm(b)))


def psnr_from_mse(err: float) -> float:
    """PSNR in dB for a mean squared error per channel value (``inf`` for 0)."""
    return math.inf if err == 0 else 10.0 * math.log10(_PEAK * _PEAK / err)


def entropy_bits(labels: np.ndarray, k: int | None = None) -> float:
    """Order-0 entropy of ``labels`` times their count: the ``N*H`` bound in bits."""
    flat = np.asarray(labels).reshape(-1)
    counts = np.zeros(max(k or 0, 1), np.int64)
    step = 1 << 22  # bincount widens to 8 bytes per label: count in bounded chunks
    for i in range(0, flat.size, step):
        part = np.bincount(flat[i : i + step], minlength=counts.size)
        if part.size > counts.size:
            counts = np.concatenate([counts, np.zeros(part.size - counts.size, np.int64)])
        counts[: part.size] += part
    counts = counts[counts > 0].astype(np.float64)
    n = counts.sum()
    if n == 0:
        return 0.0
    return float(-(counts * np.log2(counts / n)).sum())


@dataclass(frozen=True)
class SizeReport:
    """Where the bytes of one encoded image go, against the theoretical bounds.

    Attributes
    ----------
    k, n_pixels, bits_per_index : int
        Palette size, pixel count and ``b = ceil(log2 k)``.
    palette_bits, index_bits, theoretical_bits : int
        ``k*24`` (``k*32`` with RGBA entries), ``N*b`` and their sum (the
        fixed-width bound).
    theoretical_bytes : int
        ``ceil(theoretical_bits / 8)``.
    log2_bound_bits : float
        ``k*24 + N*log2(k)``: the least any coding that stores each index
        alone, without context, in whole symbols of ``log2(k)`` bits can reach.
    order0_entropy_bits : float or None
        ``k*24 + N*H(labels)`` when the labels were given, ``H`` the order-0
        entropy of the labels. Context-modelling codings can go below it.
    on_disk_bytes : int
        The real file size.
    overhead_bytes : int or None
        File bytes that are neither palette nor payload (header and checksum).
    raw_bytes : int
        ``3*N``, the image as 24-bit RGB (``4*N``, 32-bit RGBA, with alpha).
    coding : str or None
        The file's payload coding, when known.
    payload_bytes : int or None
        The length of the index payload, when known.
    entry_bits : int
        Bits per palette entry: 24 (RGB) or 32 (RGBA).
    """

    k: int
    n_pixels: int
    bits_per_index: int
    palette_bits: int
    index_bits: int
    theoretical_bits: int
    theoretical_bytes: int
    log2_bound_bits: float
    order0_entropy_bits: float | None
    on_disk_bytes: int
    overhead_bytes: int | None
    raw_bytes: int
    coding: str | None = None
    payload_bytes: int | None = None
    entry_bits: int = 24

    @property
    def formula(self) -> str:
        """The fixed-width bound written out, e.g. ``16×24 + 16384×4 = 65920 bits``."""
        return (
            f"{self.k}×{self.entry_bits} + {self.n_pixels}×{self.bits_per_index}"
            f" = {self.theoretical_bits} bits"
        )

    @property
    def ratio(self) -> float:
        """Compression ratio against the raw image (``raw_bytes / on_disk_bytes``)."""
        return self.raw_bytes / self.on_disk_bytes

    @property
    def bits_per_pixel(self) -> float:
        """On-disk bits per pixel, everything included."""
        return self.on_disk_bytes * 8 / self.n_pixels

    def as_dict(self) -> dict:
        """All fields and derived figures as a JSON-ready dict."""
        out = asdict(self)
        out.update(formula=self.formula, ratio=self.ratio, bits_per_pixel=self.bits_per_pixel)
        return out


def size_report(
    k: int,
    n_pixels: int,
    on_disk_bytes: int,
    *,
    payload_bytes: int | None = None,
    labels: np.ndarray | None = None,
    coding: str | None = None,
    entry_bits: int = 24,
) -> SizeReport:
    """Account for an encoded image's size against the k·24 + N·b bound.

    Parameters
    ----------
    k : int
        Palette size stored in the file.
    n_pixels : int
        ``width * height``.
    on_disk_bytes : int
        The file's length.
    payload_bytes : int, optional
        Length of the index payload; with it the overhead (header and checksum)
        is reported.
    labels : ndarray, optional
        The palette indices; with them the order-0 entropy is reported.
    coding : str, optional
        The payload coding's name, kept for the report.
    entry_bits : {24, 32}, default 24
        Bits per palette entry: 32 for an RGBA palette (a version 2 file
        with alpha), which is then also compared with raw 32-bit RGBA.

    Examples
    --------
    >>> r = size_report(16, 16384, 8270, payload_bytes=8192)
    >>> r.formula, r.theoretical_bytes, r.overhead_bytes
    ('16×24 + 16384×4 = 65920 bits', 8240, 30)
    """
    b = (k - 1).bit_length()
    palette_bits = entry_bits * k
    index_bits = n_pixels * b
    total = palette_bits + index_bits
    return SizeReport(
        k=k,
        n_pixels=n_pixels,
        bits_per_index=b,
        palette_bits=palette_bits,
        index_bits=index_bits,
        theoretical_bits=total,
        theoretical_bytes=(total + 7) // 8,
        log2_bound_bits=palette_bits + n_pixels * math.log2(k),
        order0_entropy_bits=None if labels is None else palette_bits + entropy_bits(labels, k),
        on_disk_bytes=on_disk_bytes,
        overhead_bytes=(None if payload_bytes is None
                        else on_disk_bytes - entry_bits // 8 * k - payload_bytes),
        raw_bytes=entry_bits // 8 * n_pixels,
        coding=coding,
        payload_bytes=payload_bytes,
        entry_bits=entry_bits,
    )


def why_larger(metadata: bool = False) -> str:
    """Why a file is larger than its raw pixels: what it holds besides the indices.

    The one wording of ``kpal info``, the encode report and the figures
    (``metadata``: the file has metadata blocks, an ICC profile say).

    Examples
    --------
    >>> why_larger()
    'the palette and header outweigh what the indices save'
    """
    parts = "the palette, header and metadata" if metadata else "the palette and header"
    return f"{parts} outweigh what the indices save"
