"""Many files at once: ``kpal encode/decode/info PATH...`` and :mod:`kpal.batch`.

The images are a few tens of pixels wide, so a batch takes well under a
second per worker; progress bars are off (CliRunner's streams are not
terminals).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kpal
from kpal import batch
from kpal.cli import cli
from kpal.errors import OptionError

#: The installed command, started the way the console script starts it.
KPAL = [sys.executable, "-c",
        "import sys, _kpal_launcher; sys.argv[0] = 'kpal'; sys.exit(_kpal_launcher.main())"]

GOOD = ["a.png", "b.jpg", "sub/c.png", "sub/deeper/d.png"]


@pytest.fixture
def tree(tmp_path, photo):
    """photos/: four small images in three levels, a broken PNG, and files to ignore."""
    root = tmp_path / "photos"
    (root / "sub" / "deeper").mkdir(parents=True)
    for i, name in enumerate(GOOD):
        crop = photo.crop((i * 4, i * 3, i * 4 + 36, i * 3 + 28))
        crop.save(root / name, **({"quality": 95} if name.endswith(".jpg") else {}))
    (root / "sub" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    (root / "notes.txt").write_text("not an image")
    photo.crop((0, 0, 8, 8)).save(root / ".hidden.png")
    return root


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _kpal(names) -> list[str]:
    return sorted(str(Path(n).with_suffix(".kpal").as_posix()) for n in names)


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


# ------------------------------------------------------------------ encode, the CLI
def test_folder_tree_is_mirrored_and_the_bad_file_reported(runner, tree, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(cli, ["encode", str(tree), "-r", "-o", str(out), "-k", "8",
                                 "-j", "1"])
    assert result.exit_code == 1, result.output
    assert _files(out) == _kpal(GOOD)
    bad = tree / "sub" / "bad.png"
    assert result.stderr.splitlines() == [f"kpal: error: {bad}: not an image Pillow can read"]
    lines = result.stdout.splitlines()
    assert lines[0] == "5 files: 4 encoded, 1 failed"
    assert f"  failed         {bad}: not an image Pillow can read" in lines
    assert any(line.startswith("  mean PSNR") and line.endswith(" dB") for line in lines)
    assert any(line.startswith("  slowest ") for line in lines)
    bytes_in = sum((tree / n).stat().st_size for n in GOOD)
    bytes_out = sum((out / n).stat().st_size for n in _kpal(GOOD))
    assert f"  bytes in       {bytes_in:,} bytes" in lines
    assert any(line.startswith(f"  bytes out      {bytes_out:,} bytes (") for line in lines)
    with Image.open(out / "sub" / "deeper" / "d.kpal") as im:
        assert im.size == (36, 28) and im.info["k"] == 8


def test_without_recursive_only_the_folders_own_files(runner, tree, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(cli, ["encode", str(tree), "-o", str(out), "-k", "4", "-q"])
    assert (result.exit_code, result.output) == (0, "")
    assert _files(out) == ["a.kpal", "b.kpal"]


@pytest.mark.skipif(os.name != "posix", reason="symbolic links")
def test_symbolic_link_loops_and_broken_links_in_a_folder_are_passed_over(runner, tree,
                                                                          tmp_path):
    # A link loop stopped the whole batch: "kpal: error: [Errno 40] Too many levels of
    # symbolic links", nothing encoded.
    (tree / "loop.png").symlink_to(tree / "loop.png")
    (tree / "sub" / "gone.png").symlink_to(tree / "missing.png")
    (tree / "sub" / "up").symlink_to(tree / "sub" / "up")
    out = tmp_path / "out"
    result = runner.invoke(cli, ["encode", str(tree), "-r", "-o", str(out), "-k", "4", "-q",
                                 "-j", "1"])
    assert result.exit_code == 1  # the broken PNG of the tree, only
    assert result.stderr.splitlines() == [
        f"kpal: error: {tree / 'sub' / 'bad.png'}: not an image Pillow can read"]
    assert _files(out) == _kpal(GOOD)


def test_outputs_identical_whatever_the_jobs_and_to_single_file_encodes(runner, tree, tmp_path):
    args = ["-r", "-k", "8", "--seed", "3", "--coding", "radix", "-q"]
    for jobs in ("1", "2"):
        result = runner.invoke(cli, ["encode", str(tree), "-o", str(tmp_path / jobs),
                                     "-j", jobs, *args])
        assert result.exit_code == 1
    single = tmp_path / "single"
    for name in GOOD:
        target = single / Path(name).with_suffix(".kpal")
        target.parent.mkdir(parents=True, exist_ok=True)
        result = runner.invoke(cli, ["encode", str(tree / name), "-o", str(target), "-k", "8",
                                     "--seed", "3", "--coding", "radix", "-q"])
        assert result.exit_code == 0, result.output
    for name in _kpal(GOOD):
        data = (single / name).read_bytes()
        assert (tmp_path / "1" / name).read_bytes() == data
        assert (tmp_path / "2" / name).read_bytes() == data


def test_skip_existing_resumes_and_existing_outputs_need_a_flag(runner, tree, tmp_path):
    out = tmp_path / "out"
    args = ["encode", str(tree), "-r", "-o", str(out), "-k", "8", "-j", "1"]
    assert runner.invoke(cli, args).exit_code == 1
    expected = (out / "sub" / "c.kpal").read_bytes()
    (out / "sub" / "c.kpal").unlink()                 # as if the batch had been interrupted
    (out / "a.kpal").write_bytes(b"kept as it is")

    refused = runner.invoke(cli, args)
    assert refused.exit_code == 2
    assert refused.stderr == (f"kpal: error: {out / 'a.kpal'} and 2 others: file exists (use "
                              f"--force to overwrite or --skip-existing to resume)\n")

    resumed = runner.invoke(cli, [*args, "--skip-existing"])
    assert resumed.exit_code == 1  # the broken file is tried again, and fails again
    assert resumed.stdout.splitlines()[0] == ("5 files: 1 encoded, 3 skipped (output exists), "
                                              "1 failed")
    assert (out / "sub" / "c.kpal").read_bytes() == expected
    assert (out / "a.kpal").read_bytes() == b"kept as it is"

    forced = runner.invoke(cli, [*args, "--force", "-q"])
    assert forced.exit_code == 1
    assert (out / "a.kpal").read_bytes()[:5] == b"\x89KPAL"


def test_ext_writes_beside_the_inputs(runner, tree):
    result = runner.invoke(cli, ["encode", str(tree), "-r", "--ext", "-k4.kpal", "-k", "4",
                                 "-q"])
    assert result.exit_code == 1
    written = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*-k4.kpal"))
    assert written == sorted(n.rsplit(".", 1)[0] + "-k4.kpal" for n in GOOD)
    assert (tree / "a-k4.kpal").read_bytes() == kpal.encode(tree / "a.png", 4)


def test_glob_patterns_mirror_below_their_fixed_part(runner, tree, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(cli, ["encode", str(tree / "*.png"), "-o", str(out), "-k", "4",
                                 "-q"])
    assert result.exit_code == 0, result.output
    assert _files(out) == ["a.kpal"]  # not .hidden.png, not the sub-folders
    out2 = tmp_path / "out2"
    result = runner.invoke(cli, ["encode", str(tree / "**" / "[cd].png"), "-r", "-o",
                                 str(out2), "-k", "4", "-q"])
    assert result.exit_code == 0, result.output
    assert _files(out2) == ["sub/c.kpal", "sub/deeper/d.kpal"]


def test_a_pattern_matching_nothing_is_a_usage_error(runner, tree, tmp_path):
    result = runner.invoke(cli, ["encode", str(tree / "*.webp"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.stderr == f"kpal: error: {tree / '*.webp'}: no file matches\n"
    assert not (tmp_path / "o").exists()


def test_several_inputs_need_a_folder_not_a_file(runner, tree, tmp_path):
    target = tmp_path / "one.kpal"
    target.write_bytes(b"")
    result = runner.invoke(cli, ["encode", str(tree / "a.png"), str(tree / "b.jpg"), "-o",
                                 str(target)])
    assert result.exit_code == 2
    assert result.stderr == (f"kpal: error: {target}: with several inputs, -o names a folder; "
                             f"this is a file\n")


def test_one_file_keeps_the_single_file_report(runner, tree, tmp_path):
    out = tmp_path / "one.kpal"
    result = runner.invoke(cli, ["encode", str(tree / "a.png"), "-o", str(out), "-k", "8"])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == f"{tree / 'a.png'} → {out}"


# ------------------------------------------------------------------ decode and info
@pytest.fixture
def encoded(runner, tree, tmp_path):
    out = tmp_path / "enc"
    assert runner.invoke(cli, ["encode", str(tree), "-r", "-o", str(out), "-k", "8",
                               "-q"]).exit_code == 1
    return out


def test_decode_batch(runner, encoded, tmp_path):
    out = tmp_path / "dec"
    result = runner.invoke(cli, ["decode", str(encoded), "-r", "-o", str(out), "--format",
                                 "png", "-j", "2"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "4 files: 4 decoded"
    assert _files(out) == sorted(str(Path(n).with_suffix(".png").as_posix()) for n in GOOD)
    for name in _kpal(GOOD):
        with Image.open(out / Path(name).with_suffix(".png")) as png:
            assert png.format == "PNG"
            decoded = np.asarray(png.convert("RGB"))
        expected = np.asarray(kpal.decode(encoded / name).convert("RGB"))
        assert np.array_equal(decoded, expected)


def test_decode_batch_reports_a_corrupt_file(runner, encoded, tmp_path):
    broken = encoded / "sub" / "c.kpal"
    data = bytearray(broken.read_bytes())
    data[-1] ^= 0xFF
    broken.write_bytes(bytes(data))
    result = runner.invoke(cli, ["decode", str(encoded), "-r", "-o", str(tmp_path / "dec"),
                                 "-q", "-j", "1"])
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"kpal: error: {broken}: ") and "checksum" in line
    assert _files(tmp_path / "dec") == ["a.png", "b.png", "sub/deeper/d.png"]


def test_info_batch_json_lines(runner, encoded):
    (encoded / "sub" / "junk.kpal").write_bytes(b"hello, not a kpal file at all..")
    result = runner.invoke(cli, ["info", str(encoded), "-r", "--json"])
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    junk = str(encoded / "sub" / "junk.kpal")
    assert sorted(r["file"] for r in records) == sorted(
        [str(encoded / n) for n in _kpal(GOOD)] + [junk])
    for record in records:
        if record["file"] == junk:
            assert record["problem"].startswith("not a .kpal file")
        else:
            assert record["problem"] is None and record["header"]["k"] == 8
    assert result.stderr.splitlines() == [
        f"kpal: error: {junk}: " + next(r["problem"] for r in records if r["file"] == junk)]


def test_info_of_a_folder_describes_its_own_files(runner, encoded):
    # Like ls: a folder's files; its sub-folders only with -r.
    result = runner.invoke(cli, ["info", str(encoded), "--json"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    top = sorted(str(encoded / n) for n in _kpal(GOOD) if "/" not in n)
    assert top and sorted(r["file"] for r in records) == top
    assert all(r["problem"] is None and r["header"]["k"] == 8 for r in records)


def test_info_batch_text_with_a_pattern(runner, encoded):
    result = runner.invoke(cli, ["info", str(encoded / "*.kpal")])
    assert result.exit_code == 0, result.output
    names = [line for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert sorted(names) == [str(encoded / "a.kpal"), str(encoded / "b.kpal")]


# ------------------------------------------------------------------ the API
def test_encode_many_records(tree, tmp_path):
    out = tmp_path / "out"
    results = {Path(r.path).name: r for r in batch.encode_many(tree, out, jobs=1,
                                                               recursive=True, k=8)}
    assert sorted(results) == ["a.png", "b.jpg", "bad.png", "c.png", "d.png"]
    good = results["c.png"]
    assert good.output == str(out / "sub" / "c.kpal") and good.error is None
    assert good.bytes_in == (tree / "sub" / "c.png").stat().st_size
    assert good.bytes_out == (out / "sub" / "c.kpal").stat().st_size
    assert good.k == 8 and 10 < good.psnr < 60 and good.seconds > 0
    bad = results["bad.png"]
    assert bad.error == f"{tree / 'sub' / 'bad.png'}: not an image Pillow can read"
    assert bad.bytes_out == 0 and not (out / "sub" / "bad.kpal").exists()


def test_encode_many_checks_options_and_inputs_before_any_work(tree, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(OptionError, match="k=0 must be an integer between 1 and 256"):
        batch.encode_many(tree, out, k=0)
    with pytest.raises(OptionError, match="unknown option 'colours'"):
        batch.encode_many(tree, out, colours=8)
    with pytest.raises(batch.BatchError, match="nothing.png: no such file"):
        batch.encode_many([tree / "a.png", tree / "nothing.png"], out)
    (tree / "a.jpg").write_bytes((tree / "b.jpg").read_bytes())
    with pytest.raises(batch.BatchError, match="would both be written to .*a.kpal"):
        batch.encode_many(tree, out)
    assert not out.exists()


def test_encode_many_refuses_a_file_as_folder_no_input_and_an_image_extension(tree, tmp_path):
    # Each file failed alone with "[Errno 17] File exists"; [] said ": no input file found";
    # ext=".png" wrote .kpal files named .png.
    a_file = tmp_path / "taken.kpal"
    a_file.write_bytes(b"x")
    for paths, out, ext, message in (
            ([tree], a_file, ".kpal", f"{a_file}: the output folder is a file"),
            ([], tmp_path / "out", ".kpal", "no input given"),
            ([tree], None, ".png", "extension '.png': a .kpal file named .png would not be a "
                                   "PNG image; name it .kpal (kpal decode writes a PNG)")):
        with pytest.raises(batch.BatchError) as caught:
            batch.encode_many(paths, out, jobs=1, ext=ext, k=4)
        assert str(caught.value) == message
    assert not list(tree.rglob("*.kpal")) and not (tmp_path / "out").exists()


def test_encode_many_same_bytes_as_the_api_and_options_object(tree, tmp_path):
    opts = kpal.options.EncodeOptions(k=6, seed=2)
    results = list(batch.encode_many([tree / "a.png", tree / "b.jpg"], tmp_path / "o",
                                     jobs=1, options=opts, coding="entropy"))
    assert all(r.ok for r in results)
    assert (tmp_path / "o" / "a.kpal").read_bytes() == kpal.encode(tree / "a.png", 6, seed=2,
                                                                   coding="entropy")


class _CountingPool(cf.ThreadPoolExecutor):
    """Stands in for the process pool: counts the tasks submitted and not yet finished."""

    outstanding = 0
    most = 0
    lock = threading.Lock()

    def __init__(self, max_workers, mp_context=None, initializer=None, initargs=()):
        super().__init__(max_workers=max_workers)

    def submit(self, fn, *args):
        cls = type(self)
        with cls.lock:
            cls.outstanding += 1
            cls.most = max(cls.most, cls.outstanding)

        def counted():
            time.sleep(0.01)
            try:
                return fn(*args)
            finally:
                with cls.lock:
                    cls.outstanding -= 1

        return super().submit(counted)


def test_tasks_are_submitted_lazily_a_few_per_worker(tmp_path, photo, monkeypatch):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(16):
        photo.crop((i, i, i + 12, i + 10)).save(folder / f"{i:02}.png")
    monkeypatch.setattr(batch.cf, "ProcessPoolExecutor", _CountingPool)
    seen = list(batch.encode_many(folder, tmp_path / "out", jobs=2, k=4))
    assert len(seen) == 16 and all(r.ok for r in seen)
    assert _CountingPool.most <= 2 * batch.IN_FLIGHT_PER_WORKER
    assert len(_files(tmp_path / "out")) == 16


def test_summary_adds_up():
    s = batch.summarize([
        batch.Result("a.png", "a.kpal", 100, 40, 16, 30.0, 0.5),
        batch.Result("b.png", "b.kpal", 300, 60, 4, 20.0, 1.5),
        batch.Result("c.png", "c.kpal", 50, 10, 2, float("inf"), 0.1),
        batch.Result("d.png", "d.kpal", skipped=True),
        batch.Result("e.png", "e.kpal", 7, error="e.png: file is empty"),
    ])
    assert (s.files, s.done, s.skipped, s.failed) == (5, 3, 1, 1)
    assert (s.bytes_in, s.bytes_out, s.mean_psnr, s.lossless) == (450, 110, 25.0, 1)
    assert s.slowest.path == "b.png" and s.errors == ("e.png: file is empty",)


# ------------------------------------------------------------------ Ctrl-C
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize(("signum", "word"), [(signal.SIGINT, "interrupted"),
                                              (signal.SIGTERM, "terminated")],
                         ids=["SIGINT", "SIGTERM"])
def test_signal_mid_batch_leaves_no_partial_or_temporary_file(tmp_path, signum, word):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it), or SIGTERM."""
    folder = tmp_path / "noise"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(24):  # k = 256 on noise: a fraction of a second each
        Image.fromarray(rng.integers(0, 256, (60, 60, 3), dtype=np.uint8)).save(
            folder / f"{i:02}.png")
    out = tmp_path / "out"
    proc = subprocess.Popen([*KPAL, "encode", str(folder), "-o", str(out), "-k", "256",
                             "-j", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (out.exists() and any(out.glob("*.kpal"))):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "no output after 60 s"
            time.sleep(0.02)
        os.killpg(proc.pid, signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 128 + signum, err
    assert err.splitlines()[-1] == f"kpal: error: {word}"
    written = sorted(out.glob("*.kpal"))
    assert 0 < len(written) < 24, "the batch was not stopped midway"
    assert _temporaries(tmp_path) == [] and sorted(p.name for p in out.iterdir()) == [
        p.name for p in written]
    for path in written:  # complete files, exactly what a full encode writes
        assert path.read_bytes() == kpal.encode(folder / f"{path.stem}.png", 256)


def test_an_output_already_holding_the_same_bytes_counts_as_written(tree, tmp_path):
    """A task run twice (its worker died after writing) succeeds the second time."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.kpal").write_bytes(kpal.encode(tree / "a.png", 4))
    (out / "b.kpal").write_bytes(b"something else")
    results = {Path(r.path).name: r for r in batch.encode_many(
        [tree / "a.png", tree / "b.jpg"], out, jobs=1, k=4)}
    assert results["a.png"].ok and results["a.png"].bytes_out == (out / "a.kpal").stat().st_size
    assert results["b.jpg"].error == f"{out / 'b.kpal'}: file exists (pass force=True to overwrite)"
    assert (out / "b.kpal").read_bytes() == b"something else"


# ------------------------------------------------------------------ Dask stays optional
def test_the_base_install_never_imports_dask():
    code = ("import sys, kpal, kpal.cli, kpal.batch; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert (done.returncode, done.stdout) == (0, "[]\n"), done.stderr


def test_dask_flag_without_dask_installed_is_a_clear_error(runner, tree, tmp_path,
                                                           monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    result = runner.invoke(cli, ["encode", str(tree), "-o", str(tmp_path / "o"), "--dask",
                                 "tcp://127.0.0.1:1"])
    assert result.exit_code == 1  # a missing extra is not a usage error
    assert result.stderr == 'kpal: error: --dask needs Dask: pip install "kpal[dask]"\n'
    assert not (tmp_path / "o").exists()
    with pytest.raises(ImportError, match=r'needs Dask: pip install "kpal\[dask\]"'):
        list(batch.encode_many(str(tree), tmp_path / "o", client="tcp://127.0.0.1:1"))
    monkeypatch.setitem(sys.modules, "fsspec", None)
    result = runner.invoke(cli, ["encode", f"file://{tree}", "-o", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert result.stderr == f"kpal: error: file://{tree}: URLs need fsspec: pip install fsspec\n"


def test_warnings_become_one_line_per_file(runner, tmp_path):
    folder = tmp_path / "flat"
    folder.mkdir()
    two = np.zeros((10, 12, 3), np.uint8)
    two[:, 6:] = (200, 30, 30)
    Image.fromarray(two).save(folder / "two.png")
    result = runner.invoke(cli, ["encode", str(folder), "-o", str(tmp_path / "o"), "-k", "8"])
    assert result.exit_code == 0, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith(f"kpal: warning: {folder / 'two.png'}: ") and "distinct" in line
    assert "lossless" in result.stdout  # "mean PSNR - (1 more lossless)"
    [record] = batch.encode_many(folder, tmp_path / "api", jobs=1, k=8)
    assert record.psnr == float("inf") and len(record.notes) == 1 and record.notes[0] in line
    quiet = runner.invoke(cli, ["encode", str(folder), "-o", str(tmp_path / "q"), "-k", "8",
                                "-q"])
    assert (quiet.exit_code, quiet.output) == (0, "")


def test_a_folder_without_images_is_a_usage_error(runner, tmp_path):
    (tmp_path / "empty" / "deep").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "empty" / "deep" / "x.png")
    result = runner.invoke(cli, ["encode", str(tmp_path / "empty"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.stderr == (f"kpal: error: {tmp_path / 'empty'}: no input file found "
                             f"(-r, or recursive=True, takes sub-folders too)\n")


def test_info_batch_unreadable_file_still_gets_its_json_line(runner, encoded, monkeypatch):
    locked = encoded / "a.kpal"

    def refusing_open(path, mode="r", *args, **kwargs):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied")
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(batch, "open", refusing_open, raising=False)  # as root chmod would not
    result = runner.invoke(cli, ["info", str(locked), str(encoded / "b.kpal"), "--json"])
    assert result.exit_code == 1
    records = {r["file"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert records[str(locked)] == {"file": str(locked),
                                    "problem": "cannot read: Permission denied"}
    assert records[str(encoded / "b.kpal")]["problem"] is None
    assert result.stderr == f"kpal: error: {locked}: cannot read: Permission denied\n"


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info()]


def test_workers_run_one_blas_thread_each():
    pytest.importorskip("threadpoolctl")
    with cf.ProcessPoolExecutor(1, mp_context=batch._context(),
                                initializer=batch._init_worker, initargs=(os.getpid(),)) as pool:
        threads = pool.submit(_blas_threads).result(timeout=60)
    assert threads and set(threads) == {1}


#: A module beside the script: kpal's workers never import the script itself.
_KERNELS_PROBE = """
import sys


def kernels_loaded():
    return "kpal.cluster._kmeans_fast" in sys.modules
"""

_WORKER_KERNELS = """
import concurrent.futures as cf, os, sys
from kpal import batch
from kernels_probe import kernels_loaded

if __name__ == "__main__":
    encodes = sys.argv[1] == "1"
    with cf.ProcessPoolExecutor(1, mp_context=batch._context(encodes),
                                initializer=batch._init_worker,
                                initargs=(os.getpid(), encodes)) as pool:
        print(pool.submit(kernels_loaded).result(timeout=120))
"""


@pytest.mark.parametrize("encodes", [True, False])
def test_encoding_workers_load_the_compiled_kernels_before_the_first_image(tmp_path, encodes):
    """In a fresh process, as the command line runs it (one fork server per process)."""
    pytest.importorskip("numba")
    script = tmp_path / "worker_kernels.py"
    script.write_text(_WORKER_KERNELS)
    (tmp_path / "kernels_probe.py").write_text(_KERNELS_PROBE)
    done = subprocess.run([sys.executable, str(script), str(int(encodes))],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    # Workers share the environment of the batch: KPAL_PURE_NUMPY=1 keeps them on numpy.
    expected = encodes and os.environ.get("KPAL_PURE_NUMPY") != "1"
    assert done.stdout.strip() == str(expected)


_SERVER_LAYER = """
import concurrent.futures as cf, multiprocessing, numba
from kpal import batch
if __name__ == "__main__":
    with cf.ProcessPoolExecutor(1, mp_context=batch._context(True)) as pool:
        print(pool.submit(numba.threading_layer).result(timeout=120))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="no fork server")
@pytest.mark.parametrize(("layer", "expected"), [(None, "workqueue"), ("omp", None)],
                         ids=["default", "omp-forced"])
def test_the_fork_server_loads_the_kernels_workers_share(tmp_path, layer, expected):
    """Workers forked from the server start with numba's thread pool running, unless
    the user chose a layer that cannot be forked (GNU OpenMP): then they load it later."""
    pytest.importorskip("numba")
    if os.environ.get("KPAL_PURE_NUMPY") == "1":
        pytest.skip("the numpy path loads no kernels")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    if layer:
        env["NUMBA_THREADING_LAYER"] = layer
    script = tmp_path / "server_layer.py"
    script.write_text(_SERVER_LAYER)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    if expected:
        assert (done.returncode, done.stdout.strip()) == (0, expected), done.stderr
    else:  # nothing launched in the server: the worker has no thread pool yet
        assert done.returncode == 1 and "not initialized" in done.stderr, done.stderr


def test_outputs_identical_with_a_forced_threading_layer(tmp_path, photo):
    """With the layer forced, workers load the kernels themselves: same bytes, no abort."""
    pytest.importorskip("numba")
    folder = tmp_path / "in"
    folder.mkdir()
    for i, size in enumerate([(96, 64), (80, 120), (64, 64)]):
        photo.resize(size).save(folder / f"{i}.png")
    out = tmp_path / "out"
    env = {**os.environ, "NUMBA_THREADING_LAYER": "omp"}
    done = subprocess.run([*KPAL, "encode", str(folder), "-o", str(out), "-k", "16", "-j", "2",
                           "-q"], capture_output=True, text=True, env=env, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr
    for i in range(3):
        assert (out / f"{i}.kpal").read_bytes() == kpal.encode(folder / f"{i}.png", 16)


def test_skip_existing_with_one_file(runner, tree, tmp_path):
    out = tmp_path / "one.kpal"
    out.write_bytes(b"earlier")
    result = runner.invoke(cli, ["encode", str(tree / "a.png"), "-o", str(out),
                                 "--skip-existing"])
    assert (result.exit_code, result.stdout) == (0, f"{out}: exists, skipped\n")
    assert out.read_bytes() == b"earlier"
    fresh = tmp_path / "fresh.kpal"
    result = runner.invoke(cli, ["encode", str(tree / "a.png"), "-o", str(fresh),
                                 "--skip-existing", "-k", "4", "-q"])
    assert result.exit_code == 0 and fresh.read_bytes() == kpal.encode(tree / "a.png", 4)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_workers_stop_when_the_batch_is_killed_outright(tmp_path):
    """SIGKILL cannot be caught: the workers notice their parent is gone and leave."""
    folder = tmp_path / "noise"
    folder.mkdir()
    rng = np.random.default_rng(6)
    for i in range(16):
        Image.fromarray(rng.integers(0, 256, (60, 60, 3), dtype=np.uint8)).save(
            folder / f"{i:02}.png")
    out = tmp_path / "out"
    proc = subprocess.Popen([*KPAL, "encode", str(folder), "-o", str(out), "-k", "256",
                             "-j", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (out.exists() and any(out.glob("*.kpal"))):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        proc.kill()  # the main process only
        proc.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)  # is anything of the batch still running?
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            pytest.fail("worker processes outlived the batch by 20 s")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert _temporaries(tmp_path) == []


# ------------------------------------------------------------------ fsspec URLs
def test_fsspec_urls_in_and_out(tree, tmp_path):
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    for name in [*GOOD, "sub/bad.png"]:
        memory.pipe_file(f"/batch-in/{name}", (tree / name).read_bytes())
    try:
        results = list(batch.encode_many("memory://batch-in", "memory://batch-out", jobs=1,
                                         recursive=True, k=8))
        errors = [r.error for r in results if r.error]
        assert errors == ["memory://batch-in/sub/bad.png: not an image Pillow can read"]
        for name in GOOD:
            stored = memory.cat_file(f"/batch-out/{Path(name).with_suffix('.kpal')}")
            assert stored == kpal.encode(tree / name, 8)
        assert not [p for p in memory.find("/batch-out") if p.endswith(".tmp")]
        again = list(batch.encode_many("memory://batch-in/*.png", "memory://batch-out",
                                       jobs=1, skip_existing=True, k=8))
        assert [(r.path, r.skipped) for r in again] == [("memory://batch-in/a.png", True)]
    finally:
        memory.rm("/batch-in", recursive=True)
        memory.rm("/batch-out", recursive=True)


def test_file_urls_through_worker_processes_match_plain_paths(runner, tree, tmp_path):
    pytest.importorskip("fsspec")
    result = runner.invoke(cli, ["encode", f"file://{tree}", "-r", "-o",
                                 f"file://{tmp_path / 'url'}", "-k", "8", "-j", "2", "-q"])
    assert result.exit_code == 1
    bad = f"file://{tree}/sub/bad.png"
    assert result.stderr == f"kpal: error: {bad}: not an image Pillow can read\n"
    plain = tmp_path / "plain"
    list(batch.encode_many(tree, plain, jobs=1, recursive=True, k=8))
    assert {n: (tmp_path / "url" / n).read_bytes() for n in _kpal(GOOD)} == {
        n: (plain / n).read_bytes() for n in _kpal(GOOD)}
    assert _temporaries(tmp_path) == []


def test_decode_and_info_with_file_urls(runner, encoded, tmp_path):
    pytest.importorskip("fsspec")
    result = runner.invoke(cli, ["decode", f"file://{encoded}", "-r", "-o",
                                 f"file://{tmp_path / 'dec'}", "-j", "1", "-q"])
    assert result.exit_code == 0, result.output
    assert _files(tmp_path / "dec") == sorted(
        str(Path(n).with_suffix(".png").as_posix()) for n in GOOD)
    result = runner.invoke(cli, ["info", f"file://{encoded}/*.kpal", "--json"])
    assert result.exit_code == 0, result.output
    assert sorted(json.loads(line)["file"] for line in result.stdout.splitlines()) == [
        f"file://{encoded}/a.kpal", f"file://{encoded}/b.kpal"]


def test_unknown_url_protocol_is_a_usage_error(runner, tree, tmp_path):
    pytest.importorskip("fsspec")
    result = runner.invoke(cli, ["encode", str(tree), "-o", "nosuchprotocol://x/out"])
    assert result.exit_code == 2
    assert result.stderr.startswith("kpal: error: nosuchprotocol://x/out: ")
    assert len(result.stderr.splitlines()) == 1


def test_decode_batch_flattens_onto_the_background(runner, tmp_path):
    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[:, :4] = (200, 30, 40, 255)  # left half opaque red, right half fully transparent
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b"):
        with pytest.warns(UserWarning, match="2 distinct RGBA colours"):
            kpal.save(Image.fromarray(rgba, "RGBA"), folder / f"{name}.kpal", k=4)
    result = runner.invoke(cli, ["decode", str(folder), "-o", str(tmp_path / "out"),
                                 "--format", "jpeg", "--background", "#0000ff", "-q", "-j", "1"])
    assert result.exit_code == 0, result.output
    for name in ("a", "b"):
        with Image.open(tmp_path / "out" / f"{name}.jpeg") as im:
            pixels = np.asarray(im.convert("RGB")).astype(int)
        assert np.abs(pixels[:, 6:] - (0, 0, 255)).max() <= 8  # blue, not white
        assert np.abs(pixels[:, :2] - (200, 30, 40)).max() <= 8
    # The API takes the colour as the encode option does.
    records = list(batch.decode_many(folder, tmp_path / "api", jobs=1, fmt="png",
                                     background="lime"))
    assert [r.error for r in records] == [None, None]
    with Image.open(tmp_path / "api" / "a.png") as im:
        assert im.convert("RGB").getpixel((7, 0)) == (0, 255, 0)
    with pytest.raises(OptionError, match="background="):
        list(batch.decode_many(folder, tmp_path / "bad", jobs=1, background="nope"))


def test_decode_batch_says_what_a_format_flattens(runner, tmp_path):
    # As a single decode does: one warning line per file; nothing with -q.
    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[:, :4] = (200, 30, 40, 255)
    rgba[:, 4:] = (10, 20, 30, 128)  # translucent: GIF cannot hold it
    folder = tmp_path / "in"
    folder.mkdir()
    with pytest.warns(UserWarning, match="2 distinct RGBA colours"):
        kpal.save(Image.fromarray(rgba, "RGBA"), folder / "a.kpal", k=4)
    result = runner.invoke(cli, ["decode", str(folder), "-o", str(tmp_path / "out"),
                                 "--format", "gif", "-j", "1"])
    assert result.exit_code == 0, result.output
    assert (f"kpal: warning: {folder / 'a.kpal'}: GIF has no partial transparency: translucent "
            "pixels flattened onto white") in result.output
    result = runner.invoke(cli, ["decode", str(folder), "-o", str(tmp_path / "quiet"),
                                 "--format", "gif", "-j", "1", "-q"])
    assert result.exit_code == 0 and result.output == ""


def test_importing_the_fork_server_module_elsewhere_changes_nothing():
    # Collecting doctests imports every module: only the fork server may preload,
    # since numba's workqueue layer aborts when two threads run a kernel at once.
    code = ("import multiprocessing, os, sys; import kpal._batch_server; "
            "print(os.environ.get('NUMBA_THREADING_LAYER'), "
            "multiprocessing.get_start_method(allow_none=True), 'numba' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True).stdout
    assert out.split() == ["None", "None", "False"]



_RELEASE_PAGES = """
import ctypes, platform, shutil, sys
from kpal._batch_server import release_library_pages

def resident(name):
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:
                inside = len(fields) > 5 and name in fields[5] and "w" not in fields[1]
            elif inside and fields[0] == "Rss:":
                total += int(fields[1])
    return total

# A private copy of zlib: no other process maps its pages, as no other maps
# the fork server's LLVM when it loads the kernels.
source = next(p for p in open("/proc/self/maps").read().split() if "/libz.so" in p)
copy = shutil.copy(source, sys.argv[1])
zlib = ctypes.CDLL(copy)
zlib.zlibVersion.restype = ctypes.c_char_p
version = zlib.zlibVersion()
before = resident("kpal-zlib-copy")
advised = release_library_pages(ctypes.CDLL("libc.so.6"), "kpal-zlib-copy")
after = resident("kpal-zlib-copy")
kernel = tuple(int(x) for x in platform.release().split(".")[:2])
print(before, advised, after, int(zlib.zlibVersion() == version), int(kernel >= (5, 4)))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_the_fork_server_hands_back_library_pages_and_the_library_still_runs(tmp_path):
    # The server drops LLVM's resident code after loading the kernels; here the
    # same call on a private copy of zlib: its resident pages fall, it still runs.
    code = "import zlib\n" + _RELEASE_PAGES
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "kpal-zlib-copy.so")],
                          capture_output=True, text=True, timeout=120, check=True)
    before, advised, after, still_runs, new_kernel = map(int, done.stdout.split())
    assert still_runs == 1
    if new_kernel:
        assert advised > 0 and before > 0 and after < before, done.stdout
    else:  # MADV_PAGEOUT is Linux 5.4+: refused, nothing advised
        assert advised == 0


def test_a_batch_whose_only_failures_are_missed_targets_exits_99(runner, tmp_path):
    """As one file does (pngquant's code); any other failure makes it 1."""
    rng = np.random.default_rng(5)
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):  # noise: no k reaches 60 dB
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(
            folder / f"noise{i}.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "flat.png")  # lossless: met
    args = ["encode", str(folder), "-o", str(tmp_path / "out"), "--quality", "60", "-j", "1",
            "-q"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 99, result.output
    assert (tmp_path / "out" / "flat.kpal").exists()
    results = list(batch.encode_many(sorted(folder.iterdir()), tmp_path / "api", jobs=1,
                                     quality=60))
    assert [r.target_missed for r in results] == [False, True, True]
    (folder / "broken.png").write_bytes(b"not a png")
    result = runner.invoke(cli, [*args, "--force"])
    assert result.exit_code == 1, result.output
