"""The byte layout of spec/kpal.md: header, palette, metadata, payload and checksum.

This module mirrors the specification section by section; a field added to
one is added to the other in the same change. It knows nothing about how the
payload is coded beyond the length a coding implies (``kpal.coding``).

Two layouts exist (spec §1). Version 1: a 26-byte header, ``k`` RGB palette
entries, the payload and the checksum. Version 2 adds a 5-byte header
extension (``flags`` and ``metadata_length``), allows RGBA palette entries and
puts typed metadata blocks (an ICC profile) between the palette and the
payload. An opaque image without metadata is always written as version 1.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kpal.errors import ChecksumError, FormatError, LimitError, TruncatedError

__all__ = [
    "MAGIC",
    "VERSION",
    "VERSIONS",
    "HEADER_SIZE",
    "HEADER_SIZE_V2",
    "MAX_HEADER_SIZE",
    "CHECKSUM_SIZE",
    "OVERHEAD",
    "OVERHEAD_V2",
    "MAX_SIDE",
    "MAX_PIXELS",
    "check_size",
    "MAX_METADATA",
    "FLAG_ALPHA",
    "ICC_BLOCK",
    "Header",
    "header_size",
    "read_header",
    "pack_metadata",
    "parse_metadata",
    "write",
    "read",
    "read_parts",
]

# §2 Header ---------------------------------------------------------------
#: Signature, like PNG's: high bit, "KPAL", CR-LF, DOS EOF, LF.
MAGIC = b"\x89KPAL\r\n\x1a\n"
#: The base version, written for an opaque image without metadata (spec §2).
VERSION = 1
#: Version with RGBA palettes and metadata blocks (spec §2.1).
VERSION_2 = 2
#: Every version this module reads.
VERSIONS = (VERSION, VERSION_2)
#: magic, version u8, coding u8, bits_per_index u8, k u16, width u32, height u32,
#: payload_length u32 — all big-endian.
_HEADER = struct.Struct(">9sBBBHIII")
HEADER_SIZE = _HEADER.size  # 26, the version 1 header
#: §2.1: the version 2 extension, flags u8 and metadata_length u32, after the 26 bytes.
_EXTENSION = struct.Struct(">BI")
HEADER_SIZE_V2 = HEADER_SIZE + _EXTENSION.size  # 31
#: Read this many bytes to hold the header of any version.
MAX_HEADER_SIZE = HEADER_SIZE_V2
#: §4: CRC-32 of everything before it, u32 big-endian.
CHECKSUM_SIZE = 4
#: Bytes that are neither palette nor payload, version 1.
OVERHEAD = HEADER_SIZE + CHECKSUM_SIZE  # 30
#: The same in version 2, before metadata: the documented constant of the RGBA formula.
OVERHEAD_V2 = HEADER_SIZE_V2 + CHECKSUM_SIZE  # 35

#: ``flags`` bit 0: palette entries are R, G, B, A (4 bytes) instead of R, G, B.
FLAG_ALPHA = 0x01
#: The flag bits this version defines; any other bit set is rejected.
KNOWN_FLAGS = FLAG_ALPHA

# §2 Limits ------------------------------------------------------------------
MAX_K = 256
#: No real image is wider or taller.
MAX_SIDE = (1 << 24) - 1
#: Decoding needs 4 bytes per pixel (index + RGB): 4 GiB at this limit.
MAX_PIXELS = 1 << 30
#: §2.1: the metadata is held in memory whole; the largest ICC profiles in use
#: are a few MiB, so 16 MiB is generous and still a bounded allocation.
MAX_METADATA = 1 << 24
#: Coding ids this version knows; kept in step with kpal.coding's registry
#: (checked by the tests) so that this module does not import upwards.
KNOWN_CODINGS = {0: "fixed", 1: "radix", 2: "entropy", 3: "context"}

# §3.2 Metadata blocks --------------------------------------------------------
#: type (4 ASCII letters) and length u32 BE of a block, before its data.
_BLOCK = struct.Struct(">4sI")
BLOCK_HEADER_SIZE = _BLOCK.size  # 8
#: An ICC profile (ICC.1), stored whole and uncompressed. Lower-case first
#: letter: a reader may skip it.
ICC_BLOCK = "iccp"
#: Block types this reader understands.
KNOWN_BLOCKS = (ICC_BLOCK,)
#: ICC.1 §7.2: a profile starts with a 128-byte header holding its size at 0,
#: its data colour space at 16 and the signature "acsp" at 36.
ICC_HEADER_SIZE = 128
ICC_SIGNATURE = b"acsp"
ICC_RGB = b"RGB "


def bits_for(k: int) -> int:
    """``ceil(log2 k)`` for k >= 2, 0 for k = 1 (the ``bits_per_index`` field)."""
    return (k - 1).bit_length()


def header_size(prefix: bytes) -> int:
    """The header length the version byte of ``prefix`` implies (26 or 31).

    Reads byte 9 only; an unknown version or a prefix too short to hold it
    gives 26, and the header check then names the problem.
    """
    if len(prefix) > 9 and prefix[9] == VERSION_2:
        return HEADER_SIZE_V2
    return HEADER_SIZE


@dataclass(frozen=True)
class Header:
    """The header of a ``.kpal`` file (spec/kpal.md §2): 26 bytes, 31 in version 2.

    Construct it with :meth:`for_image` when writing and :meth:`unpack` when
    reading; both validate every field. ``flags`` and ``metadata_length`` are
    0 in version 1, which has no such fields.
    """

    coding: int
    k: int
    width: int
    height: int
    payload_length: int
    bits_per_index: int
    version: int = VERSION
    flags: int = 0
    metadata_length: int = 0

    @property
    def n_pixels(self) -> int:
        return self.width * self.height

    @property
    def alpha(self) -> bool:
        """Whether palette entries carry alpha (``flags`` bit 0)."""
        return bool(self.flags & FLAG_ALPHA)

    @property
    def channels(self) -> int:
        """Bytes per palette entry: 4 (RGBA) with alpha, else 3 (RGB)."""
        return 4 if self.alpha else 3

    @property
    def header_size(self) -> int:
        """Header length in bytes: 26 in version 1, 31 in version 2."""
        return HEADER_SIZE if self.version == VERSION else HEADER_SIZE_V2

    @property
    def palette_size(self) -> int:
        """Palette length in bytes, ``3*k`` (``4*k`` with alpha)."""
        return self.channels * self.k

    @property
    def metadata_offset(self) -> int:
        """Where the metadata blocks start (right after the palette)."""
        return self.header_size + self.palette_size

    @property
    def payload_offset(self) -> int:
        """Where the payload starts (after the metadata)."""
        return self.metadata_offset + self.metadata_length

    @property
    def file_size(self) -> int:
        """Total file length the header implies."""
        return self.payload_offset + self.payload_length + CHECKSUM_SIZE

    @classmethod
    def for_image(cls, *, coding: int, k: int, width: int, height: int,
                  payload_length: int, alpha: bool = False,
                  metadata_length: int = 0) -> Header:
        """Build a validated header for writing.

        Parameters
        ----------
        coding, k, width, height, payload_length : int
            The fields of spec §2.
        alpha : bool, default False
            The palette is RGBA, ``(k, 4)``.
        metadata_length : int, default 0
            ``len(pack_metadata(blocks))`` of the blocks given to :func:`write`.

        Returns
        -------
        Header
            Version 1 when ``alpha`` is false and there is no metadata (the
            layout of every file before version 2), else version 2.
        """
        v2 = alpha or metadata_length > 0
        header = cls(coding=coding, k=k, width=width, height=height,
                     payload_length=payload_length, bits_per_index=bits_for(k),
                     version=VERSION_2 if v2 else VERSION,
                     flags=FLAG_ALPHA if alpha else 0, metadata_length=metadata_length)
        header.validate()
        return header

    def pack(self) -> bytes:
        """The header's bytes (26 in version 1, 31 in version 2)."""
        base = _HEADER.pack(MAGIC, self.version, self.coding, self.bits_per_index, self.k,
                            self.width, self.height, self.payload_length)
        if self.version == VERSION:
            return base
        return base + _EXTENSION.pack(self.flags, self.metadata_length)

    @classmethod
    def unpack(cls, data: bytes) -> Header:
        """Parse and validate the header at the start of ``data``.

        Raises
        ------
        FormatError
            Wrong magic ("not a .kpal file"), a truncated header
            (:class:`~kpal.errors.TruncatedError`), or any field value the
            specification does not allow (the message names the field and the value).
        """
        if not data:
            msg = "not a .kpal file: the file is empty"
            raise FormatError(msg)
        if len(data) < len(MAGIC) or not data.startswith(MAGIC):
            msg = f"not a .kpal file (magic is {bytes(data[:len(MAGIC)])!r}, expected {MAGIC!r})"
            raise FormatError(msg)
        if len(data) < HEADER_SIZE:
            msg = f"truncated header: {len(data)} of {HEADER_SIZE} bytes"
            raise TruncatedError(msg)
        _, version, coding, b, k, width, height, payload_length = _HEADER.unpack_from(data)
        flags = metadata_length = 0
        if version == VERSION_2:
            if len(data) < HEADER_SIZE_V2:
                msg = f"truncated header: {len(data)} of {HEADER_SIZE_V2} bytes (version 2)"
                raise TruncatedError(msg)
            flags, metadata_length = _EXTENSION.unpack_from(data, HEADER_SIZE)
        header = cls(coding=coding, k=k, width=width, height=height,
                     payload_length=payload_length, bits_per_index=b, version=version,
                     flags=flags, metadata_length=metadata_length)
        header.validate()
        return header

    def validate(self) -> None:
        """Check every field against spec/kpal.md §2 and §8 (no allocation)."""
        if self.version not in VERSIONS:
            msg = (f"unsupported version {self.version} (this reader knows versions "
                   f"{VERSION} and {VERSION_2})")
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
        check_size(self.width, self.height)
        if self.version == VERSION:
            if self.flags or self.metadata_length:  # only reachable when writing
                msg = (f"version 1 has no flags or metadata (flags=0x{self.flags:02x}, "
                       f"metadata_length={self.metadata_length}); write version 2")
                raise FormatError(msg)
            return
        if self.flags & ~KNOWN_FLAGS:
            msg = (f"flags=0x{self.flags:02x} has reserved bits set (0x"
                   f"{self.flags & ~KNOWN_FLAGS & 0xFF:02x}); this reader knows bit 0 (alpha)")
            raise FormatError(msg)
        if not 0 <= self.metadata_length <= MAX_METADATA:
            msg = f"metadata_length={self.metadata_length} is over the limit of {MAX_METADATA}"
            raise LimitError(msg)


def check_size(width: int, height: int) -> None:
    """Raise :class:`LimitError` unless a ``width`` x ``height`` image fits the format (§2)."""
    for name, value in (("width", width), ("height", height)):
        if not 1 <= value <= MAX_SIDE:
            msg = f"{name}={value} is outside 1..{MAX_SIDE}"
            raise LimitError(msg)
    # Division form, as the spec says, so a C port cannot overflow here.
    if height > MAX_PIXELS // width:
        msg = f"{width}x{height} is more than {MAX_PIXELS} pixels"
        raise LimitError(msg)


def read_header(data: bytes) -> Header:
    """Parse and validate the header at the start of ``data`` (see :meth:`Header.unpack`)."""
    return Header.unpack(data[:header_size(data)])


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
        raise (TruncatedError if actual < header.file_size else FormatError)(msg)


# §3.2 Metadata --------------------------------------------------------------
Blocks = Mapping[str, bytes] | Sequence[tuple[str, bytes]]


def _block_type(name: str | bytes) -> bytes:
    raw = name.encode("ascii", "replace") if isinstance(name, str) else bytes(name)
    if len(raw) != 4 or not raw.isalpha() or not raw.isascii():
        msg = f"metadata block type {raw!r} is not four ASCII letters"
        raise FormatError(msg)
    return raw


def pack_metadata(blocks: Blocks) -> bytes:
    """The metadata area of a file: each block as type, length u32 BE and data.

    Parameters
    ----------
    blocks : mapping or sequence of (type, data)
        ``{"iccp": profile_bytes}``, in the order given. Types are four ASCII
        letters; an empty mapping gives ``b""`` (no metadata).

    Returns
    -------
    bytes
        What goes between the palette and the payload; its length is the
        header's ``metadata_length``.

    Examples
    --------
    >>> pack_metadata({"xmpl": b"hi"}).hex(" ")
    '78 6d 70 6c 00 00 00 02 68 69'
    """
    items = blocks.items() if isinstance(blocks, Mapping) else blocks
    out = bytearray()
    for name, data in items:
        out += _BLOCK.pack(_block_type(name), len(data)) + bytes(data)
    return bytes(out)


def _check_icc(data: bytes, where: int) -> None:
    if len(data) < ICC_HEADER_SIZE:
        msg = (f"iccp block at byte {where} holds {len(data)} bytes, less than an ICC "
               f"profile header ({ICC_HEADER_SIZE})")
        raise FormatError(msg)
    (size,) = struct.unpack_from(">I", data)
    if size != len(data):
        msg = (f"iccp block at byte {where}: the profile says {size} bytes, the block "
               f"holds {len(data)}")
        raise FormatError(msg)
    if data[36:40] != ICC_SIGNATURE:
        msg = (f"iccp block at byte {where}: no ICC signature {ICC_SIGNATURE!r} at offset 36 "
               f"(found {bytes(data[36:40])!r})")
        raise FormatError(msg)
    if data[16:20] != ICC_RGB:
        msg = (f"iccp block at byte {where}: the profile's colour space is "
               f"{bytes(data[16:20])!r}, a palette needs {ICC_RGB!r}")
        raise FormatError(msg)


def parse_metadata(data: bytes, offset: int = 0) -> list[tuple[str, bytes]]:
    """Split and check the metadata area (spec §3.2).

    Parameters
    ----------
    data : bytes
        Exactly ``metadata_length`` bytes.
    offset : int
        Where they start in the file, for the messages.

    Returns
    -------
    list of (type, data)
        Every block in file order, the ones this reader does not know
        included (a reader may skip those).

    Raises
    ------
    FormatError
        A block that does not fit, a type that is not four letters, a block
        readers must understand that this one does not know, a second
        ``iccp`` block, or an ``iccp`` block that is not an RGB ICC profile.
    """
    blocks: list[tuple[str, bytes]] = []
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        where = offset + pos
        left = len(view) - pos
        if left < BLOCK_HEADER_SIZE:
            msg = (f"metadata is truncated at byte {where}: {left} bytes left, a block needs "
                   f"{BLOCK_HEADER_SIZE} for its type and length")
            raise FormatError(msg)
        raw, length = _BLOCK.unpack_from(view, pos)
        name = _block_type(raw).decode("ascii")
        if length > left - BLOCK_HEADER_SIZE:
            msg = (f"metadata block {name!r} at byte {where} claims length={length}, only "
                   f"{left - BLOCK_HEADER_SIZE} bytes remain in metadata_length={len(view)}")
            raise FormatError(msg)
        if name not in KNOWN_BLOCKS and name[0].isupper():
            msg = (f"unknown metadata block {name!r} at byte {where}: an upper-case first "
                   f"letter means readers must understand it")
            raise FormatError(msg)
        body = bytes(view[pos + BLOCK_HEADER_SIZE : pos + BLOCK_HEADER_SIZE + length])
        if name == ICC_BLOCK:
            if any(n == ICC_BLOCK for n, _ in blocks):
                msg = f"second iccp block at byte {where} (a file holds at most one profile)"
                raise FormatError(msg)
            _check_icc(body, where)
        blocks.append((name, body))
        pos += BLOCK_HEADER_SIZE + length
    return blocks


# §1 Whole files -------------------------------------------------------------
def write(header: Header, palette: np.ndarray, payload: bytes, *,
          metadata: Blocks = ()) -> bytes:
    """Assemble a complete file: header, palette, metadata, payload and checksum.

    Parameters
    ----------
    header : Header
        A validated header (:meth:`Header.for_image`) whose ``k``, alpha,
        ``metadata_length`` and ``payload_length`` match the others.
    palette : ndarray of shape (k, 3) or (k, 4), uint8
        RGB, or RGBA when ``header.alpha`` (then at least one entry must
        have alpha below 255: an opaque palette is written as RGB).
    payload : bytes
    metadata : mapping or sequence of (type, data), optional
        Metadata blocks, e.g. ``{"iccp": icc_profile}`` (see
        :func:`pack_metadata`); checked as a reader would check them.

    Returns
    -------
    bytes

    Examples
    --------
    >>> import numpy as np
    >>> palette = np.array([[0, 0, 0, 0], [255, 0, 0, 255]], np.uint8)
    >>> header = Header.for_image(coding=0, k=2, width=8, height=1, payload_length=1,
    ...                           alpha=True)
    >>> len(write(header, palette, b"\\x0f"))  # ceil((2*32 + 8*1) / 8) + 35
    44
    """
    palette = np.ascontiguousarray(palette, dtype=np.uint8)
    if palette.shape != (header.k, header.channels):
        msg = f"palette has shape {palette.shape}, expected ({header.k}, {header.channels})"
        raise ValueError(msg)
    if header.alpha and bool(np.all(palette[:, 3] == 255)):
        msg = ("every palette entry has alpha 255: write an opaque palette as (k, 3) "
               "with alpha=False (version 1)")
        raise ValueError(msg)
    if len(payload) != header.payload_length:
        msg = f"payload is {len(payload)} bytes, header says {header.payload_length}"
        raise ValueError(msg)
    meta = pack_metadata(metadata)
    if len(meta) != header.metadata_length:
        msg = f"metadata is {len(meta)} bytes, header says {header.metadata_length}"
        raise ValueError(msg)
    parse_metadata(meta, header.metadata_offset)  # write nothing a reader would refuse
    head = header.pack() + palette.tobytes() + meta
    # One copy of the payload (into the result), however large.
    crc = zlib.crc32(payload, zlib.crc32(head))
    return b"".join((head, payload, struct.pack(">I", crc)))


def verify_checksum(body_crc: int, stored: bytes) -> None:
    """Compare a computed CRC-32 with the 4 stored bytes."""
    (expected,) = struct.unpack(">I", stored)
    if body_crc != expected:
        msg = f"checksum mismatch: stored 0x{expected:08x}, computed 0x{body_crc:08x}"
        raise ChecksumError(msg)


def read_parts(data: bytes) -> tuple[Header, np.ndarray, list[tuple[str, bytes]], memoryview]:
    """Split and verify a whole file held in memory.

    Validates the header, the file length, the metadata blocks and the
    checksum, in that order. The payload itself is checked by its coding's
    decoder.

    Returns
    -------
    header : Header
    palette : ndarray of shape (k, 3), or (k, 4) when ``header.alpha``, uint8
    metadata : list of (type, data)
        The metadata blocks (:func:`parse_metadata`); empty in version 1.
    payload : memoryview
    """
    header = read_header(data)
    check_file_length(header, len(data))
    view = memoryview(data)
    metadata = parse_metadata(view[header.metadata_offset : header.payload_offset],
                              header.metadata_offset)
    body_end = len(data) - CHECKSUM_SIZE
    verify_checksum(zlib.crc32(view[:body_end]), bytes(view[body_end:]))
    palette = np.frombuffer(view[header.header_size : header.metadata_offset],
                            dtype=np.uint8).reshape(header.k, header.channels)
    payload = view[header.payload_offset : body_end]
    return header, palette, metadata, payload


def read(data: bytes) -> tuple[Header, np.ndarray, memoryview]:
    """Split and verify a whole file held in memory (:func:`read_parts` without metadata).

    Returns
    -------
    header : Header
    palette : ndarray of shape (k, 3), or (k, 4) when ``header.alpha``, uint8
    payload : memoryview
    """
    header, palette, _, payload = read_parts(data)
    return header, palette, payload
