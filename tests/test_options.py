"""One options object: the API, im.save and the CLI map onto kpal.options, with one message each."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import kpal
import kpal.io
from kpal import options
from kpal.cli import cli
from kpal.cluster import quantize
from kpal.errors import FormatError, KpalError, OptionError
from kpal.options import EncodeOptions

PIXELS = np.arange(60, dtype=np.uint8).reshape(20, 3)
#: The end of every palette message: floats are refused, not truncated.
ROUND = "(round floats first, e.g. numpy.rint(centres).astype(int))"

# name, bad value, the one message every surface gives for it
BAD_VALUES = [
    ("k", 0, "k=0 must be an integer between 1 and 256"),
    ("k", 257, "k=257 must be an integer between 1 and 256"),
    ("k", 2.5, "k=2.5 must be an integer between 1 and 256"),
    ("k", True, "k=True must be an integer between 1 and 256"),
    ("method", "kmedoids", "method='kmedoids' must be one of 'kmeans', 'gmm'"),
    ("init", "kmeans++", "init='kmeans++' must be one of 'k-means++', 'random'"),
    ("seed", -1, "seed=-1 must be an integer between 0 and 18446744073709551615"),
    ("max_iter", 0, "max_iter=0 must be an integer between 1 and 1000000"),
    ("tol", -1e-3, "tol=-0.001 must be a finite number >= 0"),
    ("tol", float("nan"), "tol=nan must be a finite number >= 0"),
    ("sample", 0, "sample=0 must be a fraction in (0, 1]"),
    ("sample", 1.5, "sample=1.5 must be a fraction in (0, 1]"),
    ("coding", "zip", "coding='zip' must be one of 'fixed', 'radix', 'entropy', 'context'"),
    ("dither", "floyd", "dither='floyd' must be one of 'none', 'fs', 'ordered'"),
    ("dither_strength", 1.5, "dither_strength=1.5 must be a fraction in [0, 1]"),
    ("space", "lab", "space='lab' must be one of 'rgb', 'oklab'"),
    ("quality", "40-35", "quality='40-35': MIN 40 is above MAX 35"),
    ("quality", "high", "quality='high' must be MAX or MIN-MAX, PSNR in dB above 0 and at most 100 "
                        "(e.g. 35-40)"),
    ("quality", 0, "quality=0 must be MAX or MIN-MAX, PSNR in dB above 0 and at most 100 "
                   "(e.g. 35-40)"),
    ("max_size", "0", "max_size='0' must be between 1 and 1,099,511,627,776 bytes"),
    ("max_size", "2TB", "max_size='2TB' must be between 1 and 1,099,511,627,776 bytes"),
    ("max_size", "2PB", "max_size='2PB' must be a number of bytes, e.g. 50000, 50k or 2MiB"),
    ("max_size", "12 parsecs", "max_size='12 parsecs' must be a number of bytes, e.g. 50000, "
                               "50k or 2MiB"),
    ("max_size", "1.0001k", "max_size='1.0001k' is not a whole number of bytes (1000.1)"),
    ("max_size", "1e999999999k", "max_size='1e999999999k' must be between 1 and "
                                 "1,099,511,627,776 bytes"),
    ("palette", [[1, 2]], "palette=[[1, 2]] must be a palette file or 1..256 colours, each "
                          "three (RGB) or four (RGBA) integers in 0..255 " + ROUND),
    ("palette", [[0, 0, 256]], "palette=[[0, 0, 256]] must be a palette file or 1..256 colours, "
                               "each three (RGB) or four (RGBA) integers in 0..255 " + ROUND),
    ("palette", [[0, 0, 0], [0, 0, 0, 0]], "palette=[[0, 0, 0], [0, 0, 0, 0]] must be a palette "
                                           "file or 1..256 colours, each three (RGB) or four "
                                           "(RGBA) integers in 0..255 " + ROUND),
    # A long value is shortened: the message stays one readable line.
    ("palette", [(i, 0, 0) for i in range(300)], "palette=[(0, 0, 0), (1, 0, 0), (2, 0, 0), "
                                                 "(3, 0, 0), ...] (300 entries) must be a palette "
                                                 "file or 1..256 colours, each three (RGB) or "
                                                 "four (RGBA) integers in 0..255 " + ROUND),
    ("coding", "z" * 200, f"coding='{'z' * 27}...{'z' * 28}' must be one of 'fixed', 'radix', "
                          "'entropy', 'context'"),
    ("background", "mauve-ish", "background='mauve-ish' must be a colour: #rrggbb, #rgb, a name "
                                "such as white, or r,g,b with each 0..255 (not a known colour "
                                "name)"),
    ("background", "300,0,0", "background='300,0,0' must be a colour: #rrggbb, #rgb, a name "
                              "such as white, or r,g,b with each 0..255 (each of r,g,b must "
                              "be 0..255)"),
    ("background", "#ff000080", "background='#ff000080' must be a colour: #rrggbb, #rgb, a "
                                "name such as white, or r,g,b with each 0..255 (a colour with "
                                "alpha: a background is opaque)"),
    ("background", "1,2", "background='1,2' must be a colour: #rrggbb, #rgb, a name such as "
                          "white, or r,g,b with each 0..255 (r,g,b needs three integers)"),
    ("background", "#gg0000", "background='#gg0000' must be a colour: #rrggbb, #rgb, a name "
                              "such as white, or r,g,b with each 0..255 (a hex colour needs 3 "
                              "or 6 hex digits after '#')"),
    ("background", (0, 0, 256), "background=(0, 0, 256) must be a colour: #rrggbb, #rgb, a "
                                "name such as white, or r,g,b with each 0..255 (each of r,g,b "
                                "must be 0..255)"),
    ("background", (True, 0, 0), "background=(True, 0, 0) must be a colour: #rrggbb, #rgb, a "
                                 "name such as white, or r,g,b with each 0..255"),
]


def test_defaults_and_method_dependent_iterations():
    opts = EncodeOptions()
    assert opts.as_dict() == {"k": None, "method": "kmeans", "init": "k-means++", "seed": 0,
                              "max_iter": None, "tol": None, "sample": None, "coding": "fixed",
                              "dither": "none", "dither_strength": 1.0, "space": "rgb",
                              "palette": None, "quality": None, "max_size": None,
                              "background": None}
    assert (opts.iterations, opts.tolerance) == (300, 1e-4)
    gmm = EncodeOptions(method="gmm")
    assert (gmm.iterations, gmm.tolerance) == (100, 1e-3)
    assert EncodeOptions(method="gmm", max_iter=7, tol=0.5).iterations == 7
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.k = 8


def test_values_are_normalized():
    opts = EncodeOptions(k=np.int64(8), seed=np.uint8(3), tol=1, sample=np.float32(0.5))
    assert type(opts.k) is int and type(opts.seed) is int and type(opts.tol) is float
    assert opts == EncodeOptions(k=8, seed=3, tol=1.0, sample=0.5)


@pytest.mark.parametrize(("name", "value", "message"), BAD_VALUES)
def test_every_surface_gives_the_same_message(name, value, message, tmp_path):
    with pytest.raises(OptionError) as from_options:
        EncodeOptions(**{name: value})
    assert str(from_options.value) == message
    with pytest.raises(OptionError) as from_api:
        kpal.encode(np.zeros((2, 2, 3), np.uint8), **{name: value})
    assert str(from_api.value) == message
    with pytest.raises(OptionError) as from_save:
        Image.new("RGB", (2, 2)).save(tmp_path / "x.kpal", **{name: value})
    assert str(from_save.value) == message
    if name in ("k", "method", "init", "seed", "max_iter", "tol", "sample"):
        with pytest.raises(OptionError) as from_quantize:
            quantize(PIXELS, **{"k": 4, name: value})
        assert str(from_quantize.value) == message


def test_option_errors_are_kpal_errors_not_format_errors():
    with pytest.raises(OptionError) as e:
        EncodeOptions(coding="zip")
    assert isinstance(e.value, KpalError) and isinstance(e.value, ValueError)
    assert not isinstance(e.value, FormatError)


@pytest.mark.parametrize(("call", "match"), [
    (lambda im: kpal.encode(im, packing="radix"), r"unknown option 'packing' .kpal calls it "
                                                  r"coding.; accepted: k, method, init"),
    (lambda im: kpal.encode(im, entropy=True), r"'entropy' .kpal calls it coding='entropy'"),
    (lambda im: kpal.encode(im, colors=8), r"unknown option 'colors' .kpal calls it k."),
    (lambda im: kpal.encode(im, sed=3), r"unknown option 'sed' .kpal calls it seed."),
])
def test_unknown_keywords_name_the_keyword_and_the_accepted_ones(call, match):
    with pytest.raises(OptionError, match=match):
        call(np.zeros((2, 2, 3), np.uint8))


def test_save_with_pillow_name_is_an_option_error_and_writes_nothing(tmp_path):
    path = tmp_path / "x.kpal"
    with pytest.raises(OptionError, match="unknown option 'colors' .kpal calls it k."):
        kpal.save(np.zeros((2, 2, 3), np.uint8), path, colors=8)
    assert not path.exists()


def test_options_are_checked_before_the_input_is_read(tmp_path):
    missing = tmp_path / "missing.jpg"
    with pytest.raises(OptionError, match="k=0"):
        kpal.encode(missing, k=0)  # not FileNotFoundError: the options come first
    with pytest.raises(OptionError, match="unknown option 'colours'"):
        kpal.save(missing, tmp_path / "x.kpal", colours=8)


def test_options_object_and_keywords_combine():
    im = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    opts = EncodeOptions(k=4, coding="radix", seed=1)
    assert kpal.encode(im, options=opts) == kpal.encode(im, k=4, coding="radix", seed=1)
    assert kpal.encode(im, options=opts, seed=2) == kpal.encode(im, 4, coding="radix", seed=2)
    assert kpal.codec.encode_image(im, options=opts).options == opts


def test_kmeans_estimator_shares_the_messages():
    with pytest.raises(ValueError, match="^k=300 must be an integer between 1 and 256$"):
        kpal.KMeans(300).fit(PIXELS)
    with pytest.raises(ValueError, match="^seed=-2 must be an integer between 0 and"):
        kpal.KMeans(2, seed=-2).fit(PIXELS)


# ------------------------------------------------------------------ command line
@pytest.fixture
def jpeg(tmp_path, photo):
    path = tmp_path / "in.jpg"
    photo.save(path)
    return path


@pytest.mark.parametrize(("args", "message"), [
    (["-k", "0"], "-k/--colors: k=0 must be an integer between 1 and 256"),
    (["-k", "abc"], "-k/--colors: k='abc' must be an integer between 1 and 256"),
    (["--seed", "-1"], "--seed: seed=-1 must be an integer between 0 and"),
    (["--sample", "0"], "--sample: sample=0 must be a fraction in (0, 1]"),
    (["--tol", "x"], "--tol: tol='x' must be a finite number >= 0"),
    (["--max-iter", "0"], "--max-iter: max_iter=0 must be an integer between 1 and"),
    (["--method", "em"], "--method: method='em' must be one of 'kmeans', 'gmm'"),
    (["--coding", "zip"],
     "--coding: coding='zip' must be one of 'fixed', 'radix', 'entropy', 'context'"),
    (["--packing", "radix", "--entropy"], "--packing and --entropy both choose the payload "
                                          "coding; give one"),
    (["--coding", "radix", "--packing", "radix"], "--coding and --packing both choose"),
])
def test_cli_option_errors_exit_2_before_reading_the_input(args, message, tmp_path):
    # The input is a FIFO nobody writes to: reading it would block forever.
    fifo = tmp_path / "never.jpg"
    os.mkfifo(fifo)
    done = {}

    def run():
        done["result"] = CliRunner().invoke(cli, ["encode", str(fifo), "-o",
                                                  str(tmp_path / "o.kpal"), *args])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(20)
    if thread.is_alive():  # unblock the reader so the test process can finish
        with open(fifo, "wb"):
            pass
        thread.join(5)
        pytest.fail("the input was read before the options were checked")
    result = done["result"]
    assert result.exit_code == 2, result.output
    assert f"kpal: error: {message}" in result.output
    assert not (tmp_path / "o.kpal").exists()


def test_cli_accepts_k_1_like_the_api(jpeg, tmp_path):
    out = tmp_path / "one.kpal"
    result = CliRunner().invoke(cli, ["encode", str(jpeg), "-k", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert kpal.decode(out).info["k"] == 1
    assert "k = 1, 0 bits per index" in result.output


@pytest.mark.parametrize(("flags", "coding"), [
    ([], "fixed"), (["--coding", "radix"], "radix"), (["--packing", "radix"], "radix"),
    (["--packing", "fixed"], "fixed"), (["--entropy"], "entropy"),
    (["--coding", "entropy"], "entropy"),
])
def test_cli_coding_flags_map_onto_one_coding(jpeg, tmp_path, flags, coding):
    out = tmp_path / "x.kpal"
    result = CliRunner().invoke(cli, ["encode", str(jpeg), "-k", "5", "-o", str(out), "-q",
                                      *flags])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == kpal.encode(jpeg, k=5, coding=coding)


def test_cli_help_is_written_from_the_option_specs():
    result = CliRunner().invoke(cli, ["encode", "--help"], terminal_width=400)
    text = " ".join(result.output.split())
    for spec in options.SPECS.values():
        assert " ".join(spec.help.split()) in text, spec.name
        assert ", ".join(spec.flags) in text


@pytest.mark.parametrize("command", [["sample", "-o", "s.png"], ["plot", "--kind", "palette",
                                                                  "-o", "p.png"]])
def test_sample_and_plot_check_k_with_the_same_message(command, jpeg):
    result = CliRunner().invoke(cli, [command[0], str(jpeg), *command[1:], "-k", "999"])
    assert result.exit_code == 2
    assert "-k/--colors: k=999 must be an integer between 1 and 256" in result.output


def test_seed_error_exits_2_in_a_real_process_without_decoding(tmp_path, jpeg):
    proc = subprocess.run([sys.executable, "-m", "kpal.cli", "encode", str(jpeg), "--seed", "-1",
                           "-o", str(tmp_path / "x.kpal")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("kpal: error: --seed: seed=-1 must be an integer between 0 "
                                   "and 18446744073709551615")


def test_unwritable_destination_fails_before_the_fit(tmp_path, jpeg, monkeypatch):
    calls = []
    monkeypatch.setattr(kpal.codec, "quantize", lambda *a, **kw: calls.append(1))
    folder = tmp_path / "ro"
    folder.mkdir()
    os.chmod(folder, 0o555)
    # As root permission bits do not stop a write: make the probe fail as a read-only
    # filesystem would, where the temporary file is created.
    real_temporary_file = kpal.io.tempfile.TemporaryFile

    def read_only(*args, **kwargs):
        if kwargs.get("dir") == folder:
            raise OSError(30, "Read-only file system")
        return real_temporary_file(*args, **kwargs)

    monkeypatch.setattr(kpal.io.tempfile, "TemporaryFile", read_only)
    result = CliRunner().invoke(cli, ["encode", str(jpeg), "-o", str(folder / "x.kpal")])
    assert result.exit_code == 1
    out = folder / "x.kpal"
    assert result.output == f"kpal: error: {out}: cannot write: Read-only file system\n"
    with pytest.raises(OSError, match="Read-only"):
        kpal.save(jpeg, folder / "x.kpal", 8)
    existing = tmp_path / "existing.kpal"
    existing.write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="pass force=True"):
        kpal.save(jpeg, existing, 8)
    with pytest.raises(KpalError, match="would not be a JPEG image"):  # never over the photo
        kpal.save(jpeg, jpeg, 8, force=True)
    assert calls == [] and existing.read_bytes() == b"keep"  # no fit ran


@pytest.mark.parametrize(("name", "text", "value"), [
    ("quality", "35-40", (35.0, 40.0)),
    ("quality", "38", (38.0, 38.0)),
    ("quality", (30, 45.5), (30.0, 45.5)),
    ("max_size", "50000", 50000),
    ("max_size", "50k", 50000),
    ("max_size", "2MiB", 2 * 1024 * 1024),
    ("max_size", "1.5kb", 1500),
    ("max_size", "10G", 10 * 1000**3),
    ("max_size", "1GiB", 1024**3),
    ("background", "#102030", (16, 32, 48)),
    ("background", "white", (255, 255, 255)),
    ("background", "1, 2, 3", (1, 2, 3)),
    ("background", "#F80", (255, 136, 0)),
    ("background", "Grey", (128, 128, 128)),
    ("background", "rgb(0, 128, 255)", (0, 128, 255)),
    ("background", (1, 2, 3), (1, 2, 3)),
    ("palette", "shared.gpl", "shared.gpl"),
    ("palette", np.array([[1, 2, 3], [4, 5, 6]], np.uint8), ((1, 2, 3), (4, 5, 6))),
    ("dither_strength", "0.5", 0.5),
])
def test_new_option_values_are_normalized(name, text, value):
    assert options.check(name, text) == value


@pytest.mark.parametrize("pair", [("k", 8, "quality", "35-40"), ("k", 8, "palette", "p.gpl"),
                                  ("quality", 40, "max_size", 9000)])
def test_one_way_to_decide_the_palette(pair):
    first, a, second, b = pair
    with pytest.raises(OptionError, match=f"{first} and {second} both decide the palette"):
        EncodeOptions(**{first: a, second: b})


def test_a_dither_strength_without_dither_is_refused():
    # --dither-strength 0.5 alone was accepted and did nothing: the file was undithered.
    with pytest.raises(OptionError, match=r"^dither_strength=0\.5 has no effect without dither "
                                          r"\('fs' or 'ordered'\)$"):
        EncodeOptions(k=8, dither_strength=0.5)
    assert EncodeOptions(k=8, dither="fs", dither_strength=0.5).dither_strength == 0.5
    assert EncodeOptions(k=8, dither_strength=1.0).dither == "none"  # the default value


def test_a_given_palette_names_only_the_fitting_options_given():
    with pytest.raises(OptionError, match=r"^palette maps onto given colours: method='gmm' has "
                                          r"nothing to fit$"):
        EncodeOptions(palette=[(1, 2, 3)], method="gmm")
    with pytest.raises(OptionError, match=r"method='gmm' and sample=0.5 have nothing to fit$"):
        EncodeOptions(palette=[(1, 2, 3)], method="gmm", sample=0.5)
    with pytest.raises(OptionError, match=r"method='gmm', sample=0.5 and init='random' have "
                                          r"nothing to fit$"):
        EncodeOptions(palette=[(1, 2, 3)], method="gmm", sample=0.5, init="random")
    with pytest.raises(OptionError, match=r"^k, quality and palette all decide the palette"):
        EncodeOptions(k=4, quality=(30, 40), palette=[(1, 2, 3)])


@pytest.mark.parametrize(("text", "expected"), [
    ("1.001M", 1_001_000), ("2.01k", 2010), ("4.03k", 4030), ("1.003M", 1_003_000),
    ("1.5MiB", 1_572_864), ("1e3", 1000), (" 7 kb", 7000),
])
def test_max_size_decimals_are_exact(text, expected):
    """1.001 * 1e6 is 1000999.9999999999 in floats: sizes are read as decimals."""
    assert options.check("max_size", text) == expected


@pytest.mark.parametrize(("name", "value"), [
    ("max_size", "1_000k"), ("max_size", "١k"), ("sample", "0.١"), ("tol", "1_0"),
    ("dither_strength", "٠.5"),
])
def test_numbers_as_text_take_ascii_digits_only_as_k_does(name, value):
    with pytest.raises(OptionError, match=rf"^{name}={value!r} must be"):
        EncodeOptions(**{name: value})
