"""The byte layout of spec/kpal.md: header, palette, payload and checksum.

This module mirrors the specification section by section; a field added to
one is added to the other in the same change. It knows nothing about how the
payload is coded beyond the length a coding implies (``kpal.coding``).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from kpal.errors import ChecksumError, FormatError, LimitError

__all__ = [
    "MAGIC",
    "VERSION",
    "HEADER_SIZE",
    "CHECKSUM_SIZE",
    "OVERHEAD",
    "MAX_SIDE",
    "MAX_PIXELS",
    "Header",
    "read_header",
    "write",
    "read",
]

# §2 Header ---------------------------------------------------------------
#: Signature, like PNG's: high bit, "KPAL", CR-LF, DOS EOF, LF.
MAGIC = b"\x89KPAL\r\n\x1a\n"
#: The format version this module reads and writes.
VERSION = 1
#: magic, version u8, coding u8, bits_per_index u8, k u16, width u32, height u32,
#: payload_length u32 — all big-endian.
_HEADER = struct.Struct(">9sBBBHIII")
HEADER_SIZE = _HEADER.size  # 26
#: §4: CRC-32 of everything before it, u32 big-endian.
CHECKSUM_SIZE = 4
#: Bytes that are neither palette nor payload.
OVERHEAD = HEADER_SIZE + CHECKSUM_SIZE  # 30

# §2 Limits ------------------------------------------------------------------
MAX_K = 256
#: No real image is wider or taller.
MAX_SIDE = (1 << 24) - 1
#: Decoding needs 4 bytes per pixel (index + RGB): 4 GiB at this limit.
MAX_PIXELS = 1 << 30
#: Coding ids this version knows; kept in step with kpal.coding's registry
#: (checked by the tests) so that this module does not import upwards.
KNOWN_CODINGS = {0: "fixed", 1: "radix", 2: "entropy"}


def bits_for(k: int) -> int:
    """``ceil(log2 k)`` for k >= 2, 0 for k = 1 (the ``bits_per_index`` field)."""
    return (k - 1).bit_length()


@dataclass(frozen=True)
class Header:
    """The 26-byte header of a ``.kpal`` file (spec/kpal.md §2).

    Construct it with :meth:`for_image` when writing and :meth:`unpack` when
    reading; both validate every field.
    """

    coding: int
    k: int
    width: int
    height: int
    payload_length: int
    bits_per_index: int
    version: int = VERSION

    @property
    def n_pixels(self) -> int:
        return self.width * self.height

    @property
    def palette_size(self) -> int:
        """Palette length in bytes, ``3*k``."""
        return 3 * self.k

    @property
    def file_size(self) -> int:
        """Total file length the header implies."""
        return OVERHEAD + self.palette_size + self.payload_length

    @classmethod
    def for_image(cls, *, coding: int, k: int, width: int, height: int,
                  payload_length: int) -> Header:
        """Build a validated header for writing."""
        header = cls(coding=coding, k=k, width=width, height=height,
                     payload_length=payload_length, bits_per_index=bits_for(k))
        header.validate()
        return header

    def pack(self) -> bytes:
        """The header's 26 bytes."""
        return _HEADER.pack(MAGIC, self.version, self.coding, self.bits_per_index, self.k,
                            self.width, self.height, self.payload_length)

    @classmethod
    def unpack(cls, data: bytes) -> Header:
        """Parse and validate the first 26 bytes of a file.

        Raises
        ------
        FormatError
            Wrong magic ("not a .kpal file"), a truncated header, or any field
            value the specification does not allow (the message names the
            field and the value).
        """
        if len(data) < len(MAGIC) or not data.startswith(MAGIC):
            msg = f"not a .kpal file (magic is {bytes(data[:len(MAGIC)])!r}, expected {MAGIC!r})"
            raise FormatError(msg)
        if len(data) < HEADER_SIZE:
            msg = f"truncated header: {len(data)} of {HEADER_SIZE} bytes"
            raise FormatError(msg)
        _, version, coding, b, k, width, height, payload_length = _HEADER.unpack_from(data)
        header = cls(coding=coding, k=k, width=width, height=height,
                     payload_length=payload_length, bits_per_index=b, version=version)
        header.validate()
        return header

    def validate(self) -> None:
        """Check every field against spec/kpal.md §2 and §8 (no allocation)."""
        if self.version != VERSION:
            msg = f"unsupported version {self.version} (this reader knows version {VERSION})"
            raise FormatError(msg)
        if self.coding not in KNOWN_CODINGS:
            known = ", ".join(f"{i} ({n})" for i, n in KNOWN_CODINGS.items())
            msg = f"unknown payload coding {self.coding} (known: {known})"
            raise FormatError(msg)
        if not 1 <= self.k <= MAX_K:
            msg = f"k={self.k} is outside 1..{MAX_K}"
            raise LimitError(msg)
        if self.bits_per_index != bits_for(self.k):
            msg = (f"bits_per_index={self.bits_per_index} does not match k={self.k} "
                   f"(expected {bits_for(self.k)})")
            raise FormatError(msg)
        for name, value in (("width", self.width), ("height", self.height)):
            if not 1 <= value <= MAX_SIDE:
                msg = f"{name}={value} is outside 1..{MAX_SIDE}"
                raise LimitError(msg)
        # Division form, as the spec says, so a C port cannot overflow here.
        if self.height > MAX_PIXELS // self.width:
            msg = f"{self.width}x{self.height} is more than {MAX_PIXELS} pixels"
            raise LimitError(msg)


def read_header(data: bytes) -> Header:
    """Parse and validate the header at the start of ``data`` (see :meth:`Header.unpack`)."""
    return Header.unpack(data[:HEADER_SIZE])


def check_payload_length(header: Header, expected: int | None) -> None:
    """Reject a header whose payload length differs from what its coding implies."""
    if expected is not None and header.payload_length != expected:
        msg = (f"payload_length={header.payload_length} but a {header.width}x{header.height} "
               f"image at k={header.k} with coding {header.coding} needs {expected}")
        raise FormatError(msg)


def check_file_length(header: Header, actual: int) -> None:
    """Reject a file whose length is not what the header implies (truncated or extended)."""
    if actual != header.file_size:
        what = "is truncated" if actual < header.file_size else "has trailing data"
        msg = f"file {what}: {actual} bytes, the header implies {header.file_size}"
        raise FormatError(msg)


def write(header: Header, palette: np.ndarray, payload: bytes) -> bytes:
    """Assemble a complete file: header, palette, payload and checksum.

    Parameters
    ----------
    header : Header
        A validated header whose ``k`` and ``payload_length`` match the others.
    palette : ndarray of shape (k, 3), uint8
    payload : bytes

    Returns
    -------
    bytes
    """
    palette = np.ascontiguousarray(palette, dtype=np.uint8)
    if palette.shape != (header.k, 3):
        msg = f"palette has shape {palette.shape}, expected ({header.k}, 3)"
        raise ValueError(msg)
    if len(payload) != header.payload_length:
        msg = f"payload is {len(payload)} bytes, header says {header.payload_length}"
        raise ValueError(msg)
    body = header.pack() + palette.tobytes() + payload
    return body + struct.pack(">I", zlib.crc32(body))


def verify_checksum(body_crc: int, stored: bytes) -> None:
    """Compare a computed CRC-32 with the 4 stored bytes."""
    (expected,) = struct.unpack(">I", stored)
    if body_crc != expected:
        msg = f"checksum mismatch: stored 0x{expected:08x}, computed 0x{body_crc:08x}"
        raise ChecksumError(msg)


def read(data: bytes) -> tuple[Header, np.ndarray, memoryview]:
    """Split and verify a whole file held in memory.

    Validates the header, the file length and the checksum, in that order.
    The payload itself is checked by its coding's decoder.

    Returns
    -------
    header : Header
    palette : ndarray of shape (k, 3), uint8
    payload : memoryview
    """
    header = read_header(data)
    check_file_length(header, len(data))
    view = memoryview(data)
    body_end = len(data) - CHECKSUM_SIZE
    verify_checksum(zlib.crc32(view[:body_end]), bytes(view[body_end:]))
    palette = np.frombuffer(view[HEADER_SIZE:HEADER_SIZE + header.palette_size],
                            dtype=np.uint8).reshape(header.k, 3)
    payload = view[HEADER_SIZE + header.palette_size:body_end]
    return header, palette, payload
