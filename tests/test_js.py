"""The JavaScript decoder (js/kpal.js) and viewer against the Python reader.

The Python reader is the reference: every file below is decoded (or rejected) by
``codec.decode_indices`` first, and ``node --test`` on js/test/ must give the same
verdict on every one of them: the same indices and palette, or an error of the same
class (``FormatError``, ``ChecksumError``, ``LimitError``, ``DecompressionBombError``).
The files: a matrix of k x coding x size plus a 768x512 photo, the golden files, the
regression files of tests/corrupt/, the cases of tests/test_corrupt.py (every
truncation and single-bit flip of small files, patched header fields), hostile entropy
payloads, and a few thousand mutated files from the fuzzer's mutator.

The viewer test drives the system's Chromium headless through Playwright over
file://, loads a file through the file input and compares the canvas pixels with the
Python decode.

Without ``node`` (or Chromium and Playwright for the viewer test) these tests skip,
except under CI (the environment variable ``CI`` set), where they fail.
"""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import struct
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kpal
from kpal import codec, container, view
from kpal import coding as codings
from kpal.errors import KpalError
from tests.conftest import GOLDEN, ROOT, SAMPLES, in_ci
from tests.fuzz_decode import FIELDS, mutate, patch_field, seed_corpus, with_checksum

JS = ROOT / "js"
CORRUPT = ROOT / "tests" / "corrupt"
NODE = shutil.which("node")
#: The codings js/kpal.js decodes: coding 3 (context) is optional for readers (spec §12) and
#: the browser reader rejects it by name, so the matrix leaves it out.
JS_CODINGS = [name for name in sorted(codings.BY_NAME) if name != "context"]
#: What js/kpal.js says for a file of coding 3 whose checksum holds.
CONTEXT_UNSUPPORTED = "coding 3 (context) is not supported by this reader"
DENO = shutil.which("deno")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Chromium flags for a quiet, sandbox-free headless run that fetches nothing.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

MATRIX_K = (1, 2, 3, 5, 16, 17, 100, 255, 256)
MATRIX_SIZES = ((1, 1), (7, 3), (1, 1000), (65, 65))
PHOTO_SIZE, PHOTO_K = (768, 512), 64
N_MUTATED = 3000


def _need(found: object, what: str) -> None:
    """Skip when a tool is missing, except under CI, which must run these tests."""
    if found:
        return
    if in_ci():
        pytest.fail(f"{what} is required under CI (the environment variable CI is set)")
    pytest.skip(f"{what} not found")


# ------------------------------------------------------------------ building the cases
def _labels(width: int, height: int, k: int, seed: int) -> np.ndarray:
    """Random indices < k, with 0..k-1 all present when the image has room for them."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=(height, width), dtype=np.uint8)
    n = min(k, labels.size)
    labels.reshape(-1)[:n] = np.arange(n, dtype=np.uint8)
    return labels


def _write(labels: np.ndarray, palette: np.ndarray, coding: str, metadata=()) -> bytes:
    """A file with exactly this palette (k = its length, RGBA when it has 4 columns),
    these indices and metadata blocks (version 2 when either is there)."""
    chosen = codings.get(coding)
    k = len(palette)
    payload = chosen.encode(labels, k)
    height, width = labels.shape
    header = container.Header.for_image(
        coding=chosen.id, k=k, width=width, height=height, payload_length=len(payload),
        alpha=palette.shape[1] == 4, metadata_length=len(container.pack_metadata(metadata)))
    return container.write(header, palette, payload, metadata=metadata)


def _verdict(data: bytes) -> tuple[str, tuple[np.ndarray, np.ndarray] | None]:
    """The Python reader's verdict: "ok" with (palette, labels), or the error's class name."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, palette, labels = codec.decode_indices(data)
    except Image.DecompressionBombError:
        return "DecompressionBombError", None
    except KpalError as e:
        return type(e).__name__, None
    if data[10] == codings.get("context").id:  # a valid coding 3 file: the JS reader lacks it
        return "FormatError", None
    return "ok", (palette, labels)


@functools.cache
def _photo_labels() -> tuple[np.ndarray, np.ndarray]:
    """Palette and indices of a 768x512 photo (samples/rocket.jpg, 640x427, scaled)."""
    with Image.open(SAMPLES / "rocket.jpg") as im:
        photo = im.convert("RGB").resize(PHOTO_SIZE, Image.Resampling.LANCZOS)
    encoded = codec.encode_image(photo, PHOTO_K)
    return encoded.palette, encoded.labels


def _matrix() -> list[tuple[str, bytes]]:
    files = []
    for k in MATRIX_K:
        palette = np.random.default_rng(k).integers(0, 256, (k, 3), dtype=np.uint8)
        for width, height in MATRIX_SIZES:
            labels = _labels(width, height, k, seed=k * 7919 + width)
            for coding in JS_CODINGS:
                files.append((f"k{k}_{width}x{height}_{coding}", _write(labels, palette, coding)))
    # 455 tiles of 64x5, each of one colour (0 or 1, alternating): every pixel has pattern
    # 127, and after step 4 the 455 * 9 F1 decisions bring FL[127] to c0 + c1 = 2 + 2 * 4095
    # = 8192, exactly the limit, which must not halve it (spec §7.5: above 8192); halving
    # there changes the probabilities of the later steps.
    flat = np.zeros((5, 455, 64), np.uint8)
    flat[:, 1::2] = 1
    flat = flat.reshape(5, 455 * 64)
    files.append(("flat_k2_29120x5_entropy_flag_limit",
                  _write(flat, np.array([[0, 0, 0], [255, 255, 255]], np.uint8), "entropy")))
    # A 1-pixel-wide image of random indices: its odd steps hold no pixel, yet the flag
    # counts are halved after them too (spec §7.2); with 9375 tiles a step's decisions take
    # the counts past twice the limit, so a decoder that skips that halving goes astray.
    thin = np.random.default_rng(5).integers(0, 16, (600_000, 1), dtype=np.uint8)
    files.append(("thin_k16_1x600000_entropy_empty_steps",
                  _write(thin, np.random.default_rng(16).integers(0, 256, (16, 3), np.uint8),
                         "entropy")))
    palette, labels = _photo_labels()
    for coding in JS_CODINGS:
        files.append((f"photo_{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}_k{PHOTO_K}_{coding}",
                      _write(labels, palette, coding)))
    # version 2 (spec §2.1, §3.2): RGBA palettes, an ICC profile, blocks to skip
    icc = (GOLDEN / "srgb.icc").read_bytes()
    for k in (1, 2, 5, 17, 256):
        rgba = np.random.default_rng(k + 1).integers(0, 256, (k, 4), dtype=np.uint8)
        rgba[0, 3] = 0
        labels = _labels(13, 7, k, seed=k)
        for coding in JS_CODINGS:
            files.append((f"rgba_k{k}_13x7_{coding}", _write(labels, rgba, coding)))
            files.append((f"rgba_icc_k{k}_13x7_{coding}", _write(
                labels, rgba, coding, [("xtra", b"skip"), ("iccp", icc), ("zzzz", b"")])))
            files.append((f"rgb_icc_k{k}_13x7_{coding}", _write(
                labels, rgba[:, :3], coding, {"iccp": icc})))
    return files


def _header(coding: int, k: int, width: int, height: int, payload_length: int) -> bytes:
    return struct.pack(">9sBBBHIII", container.MAGIC, 1, coding, (k - 1).bit_length(), k,
                       width, height, payload_length)


def _entropy_file(payload: bytes, k: int, width: int, height: int) -> bytes:
    return with_checksum(_header(2, k, width, height, len(payload)) + bytes(3 * k) + payload
                         + bytes(4))


def _hostile_entropy() -> list[tuple[str, bytes]]:
    """Entropy payloads that break each rule of spec §7.6, and the bounds of §7.1-§7.2."""
    labels = _labels(30, 20, 16, seed=11)
    good = codings.get("entropy").encode(labels, 16)
    cases = {
        "tile_log2_1": bytes([1]) + good[1:],
        "tile_log2_16": bytes([16]) + good[1:],
        "lanes_0": good[:1] + b"\0\0" + good[3:],
        "lanes_200": good[:1] + b"\0\xc8" + good[3:],
        "state_0": good[:3] + b"\0\0\0\0" + good[7:],
        "odd_length": good + b"\0",
        "extra_words": good + b"\0\0",
        "empty": b"",
        "two_bytes": good[:2],
    }
    for cut in (3, 5, 7, 8, 9, len(good) // 2, len(good) - 2):
        cases[f"cut_{cut}"] = good[:cut]
    files = [(f"entropy_{name}", _entropy_file(p, 16, 30, 20)) for name, p in cases.items()]
    # more steps than 190 (spec §7.2), too few lanes (spec §7.1), a k = 1 payload
    files.append(("entropy_1x65536_tile15", _entropy_file(
        bytes([15, 0, 64]) + bytes([0, 1, 0, 0]) * 64, 2, 1, 65536)))
    files.append(("entropy_100x100_tile7", _entropy_file(
        bytes([7, 0, 9]) + bytes([0, 1, 0, 0]) * 9, 2, 100, 100)))
    files.append(("entropy_100x100_lanes_8", _entropy_file(
        bytes([6, 0, 8]) + bytes([0, 1, 0, 0]) * 8, 2, 100, 100)))
    files.append(("entropy_k1_not_empty", _entropy_file(b"\0", 1, 3, 3)))
    # correctly coded payloads that break only a bound of spec §7.1-§7.2
    image = _labels(100, 100, 7, seed=5)
    for name, tile_log2, lanes in (("tile7_298_steps", 7, 9), ("lanes_8_of_9", 6, 8),
                                   ("tile4_lanes_9", 4, 9)):
        files.append((f"entropy_valid_{name}", _entropy_file(
            _entropy_payload(image, 7, tile_log2, lanes), 7, 100, 100)))
    # a literal that decodes to index 7 >= k = 5 (tests/test_coding_entropy.py)
    from kpal.coding import _rans

    states, words = _rans.encode(np.array([2048, 819, 1, 1]),
                                 np.array([False, True, True, True]), [1, 0, 1, 1, 1], 1)
    payload = bytes([6, 0, 1]) + states.astype(">u4").tobytes() + words.astype(">u2").tobytes()
    files.append(("entropy_index_7_k5", _entropy_file(payload, 5, 1, 1)))
    return files


def _entropy_payload(labels: np.ndarray, k: int, tile_log2: int, lanes: int) -> bytes:
    """An entropy payload coded with any tile size and lane count, bounds unchecked."""
    entropy = codings.get("entropy")
    module = __import__(entropy.encode.__module__, fromlist=["_check_layout"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "TILE_LOG2", tile_log2)
        patch.setattr(module, "_n_lanes", lambda n_pixels: lanes)
        patch.setattr(module, "_check_layout", lambda *args: None)
        return entropy.encode(labels, k)


def _patched_headers() -> list[tuple[str, bytes]]:
    """The patched fields of tests/test_corrupt.py, and every field at its limits."""
    files = []
    for base in ("k5_7x3", "k256_16x16", "radix_k3_7x5", "entropy_k5_11x7", "rgba_k4_5x3",
                 "icc_k5_7x3"):
        data = (GOLDEN / f"{base}.kpal").read_bytes()
        for field, (_, fmt) in FIELDS.items():
            limits = {">B": [0, 1, 2, 3, 4, 7, 8, 9, 255], ">H": [0, 1, 4, 255, 256, 257, 65535],
                      ">I": [0, 1, 7, 8, 9, 255, 65536, (1 << 24) - 1, 1 << 24, 1 << 30,
                             0xFFFFFFFF]}[fmt]
            for value in limits:
                files.append((f"{base}_{field}_{value}",
                              with_checksum(patch_field(data, field, value))))
    files.append(("sides_over_2p30", with_checksum(_header(0, 1, 65536, 16385, 0)
                                                   + b"\0\0\0" + bytes(4))))
    for k, payload_length in ((16, 536870880), (16, 0), (2, 134217720)):
        files.append((f"huge_header_k{k}_{payload_length}", with_checksum(
            _header(0, k, 16777215, 64, payload_length) + bytes(3 * k) + bytes(4))))
    files.append(("bomb_k1_2p30", with_checksum(_header(0, 1, 16384, 65536, 0) + b"\1\2\3"
                                                + bytes(4))))
    files.append(("not_kpal", b"GIF89a" + bytes(40)))
    # radix k = 3 (m = 29, w = 46) and k = 100 (m = 3, w = 20): every group at its
    # largest value, 2**w - 1 >= k**m, in the full groups and in the short one
    for name in ("radix_k3_7x5", "radix_k100_9x4"):
        data = (GOLDEN / f"{name}.kpal").read_bytes()
        header = container.read_header(data)
        start = container.HEADER_SIZE + 3 * header.k
        n_bits = codings.get("radix").payload_size(header.k, header.width, header.height) * 8
        radix_bits = __import__("kpal.coding.radix", fromlist=["payload_bits"]).payload_bits(
            header.k, header.width * header.height)
        ones = ((1 << radix_bits) - 1) << (n_bits - radix_bits)
        payload = ones.to_bytes(n_bits // 8, "big")
        body = data[:start] + payload + data[start + len(payload):]
        files.append((f"{name}_all_ones", with_checksum(body)))
        for group_start in (0, len(payload) - 1):  # only the first or only the last byte
            mixed = bytearray(data[start : start + len(payload)])
            mixed[group_start] = payload[group_start]
            files.append((f"{name}_ones_at_{group_start}",
                          with_checksum(data[:start] + bytes(mixed) + data[start + len(payload):])))
    return files


def _radix_file() -> bytes:
    return _write(_labels(7, 3, 5, seed=3), np.arange(15, dtype=np.uint8).reshape(5, 3), "radix")


def _truncations_and_flips() -> list[tuple[str, bytes]]:
    files = []
    small = [p for p in sorted(GOLDEN.glob("*.kpal")) if p.stat().st_size < 200]
    for path in small:
        data = path.read_bytes()
        files += [(f"{path.stem}_cut_{cut}", data[:cut]) for cut in range(len(data))]
    for name, data in (("k256_16x16", (GOLDEN / "k256_16x16.kpal").read_bytes()),
                       ("radix", _radix_file())):
        files += [(f"{name}_cut_{cut}", data[:cut]) for cut in range(26, len(data))]
    flips = [(p.stem, p.read_bytes()) for p in sorted(GOLDEN.glob("*.kpal"))
             if p.stem in ("k5_7x3", "k17_5x5", "k1_4x3", "entropy_k5_11x7", "radix_k3_7x5",
                           "radix_k100_9x4", "rgba_k4_5x3", "rgba_key_k3_4x2")]
    for name, data in [*flips, ("radix", _radix_file())]:
        for bit in range(8 * len(data)):
            flipped = bytearray(data)
            flipped[bit // 8] ^= 0x80 >> (bit % 8)
            files.append((f"{name}_flip_{bit}", bytes(flipped)))
            if bit >= 8 * container.HEADER_SIZE:  # past the header: reach the payload too
                files.append((f"{name}_flip_{bit}_crc", with_checksum(bytes(flipped))))
    return files


def _mutated() -> list[tuple[str, bytes]]:
    rng = random.Random(20261129)
    corpus = seed_corpus()
    return [(f"mutated_{i}", mutate(rng.choice(corpus), rng)[0]) for i in range(N_MUTATED)]


def build_cases(folder: Path) -> dict[str, int]:
    """Write every case with the Python reader's verdict into ``folder``.

    ``cases.bin`` holds the files back to back, ``indices.bin`` the decoded indices of
    the accepted ones, and ``manifest.json`` one entry per file: ``name``, ``group``,
    ``offset`` and ``length`` in cases.bin, ``expect`` ("ok" or the error class name)
    and, when accepted, ``width``, ``height``, ``palette`` (hex) and ``indices`` (offset
    in indices.bin).

    Returns
    -------
    dict
        Number of files per verdict.
    """
    groups = {
        "matrix": _matrix(),
        "golden": [(p.stem, p.read_bytes()) for p in sorted(GOLDEN.glob("*.kpal"))],
        "regression": [(p.stem, p.read_bytes()) for p in sorted(CORRUPT.glob("*.kpal"))],
        "entropy": _hostile_entropy(),
        "header": _patched_headers(),
        "cut_flip": _truncations_and_flips(),
        "mutated": _mutated(),
    }
    manifest, tally = [], {}
    with open(folder / "cases.bin", "wb") as cases, open(folder / "indices.bin", "wb") as out:
        for group, files in groups.items():
            for name, data in files:
                expect, decoded = _verdict(data)
                tally[expect] = tally.get(expect, 0) + 1
                entry = {"name": name, "group": group, "offset": cases.tell(),
                         "length": len(data), "expect": expect}
                cases.write(data)
                if decoded is not None:
                    palette, labels = decoded
                    entry.update(width=labels.shape[1], height=labels.shape[0],
                                 palette=palette.tobytes().hex(), indices=out.tell())
                    out.write(labels.tobytes())
                manifest.append(entry)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return tally


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    folder = tmp_path_factory.mktemp("kpal-js-cases")
    with pytest.MonkeyPatch.context() as patch:
        # The compiled entropy path at every size (the two paths give identical verdicts,
        # tests/test_coding_entropy_fast.py): some 12,000 decodes take seconds, not a minute.
        patch.setenv("KPAL_PURE_NUMPY", "0")
        return folder, build_cases(folder)


# ------------------------------------------------------------------ node
def test_cases_cover_every_verdict(cases):
    """The case set itself: both accepted files and every kind of rejection."""
    _, tally = cases
    assert set(tally) == {"ok", "FormatError", "ChecksumError", "LimitError", "TruncatedError",
                          "DecompressionBombError"}
    assert tally["ok"] >= len(MATRIX_K) * len(MATRIX_SIZES) * 3 + 3


def _node_tests() -> list[str]:
    """The test files by name: Node 21+ no longer searches a directory given to --test."""
    return sorted(str(p.relative_to(JS)) for p in (JS / "test").glob("*.test.mjs"))


def test_node_decoder_agrees_with_the_python_reader(request):
    _need(NODE, "node")
    folder, _ = request.getfixturevalue("cases")
    env = {**os.environ, "KPAL_JS_CASES": str(folder)}
    command = [NODE, "--test", "--test-reporter=tap", *_node_tests()]
    result = subprocess.run(command, cwd=JS, env=env, capture_output=True, text=True,
                            timeout=900, check=False)
    summary = [line for line in result.stdout.splitlines() if line.startswith("# ")]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "# fail 0" in summary and "# skipped 0" in summary, summary


def test_node_rejects_coding_3_by_name_after_the_checksum(tmp_path):
    """A reader without coding 3 names it (spec §12), and a bad checksum still comes first."""
    _need(NODE, "node")
    good = (GOLDEN / "context_k5_11x7.kpal").read_bytes()
    bad_crc = good[:-1] + bytes([good[-1] ^ 1])
    script = ("import * as kpal from './kpal.js'; import { readFileSync } from 'node:fs';"
              "for (const f of process.argv.slice(1)) {"
              " try { kpal.decode(readFileSync(f)); console.log('ok'); }"
              " catch (e) { console.log(e.name + ': ' + e.message); } }")
    paths = [tmp_path / "context_good.kpal", tmp_path / "context_bad_crc.kpal"]
    for path, data in zip(paths, (good, bad_crc), strict=True):
        path.write_bytes(data)
    result = subprocess.run([NODE, "--input-type=module", "-e", script, *map(str, paths)],
                            cwd=JS, capture_output=True, text=True, timeout=60, check=True)
    first, second = result.stdout.splitlines()
    assert first.startswith(f"FormatError: {CONTEXT_UNSUPPORTED}")
    assert second.startswith("ChecksumError")


def test_deno_runs_the_same_tests_unchanged(request):
    """The module and the tests need nothing Node-specific (optional: skipped without deno)."""
    if DENO is None:
        pytest.skip("deno not found (npm install -g deno)")
    folder, _ = request.getfixturevalue("cases")
    env = {**os.environ, "KPAL_JS_CASES": str(folder), "NO_COLOR": "1"}
    result = subprocess.run([DENO, "test", "--allow-read", "--allow-env", "test/"], cwd=JS,
                            env=env, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    summary = [line for line in result.stdout.splitlines() if line.startswith("ok |")]
    # e.g. "ok | 28 passed (117 steps) | 0 failed (4s)": nothing ignored, the cases ran
    assert summary and "| 0 failed" in summary[-1] and "ignored" not in summary[-1], summary


def test_node_tests_run_without_the_cases():
    """The golden and unit tests of js/test/ pass on their own, as ``npm test`` runs them."""
    _need(NODE, "node")
    env = {k: v for k, v in os.environ.items() if k != "KPAL_JS_CASES"}
    result = subprocess.run([NODE, "--test", "--test-reporter=tap"], cwd=JS, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    counts = dict(line[2:].split(" ", 1) for line in result.stdout.splitlines()
                  if line.startswith(("# pass ", "# fail ", "# skipped ")))
    # every file found; only the Python-written cases skipped (KPAL_JS_CASES unset)
    assert int(counts["pass"]) >= 25 and counts["fail"] == "0" and counts["skipped"] == "1"


# ------------------------------------------------------------------ viewer page
def test_viewer_html_is_up_to_date_with_its_sources():
    """js/viewer.html inlines viewer.css, kpal.js and viewer.js (python -m kpal.view
    --update-viewer); a stale copy would show old code from file://."""
    from kpal import view

    assert view.update_viewer(check=True), "run: python -m kpal.view --update-viewer"


def test_to_html_inlines_everything_and_the_file(tmp_path):
    from kpal import view

    data = (GOLDEN / "k5_7x3.kpal").read_bytes()
    page = view.to_html(GOLDEN / "k5_7x3.kpal")
    assert 'data-name="k5_7x3.kpal"' in page
    assert base64_in(page) == data
    # nothing is fetched: no src= or href= attribute anywhere
    assert " src=" not in page and " href=" not in page
    assert "data:text/javascript;base64," in page
    with pytest.raises(KpalError, match="not a .kpal file"):
        view.to_html(b"GIF89a" + bytes(40))
    out = view.view(GOLDEN / "k5_7x3.kpal", open_browser=False, output=tmp_path / "page.html")
    assert out == tmp_path / "page.html" and out.read_text(encoding="utf-8") == page


def test_view_writes_the_page_and_opens_it_in_the_browser(tmp_path, monkeypatch):
    from kpal import view

    opened = []
    monkeypatch.setattr(view.webbrowser, "open", lambda url: opened.append(url) or True)
    page = view.view(GOLDEN / "k17_5x5.kpal")  # default: a new temporary folder
    try:
        assert page.name == "k17_5x5.html" and page.parent.name.startswith("kpal-view-")
        assert opened == [page.resolve().as_uri()]
        assert base64_in(page.read_text(encoding="utf-8")) == (
            GOLDEN / "k17_5x5.kpal").read_bytes()
    finally:
        shutil.rmtree(page.parent)
    (tmp_path / "old.html").write_text("old")
    assert view.view(GOLDEN / "k17_5x5.kpal", open_browser=False,
                     output=tmp_path / "old.html").read_text(encoding="utf-8").startswith(
                         "<!doctype html>")
    assert len(opened) == 1


def test_view_without_a_browser_says_where_the_page_is(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from kpal import view
    from kpal.cli import cli

    monkeypatch.setattr(view.webbrowser, "open", lambda url: False)  # none could be started
    page = tmp_path / "page.html"
    result = CliRunner().invoke(cli, ["view", str(GOLDEN / "k17_5x5.kpal"), "-o", str(page)])
    assert result.exit_code == 0, result.output
    assert f"kpal: warning: no web browser could be started: open {page} yourself" \
        in result.stderr
    assert result.stdout.strip() == str(page) and page.exists()


def test_update_viewer_rewrites_a_stale_region(tmp_path, monkeypatch):
    from kpal import view

    for name in ("viewer.html", "viewer.css", "viewer.js", "kpal.js"):
        shutil.copyfile(JS / name, tmp_path / name)
    monkeypatch.setattr(view, "JS_DIR", tmp_path)
    stale = (tmp_path / "viewer.js").read_text(encoding="utf-8") + "// changed\n"
    (tmp_path / "viewer.js").write_text(stale, encoding="utf-8")
    assert not view.update_viewer(check=True)
    assert "// changed" not in (tmp_path / "viewer.html").read_text(encoding="utf-8")
    assert not view.update_viewer()
    assert "// changed" in (tmp_path / "viewer.html").read_text(encoding="utf-8")
    assert view.update_viewer(check=True)


def _drop(page, name: str, data: bytes) -> None:
    """Drop a file named ``name`` holding ``data`` on the page, as from a file manager."""
    page.evaluate("""([name, bytes]) => {
      const transfer = new DataTransfer();
      transfer.items.add(new File([new Uint8Array(bytes)], name));
      document.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer}));
    }""", [name, list(data)])


def _info_text(path: Path) -> str:
    from click.testing import CliRunner

    from kpal.cli import cli

    return CliRunner().invoke(cli, ["info", str(path)]).output


def base64_in(page: str) -> bytes:
    """The file bytes a page carries (``<script id="kpal-embedded">``)."""
    import base64
    import re

    body = re.search(r'id="kpal-embedded"[^>]*>\n(.*?)\n</script>', page, re.S).group(1)
    return base64.b64decode(body.replace("\n", ""))


def _expected_rgba(palette: np.ndarray, labels: np.ndarray) -> bytes:
    rgb = palette[labels]
    alpha = np.full(labels.shape + (1,), 255, np.uint8)
    return np.concatenate([rgb, alpha], axis=2).tobytes()


_CANVAS_BASE64 = """() => {
  const c = document.querySelector('#canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let s = '';
  for (let i = 0; i < d.length; i += 0x8000) s += String.fromCharCode(...d.subarray(i, i + 0x8000));
  return btoa(s);
}"""


def test_viewer_in_headless_chromium(tmp_path):
    """viewer.html over file://: a file set through the input is drawn pixel for pixel as
    the Python reader decodes it; a damaged file shows the reader's error message."""
    import base64

    _need(CHROMIUM, "chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(None, "playwright (pip install playwright)")
    palette, labels = _photo_labels()
    photo = tmp_path / "rocket_k64_entropy.kpal"
    photo.write_bytes(_write(labels, palette, "entropy"))
    damaged = CORRUPT / "checksum_wrong.kpal"
    with pytest.raises(KpalError) as python_error:
        codec.decode_indices(damaged.read_bytes())
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            tmp_path / "profile", executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1280, "height": 720})
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((JS / "viewer.html").as_uri())
            page.wait_for_selector("html[data-ready=true]", timeout=20000)
            page.set_input_files("#file-input", str(damaged))
            page.wait_for_selector("#error:not([hidden])")
            assert page.inner_text("#error") == (
                f"kpal: error: {damaged.name}: {python_error.value}")
            page.set_input_files("#file-input", str(photo))
            page.wait_for_function(f"document.querySelector('#canvas').width === {PHOTO_SIZE[0]}")
            drawn = base64.b64decode(page.evaluate(_CANVAS_BASE64))
            assert drawn == _expected_rgba(palette, labels)
            info = page.inner_text("#info")
            assert "768×512 = 393,216 pixels" in info and "entropy" in info
            assert "checksum\tok" in info
            # the parts add up as kpal info adds them
            python_on_disk = next(line for line in _info_text(photo).splitlines()
                                  if line.strip().startswith("on disk"))
            assert "on disk\t" + python_on_disk.split("on disk", 1)[1].strip() in info
            assert page.locator("#palette .swatch").count() == PHOTO_K
            # zoom: nearest-neighbour pixels, one step up doubles the displayed size
            assert page.evaluate("getComputedStyle(document.querySelector('#canvas'))"
                                 ".imageRendering") == "pixelated"
            page.click("#zoom-fit")
            fit = page.evaluate("document.querySelector('#canvas').getBoundingClientRect().width")
            page.keyboard.press("+")
            zoomed = page.evaluate(
                "document.querySelector('#canvas').getBoundingClientRect().width")
            assert zoomed == 2 * fit or (fit < PHOTO_SIZE[0] and zoomed > fit), (fit, zoomed)
            page.click("#zoom-fit")
            # drag and drop: a file dropped on the page opens like one from the input
            small = (GOLDEN / "k5_7x3.kpal").read_bytes()
            _drop(page, "dropped.kpal", small)
            page.wait_for_function("document.querySelector('#canvas').width === 7")
            _, small_palette, small_labels = codec.decode_indices(small)
            assert base64.b64decode(page.evaluate(_CANVAS_BASE64)) == _expected_rgba(
                small_palette, small_labels)
            # the size rows read as `kpal info` prints them, a file larger than raw included
            tiny = (GOLDEN / "k2_9x1.kpal").read_bytes()
            _drop(page, "tiny.kpal", tiny)
            page.wait_for_function("document.querySelector('#canvas').width === 9")
            assert "ratio\t1.41× larger than raw 24-bit (the palette and header outweigh " \
                "what the indices save)" in page.inner_text("#info")
            assert "ratio\t1.41× larger" in _info_text(GOLDEN / "k2_9x1.kpal").replace(
                "ratio          ", "ratio\t")
            # wider than a browser's canvas: every second pixel drawn, and the page says so
            wide_labels = ((np.arange(40001)[None, :] // 3 + np.arange(3)[:, None]) % 3).astype(
                np.uint8)
            wide_palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
            wide = _write(wide_labels, wide_palette, "fixed")
            _drop(page, "wide.kpal", wide)
            page.wait_for_function("document.querySelector('#canvas').width === 20001")
            assert page.evaluate("document.querySelector('#canvas').height") == 2
            assert base64.b64decode(page.evaluate(_CANVAS_BASE64)) == _expected_rgba(
                wide_palette, wide_labels[::2, ::2])
            assert "drawn at 1/2 scale" in page.inner_text("#status")
            # fitted so that its short side stays visible (it was 0.02 px tall): the
            # stage scrolls along the long side instead
            shown = page.evaluate("document.querySelector('#canvas').getBoundingClientRect()"
                                  ".height")
            assert shown >= 3, shown
            # coding 3, which this reader does not decode: the error, and still the palette
            context = (GOLDEN / "context_k5_11x7.kpal").read_bytes()
            _drop(page, "context.kpal", context)
            page.wait_for_selector("#error:not([hidden])")
            # a valid file this reader cannot decode: a note, not an error, and the sizes
            # that need only the header
            assert CONTEXT_UNSUPPORTED in page.inner_text("#error")
            assert page.inner_text("#error").startswith("kpal: warning: context.kpal: ")
            assert page.get_attribute("#error", "class") == "note"
            context_info = page.inner_text("#info")
            assert "fixed width\t5×24 + 77×3 = 351 bits = 44 bytes" in context_info
            assert f"on disk\t{len(context):,} bytes" in context_info
            # 231 / 88 = 2.625 exactly: Python's format rounds the tie to even, as the page
            python_ratio = next(line for line in _info_text(GOLDEN / "context_k5_11x7.kpal")
                                .splitlines() if line.strip().startswith("ratio"))
            assert "2.62× smaller" in python_ratio
            assert "ratio\t" + python_ratio.split("ratio", 1)[1].strip() in context_info
            _, context_palette, _ = codec.decode_indices(context)
            assert [page.locator("#palette .swatch").nth(i).get_attribute("title")
                    for i in range(5)] == [f"{i}: #{bytes(c).hex()}"
                                           for i, c in enumerate(context_palette)]
            # a profile the page does not apply: it says so
            _drop(page, "profile.kpal", (GOLDEN / "icc_k5_7x3.kpal").read_bytes())
            page.wait_for_function("document.querySelector('#canvas').width === 7")
            assert "ICC profile; not applied here: colours shown as sRGB" in page.inner_text(
                "#info")
            assert "its ICC profile is not applied" in page.inner_text("#status")
            assert "(the palette, header and metadata outweigh what the indices save)" in \
                page.inner_text("#info")  # as kpal info says it of a file with a profile
            assert "(the palette, header and metadata outweigh what the indices save)" in \
                _info_text(GOLDEN / "icc_k5_7x3.kpal")
            # a coding 3 file with a profile: its metadata is shown beside its header
            with Image.open(GOLDEN / "icc_k5_7x3.kpal") as profiled, \
                    warnings.catch_warnings():
                warnings.simplefilter("ignore", kpal.KpalWarning)  # 5 colours: lossless
                context_icc = kpal.encode(profiled.convert("RGB"), 5, coding="context",
                                          icc_profile=profiled.info["icc_profile"])
            _drop(page, "context-icc.kpal", context_icc)
            page.wait_for_function("document.querySelector('#files .file.current')"
                                   ".textContent === 'context-icc.kpal'")
            assert "metadata\ticcp 588 bytes (ICC profile; not applied here" in page.inner_text(
                "#info")
            page.locator("#files .file", has_text=photo.name).click()
            page.wait_for_function(f"document.querySelector('#canvas').width === {PHOTO_SIZE[0]}")
            shot = tmp_path / "viewer.png"
            assert page.locator("#files .file").count() == 8
            page.screenshot(path=shot)
            if os.environ.get("KPAL_UPDATE_SCREENSHOT"):  # docs/images/viewer.png, on request
                with Image.open(shot) as im:  # 256 colours hold the 64-colour page: 40 % size
                    im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT,
                                               dither=Image.Dither.NONE).save(
                        ROOT / "docs" / "images" / "viewer.png", optimize=True)
            # the page kpal view writes, with the file inlined, opens by itself
            from kpal import view

            single = view.view(photo, open_browser=False, output=tmp_path / "single.html")
            page.goto(single.as_uri())
            page.wait_for_function(f"document.querySelector('#canvas').width === {PHOTO_SIZE[0]}")
            assert base64.b64decode(page.evaluate(_CANVAS_BASE64)) == drawn
            # in a notebook's output: the iframe keeps the page to its box
            page.set_content(f'<p id="host">notebook text</p>{view.to_iframe(photo, height=300)}')
            frame = page.frame_locator("iframe")
            frame.locator("html[data-ready=true]").wait_for()
            assert frame.locator("#canvas").evaluate("c => c.width") == PHOTO_SIZE[0]
            assert page.evaluate("getComputedStyle(document.body).display") == "block"
            assert page.evaluate("document.querySelector('iframe').getBoundingClientRect()"
                                 ".height") == 300
            assert errors == []
        finally:
            browser.close()


def test_a_damaged_coding_3_page_shows_the_python_readers_error(tmp_path):
    """The page cannot decode coding 3; kpal view puts the error Python finds into it,
    and does not say that kpal decode reads a file it then refuses."""
    from click.testing import CliRunner

    from kpal.cli import cli

    damaged = CORRUPT / "context_order_repeats.kpal"
    with pytest.raises(KpalError) as python_error:
        codec.decode_indices(damaged.read_bytes())
    page_path = tmp_path / "ctx.html"
    result = CliRunner().invoke(cli, ["view", str(damaged), "--no-open", "-o", str(page_path)])
    assert result.exit_code == 1
    assert "kpal decode reads it" not in result.stderr
    assert result.stderr.strip().endswith(f"{damaged.name}: {python_error.value}")
    valid = view.to_html(GOLDEN / "context_k5_11x7.kpal")
    assert "data-problem" not in valid
    error, _ = _shown_error(page_path, tmp_path)
    assert error == f"kpal: error: {damaged.name}: {python_error.value}"


def _shown_error(page_path, tmp_path) -> tuple[str, str]:
    """The error and the info panel a page shows in headless Chromium."""
    _need(CHROMIUM, "chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(None, "playwright (pip install playwright)")
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            tmp_path / "profile", executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(page_path.as_uri())
            page.wait_for_selector("#error:not([hidden])", timeout=20000)
            return page.inner_text("#error"), page.inner_text("#info")
        finally:
            browser.close()


def test_a_long_files_page_holds_its_start_and_says_its_length(tmp_path):
    """A file gigabytes longer than its header implies: the page holds its first bytes
    and one more, and shows the length and the error kpal info gives."""
    data = (GOLDEN / "k5_7x3.kpal").read_bytes()
    sparse = tmp_path / "long.kpal"
    with open(sparse, "wb") as f:
        f.write(data)
        f.truncate(1 << 31)
    page_path = tmp_path / "long.html"
    page_path.write_text(view.to_html(sparse), encoding="utf-8")
    assert page_path.stat().st_size < 200_000  # the viewer, and 43 bytes of the file
    error, info = _shown_error(page_path, tmp_path)
    assert error == (f"kpal: error: long.kpal: file has trailing data: {1 << 31} bytes, "
                     f"the header implies {len(data)}")
    assert f"on disk\t{1 << 31:,} bytes" in info
