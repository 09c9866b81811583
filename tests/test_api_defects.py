"""The Python API as a user meets it: wrong option names and types, inputs that are not
images, names that would mislead, and the commands around them (sample, view)."""

from __future__ import annotations

import re
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


@pytest.mark.parametrize(("ext", "note"), [(".gif", "GIF holds at most 256 colours"),
                                           (".jpg", "JPEG is lossy"), (".png", None),
                                           (".webp", None)])  # WebP is written losslessly
def test_sample_says_when_the_format_changes_the_drawn_colours(small_png, tmp_path, ext, note):
    out = tmp_path / f"s{ext}"
    result = CliRunner().invoke(cli, ["sample", str(small_png), "-o", str(out)])
    assert result.exit_code == 0, result.output
    if note is None:
        assert "not kept exactly" not in result.stderr
    else:
        assert f"note: {out}: {note}: the drawn colours are not kept exactly" in result.stderr
    quiet = CliRunner().invoke(cli, ["sample", str(small_png), "-o", str(out), "-f", "-q"])
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_view_of_an_optional_coding_warns_that_the_page_cannot_decode_it(tmp_path):
    page = tmp_path / "ctx.html"
    result = CliRunner().invoke(cli, ["view", str(GOLDEN / "context_k5_11x7.kpal"), "--no-open",
                                      "-o", str(page)])
    assert result.exit_code == 0, result.output
    assert "the page cannot decode coding 3 (context)" in result.stderr
    assert page.exists()


# ------------------------------------------------------------------ a Python developer's batch
def _two_photos(folder: Path) -> list[Path]:
    folder.mkdir()
    rng = np.random.default_rng(7)
    paths = []
    for name in ("a.png", "b.png"):
        paths.append(folder / name)
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(paths[-1])
    return paths


@pytest.mark.parametrize("jobs", [1, 2])
def test_workers_take_the_callers_decompression_bomb_limit(tmp_path, monkeypatch, jobs):
    from kpal.batch import encode_many

    paths = _two_photos(tmp_path / "in")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 2,000 pixels is a bomb now
    results = list(encode_many(paths, tmp_path / "out", jobs=jobs, k=4))
    assert [r.ok for r in results] == [False, False]
    assert all("decompression bomb" in r.error for r in results), [r.error for r in results]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("jobs", [1, 2])
def test_workers_take_the_callers_truncated_images_setting(tmp_path, monkeypatch, jobs):
    from PIL import ImageFile

    from kpal.batch import encode_many

    folder = tmp_path / "in"
    folder.mkdir()
    whole = tmp_path / "whole.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), np.uint8)).save(whole)
    (folder / "cut.jpg").write_bytes(whole.read_bytes()[:-600])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    results = list(encode_many(folder, tmp_path / "out", jobs=jobs, k=4))
    assert [r.error for r in results] == [None]


def test_the_encoded_repr_leaves_out_the_bytes_and_pixels():
    image = np.random.default_rng(2).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    text = repr(kpal.codec.encode_image(image, 16))
    assert len(text) < 2000 and "data=" not in text and "labels=" not in text
    assert "header=Header(" in text and "width=400" in text


def test_batch_api_checks_its_flags_and_palette_file_before_any_work(tmp_path):
    from kpal.batch import decode_many, encode_many

    paths = _two_photos(tmp_path / "in")
    with pytest.raises(TypeError, match=r"force='false' must be True or False"):
        encode_many(paths, tmp_path / "out", force="false")
    with pytest.raises(TypeError, match=r"recursive=1 must be True or False"):
        decode_many(paths, tmp_path / "out", recursive=1)
    with pytest.raises(FileNotFoundError, match=r"No such file or directory: .*missing.gpl"):
        encode_many(paths, tmp_path / "out", palette=str(tmp_path / "missing.gpl"))
    assert not (tmp_path / "out").exists()


@pytest.mark.filterwarnings("ignore:the image has .* distinct")
def test_batch_api_messages_name_the_keywords_not_the_flags(tmp_path):
    from kpal.batch import BatchError, decode_many, encode_many

    paths = _two_photos(tmp_path / "in")
    assert all(r.ok for r in encode_many(paths, tmp_path / "out", jobs=1, k=4))
    again = list(encode_many(paths, tmp_path / "out", jobs=1, k=8))  # other bytes
    assert [r.error for r in again] == [
        f"{tmp_path / 'out' / p.with_suffix('.kpal').name}: file exists (pass force=True to "
        "overwrite)" for p in paths]
    with pytest.raises(BatchError, match=r"no input file found.*recursive=True"):
        encode_many(tmp_path / "out", tmp_path / "o2")
    with pytest.raises(BatchError, match=re.escape("write into another folder (-o, or out_dir=)")):
        encode_many(paths, ext="sub/x.kpal")
    transparent = tmp_path / "t.kpal"
    kpal.save(np.dstack([np.zeros((4, 4, 3), np.uint8), np.full((4, 4), 128, np.uint8)]),
              transparent, 2)
    [result] = decode_many([transparent], tmp_path / "d", fmt="JPEG", jobs=1)
    assert result.notes == ("JPEG has no transparency: flattened onto white (choose the "
                            "colour with background=)",)


@pytest.mark.filterwarnings("ignore:the image has .* distinct")
def test_decode_many_refuses_an_extension_of_another_format(tmp_path):
    from kpal.batch import BatchError, decode_many

    kpal.save(np.zeros((4, 4, 3), np.uint8), tmp_path / "a.kpal", 2)
    with pytest.raises(BatchError, match=r"the extension '.png' means PNG, but the format is "
                                         r"JPEG"):
        decode_many([tmp_path / "a.kpal"], tmp_path / "d", fmt="JPEG", ext=".png")
    result = CliRunner().invoke(cli, ["decode", str(tmp_path / "a.kpal"), "-o",
                                      str(tmp_path / "d2") + "/", "--format", "png", "--ext",
                                      ".jpg"])
    assert result.exit_code == 2 and "the extension '.jpg' means JPEG, but the format is PNG" \
        in result.output
    assert not (tmp_path / "d").exists() and not (tmp_path / "d2").exists()


def test_save_into_a_folder_that_does_not_exist_writes_nothing(tmp_path):
    with pytest.raises(FileNotFoundError, match="new/: no such folder"):
        kpal.save(np.zeros((2, 2, 3), np.uint8), str(tmp_path / "new") + "/", 2)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("palette", [[(0.5, 1.7, 254.9)], [(1.0, 2.0, 3.0)], [(True, False, True)],
                                     np.array([[0.5, 1.5, 2.5]])])
def test_a_palette_of_floats_or_bools_is_refused_not_truncated(palette):
    with pytest.raises(OptionError, match=r"integers in 0..255 \(round floats first"):
        kpal.encode(np.zeros((2, 2, 3), np.uint8), palette=palette)


def _encode_folder_in_a_pool_worker(folder: str, jobs: int | None) -> tuple[list, list[str]]:
    import warnings

    from kpal.batch import encode_many

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = [(r.ok, r.error) for r in encode_many(folder, f"{folder}/out{jobs}",
                                                        jobs=jobs, k=4)]
    return results, [str(w.message) for w in caught if "daemonic" in str(w.message)]


def test_a_batch_inside_a_pool_worker_runs_there_with_a_warning(tmp_path):
    import multiprocessing

    _two_photos(tmp_path / "in")
    # spawn: a fork of this process, whose numba threads may be running, could hang
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        asked = pool.apply(_encode_folder_in_a_pool_worker, (str(tmp_path / "in"), 2))
        default = pool.apply(_encode_folder_in_a_pool_worker, (str(tmp_path / "in"), None))
    assert asked[0] == default[0] == [(True, None), (True, None)]
    assert asked[1] == ["this process is a daemonic worker, which cannot start worker "
                        "processes: the 2 files run here, one at a time"]
    assert default[1] == []  # jobs left at its default: adapting is no news


def test_errors_about_a_named_file_name_it(tmp_path):
    from kpal.errors import TruncatedError

    good = (GOLDEN / "k5_7x3.kpal").read_bytes()
    short = tmp_path / "short.kpal"
    short.write_bytes(good[:-5])
    with pytest.raises(TruncatedError, match=rf"^{re.escape(str(short))}: file is truncated"):
        kpal.decode(short)
    with pytest.raises(TruncatedError, match=r"^file is truncated"):
        kpal.decode(good[:-5])  # bytes: no name to give
    jpeg = tmp_path / "cut.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), np.uint8)).save(jpeg)
    jpeg.write_bytes(jpeg.read_bytes()[:-600])
    with pytest.raises(OSError, match=rf"^{re.escape(str(jpeg))}: image file is truncated"):
        kpal.encode(jpeg)


def test_decoded_files_take_the_extension_the_format_was_named_by():
    from kpal.batch import output_format

    assert output_format("jpg", None) == ("JPEG", ".jpg")
    assert output_format("tif", None) == ("TIFF", ".tif")
    assert output_format("PNG", None) == ("PNG", ".png")


def test_a_kpal_file_is_not_named_as_a_palette_file(tmp_path, small_png):
    with pytest.raises(KpalError, match=r"a \.kpal file named \.gpl would not be a GIMP palette"):
        kpal.save(small_png, tmp_path / "out.gpl", 4)
    result = CliRunner().invoke(cli, ["encode", str(small_png), "-o", str(tmp_path / "p.act")])
    assert result.exit_code == 2 and "would not be a Adobe colour table" not in result.stderr
    assert "a .kpal file named .act would not be an Adobe colour table" in result.stderr
    assert not list(tmp_path.glob("out.*")) and not list(tmp_path.glob("p.*"))


def test_a_huge_ratio_is_printed_with_separators():
    from kpal.cli import _ratio

    assert _ratio(13090909.0909) == "13,090,909.09× smaller than raw 24-bit"


def test_a_psnr_short_of_the_target_is_never_shown_reaching_it():
    from kpal.cli import _db

    assert _db(39.9989, 40) == "39.999" and _db(40.0004, 40) == "40.00"
    assert _db(35.123, 40) == "35.12" and _db(35.125) == "35.12"


def test_kpal_warnings_are_their_own_category():
    """kpal's warnings can be filtered apart from every other UserWarning."""
    import warnings

    import kpal

    few = np.zeros((4, 4, 3), dtype=np.uint8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kpal.encode(few, k=4)
    assert [w.category for w in caught] == [kpal.KpalWarning]
    assert issubclass(kpal.KpalWarning, UserWarning)
    assert "no more than k=4" in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=kpal.KpalWarning)
        kpal.encode(few, k=4)  # silenced: no error


def test_concurrent_encodes_keep_the_warning_filters_and_each_others_warnings():
    """kpal holds back its own warnings per thread, never through the process's filters."""
    import threading
    import warnings

    import kpal
    from kpal.errors import silenced, warn

    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    few = np.zeros((8, 8, 3), dtype=np.uint8)
    before = list(warnings.filters)
    barrier = threading.Barrier(8)
    errors = []

    def work(i):
        barrier.wait()
        try:
            for _ in range(5):
                kpal.encode(photo, k=4, method="gmm", max_iter=2)  # EM stops unconverged
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(repr(e))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        kpal.encode(few, k=4)  # its warning is not held back by the threads above
    assert errors == []
    assert warnings.filters == before
    assert [str(w.message)[:13] for w in caught] == ["the image has"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with silenced("the image"):
            warn("the image has 1 colour")
            warn("something else")
        warn("the image has 2 colours")
    assert [str(w.message) for w in caught] == ["something else", "the image has 2 colours"]


def test_warnings_point_at_the_callers_line_and_a_list_of_colours_is_flagged(tmp_path):
    """A KpalWarning names the user's line, not one inside kpal or Pillow."""
    import warnings

    import kpal

    colours = np.random.default_rng(0).integers(0, 256, (100, 3), dtype=np.uint8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kpal.encode(colours, k=4)
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "few.kpal", colors=8)
    assert [w.filename for w in caught] == [__file__, __file__]
    assert "an array of shape (100, 3) is read as a grey image" in str(caught[0].message)
    assert "array.reshape(-1, 1, 3)" in str(caught[0].message)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kpal.encode(np.arange(24, dtype=np.uint8).reshape(8, 3), k=2)  # 3 wide, small: no hint
    assert caught == []


def test_a_palette_image_with_transparency_keeps_its_colours_silently_as_an_opaque_one(tmp_path):
    """k above a palette image's colour count is no news, transparent or not."""
    import warnings

    import kpal

    rng = np.random.default_rng(4)
    for transparency in (None, 3):
        image = Image.fromarray(rng.integers(0, 30, (16, 16)).astype(np.uint8), "P")
        image.putpalette(rng.integers(0, 256, 90).tolist())
        if transparency is not None:
            image.info["transparency"] = transparency
        path = tmp_path / f"p{transparency}.png"
        image.save(path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = kpal.encode(path, k=64)
        assert caught == [], [str(w.message) for w in caught]
        assert kpal.codec.read_header(data)[0].k <= 30


# ------------------------------------------------------------------ library edges
@pytest.mark.parametrize(("keywords", "message"), [
    ({"k": 700}, "k=700 must be an integer between 1 and 256"),
    ({"k": 0}, "k=0 must be an integer between 1 and 256"),
    ({"k": 4, "seed": -1}, "seed=-1 must be an integer between 0 and"),
    ({"k": 4, "init": "foo"}, "init='foo' must be one of"),
    ({"k": 4, "tol": -1}, "tol=-1 must be a finite number >= 0"),
])
def test_kmeans_history_checks_its_parameters_as_kmeans_does(keywords, message):
    from kpal import plot

    pixels = np.random.default_rng(0).integers(0, 256, (600, 3), dtype=np.uint8)
    with pytest.raises(OptionError, match=re.escape(message)):
        plot.kmeans_history(pixels, **keywords)


def test_kmeans_history_takes_an_image_array_too():
    from kpal import plot

    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    history = plot.kmeans_history(image, 4)
    np.testing.assert_array_equal(history[-1], plot.kmeans_history(image.reshape(-1, 3), 4)[-1])


def test_the_iterations_figure_refuses_zero_points_or_panels():
    pytest.importorskip("matplotlib")
    from kpal import plot

    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    for name in ("n_points", "n_panels"):
        with pytest.raises(OptionError, match=f"{name}=0 must be a whole number >= 1"):
            plot.iterations(image, 4, **{name: 0})


def test_decode_of_a_text_mode_file_says_to_open_it_binary(tmp_path):
    path = tmp_path / "x.kpal"
    path.write_bytes(kpal.encode(np.random.default_rng(1).integers(0, 256, (4, 4, 3),
                                                                  dtype=np.uint8), 2))
    with path.open() as text, pytest.raises(TypeError, match="open it with 'rb'"):
        kpal.decode(text)


def test_load_palette_takes_a_bytes_path_and_refuses_a_text_file(tmp_path):
    from kpal.palettes import load_palette

    path = tmp_path / "p.hex"
    path.write_text("#ff0000\n")
    assert load_palette(bytes(path)).tolist() == [[255, 0, 0]]
    with path.open() as text, pytest.raises(TypeError, match="open it with 'rb'"):
        load_palette(text)


def test_encode_many_takes_one_bytes_path(tmp_path):
    from kpal import batch

    Image.new("RGB", (4, 4), (1, 2, 3)).save(tmp_path / "a.png")
    results = list(batch.encode_many(bytes(tmp_path / "a.png"), tmp_path / "out", jobs=1))
    assert [r.ok for r in results] == [True] and (tmp_path / "out" / "a.kpal").exists()


def test_figures_take_rgba_and_grey_arrays_as_the_images_they_make():
    pytest.importorskip("matplotlib")
    from kpal import plot

    rgba = np.random.default_rng(2).integers(0, 256, (12, 10, 4), dtype=np.uint8)
    grey = rgba[..., 0]
    assert plot._rgb_array(rgba).tolist() == plot._rgb_array(Image.fromarray(rgba, "RGBA")).tolist()
    assert plot._rgb_array(grey).tolist() == plot._rgb_array(Image.fromarray(grey, "L")).tolist()
    with pytest.raises(ValueError, match="got str"):
        plot._rgb_array("photo.png")


def test_quiet_view_prints_nothing_and_still_writes_the_page(tmp_path):
    page = tmp_path / "ctx.html"
    result = CliRunner().invoke(cli, ["view", str(GOLDEN / "context_k5_11x7.kpal"), "--no-open",
                                      "-o", str(page), "-q"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and result.stderr == ""
    assert "<html" in page.read_text(encoding="utf-8").lower()


def test_quiet_plot_and_sample_of_a_transparent_image_print_no_note(tmp_path):
    pytest.importorskip("matplotlib")
    rgba = np.random.default_rng(2).integers(0, 256, (12, 10, 4), dtype=np.uint8)
    src = tmp_path / "t.png"
    Image.fromarray(rgba, "RGBA").save(src)
    for args in (["plot", str(src), "--kind", "compare", "-k", "4", "-o",
                  str(tmp_path / "c.png")],
                 ["sample", str(src), "-k", "4", "-o", str(tmp_path / "s.png")]):
        loud = CliRunner().invoke(cli, [*args, "-f"])
        assert loud.exit_code == 0, loud.output
        assert "has transparency" in loud.stderr
        quiet = CliRunner().invoke(cli, [*args, "-f", "-q"])
        assert quiet.exit_code == 0, quiet.output
        assert quiet.stderr == "" and quiet.stdout == ""


def test_required_k_and_aliases_are_named_in_the_message():
    pixels = np.zeros((3, 3), np.uint8)
    for call in (lambda: kpal.quantize(pixels, None),
                 lambda: fit_palette([np.zeros((2, 2, 3), np.uint8)], None)):
        with pytest.raises(OptionError, match=r"^k=None must be an integer between 1 and 256$"):
            call()
    import io

    with pytest.raises(OptionError, match=r"^colors=0 must be an integer between 1 and 256$"):
        Image.new("RGB", (4, 4)).save(io.BytesIO(), "KPAL", colors=0)
    from kpal.choose import measure_curve

    with pytest.raises(OptionError, match=r"^ks=4 must be an iterable of k values"):
        measure_curve(np.zeros((2, 2, 3), np.uint8), 4)


def test_a_keyword_k_overrides_the_target_or_palette_of_given_options():
    image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    for preset in (kpal.EncodeOptions(quality=30), kpal.EncodeOptions(max_size=10_000),
                   kpal.EncodeOptions(palette=((0, 0, 0), (255, 255, 255)))):
        data = kpal.encode(image, options=preset, k=4)
        assert read_header(data)[0].k == 4
    data = kpal.encode(image, options=kpal.EncodeOptions(k=8), palette=((0, 0, 0), (9, 9, 9)))
    assert read_header(data)[0].k == 2
    with pytest.raises(OptionError, match="k and quality both decide the palette"):
        kpal.encode(image, options=kpal.EncodeOptions(k=8), k=4, quality=30)


def test_writers_name_the_destination_and_take_only_a_bool_force(tmp_path):
    target = tmp_path / "p.gpl"
    kpal.save_palette([[1, 2, 3]], target)
    with pytest.raises(TypeError, match=r"^force='no' must be True or False$"):
        kpal.save_palette([[9, 9, 9]], target, force="no")
    assert kpal.load_palette(target).tolist() == [[1, 2, 3]]
    image = Image.new("RGB", (2, 2))
    with pytest.raises(TypeError, match=r"^force=1 must be True or False$"):
        kpal.save(image, tmp_path / "x.kpal", k=2, force=1)
    # /proc takes no new file: the error names the destination, not a temporary file
    with pytest.raises(OSError) as error:
        kpal.save(image, "/proc/x.kpal", k=2)
    assert error.value.filename == "/proc/x.kpal" and ".tmp" not in str(error.value)
    from kpal.io import write_atomic

    with pytest.raises(OSError) as error:
        write_atomic("/proc/y.kpal", b"abc")
    assert error.value.filename == "/proc/y.kpal"


def test_an_unreadable_palette_file_is_an_os_error():
    with pytest.raises(FileNotFoundError, match=r"No such file or directory: '/nonexistent/p.gpl'"):
        kpal.encode(np.zeros((2, 2, 3), np.uint8), palette="/nonexistent/p.gpl")


def test_signatures_and_exports_as_help_shows_them():
    import inspect as inspection

    assert list(inspection.signature(kpal.EncodeOptions).parameters)[:3] == ["k", "method",
                                                                              "init"]
    assert "__version__" not in kpal.__all__ and kpal.__version__
    from kpal import plot

    image = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(OptionError, match=r"^n_points=-1 must be a whole number >= 1$"):
        plot.scatter(image, k=2, n_points=-1)
    with pytest.raises(OptionError, match=r"^raw_bits=8 must be 24 \(RGB\) or 32 \(RGBA\)$"):
        plot.compare(image, k=2, raw_bits=8)


def test_view_refuses_to_write_a_page_it_would_not_name(tmp_path):
    result = CliRunner().invoke(cli, ["view", str(GOLDEN / "k5_7x3.kpal"), "--no-open", "-q"])
    assert result.exit_code == 2
    assert "--no-open -q without -o writes a page and says nothing of where" in result.stderr


def test_palette_weights_far_from_one_give_the_palette_of_weight_one():
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    plain = fit_palette([image], 16)
    for weight in (1e-300, 5e-324, 1e300, 1e308):
        np.testing.assert_array_equal(fit_palette([image], 16, weights=[weight]), plain)
    np.testing.assert_array_equal(fit_palette([image, image[:5]], 16, weights=[1e308, 1e-300]),
                                  plain)


def test_the_command_list_shows_each_summary_whole():
    result = CliRunner().invoke(cli, ["--help"], terminal_width=80)
    commands = result.output.split("Commands:")[1]
    assert "..." not in commands and "Compress images to .kpal files" in commands


def test_writers_refuse_a_folder_and_name_it(tmp_path):
    from kpal.io import write_atomic

    (tmp_path / "d.gpl").mkdir()
    for force in (False, True):
        with pytest.raises(IsADirectoryError, match=r"d.gpl: is a directory"):
            kpal.save_palette([[1, 2, 3]], tmp_path / "d.gpl", force=force)
    write_atomic(tmp_path / "w.bin", b"x", force=np.True_)  # numpy's bool is a bool
    assert (tmp_path / "w.bin").read_bytes() == b"x"


def test_curve_and_measure_curve_check_ks_alike():
    from kpal import plot
    from kpal.choose import measure_curve

    pytest.importorskip("matplotlib")
    image = np.zeros((4, 4, 3), np.uint8)
    for ks in ("48", 4, np.array(4)):
        with pytest.raises(OptionError, match=r"must be an iterable of k values"):
            plot.curve(image, ks=ks)
        with pytest.raises(OptionError, match=r"must be an iterable of k values"):
            measure_curve(image, ks)
    with pytest.raises(OptionError, match=r"^ks=\[\] must hold at least one k"):
        plot.curve(image, ks=[])


def test_view_to_a_device_opens_no_browser(tmp_path, monkeypatch):
    import webbrowser

    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda *a, **k: opened.append(a) or True)
    result = CliRunner().invoke(cli, ["view", str(GOLDEN / "k5_7x3.kpal"), "-o", "/dev/null"])
    assert result.exit_code == 0, result.output
    assert opened == []


def test_commands_that_read_local_files_say_so_for_a_url(tmp_path, small_png):
    runner = CliRunner()
    result = runner.invoke(cli, ["palette", f"file://{small_png}", "-o", str(tmp_path / "p.gpl")])
    assert result.exit_code == 2
    assert "kpal palette reads local files and -" in result.stderr
    result = runner.invoke(cli, ["view", f"file://{GOLDEN / 'k5_7x3.kpal'}", "--no-open"])
    assert result.exit_code == 2
    assert "kpal view shows a local file or -" in result.stderr


def test_ssimulacra2_is_refused_for_a_batch_it_would_not_score(tmp_path, small_png):
    result = CliRunner().invoke(cli, ["encode", str(small_png), str(small_png), "-o",
                                      str(tmp_path / "out") + "/", "--ssimulacra2"])
    assert result.exit_code == 2
    assert "--ssimulacra2 scores one file in its report" in result.stderr
    assert not (tmp_path / "out").exists()
