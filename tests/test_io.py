"""kpal.io: what ``write_atomic`` does to each kind of destination, and ``write_all``.

Regular files are replaced by rename (keeping their mode with ``force``);
symbolic links are written through to their target, atomically in the
target's folder; devices and named pipes are written straight through and
never replaced. The real /dev/null is only ever written to, never forced.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import threading
from pathlib import Path

import pytest

import kpal.io as kpal_io
from kpal.io import is_stream_target, write_all, write_atomic

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX files")
root_only = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                               reason="needs root")

DATA = bytes(range(256)) * 700  # 179,200 bytes: more than a pipe holds at once


def _leftovers(*folders: Path) -> list[str]:
    return sorted(p.name for folder in folders for p in folder.iterdir()
                  if p.name.endswith(".tmp"))


class Drain(threading.Thread):
    """Reads a named pipe to its end, as the process at the other end of it would."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path, self.received = path, b""

    def run(self) -> None:
        with open(self.path, "rb") as f:
            self.received = f.read()


# ------------------------------------------------------------------ regular files
def test_new_file_gets_the_mode_of_a_plain_open(tmp_path):
    out = tmp_path / "new.kpal"
    write_atomic(out, b"abc")
    mask = os.umask(0)
    os.umask(mask)
    assert out.read_bytes() == b"abc"
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask


@posix_only
@pytest.mark.parametrize("mode", [0o600, 0o755, 0o640])
def test_force_keeps_the_replaced_files_mode(tmp_path, mode):
    out = tmp_path / "old.kpal"
    out.write_bytes(b"earlier")
    out.chmod(mode)
    write_atomic(out, b"new contents", force=True)
    assert out.read_bytes() == b"new contents"
    assert stat.S_IMODE(out.stat().st_mode) == mode
    assert _leftovers(tmp_path) == []


@posix_only
def test_force_drops_set_user_id_bits(tmp_path):
    out = tmp_path / "old.kpal"
    out.write_bytes(b"earlier")
    out.chmod(0o4755)
    write_atomic(out, b"new", force=True)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755


@root_only
def test_force_keeps_the_replaced_files_owner(tmp_path):
    out = tmp_path / "theirs.kpal"
    out.write_bytes(b"earlier")
    os.chown(out, 4321, 4322)
    write_atomic(out, b"new", force=True)
    assert (out.stat().st_uid, out.stat().st_gid) == (4321, 4322)
    assert out.read_bytes() == b"new"


def test_existing_file_without_force_is_untouched(tmp_path):
    out = tmp_path / "old.kpal"
    out.write_bytes(b"earlier")
    with pytest.raises(FileExistsError, match="file exists"):
        write_atomic(out, b"new")
    assert out.read_bytes() == b"earlier" and _leftovers(tmp_path) == []


# ------------------------------------------------------------------ symbolic links
@posix_only
def test_symlink_is_written_through_and_stays_a_link(tmp_path):
    real_dir, link_dir = tmp_path / "real", tmp_path / "links"
    real_dir.mkdir()
    link_dir.mkdir()
    target = real_dir / "photo.kpal"
    target.write_bytes(b"earlier")
    target.chmod(0o640)
    link = link_dir / "latest.kpal"
    link.symlink_to(target)
    write_atomic(link, b"new contents", force=True)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == b"new contents"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert _leftovers(real_dir, link_dir) == []


@posix_only
def test_symlink_temporary_file_goes_beside_the_target(tmp_path, monkeypatch):
    real_dir, link_dir = tmp_path / "real", tmp_path / "links"
    real_dir.mkdir()
    link_dir.mkdir()
    (real_dir / "x.kpal").write_bytes(b"earlier")
    (link_dir / "x.kpal").symlink_to(real_dir / "x.kpal")
    folders = []
    real_mkstemp = kpal_io.tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        folders.append(Path(kwargs["dir"]))
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(kpal_io.tempfile, "mkstemp", mkstemp)
    write_atomic(link_dir / "x.kpal", b"new", force=True)
    assert folders == [real_dir]  # the rename stays inside one folder, one filesystem


@posix_only
def test_symlink_without_force_refuses_an_existing_target(tmp_path):
    target = tmp_path / "photo.kpal"
    target.write_bytes(b"earlier")
    link = tmp_path / "link.kpal"
    link.symlink_to(target)
    with pytest.raises(FileExistsError, match="link.kpal: file exists"):
        write_atomic(link, b"new")
    assert link.is_symlink() and target.read_bytes() == b"earlier"


@posix_only
def test_dangling_symlink_creates_its_target(tmp_path):
    target = tmp_path / "sub" / "made.kpal"
    target.parent.mkdir()
    link = tmp_path / "link.kpal"
    link.symlink_to(target)
    write_atomic(link, b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"
    assert _leftovers(tmp_path, target.parent) == []


# ------------------------------------------------------------------ devices and pipes
@posix_only
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
@pytest.mark.parametrize("force", [False, True])
def test_named_pipe_is_written_through(tmp_path, force):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = Drain(fifo)
    reader.start()
    write_atomic(fifo, DATA, force=force)
    reader.join(10)
    assert reader.received == DATA
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="no /dev/null")
def test_dev_null_needs_no_force_and_stays_a_device():
    before = os.stat("/dev/null")
    write_atomic("/dev/null", b"discarded")  # without force: never replaced, so safe
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    assert after.st_ino == before.st_ino


@root_only
def test_force_on_a_device_node_writes_through_it(tmp_path):
    """A private copy of /dev/null (same device numbers): forcing must not replace it."""
    node = tmp_path / "null"
    rdev = os.stat("/dev/null").st_rdev
    os.mknod(node, stat.S_IFCHR | 0o666, rdev)
    write_atomic(node, b"discarded", force=True)
    assert stat.S_ISCHR(os.lstat(node).st_mode) and os.lstat(node).st_rdev == rdev
    assert _leftovers(tmp_path) == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_dev_full_raises_no_space_left():
    with pytest.raises(OSError, match="No space left on device") as caught:
        write_atomic("/dev/full", b"x" * 10)
    assert caught.value.errno == errno.ENOSPC
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_is_stream_target(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    assert not is_stream_target(tmp_path / "file")
    assert not is_stream_target(tmp_path / "missing")
    assert not is_stream_target(tmp_path)
    if Path("/dev/null").exists():
        assert is_stream_target("/dev/null")


# ------------------------------------------------------------------ write_all
def test_write_all_loops_on_short_writes(tmp_path, monkeypatch):
    real_write = os.write
    calls = []

    def short_write(fd, data):
        calls.append(len(data))
        return real_write(fd, bytes(data[:1000]))  # a nearly full disk, a busy pipe

    monkeypatch.setattr(kpal_io.os, "write", short_write)
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        write_all(fd, DATA)
    finally:
        os.close(fd)
    assert path.read_bytes() == DATA and len(calls) == -(-len(DATA) // 1000)


def test_write_all_raises_on_a_failed_write(tmp_path, monkeypatch):
    real_write = os.write
    written = []

    def filling_write(fd, data):
        if written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(real_write(fd, bytes(data[:10])))
        return written[-1]

    monkeypatch.setattr(kpal_io.os, "write", filling_write)
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError, match="No space left on device"):
            write_all(fd, DATA)
    finally:
        os.close(fd)


@posix_only
def test_write_all_waits_on_a_non_blocking_pipe():
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    received = bytearray()

    def drain():
        while chunk := os.read(read_fd, 4096):
            received.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        write_all(write_fd, DATA)  # more than the pipe holds: EAGAIN on the way
    finally:
        os.close(write_fd)
    reader.join(10)
    os.close(read_fd)
    assert bytes(received) == DATA


def test_the_longest_name_the_file_system_takes_can_be_written(tmp_path):
    """The temporary name adds ``.``, ``.``, 8 characters and ``.tmp``: it is cut to fit."""
    for name in ("写" * 80 + ".kpal", "a" * 250 + ".kpal"):  # 245 and 255 bytes
        target = tmp_path / name
        kpal_io.check_destination(target)
        kpal_io.write_atomic(target, b"data")
        assert target.read_bytes() == b"data"
        assert sorted(p.name for p in tmp_path.iterdir()) == [name]
        target.unlink()
