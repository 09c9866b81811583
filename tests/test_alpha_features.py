"""Encoding images with transparency through every option: dithering, given
palettes, quality and size targets, Oklab, GMM (kpal.codec with cluster.alpha)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import kpal
from kpal import codec
from kpal.choose import QualityError, SizeError, choose_k_rgba
from kpal.cluster.alpha import composite_mse, quantize_rgba
from kpal.errors import KpalError, OptionError
from tests.test_alpha import photo_rgba


def soft_photo(size: int = 64, seed: int = 0) -> np.ndarray:
    """A real photo with a soft round edge: alpha 0, 1..254 and 255, shape (size, size, 4)."""
    return photo_rgba(size, seed).reshape(size, size, 4)


def mask_photo(size: int = 64) -> np.ndarray:
    """The same photo with a hard (GIF-style) mask: alpha 0 and 255 only."""
    image = soft_photo(size)
    image[..., 3] = np.where(image[..., 3] < 128, 0, 255)
    return image


def decoded(encoded: codec.Encoded) -> np.ndarray:
    """The straight RGBA pixels a reader gets back from the file's bytes."""
    with codec.decode(encoded.data) as image:
        return np.asarray(image.convert("RGBA"))


def assert_alpha_exact(source: np.ndarray, result: np.ndarray) -> None:
    alpha = source[..., 3]
    assert (result[alpha == 0] == 0).all()
    assert (result[alpha == 255, 3] == 255).all()


def psnr(source: np.ndarray, result: np.ndarray) -> float:
    return 10 * math.log10(255.0**2 / composite_mse(source, result))


def encode(image: np.ndarray, **options) -> codec.Encoded:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return codec.encode_image(image, **options)


# ------------------------------------------------------------------ dithering


@pytest.mark.parametrize("dither", ["fs", "ordered"])
@pytest.mark.parametrize("make", [soft_photo, mask_photo])
def test_dithered_encode_keeps_alpha_and_the_fitted_palette(dither, make):
    image = make()
    plain = encode(image, k=16)
    dithered = encode(image, k=16, dither=dither)
    np.testing.assert_array_equal(dithered.palette, plain.palette)  # only the labels change
    out = decoded(dithered)
    assert_alpha_exact(image, out)
    assert not np.array_equal(dithered.labels, plain.labels)
    # The report's PSNR is the composite PSNR of what is in the file.
    assert dithered.psnr() == pytest.approx(psnr(image, out), abs=1e-9)
    # Error diffusion keeps the local premultiplied mean: blurred, the composites
    # over black and over white come closer to the original's than the nearest
    # colour's. A threshold map only approximates it (on this 64x64 photo with a
    # hard mask and a good palette it is 6 % above the nearest colour's): it must
    # stay close.
    reference = blurred_composites(image)
    error = ((blurred_composites(out) - reference) ** 2).mean()
    nearest = ((blurred_composites(decoded(plain)) - reference) ** 2).mean()
    assert error < (nearest if dither == "fs" else 1.1 * nearest)


def blurred_composites(rgba: np.ndarray) -> np.ndarray:
    from PIL import Image, ImageFilter

    alpha = rgba[..., 3:] / 255.0
    out = []
    for background in (0, 255):
        composite = np.rint(rgba[..., :3] * alpha + background * (1 - alpha)).astype(np.uint8)
        blur = Image.fromarray(composite).filter(ImageFilter.GaussianBlur(1.5))
        out.append(np.asarray(blur, np.float64))
    return np.stack(out)


def test_dithered_files_are_the_same_bytes_on_both_paths(monkeypatch):
    pytest.importorskip("numba")
    image = soft_photo(96)
    for options in ({"k": 24, "dither": "fs"}, {"k": 24, "dither": "ordered", "seed": 5},
                    {"palette": [(0, 0, 0), (250, 240, 230), (200, 120, 90)], "dither": "fs"}):
        monkeypatch.setenv("KPAL_PURE_NUMPY", "1")
        slow = encode(image, **options).data
        monkeypatch.setenv("KPAL_PURE_NUMPY", "0")
        assert encode(image, **options).data == slow, options


def test_an_image_with_fewer_colours_than_k_is_kept_exactly_not_dithered():
    image = decoded(encode(soft_photo(32), k=40))  # at most 40 colours
    kept = encode(image, k=256, dither="fs")  # lossless: nothing to dither
    np.testing.assert_array_equal(decoded(kept), image)


# ------------------------------------------------------------- a given palette


GIVEN = [(0, 0, 0), (255, 255, 255), (180, 120, 100), (90, 60, 50), (40, 40, 90)]


@pytest.mark.parametrize("dither", ["none", "fs", "ordered"])
def test_given_palette_is_stored_with_one_transparent_entry_after_it(dither):
    image = soft_photo()
    encoded = encode(image, palette=GIVEN, dither=dither)
    assert encoded.header.alpha
    expected = np.array([[*c, 255] for c in GIVEN] + [[0, 0, 0, 0]], np.uint8)
    np.testing.assert_array_equal(encoded.palette, expected)
    out = decoded(encoded)
    assert_alpha_exact(image, out)
    assert (encoded.labels[image[..., 3] == 0] == len(GIVEN)).all()
    if dither == "none":  # the exact nearest entry, by the composite error
        from kpal.cluster.remap import remap_rgba

        np.testing.assert_array_equal(encoded.labels, remap_rgba(image, expected))
        assert encoded.psnr() == pytest.approx(psnr(image, out), abs=1e-9)


def test_given_palette_file_and_the_full_256_colours(tmp_path):
    from kpal.palettes import save_palette

    image = soft_photo(32)
    path = tmp_path / "p.gpl"
    save_palette(np.array(GIVEN, np.uint8), path)
    from_file = encode(image, palette=str(path))
    np.testing.assert_array_equal(from_file.palette[:-1, :3], np.array(GIVEN, np.uint8))
    full = np.random.default_rng(0).integers(0, 256, (256, 3), dtype=np.uint8)
    with pytest.raises(KpalError, match="palette has 256 colours: an image with transparency "
                                        "needs one more entry .* at most 255"):
        encode(image, palette=[tuple(c) for c in full.tolist()])
    # The same palette on an opaque image is stored as given (no extra entry).
    opaque = encode(np.ascontiguousarray(image[..., :3]), palette=GIVEN)
    np.testing.assert_array_equal(opaque.palette, np.array(GIVEN, np.uint8))


GIVEN_RGBA = [(0, 0, 0, 0), (255, 255, 255, 255), (180, 120, 100, 255), (90, 60, 50, 120),
              (40, 40, 90, 255), (200, 30, 30, 60)]


@pytest.mark.parametrize("dither", ["none", "fs"])
def test_rgba_palette_is_stored_as_given_and_shared_by_opaque_images(dither, tmp_path):
    from kpal.cluster.remap import remap_rgba
    from kpal.palettes import save_palette

    image = soft_photo(32)
    expected = np.array(GIVEN_RGBA, np.uint8)
    encoded = encode(image, palette=GIVEN_RGBA, dither=dither)
    np.testing.assert_array_equal(encoded.palette, expected)
    np.testing.assert_array_equal(encoded.labels, remap_rgba(image, expected, dither=dither))
    assert_alpha_exact(image, decoded(encoded))
    # From a file (hex with alpha), the same bytes.
    path = tmp_path / "p.hex"
    save_palette(expected, path)
    assert encode(image, palette=str(path), dither=dither).data == encoded.data
    # An opaque image keeps the palette's indices: stored whole, on its opaque entries.
    rgb = np.ascontiguousarray(image[..., :3])
    opaque = encode(rgb, palette=GIVEN_RGBA, dither=dither)
    assert opaque.header.alpha
    np.testing.assert_array_equal(opaque.palette, expected)
    assert (expected[opaque.labels, 3] == 255).all()
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    np.testing.assert_array_equal(opaque.labels, remap_rgba(rgba, expected, dither=dither))


def test_rgba_palette_gets_a_transparent_entry_only_when_needed():
    image = soft_photo(32)
    no_clear = [c for c in GIVEN_RGBA if c[3] != 0]
    encoded = encode(image, palette=no_clear)
    np.testing.assert_array_equal(encoded.palette, np.array(no_clear + [(0, 0, 0, 0)], np.uint8))
    assert_alpha_exact(image, decoded(encoded))
    # No alpha 0 pixel: nothing added.
    visible = image.copy()
    visible[..., 3] = np.maximum(visible[..., 3], 1)
    np.testing.assert_array_equal(encode(visible, palette=no_clear).palette,
                                  np.array(no_clear, np.uint8))
    full = np.full((256, 4), 255, np.uint8)
    full[:, 3] = 100
    full[0, 3] = 255
    full[:, 0] = np.arange(256)  # 256 distinct entries (repeated ones would be dropped)
    with pytest.raises(KpalError, match=r"palette has 256 entries and none of alpha 0: the "
                                        r"image's transparent pixels need one more"):
        encode(image, palette=[tuple(c) for c in full.tolist()])
    with pytest.raises(KpalError, match=r"palette has no opaque entry \(alpha 255\) for the "
                                        r"\d+ opaque pixels"):
        encode(image, palette=[(0, 0, 0, 0), (9, 9, 9, 100)])


def test_rgba_palette_from_a_kpal_file_through_the_cli(tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from kpal.cli import cli

    first, second = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(soft_photo(32, seed=1)).save(first)
    Image.fromarray(soft_photo(32, seed=2)).save(second)
    runner = CliRunner()
    result = runner.invoke(cli, ["encode", str(first), "-k", "12", "-o",
                                  str(tmp_path / "a.kpal")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["encode", str(second), "--palette", str(tmp_path / "a.kpal"),
                                  "-o", str(tmp_path / "b.kpal")])
    assert result.exit_code == 0, result.output
    assert "given palette" in result.output and "the image has transparency" in result.output
    _, shared, _ = kpal.container.read((tmp_path / "a.kpal").read_bytes())
    _, stored, _ = kpal.container.read((tmp_path / "b.kpal").read_bytes())
    np.testing.assert_array_equal(stored, shared)


# ------------------------------------------------------------- quality and size


def test_quality_target_is_the_smallest_k_reaching_it():
    image = soft_photo()
    encoded = encode(image, quality=(25, 30))
    choice = encoded.choice
    assert encoded.psnr() >= 30 and choice.psnr >= 30
    assert encoded.psnr() == pytest.approx(psnr(image, decoded(encoded)), abs=1e-9)
    below = choice.neighbours()[0]
    assert below.k == choice.k - 1 and below.psnr < 30
    # The candidate is exactly quantize_rgba's palette at that k.
    np.testing.assert_array_equal(encoded.palette,
                                  quantize_rgba(image.reshape(-1, 4), choice.k).palette)
    assert_alpha_exact(image, decoded(encoded))


def test_quality_out_of_reach_raises_and_the_report_psnr_is_the_composite_one():
    image = soft_photo(32)
    with pytest.raises(QualityError, match=r"quality 99-99.5 dB cannot be reached: k=\d+ gives"):
        encode(image, quality=(99, 99.5))


@pytest.mark.parametrize("coding", ["fixed", "entropy"])
def test_max_size_is_the_largest_k_whose_file_fits(coding):
    image = soft_photo()
    budget = 2600
    encoded = encode(image, max_size=budget, coding=coding)
    assert len(encoded.data) <= budget
    assert len(encoded.data) == encoded.choice.size
    assert_alpha_exact(image, decoded(encoded))
    k = encoded.choice.k
    bigger = encode(image, k=k + 1, coding=coding)
    assert len(bigger.data) > budget


def test_max_size_below_any_file_raises_size_error():
    with pytest.raises(SizeError, match=r"max_size=20 bytes cannot be met: even k=1 makes a "
                                        r"\d+-byte file"):
        choose_k_rgba(soft_photo(16), max_size=20)


def test_quality_with_dither_is_refused_as_the_target_is_undithered():
    # The search measures undithered PSNR; dithering would then miss the target.
    image = soft_photo()
    with pytest.raises(OptionError, match=r"quality measures the undithered PSNR"):
        encode(image, quality=30, dither="fs")
    assert_alpha_exact(image, decoded(encode(image, quality=30)))


def test_choose_k_rgba_messages_name_the_option():
    with pytest.raises(OptionError, match=r"quality='40-35': MIN 40 is above MAX 35"):
        choose_k_rgba(soft_photo(8), quality="40-35")
    with pytest.raises(OptionError, match=r"max_size='12 parsecs' must be a number of bytes"):
        choose_k_rgba(soft_photo(8), max_size="12 parsecs")
    with pytest.raises(KpalError, match=r"shape \(h, w, 4\) or \(n, 4\), got \(2, 2, 3\)"):
        choose_k_rgba(np.zeros((2, 2, 3), np.uint8), quality=30)


# ------------------------------------------------------------------ Oklab, GMM


def test_oklab_on_a_mask_clusters_the_opaque_pixels_in_oklab():
    from kpal.cluster.perceptual import quantize_perceptual

    image = mask_photo()
    encoded = encode(image, k=12, space="oklab")
    out = decoded(encoded)
    assert_alpha_exact(image, out)
    opaque = image[..., 3] == 255
    expected = quantize_perceptual(np.ascontiguousarray(image[opaque][:, :3]), 11)
    np.testing.assert_array_equal(out[opaque][:, :3], expected.palette[expected.labels])
    given = encode(image, palette=GIVEN, space="oklab")
    assert_alpha_exact(image, decoded(given))


def test_oklab_quantizes_translucent_pixels_and_dithers_by_the_composite_error():
    image = soft_photo(32)
    encoded = encode(image, k=8, space="oklab")
    out = decoded(encoded)
    assert_alpha_exact(image, out)
    assert encoded.palette.shape[0] <= 8
    assert ((out[..., 3] > 0) & (out[..., 3] < 255)).any()  # translucent entries kept
    # The labels are the premultiplied-Oklab nearest entries, as remap_rgba finds them.
    from kpal.cluster.remap import remap_rgba

    palette = np.asarray(encoded.palette)
    np.testing.assert_array_equal(np.asarray(encoded.labels).reshape(32, 32),
                                  remap_rgba(image, palette, space="oklab"))
    # Chosen for the Oklab error, so a little below the RGB fit on the composite PSNR.
    assert psnr(image, out) > psnr(image, decoded(encode(image, k=8))) - 1.5
    # Dithered: the Oklab palette, each pixel diffused onto its entry of least
    # composite error (the Oklab dither table is built for opaque colours).
    for picture in (mask_photo(16), image):
        plain = encode(picture, k=8, space="oklab")
        for dither in ("fs", "ordered"):
            dithered = encode(picture, k=8, space="oklab", dither=dither)
            assert np.array_equal(dithered.palette, plain.palette)
            np.testing.assert_array_equal(
                np.asarray(dithered.labels).reshape(picture.shape[:2]),
                remap_rgba(picture, np.asarray(plain.palette), dither=dither))
            assert_alpha_exact(picture, decoded(dithered))


def test_gmm_works_on_a_mask_and_on_soft_alpha():
    mask = mask_photo(32)
    encoded = encode(mask, k=8, method="gmm")
    assert encoded.method == "gmm"
    assert_alpha_exact(mask, decoded(encoded))
    soft = soft_photo(32)
    encoded = encode(soft, k=8, method="gmm")
    assert encoded.method == "gmm"
    back = decoded(encoded)
    assert_alpha_exact(soft, back)
    assert ((back[..., 3] > 0) & (back[..., 3] < 255)).any()
    result = quantize_rgba(soft.reshape(-1, 4), 8, method="gmm")
    assert np.array_equal(back.reshape(-1, 4), result.palette[result.labels])


def test_kpal_encode_api_takes_the_same_options():
    image = soft_photo(32)
    data = kpal.encode(image, k=8, dither="fs")
    assert data == encode(image, k=8, dither="fs").data
