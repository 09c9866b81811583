"""The kpal command line, through click's CliRunner."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import kpal
from kpal import codec
from kpal.cli import cli
from kpal.metrics import psnr


@pytest.fixture
def small_jpg(tmp_path, photo):
    path = tmp_path / "small.jpg"
    photo.save(path, quality=95)
    return path


def test_encode_writes_stem_kpal_and_reports(runner, small_jpg):
    result = runner.invoke(cli, ["encode", str(small_jpg), "-k", "16"])
    assert result.exit_code == 0, result.output
    out = small_jpg.with_suffix(".kpal")
    n = 64 * 48
    size = -(-(16 * 24 + n * 4) // 8) + 30
    assert out.stat().st_size == size
    text = result.output
    assert f"16×24 + {n}×4 = {16 * 24 + n * 4} bits" in text
    assert f"{size:,} bytes (overhead 30 bytes" in text
    assert "PSNR" in text and " dB" in text and "iterations" in text
    with Image.open(out) as im:
        assert im.size == (64, 48) and im.info["k"] == 16


def test_encode_is_deterministic_and_matches_api(runner, small_jpg, tmp_path):
    a, b = tmp_path / "a.kpal", tmp_path / "b.kpal"
    for path in (a, b):
        assert runner.invoke(cli, ["encode", str(small_jpg), "-o", str(path), "-k", "8",
                                   "--seed", "5", "-q"]).exit_code == 0
    assert a.read_bytes() == b.read_bytes() == kpal.encode(small_jpg, 8, seed=5)


def test_existing_output_needs_force(runner, small_jpg):
    out = small_jpg.with_suffix(".kpal")
    out.write_bytes(b"precious")
    result = runner.invoke(cli, ["encode", str(small_jpg)])
    assert result.exit_code == 2
    assert f"kpal: error: {out}: file exists (use --force to overwrite)" in result.output
    assert out.read_bytes() == b"precious"
    assert runner.invoke(cli, ["encode", str(small_jpg), "--force", "-q"]).exit_code == 0
    assert out.read_bytes()[:5] == b"\x89KPAL"


def test_output_equal_to_input_is_refused_even_with_force(runner, tmp_path, small_jpg):
    result = runner.invoke(cli, ["encode", str(small_jpg), "-o", str(small_jpg), "--force"])
    assert result.exit_code == 2
    assert "output is the input file" in result.output
    assert small_jpg.read_bytes()[:2] == b"\xff\xd8"


@pytest.mark.parametrize("k", ["0", "257", "-3"])
def test_k_out_of_range(runner, small_jpg, k):
    result = runner.invoke(cli, ["encode", str(small_jpg), "-k", k])
    assert result.exit_code == 2
    message = f"-k/--colors: k={k} must be an integer between 1 and 256"
    assert result.output == f"kpal: error: {message}\n"


def test_k_not_a_number(runner, small_jpg):
    result = runner.invoke(cli, ["encode", str(small_jpg), "-k", "abc"])
    assert result.exit_code == 2
    assert "k='abc' must be an integer between 1 and 256" in result.output


def test_missing_input(runner, tmp_path):
    result = runner.invoke(cli, ["encode", str(tmp_path / "nope.jpg")])
    assert result.exit_code == 2
    assert result.output.strip() == f"kpal: error: {tmp_path / 'nope.jpg'}: no such file"


def test_not_an_image(runner, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    result = runner.invoke(cli, ["encode", str(path)])
    assert result.exit_code == 1
    assert result.output.strip() == f"kpal: error: {path}: not an image Pillow can read"
    assert not (tmp_path / "notes.kpal").exists()


def test_stdin_to_stdout(runner, small_jpg):
    result = runner.invoke(cli, ["encode", "-", "-k", "4"], input=small_jpg.read_bytes())
    assert result.exit_code == 0
    assert result.stdout_bytes[:9] == b"\x89KPAL\r\n\x1a\n"
    assert kpal.decode(result.stdout_bytes).info["k"] == 4


def test_decode_to_png_and_bmp(runner, tmp_path, small_jpg):
    kpal_path = tmp_path / "x.kpal"
    kpal.save(small_jpg, kpal_path, 8)
    expected = np.asarray(kpal.decode(kpal_path).convert("RGB"))
    assert runner.invoke(cli, ["decode", str(kpal_path)]).exit_code == 0
    with Image.open(tmp_path / "x.png") as im:
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), expected)
    assert runner.invoke(cli, ["decode", str(kpal_path), "-o", str(tmp_path / "y.bmp")]
                         ).exit_code == 0
    with Image.open(tmp_path / "y.bmp") as im:
        assert im.format == "BMP"
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), expected)


def test_decode_unknown_extension(runner, tmp_path, small_jpg):
    kpal_path = tmp_path / "x.kpal"
    kpal.save(small_jpg, kpal_path, 8)
    result = runner.invoke(cli, ["decode", str(kpal_path), "-o", str(tmp_path / "y.zzz")])
    assert result.exit_code == 2
    assert "unknown image extension '.zzz'" in result.output


def test_decode_corrupt_file_is_one_line_exit_1(runner, tmp_path, small_jpg):
    kpal_path = tmp_path / "x.kpal"
    kpal.save(small_jpg, kpal_path, 8)
    data = bytearray(kpal_path.read_bytes())
    data[-1] ^= 1
    kpal_path.write_bytes(bytes(data))
    result = runner.invoke(cli, ["decode", str(kpal_path)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"kpal: error: {kpal_path}: checksum mismatch")
    assert not (tmp_path / "x.png").exists()


def test_info_text_and_json(runner, tmp_path, small_jpg):
    kpal_path = tmp_path / "x.kpal"
    kpal.save(small_jpg, kpal_path, 16)
    result = runner.invoke(cli, ["info", str(kpal_path)])
    assert result.exit_code == 0
    assert "checksum       ok" in result.output
    assert "16 colours, 4 bits per index" in result.output
    size, payload = kpal_path.stat().st_size, kpal_path.stat().st_size - 26 - 48 - 4
    # The parts add up by hand to the file's size.
    assert (f"on disk        {size:,} bytes = header 26 + palette 48 + payload {payload:,} + "
            "checksum 4") in result.output
    result = runner.invoke(cli, ["info", str(kpal_path), "--json"])
    report = json.loads(result.output)
    assert report["header"]["k"] == 16 and report["checksum"] == "ok"
    assert report["size"]["on_disk_bytes"] == kpal_path.stat().st_size


def test_info_on_damaged_file_shows_header_and_fails(runner, tmp_path, small_jpg):
    kpal_path = tmp_path / "x.kpal"
    kpal.save(small_jpg, kpal_path, 16)
    data = bytearray(kpal_path.read_bytes())
    data[100] ^= 4
    kpal_path.write_bytes(bytes(data))
    result = runner.invoke(cli, ["info", str(kpal_path)])
    assert result.exit_code == 1
    assert "checksum       mismatch" in result.output
    assert "kpal: error:" in result.output


def test_help_on_every_command(runner):
    for args in (["--help"], ["encode", "--help"], ["decode", "--help"], ["info", "--help"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0 and "Usage:" in result.output


def test_sample_photo_acceptance(runner, tmp_path, rocket_path):
    """The README's first command: a 640x427 photo at k = 16."""
    src = tmp_path / "rocket.jpg"
    shutil.copy(rocket_path, src)
    result = runner.invoke(cli, ["encode", str(src), "-k", "16"])
    assert result.exit_code == 0, result.output
    n = 640 * 427
    out = tmp_path / "rocket.kpal"
    assert out.stat().st_size == -(-(16 * 24 + n * 4) // 8) + 30
    with Image.open(src) as im:
        original = np.asarray(im.convert("RGB"))
    decoded = np.asarray(Image.open(out).convert("RGB"))
    assert decoded.shape == original.shape
    assert psnr(original, decoded) >= 29.0


# ------------------------------------------------------------------ report wording
def _report(runner, path, *args):
    result = runner.invoke(cli, ["encode", str(path), "-o", str(path.with_suffix(".kpal")),
                                 "--force", *args])
    assert result.exit_code == 0, result.output
    return dict(
        (line[2:16].strip(), line[17:]) for line in result.output.splitlines()
        if line.startswith("  ")
    )


def test_report_mse_is_the_per_channel_mse_the_psnr_uses(runner, small_jpg):
    rows = _report(runner, small_jpg, "-k", "8")
    mse = float(rows["fit"].split("MSE ")[1].split(" per channel")[0])
    psnr = float(rows["PSNR"].split(" dB")[0])
    assert psnr == pytest.approx(10 * math.log10(255**2 / mse), abs=0.01)
    assert "inertia" not in rows["fit"]


def test_report_says_1_bit_and_gmm_has_no_coarse_levels(runner, small_jpg):
    rows = _report(runner, small_jpg, "-k", "2", "--method", "gmm")
    assert "k = 2, 1 bit per index" in rows["colours"]
    assert "EM iteration" in rows["fit"] and "coarse-to-fine" not in rows["fit"]


@pytest.mark.parametrize("coding", ["radix", "entropy"])
def test_report_of_smaller_codings_does_not_claim_the_fixed_size(runner, small_jpg, coding):
    rows = _report(runner, small_jpg, "-k", "5", "--coding", coding)
    assert "theoretical" not in rows and "overhead 30 bytes" not in rows["on disk"]
    size = small_jpg.with_suffix(".kpal").stat().st_size
    assert rows["on disk"].startswith(f"{size:,} bytes, ")
    fixed = rows["fixed width"]
    assert fixed.endswith("(the textbook size)")
    assert "context models go below it" in rows["order-0"]


def test_report_time_covers_one_fit_when_sampling(runner, small_jpg, monkeypatch):
    calls = []
    real = codec.quantize
    monkeypatch.setattr(codec, "quantize", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    rows = _report(runner, small_jpg, "-k", "8", "--sample", "0.5")
    assert len(calls) == 1 and calls[0]["sample"] == 0.5
    assert rows["sample"].startswith("fitted on a random 50% of the pixels")
    tiny = _report(runner, small_jpg, "-k", "8", "--sample", "0.00001")
    assert tiny["sample"].startswith("fitted on a random 0.001% of the pixels (all of them if")
    assert "sampling cost" not in rows


def test_report_says_when_exif_orientation_was_applied(runner, tmp_path, photo):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    photo.save(path, exif=exif)
    rows = _report(runner, path, "-k", "8")
    assert rows["orientation"] == ("EXIF orientation 6 applied: rotated 90° clockwise, "
                                   "stored upright")
    assert kpal.decode(path.with_suffix(".kpal")).size == (photo.height, photo.width)


def test_info_of_a_truncated_file_says_so(runner, small_jpg, tmp_path):
    data = kpal.encode(small_jpg, 16)
    path = tmp_path / "cut.kpal"
    path.write_bytes(data[:200])
    result = runner.invoke(cli, ["info", str(path)])
    assert result.exit_code == 1
    assert (f"on disk        200 bytes, but the header implies {len(data):,} bytes (the file "
            "is too short)") in result.output
    assert "overhead" not in result.output and "ratio" not in result.output
    assert result.output.splitlines()[-1] == (f"kpal: error: {path}: file is truncated: 200 "
                                              f"bytes, the header implies {len(data)}")


def test_info_json_on_bad_files_still_prints_json(runner, small_jpg, tmp_path):
    data = kpal.encode(small_jpg, 16)
    cut = tmp_path / "cut.kpal"
    cut.write_bytes(data[:200])
    junk = tmp_path / "junk.kpal"
    junk.write_bytes(b"hello")
    for path, problem in ((cut, "file is truncated"), (junk, "not a .kpal file")):
        result = runner.invoke(cli, ["info", "--json", str(path)])
        assert result.exit_code == 1
        out = result.stdout  # click < 8.2 mixes stderr in: the JSON comes first
        report = json.loads(out[: out.rindex("}") + 1])
        assert report["file"] == str(path) and problem in report["problem"]


def test_info_calls_the_order0_figure_what_it_is(runner, small_jpg, tmp_path):
    path = tmp_path / "e.kpal"
    path.write_bytes(kpal.encode(small_jpg, 16, coding="entropy"))
    result = runner.invoke(cli, ["info", str(path)])
    assert result.exit_code == 0
    assert "entropy bound" not in result.output and "order-0" in result.output


# ------------------------------------------------------------------ view
def test_view_writes_one_page_and_opens_it(tmp_path, monkeypatch):
    from kpal import view as viewer_module

    from .conftest import GOLDEN

    opened = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
    src = GOLDEN / "k5_7x3.kpal"
    out = tmp_path / "page.html"
    result = CliRunner().invoke(cli, ["view", str(src), "-o", str(out)])
    assert result.exit_code == 0 and result.output == f"{out}\n"
    assert opened == [out.resolve().as_uri()]
    assert out.read_text(encoding="utf-8") == viewer_module.to_html(src)
    result = CliRunner().invoke(cli, ["view", str(src), "--no-open", "-o", str(out), "--force"])
    assert result.exit_code == 0 and len(opened) == 1


def test_view_never_overwrites_the_input_and_needs_force_for_a_file(tmp_path, monkeypatch):
    # `kpal view x.kpal -o x.kpal` replaced the .kpal file with its page; any file was replaced.
    from .conftest import GOLDEN

    monkeypatch.setattr("webbrowser.open", lambda url: pytest.fail("no browser expected"))
    src = tmp_path / "a.kpal"
    src.write_bytes((GOLDEN / "k5_7x3.kpal").read_bytes())
    other = tmp_path / "notes.html"
    other.write_text("keep me")
    for out, force, message in (
            (src, ["--force"], f"{src}: the page is HTML; name it .html (or give a folder)"),
            (other, [], f"{other}: file exists (use --force to overwrite)")):
        result = CliRunner().invoke(cli, ["view", str(src), "--no-open", "-o", str(out), *force])
        assert result.exit_code == 2
        assert result.output.splitlines()[-1] == f"kpal: error: {message}"
    assert src.read_bytes() == (GOLDEN / "k5_7x3.kpal").read_bytes()
    assert other.read_text() == "keep me"


def test_view_to_stdout_writes_the_page_and_opens_nothing(monkeypatch):
    from kpal import view as viewer_module

    from .conftest import GOLDEN

    monkeypatch.setattr("webbrowser.open", lambda url: pytest.fail("no browser expected"))
    src = GOLDEN / "k5_7x3.kpal"
    result = CliRunner().invoke(cli, ["view", str(src), "-o", "-"])
    assert result.exit_code == 0
    assert result.stdout_bytes == viewer_module.to_html(src).encode("utf-8")


def test_view_of_a_damaged_file_writes_the_page_and_says_what_is_wrong(tmp_path):
    from kpal import view as viewer_module

    from .conftest import GOLDEN

    data = bytearray((GOLDEN / "k5_7x3.kpal").read_bytes())
    data[-1] ^= 0xFF  # the checksum
    src, out = tmp_path / "damaged.kpal", tmp_path / "page.html"
    src.write_bytes(bytes(data))
    result = CliRunner().invoke(cli, ["view", str(src), "--no-open", "-o", str(out)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == str(out) and lines[1].startswith(f"kpal: error: {src}: checksum mismatch")
    assert out.read_text(encoding="utf-8") == viewer_module.to_html(src)


def test_view_of_a_file_that_is_not_kpal_is_one_error_line(tmp_path):
    bad = tmp_path / "x.kpal"
    bad.write_bytes(b"GIF89a" + bytes(40))
    result = CliRunner().invoke(cli, ["view", str(bad), "--no-open"])
    assert result.exit_code == 1
    assert result.output.startswith(f"kpal: error: {bad}: not a .kpal file")
    assert len(result.output.splitlines()) == 1
