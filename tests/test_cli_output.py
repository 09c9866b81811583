"""Where the CLI's output goes: devices, pipes, links, stdout, closed streams, unwritable formats.

Each case ends in a complete output and exit 0, or one ``kpal: error:`` line,
exit 1 and no output file: never a traceback, a truncated stream that exits 0,
or a replaced device.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kpal
from kpal.cli import cli

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX streams")

#: The real command line in a child process, as the console script runs it.
KPAL = [sys.executable, "-c",
        "import sys, _kpal_launcher; sys.argv[0] = 'kpal'; sys.exit(_kpal_launcher.main())"]


def _env(unbuffered: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "in.png"
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path)
    return path


def _encode(image, k=None) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "only N distinct colours": expected here
        return kpal.encode(image, k)


@pytest.fixture
def expected(png):
    """The bytes ``kpal encode in.png`` writes (default options)."""
    return _encode(png)


@pytest.fixture(scope="module")
def big_kpal(tmp_path_factory):
    """256x256 noise, k = 16: decodes to a 66 KB BMP, more than a pipe holds at once."""
    path = tmp_path_factory.mktemp("big") / "big.kpal"
    rng = np.random.default_rng(4)
    path.write_bytes(_encode(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), 16))
    return path


@pytest.fixture(scope="module")
def wide_kpal(tmp_path_factory):
    """70000x1, k = 2: too wide for GIF, TGA, PCX, ICO, WebP, SGI, PALM and JPEG."""
    path = tmp_path_factory.mktemp("wide") / "wide.kpal"
    row = np.zeros((1, 70000, 3), np.uint8)
    row[0, ::2] = 255
    path.write_bytes(_encode(row, 2))
    return path


def _bmp_of(kpal_path: Path) -> bytes:
    buffer = io.BytesIO()
    kpal.decode(kpal_path).save(buffer, format="BMP")
    return buffer.getvalue()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ------------------------------------------------------------------ devices, pipes, links
@pytest.mark.skipif(not Path("/dev/null").exists(), reason="no /dev/null")
def test_dev_null_output_needs_no_force_and_stays_a_device(runner, png):
    before = os.stat("/dev/null")
    result = runner.invoke(cli, ["encode", str(png), "-o", "/dev/null", "-q"])
    assert result.exit_code == 0, result.output
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (
        before.st_ino, before.st_rdev)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_dev_full_output_is_one_line_exit_1(runner, png):
    result = runner.invoke(cli, ["encode", str(png), "-o", "/dev/full"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "kpal: error: /dev/full: cannot write: No space left on device"]
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


@posix_only
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_named_pipe_output_is_streamed_not_replaced(runner, png, expected, tmp_path):
    fifo = tmp_path / "pipe.kpal"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = runner.invoke(cli, ["encode", str(png), "-o", str(fifo), "-q"])
    reader.join(10)
    assert result.exit_code == 0, result.output
    assert received == [expected]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and _leftovers(tmp_path) == []


@posix_only
def test_symlink_output_is_written_through(runner, png, expected, tmp_path):
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    target = shelf / "real.kpal"
    target.write_bytes(b"an earlier file")
    target.chmod(0o600)
    link = tmp_path / "latest.kpal"
    link.symlink_to(target)
    result = runner.invoke(cli, ["encode", str(png), "-o", str(link), "--force", "-q"])
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and link.resolve() == target
    assert target.read_bytes() == expected
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert _leftovers(tmp_path) == [] and _leftovers(shelf) == []


@posix_only
@pytest.mark.parametrize("mode", [0o600, 0o755])
def test_force_keeps_the_mode(runner, png, expected, tmp_path, mode):
    out = tmp_path / "out.kpal"
    out.write_bytes(b"an earlier file")
    out.chmod(mode)
    result = runner.invoke(cli, ["encode", str(png), "-o", str(out), "--force", "-q"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == expected and stat.S_IMODE(out.stat().st_mode) == mode


@posix_only
def test_link_to_the_input_is_still_the_input(runner, png, tmp_path):
    link = tmp_path / "alias.png"
    link.symlink_to(png)
    before = png.read_bytes()
    result = runner.invoke(cli, ["encode", str(png), "-o", str(link), "--force"])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"kpal: error: {link}: output is the input file; choose another -o"]
    assert png.read_bytes() == before and link.is_symlink()


# ------------------------------------------------------------------ stdout
@posix_only
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "PYTHONUNBUFFERED"])
@pytest.mark.parametrize("command", ["encode", "decode"])
def test_stdout_on_a_full_disk_fails(png, big_kpal, command, unbuffered):
    src = png if command == "encode" else big_kpal
    with open("/dev/full", "wb") as full:
        done = subprocess.run([*KPAL, command, str(src), "-o", "-"], stdout=full,
                              stderr=subprocess.PIPE, text=True, env=_env(unbuffered),
                              timeout=120)
    assert (done.returncode, done.stderr) == (
        1, "kpal: error: <stdout>: cannot write: No space left on device\n")


@posix_only
@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "PYTHONUNBUFFERED"])
def test_stdout_non_blocking_pipe_gets_every_byte(big_kpal, unbuffered):
    """A pipe that is full half the time: short writes and EAGAIN, never a truncated file."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)  # shared with the child: its stdout is non-blocking
    proc = subprocess.Popen([*KPAL, "decode", str(big_kpal), "-o", "-", "--format", "BMP"],
                            stdout=write_fd, stderr=subprocess.PIPE, env=_env(unbuffered))
    os.close(write_fd)
    received = bytearray()
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        while chunk := pipe.read(8192):
            received.extend(chunk)
            threading.Event().wait(0.002)  # a slow reader
    err = proc.communicate(timeout=120)[1]
    assert (proc.returncode, err) == (0, b"")
    assert bytes(received) == _bmp_of(big_kpal)


@posix_only
@pytest.mark.parametrize("args", [["info", "{kpal}"], ["decode", "{kpal}", "-o", "-"]],
                         ids=["info", "decode"])
def test_reader_gone_ends_quietly(big_kpal, args):
    """``kpal ... | head -1``: exit as if killed by SIGPIPE, nothing on stderr."""
    read_fd, write_fd = os.pipe()
    os.close(read_fd)  # the reader is gone before the first byte
    try:
        done = subprocess.run([*KPAL, *(a.format(kpal=big_kpal) for a in args)],
                              stdout=write_fd, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_fd)
    assert (done.returncode, done.stderr) == (141, "")


@posix_only
def test_reader_leaving_midway_ends_quietly(tmp_path):
    """A 1 MB BMP: far more than the pipe holds, so the write meets the closed end."""
    labels = np.random.default_rng(6).integers(0, 4, (512, 2048), dtype=np.uint8)
    image = Image.fromarray(labels, "P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    src = tmp_path / "large.kpal"
    src.write_bytes(_encode(image))
    proc = subprocess.Popen([*KPAL, "decode", str(src), "-o", "-", "--format", "BMP"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=False)
    assert len(proc.stdout.read(10)) == 10
    proc.stdout.close()
    err = proc.communicate(timeout=120)[1]
    assert (proc.returncode, err) == (141, b"")


@posix_only
def test_closed_stdout_is_an_error_when_needed(big_kpal, png, tmp_path, expected):
    closed = ["sh", "-c", 'exec "$@" >&-', "sh", *KPAL]
    done = subprocess.run([*closed, "info", str(big_kpal)], capture_output=True, text=True,
                          timeout=120)
    assert (done.returncode, done.stderr) == (
        1, "kpal: error: <stdout>: cannot write: standard output is closed\n")
    done = subprocess.run([*closed, "decode", str(big_kpal), "-o", "-"], capture_output=True,
                          text=True, timeout=120)
    assert (done.returncode, done.stderr) == (
        1, "kpal: error: <stdout>: cannot write: standard output is closed\n")
    # Nothing to print (-q): a closed stdout does not matter, and the file is right.
    out = tmp_path / "quiet.kpal"
    done = subprocess.run([*closed, "encode", str(png), "-o", str(out), "-q"],
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (0, "")
    assert out.read_bytes() == expected


# ------------------------------------------------------------------ formats that cannot hold it
#: format -> the reason Pillow (or its C library) gives for a 70000-pixel-wide image
TOO_WIDE = {
    "gif": "GIF: int too big to convert",
    "tga": "TGA: int too big to convert",
    "pcx": "PCX: int too big to convert",
    "ico": "ICO: an icon is at most 256x256 pixels, the image is 70000x1: write PNG, or resize "
           "it first",
    "webp": "WEBP: encoding error 5: Image size exceeds WebP limit of 16383 pixels",
    "sgi": "SGI: 'H' format requires 0 <= number <= 65535",
    "palm": "PALM: int too big to convert",
    "jpg": "JPEG: Maximum supported image dimension is 65500 pixels",
}


@pytest.mark.parametrize("ext", sorted(TOO_WIDE))
def test_decode_to_a_format_too_small_for_the_image(runner, wide_kpal, tmp_path, ext):
    out = tmp_path / f"wide.{ext}"
    result = runner.invoke(cli, ["decode", str(wide_kpal), "-o", str(out)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"kpal: error: {out}: cannot write a 70000x1 image as {TOO_WIDE[ext]}"]
    assert not out.exists() and _leftovers(tmp_path) == []


def test_decode_to_stdout_in_a_format_too_small(runner, wide_kpal):
    result = runner.invoke(cli, ["decode", str(wide_kpal), "-o", "-", "--format", "GIF"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "kpal: error: <stdout>: cannot write a 70000x1 image as GIF: int too big to convert"]


def test_decode_to_jpeg_still_converts_the_palette(runner, wide_kpal, tmp_path):
    small = tmp_path / "small.kpal"
    small.write_bytes(_encode(np.asarray(kpal.decode(wide_kpal).convert("RGB"))[:, :500], 2))
    out = tmp_path / "small.jpg"
    result = runner.invoke(cli, ["decode", str(small), "-o", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as im:
        assert (im.format, im.mode, im.size) == ("JPEG", "L", (500, 1))  # black and white: grey


def test_unknown_format_is_still_a_usage_error(runner, wide_kpal):
    result = runner.invoke(cli, ["decode", str(wide_kpal), "-o", "-", "--format", "NOPE"])
    assert result.exit_code == 2
    assert result.output.splitlines() == ["kpal: error: unknown output format 'NOPE'"]


def test_sample_to_webp_too_wide(runner, tmp_path):
    src = tmp_path / "row.png"
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 256, (1, 16400, 3), dtype=np.uint8)).save(src)
    out = tmp_path / "drawn.webp"
    result = runner.invoke(cli, ["sample", str(src), "-o", str(out)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"kpal: error: {out}: cannot write a 16400x1 image as WEBP: encoding error 5: "
        "Image size exceeds WebP limit of 16383 pixels"]
    assert not out.exists()


# ------------------------------------------------------------------ warnings
def test_each_warning_is_shown_once(runner, wide_kpal, monkeypatch):
    real_inspect = kpal.codec.inspect

    def inspect_warning_twice(data, **keywords):
        for _ in range(2):
            warnings.warn("the same thing, twice", UserWarning, stacklevel=1)
        # kpal's and Pillow's bomb warnings: one fact, two wordings
        warnings.warn("image size (9 pixels) exceeds limit", Image.DecompressionBombWarning,
                      stacklevel=1)
        warnings.warn("Image size (9 pixels) exceeds limit.", Image.DecompressionBombWarning,
                      stacklevel=1)
        return real_inspect(data, **keywords)

    monkeypatch.setattr(kpal.codec, "inspect", inspect_warning_twice)
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # as if every warning came from a new place
        result = runner.invoke(cli, ["info", str(wide_kpal)])
    assert result.exit_code == 0, result.output
    shown = [line for line in result.output.splitlines() if "warning" in line]
    assert shown == [f"kpal: warning: {wide_kpal}: the same thing, twice",  # the file named
                     f"kpal: warning: {wide_kpal}: image size (9 pixels) exceeds limit"]


def test_warning_text_is_one_line(runner, wide_kpal, monkeypatch):
    real_inspect = kpal.codec.inspect

    def inspect(data, **keywords):
        warnings.warn("first line\n  second line", UserWarning, stacklevel=1)
        return real_inspect(data, **keywords)

    monkeypatch.setattr(kpal.codec, "inspect", inspect)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        result = runner.invoke(cli, ["info", str(wide_kpal)])
    assert f"kpal: warning: {wide_kpal}: first line second line" in result.output.splitlines()


def test_python_dash_m_kpal_is_the_same_command_line(tmp_path):
    # ``python -m kpal`` for when the script is not on PATH: same output, same exit codes.
    golden = Path(__file__).parent.parent / "samples" / "golden" / "context_k17_70x3.kpal"
    as_module = [sys.executable, "-m", "kpal"]
    info = [subprocess.run([*cmd, "info", str(golden)], capture_output=True, text=True,
                           timeout=120, check=False) for cmd in (as_module, KPAL)]
    assert info[0].returncode == info[1].returncode == 0
    assert info[0].stdout == info[1].stdout and "17 colours" in info[0].stdout
    missing = [subprocess.run([*cmd, "decode", str(tmp_path / "none.kpal"), "-o",
                               str(tmp_path / "x.png")], capture_output=True, text=True,
                              timeout=120, check=False) for cmd in (as_module, KPAL)]
    assert missing[0].returncode == missing[1].returncode == 2
    assert missing[0].stderr == missing[1].stderr
    assert missing[0].stderr.endswith("none.kpal: no such file\n")
    assert not (tmp_path / "x.png").exists()


def test_an_extension_pillow_cannot_write_names_the_output(runner, wide_kpal, tmp_path):
    out = tmp_path / "a.fits"
    result = runner.invoke(cli, ["decode", str(wide_kpal), "-o", str(out)])
    assert result.exit_code == 2
    assert result.stderr == (f"kpal: error: {out}: unknown output format 'FITS' (Pillow "
                             "cannot write it)\n")
    assert not out.exists()


@pytest.mark.filterwarnings("ignore:the image has 256 distinct")
def test_info_wraps_a_256_colour_palette(runner, tmp_path):
    image = np.arange(256 * 3, dtype=np.uint8).reshape(16, 16, 3)
    path = tmp_path / "k256.kpal"
    path.write_bytes(kpal.encode(image, 256))
    result = runner.invoke(cli, ["info", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("  palette "))
    shown = lines[first:first + 32]
    assert all(len(line) <= 80 for line in shown)
    entries = " ".join(line[17:] for line in shown).split()
    assert entries == kpal.codec.inspect(path)["palette"] and len(entries) == 256
    assert lines[first + 32].startswith("  fixed width")
