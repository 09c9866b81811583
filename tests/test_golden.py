"""The golden files in samples/golden/ (spec/kpal.md §10)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from PIL import Image

import kpal
from kpal import codec

from .conftest import GOLDEN

spec = importlib.util.spec_from_file_location("regenerate", GOLDEN / "regenerate.py")
regenerate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(regenerate)

NAMES = sorted(regenerate.GOLDEN)


def _expected(name: str) -> tuple[dict, np.ndarray, np.ndarray]:
    lines = (GOLDEN / f"{name}.expected.txt").read_text().splitlines()
    fields = {}
    i = 0
    while lines[i] != "indices":
        key, _, value = lines[i].partition(" ")
        fields[key] = value
        i += 1
    palette = np.array([[int(c[j:j + 2], 16) for j in (0, 2, 4)]
                        for c in fields.pop("palette").split()], np.uint8)
    indices = np.array([[int(v) for v in row.split()] for row in lines[i + 1:]], np.uint8)
    return {key: int(v) for key, v in fields.items()}, palette, indices


def test_every_golden_file_is_present():
    assert NAMES and all((GOLDEN / f"{n}.kpal").is_file() for n in NAMES)
    assert {regenerate.GOLDEN[n][3] for n in NAMES} == {"fixed", "radix", "entropy"}


@pytest.mark.parametrize("name", NAMES)
def test_golden_file_decodes_to_expected_pixels(name):
    fields, palette, indices = _expected(name)
    data = (GOLDEN / f"{name}.kpal").read_bytes()
    assert len(data) == fields["file_size"]
    header, got_palette, labels = codec.decode_indices(data)
    assert (header.k, header.width, header.height, header.coding) == (
        fields["k"], fields["width"], fields["height"], fields["coding"])
    np.testing.assert_array_equal(got_palette, palette)
    np.testing.assert_array_equal(labels, indices)
    with Image.open(GOLDEN / f"{name}.kpal") as im:
        assert (im.mode, im.size, im.format) == ("P", (fields["width"], fields["height"]), "KPAL")
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), palette[indices])


@pytest.mark.parametrize("name", NAMES)
def test_encoder_still_writes_the_golden_bytes(name):
    assert regenerate.build(name) == (GOLDEN / f"{name}.kpal").read_bytes()


@pytest.mark.parametrize("name", [n for n in NAMES if regenerate.GOLDEN[n][3] == "fixed"])
def test_golden_size_formula(name):
    """Fixed-width files are exactly the k·24 + N·b bound plus 30 bytes."""
    fields, _, _ = _expected(name)
    n, k, b = fields["width"] * fields["height"], fields["k"], fields["bits_per_index"]
    assert fields["file_size"] == -(-(k * 24 + n * b) // 8) + 30


def test_decode_api_matches_image_open():
    path = GOLDEN / "k17_5x5.kpal"
    im = kpal.decode(path)
    with Image.open(path) as opened:
        opened.load()
        assert im.info == opened.info
        assert im.tobytes() == opened.tobytes()
        assert im.getpalette() == opened.getpalette()
