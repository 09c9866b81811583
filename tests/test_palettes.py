"""Palette files (every format, both directions), fit_palette and map_to_palette."""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
import pytest
from PIL import Image

import kpal
from kpal import palettes
from kpal.cluster import quantize
from kpal.cluster.alpha import composite_mse, quantize_rgba
from kpal.cluster.histogram import color_histogram
from kpal.errors import FormatError, KpalError

EXTENSIONS = {"kpal": ".kpal", "gpl": ".gpl", "act": ".act", "png": ".png", "gif": ".gif",
              "hex": ".hex"}


def _palette(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3), dtype=np.uint8)


def _photo(height: int = 40, width: int = 56, seed: int = 1) -> np.ndarray:
    """A smooth gradient plus noise: many distinct colours, like a small photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.int64)
    return np.clip(base + rng.integers(-12, 13, base.shape), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- round trips
@pytest.mark.parametrize("fmt", list(EXTENSIONS))
@pytest.mark.parametrize("n", [1, 2, 7, 256])
def test_round_trip_through_a_file(tmp_path, fmt, n):
    palette = _palette(n)
    path = tmp_path / f"p{EXTENSIONS[fmt]}"
    palettes.save_palette(palette, path)
    np.testing.assert_array_equal(palettes.load_palette(path), palette)


@pytest.mark.parametrize("fmt", list(EXTENSIONS))
def test_round_trip_through_a_file_object_keeps_duplicates(fmt):
    palette = np.array([[1, 2, 3], [250, 0, 7], [1, 2, 3], [0, 0, 0]], dtype=np.uint8)
    data = palettes.dump_palette(palette, fmt)
    stream = io.BytesIO(data)
    stream.name = f"shared{EXTENSIONS[fmt]}"
    np.testing.assert_array_equal(palettes.load_palette(stream), palette)


def test_txt_extension_is_hex_text(tmp_path):
    path = tmp_path / "colours.txt"
    palettes.save_palette([[255, 0, 0], [0, 128, 255]], path)
    assert path.read_text() == "#ff0000\n#0080ff\n"
    assert palettes.load_palette(path).tolist() == [[255, 0, 0], [0, 128, 255]]


def test_gpl_written_is_a_gimp_palette(tmp_path):
    path = tmp_path / "p.gpl"
    palettes.save_palette([[255, 0, 0], [0, 128, 255]], path)
    lines = path.read_text().splitlines()
    assert lines[0] == "GIMP Palette"
    assert lines[-2:] == ["255   0   0\t#ff0000", "  0 128 255\t#0080ff"]


def test_act_written_has_count_and_no_transparency():
    data = palettes.dump_palette(_palette(3), "act")
    assert len(data) == 772
    assert struct.unpack(">HH", data[768:]) == (3, 0xFFFF)


# ---------------------------------------------------------------- readers
def test_hex_comments_and_names_are_skipped():
    text = b"; Paint.NET style\n// another\n# a note\n\n#FF0000 red\n00ff80\t green\n##\n"
    assert palettes.load_palette(io.BytesIO(text)).tolist() == [[255, 0, 0], [0, 255, 128]]


def test_hex_bad_line_names_file_line_and_value(tmp_path):
    path = tmp_path / "bad.hex"
    path.write_text("#ff0000\n; ok\n#12345g\n")
    with pytest.raises(KpalError, match=r"bad\.hex:3: '#12345g' is not a colour"):
        palettes.load_palette(path)


def test_hex_word_after_hash_is_not_a_comment(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("#ff0000\n#comment\n")
    with pytest.raises(KpalError, match=r"bad\.txt:2: '#comment' is not a colour"):
        palettes.load_palette(path)


def test_gpl_reader_skips_header_lines_and_reports_bad_values(tmp_path):
    path = tmp_path / "p.gpl"
    path.write_text("GIMP Palette\nName: x\nColumns: 4\n# c\n 10 20 30 Dark\n1 2 3\n")
    assert palettes.load_palette(path).tolist() == [[10, 20, 30], [1, 2, 3]]
    path.write_text("GIMP Palette\n10 20 30\n10 300 30 Bad\n")
    with pytest.raises(KpalError, match=r"p\.gpl:3: '10 300 30 Bad' is not a colour line"):
        palettes.load_palette(path)


def test_gpl_extension_without_header(tmp_path):
    path = tmp_path / "p.gpl"
    path.write_text("10 20 30\n")
    with pytest.raises(KpalError, match=r"p\.gpl:1: '10 20 30' is not a GIMP palette header"):
        palettes.load_palette(path)


@pytest.mark.parametrize("length", [0, 3, 700, 771, 773])
def test_truncated_act_is_rejected(tmp_path, length):
    path = tmp_path / "p.act"
    path.write_bytes(bytes(length))
    with pytest.raises(KpalError, match=rf"p\.act: an \.act palette is 768 or 772 bytes, "
                                        rf"got {length}"):
        palettes.load_palette(path)


def test_act_without_trailer_is_256_colours(tmp_path):
    palette = _palette(256)
    path = tmp_path / "p.act"
    path.write_bytes(palette.tobytes())
    np.testing.assert_array_equal(palettes.load_palette(path), palette)


def test_act_bad_count(tmp_path):
    path = tmp_path / "p.act"
    path.write_bytes(bytes(768) + struct.pack(">HH", 300, 0xFFFF))
    with pytest.raises(KpalError, match=r"p\.act: \.act colour count 300 is outside 1\.\.256"):
        palettes.load_palette(path)


def test_kpal_file_gives_its_palette(tmp_path):
    image = _photo()
    path = tmp_path / "x.kpal"
    path.write_bytes(kpal.encode(image, 12))
    _, palette, _ = kpal.codec.decode_indices(path.read_bytes())
    np.testing.assert_array_equal(palettes.load_palette(path), palette)


def test_corrupt_kpal_names_the_file(tmp_path):
    data = bytearray(kpal.encode(_photo(), 4))
    data[-1] ^= 0xFF
    path = tmp_path / "x.kpal"
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"x\.kpal: checksum mismatch"):
        palettes.load_palette(path)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_png_and_gif_give_the_entries_in_use(tmp_path, fmt):
    entries = _palette(8)
    indices = np.array([[5, 1, 5], [1, 1, 5]], dtype=np.uint8)
    image = Image.fromarray(indices, "P")
    image.putpalette(entries.tobytes())
    path = tmp_path / f"p.{fmt.lower()}"
    image.save(path, fmt, optimize=False)
    np.testing.assert_array_equal(palettes.load_palette(path), entries[[1, 5]])


def test_truecolour_png_is_rejected(tmp_path):
    path = tmp_path / "rgb.png"
    Image.fromarray(_photo()).save(path)
    with pytest.raises(KpalError, match=r"rgb\.png: a PNG palette must be a palette image "
                                        r"\(mode P\), this one has mode RGB"):
        palettes.load_palette(path)


def test_too_many_and_no_colours(tmp_path):
    path = tmp_path / "p.hex"
    path.write_text("".join(f"#0000{i % 256:02x}\n" for i in range(257)))
    with pytest.raises(KpalError, match=r"p\.hex: the palette holds 257 colours, a \.kpal "
                                        r"palette at most 256"):
        palettes.load_palette(path)
    path.write_text("; only a comment\n")
    with pytest.raises(KpalError, match=r"p\.hex: the palette holds no colours"):
        palettes.load_palette(path)


def test_binary_garbage_is_not_a_text_palette(tmp_path):
    path = tmp_path / "p.hex"
    path.write_bytes(b"#ff0000\n\xff\xfe\n")
    with pytest.raises(KpalError, match=r"p\.hex:2: not a text palette"):
        palettes.load_palette(path)


# ---------------------------------------------------------------- writers
def test_save_refuses_unknown_extension_and_existing_file(tmp_path):
    with pytest.raises(KpalError, match=r"unknown palette extension '\.pal'"):
        palettes.save_palette(_palette(2), tmp_path / "p.pal")
    path = tmp_path / "p.gpl"
    palettes.save_palette(_palette(2), path)
    with pytest.raises(FileExistsError):
        palettes.save_palette(_palette(3), path)
    palettes.save_palette(_palette(3, seed=5), path, force=True)
    np.testing.assert_array_equal(palettes.load_palette(path), _palette(3, seed=5))


def test_save_with_explicit_format(tmp_path):
    path = tmp_path / "palette.data"
    palettes.save_palette(_palette(4), path, format="act")
    assert path.stat().st_size == 772
    np.testing.assert_array_equal(palettes.load_palette(path), _palette(4))


@pytest.mark.parametrize(("value", "message"), [
    (np.zeros((0, 3), np.uint8), r"shape \(n, 3\) or \(n, 4\) with 1 <= n <= 256, got \(0, 3\)"),
    (np.zeros((257, 3), np.uint8), r"got \(257, 3\)"),
    (np.zeros((2, 5), np.uint8), r"got \(2, 5\)"),
    ([[0, 0, 256]], r"integers 0\.\.255, got value 256"),
    ([[0, -1, 0]], r"integers 0\.\.255, got value -1"),
    ([[0.5, 0, 0]], r"integers 0\.\.255, got non-integer values"),
])
def test_as_palette_rejects(value, message):
    with pytest.raises(KpalError, match=message):
        palettes.as_palette(value)


# ---------------------------------------------------------------- fit_palette
def test_fit_palette_of_one_image_equals_quantize():
    image = _photo(60, 80)
    for k in (4, 16, 64):
        expected = quantize(image.reshape(-1, 3), k, seed=3).palette
        np.testing.assert_array_equal(palettes.fit_palette([image], k, seed=3), expected)


def test_merge_is_one_image_at_a_time_and_exact():
    image = _photo(60, 80)
    halves = (image[:30], image[30:])
    consumed = []

    def frames():
        for half in halves:
            consumed.append(half.shape)
            yield half

    colors, counts = palettes.merge_histograms(frames())
    whole = color_histogram(image.reshape(-1, 3))
    np.testing.assert_array_equal(colors, whole.colors)
    np.testing.assert_array_equal(counts, whole.counts)
    assert consumed == [(30, 80, 3), (30, 80, 3)]
    # Memory follows the distinct colours: the merged histogram is no larger
    # than the whole image's, however many pieces it came in.
    assert colors.shape[0] == len(whole)


def test_integer_weight_equals_repeating_the_image():
    a, b = _photo(seed=1), _photo(seed=2)[::-1]
    repeated = palettes.fit_palette([a, a, a, b], 8)
    weighted = palettes.fit_palette([a, b], 8, weights=[3, 1])
    np.testing.assert_array_equal(weighted, repeated)


def test_zero_weight_leaves_an_image_out():
    a, b = _photo(seed=1), np.full((10, 10, 3), 255, np.uint8)
    np.testing.assert_array_equal(palettes.fit_palette([a, b], 8, weights=[1, 0]),
                                  palettes.fit_palette([a], 8))


def test_fractional_weights_keep_counts_integral():
    colors, counts = palettes.merge_histograms([_photo(seed=1), _photo(seed=2)],
                                               weights=[0.25, 1 / 3])
    np.testing.assert_array_equal(counts, np.rint(counts))
    assert counts.sum() == pytest.approx(2.0**50, rel=1e-9)


@pytest.mark.parametrize(("weights", "message"), [
    ([1, -1], r"weights\[1\]=-1 must be a finite number >= 0"),
    ([1, float("nan")], r"weights\[1\]=nan"),
    ([1], r"got more images than the 1 weights"),
    ([1, 1, 1], r"got 2 images but 3 weights"),
    ([0, 0], r"every image has weight 0 or no pixels"),
])
def test_bad_weights(weights, message):
    with pytest.raises(KpalError, match=message):
        palettes.fit_palette([_photo(), _photo()], 4, weights=weights)


def test_empty_pixel_arrays_add_nothing():
    image = _photo()
    empty = np.zeros((0, 3), np.uint8)
    np.testing.assert_array_equal(palettes.fit_palette([empty, image, empty], 8),
                                  palettes.fit_palette([image], 8))
    with pytest.raises(KpalError, match="every image has weight 0 or no pixels"):
        palettes.fit_palette([empty], 8)


def test_no_images():
    with pytest.raises(KpalError, match="no images given"):
        palettes.fit_palette([], 4)


def _icon(seed: int = 1, soft: bool = True) -> np.ndarray:
    """A photo-like RGBA image: transparent corners (hiding random colours), an
    opaque middle and, when ``soft``, a translucent ring between them."""
    rng = np.random.default_rng(seed)
    rgba = np.empty((40, 56, 4), np.uint8)
    rgba[..., :3] = _photo(40, 56, seed)
    y, x = np.mgrid[0:40, 0:56]
    r = np.hypot(y - 19.5, x - 27.5)
    alpha = np.clip((26 - r) * 40, 0, 255) if soft else np.where(r < 20, 255, 0)
    rgba[..., 3] = alpha.astype(np.uint8)
    hidden = rgba[..., 3] == 0
    rgba[hidden, :3] = rng.integers(0, 256, (int(hidden.sum()), 3))
    return rgba


@pytest.mark.parametrize("soft", [True, False])
@pytest.mark.parametrize("method", ["kmeans", "gmm"])
def test_fit_palette_of_one_rgba_image_equals_quantize_rgba(soft, method):
    image = _icon(soft=soft)
    assert (np.count_nonzero((image[..., 3] > 0) & (image[..., 3] < 255)) > 0) == soft
    for k in (1, 2, 16, 64):
        expected = quantize_rgba(image.reshape(-1, 4), k, seed=3, method=method).palette
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "k=1: one palette entry", kpal.KpalWarning)
            got = palettes.fit_palette([image], k, seed=3, method=method)
        np.testing.assert_array_equal(got, expected)
        assert got.shape[1] == 4 and got.shape[0] <= k


def test_merged_rgba_histogram_counts_transparent_pixels_as_one_colour():
    icon = _icon()
    rgb = _photo(seed=4)
    colors, counts = palettes.merge_histograms([icon, rgb])
    assert colors.shape[1] == 4
    n_clear = int(np.count_nonzero(icon[..., 3] == 0))
    assert colors[0].tolist() == [0, 0, 0, 0] and counts[0] == n_clear
    assert counts.sum() == icon.shape[0] * icon.shape[1] + rgb.shape[0] * rgb.shape[1]
    # Every visible colour is there with its count; opaque RGB ones with alpha 255.
    visible = np.concatenate([icon[icon[..., 3] > 0],
                              np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, np.uint8)],
                                             axis=-1).reshape(-1, 4)])
    expected, expected_counts = np.unique(visible, axis=0, return_counts=True)
    np.testing.assert_array_equal(colors[1:], expected)
    np.testing.assert_array_equal(counts[1:], expected_counts)


def test_rgba_arrays_of_every_shape_keep_their_alpha():
    # 3 x 3 x 4 = 36 values: divisible by 3, so a reshape to RGB would have
    # silently made 12 wrong colours of it.
    icon = np.zeros((3, 3, 4), np.uint8)
    icon[0, 0] = (10, 20, 30, 255)
    icon[1, 1] = (200, 100, 50, 128)
    colors, counts = palettes.merge_histograms([icon])
    assert colors.tolist() == [[0, 0, 0, 0], [10, 20, 30, 255], [200, 100, 50, 128]]
    assert counts.tolist() == [7, 1, 1]
    # Opaque RGBA is RGB: the same histogram as the RGB pixels.
    opaque = _icon()
    opaque[..., 3] = 255
    colors, counts = palettes.merge_histograms([opaque])
    whole = color_histogram(np.ascontiguousarray(opaque[..., :3]).reshape(-1, 3))
    np.testing.assert_array_equal(colors, whole.colors)
    np.testing.assert_array_equal(counts, whole.counts)


def test_shared_rgba_palette_keeps_masks_and_beats_a_palette_of_visible_colours():
    icons = [_icon(seed) for seed in (1, 2, 3)]
    shared = palettes.fit_palette(icons, 16)
    assert shared.shape == (16, 4) and shared[0].tolist() == [0, 0, 0, 0]
    visible = palettes.fit_palette([i[i[..., 3] > 0][:, :3] for i in icons], 15)
    for icon in icons:
        errors = []
        for palette in (shared, visible):
            decoded = np.asarray(kpal.decode(kpal.encode(icon, palette=palette))
                                 .convert("RGBA"))
            exact = (icon[..., 3] == 0) | (icon[..., 3] == 255)
            np.testing.assert_array_equal(decoded[..., 3][exact], icon[..., 3][exact])
            errors.append(composite_mse(icon.reshape(-1, 4), decoded.reshape(-1, 4)))
        assert errors[0] < errors[1]


def test_fewer_colours_than_k_keeps_them_exactly():
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((2, 3, 3), (10, 200, 30), np.uint8)
    b[0, 0] = (255, 255, 255)
    with pytest.warns(UserWarning, match="3 distinct colours, no more than k=8"):
        palette = palettes.fit_palette([a, b], 8)
    assert palette.tolist() == [[0, 0, 0], [10, 200, 30], [255, 255, 255]]


def test_fit_palette_takes_paths_and_pil_images(tmp_path):
    image = _photo()
    path = tmp_path / "a.png"
    Image.fromarray(image).save(path)
    expected = palettes.fit_palette([image, image], 6)
    np.testing.assert_array_equal(palettes.fit_palette([path, Image.fromarray(image)], 6),
                                  expected)


# ---------------------------------------------------------------- map_to_palette
def test_map_to_palette_is_the_exact_nearest_colour():
    rng = np.random.default_rng(4)
    pixels = rng.integers(0, 256, (30, 20, 3), dtype=np.uint8)
    palette = _palette(13, seed=9)
    labels = palettes.map_to_palette(pixels, palette)
    diff = pixels[:, :, None, :].astype(np.int64) - palette[None, None].astype(np.int64)
    np.testing.assert_array_equal(labels, np.argmin((diff**2).sum(-1), axis=-1))


def test_colours_far_outside_the_palette_go_to_the_nearest_entry():
    palette = np.array([[0, 0, 0], [40, 40, 40], [90, 0, 0]], dtype=np.uint8)
    pixels = np.array([[255, 255, 255], [255, 0, 0], [0, 0, 255], [20, 20, 20]], np.uint8)
    assert palettes.map_to_palette(pixels, palette).tolist() == [1, 2, 1, 0]


def test_duplicate_entries_map_to_the_lowest_index(tmp_path):
    path = tmp_path / "dup.hex"
    path.write_text("#000000\n#ffffff\n#ffffff\n")
    pixels = np.array([[250, 250, 250], [3, 3, 3]], np.uint8)
    assert palettes.map_to_palette(pixels, path).tolist() == [1, 0]


def test_shared_palette_fits_every_frame_better_than_a_foreign_one():
    frames = [_photo(seed=s) for s in range(3)]
    shared = palettes.fit_palette(frames, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        foreign = quantize(np.full((4, 3), 128, np.uint8), 1).palette
    for frame in frames:
        own = kpal.metrics.mse(frame, shared[palettes.map_to_palette(frame, shared)])
        assert own < kpal.metrics.mse(frame, foreign[palettes.map_to_palette(frame, foreign)])


# ---------------------------------------------------------------- palettes with alpha
def _rgba_palette(n: int, seed: int = 0) -> np.ndarray:
    palette = np.random.default_rng(seed).integers(0, 256, (n, 4), dtype=np.uint8)
    palette[0, 3] = 0
    palette[1:, 3] = np.where(np.arange(1, n) % 2, 255, palette[1:, 3])
    return palette


@pytest.mark.parametrize("fmt", ["kpal", "png", "hex"])
@pytest.mark.parametrize("n", [2, 7, 256])
def test_rgba_round_trip_through_a_file(tmp_path, fmt, n):
    palette = _rgba_palette(n)
    path = tmp_path / f"p{EXTENSIONS[fmt]}"
    palettes.save_palette(palette, path)
    loaded = palettes.load_palette(path)
    assert loaded.shape == (n, 4)
    np.testing.assert_array_equal(loaded, palette)


def test_rgba_kpal_file_gives_its_rgba_palette(tmp_path):
    # The palette of an encoded RGBA image, reused: entries with their alpha.
    image = np.zeros((6, 5, 4), np.uint8)
    image[..., 0] = np.arange(5) * 50
    image[..., 3] = np.array([0, 80, 160, 255, 255, 255])[:, None]
    path = tmp_path / "a.kpal"
    path.write_bytes(kpal.encode(image, k=8))
    header, palette, _ = kpal.container.read(path.read_bytes())
    assert header.alpha
    np.testing.assert_array_equal(palettes.load_palette(path), palette)


def test_hex_with_alpha_mixes_with_opaque_lines():
    text = b"#ff000080 half red\n00ff00\n#0000ff00\n"
    np.testing.assert_array_equal(palettes.parse_palette(text, "hex"),
                                  [[255, 0, 0, 128], [0, 255, 0, 255], [0, 0, 255, 0]])
    # All opaque: an RGB palette.
    assert palettes.parse_palette(b"#ff0000ff\n#00ff00\n", "hex").shape == (2, 3)
    assert palettes.dump_palette([[255, 0, 0, 128], [0, 255, 0, 255]], "hex") == \
        b"#ff000080\n#00ff00ff\n"
    with pytest.raises(KpalError, match=r"<palette>:1: '#ff00008' is not a colour "
                                        r"\(expected #rrggbb or #rrggbbaa\)"):
        palettes.parse_palette(b"#ff00008\n", "hex")


def test_png_palette_with_trns_and_gif_with_a_transparent_index(tmp_path):
    swatch = Image.fromarray(np.arange(3, dtype=np.uint8).reshape(1, 3), "P")
    swatch.putpalette(bytes([9, 9, 9, 200, 0, 0, 0, 0, 200]), "RGB")
    swatch.save(tmp_path / "a.png", transparency=bytes([255, 100]))
    np.testing.assert_array_equal(palettes.load_palette(tmp_path / "a.png"),
                                  [[9, 9, 9, 255], [200, 0, 0, 100], [0, 0, 200, 255]])
    swatch.save(tmp_path / "a.gif", transparency=2, optimize=False)
    loaded = palettes.load_palette(tmp_path / "a.gif")
    np.testing.assert_array_equal(loaded[:, 3], [255, 255, 0])
    # A GIF holds one transparent entry: written when that is all the alpha there is.
    palettes.save_palette(loaded, tmp_path / "b.gif")
    np.testing.assert_array_equal(palettes.load_palette(tmp_path / "b.gif"), loaded)
    with pytest.raises(KpalError, match=r"a GIF palette holds one transparent entry \(alpha 0\) "
                                        r"at most, and this one has 2 entries"):
        palettes.dump_palette([[0, 0, 0, 0], [1, 1, 1, 100], [2, 2, 2, 255]], "gif")


@pytest.mark.parametrize(("fmt", "name"), [("gpl", r"a GIMP \(\.gpl\)"),
                                           ("act", r"an Adobe \(\.act\)")])
def test_formats_without_alpha_refuse_an_rgba_palette(fmt, name):
    with pytest.raises(KpalError, match=rf"{name} palette holds no alpha, and 1 of its 2 "
                                        r"entries is not opaque: write \.hex, \.kpal or \.png"):
        palettes.dump_palette([[0, 0, 0, 0], [1, 2, 3, 255]], fmt)


def test_opaque_rgba_arrays_are_rgb_palettes():
    assert palettes.as_palette([[1, 2, 3, 255]]).shape == (1, 3)
    assert palettes.as_palette([[1, 2, 3, 254]]).shape == (1, 4)


def test_map_to_palette_with_alpha_follows_the_rgba_rules():
    from kpal.cluster.remap import remap_rgba

    pixels = np.random.default_rng(5).integers(0, 256, (12, 9, 4), dtype=np.uint8)
    pixels[0, :, 3] = 0
    pixels[1, :, 3] = 255
    palette = _rgba_palette(6)
    labels = palettes.map_to_palette(pixels, palette)
    np.testing.assert_array_equal(labels, remap_rgba(pixels, palette))
    assert (palette[labels[1], 3] == 255).all() and (palette[labels[0], 3] == 0).all()
    # RGB pixels are opaque: only opaque entries.
    rgb_labels = palettes.map_to_palette(pixels[..., :3].reshape(-1, 3), palette)
    assert (palette[rgb_labels, 3] == 255).all()


@pytest.mark.parametrize(("name", "message"), [
    ("colours.png", "colours.png: not a PNG or GIF image (a palette image was expected)"),
    ("colours.gif", "colours.gif: not a PNG or GIF image (a palette image was expected)"),
    ("colours.kpal", "colours.kpal: not a .kpal file"),
])
def test_a_palette_file_that_is_not_what_its_extension_says_is_refused_as_such(tmp_path, name,
                                                                               message):
    # It was read as hex text: "colours.png:1: '#ff0000' ..." or worse, hex colours accepted.
    path = tmp_path / name
    path.write_text("#ff0000\n#00ff00\n")
    with pytest.raises(KpalError) as caught:
        palettes.load_palette(path)
    assert str(caught.value).startswith(f"{tmp_path}/{message}")
    plain = tmp_path / "colours"  # no extension: the content decides, hex here
    plain.write_text("#ff0000\n#00ff00\n")
    assert palettes.load_palette(plain).tolist() == [[255, 0, 0], [0, 255, 0]]


def test_repeated_entries_of_a_palette_file_are_dropped_with_a_warning(tmp_path):
    """An old .act file padded with black to 256 entries: 4 colours, not 8 bits a pixel."""
    act = tmp_path / "padded.act"
    act.write_bytes(bytes([255, 0, 0, 0, 255, 0, 0, 0, 255]) + bytes(768 - 9))
    image = _photo()
    with pytest.warns(UserWarning, match=rf"palette file {act}: 252 of its 256 entries repeat "
                                         r"earlier ones; the 4 distinct colours are used \(k=4\)"):
        data = kpal.encode(image, palette=str(act))
    header, palette, _ = kpal.codec.decode_indices(data)
    assert header.k == 4 and palette.tolist() == [[255, 0, 0], [0, 255, 0], [0, 0, 255],
                                                  [0, 0, 0]]


def test_a_damaged_palette_file_is_named_as_the_palette(tmp_path):
    from click.testing import CliRunner

    from kpal.cli import cli

    bad = tmp_path / "pal.kpal"
    data = bytearray(kpal.encode(_photo(), 4))
    data[-1] ^= 1
    bad.write_bytes(bytes(data))
    with pytest.raises(KpalError, match=rf"^palette file {bad}: checksum mismatch"):
        kpal.encode(_photo(), palette=str(bad))
    Image.fromarray(_photo()).save(tmp_path / "a.png")
    result = CliRunner().invoke(cli, ["encode", str(tmp_path / "a.png"), "--palette", str(bad),
                                      "-o", str(tmp_path / "a.kpal")])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"kpal: error: palette file {bad}: checksum mismatch")


def test_paint_net_txt_palette_is_read_alpha_first():
    """Paint.NET writes aarrggbb without '#': red stays opaque red, not transparent yellow."""
    text = (b"; paint.net Palette File\r\n; Colors are written as 8-digit hexadecimal "
            b"numbers: aarrggbb\r\nFFFF0000\r\nFF00FF00\r\nFF0000FF\r\n80000000\r\n")
    np.testing.assert_array_equal(palettes.parse_palette(text, "hex"),
                                  [[255, 0, 0, 255], [0, 255, 0, 255], [0, 0, 255, 255],
                                   [0, 0, 0, 128]])
    opaque = b";paint.net Palette File\nFFFF0000\nFF00FF00\n"
    np.testing.assert_array_equal(palettes.parse_palette(opaque, "hex"),
                                  [[255, 0, 0], [0, 255, 0]])
    # Without Paint.NET's comment, 8 digits are rrggbbaa, as with a '#'.
    np.testing.assert_array_equal(palettes.parse_palette(b"ff000080\n#ff000080\n", "hex"),
                                  [[255, 0, 0, 128], [255, 0, 0, 128]])


def test_one_entry_for_a_mask_warns_that_encode_cannot_use_it():
    """k=1 over transparent and opaque pixels: the palette kpal encode --palette refuses."""
    icon = np.full((6, 6, 4), 255, np.uint8)
    icon[..., 0] = np.arange(6)  # three opaque colours, three transparent ones
    icon[:3, ..., 3] = 0
    with pytest.warns(kpal.KpalWarning, match=r"an encode onto this palette \(--palette, "
                                              r"palette=\) refuses .* \(k=2 keeps "):
        one = palettes.fit_palette([icon], 1)
    assert one.shape == (1, 4) and 0 < one[0, 3] < 255
    with pytest.raises(KpalError, match="palette has no opaque entry"):
        kpal.encode(icon, palette=one)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # k=2 keeps the mask: no note, and encode takes it
        two = palettes.fit_palette([icon], 2)
        kpal.encode(icon, palette=two)


class _Endless(io.RawIOBase):
    """Zeros for ever, as /dev/zero gives them; ``given`` counts them."""

    given = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        buffer[:] = bytes(len(buffer))
        self.given += len(buffer)
        return len(buffer)


def test_a_palette_file_far_larger_than_any_palette_is_refused_early(tmp_path):
    endless = _Endless()
    with pytest.raises(KpalError, match=r"^<palette>: more than 1,048,576 bytes, not a text "
                                        r"palette"):
        palettes.load_palette(io.BufferedReader(endless))
    assert endless.given < 4 << 20
    big = tmp_path / "big.gpl"
    big.write_bytes(b"GIMP Palette\n" + b"1 2 3\n" * 300_000)
    with pytest.raises(KpalError, match=r"big.gpl: more than 1,048,576 bytes"):
        palettes.load_palette(big)


def test_a_bomb_or_rgb_image_as_a_palette_is_named_before_its_pixels_are_read(tmp_path,
                                                                               monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("P", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 4096 pixels: over twice the limit
    with pytest.raises(KpalError, match=r"bomb.png: Image size \(4096 pixels\) exceeds limit"):
        palettes.load_palette(path)
    monkeypatch.undo()
    rgb = tmp_path / "rgb.png"
    Image.new("RGB", (64, 64)).save(rgb)
    loads = []
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(self) or None)
    with pytest.raises(KpalError, match=r"rgb.png: a PNG palette must be a palette image"):
        palettes.load_palette(rgb)
    assert loads == []
