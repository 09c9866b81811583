"""Damaged and hostile .kpal files: truncation, patched headers, bit flips, replays.

Every reader — ``kpal.decode``, ``Image.open(...).load()`` and ``kpal info`` —
must reject a bad file with a documented exception (spec/kpal.md §9) and never
return pixels from it.
"""

from __future__ import annotations

import io
import os
import re
import struct
import threading
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageFile, UnidentifiedImageError

import kpal
from kpal import codec, container
from kpal.cli import cli
from kpal.errors import ChecksumError, FormatError, KpalError, LimitError
from tests.conftest import GOLDEN, SAMPLES, p_image
from tests.fuzz_decode import DOCUMENTED, check, patch_field, with_checksum

CORRUPT = Path(__file__).parent / "corrupt"
GOLDEN_FILES = sorted(GOLDEN.glob("*.kpal"))
SMALL_GOLDEN = [p for p in GOLDEN_FILES if p.stat().st_size < 200]
MAGIC_LEN = len(container.MAGIC)


def _open_load(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.copy()


def _every_reader_rejects(data: bytes, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        kpal.decode(data)
    with pytest.raises(error, match=match):
        _open_load(data)
    with pytest.raises(error, match=match):
        codec.decode_indices(data)


def _inspect_problem(data: bytes) -> str:
    """What ``kpal info`` reports: a bad header raises, any later problem is reported."""
    try:
        report = codec.inspect(data)
    except FormatError as e:
        return str(e)
    assert report["problem"] is not None
    return report["problem"]


def _radix_file() -> bytes:
    return kpal.encode(p_image(7, 3, 5, seed=3), coding="radix")


class _Pipe(io.RawIOBase):
    """A stream that cannot seek or tell its length, like a pipe."""

    def __init__(self, payload: bytes) -> None:
        self._inner = io.BytesIO(payload)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._inner.readinto(buffer)


# ------------------------------------------------------------------ truncation
@pytest.mark.parametrize(
    ("name", "cut"),
    [(p.name, cut) for p in SMALL_GOLDEN for cut in range(p.stat().st_size)],
)

def test_truncation_at_every_offset(name, cut):
    whole = (GOLDEN / name).read_bytes()
    data = whole[:cut]
    header_size = container.header_size(whole)  # 26, or 31 in version 2
    if cut < MAGIC_LEN:
        match = "not a .kpal file"
        with pytest.raises(UnidentifiedImageError):  # Pillow: "not this format"
            _open_load(data)
    else:
        match = "truncated header" if cut < header_size else "file is truncated"
        with pytest.raises(FormatError, match=match):
            _open_load(data)
    with pytest.raises(FormatError, match=match):
        kpal.decode(data)
    if cut < header_size:
        with pytest.raises(FormatError, match=match):
            codec.inspect(data)
    else:  # a readable header is shown, with the problem (kpal info then exits 1)
        report = codec.inspect(data)
        assert report["problem"].startswith("file is truncated")
        assert report["checksum"] == "not checked"


def test_truncation_of_larger_files_every_offset():
    for data in ((GOLDEN / "k256_16x16.kpal").read_bytes(), _radix_file()):
        for cut in range(container.HEADER_SIZE, len(data)):
            with pytest.raises(FormatError, match="file is truncated"):
                kpal.decode(data[:cut])
            with pytest.raises(FormatError, match="truncated"):
                _open_load(data[:cut])


def test_load_truncated_images_does_not_make_pillow_accept_a_truncated_file(monkeypatch):
    """Pillow's LOAD_TRUNCATED_IMAGES fills missing pixels for other formats; not here."""
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = (GOLDEN / "k17_5x5.kpal").read_bytes()
    for cut in (len(data) - 1, len(data) - 5, container.HEADER_SIZE + 3 * 17 + 2):
        with pytest.raises(FormatError, match="file is truncated"):
            _open_load(data[:cut])


def test_truncated_payload_from_an_unseekable_stream_fails_on_load():
    """Pillow buffers a stream without seek(); the length check still applies."""
    data = (GOLDEN / "k5_7x3.kpal").read_bytes()

    with Image.open(io.BufferedReader(_Pipe(data))) as im:
        im.load()
        assert np.asarray(im).shape == (3, 7)
    with pytest.raises(FormatError, match="file is truncated"), \
            Image.open(io.BufferedReader(_Pipe(data[:-5]))) as im:
        im.load()


def test_real_pipe_is_readable():
    data = (GOLDEN / "k17_5x5.kpal").read_bytes()
    read_end, write_end = os.pipe()

    def feed() -> None:
        with os.fdopen(write_end, "wb") as w:
            w.write(data)

    feeder = threading.Thread(target=feed)
    feeder.start()
    with os.fdopen(read_end, "rb") as r, Image.open(r) as im:
        im.load()
        expected = kpal.decode(data)
        np.testing.assert_array_equal(np.asarray(im), np.asarray(expected))
    feeder.join()


# ------------------------------------------------------------------ patched headers
K5 = (GOLDEN / "k5_7x3.kpal").read_bytes()
K256 = (GOLDEN / "k256_16x16.kpal").read_bytes()
RGBA = (GOLDEN / "rgba_k4_5x3.kpal").read_bytes()
ICC = (GOLDEN / "icc_k5_7x3.kpal").read_bytes()


@pytest.mark.parametrize(
    ("base", "field", "value", "error", "match"),
    [
        (K5, "version", 0, FormatError,
         r"unsupported version 0 \(this reader knows versions 1 and 2\)"),
        (K5, "version", 3, FormatError, "unsupported version 3"),
        # a version 1 file relabelled 2: its first palette byte (0xdc) is read as flags
        (K5, "version", 2, FormatError, r"flags=0xdc has reserved bits set \(0xdc\)"),
        (RGBA, "version", 1, FormatError, "file has trailing data: 55 bytes, the header "
                                          "implies 46"),
        (RGBA, "flags", 0x02, FormatError, r"flags=0x02 has reserved bits set \(0x02\)"),
        (RGBA, "flags", 0x00, FormatError, "file has trailing data: 55 bytes, the header "
                                           "implies 51"),
        (RGBA, "metadata_length", 1, FormatError, "file is truncated: 55 bytes, the header "
                                                  "implies 56"),
        (RGBA, "metadata_length", (1 << 24) + 1, LimitError,
         "metadata_length=16777217 is over the limit of 16777216"),
        (RGBA, "metadata_length", 0xFFFFFFFF, LimitError, "metadata_length=4294967295"),
        (K5, "version", 255, FormatError, "unsupported version 255"),
        (K5, "coding", 4, FormatError, r"unknown payload coding 4 \(known: 0 \(fixed\)"),
        (K5, "coding", 3, FormatError, r"context payload is 8 bytes, shorter than 12"),
        (K5, "coding", 255, FormatError, "unknown payload coding 255"),
        (K5, "k", 0, LimitError, "k=0 is outside 1..256"),
        (K5, "k", 257, LimitError, "k=257 is outside 1..256"),
        (K5, "k", 65535, LimitError, "k=65535 is outside 1..256"),
        (K5, "k", 4, FormatError, r"bits_per_index=3 does not match k=4 \(expected 2\)"),
        (K5, "bits_per_index", 4, FormatError, "bits_per_index=4 does not match k=5"),
        (K256, "bits_per_index", 7, FormatError,
         r"bits_per_index=7 does not match k=256 \(expected 8\)"),
        (K5, "width", 0, LimitError, "width=0 is outside 1..16777215"),
        (K5, "height", 0, LimitError, "height=0 is outside 1..16777215"),
        (K5, "width", 1 << 24, LimitError, "width=16777216 is outside 1..16777215"),
        (K5, "height", 0xFFFFFFFF, LimitError, "height=4294967295 is outside"),
        (K5, "width", 8, FormatError, "payload_length=8 but a 8x3 image at k=5 .* needs 9"),
        (K5, "payload_length", 7, FormatError, "payload_length=7 but a 7x3 image at k=5"),
        (K5, "payload_length", 9, FormatError, "payload_length=9 but .* needs 8"),
        (K5, "payload_length", 0xFFFFFFFF, FormatError, "payload_length=4294967295"),
    ],
    ids=lambda v: "" if isinstance(v, bytes) else str(getattr(v, "__name__", v))[:12],
)
def test_patched_header_field(base, field, value, error, match):
    # The checksum is redone so that the field itself, not the CRC, is what fails.
    data = with_checksum(patch_field(base, field, value))
    _every_reader_rejects(data, error, match)
    assert re.search(match, _inspect_problem(data))


def test_product_of_sides_over_the_limit_is_checked_without_overflow():
    header = struct.pack(">9sBBBHIII", container.MAGIC, 1, 0, 0, 1, 65536, 16385, 0)
    data = with_checksum(header + b"\0\0\0" + bytes(4))
    _every_reader_rejects(data, LimitError, "65536x16385 is more than 1073741824 pixels")


def test_payload_length_that_lies_but_matches_the_file_length():
    """payload_length = 9 where ceil(21*3/8) = 8, with one extra byte so the file length agrees."""
    body = bytearray(K5[:-4] + b"\0")
    struct.pack_into(">I", body, 22, 9)
    data = with_checksum(bytes(body) + bytes(4))
    _every_reader_rejects(data, FormatError, "payload_length=9 but a 7x3 image at k=5 "
                                             "with coding 0 needs 8")
    assert codec.inspect(data)["problem"].startswith("payload_length=9")


@pytest.mark.parametrize(("k", "payload_length"), [(16, 536870880), (16, 0), (2, 134217720)])
def test_huge_header_on_a_tiny_file_fails_fast_without_allocating(k, payload_length):
    b = (k - 1).bit_length()
    header = struct.pack(">9sBBBHIII", container.MAGIC, 1, 0, b, k, 16777215, 64,
                         payload_length)
    data = with_checksum(header + bytes(3 * k) + bytes(4))
    tracemalloc.start()
    try:
        for read in (kpal.decode, _open_load, codec.decode_indices):
            with pytest.raises(FormatError, match="file is truncated|payload_length="):
                read(data)
        assert re.search("file is truncated|payload_length=", _inspect_problem(data))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 << 20


# ------------------------------------------------------------------ decompression bombs
def _k1_file(width: int, height: int) -> bytes:
    """k = 1 stores no indices: any pixel count fits in 33 bytes."""
    header = struct.pack(">9sBBBHIII", container.MAGIC, 1, 0, 0, 1, width, height, 0)
    return with_checksum(header + b"\x10\x20\x30" + bytes(4))


def test_pillow_bomb_guard_fires_before_anything_is_allocated():
    data = _k1_file(16384, 65536)  # 2**30 pixels, the format's own limit, in 33 bytes
    tracemalloc.start()
    try:
        for read in (kpal.decode, _open_load, codec.decode_indices, codec.inspect):
            with pytest.raises(Image.DecompressionBombError, match="1073741824 pixels"):
                read(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 << 20


def test_lowered_bomb_limit_is_honoured_everywhere(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    data = K256  # 16x16 = 256 pixels > 2 * 100
    for read in (kpal.decode, _open_load, codec.decode_indices, codec.inspect):
        with pytest.raises(Image.DecompressionBombError, match="256 pixels"):
            read(data)
    result = CliRunner().invoke(cli, ["info", "-"], input=data)
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "kpal: error: <stdin>: Image size (256 pixels) exceeds limit of 200 pixels, "
        "could be decompression bomb DOS attack."]
    result = CliRunner().invoke(cli, ["decode", "-"], input=data)
    assert result.exit_code == 1
    assert result.output.startswith("kpal: error: <stdin>: Image size (256 pixels) exceeds")
    assert len(result.output.splitlines()) == 1


def test_between_the_limit_and_twice_it_is_a_warning(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)
    for read in (kpal.decode, codec.inspect):
        with pytest.warns(Image.DecompressionBombWarning):
            read(K256)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        result = CliRunner().invoke(cli, ["info", "-"], input=K256)
    assert result.exit_code == 0
    assert result.output.splitlines()[0] == (
        "kpal: warning: <stdin>: Image size (256 pixels) exceeds limit of 200 pixels, could be "
        "decompression bomb DOS attack.")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # guard disabled, as in Pillow
        assert kpal.decode(K256).size == (16, 16)
        assert codec.inspect(K256)["problem"] is None


# ------------------------------------------------------------------ integrity
def _rgba_with_block() -> bytes:
    """A small RGBA file with one skippable metadata block (flips reach every field)."""
    palette = np.array([[0, 0, 0, 0], [200, 10, 20, 255], [5, 6, 7, 90]], np.uint8)
    labels = np.array([[0, 1, 2, 1, 0], [2, 2, 1, 0, 1]], np.uint8)
    payload = kpal.coding.get("fixed").encode(labels, 3)
    header = container.Header.for_image(coding=0, k=3, width=5, height=2,
                                        payload_length=len(payload), alpha=True,
                                        metadata_length=12)
    return container.write(header, palette, payload, metadata={"xtra": b"abcd"})


@pytest.mark.parametrize("source", ["k5_7x3", "k17_5x5", "k1_4x3", "radix", "rgba_k4_5x3",
                                    "rgba_block"])
def test_every_single_bit_flip_is_rejected(source):
    data = {"radix": _radix_file, "rgba_block": _rgba_with_block}.get(
        source, lambda: (GOLDEN / f"{source}.kpal").read_bytes())()
    pixels = np.asarray(kpal.decode(data))
    # header fields and metadata blocks are checked before the CRC
    checked_first = container.read_header(data).payload_offset
    for bit in range(8 * len(data)):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 0x80 >> (bit % 8)
        flipped = bytes(flipped)
        with pytest.raises(FormatError) as caught:  # ChecksumError is a FormatError
            kpal.decode(flipped)
        if bit >= 8 * checked_first:
            assert isinstance(caught.value, ChecksumError), (bit, caught.value)
        check(flipped, must_reject=True)  # every reader refuses, nothing else escapes
    assert np.array_equal(np.asarray(kpal.decode(data)), pixels)


def test_checksum_covers_header_palette_and_payload():
    for offset in (MAGIC_LEN + 1 + 2 + 2, container.HEADER_SIZE, len(K5) - 5):
        body = bytearray(K5)
        body[offset] ^= 0x01
        with pytest.raises(FormatError):
            kpal.decode(bytes(body))


# ------------------------------------------------------------------ regression files
#: Every file in tests/corrupt/ with the error it must raise (see its README); None:
#: a hostile but valid file that must decode within a small memory budget.
REGRESSIONS = {
    "entropy_tile_log2_15.kpal": None,
    "fuzz_entropy_tile_log2_14.kpal": None,
    "bomb_k1_2p30_pixels.kpal": (Image.DecompressionBombError, "1073741824 pixels"),
    "checksum_wrong.kpal": (ChecksumError, "checksum mismatch: stored 0x411da27c"),
    "coding3.kpal": (FormatError, r"context payload is 8 bytes, shorter than 12 \(3-byte"),
    "coding4.kpal": (FormatError, "unknown payload coding 4"),
    "context_literal_ge_k.kpal": (FormatError, "context payload decodes to an invalid literal"),
    "context_order_repeats.kpal": (FormatError, "order is not a permutation of 0..4"),
    "context_trailing_byte.kpal": (FormatError, "context payload does not end where the coder"),
    "huge_header_tiny_file.kpal": (FormatError, "file is truncated: 78 bytes, the header "
                                                "implies 536870958"),
    "index_ge_k.kpal": (FormatError, r"index 7 >= k=5 \(first bad index at pixel 0\)"),
    "k0.kpal": (LimitError, "k=0 is outside 1..256"),
    "k256_b7.kpal": (FormatError, "bits_per_index=7 does not match k=256"),
    "k257.kpal": (LimitError, "k=257 is outside 1..256"),
    "padding_not_zero.kpal": (FormatError, "padding bits in the last payload byte are not zero"),
    "payload_length_lies.kpal": (FormatError, "payload_length=9 but a 7x3 image"),
    "pixels_over_2p30.kpal": (LimitError, "65536x16385 is more than 1073741824 pixels"),
    "trailing_data.kpal": (FormatError, "file has trailing data: 54 bytes"),
    "version0.kpal": (FormatError, "unsupported version 0"),
    "version2.kpal": (FormatError, r"flags=0xdc has reserved bits set \(0xdc\)"),
    "width0.kpal": (LimitError, "width=0 is outside 1..16777215"),
    "rgba_version1.kpal": (FormatError, "file has trailing data: 55 bytes, the header "
                                        "implies 46"),
    "flags_reserved.kpal": (FormatError, r"flags=0x03 has reserved bits set \(0x02\)"),
    "metadata_truncated.kpal": (FormatError, "file is truncated: 346 bytes, the header "
                                             "implies 654"),
    "metadata_length_beyond_file.kpal": (FormatError, "file is truncated: 55 bytes, the "
                                                      "header implies 16777271"),
    "metadata_length_over_limit.kpal": (LimitError, "metadata_length=16777217 is over the "
                                                    "limit of 16777216"),
    "metadata_block_beyond.kpal": (FormatError, "metadata block 'iccp' at byte 46 claims "
                                                "length=589, only 588 bytes remain"),
    "metadata_unknown_must_understand.kpal": (FormatError, "unknown metadata block 'Iccp' at "
                                                           "byte 46: an upper-case first"),
    "icc_not_rgb.kpal": (FormatError, "iccp block at byte 46: the profile's colour space is "
                                      "b'GRAY'"),
    "metadata_checksum_wrong.kpal": (ChecksumError, "checksum mismatch: stored 0x3fb59999"),
}


def test_every_regression_file_is_listed_here_and_in_its_readme():
    names = {p.name for p in CORRUPT.glob("*.kpal")}
    assert names == set(REGRESSIONS)
    readme = (CORRUPT / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in names)


@pytest.mark.parametrize("name", sorted(n for n, e in REGRESSIONS.items() if e is not None))
def test_regression_file_is_rejected(name):
    error, match = REGRESSIONS[name]
    _every_reader_rejects((CORRUPT / name).read_bytes(), error, match)


@pytest.mark.parametrize("name", sorted(n for n, e in REGRESSIONS.items() if e is None))
def test_regression_file_decodes_in_bounded_memory(name):
    """Entropy payloads whose tile_log2 (14, 15) far exceeds the image once asked for GiBs."""
    data = (CORRUPT / name).read_bytes()
    tracemalloc.start()
    try:
        assert check(data) == "ok"  # every reader decodes it, to the same pixels
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 << 20


# ------------------------------------------------------------------ replay
REPLAY = sorted(
    [*SAMPLES.glob("*.jpg"), *GOLDEN_FILES, *CORRUPT.glob("*.kpal")], key=lambda p: p.name
)
VALID = {*GOLDEN_FILES, *(CORRUPT / n for n, e in REGRESSIONS.items() if e is None)}


@pytest.mark.parametrize("path", REPLAY, ids=lambda p: p.name)
def test_replay_only_documented_exceptions_escape(path):
    data = path.read_bytes()
    for read in (lambda: kpal.decode(path), lambda: kpal.decode(data)):
        try:
            im = read()
        except DOCUMENTED:
            assert path not in VALID
        else:
            assert im.mode == "P" and path in VALID
    try:
        with Image.open(path) as im:
            im.load()
    except DOCUMENTED:
        assert path not in VALID
    result = CliRunner().invoke(cli, ["info", str(path)])
    assert isinstance(result.exception, SystemExit) or result.exception is None, result.output
    assert "Traceback" not in result.output
    if path in VALID:
        assert result.exit_code == 0 and "checksum       ok" in result.output
    else:
        assert result.exit_code == 1
        last = result.output.splitlines()[-1]
        assert last.startswith(f"kpal: error: {path}: ")
    if path.suffix == ".kpal":
        check(data)


def test_not_a_kpal_file_is_a_format_error_from_decode_and_syntax_error_inside_pillow(tmp_path):
    path = tmp_path / "x.kpal"
    path.write_bytes(b"GIF89a" + bytes(40))
    with pytest.raises(FormatError, match="not a .kpal file"):
        kpal.decode(path)
    with pytest.raises(SyntaxError, match="not a .kpal file"):
        kpal.plugin.KpalImageFile(str(path))
    with pytest.raises(UnidentifiedImageError), Image.open(path, formats=["KPAL"]):
        pass
    assert issubclass(FormatError, KpalError) and issubclass(KpalError, ValueError)


def test_missing_and_unreadable_paths_are_os_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        kpal.decode(tmp_path / "missing.kpal")
    with pytest.raises(IsADirectoryError):
        kpal.decode(tmp_path)


# ------------------------------------------------------------------ version 2 metadata
def test_metadata_claim_on_a_tiny_file_fails_without_allocating():
    """A 16 MiB metadata_length on a 55-byte file is refused by its length, not by reading."""
    data = with_checksum(patch_field(RGBA, "metadata_length", 1 << 24))
    tracemalloc.start()
    try:
        _every_reader_rejects(data, FormatError, "file is truncated: 55 bytes, the header "
                                                 "implies 16777271")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_truncated_metadata_fails_in_open_even_without_the_file_length():
    """Image.open buffers an unseekable stream and checks the file length; the plugin's
    own read of the metadata, used when no length is known, stops at the end too."""

    with Image.open(io.BufferedReader(_Pipe(ICC))) as im:
        im.load()
        assert im.info["icc_profile"] == (GOLDEN / "srgb.icc").read_bytes()
    with pytest.raises(FormatError, match="file is truncated: 346 bytes, the header implies 654"):
        Image.open(io.BufferedReader(_Pipe(ICC[:31 + 15 + 300])))
    with pytest.raises(FormatError, match="file is truncated in the metadata: 300 of 596 bytes"):
        kpal.plugin.KpalImageFile(io.BufferedReader(_Pipe(ICC[:31 + 15 + 300])))


def test_bad_metadata_is_reported_by_kpal_info():
    data = (CORRUPT / "metadata_unknown_must_understand.kpal").read_bytes()
    report = codec.inspect(data)
    assert report["problem"].startswith("unknown metadata block 'Iccp'")
    assert report["checksum"] == "not checked" and report["metadata"] is None
    good = codec.inspect(ICC)
    assert good["problem"] is None and good["metadata"] == [
        {"type": "iccp", "bytes": 588, "known": True, "description": "sRGB built-in"}]


def test_crc_is_zlib_crc32_of_everything_before_it():
    assert struct.unpack(">I", K5[-4:])[0] == zlib.crc32(K5[:-4])
