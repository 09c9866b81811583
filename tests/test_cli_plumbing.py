"""The command line's plumbing at its edges: names that would drive a terminal,
folders in the way, devices and pipes as outputs, permissions, output order."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import kpal
from kpal.cli import cli

pytestmark = pytest.mark.filterwarnings("ignore:the image has .* distinct (RGBA )?colour")


def _run(*args: str):
    return CliRunner().invoke(cli, list(args))


# ------------------------------------------------------------------ control characters
def test_batch_lines_escape_control_characters_in_file_names(tmp_path, photo):
    folder = tmp_path / "in"
    folder.mkdir()
    photo.save(folder / "esc\x1b[31mred.png")
    (folder / "bad\x1b]0;title\x07.png").write_bytes(b"not an image")
    result = _run("encode", str(folder), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    shown = result.stdout + result.stderr
    assert "\x1b" not in shown and "\x07" not in shown
    assert f"kpal: error: {folder}/bad\\x1b]0;title\\x07.png: not an image" in result.stderr
    assert f"slowest        {folder}/esc\\x1b[31mred.png (" in result.stdout


def test_info_of_several_files_escapes_their_names(tmp_path, photo):
    kpal.save(photo, tmp_path / "two\nlines.kpal", k=4)
    kpal.save(photo, tmp_path / "b.kpal", k=4)
    result = _run("info", str(tmp_path))
    assert result.exit_code == 0
    assert f"{tmp_path}/two\\nlines.kpal" in result.stdout.splitlines()


# ------------------------------------------------------------------ folders in the way
def test_a_file_where_a_mirrored_folder_goes_stops_the_batch_first(tmp_path, photo):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    photo.save(tmp_path / "in" / "a.png")
    photo.save(tmp_path / "in" / "sub" / "b.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sub").write_bytes(b"")
    result = _run("encode", str(tmp_path / "in"), "-r", "-o", str(tmp_path / "out"), "--force")
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"kpal: error: {tmp_path}/out/sub: cannot create the output "
                                     f"folder: {tmp_path}/out/sub is a file")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["sub"]  # nothing encoded


def test_a_folder_where_an_output_file_goes_is_named_as_such(tmp_path, photo):
    photo.save(tmp_path / "a.png")
    photo.save(tmp_path / "b.png")
    (tmp_path / "out" / "a.kpal").mkdir(parents=True)
    result = _run("encode", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o",
                  str(tmp_path / "out"), "--force")
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"kpal: error: {tmp_path}/out/a.kpal: the output is a "
                                     "folder; remove it or choose another extension")


# ------------------------------------------------------------------ devices and pipes
def test_decode_to_a_device_without_an_extension_writes_png(tmp_path, photo):
    kpal.save(photo, tmp_path / "p.kpal", k=4)
    result = _run("decode", str(tmp_path / "p.kpal"), "-o", os.devnull)
    assert result.exit_code == 0, result.output


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_decode_to_a_named_pipe_writes_png(tmp_path, photo):
    kpal.save(photo, tmp_path / "p.kpal", k=4)
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    reader = subprocess.Popen([sys.executable, "-c", f"import sys; sys.stdout.buffer.write("
                               f"open({str(pipe)!r}, 'rb').read())"], stdout=subprocess.PIPE)
    result = _run("decode", str(tmp_path / "p.kpal"), "-o", str(pipe))
    data = reader.communicate(timeout=60)[0]
    assert result.exit_code == 0, result.output
    assert data.startswith(b"\x89PNG")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="Linux's /dev/full")
def test_palette_to_a_full_disk_names_the_file():
    result = _run("palette", "samples/rocket.jpg", "-k", "4", "-o", "/dev/full")
    assert result.exit_code == 1
    assert result.stderr.strip() == "kpal: error: /dev/full: cannot write: No space left on device"


# ------------------------------------------------------------------ palette from stdin
def test_palette_reads_standard_input_in_its_place(tmp_path, photo):
    photo.save(tmp_path / "a.png")
    flat = tmp_path / "flat.png"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(flat)
    with flat.open("rb") as f:
        piped = CliRunner().invoke(cli, ["palette", str(tmp_path / "a.png"), "-", "-w", "0",
                                         "-w", "1", "-k", "2", "-o", "-"], input=f.read())
    assert piped.exit_code == 0, piped.output
    assert piped.stdout.split() == ["#c80a0a"]  # only the flat red image weighs
    twice = CliRunner().invoke(cli, ["palette", "-", "-", "-o", "-"], input=b"")
    assert twice.exit_code == 2
    assert "standard input can be read once" in twice.stderr


# ------------------------------------------------------------------ permissions
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root reads every file")
def test_an_unreadable_input_is_an_io_error(tmp_path, photo):
    path = tmp_path / "secret.png"
    photo.save(path)
    path.chmod(0)
    try:
        result = _run("encode", str(path), "-o", str(tmp_path / "x.kpal"))
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"kpal: error: {path}: cannot read: Permission denied"


def test_the_path_type_leaves_permissions_to_the_command():
    from kpal.cliio import FilePath

    assert FilePath().readable is False and FilePath(readable=True).readable is True


# ------------------------------------------------------------------ order
def test_info_of_many_files_with_two_jobs_keeps_the_input_order(tmp_path, photo):
    names = [f"f{i:02d}.kpal" for i in range(12)]
    for i, name in enumerate(names):
        kpal.save(photo.resize((8 + 40 * (i % 3), 8 + 30 * (i % 4))), tmp_path / name,
                  k=2 + i)
    result = _run("info", str(tmp_path), "-j", "2", "--json")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["file"] for line in result.stdout.splitlines()] == [
        str(tmp_path / name) for name in names]


# ------------------------------------------------------------------ why -o names a folder
@pytest.mark.parametrize(("inputs", "flags", "why"), [
    (["in"], [], "with a folder as input"),
    (["in/*.png"], [], "with a pattern as input"),
    (["in/a.png"], ["--ext", ".kpal"], "with --ext"),
    (["in/a.png", "in/b.png"], [], "with several inputs"),
])
def test_a_file_name_for_a_batchs_folder_says_why_it_is_a_batch(tmp_path, photo, monkeypatch,
                                                                  inputs, flags, why):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    photo.save(tmp_path / "in" / "a.png")
    photo.save(tmp_path / "in" / "b.png")
    result = _run("encode", *inputs, *flags, "-o", "all.kpal")
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"kpal: error: all.kpal: {why}, -o names a folder, and "
                                     "this looks like a file name (make the folder first to use "
                                     "this name)")


# ------------------------------------------------------------------ one wording
def test_decode_background_errors_are_worded_as_encodes(tmp_path, photo):
    kpal.save(photo, tmp_path / "p.kpal", k=4)
    photo.save(tmp_path / "p.png")
    decoded = _run("decode", str(tmp_path / "p.kpal"), "-o", str(tmp_path / "x.png"),
                   "--background", "nope")
    encoded = _run("encode", str(tmp_path / "p.png"), "-o", str(tmp_path / "x.kpal"),
                   "--background", "nope")
    assert decoded.exit_code == encoded.exit_code == 2
    assert decoded.stderr.startswith("kpal: error: --background: background='nope' must be")
    assert decoded.stderr == encoded.stderr


def test_a_multi_frame_input_is_refused_in_the_commands_own_words(tmp_path):
    frames = [Image.new("RGB", (8, 8), (i * 40, 2, 3)) for i in range(2)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    sampled = _run("sample", str(tmp_path / "anim.gif"), "-o", str(tmp_path / "s.png"))
    assert sampled.stderr.strip() == (f"kpal: error: {tmp_path}/anim.gif: has 2 frames; kpal "
                                      "sample reads one image from each file (extract a frame "
                                      "first)")
    encoded = _run("encode", str(tmp_path / "anim.gif"), "-o", str(tmp_path / "a.kpal"))
    assert "a .kpal file holds one image" in encoded.stderr


def test_an_output_ending_in_a_slash_that_is_no_folder_is_said_so(tmp_path, photo):
    photo.save(tmp_path / "p.png")
    result = _run("sample", str(tmp_path / "p.png"), "-o", str(tmp_path / "new") + "/")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"kpal: error: {tmp_path}/new/: no such folder"


def test_printable_escapes_what_drives_a_terminal_and_keeps_how_names_are_written():
    from kpal.cliio import printable

    assert printable("می\u200cخواهم.png") == "می\u200cخواهم.png"  # a zero-width non-joiner
    assert printable("a\u202eb\x1b[31m\n\udc9bc") == "a\\u202eb\\x1b[31m\\n\\udc9bc"
    assert printable("a\u2028b\u200bc\ufeff") == "a\\u2028b\\u200bc\\ufeff"  # invisible
    assert printable("\U0001f468\u200d\U0001f469") == "\U0001f468\u200d\U0001f469"  # emoji


@pytest.mark.skipif(not os.path.exists("/dev/stdout"), reason="/dev/stdout")
def test_palette_to_dev_stdout_redirected_to_a_file_writes_into_it(tmp_path):
    flat = tmp_path / "flat.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(flat)
    target = tmp_path / "colours.txt"
    target.write_text("")  # the shell made it: not an existing file to refuse
    with target.open("w") as stdout:
        done = subprocess.run([sys.executable, "-m", "kpal", "palette", str(flat), "-k", "2",
                               "-o", "/dev/stdout", "-q"], stdout=stdout,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert target.read_text() == "#010203\n"


def test_the_progress_bar_counts_the_bytes_the_summary_counts(tmp_path, photo, monkeypatch):
    """A failed file's bytes were in the bar's total, not in the summary's."""
    import click.testing

    from kpal import progress

    added: list[tuple[int, int]] = []

    class Recorded(progress.Progress):
        def add(self, bytes_in: int = 0, bytes_out: int = 0) -> None:
            added.append((bytes_in, bytes_out))
            super().add(bytes_in, bytes_out)

    monkeypatch.setattr(progress, "Progress", Recorded)
    monkeypatch.setattr(click.testing._NamedTextIOWrapper, "isatty", lambda self: True,
                        raising=False)
    photo.save(tmp_path / "a.png")
    (tmp_path / "bad.png").write_bytes(b"not an image, but 33 bytes long!")
    result = _run("encode", str(tmp_path / "a.png"), str(tmp_path / "bad.png"), "-o",
                  str(tmp_path / "out"), "-j", "1")
    assert result.exit_code == 1
    assert sorted(added) == [(0, 0), ((tmp_path / "a.png").stat().st_size,
                                      (tmp_path / "out" / "a.kpal").stat().st_size)]
    assert f"bytes in       {(tmp_path / 'a.png').stat().st_size:,} bytes" in result.stdout


def test_palette_names_every_image_it_cannot_read_and_writes_nothing(tmp_path, photo):
    folder = tmp_path / "mixed"
    folder.mkdir()
    photo.save(folder / "a.png")
    (folder / "b.png").write_bytes(b"hello")
    photo.save(folder / "c.png")
    (folder / "d.png").write_bytes((folder / "a.png").read_bytes()[:60])
    result = _run("palette", str(folder), "-k", "4", "-o", str(tmp_path / "p.gpl"))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"kpal: error: {folder}/b.png: not an image Pillow can read",
        f"kpal: error: {folder}/d.png: cannot decode image: image file is truncated"]
    assert not (tmp_path / "p.gpl").exists()


def test_a_file_barely_larger_than_raw_grey_says_by_how_much(tmp_path):
    """262,942 bytes against 262,144 read "1.00× larger": a percentage says it."""
    import numpy as np

    levels = (np.arange(512 * 512) % 256).astype(np.uint8).reshape(512, 512)
    Image.fromarray(levels, "L").save(tmp_path / "grey.png")
    result = _run("encode", str(tmp_path / "grey.png"), "-k", "256", "-o",
                  str(tmp_path / "grey.kpal"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "grey.kpal").stat().st_size == 262_942
    assert "0.3 % larger than raw 8-bit grey" in result.output
    info = _run("info", str(tmp_path / "grey.kpal"))
    assert "every palette entry is grey: 0.3 % larger than raw 8-bit grey" in info.output


def test_decoding_an_srgb_tagged_file_to_gif_says_nothing_about_profiles(tmp_path, photo):
    from PIL import ImageCms

    image = photo.copy()
    image.info["icc_profile"] = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    kpal.save(image, tmp_path / "s.kpal", k=16)
    result = _run("decode", str(tmp_path / "s.kpal"), "-o", str(tmp_path / "s.gif"))
    assert result.exit_code == 0, result.output
    assert result.output == ""
    with Image.open(tmp_path / "s.gif") as gif:
        assert (np.asarray(gif.convert("RGB")) == np.asarray(kpal.decode(
            tmp_path / "s.kpal").convert("RGB"))).all()
