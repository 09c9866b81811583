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
from pathlib import Path

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
    with pytest.warns(UserWarning, match="1 distinct colour,"):
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
    wide = Image.new("I;16", (4, 4))
    out = tmp_path / "t.kpal"
    with pytest.raises(kpal.KpalError, match="samples wider than 8 bits"):
        wide.save(out)
    assert not out.exists()


def test_pillow_save_interrupted_leaves_no_new_file(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(kpal.plugin.codec, "encode_image", interrupted)
    out = tmp_path / "t.kpal"
    with pytest.raises(KeyboardInterrupt):
        Image.new("RGB", (4, 4)).save(out)
    assert not out.exists()


@pytest.fixture
def interrupted_encode(monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(kpal.plugin.codec, "encode_image", interrupted)


def test_pillow_save_interrupted_leaves_a_device_alone(tmp_path, interrupted_encode):
    """An empty file is removed only when it is a regular file: never /dev/null."""
    out = tmp_path / "null"
    out.symlink_to(os.devnull)
    with pytest.raises(KeyboardInterrupt):
        Image.new("RGB", (4, 4)).save(out, "KPAL")
    assert out.is_symlink() and Path(os.devnull).exists()


def test_pillow_save_interrupted_leaves_the_callers_file_object_alone(tmp_path,
                                                                      interrupted_encode):
    out = tmp_path / "t.kpal"
    with out.open("wb") as f:
        with pytest.raises(KeyboardInterrupt):
            Image.new("RGB", (4, 4)).save(f, "KPAL")
        assert not f.closed
        f.write(b"still mine")
    assert out.read_bytes() == b"still mine"


@pytest.mark.parametrize("mode", ["w+b", "r+b"])
def test_pillow_save_interrupted_leaves_the_callers_read_write_file_alone(tmp_path, mode,
                                                                         interrupted_encode):
    """A file object opened w+b (as Pillow opens one, and NamedTemporaryFile) is the caller's."""
    out = tmp_path / "t.kpal"
    out.write_bytes(b"")
    with out.open(mode) as f:
        with pytest.raises(KeyboardInterrupt):
            Image.new("RGB", (4, 4)).save(f, "KPAL")
        assert not f.closed
        f.write(b"still mine")
    assert out.read_bytes() == b"still mine"


def test_pillow_save_interrupted_keeps_a_symlinked_target(tmp_path, interrupted_encode):
    target = tmp_path / "target.kpal"
    target.write_bytes(b"old")
    link = tmp_path / "link.kpal"
    link.symlink_to(target)
    with pytest.raises(KeyboardInterrupt):
        Image.new("RGB", (4, 4)).save(link)
    assert link.is_symlink() and target.exists()  # emptied by Pillow's open, not removed


# ------------------------------------------------------------------ the console script's launcher
#: The launcher as the console script runs it, saying READY once it is imported
#: (its handlers are installed on import): from then on every signal is kpal's.
LAUNCHER = textwrap.dedent("""
    import sys
    import _kpal_launcher
    sys.stderr.write("READY\\n")
    sys.stderr.flush()
    sys.argv = ["kpal", *sys.argv[1:]]
    sys.exit(_kpal_launcher.main())
""")

#: signal -> (exit code, the whole of stderr)
SIGNALLED = {
    signal.SIGINT: (130, "\nkpal: error: interrupted\n"),  # a new line after the terminal's ^C
    signal.SIGTERM: (143, "kpal: error: terminated\n"),
    signal.SIGHUP: (129, "kpal: error: hangup\n"),
}
SIGNAL_IDS = ["SIGINT", "SIGTERM", "SIGHUP"]
DELAYS = [0, 0.02, 0.05, 0.1, 0.3]  # importing numpy and Pillow, then clustering


def _launch(script: str, *args, **popen) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", script, *map(str, args)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, **popen)
    assert proc.stderr.readline() == "READY\n"
    return proc


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


@pytest.mark.parametrize("delay", DELAYS)
@pytest.mark.parametrize("signum", list(SIGNALLED), ids=SIGNAL_IDS)
def test_signal_during_start_up_or_encode_is_one_line(tmp_path, big_png, signum, delay):
    out = tmp_path / "out.kpal"
    proc = _launch(LAUNCHER, "encode", big_png, "-o", out, "-k", "256")
    time.sleep(delay)
    assert proc.poll() is None, "finished before the signal"
    proc.send_signal(signum)
    assert _finish(proc) == SIGNALLED[signum]
    _absent_or_complete(tmp_path, out)


def _absent_or_complete(folder, out) -> None:
    """No temporary file left, and OUT absent, or whole (the signal came after the write).

    The encode takes seconds, so OUT is normally absent; on a machine so busy
    that the test slept through the whole encode, the file must be complete.
    """
    left = sorted(p.name for p in folder.iterdir())
    assert left in ([], [out.name])
    if left:
        kpal.decode(out).load()  # the checksum covers every byte


@pytest.mark.parametrize("delay", DELAYS)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_installed_console_script_never_shows_a_traceback(tmp_path, big_png, signum, delay):
    """The real ``kpal`` script. Before Python runs the launcher the signal's default
    action ends it silently (-signum here, 128 + signum in a shell); after, kpal's line."""
    script = Path(sys.executable).with_name("kpal")
    if not script.exists():
        pytest.skip("the kpal console script is not installed beside this Python")
    out = tmp_path / "out.kpal"
    proc = subprocess.Popen([script, "encode", big_png, "-o", out, "-k", "256"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    time.sleep(delay)
    proc.send_signal(signum)
    code, err = _finish(proc)
    assert (code, err) in [SIGNALLED[signum], (-signum, "")]
    _absent_or_complete(tmp_path, out)


def test_console_script_points_at_the_launcher():
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "kpal"]
    assert script.value == "_kpal_launcher:main"


def test_sighup_mid_write_removes_the_temporary_file(tmp_path, big_png):
    """SIGHUP (the terminal closed) cleans up like SIGTERM: earlier file intact, no temp."""
    out = tmp_path / "out.kpal"
    out.write_bytes(b"an earlier file")
    code, err = _interrupt(big_png, out, "write", signal.SIGHUP)
    assert (code, err) == SIGNALLED[signal.SIGHUP]
    assert out.read_bytes() == b"an earlier file"
    assert _leftovers(tmp_path) == []


#: The launcher, with the signal sent to itself at a chosen point after the output
#: file was renamed into place.
AFTER_RENAME = textwrap.dedent("""
    import os, signal, sys
    import _kpal_launcher
    import kpal.io, kpal.cliio

    where, signum = sys.argv[1], int(sys.argv[2])
    if where == "rename":  # inside write_atomic, right after os.replace
        real_replace = os.replace
        def replace(*args):
            real_replace(*args)
            os.kill(os.getpid(), signum)
        kpal.io.os.replace = replace
    else:  # the command is over and its handlers are gone; the launcher's are back
        real_restore = kpal.cliio._restore_signals
        def restore(previous):
            real_restore(previous)
            os.kill(os.getpid(), signum)
        kpal.cliio._restore_signals = restore
    sys.argv = ["kpal", *sys.argv[3:]]
    sys.exit(_kpal_launcher.main())
""")


@pytest.mark.parametrize("where", ["rename", "exit"])
@pytest.mark.parametrize("signum", list(SIGNALLED), ids=SIGNAL_IDS)
def test_signal_after_the_rename_exits_128_plus_signum_with_the_file_complete(
        tmp_path, big_png, signum, where):
    """The rule: a signal is always 128 + signum; the file, renamed already, is complete."""
    src = big_png.with_name("crop.png")
    out = tmp_path / "out.kpal"
    out.write_bytes(b"an earlier file")
    done = subprocess.run([sys.executable, "-c", AFTER_RENAME, where, str(int(signum)), "encode",
                           src, "-o", out, "-k", "8", "--force", "-q"],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == SIGNALLED[signum]
    assert out.read_bytes() == kpal.encode(src, 8)
    assert _leftovers(tmp_path) == []


def test_ignored_sighup_stays_ignored(tmp_path, big_png):
    """Under ``nohup`` SIGHUP is ignored on purpose: kpal keeps going and finishes."""
    src = big_png.with_name("crop.png")
    out = tmp_path / "out.kpal"
    proc = _launch(RUNNER, "quantize", "encode", src, "-o", out, "-k", "8", "-q",
                   preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    proc.send_signal(signal.SIGHUP)
    assert _finish(proc) == (0, "")
    assert out.read_bytes() == kpal.encode(src, 8)


def test_a_signal_swallowed_by_a_library_still_ends_kpal(tmp_path, monkeypatch):
    """A library fallback that catches the signal's exception (an import failing because
    of it, say) must not turn the signal into success."""
    from kpal import codec

    real = codec.upright

    def swallowing(image):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler raises here
        except BaseException:  # noqa: BLE001, S110 - what a careless fallback does
            pass
        return real(image)

    monkeypatch.setattr(codec, "upright", swallowing)
    src = tmp_path / "in.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(src)
    result = CliRunner().invoke(cli, ["encode", str(src), "-o", str(tmp_path / "o.kpal")])
    assert result.exit_code == 128 + signal.SIGTERM
    assert result.output.splitlines()[-1] == "kpal: error: terminated"


@pytest.mark.parametrize("swallowed", [True, False])
def test_sigint_turned_into_another_error_still_starts_a_new_line(swallowed):
    # A ^C that arrives inside an import comes out of numpy as an ImportError: the error
    # line then lacked the new line after the terminal's ^C (click only adds it for its
    # own KeyboardInterrupt).
    import click

    from kpal.cliio import KpalGroup

    @click.group(cls=KpalGroup)
    def group():
        pass

    @group.command()
    def work():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt as e:
            if swallowed:
                raise ImportError("numpy: interrupted while importing") from e
            raise

    result = CliRunner().invoke(group, ["work"])
    assert result.exit_code == 130
    assert result.stderr == "\nkpal: error: interrupted\n"
