"""The Python API as a user meets it: wrong option names and types, inputs that are not
images, names that would mislead, and the commands around them (sample, view)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, UnidentifiedImageError

import kpal
from kpal.cli import cli
from kpal.codec import inspect, read_header
from kpal.errors import KpalError, OptionError
from kpal.palettes import fit_palette

GOLDEN = Path(__file__).resolve().parent.parent / "samples" / "golden"


@pytest.fixture
def small_png(tmp_path):
    rng = np.random.default_rng(4)
    path = tmp_path / "small.png"
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(path)
    return path


def test_encode_options_reject_an_unknown_name_as_every_surface_does():
    with pytest.raises(OptionError, match=r"unknown option 'colours' \(kpal calls it k\)"):
        kpal.EncodeOptions(colours=3)
    assert kpal.EncodeOptions(k=4).k == 4


def test_options_must_be_encode_options():
    with pytest.raises(OptionError, match=r"options=\{'k': 4\} must be a kpal.EncodeOptions"):
        kpal.encode(np.zeros((4, 4, 3), np.uint8), options={"k": 4})


def test_bytes_that_are_not_an_image_say_so_without_an_address(tmp_path, monkeypatch):
    with pytest.raises(UnidentifiedImageError, match=r"^image: not an image Pillow can read$"):
        kpal.encode(b"not an image at all")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.png").write_text("x")
    with pytest.raises(UnidentifiedImageError, match=r"these bytes name a file: pass a path"):
        kpal.encode(b"in.png")


def test_a_text_mode_file_is_refused_with_the_remedy(small_png):
    with open(small_png) as text, pytest.raises(TypeError, match="open it with 'rb'"):
        kpal.encode(text)


def test_inspect_takes_what_decode_takes(tmp_path):
    data = kpal.encode(np.arange(60, dtype=np.uint8).reshape(4, 5, 3), 4)
    path = tmp_path / "x.kpal"
    path.write_bytes(data)
    expected = inspect(data)
    for source in (memoryview(data), bytearray(data), str(path), path):
        assert inspect(source) == expected
    with open(path, "rb") as fp:
        assert inspect(fp) == expected


def test_save_refuses_a_name_of_another_image_format(tmp_path):
    target = tmp_path / "pic.png"
    with pytest.raises(KpalError, match=r"pic.png: a .kpal file named .png would not be a PNG"):
        kpal.save(np.zeros((4, 4, 3), np.uint8), target)
    assert not target.exists()


def test_save_speaks_python_about_an_existing_file(tmp_path):
    target = tmp_path / "pic.kpal"
    target.write_bytes(b"keep")
    with pytest.raises(FileExistsError, match=r"pass force=True to overwrite"):
        kpal.save(np.zeros((4, 4, 3), np.uint8), target)
    with pytest.raises(TypeError, match="force='no' must be True or False"):
        kpal.save(np.zeros((4, 4, 3), np.uint8), target, force="no")
    assert target.read_bytes() == b"keep"


def test_fit_palette_of_one_path_asks_for_a_list(small_png):
    with Image.open(small_png) as image:
        for one in (str(small_png), small_png, image):
            with pytest.raises(TypeError, match=r"images must be a list .* wrap it in a list"):
                fit_palette(one, 2)
    assert fit_palette([small_png], 2).shape == (2, 3)


def test_sample_to_kpal_keeps_k_colours_and_has_quiet(small_png, tmp_path):
    out = tmp_path / "s.kpal"
    runner = CliRunner()
    result = runner.invoke(cli, ["sample", str(small_png), "-k", "8", "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert read_header(out.read_bytes())[0].k == 8
    assert "Components of the Gaussian mixture" in runner.invoke(cli, ["sample", "--help"]).output


def test_view_of_an_optional_coding_warns_that_the_page_cannot_decode_it(tmp_path):
    page = tmp_path / "ctx.html"
    result = CliRunner().invoke(cli, ["view", str(GOLDEN / "context_k5_11x7.kpal"), "--no-open",
                                      "-o", str(page)])
    assert result.exit_code == 0, result.output
    assert "the page cannot decode coding 3 (context)" in result.stderr
    assert page.exists()
