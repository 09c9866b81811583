"""Hostile entropy payloads (spec/kpal.md §7): decoded or rejected in time and memory bounded by
their pixels, on the numpy and the compiled path.

The crafted files are checksum-valid and follow every rule of the format before
the step and lane bounds: tiny files that took minutes (up to 40 minutes) or
hundreds of megabytes to decode.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from kpal import codec
from kpal.coding import entropy
from kpal.errors import FormatError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_entropy_bounds import (  # noqa: E402
    constant_payload,
    encoded_payload,
    random_labels,
    step_pixel_counts,
    wrap,
)

#: A decode or a rejection must take less than this; the old decoder took 28 s
#: to 40 min on these files (the new one takes milliseconds to a second).
BOUND_SECONDS = 15.0


@pytest.fixture(params=["numpy", "compiled"])
def path(request, monkeypatch):
    """Run the test on one decode path (``KPAL_PURE_NUMPY`` forces it)."""
    if request.param == "compiled":
        pytest.importorskip("numba")
    monkeypatch.setenv("KPAL_PURE_NUMPY", "0" if request.param == "compiled" else "1")
    return request.param


def default_lanes(n_pixels: int) -> int:
    """The lane count of the reference encoder (spec §7.6, informative)."""
    return min(4096, max(1, n_pixels // 1024))


def timed_decode(data: bytes) -> tuple[object, float]:
    """The decoded indices or the FormatError, and the seconds it took."""
    start = time.perf_counter()
    try:
        outcome: object = codec.decode_indices(data)[2]
    except FormatError as error:
        outcome = error
    return outcome, time.perf_counter() - start


# ------------------------------------------------------------------ the bounds themselves
def test_bounds_follow_the_spec():
    assert entropy.MAX_STEPS == entropy.n_steps(64, 64, 6) == 190
    assert entropy.n_steps(1, 65536, 15) == 65535
    assert entropy.n_steps(5, 5, 15) == 13
    assert [entropy.min_lanes(n) for n in (1, 2047, 2048, 1 << 22, 1 << 30)] == [
        1, 1, 2, 4096, 4096]


def test_constant_payload_is_what_the_encoder_writes():
    # the hand-built payloads below follow the spec exactly: the same bytes as
    # the encoder wherever both can write them (incl. halving after empty steps)
    for width, height in [(1, 9000), (9000, 1), (70, 130), (5, 5), (300, 200)]:
        for tile_log2 in (2, 4, 6):
            labels = np.zeros((height, width), np.uint8)
            expected = encoded_payload(labels, 2, tile_log2)
            lanes = default_lanes(width * height)
            assert constant_payload(width, height, tile_log2, lanes) == expected


def test_step_pixel_counts_cover_every_pixel():
    for width, height, tile_log2 in [(1, 70, 3), (70, 1, 3), (13, 9, 2), (200, 130, 6)]:
        counts = step_pixel_counts(width, height, tile_log2)
        tile = 1 << tile_log2
        assert len(counts) == 2 * (min(tile, height) - 1) + min(tile, width)
        assert sum(counts) == width * height


# ------------------------------------------------------------------ rejected files
@functools.cache
def crafted(width: int, height: int, tile_log2: int, lanes: int) -> bytes:
    return wrap(constant_payload(width, height, tile_log2, lanes), 2, width, height)


REJECTED = [
    # (width, height, tile_log2, lanes, message); old decode times in the comments
    (1, 65536, 15, 1, "tile_log2=15 gives 65535 wavefront steps on a 1x65536 image, "
                      "more than 190"),  # 45 bytes, 78 s
    (65536, 1, 15, 1, "tile_log2=15 gives 32768 wavefront steps on a 65536x1 image"),
    (1, 1048575, 15, 1, "tile_log2=15 gives 65535 wavefront steps on a 1x1048575 image"),
    # 16 KB, over 120 s even compiled
    (1, 16777215, 15, 4096, "tile_log2=15 gives 65535 wavefront steps on a 1x16777215"),
    # 121 bytes, 28 s: one lane decodes one decision per numpy round
    (1023, 1024, 6, 1, r"lanes=1 must be at least 1023 for 1047552 pixels \(one per 1024, "
                       r"at most 4096\)"),
    (2048, 1, 6, 1, "lanes=1 must be at least 2 for 2048 pixels"),
    (128, 33, 7, 4, "tile_log2=7 gives 192 wavefront steps on a 128x33 image, more than 190"),
]


@pytest.mark.parametrize(("width", "height", "tile_log2", "lanes", "message"), REJECTED)
def test_crafted_file_is_rejected_at_once(path, width, height, tile_log2, lanes, message):
    data = crafted(width, height, tile_log2, lanes)
    assert len(data) < 17_000
    outcome, seconds = timed_decode(data)
    assert isinstance(outcome, FormatError)
    assert pytest.raises(FormatError, codec.decode_indices, data).match(message)
    assert seconds < BOUND_SECONDS


@pytest.mark.parametrize(("width", "height", "tile_log2", "lanes"), [
    (128, 32, 7, 4),  # exactly 190 steps
    (2048, 1, 6, 2),  # exactly the fewest lanes
    (5, 5, 15, 1),  # a huge tile on a tiny image: 13 steps
    (1, 300, 6, 300),  # more lanes than the minimum are fine
])
def test_files_at_the_bounds_decode(path, width, height, tile_log2, lanes):
    outcome, _ = timed_decode(crafted(width, height, tile_log2, lanes))
    np.testing.assert_array_equal(outcome, np.zeros((height, width), np.uint8))


def test_encoder_never_writes_a_file_the_decoder_rejects(monkeypatch):
    monkeypatch.setattr(entropy, "TILE_LOG2", 7)
    with pytest.raises(ValueError, match="tile_log2=7 gives 326 wavefront steps on a 200x100"):
        entropy.encode(np.zeros((100, 200), np.uint8), 2)
    small = np.arange(120, dtype=np.uint8).reshape(3, 40) % 5
    payload = entropy.encode(small, 5)  # 44 steps: allowed
    np.testing.assert_array_equal(entropy.decode(payload, 5, 40, 3), small)
    monkeypatch.setattr(entropy, "TILE_LOG2", 6)
    monkeypatch.setattr(entropy, "_PIXELS_PER_LANE", 1 << 20)
    with pytest.raises(ValueError, match="lanes=1 must be at least 4"):
        entropy.encode(np.zeros((64, 64), np.uint8), 2)


# ------------------------------------------------------------------ valid but thin or small-tiled
@pytest.mark.parametrize(("width", "height"), [(1, 1 << 20), (1 << 20, 1), (3, 1 << 18)])
def test_thin_image_costs_what_a_square_one_costs(path, width, height):
    # A 1-pixel-wide image in 64x64 tiles: the old decoder walked all 32 rows
    # of every tile's step for one pixel (1.9 s against 0.12 s for 1024x1024).
    thin = crafted(width, height, 6, default_lanes(width * height))
    square = crafted(1024, 1024, 6, default_lanes(1 << 20))
    times = {}
    for name, data in (("thin", thin), ("square", square)):
        runs = []
        for _ in range(3):
            start = time.process_time()
            codec.decode_indices(data)
            runs.append(time.process_time() - start)
        times[name] = min(runs)
    assert times["thin"] < 3 * times["square"] + 0.05, times


def test_thin_random_image_round_trips(path):
    labels = random_labels(40000, 1, 256, seed=3)
    data = wrap(entropy.encode(labels, 256), 256, 1, 40000)
    outcome, seconds = timed_decode(data)
    np.testing.assert_array_equal(outcome, labels)
    assert seconds < BOUND_SECONDS


def test_tile_log2_2_decodes_in_memory_near_its_pixels(monkeypatch):
    # random 4096x4096 at tile_log2 = 2 peaked at 713 MB (42 bytes per pixel);
    # 1024x1024 here peaked at 25 MB before, now at about 3-5 bytes per pixel
    # (the labels, a step of an eighth of the image, and bounded chunks)
    monkeypatch.setenv("KPAL_PURE_NUMPY", "1")
    labels = random_labels(1024, 1024, 16, seed=1)
    payload = encoded_payload(labels, 16, 2)
    tracemalloc.start()
    try:
        decoded = entropy.decode(payload, 16, 1024, 1024)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(decoded, labels)
    assert peak < 7 * labels.size, peak


_CHILD = """
import sys
import numpy as np
from kpal.coding import entropy

def status(field):  # bytes, from /proc/self/status
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

payload = open(sys.argv[1], "rb").read()
entropy.decode(entropy.encode(np.zeros((2, 2), np.uint8), 2), 2, 2, 2)  # load numba
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")  # reset the peak (VmHWM) to the current size
before = status("VmRSS")
entropy.decode(payload, 16, 2048, 2048)
print(status("VmHWM") - before)
"""


def test_tile_log2_2_compiled_memory_near_its_pixels(tmp_path, monkeypatch):
    # the compiled decoder sized its buffers by tiles * rows (49 bytes a pixel
    # at tile_log2 = 2, a sixth of them touched) and kept a 1.9-byte-per-pixel
    # ring: 37 MB here; now the labels plus about a byte per pixel (8.4 MB)
    pytest.importorskip("numba")
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc/self/clear_refs to measure a peak")
    monkeypatch.setenv("KPAL_PURE_NUMPY", "0")
    labels = random_labels(2048, 2048, 16, seed=2)
    payload_file = tmp_path / "payload"
    payload_file.write_bytes(encoded_payload(labels, 16, 2))
    grown = int(subprocess.run([sys.executable, "-c", _CHILD, str(payload_file)],
                               capture_output=True, text=True, check=True, cwd=ROOT).stdout)
    assert grown < 4 * labels.size, grown
