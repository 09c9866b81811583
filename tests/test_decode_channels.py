"""Decoding to one-channel formats: a .pgm file holds grey levels, a .pbm or XBM file black
and white, whatever the palette; pixels change only with a note saying so."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import kpal
from kpal import outputs
from kpal.batch import decode_many
from kpal.cli import cli


def _kpal(tmp_path, pixels: np.ndarray, name: str = "img.kpal"):
    path = tmp_path / name
    with pytest.warns(UserWarning, match="lossless"):  # fewer colours than k: all kept
        kpal.save(Image.fromarray(pixels), path, k=8)
    return path


@pytest.fixture
def colour(tmp_path):
    rng = np.random.default_rng(5)
    palette = rng.integers(0, 256, (6, 3), dtype=np.uint8)
    return _kpal(tmp_path, palette[rng.integers(0, 6, (9, 13))])


@pytest.fixture
def grey(tmp_path):
    levels = np.array([0, 40, 41, 200, 255], dtype=np.uint8)
    rng = np.random.default_rng(6)
    return _kpal(tmp_path, np.repeat(levels[rng.integers(0, 5, (9, 13))][..., None], 3, axis=2),
                 "grey.kpal")


@pytest.fixture
def black_white(tmp_path):
    rng = np.random.default_rng(7)
    bw = np.where(rng.random((9, 13)) < 0.5, 0, 255).astype(np.uint8)
    return _kpal(tmp_path, np.repeat(bw[..., None], 3, axis=2), "bw.kpal")


def _rgb(path) -> np.ndarray:
    return np.asarray(kpal.decode(path).convert("RGB"))


def test_grey_levels_go_to_pgm_exactly_without_a_note(runner, grey, tmp_path):
    out = tmp_path / "g.pgm"
    result = runner.invoke(cli, ["decode", str(grey), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "note" not in result.output
    assert out.read_bytes()[:2] == b"P5"
    with Image.open(out) as back:
        assert back.mode == "L"
        assert np.array_equal(np.asarray(back), _rgb(grey)[..., 0])


def test_colours_go_to_pgm_as_luma_with_a_note(runner, colour, tmp_path):
    out = tmp_path / "c.pgm"
    result = runner.invoke(cli, ["decode", str(colour), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "PGM holds grey levels: the colours were converted to grey" in result.output
    assert out.read_bytes()[:2] == b"P5"
    expected = np.asarray(Image.fromarray(_rgb(colour)).convert("L"))
    with Image.open(out) as back:
        assert np.array_equal(np.asarray(back), expected)


def test_black_and_white_go_to_pbm_and_xbm_exactly(runner, black_white, tmp_path):
    bw = _rgb(black_white)[..., 0]
    for name, magic in (("b.pbm", b"P4"), ("b.xbm", b"#d")):
        out = tmp_path / name
        result = runner.invoke(cli, ["decode", str(black_white), "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert "note" not in result.output
        assert out.read_bytes()[:2] == magic
        with Image.open(out) as back:
            assert back.mode == "1"
            assert np.array_equal(np.asarray(back.convert("L")), bw)


@pytest.mark.parametrize("name", ["c.pbm", "c.xbm"])
def test_other_levels_are_dithered_to_black_and_white_with_a_note(runner, colour, tmp_path,
                                                                  name):
    out = tmp_path / name
    result = runner.invoke(cli, ["decode", str(colour), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "holds black and white only: the image was dithered" in result.output
    grey = Image.fromarray(_rgb(colour)).convert("L")
    with Image.open(out) as back:
        assert back.mode == "1"
        assert np.array_equal(np.asarray(back), np.asarray(grey.convert("1")))


def test_other_formats_keep_their_colours(colour, tmp_path):
    image = kpal.decode(colour)
    for fmt, suffix in (("PPM", ".ppm"), ("PNG", ".png"), ("PPM", None)):
        out, note = outputs.for_format(image, fmt, None, suffix)
        assert out is image
        assert note is None


def test_a_batch_decodes_to_pgm_and_pbm_the_same_way(colour, grey, tmp_path):
    for fmt, suffix, magic in (("PPM", ".pgm", b"P5"), ("PPM", ".pbm", b"P4")):
        folder = tmp_path / suffix.lstrip(".")
        results = list(decode_many([colour, grey], folder, jobs=1, fmt=fmt, ext=suffix))
        assert [r.error for r in results] == [None, None]
        for source in (colour, grey):
            written = folder / (source.stem + suffix)
            assert written.read_bytes()[:2] == magic
        notes = {str(r.path).rsplit("/", 1)[-1]: r.notes for r in results}
        assert notes["grey.kpal"] == (() if suffix == ".pgm" else notes["grey.kpal"])
        assert any("the colours were converted" in n or "dithered" in n
                   for n in notes["img.kpal"])


@pytest.mark.parametrize(("args", "message"), [
    (["-o", "{dir}/x.pfm"], "PFM holds floating-point samples"),
    (["-o", "{dir}/x.spi", "--format", "spider"], "SPIDER holds one channel of floating-point"),
])
def test_float_formats_are_refused_before_any_work(runner, colour, tmp_path, args, message):
    argv = [arg.format(dir=tmp_path) for arg in args]
    result = runner.invoke(cli, ["decode", str(colour), *argv])
    assert result.exit_code == 2
    assert message in result.output
    assert not any(p.suffix in (".pfm", ".spi") for p in tmp_path.iterdir())


def test_a_batch_refuses_spider_too(colour, tmp_path):
    from kpal.batch import BatchError

    with pytest.raises(BatchError, match="SPIDER holds one channel"):
        list(decode_many([colour], tmp_path / "out", jobs=1, fmt="SPIDER"))
