"""Every way to run ``kpal`` on the wrong thing: one line naming the file, exit 2 or 1.

Exit 2 is a usage error (the command line is wrong), exit 1 bad data or I/O.
Also every input mode through ``kpal encode``: converted by the documented rule
(kpal/codec.py, README "What gets stored") or rejected with the mode named.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kpal
from kpal.cli import cli
from kpal.errors import KpalError


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "in.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(path)
    return path


def _fails(result, code: int, line: str) -> None:
    """Exactly one output line, the expected one, and the expected exit code."""
    assert result.output.splitlines() == [line], result.output
    assert result.exit_code == code
    assert isinstance(result.exception, SystemExit)  # never an escaped exception


def _no_kpal_written(folder) -> None:
    assert not list(folder.glob("*.kpal")) and not list(folder.glob(".*.tmp"))


# ------------------------------------------------------------------ bad inputs
def test_missing_input(runner, tmp_path):
    path = tmp_path / "nope.jpg"
    _fails(runner.invoke(cli, ["encode", str(path)]), 2, f"kpal: error: {path}: no such file")
    for command in ("decode", "info"):
        _fails(runner.invoke(cli, [command, str(tmp_path / "x.kpal")]), 2,
               f"kpal: error: {tmp_path / 'x.kpal'}: no such file")


def test_missing_input_is_named_when_the_output_already_exists(runner, tmp_path):
    # The output-is-the-input check used to compare with a file that is not
    # there: a raw "[Errno 2]" and exit 1. The missing input is the problem.
    existing = tmp_path / "out.kpal"
    existing.write_bytes(b"keep me")
    for command, missing in (("encode", "nope.jpg"), ("decode", "nope.kpal"),
                             ("palette", "nope.png"), ("plot", "nope.jpg")):
        path = tmp_path / missing
        target = existing if command != "plot" else existing.with_suffix(".png")
        target.write_bytes(b"keep me")
        args = [command, str(path), "-o", str(target)]
        _fails(runner.invoke(cli, args + (["--kind", "palette"] if command == "plot" else [])), 2,
               f"kpal: error: {path}: no such file")
        assert target.read_bytes() == b"keep me"


def test_directory_as_input(runner, tmp_path):
    # Without -o a folder cannot be encoded or decoded (kpal info describes its files).
    for command, ext in (("encode", ".kpal"), ("decode", ".png")):
        _fails(runner.invoke(cli, [command, str(tmp_path)]), 2,
               f"kpal: error: {tmp_path}: is a directory; to take its files, give -o FOLDER "
               f"for the outputs, or --ext (e.g. --ext {ext}) to write them beside the inputs")


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_device_as_input_is_refused_not_read_forever(runner):
    for command in ("encode", "decode", "info"):
        _fails(runner.invoke(cli, [command, "/dev/zero"]), 2,
               "kpal: error: /dev/zero: is a device, expected a file (use - for stdin)")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
@pytest.mark.parametrize("command", ["decode", "info"])
def test_non_kpal_input_is_refused_after_its_header(tmp_path, command):
    # A pipe that never ends: only reading the header first can answer.
    import subprocess
    import sys
    import threading

    fifo = tmp_path / "endless.kpal"
    os.mkfifo(fifo)
    done = threading.Event()

    def feed():
        with open(fifo, "wb") as f:
            f.write(b"GIF89a" + b"\0" * 64)
            f.flush()
            done.wait(30)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    args = [sys.executable, "-m", "kpal.cli", command, str(fifo)]
    if command == "decode":
        args += ["-o", str(tmp_path / "out.png")]
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=30)
    finally:
        done.set()
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"kpal: error: {fifo}: not a .kpal file (magic is b'GIF89a\\x00\\x00\\x00', "
        "expected b'\\x89KPAL\\r\\n\\x1a\\n')"
    ]


def test_out_of_memory_is_one_line(runner, png, monkeypatch):
    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr("kpal.codec.encode_image", exhausted)
    _fails(runner.invoke(cli, ["encode", str(png)]), 1, "kpal: error: out of memory")


def test_non_image_file(runner, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("shopping list\n")
    _fails(runner.invoke(cli, ["encode", str(path)]), 1,
           f"kpal: error: {path}: not an image Pillow can read")
    _no_kpal_written(tmp_path)


def test_empty_file(runner, tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    _fails(runner.invoke(cli, ["encode", str(path)]), 1, f"kpal: error: {path}: file is empty")
    _fails(runner.invoke(cli, ["decode", str(path), "-o", str(tmp_path / "x.png")]), 1,
           f"kpal: error: {path}: not a .kpal file: the file is empty")
    for command in ("info", "view"):
        _fails(runner.invoke(cli, [command, str(path), "-o", str(tmp_path / "x.html")]
                             if command == "view" else [command, str(path)]), 1,
               f"kpal: error: {path}: not a .kpal file: the file is empty")
    _no_kpal_written(tmp_path)


@pytest.mark.parametrize(("fmt", "cut", "problem"), [
    ("PNG", 200, "cannot decode image: image file is truncated"),  # inside the pixel data
    ("PNG", 20, "cannot decode image: Truncated File Read"),  # inside the IHDR chunk
    ("JPEG", 300, "cannot decode image: Truncated File Read"),
])
def test_truncated_jpeg_and_png(runner, tmp_path, png, fmt, cut, problem):
    buffer = io.BytesIO()
    Image.open(png).save(buffer, fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buffer.getvalue()[:cut])
    _fails(runner.invoke(cli, ["encode", str(path)]), 1, f"kpal: error: {path}: {problem}")
    _no_kpal_written(tmp_path)


def test_zero_pixel_image(runner, tmp_path):
    """Pillow refuses to open a 0-pixel file; the library refuses a 0-pixel image."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    path = tmp_path / "empty_ihdr.png"  # width 0, height 3
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 3, 8, 2, 0, 0, 0))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"IDAT", zlib.compress(b""))
                     + chunk(b"IEND", b""))
    _fails(runner.invoke(cli, ["encode", str(path)]), 1,
           f"kpal: error: {path}: not an image Pillow can read")
    with pytest.raises(KpalError, match="image is 0x0: nothing to encode"):
        kpal.encode(Image.new("RGB", (0, 0)))
    with pytest.raises(KpalError, match="image is 5x0: nothing to encode"):
        kpal.encode(np.zeros((0, 5, 3), np.uint8))


def test_zero_width_kpal_file(runner, tmp_path):
    header = struct.pack(">9sBBBHIII", b"\x89KPAL\r\n\x1a\n", 1, 0, 0, 1, 0, 1, 0)
    body = header + b"\0\0\0"
    path = tmp_path / "zero.kpal"
    path.write_bytes(body + struct.pack(">I", zlib.crc32(body)))
    for command in ("decode", "info"):
        _fails(runner.invoke(cli, [command, str(path)]), 1,
               f"kpal: error: {path}: width=0 is outside 1..16777215")


def test_one_by_one_image_is_fine(runner, tmp_path):
    """Not an error: a 1x1 image is stored losslessly as k = 1 (33 bytes)."""
    path = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (12, 34, 56)).save(path)
    result = runner.invoke(cli, ["encode", str(path), "-k", "2"])
    assert result.exit_code == 0, result.output
    assert f"kpal: warning: {path}: the image has 1 distinct colour, no more" in result.stderr
    assert "distinct" not in result.stdout  # the report is on stdout, warnings on stderr
    out = tmp_path / "dot.kpal"
    assert out.stat().st_size == 33
    assert kpal.decode(out).convert("RGB").getpixel((0, 0)) == (12, 34, 56)


@pytest.mark.parametrize("k", ["0", "257", "-3"])
def test_k_out_of_range(runner, png, k):
    _fails(runner.invoke(cli, ["encode", str(png), "-k", k]), 2,
           f"kpal: error: -k/--colors: k={k} must be an integer between 1 and 256")
    _no_kpal_written(png.parent)


def test_k_not_an_integer(runner, png):
    _fails(runner.invoke(cli, ["encode", str(png), "-k", "abc"]), 2,
           "kpal: error: -k/--colors: k='abc' must be an integer between 1 and 256")


def test_stdin_that_is_not_an_image(runner, tmp_path):
    out = tmp_path / "x.kpal"
    _fails(runner.invoke(cli, ["encode", "-", "-o", str(out)], input=b"GIF89a but not really"),
           1, "kpal: error: <stdin>: not an image Pillow can read")
    _fails(runner.invoke(cli, ["encode", "-", "-o", str(out)], input=b""), 1,
           "kpal: error: <stdin>: file is empty")
    _fails(runner.invoke(cli, ["decode", "-", "-o", str(tmp_path / "x.png")], input=b"hello"),
           1, "kpal: error: <stdin>: not a .kpal file (magic is b'hello', expected "
              "b'\\x89KPAL\\r\\n\\x1a\\n')")
    assert not out.exists()


# ------------------------------------------------------------------ bad outputs
def test_output_folder_is_a_file(runner, tmp_path, png):
    """Works as root too: nothing can be created below a regular file."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("")
    out = blocker / "out.kpal"
    _fails(runner.invoke(cli, ["encode", str(png), "-o", str(out)]), 1,
           f"kpal: error: {out}: cannot write: Not a directory")


def test_output_folder_missing(runner, tmp_path, png):
    out = tmp_path / "no" / "out.kpal"
    _fails(runner.invoke(cli, ["encode", str(png), "-o", str(out)]), 2,
           f"kpal: error: {out}: folder {str(out.parent)!r} does not exist")


def _is_writable(folder: Path) -> bool:
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except PermissionError:
        return False
    return True


def test_unwritable_output_folder(runner, tmp_path, png):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        # root ignores permission bits; sysfs refuses new files even to root
        folder = next((f for f in (locked, Path("/sys")) if f.is_dir() and not _is_writable(f)),
                      None)
        if folder is None:
            pytest.skip("no unwritable folder for this user")
        out = folder / "out.kpal"
        _fails(runner.invoke(cli, ["encode", str(png), "-o", str(out)]), 1,
               f"kpal: error: {out}: cannot write: Permission denied")
        assert not out.exists()
    finally:
        locked.chmod(0o700)


def test_existing_output_and_output_equal_to_input(runner, tmp_path, png):
    out = tmp_path / "in.kpal"
    out.write_bytes(b"keep me")
    _fails(runner.invoke(cli, ["encode", str(png)]), 2,
           f"kpal: error: {out}: file exists (use --force to overwrite)")
    assert out.read_bytes() == b"keep me"
    # The same file under another spelling is still the input.
    other_spelling = os.path.join(str(tmp_path), ".", "in.png")
    _fails(runner.invoke(cli, ["encode", str(png), "-o", other_spelling, "--force"]), 2,
           f"kpal: error: {other_spelling}: output is the input file; choose another -o")
    kpal_path = tmp_path / "x.kpal"
    with pytest.warns(UserWarning, match="1 distinct colour,"):
        kpal.save(np.zeros((2, 2, 3), np.uint8), kpal_path)
    _fails(runner.invoke(cli, ["decode", str(kpal_path), "-o", str(kpal_path), "--force",
                               "--format", "PNG"]), 2,
           f"kpal: error: {kpal_path}: output is the input file; choose another -o")
    assert kpal.decode(kpal_path).size == (2, 2)


def test_output_is_a_directory(runner, tmp_path, png):
    folder = tmp_path / "out.kpal"
    folder.mkdir()
    (folder / "in.kpal").mkdir()  # -o names a folder: the output goes in it, as cp's does
    _fails(runner.invoke(cli, ["encode", str(png), "-o", str(folder), "--force"]), 2,
           f"kpal: error: {folder / 'in.kpal'}: is a directory, expected a file")


# ------------------------------------------------------------------ input modes
def _mode_image(mode: str) -> Image.Image:
    """A 6x4 image in ``mode`` with four distinct values, fully opaque."""
    rgb = np.array([[10, 20, 30], [200, 100, 50], [0, 0, 0], [255, 255, 255]], np.uint8)
    rgb_im = Image.fromarray(np.repeat(rgb, 6, axis=0).reshape(4, 6, 3), "RGB")
    if mode == "P":
        return rgb_im.quantize(4)
    if mode == "PA":
        p = rgb_im.quantize(4)
        pa = p.convert("PA")
        pa.putpalette(p.getpalette())
        return pa
    if mode == "1":
        return rgb_im.convert("L").point(lambda v: 255 * (v > 60)).convert("1")
    return rgb_im.convert(mode)


#: mode -> a file format that stores that mode
CONVERTED = {"L": "PNG", "LA": "PNG", "P": "PNG", "PA": "TIFF", "RGBA": "PNG", "1": "PNG",
             "CMYK": "TIFF", "YCbCr": "TIFF"}


@pytest.mark.parametrize("mode", sorted(CONVERTED))
def test_modes_that_are_converted(runner, tmp_path, mode):
    fmt = CONVERTED[mode]
    image = _mode_image(mode)
    path = tmp_path / f"in.{fmt.lower()}"
    image.save(path, fmt)
    with Image.open(path) as check:
        assert check.mode == mode  # the file really holds that mode
        expected = np.asarray(check.convert("RGB"))
    result = runner.invoke(cli, ["encode", str(path), "-k", "8", "-q"])
    assert result.exit_code == 0, result.output
    decoded = np.asarray(kpal.decode(tmp_path / "in.kpal").convert("RGB"))
    np.testing.assert_array_equal(decoded, expected)  # at most 4 colours: lossless


@pytest.mark.parametrize("mode", ["LA", "PA", "RGBA"])
def test_transparent_pixels_are_kept(runner, tmp_path, mode):
    image = _mode_image(mode)
    alpha = np.full((4, 6), 255, np.uint8)
    alpha[0, 0] = 0
    image.putalpha(Image.fromarray(alpha, "L"))
    path = tmp_path / "in.tiff"
    image.save(path)
    result = runner.invoke(cli, ["encode", str(path), "-q"])
    assert result.exit_code == 0, result.output
    decoded = np.asarray(kpal.decode(tmp_path / "in.kpal").convert("RGBA"))
    np.testing.assert_array_equal(decoded[..., 3], alpha)
    result = runner.invoke(cli, ["decode", str(tmp_path / "in.kpal"), "-o",
                                 str(tmp_path / "out.bmp")])
    assert result.exit_code == 0, result.output
    assert "BMP has no transparency: flattened onto white" in result.output
    with Image.open(tmp_path / "out.bmp") as bmp:
        # Flattened, still a palette image (an 8-bit BMP): the same pixels as RGB.
        assert bmp.mode == "P" and bmp.convert("RGB").getpixel((0, 0)) == (255, 255, 255)


def _soft_alpha_kpal(tmp_path):
    """A .kpal file with opaque, translucent and fully transparent entries, and its RGBA."""
    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[..., 0] = np.arange(8) * 30
    rgba[..., 1] = 90
    rgba[..., 2] = np.arange(6)[:, None] * 40
    rgba[..., 3] = 255
    rgba[0, :3, 3] = 0
    rgba[5, 5:, 3] = 128
    path = tmp_path / "soft.kpal"
    with pytest.warns(UserWarning, match="lossless"):  # fewer colours than k
        path.write_bytes(kpal.encode(rgba, 64))
    return path, np.asarray(kpal.decode(path).convert("RGBA"))


@pytest.mark.parametrize("suffix", ["tiff", "webp"])
def test_decoding_to_an_alpha_format_keeps_every_alpha(runner, tmp_path, suffix):
    # TIFF dropped the palette's alpha without a word (Pillow writes its RGB colormap only).
    path, expected = _soft_alpha_kpal(tmp_path)
    out = tmp_path / f"out.{suffix}"
    extra = ["--format", "WEBP"] if suffix == "webp" else []
    result = runner.invoke(cli, ["decode", str(path), "-o", str(out), *extra])
    assert result.exit_code == 0 and result.output == "", result.output
    with Image.open(out) as written:
        decoded = np.asarray(written.convert("RGBA"))
    # Every pixel: WebP too is written lossless (Pillow's default WebP is lossy).
    np.testing.assert_array_equal(decoded, expected)


def test_decoding_an_opaque_image_to_webp_is_lossless(runner, tmp_path, png):
    # Pillow writes WebP lossy unless told: a decode changed the pixels in silence.
    (tmp_path / "src").mkdir()
    path = tmp_path / "src" / "a.kpal"
    assert runner.invoke(cli, ["encode", str(png), "-o", str(path), "-k", "16"]).exit_code == 0
    expected = np.asarray(kpal.decode(path).convert("RGB"))
    out = tmp_path / "a.webp"
    result = runner.invoke(cli, ["decode", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "many"  # a batch: a folder in, a folder out
    result = runner.invoke(cli, ["decode", str(path.parent), "-o", str(folder), "--format", "webp",
                                 "-q", "-j", "1"])
    assert result.exit_code == 0, result.output
    for written_path in (out, folder / "a.webp"):
        with Image.open(written_path) as written:
            assert written.format == "WEBP"
            np.testing.assert_array_equal(np.asarray(written.convert("RGB")), expected)


def test_decoding_to_gif_keeps_full_transparency_and_says_what_it_flattens(runner, tmp_path):
    # GIF lost all transparency without a word; it holds one fully transparent index.
    path, expected = _soft_alpha_kpal(tmp_path)
    out = tmp_path / "out.gif"
    result = runner.invoke(cli, ["decode", str(path), "-o", str(out)])
    assert result.exit_code == 0
    assert result.output == (f"note: {path}: GIF has no partial transparency: translucent "
                             "pixels flattened onto white, fully transparent ones kept (choose "
                             "the colour with --background)\n")
    with Image.open(out) as written:
        decoded = np.asarray(written.convert("RGBA"))
    np.testing.assert_array_equal(decoded[..., 3] == 0, expected[..., 3] == 0)
    opaque = expected[..., 3] == 255
    np.testing.assert_array_equal(decoded[opaque], expected[opaque])
    half = expected[..., 3] == 128
    over_white = (expected[half, :3].astype(np.int64) * 128 + 255 * 127 + 127) // 255
    np.testing.assert_array_equal(decoded[half, :3], over_white)
    assert (decoded[half, 3] == 255).all()


@pytest.mark.parametrize(("mode", "fmt"), [("I;16", "PNG"), ("I", "TIFF"), ("F", "TIFF")])
def test_wide_modes_are_rejected_with_the_mode_named(runner, tmp_path, mode, fmt):
    path = tmp_path / f"in.{fmt.lower()}"
    Image.new(mode, (6, 4)).save(path, fmt)
    with Image.open(path) as check:
        assert check.mode == mode
    _fails(runner.invoke(cli, ["encode", str(path)]), 1,
           f"kpal: error: {path}: mode {mode} (samples wider than 8 bits) is not supported: "
           "scale the values to 0..255 first (16-bit samples: divide by 257, e.g. numpy's "
           "(a // 257).astype('uint8'), or save the image with 8 bits per sample from an image "
           "editor); Pillow's im.convert('L') clips them instead")
    _no_kpal_written(tmp_path)


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", "WEBP"])
def test_multi_frame_images_are_rejected(runner, tmp_path, fmt):
    frames = [Image.new("RGB", (5, 5), (255, 0, 0)), Image.new("RGB", (5, 5), (0, 0, 255))]
    path = tmp_path / f"anim.{fmt.lower()}"
    frames[0].save(path, fmt, save_all=True, append_images=frames[1:], lossless=True)
    _fails(runner.invoke(cli, ["encode", str(path)]), 1,
           f"kpal: error: {path}: has 2 frames; a .kpal file holds one image "
           f"(extract a frame first)")
    _fails(runner.invoke(cli, ["encode", "-", "-o", str(tmp_path / "a.kpal")],
                         input=path.read_bytes()), 1,
           "kpal: error: <stdin>: has 2 frames; a .kpal file holds one image "
           "(extract a frame first)")
    _no_kpal_written(tmp_path)


# ------------------------------------------------------------------ closed standard streams
_LAUNCH = "import sys, _kpal_launcher; sys.argv[0] = 'kpal'; sys.exit(_kpal_launcher.main())"


@pytest.mark.skipif(os.name != "posix", reason="POSIX shell redirections")
def test_closed_stdin_is_one_line_not_a_traceback(tmp_path, png):
    import subprocess
    import sys

    out = tmp_path / "x.kpal"
    for command in ("encode", "decode", "info"):
        args = [command, "-"] + (["-o", str(out)] if command != "info" else [])
        done = subprocess.run(["sh", "-c", 'exec "$@" <&-', "sh", sys.executable, "-c", _LAUNCH,
                               *args], capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stderr) == (
            1, "kpal: error: <stdin>: cannot read: standard input is closed\n"), command
    assert not out.exists()
    # A closed stdin is no obstacle when IN is a file: the output is not opened as fd 0.
    done = subprocess.run(["sh", "-c", 'exec "$@" <&-', "sh", sys.executable, "-c", _LAUNCH,
                           "encode", str(png), "-o", str(out), "-q"],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")
    assert out.read_bytes() == kpal.encode(png)


def test_palette_output_extension_is_checked_before_the_fit(runner, png, tmp_path, monkeypatch):
    # An unknown extension is a usage error found at once, not after the fit.
    import kpal.palettes

    def no_fit(*args, **kwargs):
        raise AssertionError("fitted before checking the output")

    monkeypatch.setattr(kpal.palettes, "fit_palette", no_fit)
    out = tmp_path / "colours.xyz"
    _fails(runner.invoke(cli, ["palette", str(png), "-k", "4", "-o", str(out)]), 2,
           f"kpal: error: {out}: unknown palette extension '.xyz' "
           "(known: .kpal, .gpl, .act, .png, .gif, .hex, .txt)")
    assert not out.exists()


@pytest.mark.parametrize("args", [
    ["encode", ""], ["encode", "{png}", "-o", ""], ["encode", "", "{png}", "-o", "out"],
    ["encode", "{png}", "{png}", "-o", ""], ["decode", ""], ["decode", "{kpal}", "-o", ""],
    ["info", ""], ["palette", "", "-o", "p.gpl"], ["palette", "{png}", "-o", ""],
    ["sample", "{png}", "-o", ""], ["view", ""],
])
def test_an_empty_path_is_refused_not_taken_for_the_current_folder(runner, tmp_path, png,
                                                                  monkeypatch, args):
    # Path("") is ".": `kpal info ''` described the current folder, `kpal encode '' a.png -o d`
    # encoded every image in it, and `kpal encode ''` ended in a traceback.
    kpal_file = tmp_path / "a.kpal"
    kpal_file.write_bytes(kpal.encode(png, 4))
    before = sorted(tmp_path.rglob("*"))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, [a.format(png=png, kpal=kpal_file) for a in args])
    [line] = result.output.splitlines()
    assert line.startswith("kpal: error: Invalid value for ")
    assert line.endswith(": the path is empty")
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)  # never an escaped exception
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


@pytest.mark.parametrize(("args", "what", "suffix", "fmt"), [
    (["-o", "{tmp}/small.png"], "{tmp}/small.png", ".png", "PNG"),
    (["-o", "{tmp}/small.JPG"], "{tmp}/small.JPG", ".jpg", "JPEG"),
    (["{png}", "--ext", ".webp"], "extension '.webp'", ".webp", "WEBP"),
])
def test_a_kpal_file_is_not_given_another_image_formats_extension(runner, tmp_path, png, args,
                                                                   what, suffix, fmt):
    # `kpal encode photo.jpg -o small.png` wrote a .kpal file named small.png: no viewer opened it.
    argv = ["encode", str(png), *(a.format(tmp=tmp_path, png=png) for a in args)]
    _fails(runner.invoke(cli, argv), 2,
           f"kpal: error: {what.format(tmp=tmp_path)}: a .kpal file named {suffix} would not be "
           f"a {fmt} image; name it .kpal (kpal decode writes a {fmt})")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]
    ok = runner.invoke(cli, ["encode", str(png), "-o", str(tmp_path / "small.k4.bin"), "-q"])
    assert ok.exit_code == 0 and (tmp_path / "small.k4.bin").read_bytes()[:5] == b"\x89KPAL"


@pytest.mark.parametrize(("given", "fmt"), [("jpg", "JPEG"), ("TIF", "TIFF"), ("png", "PNG")])
def test_format_takes_the_usual_extension_names(runner, tmp_path, png, given, fmt):
    # --format jpg was "unknown output format 'JPG'": Pillow calls it JPEG.
    (tmp_path / "src").mkdir()
    path = tmp_path / "src" / "a.kpal"
    path.write_bytes(kpal.encode(png, 8))
    single = tmp_path / "single"
    assert runner.invoke(cli, ["decode", str(path), "-o", str(single), "--format", given]
                         ).exit_code == 0
    result = runner.invoke(cli, ["decode", str(path.parent), "-o", str(tmp_path / "many"),
                                 "--format", given, "-q", "-j", "1"])
    assert result.exit_code == 0, result.output
    [many] = (tmp_path / "many").iterdir()
    for written_path in (single, many):
        with Image.open(written_path) as written:
            assert written.format == fmt
    _fails(runner.invoke(cli, ["decode", str(path), "-o", str(single), "--format", "xyz",
                               "--force"]), 2, "kpal: error: unknown output format 'xyz'")


def test_a_missing_choice_is_one_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    sample = Path(__file__).resolve().parent.parent / "samples" / "rocket.jpg"
    result = subprocess.run([sys.executable, "-m", "kpal", "plot", str(sample), "-o",
                             str(tmp_path / "x.png")], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 2
    assert result.stderr == ("kpal: error: Missing option '--kind'. Choose from: compare, "
                             "palette, scatter, iterations, curve\n")
