"""Output paths and messages a user meets: -o naming a folder, --format against the extension,
reports on a stdout that cannot take them, and errors that name the file they are about."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import kpal
from kpal.cli import cli

#: The real command line in a child process, as the console script runs it.
KPAL = [sys.executable, "-c",
        "import sys, _kpal_launcher; sys.argv[0] = 'kpal'; sys.exit(_kpal_launcher.main())"]


@pytest.fixture
def png(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def kpal_file(tmp_path, png):
    path = tmp_path / "photo.kpal"
    with Image.open(png) as image:
        kpal.save(image, path, k=8)
    return path


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_encode_into_an_existing_folder_writes_the_file_in_it(runner, png, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    for out in (str(folder), f"{folder}/"):
        result = runner.invoke(cli, ["encode", str(png), "-o", out, "-q", "--force"])
        assert result.exit_code == 0, result.output
        assert _files(folder) == ["photo.kpal"]
        assert kpal.decode(folder / "photo.kpal").size == (10, 12)


def test_a_trailing_slash_never_becomes_a_file(runner, png, kpal_file, tmp_path):
    for args in (["encode", str(png)], ["decode", str(kpal_file)],
                 ["view", str(kpal_file), "--no-open"]):
        result = runner.invoke(cli, [*args, "-o", str(tmp_path / "new") + "/"])
        assert result.exit_code == 2, result.output
        assert "new/: no such folder" in result.output
        assert not (tmp_path / "new").exists()


def test_decode_into_a_folder_takes_the_format_extension(runner, kpal_file, tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    assert runner.invoke(cli, ["decode", str(kpal_file), "-o", str(folder)]).exit_code == 0
    result = runner.invoke(cli, ["decode", str(kpal_file), "-o", str(folder), "--format", "bmp"])
    assert result.exit_code == 0, result.output
    assert _files(folder) == ["photo.bmp", "photo.png"]
    expected = np.asarray(kpal.decode(kpal_file).convert("RGB"))
    with Image.open(folder / "photo.bmp") as written:
        assert written.format == "BMP"
        assert np.array_equal(np.asarray(written.convert("RGB")), expected)


def test_stdin_into_a_folder_is_refused(runner, png, tmp_path):
    result = runner.invoke(cli, ["encode", "-", "-o", str(tmp_path)], input=png.read_bytes())
    assert result.exit_code == 2
    assert "is a directory; with standard input, -o names the output file" in result.output


@pytest.mark.parametrize(("out", "fmt"), [("x.bmp", "png"), ("x.jpg", "gif")])
def test_format_that_contradicts_the_extension_is_refused(runner, kpal_file, tmp_path, out, fmt):
    target = tmp_path / out
    result = runner.invoke(cli, ["decode", str(kpal_file), "-o", str(target), "--format", fmt])
    assert result.exit_code == 2
    assert f"the extension '{target.suffix}' means" in result.output
    assert f"--format says {fmt.upper()}" in result.output
    assert not target.exists()


@pytest.mark.parametrize(("out", "fmt", "written"), [
    ("x.jpeg", "jpg", "JPEG"), ("x.TIF", "tiff", "TIFF"), ("x.noext", "png", "PNG")])
def test_format_that_agrees_or_names_an_unknown_extension_is_used(runner, kpal_file, tmp_path,
                                                                  out, fmt, written):
    target = tmp_path / out
    result = runner.invoke(cli, ["decode", str(kpal_file), "-o", str(target), "--format", fmt])
    assert result.exit_code == 0, result.output
    with Image.open(target) as image:
        assert image.format == written


def test_several_inputs_into_a_file_name_are_refused(runner, png, tmp_path):
    other = tmp_path / "other.png"
    other.write_bytes(png.read_bytes())
    result = runner.invoke(cli, ["encode", str(png), str(other), "-o", str(tmp_path / "all.kpal")])
    assert result.exit_code == 2
    assert "with several inputs, -o names a folder, and this looks like a file name" \
        in result.output
    assert not (tmp_path / "all.kpal").exists()


def test_decode_help_gives_a_decode_extension():
    from click.testing import CliRunner

    text = CliRunner().invoke(cli, ["decode", "--help"]).output
    assert "-decoded.png" in text and ".kpal or -k16.kpal" not in text


def test_the_palette_file_is_never_the_output(runner, png, tmp_path):
    palette = tmp_path / "shared.kpal"
    assert runner.invoke(cli, ["palette", str(png), "-o", str(palette), "-k", "4"]).exit_code == 0
    before = palette.read_bytes()
    result = runner.invoke(cli, ["encode", str(png), "--palette", str(palette), "-o",
                                 str(palette), "--force"])
    assert result.exit_code == 2
    assert "output is the --palette file" in result.output
    assert palette.read_bytes() == before


def test_a_palette_format_error_names_the_file(runner, tmp_path):
    rgba = np.zeros((6, 8, 4), dtype=np.uint8)
    rgba[..., 0] = np.arange(8) * 30
    rgba[..., 3] = np.arange(8) * 30 + 10
    src = tmp_path / "logo.png"
    Image.fromarray(rgba, "RGBA").save(src)
    out = tmp_path / "shared.gpl"
    result = runner.invoke(cli, ["palette", str(src), "-o", str(out)])
    assert result.exit_code == 1
    assert f"{out}: a GIMP (.gpl) palette holds no alpha" in result.output
    assert not out.exists()


def test_decode_warnings_name_the_output(runner, kpal_file, tmp_path, monkeypatch):
    import warnings

    from kpal import cli as cli_module

    real = cli_module.encode_image_file

    def warning_writer(im, fmt, out):
        warnings.warn("the writer noticed something", UserWarning, stacklevel=1)
        return real(im, fmt, out)

    monkeypatch.setattr(cli_module, "encode_image_file", warning_writer)
    out = tmp_path / "again.png"
    result = runner.invoke(cli, ["decode", str(kpal_file), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"kpal: warning: {out}: the writer noticed something" in result.output
    assert out.exists()


def test_info_json_problem_does_not_repeat_the_file(runner, tmp_path):
    short = tmp_path / "short.kpal"
    short.write_bytes(b"\x89KPAL\r\n\x1a\n\x01")
    result = runner.invoke(cli, ["info", str(short), "--json"])
    assert result.exit_code == 1
    record = json.loads(result.stdout)
    assert record["file"] == str(short)
    assert record["problem"].startswith("truncated header")


def _run(args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*KPAL, *args], capture_output=True, text=True, timeout=120, **kwargs)


def test_a_latin1_stdout_gets_the_report(png, tmp_path):
    out = tmp_path / "x.kpal"
    env = {**os.environ, "PYTHONIOENCODING": "latin-1"}
    done = _run(["encode", str(png), "-o", str(out)], env=env, encoding="latin-1")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{png} ? {out}" in done.stdout  # the arrow, which Latin-1 cannot show
    assert "× smaller" in done.stdout  # which it can
    assert out.exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("args", [["info", "{kpal}"], ["info", "{kpal}", "--json"], ["--help"]])
def test_a_full_stdout_is_named(kpal_file, args):
    with open("/dev/full", "w") as full:
        done = subprocess.run([*KPAL, *(a.format(kpal=kpal_file) for a in args)], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr == "kpal: error: <stdout>: cannot write: No space left on device\n"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX terminals")
def test_binary_output_is_not_written_to_a_terminal(png, kpal_file):
    import pty

    main, child = pty.openpty()
    try:
        for args, refused in ((["encode", str(png), "-o", "-"], True),
                              (["decode", str(kpal_file), "-o", "-"], True),
                              (["palette", str(png), "-o", "-", "-k", "2", "-q"], False)):
            done = subprocess.run([*KPAL, *args], stdout=child, stderr=subprocess.PIPE,
                                  text=True, timeout=120)
            if refused:
                assert done.returncode == 2
                assert "binary output is not written to a terminal" in done.stderr
            else:
                assert done.returncode == 0, done.stderr
                assert os.read(main, 1) == b"#"  # hex colours are text
    finally:
        os.close(main)
        os.close(child)


def test_an_unusable_icc_profile_is_dropped_with_a_warning_naming_the_file(runner, tmp_path):
    src = tmp_path / "junk.png"
    Image.new("RGB", (6, 4), (10, 20, 30)).save(src, icc_profile=b"not a profile")
    out = tmp_path / "junk.kpal"
    result = runner.invoke(cli, ["encode", str(src), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert f"kpal: warning: {src}: the image's ICC profile is dropped" in result.output
    assert "icc_profile" not in kpal.decode(out).info
    assert kpal.decode(out).convert("RGB").getpixel((0, 0)) == (10, 20, 30)


def test_batch_decode_keeps_the_icc_profile_and_the_icon_size(runner, tmp_path):
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(
        src / "p.png", icc_profile=profile)
    assert runner.invoke(cli, ["encode", str(src), "-o", str(tmp_path / "k"), "-q"]).exit_code == 0
    for fmt in ("jpg", "ico"):
        out = tmp_path / fmt
        result = runner.invoke(cli, ["decode", str(tmp_path / "k"), "-o", str(out), "--format",
                                     fmt, "-q"])
        assert result.exit_code == 0, result.output
        (written,) = out.iterdir()
        with Image.open(written) as image:
            assert image.size == (40, 30)
            if fmt == "jpg":  # ICO holds no profile
                assert image.info.get("icc_profile") == profile


@pytest.mark.skipif(not os.path.exists("/dev/stdout"), reason="no /dev/stdout here")
def test_dev_stdout_as_output_is_standard_output(png, tmp_path):
    """Into a pipe: the image alone on stdout, the report on stderr, as with -o -."""
    dash = subprocess.run([*KPAL, "encode", str(png), "-k", "4", "-o", "-"],
                          capture_output=True, check=True)
    named = subprocess.run([*KPAL, "encode", str(png), "-k", "4", "-o", "/dev/stdout"],
                           capture_output=True, check=True)
    assert named.stdout == dash.stdout and len(named.stdout) > 30
    assert b"on disk" in named.stderr
    redirected = tmp_path / "redirected.kpal"
    with open(redirected, "wb") as f:  # > redirected.kpal: no "file exists", no report inside
        done = subprocess.run([*KPAL, "encode", str(png), "-k", "4", "-o", "/dev/stdout"],
                              stdout=f, stderr=subprocess.PIPE, check=False)
    assert done.returncode == 0, done.stderr
    assert redirected.read_bytes() == dash.stdout
    # -o /dev/null > /dev/null: the report is silenced as before, not moved to stderr.
    quiet = subprocess.run([*KPAL, "encode", str(png), "-k", "4", "-o", os.devnull],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
    assert quiet.stderr == b""


@pytest.mark.skipif(not os.path.exists("/dev/stdout"), reason="no /dev/stdout here")
@pytest.mark.parametrize(("command", "starts"), [
    (["sample", "{png}"], b"\x89PNG"),
    (["plot", "{png}", "--kind", "palette", "-k", "2"], b"\x89PNG"),
    (["view", "{kpal}"], b"<!doctype html>"),
])
def test_every_command_takes_dev_stdout_redirected_to_a_file(png, kpal_file, tmp_path,
                                                             command, starts):
    """-o /dev/stdout with stdout sent to a file is -o -, in every command that writes one."""
    if command[0] == "plot":
        pytest.importorskip("matplotlib")
    args = [a.format(png=png, kpal=kpal_file) for a in command]
    redirected = tmp_path / "redirected.out"
    with open(redirected, "wb") as f:
        done = subprocess.run([*KPAL, *args, "-o", "/dev/stdout"], stdout=f,
                              stderr=subprocess.PIPE, check=False)
    assert done.returncode == 0, done.stderr
    assert redirected.read_bytes().startswith(starts)
    assert b"web browser" not in done.stderr  # view: -o - opens none


@pytest.mark.skipif(not os.path.exists("/dev/stdin"), reason="no /dev/stdin here")
def test_an_input_that_is_not_a_regular_file_needs_an_output_name(png, tmp_path):
    for command in ("encode", "decode"):
        done = subprocess.run([*KPAL, command, "/dev/stdin"], input=png.read_bytes(),
                              capture_output=True, cwd=tmp_path, check=False)
        assert done.returncode == 2
        assert b"/dev/stdin: not a regular file" in done.stderr and b"give -o" in done.stderr
    assert not os.path.exists("/dev/stdin.kpal") and not os.path.exists("/dev/stdin.png")


def test_a_name_too_long_is_a_usage_error_naming_it(runner, png, tmp_path):
    long = str(tmp_path / ("a" * 300 + ".png"))
    result = runner.invoke(cli, ["encode", long])
    assert result.exit_code == 2, result.output
    assert "File name too long" in result.output and "Traceback" not in result.output
    result = runner.invoke(cli, ["encode", str(png), "-o", str(tmp_path / ("b" * 300 + ".kpal"))])
    assert result.exit_code == 2 and "File name too long" in result.output


def test_control_characters_in_names_are_escaped_in_messages(runner, tmp_path):
    for name, shown in (("two\nlines.png", "two\\nlines.png"),
                        ("evil\x1b]0;title\x07.png", "evil\\x1b]0;title\\x07.png")):
        path = tmp_path / name
        path.write_bytes(b"not an image")
        result = runner.invoke(cli, ["encode", str(path)])
        assert result.exit_code == 1
        line = result.output.strip()
        assert "\n" not in line and "\x1b" not in line and "\x07" not in line
        assert shown in line


def test_a_given_palette_refuses_every_fitting_option(runner, png, tmp_path):
    palette = tmp_path / "pal.hex"
    palette.write_text("#000000\n#ffffff\n")
    for flags in (["--max-iter", "1"], ["--tol", "100"], ["--init", "random"], ["--seed", "3"]):
        result = runner.invoke(cli, ["encode", str(png), "--palette", str(palette), *flags,
                                     "-o", str(tmp_path / "x.kpal")])
        assert result.exit_code == 2, result.output
        assert f"--palette maps onto given colours: {flags[0]} {flags[1]} has nothing to fit" \
            in result.output
    # A seed shifts an ordered pattern: with --dither ordered it is taken.
    result = runner.invoke(cli, ["encode", str(png), "--palette", str(palette), "--seed", "3",
                                 "--dither", "ordered", "-o", str(tmp_path / "x.kpal")])
    assert result.exit_code == 0, result.output


def test_a_palette_file_named_wrong_is_a_usage_error_as_a_missing_input_is(runner, png,
                                                                          tmp_path):
    for where, why in ((tmp_path / "none.gpl", "No such file or directory"),
                       (tmp_path, "Is a directory")):
        result = runner.invoke(cli, ["encode", str(png), "--palette", str(where), "-o",
                                     str(tmp_path / "x.kpal")])
        assert result.exit_code == 2
        assert f"palette file {where}: cannot read: {why}" in result.output


def test_an_image_extension_is_refused_before_the_file_exists_check(runner, png, tmp_path):
    existing = tmp_path / "x.PNG"
    existing.write_bytes(b"keep")
    result = runner.invoke(cli, ["encode", str(png), "-o", str(existing)])
    assert result.exit_code == 2 and "would not be a PNG" in result.output
    assert "--force" not in result.output and existing.read_bytes() == b"keep"


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal")
def test_standard_input_from_a_terminal_is_refused_not_waited_on(tmp_path):
    import pty

    leader, follower = pty.openpty()
    try:
        for args in (["encode", "-", "-o", "x.kpal"], ["info", "-"],
                     ["decode", "-", "-o", "x.png"]):
            done = subprocess.run([*KPAL, *args], stdin=follower, capture_output=True,
                                  cwd=tmp_path, timeout=60, check=False)
            assert done.returncode == 2
            assert b"standard input is a terminal" in done.stderr
    finally:
        os.close(leader)
        os.close(follower)


@pytest.mark.parametrize("spelling", ["1_6", "\u0661\u0666", "16.0", "0x10", "1e1"])
def test_k_takes_plain_ascii_digits_only(runner, png, tmp_path, spelling):
    result = runner.invoke(cli, ["encode", str(png), "-k", spelling, "-o",
                                 str(tmp_path / "x.kpal")])
    assert result.exit_code == 2 and "must be an integer between 1 and 256" in result.output


def test_curve_refuses_k(runner, png, tmp_path):
    result = runner.invoke(cli, ["plot", str(png), "--kind", "curve", "-k", "8", "-o",
                                 str(tmp_path / "c.png")])
    assert result.exit_code == 2 and "drop -k" in result.output


@pytest.mark.parametrize("command", [["sample"], ["plot", "--kind", "palette"]])
def test_a_folder_as_the_figure_or_sample_output_is_named_as_one(runner, png, tmp_path,
                                                                 command):
    folder = tmp_path / "somewhere"
    folder.mkdir()
    result = runner.invoke(cli, [command[0], str(png), *command[1:], "-o", str(folder)])
    assert result.exit_code == 2
    assert f"{folder}: is a directory, expected a file" in result.output


def test_a_name_ending_in_a_dot_gets_its_output_named_as_without_it(runner, png, tmp_path):
    dotted = tmp_path / "d.o.t.png."
    dotted.write_bytes(png.read_bytes())
    assert runner.invoke(cli, ["encode", str(dotted), "-k", "4", "-q"]).exit_code == 0
    assert (tmp_path / "d.o.t.kpal").exists() and not (tmp_path / "d.o.t.png..kpal").exists()
    result = runner.invoke(cli, ["encode", str(dotted), str(png), "-o", str(tmp_path / "out"),
                                 "-k", "4", "-q"])
    assert result.exit_code == 0, result.output
    assert _files(tmp_path / "out") == ["d.o.t.kpal", "photo.kpal"]


def test_view_names_a_missing_input_as_every_command_does(runner, tmp_path):
    missing = tmp_path / "nothere.kpal"
    for command in (["view", str(missing), "--no-open"], ["info", str(missing)]):
        result = runner.invoke(cli, command)
        assert result.exit_code == 2
        assert f"{missing}: no such file" in result.output, command


def test_a_symlink_loop_is_said_to_be_one(runner, tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    for command in (["info", str(tmp_path / "a")], ["encode", str(tmp_path / "a")],
                    ["view", str(tmp_path / "a"), "--no-open"]):
        result = runner.invoke(cli, command)
        assert result.exit_code == 2, command
        assert f"{tmp_path / 'a'}: Too many levels of symbolic links" in result.output, command


@pytest.mark.skipif(not os.path.exists(os.devnull), reason="no /dev/null")
@pytest.mark.parametrize("command", [["view", "--no-open"], ["palette"], ["sample"]])
def test_dev_null_takes_the_default_format(runner, kpal_file, command):
    argv = [command[0], str(kpal_file), *command[1:], "-o", os.devnull]
    result = runner.invoke(cli, argv)
    assert result.exit_code == 0, result.output


def test_one_url_input_with_a_file_output_is_told_why_it_needs_a_folder(runner, png, tmp_path):
    pytest.importorskip("fsspec")
    out = tmp_path / "x.kpal"
    result = runner.invoke(cli, ["encode", png.as_uri(), "-o", str(out), "-k", "4"])
    assert result.exit_code == 2
    assert (f"{out}: a URL input runs as a batch, -o names a folder, and this looks like a "
            "file name") in result.output


def test_a_symlink_loop_among_several_inputs_is_said_to_be_one(runner, png, tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    for command in (["encode", str(tmp_path / "a"), str(png), "-o", str(tmp_path / "out")],
                    ["palette", str(tmp_path / "a"), "-o", "-"]):
        result = runner.invoke(cli, command)
        assert result.exit_code == 2, command
        assert f"{tmp_path / 'a'}: Too many levels of symbolic links" in result.output, command
