"""kpal view as a user meets it: names that are not UTF-8, inputs that can be read only
once (pipes), and errors that name the file they are about."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import kpal
from kpal.cli import cli


@pytest.fixture
def kpal_bytes():
    rng = np.random.default_rng(4)
    return kpal.encode(rng.integers(0, 256, (6, 7, 3), dtype=np.uint8), k=4)


@pytest.mark.skipif(sys.platform != "linux", reason="file names are bytes on Linux")
def test_a_name_that_is_not_utf8_gets_a_page(runner, kpal_bytes, tmp_path):
    source = os.path.join(os.fsencode(tmp_path), b"bad\xff.kpal")
    with open(source, "wb") as f:
        f.write(kpal_bytes)
    out = tmp_path / "page.html"
    result = runner.invoke(cli, ["view", os.fsdecode(source), "--no-open", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert 'data-name="bad\ufffd.kpal"' in out.read_text(encoding="utf-8")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_a_pipe_is_read_once(runner, kpal_bytes, tmp_path):
    fifo = tmp_path / "in.kpal"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(kpal_bytes)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    out = tmp_path / "page.html"
    result = runner.invoke(cli, ["view", str(fifo), "--no-open", "-o", str(out)])
    writer.join(10)
    assert result.exit_code == 0, result.output
    assert out.exists()


def test_an_unreadable_input_is_named_not_the_page(runner, tmp_path):
    out = tmp_path / "page.html"
    result = runner.invoke(cli, ["view", "/proc/self/mem", "--no-open", "-o", str(out)])
    assert result.exit_code == 1
    assert "/proc/self/mem: cannot read" in result.output
    assert not out.exists()


def test_a_huge_claiming_file_is_named(runner, tmp_path):
    source = Path(__file__).parent / "corrupt" / "bomb_k1_2p30_pixels.kpal"
    result = runner.invoke(cli, ["view", str(source), "--no-open", "-o",
                                 str(tmp_path / "p.html")])
    assert result.exit_code == 1
    assert f"{source}: Image size (1073741824 pixels) exceeds limit" in result.output


def test_stdin_is_read_for_a_page_named_image_kpal(runner, kpal_bytes, tmp_path):
    out = tmp_path / "page.html"
    result = runner.invoke(cli, ["view", "-", "--no-open", "-o", str(out)], input=kpal_bytes)
    assert result.exit_code == 0, result.output
    assert 'data-name="image.kpal"' in out.read_text(encoding="utf-8")


def test_palette_does_not_offer_stdin_for_a_device(runner, tmp_path):
    result = runner.invoke(cli, ["palette", "/dev/null", "-o", str(tmp_path / "p.hex")])
    assert result.exit_code == 2
    assert "/dev/null: is a device, expected a file" in result.output
    assert "use - for stdin" not in result.output


def test_the_page_is_written_as_html_or_into_a_folder(runner, kpal_bytes, tmp_path):
    src = tmp_path / "photo.kpal"
    src.write_bytes(kpal_bytes)
    result = runner.invoke(cli, ["view", str(src), "-o", str(tmp_path / "v.png"), "--no-open"])
    assert result.exit_code == 2 and "v.png: the page is HTML; name it .html" in result.stderr
    assert not (tmp_path / "v.png").exists()
    folder = tmp_path / "pages"
    folder.mkdir()
    result = runner.invoke(cli, ["view", str(src), "-o", str(folder), "--no-open"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(folder / "photo.html")
    assert (folder / "photo.html").read_text(encoding="utf-8").startswith("<!doctype html>")
