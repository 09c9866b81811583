"""Batches at their edges: Ctrl-C while the workers start, odd ``--ext`` values, an output
folder that cannot be made, the progress line on narrow and dumb terminals, the summary's
wording, and patterns that match only ``.kpal`` files.
"""

from __future__ import annotations

import io
import math
import os
import re
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
from kpal import batch, progress
from kpal.cli import cli

#: The installed command, started the way the console script starts it.
KPAL = [sys.executable, "-c",
        "import sys, _kpal_launcher; sys.argv[0] = 'kpal'; sys.exit(_kpal_launcher.main())"]
LINUX = sys.platform.startswith("linux")


def _noise(folder: Path, count: int, size: int = 80) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    paths = []
    for i in range(count):
        path = folder / f"{i:02}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


# ------------------------------------------------------------------ Ctrl-C at start-up
def _group_members(pgid: int) -> dict[int, bytes]:
    """The processes of a process group and their command lines (Linux /proc)."""
    members = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            cmdline = Path(entry.path, "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid:  # pgrp: the 5th field, the 3rd after the name
            members[int(entry.name)] = cmdline
    return members


@pytest.mark.skipif(not LINUX, reason="the fork server and /proc")
@pytest.mark.parametrize("delay", [0.0, 0.1, 0.3, 0.6, 1.0])
def test_ctrl_c_while_the_fork_server_loads_is_one_line_and_leaves_whole_files(tmp_path,
                                                                               delay):
    """SIGINT to the whole process group (a terminal's Ctrl-C), ``delay`` s after the fork
    server started: while it starts Python, imports numba, loads the kernels."""
    folder = tmp_path / "noise"
    # Enough files that the batch cannot end before the signal, however fast the
    # fork server loads (a warm numba cache) or however late the poll below sees it.
    sources = _noise(folder, 24)
    out = tmp_path / "out"
    proc = subprocess.Popen([*KPAL, "encode", str(folder), "-o", str(out), "-k", "16",
                             "-j", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not any(b"multiprocessing.forkserver" in cmd
                      for cmd in _group_members(proc.pid).values()):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "no fork server after 60 s"
            time.sleep(0.005)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert "Traceback" not in err and "Fatal Python error" not in err, err
    assert proc.returncode == 130, err
    assert err.splitlines()[-1] == "kpal: error: interrupted"
    # Every output is complete (what a full encode writes) or absent; no temporary file.
    written = sorted(out.glob("*")) if out.exists() else []
    assert len(written) < len(sources), "the batch was not stopped"
    for path in written:
        assert path.suffix == ".kpal", _listing(out)
        assert path.read_bytes() == kpal.encode(folder / f"{path.stem}.png", 16)
    assert list(tmp_path.rglob("*.tmp")) == []


def test_ctrl_c_while_a_worker_starts_is_raised_after_the_start():
    reached = False
    with pytest.raises(KeyboardInterrupt):
        with batch._signals_deferred():
            signal.raise_signal(signal.SIGINT)
            reached = True
    assert reached, "the start of the worker was cut in half"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    steps = []
    with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C does not wait for the block
        with batch._signals_deferred():
            signal.raise_signal(signal.SIGINT)
            steps.append("first held")
            signal.raise_signal(signal.SIGINT)
            steps.append("second held")
    assert steps == ["first held"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_while_a_worker_starts_are_raised_after_the_start(signame):
    """As the command line turns them into an exit (its Terminated), after the block."""
    signum = getattr(signal, signame, None)
    if signum is None:
        pytest.skip(f"no {signame} here")

    class Stop(Exception):
        pass

    def stop(received, frame):
        raise Stop(received)

    previous = signal.signal(signum, stop)
    try:
        reached = False
        with pytest.raises(Stop):
            with batch._signals_deferred():
                signal.raise_signal(signum)
                reached = True
        assert reached, "the start of the worker was cut in half"
        assert signal.getsignal(signum) is stop
    finally:
        signal.signal(signum, previous)


@pytest.mark.skipif(not LINUX, reason="the fork server and /proc")
def test_the_fork_server_starts_with_sigint_blocked_and_its_workers_ignore_it():
    """The fork server inherits the mask: no Ctrl-C while Python starts and imports numba."""
    code = textwrap.dedent("""
        import concurrent.futures as cf, os, signal
        from multiprocessing import forkserver
        from pathlib import Path
        from kpal import batch

        def blocked(pid):
            with open(f"/proc/{pid}/status") as status:
                mask = next(line.split()[1] for line in status if line.startswith("SigBlk:"))
            return bool(int(mask, 16) & 1 << (signal.SIGINT - 1))

        context = batch._context(True)
        batch._start_fork_server(context)
        server = forkserver._forkserver._forkserver_pid
        print(blocked(server), blocked("self"))
        # A worker forked from it: SIGINT unblocked once it ignores it.
        with cf.ProcessPoolExecutor(1, mp_context=context, initializer=batch._init_worker,
                                    initargs=(os.getpid(),)) as pool:
            status = pool.submit(Path("/proc/self/status").read_text).result()
            handler = pool.submit(signal.getsignal, signal.SIGINT).result()
        mask = next(line.split()[1] for line in status.splitlines()
                    if line.startswith("SigBlk:"))
        print(bool(int(mask, 16) & 1 << (signal.SIGINT - 1)), handler is signal.SIG_IGN)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.split() == ["True", "False", "False", "True"], done.stderr


# ------------------------------------------------------------------ --ext
@pytest.fixture
def one_png(tmp_path) -> Path:
    path = tmp_path / "a.png"
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)
    return path


SEPARATOR = "it cannot hold a path separator ('/'); write into another folder (-o, or out_dir=)"


@pytest.mark.parametrize(("ext", "problem"), [
    ("/x.kpal", SEPARATOR),
    ("sub/x.kpal", SEPARATOR),
    (".kpal/", SEPARATOR),
    ("kpal", "it leaves the outputs without a file extension (photo → photokpal); start it "
             "with a dot: .kpal"),
    (".", "it leaves the outputs without a file extension (photo → photo.)"),
    ("-k16", "it leaves the outputs without a file extension (photo → photo-k16)"),
])
def test_encode_ext_that_is_not_an_extension_is_a_usage_error(runner, one_png, ext, problem):
    result = runner.invoke(cli, ["encode", str(one_png), "--ext", ext, "-q"])
    assert (result.exit_code, result.stderr) == (2, f"kpal: error: extension {ext!r}: {problem}\n")
    assert _listing(one_png.parent) == ["a.png"]


@pytest.mark.parametrize("ext", ["-fs8.kpal", "-k16.kpal", ".kpal", ".v2.kpal"])
def test_pngquant_style_ext_values_still_work(runner, one_png, ext):
    result = runner.invoke(cli, ["encode", str(one_png), "--ext", ext, "-q", "-k", "2"])
    assert result.exit_code == 0, result.output
    assert (one_png.parent / f"a{ext}").read_bytes() == kpal.encode(one_png, 2)


@pytest.mark.parametrize(("args", "problem"), [
    (["--ext", "./b.png"], SEPARATOR),
    (["--ext", "/x.png"], SEPARATOR),
    (["--ext", "png"], "it leaves the outputs without a file extension (photo → photopng); "
                       "start it with a dot: .png"),
    (["--format", "png", "--ext", "."], "it leaves the outputs without a file extension "
                                        "(photo → photo.)"),
    (["--ext", ""], "it is empty; give an extension such as .kpal"),
])
def test_decode_ext_that_is_not_an_extension_is_a_usage_error(runner, one_png, args, problem):
    kpal_path = one_png.with_suffix(".kpal")
    kpal_path.write_bytes(kpal.encode(one_png, 2))
    result = runner.invoke(cli, ["decode", str(kpal_path), *args, "-q"])
    ext = args[-1]
    assert (result.exit_code, result.stderr) == (2, f"kpal: error: extension {ext!r}: {problem}\n")
    assert _listing(one_png.parent) == ["a.kpal", "a.png"]


@pytest.mark.parametrize("ext", ["", "/x.kpal", "kpal", "."])
def test_plan_and_encode_many_refuse_the_ext_before_any_work(one_png, ext):
    with pytest.raises(batch.BatchError, match=re.escape(f"extension {ext!r}: it ")):
        batch.plan("encode", [str(one_png)], None, ext=ext)
    with pytest.raises(batch.BatchError, match=re.escape(f"extension {ext!r}: it ")):
        batch.encode_many(one_png, ext=ext, jobs=1)
    assert _listing(one_png.parent) == ["a.png"]


# ------------------------------------------------------------------ output folder
@pytest.fixture
def pics(tmp_path) -> Path:
    folder = tmp_path / "pics"
    _noise(folder, 3, size=24)
    return folder


def test_an_output_folder_under_a_file_fails_at_once_naming_it(runner, pics, tmp_path,
                                                                monkeypatch):
    plain = tmp_path / "plainfile"
    plain.write_text("")
    started = []
    monkeypatch.setattr(batch, "run_job", lambda job: started.append(job))
    for out in (plain / "out", plain / "out" / "deeper"):
        result = runner.invoke(cli, ["encode", str(pics), "-o", str(out), "-j", "1"])
        assert (result.exit_code, result.stderr) == (
            1, f"kpal: error: {out}: cannot create the output folder: {plain} is a file\n")
    assert started == []
    with pytest.raises(batch.OutputFolderError, match=f"{re.escape(str(plain))} is a file"):
        batch.encode_many(pics, plain / "out", jobs=1)
    assert plain.read_text() == "" and sorted(os.listdir(tmp_path)) == ["pics", "plainfile"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="Linux /proc refuses new entries")
def test_an_output_folder_the_filesystem_refuses_fails_at_once(pics):
    out = "/proc/kpal-batch-out/sub"
    with pytest.raises(batch.OutputFolderError,
                       match=re.escape(f"{out}: cannot create the output folder in /proc: ")):
        batch.plan("encode", [str(pics)], out, ext=".kpal", wanted=batch.image_file)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="permission bits do not stop root")
def test_a_read_only_output_folder_fails_at_once(pics, tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        with pytest.raises(batch.OutputFolderError,
                           match=re.escape(f"{out}: cannot write in the output folder: "
                                           f"Permission denied")):
            batch.encode_many(pics, out, jobs=1)
    finally:
        out.chmod(0o755)


def test_a_new_output_folder_is_checked_but_not_created_before_the_batch_runs(pics, tmp_path):
    out = tmp_path / "new" / "out"
    jobs = batch.plan("encode", [str(pics)], out, ext=".kpal", wanted=batch.image_file)
    assert len(jobs) == 3 and not (tmp_path / "new").exists()
    assert [r.error for r in batch.run(jobs, 1)] == [None] * 3
    assert _listing(out) == ["00.kpal", "01.kpal", "02.kpal"]


# ------------------------------------------------------------------ .kpal inputs of encode
def test_a_pattern_matching_only_kpal_files_says_they_were_skipped(runner, one_png):
    folder = one_png.parent
    for name in ("x.kpal", "y.kpal"):
        (folder / name).write_bytes(kpal.encode(one_png, 2))
    result = runner.invoke(cli, ["encode", str(folder / "*.kpal")])
    assert (result.exit_code, result.stderr) == (
        2, f"kpal: error: {folder / '*.kpal'}: matches 2 files, all skipped: they are .kpal "
           f"files already\n")
    result = runner.invoke(cli, ["decode", str(folder / "*.png")])
    assert (result.exit_code, result.stderr) == (
        2, f"kpal: error: {folder / '*.png'}: matches 1 file, skipped: it is not a .kpal "
           f"file\n")
    one_png.unlink()
    result = runner.invoke(cli, ["encode", str(folder), "-o", str(folder / "out")])
    assert (result.exit_code, result.stderr) == (
        2, f"kpal: error: {folder}: no input file found: 2 files skipped, they are .kpal "
           f"files already (-r, or recursive=True, takes sub-folders too)\n")


# ------------------------------------------------------------------ progress line
def _frames(text: str) -> list[str]:
    """What the terminal shows in turn: the text between carriage returns and new lines."""
    return [frame for frame in re.split("[\r\n]", text) if frame.strip()]


@pytest.mark.parametrize("width", [12, 20, 30, 45, 80, 200])
def test_the_progress_line_fits_the_width_and_uses_no_escape(width):
    out = io.StringIO()
    now = [0.0]
    with progress.Progress(40, out, width=width, rewrite=True, clock=lambda: now[0]) as bar:
        for i in range(40):
            now[0] += 0.7
            bar.add(bytes_in=2_345_678, bytes_out=456_789)
            if i == 20:
                bar.say("kpal: error: photos/bad.png: not an image Pillow can read")
    text = out.getvalue()
    assert "\x1b" not in text
    frames = _frames(text)
    assert "kpal: error: photos/bad.png: not an image Pillow can read" in frames
    shown = [f.rstrip() for f in frames if not f.startswith("kpal: error")]
    assert shown and all(len(f) <= width - 1 for f in shown), shown
    assert all(f.startswith("kpal ") and "/40" in f for f in shown)
    if width >= 80:
        assert shown[-1] == f"kpal 40/40 [{'#' * 30}] 93.8 MB → 18.3 MB, 1.4 images/s"
    assert text.endswith("\r" + " " * len(shown[-1]) + "\r")  # taken off for the summary


def test_a_dumb_terminal_gets_plain_lines_now_and_then():
    out = io.StringIO()
    now = [0.0]
    with progress.Progress(30, out, width=70, rewrite=False, clock=lambda: now[0]) as bar:
        for _ in range(30):
            now[0] += 1.0  # one file a second: a line every PLAIN_EVERY seconds
            bar.add(bytes_in=1000, bytes_out=100)
        bar.say("kpal: warning: photos/a.png: 3 distinct colours")
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert lines == [f"kpal 1/30 [{' ' * 17}] 1.0 kB → 100 B, 1.0 images/s, 0:29 left",
                     f"kpal 11/30 [{'#' * 5}{' ' * 9}] 11.0 kB → 1.1 kB, 1.0 images/s, 0:19 left",
                     f"kpal 21/30 [{'#' * 9}{' ' * 5}] 21.0 kB → 2.1 kB, 1.0 images/s, 0:09 left",
                     "kpal: warning: photos/a.png: 3 distinct colours"]
    narrow = progress.Progress(30, io.StringIO(), width=30, rewrite=False, clock=lambda: 0.0)
    narrow.done, narrow.bytes_in, narrow.started = 11, 11_000, -11.0
    assert narrow.line(0.0, 30) == "kpal 11/30 [##    ] 0:19 left"  # 29 columns
    assert narrow.line(0.0, 12) == "kpal 11/30"


def test_the_width_comes_from_columns_or_the_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "33")
    out = io.StringIO()
    with progress.Progress(3, out, rewrite=True, clock=lambda: 1.0) as bar:
        bar.add(bytes_in=5_000, bytes_out=1_000)
    assert max(len(f.rstrip()) for f in _frames(out.getvalue())) == 32
    monkeypatch.delenv("COLUMNS")
    if not LINUX:
        return
    leader, follower = _pseudo_terminal(41)
    try:
        with open(follower, "w", closefd=False) as terminal:
            assert progress.columns(terminal) == 41
    finally:
        os.close(leader)
        os.close(follower)


def test_term_decides_whether_lines_are_rewritten():
    assert progress.rewrites_lines({"TERM": "xterm-256color"})
    assert not progress.rewrites_lines({"TERM": "dumb"})
    assert not progress.rewrites_lines({})


# ------------------------------------------------------------------ summary wording
@pytest.mark.parametrize(("bytes_out", "text"), [
    (100, "10.00× smaller than the inputs"),
    (500, "2.00× smaller than the inputs"),
    (900, "10 % smaller than the inputs"),
    (996, "the size of the inputs"),
    (1004, "the size of the inputs"),
    (1250, "25 % larger than the inputs"),
    (3000, "3.00× larger than the inputs"),
])
def test_size_change_reads_naturally(bytes_out, text):
    assert progress.size_change(1000, bytes_out) == text


def _result(name: str, psnr: float, seconds: float = 0.1) -> batch.Result:
    return batch.Result(f"{name}.png", f"{name}.kpal", 1000, 998, 16, psnr, seconds)


def test_summary_of_a_batch_of_lossless_files_and_of_a_mixed_one():
    lossless = batch.summarize([_result("a", math.inf), _result("b", math.inf, 0.3)])
    assert progress.summary_lines(lossless, "encoded", 2.0) == [
        "2 files: 2 encoded",
        "  bytes in       2,000 bytes",
        "  bytes out      1,996 bytes (the size of the inputs)",
        "  mean PSNR      lossless (all 2 files)",
        "  slowest        b.png (0.30 s)",
        "  time           2.00 s, 1.0 images/s",
    ]
    mixed = batch.summarize([_result("a", math.inf), _result("b", 30.0), _result("c", 32.0),
                             batch.Result("d.png", "d.kpal", error="d.png: file is empty")])
    lines = progress.summary_lines(mixed, "encoded", 1.0)
    assert lines[0] == "4 files: 3 encoded, 1 failed"
    assert "  mean PSNR      31.00 dB over 2 files; 1 more lossless" in lines
    assert lines[-1] == "  failed         d.png: file is empty"


# ------------------------------------------------------------------ the real command on a pty
def _pseudo_terminal(columns: int) -> tuple[int, int]:
    """A pseudo-terminal ``columns`` wide: (leader, follower) file descriptors."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    return leader, follower


def _run_on_a_terminal(args: list[str], columns: int, term: str) -> str:
    """Run kpal with stdin, stdout and stderr on a pseudo-terminal ``columns`` wide."""
    leader, follower = _pseudo_terminal(columns)
    env = {**os.environ, "TERM": term}
    env.pop("COLUMNS", None)
    proc = subprocess.Popen([*KPAL, *args], stdin=follower, stdout=follower, stderr=follower,
                            env=env, start_new_session=True)
    os.close(follower)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the process has gone and the terminal is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=120) == 0, b"".join(chunks).decode(errors="replace")
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return b"".join(chunks).decode()


@pytest.mark.skipif(not LINUX, reason="pseudo-terminal sizes")
@pytest.mark.parametrize("term", ["dumb", "xterm-256color"])
def test_the_batch_on_a_narrow_or_dumb_terminal(tmp_path, term):
    folder = tmp_path / "pb"
    _noise(folder, 4, size=40)
    shown = _run_on_a_terminal(["encode", str(folder), "-o", str(tmp_path / "out"), "-j", "2",
                                "-k", "8"], 30, term)
    assert "\x1b" not in shown
    progress_frames = [f for f in _frames(shown) if f.startswith("kpal")]
    assert all(len(f.rstrip()) <= 29 for f in progress_frames), progress_frames
    if term == "dumb":
        assert "\r" not in shown.replace("\r\n", "\n")
    assert "4 files: 4 encoded" in shown


# ------------------------------------------------------------------ large-image warnings
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_large_images_warning_names_each_file_in_every_command(tmp_path, monkeypatch, jobs):
    from click.testing import CliRunner

    folder = tmp_path / "big"
    folder.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (60, 60, 3), np.uint8)
    for name in ("a", "b"):
        kpal.save(pixels, folder / f"{name}.kpal", 4)
    Image.fromarray(pixels).save(tmp_path / "c.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # 3,600 pixels: warned, not refused
    warning = ": Image size (3600 pixels) exceeds limit of 2000 pixels, could be decompression"
    runner = CliRunner()
    for argv in (["decode", str(folder), "-o", str(tmp_path / "out"), "-j", jobs],
                 ["info", str(folder), "-j", jobs]):
        result = runner.invoke(cli, argv)
        assert result.exit_code == 0, result.output
        lines = [line for line in result.stderr.splitlines() if "Image size" in line]
        assert sorted(lines) == [f"kpal: warning: {folder / n}.kpal{warning} bomb DOS attack."
                                 for n in ("a", "b")], result.stderr
    for argv, name in ((["info", str(folder / "a.kpal")], folder / "a.kpal"),
                       (["decode", str(folder / "a.kpal"), "-o", str(tmp_path / "a.png")],
                        folder / "a.kpal"),
                       (["encode", str(tmp_path / "c.png"), "-o", str(tmp_path / "c.kpal"),
                         "-q"], tmp_path / "c.png")):
        result = runner.invoke(cli, argv)
        assert result.exit_code == 0, result.output
        assert f"kpal: warning: {name}{warning} bomb DOS attack." in result.stderr.splitlines()


def test_force_and_skip_existing_together_are_refused(runner, one_png, tmp_path):
    for argv in (["encode", str(one_png), "-o", str(tmp_path / "x.kpal")],
                 ["decode", str(tmp_path / "x.kpal"), "-o", str(tmp_path / "x.png")],
                 ["encode", str(one_png.parent), "-o", str(tmp_path / "out")]):
        result = runner.invoke(cli, [*argv, "--force", "--skip-existing"])
        assert (result.exit_code, result.stderr) == (
            2, "kpal: error: --force and --skip-existing contradict each other: give one\n")
    with pytest.raises(batch.BatchError, match="force and skip_existing contradict"):
        batch.encode_many(one_png, tmp_path / "out", force=True, skip_existing=True)


def test_a_lone_folder_to_decode_suggests_an_image_extension(runner, tmp_path):
    result = runner.invoke(cli, ["decode", str(tmp_path)])
    assert result.exit_code == 2 and "--ext (e.g. --ext .png)" in result.stderr


def _grandchildren(pid: int) -> list[int]:
    """Processes started by the children of ``pid`` (a fork server's workers)."""
    found = []
    for child in _children(pid):
        found += _children(child)
    return found


def _children(pid: int) -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out += [int(c) for c in f.read().split()]
    return out


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux's /proc")
def test_a_worker_killed_mid_batch_leaves_no_file_without_a_record(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(24):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), np.uint8)).save(folder / f"{i:02}.png")
    results = []
    for result in batch.encode_many(folder, tmp_path / "out", jobs=2, k=8):
        if not results:  # the pool runs: kill one of its workers, as the OOM killer would
            workers = _grandchildren(os.getpid())  # forked by the fork server, our child
            os.kill(workers[0], signal.SIGKILL)
        results.append(result)
    assert sorted(r.path for r in results) == sorted(str(p) for p in folder.iterdir())
    failed = [r for r in results if not r.ok]
    assert failed, "no file failed: the worker was not killed"
    assert all(r.error == f"{r.path}: not encoded or not finished: a worker process died "
               "(killed, or out of memory), and the pool stopped" for r in failed)
    assert len({p.name for p in (tmp_path / "out").iterdir()}) == 24 - len(failed)


# ------------------------------------------------------------------ Ctrl-C with queued files
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_ctrl_c_starts_none_of_the_files_the_pool_had_queued(tmp_path, photo):
    """Each worker finishes the image it holds; files already queued inside the pool
    (out of reach of ``cancel()``) are not started."""
    import threading

    pipes = [tmp_path / f"pipe{i}.png" for i in range(2)]
    for pipe in pipes:
        os.mkfifo(pipe)
    queued = [tmp_path / f"q{i}.png" for i in range(4)]
    for path in queued:
        photo.save(path)
    png = io.BytesIO()
    photo.save(png, "PNG")

    def feed() -> None:
        # Each open waits until a worker opens that pipe to read it: both are then busy,
        # and the pool has queued the next files. Ctrl-C; then the pipes get their image.
        writers = [pipe.open("wb") for pipe in pipes]
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)
        for writer in writers:
            with writer:
                writer.write(png.getvalue())

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    with pytest.raises(KeyboardInterrupt):
        list(batch.encode_many([*map(str, pipes), *map(str, queued)], tmp_path / "out",
                               jobs=2, k=8))
    feeder.join(timeout=60)
    assert not feeder.is_alive()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["pipe0.kpal", "pipe1.kpal"]


def test_memory_urls_run_in_this_process_whatever_the_jobs(tmp_path):
    """fsspec's memory:// lives in the caller's process: worker processes found no file."""
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    for i in range(3):
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (9, 7, 3), np.uint8)).save(
            buffer, "PNG")
        memory.pipe(f"/kpal_jobs_in/{i}.png", buffer.getvalue())
    try:
        default = list(batch.encode_many("memory://kpal_jobs_in/", "memory://kpal_jobs_a/", k=4))
        assert [r.error for r in default] == [None] * 3
        with pytest.warns(kpal.KpalWarning, match="memory:// files exist only in this process"):
            asked = list(batch.encode_many("memory://kpal_jobs_in/", "memory://kpal_jobs_b/",
                                           jobs=2, k=4))
        assert [r.error for r in asked] == [None] * 3
        assert memory.cat("/kpal_jobs_a/1.kpal") == memory.cat("/kpal_jobs_b/1.kpal")
        missing = list(batch.decode_many("memory://kpal_jobs_a/", "memory://kpal_jobs_c/",
                                         jobs=1))
        assert [r.error for r in missing] == [None] * 3
        memory.rm("/kpal_jobs_a/0.kpal")
        with pytest.raises(Exception, match="no such file"):
            list(batch.decode_many(["memory://kpal_jobs_a/0.kpal"], "memory://kpal_jobs_d/",
                                   jobs=1))
    finally:
        for folder in ("kpal_jobs_in", "kpal_jobs_a", "kpal_jobs_b", "kpal_jobs_c",
                       "kpal_jobs_d"):
            if memory.exists(f"/{folder}"):
                memory.rm(f"/{folder}", recursive=True)


def test_an_output_url_that_is_a_file_is_refused_before_any_file_is_read(tmp_path):
    pytest.importorskip("fsspec")
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(src / "a.png")
    blocker = tmp_path / "notadir"
    blocker.touch()
    for out in (blocker.as_uri(), blocker.as_uri() + "/sub/"):
        result = CliRunner().invoke(cli, ["encode", str(src), "-o", out, "-k", "2", "-j", "1"])
        assert result.exit_code == 2, result.output
        assert result.output.strip() == (f"kpal: error: {out}: the output folder, or a folder "
                                         "above it, is a file")


def test_an_empty_dask_address_is_a_usage_error(tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(src)
    for args in (["encode", str(src), str(src), "-o", str(tmp_path / "out")],
                 ["info", str(tmp_path / "x.kpal")]):
        result = CliRunner().invoke(cli, [*args, "--dask", " "])
        assert result.exit_code == 2
        assert "Invalid value for '--dask': give the Dask scheduler's address" in result.output
    assert not (tmp_path / "out").exists()


def test_a_port_that_speaks_something_else_is_not_a_dask_scheduler():
    """A banner (an SSH server) read as a Dask frame length asked for exabytes."""
    pytest.importorskip("distributed")
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def serve():
        connection, _ = server.accept()
        connection.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
        time.sleep(5)
        connection.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        with pytest.raises(batch.SchedulerError, match=rf"^tcp://127.0.0.1:{port}: cannot reach "
                                                       "the Dask scheduler: "):
            batch.connect(f"tcp://127.0.0.1:{port}")
    finally:
        server.close()
