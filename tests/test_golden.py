"""The golden files in samples/golden/ (spec/kpal.md §10)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util

import numpy as np
import pytest
from PIL import Image

import kpal
from kpal import codec, container

from .conftest import GOLDEN

spec = importlib.util.spec_from_file_location("regenerate", GOLDEN / "regenerate.py")
regenerate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(regenerate)

NAMES = sorted(regenerate.GOLDEN)
VERSION_2 = sorted(regenerate.VERSION_2)


def _expected(name: str) -> tuple[dict, np.ndarray, np.ndarray, list]:
    """Fields, palette ((k, 3) or (k, 4)), indices and metadata lines of NAME.expected.txt."""
    lines = (GOLDEN / f"{name}.expected.txt").read_text().splitlines()
    fields, metadata = {}, []
    i = 0
    while lines[i] != "indices":
        key, _, value = lines[i].partition(" ")
        if key == "metadata":
            block, length, digest = value.split()
            metadata.append((block, int(length), digest))
        else:
            fields[key] = value
        i += 1
    entries = fields.pop("palette").split()
    palette = np.frombuffer(b"".join(bytes.fromhex(c) for c in entries), np.uint8)
    palette = palette.reshape(len(entries), -1)
    indices = np.array([[int(v) for v in row.split()] for row in lines[i + 1:]], np.uint8)
    return {key: int(v) for key, v in fields.items()}, palette, indices, metadata


def test_every_golden_file_is_present():
    assert NAMES and all((GOLDEN / f"{n}.kpal").is_file() for n in NAMES)
    assert {regenerate.GOLDEN[n][3] for n in NAMES} == {"fixed", "radix", "entropy",
                                                       "context"}
    assert set(VERSION_2) <= set(NAMES)


def test_golden_files_cover_both_versions_alpha_and_metadata():
    versions, alpha, blocks = set(), set(), set()
    for name in NAMES:
        fields, palette, _, metadata = _expected(name)
        versions.add(fields["version"])
        alpha.add(palette.shape[1] == 4)
        blocks |= {b for b, _, _ in metadata}
    assert versions == {1, 2} and alpha == {False, True}
    assert blocks == {"iccp", "xtra"}  # a known block and one readers must skip


@pytest.mark.parametrize("name", NAMES)
def test_golden_file_decodes_to_expected_pixels(name):
    fields, palette, indices, metadata = _expected(name)
    data = (GOLDEN / f"{name}.kpal").read_bytes()
    assert len(data) == fields["file_size"]
    header, got_palette, labels = codec.decode_indices(data)
    assert (header.version, header.k, header.width, header.height, header.coding) == (
        fields["version"], fields["k"], fields["width"], fields["height"], fields["coding"])
    assert (header.flags, header.metadata_length) == (
        fields.get("flags", 0), fields.get("metadata_length", 0))
    np.testing.assert_array_equal(got_palette, palette)
    np.testing.assert_array_equal(labels, indices)
    blocks = codec.decode_metadata(data)
    assert [(b, len(d), hashlib.sha256(d).hexdigest()) for b, d in blocks] == metadata
    rgba = palette if palette.shape[1] == 4 else np.column_stack(
        [palette, np.full(len(palette), 255, np.uint8)])
    with Image.open(GOLDEN / f"{name}.kpal") as im:
        assert (im.mode, im.size, im.format) == ("P", (fields["width"], fields["height"]), "KPAL")
        np.testing.assert_array_equal(np.asarray(im.convert("RGBA")), rgba[indices])
        translucent = isinstance(im.info.get("transparency"), bytes)
        with pytest.warns(UserWarning, match="Transparency expressed in bytes") if translucent \
                else contextlib.nullcontext():  # Pillow's warning, as for such a PNG
            rgb = np.asarray(im.convert("RGB"))
        np.testing.assert_array_equal(rgb, rgba[indices][..., :3])
        assert im.info.get("icc_profile") == dict(blocks).get("iccp")
        assert im.palette.mode == ("RGBA" if palette.shape[1] == 4 else "RGB")


@pytest.mark.parametrize("name", NAMES)
def test_encoder_still_writes_the_golden_bytes(name):
    assert regenerate.build(name) == (GOLDEN / f"{name}.kpal").read_bytes()


@pytest.mark.parametrize("name", [n for n in NAMES if regenerate.GOLDEN[n][3] == "fixed"])
def test_golden_size_formula(name):
    """Fixed-width files are exactly the k·24 + N·b bound plus 30 bytes; with RGBA entries
    k·32 + N·b plus 35; metadata adds its own length (spec, introduction)."""
    fields, palette, _, _ = _expected(name)
    n, k, b = fields["width"] * fields["height"], fields["k"], fields["bits_per_index"]
    entry_bits, constant = (24, 30) if fields["version"] == 1 else (8 * palette.shape[1], 35)
    assert fields["file_size"] == (-(-(k * entry_bits + n * b) // 8) + constant
                                   + fields.get("metadata_length", 0))


def test_transparency_is_in_info_as_in_png():
    """One fully transparent entry, the others opaque: info["transparency"] is its index;
    otherwise the alpha of every entry as bytes, as Pillow's PNG reader gives a tRNS chunk."""
    with Image.open(GOLDEN / "rgba_key_k3_4x2.kpal") as im:
        assert im.info["transparency"] == 1
        assert im.palette.mode == "RGBA"
    with Image.open(GOLDEN / "rgba_k4_5x3.kpal") as im:
        assert im.info["transparency"] == bytes([0, 128, 255, 64])
        assert im.getpalette("RGBA")[3::4] == [0, 128, 255, 64]  # the same, in the palette


def test_alpha_survives_pickle_deepcopy_and_equality(tmp_path):
    """Pillow pickles, deep-copies and compares a palette as RGB: the alpha rides in info."""
    import copy
    import pickle

    with Image.open(GOLDEN / "rgba_k4_5x3.kpal") as im:
        im.load()
        want = np.asarray(im.convert("RGBA"))
        for other in (pickle.loads(pickle.dumps(im)), copy.deepcopy(im), im.copy()):
            np.testing.assert_array_equal(np.asarray(other.convert("RGBA")), want)
        opaque = im.copy()
        opaque.info["transparency"] = bytes([255, 255, 255, 255])
        opaque.putpalette(im.getpalette("RGB"), "RGB")
        assert opaque != im


def test_png_round_trip_keeps_alpha_and_the_profile(tmp_path):
    im = kpal.decode(GOLDEN / "rgba_icc_extra_radix_k5_6x4.kpal")
    im.save(tmp_path / "x.png")
    with Image.open(tmp_path / "x.png") as png:
        assert png.info["icc_profile"] == (GOLDEN / "srgb.icc").read_bytes()
        np.testing.assert_array_equal(np.asarray(png.convert("RGBA")),
                                      np.asarray(im.convert("RGBA")))


def test_icc_profile_is_a_real_rgb_profile():
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(str(GOLDEN / "srgb.icc"))
    assert profile.profile.xcolor_space == "RGB "
    assert ImageCms.getProfileDescription(profile).strip() == "sRGB built-in"


def test_version_1_files_are_unchanged_by_the_revision():
    """Every version 1 golden file keeps its 26-byte header and 3-byte entries."""
    for name in NAMES:
        data = (GOLDEN / f"{name}.kpal").read_bytes()
        header = container.read_header(data)
        if name not in regenerate.VERSION_2:
            assert header.version == 1 and header.header_size == 26
            assert header.file_size == 30 + 3 * header.k + header.payload_length


def test_decode_api_matches_image_open():
    for name in ("k17_5x5", "rgba_icc_extra_radix_k5_6x4"):
        path = GOLDEN / f"{name}.kpal"
        im = kpal.decode(path)
        with Image.open(path) as opened:
            opened.load()
            assert im.info == opened.info
            assert im.tobytes() == opened.tobytes()
            assert im.getpalette("RGBA") == opened.getpalette("RGBA")


def test_inspect_accounts_for_32_bit_entries_and_metadata():
    """kpal info: RGBA entries count 32 bits; the metadata is overhead, listed by block."""
    report = codec.inspect((GOLDEN / "rgba_k4_5x3.kpal").read_bytes())
    size = report["size"]
    assert report["alpha"] is True and report["palette"][:2] == ["#00000000", "#a61a4780"]
    assert size["formula"] == "4×32 + 15×2 = 158 bits"
    assert (size["palette_bits"], size["theoretical_bytes"], size["overhead_bytes"],
            size["on_disk_bytes"]) == (128, 20, 35, 55)
    assert report["layout"] == {"header": 31, "palette": 16, "metadata": 0, "payload": 4,
                                "checksum": 4}
    report = codec.inspect((GOLDEN / "rgba_icc_extra_radix_k5_6x4.kpal").read_bytes())
    assert report["metadata"] == [{"type": "iccp", "bytes": 588, "known": True,
                                   "description": "sRGB built-in"},
                                  {"type": "xtra", "bytes": 7, "known": False}]
    assert report["size"]["overhead_bytes"] == 31 + 611 + 4
    plain = codec.inspect((GOLDEN / "k5_7x3.kpal").read_bytes())
    assert plain["alpha"] is False and plain["metadata"] == []
    assert plain["size"]["formula"] == "5×24 + 21×3 = 183 bits"
    assert plain["size"]["overhead_bytes"] == 30
