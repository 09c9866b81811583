"""Interrupted and failing writes: nothing partial at the destination, nothing left behind.

SIGINT and SIGTERM are sent to a real ``kpal encode`` process, either while it
is clustering a large image or while its temporary file is half written. A full
disk is simulated in-process by making the write fail with ENOSPC.
"""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import kpal
import kpal.io as kpal_io
from kpal.cli import cli

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

#: Runs the real CLI, but says READY on stderr when the chosen stage starts, so
#: the test signals a process that is provably mid-encode (or mid-write).
RUNNER = textwrap.dedent("""
    import os, signal, sys, time
    # A shell may start background jobs with SIGINT ignored; a terminal would not.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import kpal.cli, kpal.codec

    def ready():
        sys.stderr.write("READY\\n")
        sys.stderr.flush()

    stage = sys.argv[1]
    if stage == "quantize":
        real_quantize = kpal.codec.quantize
        def quantize(*args, **kwargs):
            ready()
            return real_quantize(*args, **kwargs)
        kpal.codec.quantize = quantize
    else:  # the temporary file is written; hold it before fsync and rename
        def fsync(fd):
            ready()
            time.sleep(60)
        os.fsync = fsync
    sys.argv = ["kpal", *sys.argv[2:]]
    kpal.cli.main()
""")


@pytest.fixture(scope="module")
def big_png(tmp_path_factory):
    """Noise, 700x700: k = 256 k-means on it takes seconds, far longer than the test waits.

    Mid-write tests use a 16x16 crop: they have to finish the encode first.
    """
    folder = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(1)
    noise = Image.fromarray(rng.integers(0, 256, (700, 700, 3), dtype=np.uint8))
    noise.save(folder / "noise.png", compress_level=1)
    noise.crop((0, 0, 16, 16)).save(folder / "crop.png")
    return folder / "noise.png"


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def _interrupt(big_png, out, stage: str, signum: int) -> tuple[int, str]:
    src = big_png if stage == "quantize" else big_png.with_name("crop.png")
    args = [sys.executable, "-c", RUNNER, stage, "encode", str(src), "-o", str(out),
            "-k", "256", "--force"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert proc.stderr.readline() == "READY\n"
        time.sleep(0.3)
        if stage == "write":  # the temporary file really exists at this point
            assert len(_leftovers(out.parent)) == 1
        assert proc.poll() is None, "finished before the signal"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


@pytest.mark.parametrize("stage", ["quantize", "write"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_encode_leaves_earlier_file_intact(tmp_path, big_png, stage, signum):
    out = tmp_path / "out.kpal"
    out.write_bytes(b"an earlier file")
    code, err = _interrupt(big_png, out, stage, signum)
    if signum == signal.SIGINT:  # click starts a new line after the terminal's ^C
        assert (code, err) == (130, "\nkpal: error: interrupted\n")
    else:
        assert (code, err) == (143, "kpal: error: terminated\n")
    assert out.read_bytes() == b"an earlier file"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_encode_creates_no_file(tmp_path, big_png, signum):
    out = tmp_path / "out.kpal"
    code, _ = _interrupt(big_png, out, "write", signum)
    assert code == 128 + signum
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ------------------------------------------------------------------ full disk
class FullDisk(io.FileIO):
    """A file on a disk that fills up after the first 10 bytes."""

    def write(self, data) -> int:
        super().write(bytes(data)[:10])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def full_disk(monkeypatch):
    monkeypatch.setattr(kpal_io.os, "fdopen", lambda fd, mode="rb": FullDisk(fd, "wb"))


@pytest.fixture
def small_png(tmp_path):
    path = tmp_path / "in.png"
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(path)
    return path


def test_full_disk_cli_one_line_exit_1_nothing_left(tmp_path, small_png, full_disk):
    out = tmp_path / "out.kpal"
    result = CliRunner().invoke(cli, ["encode", str(small_png), "-o", str(out)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"kpal: error: {out}: cannot write: No space left on device"]
    assert not out.exists() and _leftovers(tmp_path) == []


def test_full_disk_keeps_the_earlier_file(tmp_path, small_png, full_disk):
    out = tmp_path / "out.kpal"
    out.write_bytes(b"an earlier file")
    result = CliRunner().invoke(cli, ["encode", str(small_png), "-o", str(out), "--force"])
    assert result.exit_code == 1
    assert out.read_bytes() == b"an earlier file" and _leftovers(tmp_path) == []


def test_full_disk_on_decode(tmp_path, full_disk):
    src = tmp_path / "x.kpal"
    with pytest.warns(UserWarning, match="1 distinct colours"):
        src.write_bytes(kpal.encode(np.zeros((2, 2, 3), np.uint8)))
    out = tmp_path / "x.png"
    result = CliRunner().invoke(cli, ["decode", str(src), "-o", str(out)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"kpal: error: {out}: cannot write: No space left on device"]
    assert not out.exists() and _leftovers(tmp_path) == []


def test_full_disk_through_the_api(tmp_path, small_png, full_disk):
    out = tmp_path / "out.kpal"
    with pytest.raises(OSError, match="No space left on device") as caught:
        kpal.save(small_png, out)
    assert caught.value.errno == errno.ENOSPC
    assert not out.exists() and _leftovers(tmp_path) == []


def test_interrupt_inside_write_atomic_removes_the_temporary_file(tmp_path, monkeypatch):
    out = tmp_path / "out.kpal"
    out.write_bytes(b"an earlier file")

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(kpal_io.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        kpal_io.write_atomic(out, b"new contents", force=True)
    assert out.read_bytes() == b"an earlier file" and _leftovers(tmp_path) == []


# ------------------------------------------------------------------ Image.save(path)
def test_pillow_save_failure_leaves_no_new_file(tmp_path):
    """Encoding happens before the first byte: a rejected image leaves no file."""
    transparent = Image.new("RGBA", (4, 4), (1, 2, 3, 0))
    out = tmp_path / "t.kpal"
    with pytest.raises(kpal.KpalError, match="transparent pixels"):
        transparent.save(out)
    assert not out.exists()


def test_pillow_save_interrupted_leaves_no_new_file(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(kpal.plugin.codec, "encode", interrupted)
    out = tmp_path / "t.kpal"
    with pytest.raises(KeyboardInterrupt):
        Image.new("RGB", (4, 4)).save(out)
    assert not out.exists()
