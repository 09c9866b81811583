"""Pillow plugin: ``Image.open("x.kpal")`` and ``im.save("x.kpal", colors=16)``.

Opening reads and checks only the header and palette; the payload is read,
checksummed and decoded on ``load()`` by :class:`KpalDecoder`, a
``PyDecoder`` because Pillow's raw decoder only unpacks 1, 2, 4 and 8-bit
indices with byte-aligned rows, and ``.kpal`` packs any width 0..8 without
row padding.

A version 2 file (spec/kpal.md §2.1) with an RGBA palette opens as "P" with a
palette of mode "RGBA", as Pillow's PNG reader gives a palette image with
alpha, so ``convert("RGBA")`` gives the pixels back; when exactly one entry is
transparent and every other opaque, ``info["transparency"]`` is its index as
well. An ``iccp`` metadata block becomes ``info["icc_profile"]``; metadata
blocks are read and checked in ``_open``, before any pixel.

Save options (``im.save(path, format="KPAL", **options)``) are the fields of
:class:`kpal.options.EncodeOptions` (``k``, ``method``, ``init``, ``seed``,
``max_iter``, ``tol``, ``sample``, ``coding``), with ``colors`` accepted for
``k`` as in Pillow's ``Image.quantize(colors=)``; see :func:`kpal.encode`. An
unknown keyword is an error naming it, though Pillow itself passes unknown
keywords to every plugin silently, so ``colours=8`` never quietly gives the
default 16 colours; only :data:`GENERIC_KEYWORDS` (``dpi``, which matplotlib
always passes, and other formats' compression settings) are ignored. Note
that ``quality`` is kpal's target in dB of PSNR (``quality=40`` or ``(35, 40)``),
not the 0-100 scale of JPEG and WebP. A multi-frame image (an animation, a multi-picture JPEG)
saves its current frame, as Pillow's PNG writer does; ``save_all=True`` with
more than one frame in all is an error, a ``.kpal`` file holding one image.

``PIL.ImageFile.Parser`` works too, fed a file piece by piece (as web
frameworks learn an upload's size): while the file is shorter than its header
says, opening raises :class:`kpal.errors.TruncatedError`, an ``OSError`` as
well, so the Parser waits for more.

``verify()`` checks the payload's length and the checksum without decoding
the pixels, raising :class:`kpal.errors.ChecksumError` (a ``FormatError``,
hence a ``ValueError``) as Pillow's PNG plugin raises on a bad CRC.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import zlib
from typing import IO

from PIL import Image, ImageFile, ImagePalette

from kpal import codec, container
from kpal import coding as codings
from kpal.errors import KpalError, OptionError, TruncatedError, refuse_text_mode
from kpal.options import EncodeOptions

__all__ = ["KpalImageFile", "KpalDecoder", "register", "FORMAT", "EXTENSION", "MIME"]

FORMAT = "KPAL"
EXTENSION = ".kpal"
MIME = "image/x-kpal"


def _accept(prefix: bytes) -> bool:
    return prefix.startswith(container.MAGIC)


class KpalImageFile(ImageFile.ImageFile):
    """A ``.kpal`` image opened by Pillow (mode "P")."""

    format = FORMAT
    format_description = "kpal palette image"

    def _open(self) -> None:
        assert self.fp is not None
        prefix = bytes(codec.read_up_to(self.fp, container.HEADER_SIZE))
        if not _accept(prefix):
            msg = "not a .kpal file"
            raise SyntaxError(msg)
        # Version 2 has 5 more header bytes (spec §2.1).
        prefix += codec.read_up_to(self.fp, container.header_size(prefix) - len(prefix))
        # From here on the file claims to be .kpal: bad fields raise FormatError
        # (a ValueError), which Pillow passes through instead of trying other formats.
        # A 100000x100000 header on a 60-byte file must fail here, before load()
        # allocates anything; a stream that cannot seek is checked as it is read.
        left = codec.length_to_end(self.fp)
        header, chosen = codec.read_header(
            prefix, file_size=None if left is None else len(prefix) + left)
        palette_bytes = _read_exactly(self.fp, header.palette_size, "palette")
        # metadata_length is at most container.MAX_METADATA and, on a seekable
        # file, already checked against the file's length.
        metadata_bytes = _read_exactly(self.fp, header.metadata_length, "metadata")
        metadata = container.parse_metadata(metadata_bytes, header.metadata_offset)

        self._size = (header.width, header.height)
        self._mode = "P"
        self.info.update(k=header.k, bits_per_index=header.bits_per_index,
                         coding=chosen.name, version=header.version)
        if header.alpha:
            self.palette = ImagePalette.ImagePalette("RGBA", palette_bytes)
            self.palette.dirty = 1
            self.info["transparency"] = _transparency(palette_bytes[3::4])
        else:
            self.palette = ImagePalette.raw("RGB", palette_bytes)
        for name, body in metadata:
            if name == container.ICC_BLOCK:
                self.info["icc_profile"] = body
        # Decoder args: the CRC of everything read so far, continued over the payload.
        crc = zlib.crc32(prefix + palette_bytes + metadata_bytes)
        args = (header.coding, header.k, header.payload_length, crc)
        self.tile = [ImageFile._Tile("kpal", (0, 0, *self._size), self.fp.tell(), args)]

    def load(self):  # noqa: ANN201 - Pillow's signature
        """Decode the pixels; on a damaged payload, close the file as Pillow does, then raise.

        Pillow closes the file (when it opened it) after a decoder reports an
        error code; kpal's decoder raises a ``FormatError`` that names the
        problem instead, which would skip that step and leave the file open.
        A later ``load()`` raises the same error again, never returning the
        blank pixels Pillow allocated for the decoding.
        """
        failed = getattr(self, "_load_error", None)
        if failed is not None:
            raise failed.with_traceback(None)
        try:
            return super().load()
        except Exception as e:
            if self.tile:
                self._load_error = e
                self.tile = []
                if getattr(self, "_exclusive_fp", False) and self.fp is not None:
                    self.fp.close()
                self.fp = None
            raise

    def verify(self) -> None:
        """Check the payload's length and the file's checksum, without decoding the pixels.

        As Pillow's PNG plugin checks its chunks' CRCs: call it directly after
        ``Image.open``; the file is closed afterwards. The errors are kpal's,
        ``ValueError`` subclasses (PNG raises ``SyntaxError``): a loop that
        checks many images catches ``(OSError, SyntaxError, ValueError)``.

        Raises
        ------
        kpal.errors.ChecksumError
            The checksum does not match (a ``FormatError``).
        kpal.errors.FormatError
            The payload is truncated or followed by trailing data.
        RuntimeError
            Not called directly after open.
        """
        if self.fp is None:
            msg = "verify must be called directly after open"
            raise RuntimeError(msg)
        tile = self.tile[0]
        _coding, _k, payload_length, crc = tile.args
        try:
            self.fp.seek(tile.offset)
            _check_rest(self.fp, payload_length, crc)
        except Exception:
            if getattr(self, "_exclusive_fp", False):
                self.fp.close()
            self.fp = None
            raise
        super().verify()


def _read_exactly(fp: IO[bytes], size: int, part: str) -> bytes:
    data = bytes(codec.read_up_to(fp, size)) if size else b""
    if len(data) != size:
        msg = f"file is truncated in the {part}: {len(data)} of {size} bytes"
        raise TruncatedError(msg)
    return data


def _transparency(alpha: bytes) -> int | bytes:
    """``info["transparency"]`` as Pillow's PNG reader gives it for a palette with tRNS.

    The index of the only fully transparent entry when every other entry is
    opaque (GIF-style), else the alpha of every entry as bytes. The RGBA
    palette holds the same alpha; ``info`` carries it too because Pillow's
    pickling, ``copy.deepcopy`` and ``==`` read the palette as RGB only.
    As for such a PNG, Pillow warns on ``convert("RGB")`` of the bytes form
    (convert to "RGBA", or flatten onto a background, instead).
    """
    if alpha.count(0) == 1 and alpha.count(255) == len(alpha) - 1:
        return alpha.index(0)
    return bytes(alpha)


#: verify() reads the payload in pieces of this size: a check needs no copy of it.
_VERIFY_CHUNK = 1 << 20


def _check_rest(fp: IO[bytes], payload_length: int, crc: int) -> None:
    """Read the payload and checksum from ``fp``, continuing ``crc``, and check them."""
    left = payload_length
    while left:
        piece = fp.read(min(left, _VERIFY_CHUNK))
        if not piece:
            break
        crc = zlib.crc32(piece, crc)
        left -= len(piece)
    stored = fp.read(container.CHECKSUM_SIZE + 1)  # one more byte reveals trailing data
    _check_length(payload_length - left + len(stored), payload_length)
    container.verify_checksum(crc, stored)


def _check_length(found: int, payload_length: int) -> None:
    wanted = payload_length + container.CHECKSUM_SIZE
    if found != wanted:
        what = "truncated" if found < wanted else "has trailing data"
        msg = (f"file {what}: the payload and checksum should be {wanted} bytes, "
               f"{'got ' + str(found) if found < wanted else 'found more'}")
        raise (TruncatedError if found < wanted else container.FormatError)(msg)


class KpalDecoder(ImageFile.PyDecoder):
    """Reads the payload and checksum, verifies the CRC, decodes the indices.

    ``im.load()`` lets it read the file itself; ``ImageFile.Parser`` instead
    pushes the bytes as they arrive, which are kept until the payload and
    checksum are complete (the Parser opens the image only once the whole
    file is there, :func:`kpal.codec.length_to_end` giving its length; trailing data is then
    found by the open).
    """

    _pulls_fd = True
    _pushed: bytearray | None = None

    def decode(self, buffer: bytes | Image.SupportsArrayInterface) -> tuple[int, int]:
        coding_id, k, payload_length, crc = self.args
        wanted = payload_length + container.CHECKSUM_SIZE
        if self.fd is not None:
            data: bytes | bytearray = codec.read_up_to(self.fd, wanted + 1)  # +1: trailing data
        else:
            piece = memoryview(buffer).cast("B")  # type: ignore[arg-type]
            if self._pushed is None:
                self._pushed = bytearray()
            self._pushed += piece[: wanted + 1 - len(self._pushed)]
            if len(self._pushed) < wanted:
                return piece.nbytes, 0  # more to come
            data = self._pushed
        _check_length(len(data), payload_length)
        payload = memoryview(data)[:payload_length]
        container.verify_checksum(zlib.crc32(payload, crc), data[payload_length:])
        labels = codings.get(coding_id).decode(payload, k, self.state.xsize, self.state.ysize)
        self.set_as_raw(labels.tobytes(), "P")
        return -1, 0


#: ``im.save`` keywords that name an option differently: Pillow's ``colors``.
SAVE_ALIASES = {"colors": "k"}


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    # Every option is checked, and all the slow work done, before the first
    # byte is written; an error leaves Pillow to remove the file it created.
    refuse_text_mode(fp, "wb")  # at once, not after the encode
    try:
        keywords = dict(im.encoderinfo)
        for name in _SEQUENCE_KEYWORDS:  # see _save_all: one frame is all there is
            keywords.pop(name, None)
        for name in GENERIC_KEYWORDS + READER_KEYWORDS:  # nothing to change here
            keywords.pop(name, None)
        if "transparency" in keywords:  # as PNG's writer: instead of info["transparency"]
            im = _with_transparency(im, keywords.pop("transparency"))
        # As Pillow's PNG plugin: an icc_profile keyword, else the image's own
        # profile; icc_profile=None or b"" stores none (b"" tells the codec so).
        if "icc_profile" in keywords:
            icc_profile = keywords.pop("icc_profile")
            if icc_profile is None:
                icc_profile = b""
        else:
            icc_profile = im.info.get("icc_profile")
        options = EncodeOptions.from_keywords(keywords, aliases=SAVE_ALIASES)
        if getattr(im, "n_frames", 1) > 1:
            # As Pillow's PNG writer: the current frame of an animation or a
            # multi-picture JPEG (whose current frame, after open, is the primary image).
            im = im.copy()
        data = codec.encode_image(im, options=options, icc_profile=icc_profile).data
    except (KeyboardInterrupt, SystemExit):
        # Pillow removes a file it created when an Exception escapes, but not on
        # an interrupt: leave no empty file behind in that case either.
        _remove_if_empty(fp, filename)
        raise
    fp.write(data)


#: Pillow's keywords of a multi-frame save, not encode options.
_SEQUENCE_KEYWORDS = ("save_all", "append_images")
#: Keywords that programs pass to every Pillow writer (matplotlib's ``imsave`` always
#: passes ``dpi``) about what a .kpal file does not hold (a resolution) or how other
#: formats compress: ignored, as Pillow's own writers ignore what they do not use.
GENERIC_KEYWORDS = ("dpi", "optimize", "compress_level", "progressive")


#: What the reader puts in ``info`` that follows from the options and the image
#: (``im.save(out, **im.info)`` re-encodes with the same ``k`` and ``coding``): ignored.
READER_KEYWORDS = ("bits_per_index", "version")


def _with_transparency(im: Image.Image, transparency: object) -> Image.Image:
    """``im`` with ``info["transparency"]`` replaced, or removed by ``None``.

    The values Pillow's PNG writer takes, checked for the image's mode: a
    palette index or one alpha per palette entry (bytes) for "P", a grey key
    (int) for "L" and "1", an RGB key (three ints) for "RGB". A mode with an
    alpha channel has its alpha instead, and is refused, as PNG refuses it.
    """
    if transparency is None:
        if "transparency" not in im.info:
            return im
        im = im.copy()
        del im.info["transparency"]
        return im
    mode = im.mode
    value: object = None
    if isinstance(transparency, bool):
        pass
    elif mode == "P" and isinstance(transparency, int) and 0 <= transparency < 256:
        value = transparency
    elif mode == "P" and isinstance(transparency, (bytes, bytearray)):
        value = bytes(transparency[:256])  # one alpha per entry; PNG's writer keeps 256
    elif mode == "L" and isinstance(transparency, int) and 0 <= transparency < 256:
        value = transparency
    elif mode == "1" and isinstance(transparency, int) and 0 <= transparency < 256:
        value = 255 if transparency else 0  # as PNG's 1-bit key: 1 (or 255) is white
    elif (mode == "RGB" and isinstance(transparency, (tuple, list)) and len(transparency) == 3
          and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < 256
                  for c in transparency)):
        value = tuple(transparency)
    if value is None:
        wanted = {"P": "a palette index 0..255 or one alpha per entry (bytes)",
                  "L": "a grey level 0..255", "1": "a grey level 0..255",
                  "RGB": "an RGB colour of three ints 0..255"}.get(mode)
        if wanted:
            msg = f"transparency={transparency!r:.60} for a mode {mode} image: it must be {wanted}"
        elif "A" in mode or "a" in mode:
            msg = (f"transparency= cannot be used with a mode {mode} image: its alpha channel "
                   "says what is transparent")
        else:
            msg = f"transparency= cannot be used with a mode {mode} image"
        raise OptionError(msg)
    if value == im.info.get("transparency"):
        return im
    im = im.copy()
    im.info["transparency"] = value
    return im


def _save_all(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    """``im.save(..., save_all=True)``: one frame is saved as usual; more are refused.

    Raises
    ------
    KpalError
        The image and ``append_images`` hold more than one frame.
    """
    frames = sum(getattr(frame, "n_frames", 1)
                 for frame in (im, *im.encoderinfo.get("append_images", ())))
    if frames > 1:
        msg = (f"{frames} frames to save, but a .kpal file holds one image: save one frame "
               "(without save_all and append_images)")
        raise KpalError(msg)
    _save(im, fp, filename)


def _remove_if_empty(fp: IO[bytes], filename: str | bytes) -> None:
    """After an interrupt, close the file Pillow opened for this save, and remove it if empty.

    Pillow closes the file it opened, and removes it if it created it, when
    an ``Exception`` escapes, but not on an interrupt. Only a file object
    Pillow itself opened from ``filename`` (:func:`_opened_by_pillow`) is
    closed, and removed only when it is a regular file with nothing written
    (the same file on disk, no symbolic link between): a device
    (``/dev/null``), a pipe, or a file object the caller opened and passed in
    is left alone, whatever its mode.
    """
    if not filename or not _opened_by_pillow(fp):
        return
    with contextlib.suppress(OSError, ValueError, AttributeError):
        opened, written = os.fstat(fp.fileno()), fp.tell()
        fp.close()
        named = os.lstat(filename)
        if (stat.S_ISREG(named.st_mode) and os.path.samestat(opened, named)
                and named.st_size == 0 and written == 0):
            os.remove(filename)


def _opened_by_pillow(fp: IO[bytes]) -> bool:
    """Whether ``Image.save`` opened ``fp`` itself (from a path), not its caller.

    Read from ``Image.save``'s own frame (its ``open_fp``), since Pillow gives
    a save handler no other way to know; any doubt answers no.
    """
    frame = sys._getframe(1)
    for _ in range(8):
        frame = frame.f_back
        if frame is None:
            return False
        if frame.f_code.co_name == "save" and frame.f_globals.get("__name__") == "PIL.Image":
            return frame.f_locals.get("open_fp") is True and frame.f_locals.get("fp") is fp
    return False


def register() -> None:
    """Register the format with Pillow: open, save, extension and MIME type.

    ``import kpal`` calls it; calling it again is harmless.
    """
    Image.register_open(FORMAT, KpalImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_save_all(FORMAT, _save_all)
    Image.register_extension(FORMAT, EXTENSION)
    Image.register_mime(FORMAT, MIME)
    Image.register_decoder("kpal", KpalDecoder)
