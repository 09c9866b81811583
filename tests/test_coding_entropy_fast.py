"""Compiled entropy coding (``kpal[fast]``) against the pure-numpy path: same bytes, same errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kpal.coding
from kpal.coding import _rans, entropy
from kpal.errors import FormatError

from .test_coding_entropy import blocky

pytest.importorskip("numba")


@pytest.fixture
def numpy_only(monkeypatch):
    """Run a callable with the compiled path switched off."""

    def run(fn, *args):
        with monkeypatch.context() as patch:
            patch.setenv("KPAL_PURE_NUMPY", "1")
            return fn(*args)

    return run


@pytest.fixture(autouse=True)
def compiled_by_default(monkeypatch):
    # "0" forces the compiled path even on the small images of these tests.
    monkeypatch.setenv("KPAL_PURE_NUMPY", "0")


def outcome(payload: bytes, k: int, width: int, height: int) -> object:
    """Decoded labels, or the FormatError message."""
    try:
        return entropy.decode(payload, k, width, height)
    except FormatError as error:
        return f"FormatError: {error}"


def assert_same_outcome(a: object, b: object) -> None:
    if isinstance(a, str) or isinstance(b, str):
        assert a == b
    else:
        np.testing.assert_array_equal(a, b)


def check_identical(labels: np.ndarray, k: int, numpy_only) -> bytes:
    height, width = labels.shape
    compiled = entropy.encode(labels, k)
    assert compiled == numpy_only(entropy.encode, labels, k)
    np.testing.assert_array_equal(entropy.decode(compiled, k, width, height), labels)
    np.testing.assert_array_equal(numpy_only(entropy.decode, compiled, k, width, height), labels)
    return compiled


def test_dispatch_follows_the_environment_and_size(monkeypatch):
    assert entropy._compiled(1) is not None
    monkeypatch.setenv("KPAL_PURE_NUMPY", "1")
    assert entropy._compiled(1 << 24) is None
    monkeypatch.delenv("KPAL_PURE_NUMPY")
    assert entropy._compiled(entropy.COMPILED_MIN_PIXELS - 1) is None
    assert entropy._compiled(entropy.COMPILED_MIN_PIXELS) is not None


def test_missing_numba_falls_back_to_numpy(monkeypatch):
    # a base install without the `fast` extra: importing numba fails
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.delitem(sys.modules, "kpal.coding._entropy_fast", raising=False)
    monkeypatch.delattr(kpal.coding, "_entropy_fast", raising=False)
    assert entropy._compiled(1 << 24) is None
    labels = blocky(16, 9, 11, seed=1)
    payload = entropy.encode(labels, 16)
    np.testing.assert_array_equal(entropy.decode(payload, 16, 11, 9), labels)


def test_spec_worked_example_compiled():
    payload = entropy.encode(np.array([[2, 2]], np.uint8), 3)
    assert payload == bytes.fromhex("06 00 01 00 18 54 81")
    np.testing.assert_array_equal(entropy.decode(payload, 3, 2, 1), [[2, 2]])


#: every literal width b = 1..8, both sides of each power of two, and a stride
#: through the rest (test_coding_entropy round-trips every k on the default path)
MANY_K = sorted({*range(2, 257, 5), *(p + d for p in (4, 8, 16, 32, 64, 128) for d in (-1, 0, 1)),
                 255, 256})


@pytest.mark.parametrize("k", MANY_K)
def test_identical_for_many_k(k, numpy_only):
    labels = blocky(k, 6, 7, seed=k, noise=0.4)
    labels[0, 0] = k - 1
    check_identical(labels, k, numpy_only)


@pytest.mark.parametrize(
    ("height", "width"),
    [(1, 1), (1, 70), (70, 1), (2, 3), (64, 64), (65, 129)],
)
@pytest.mark.parametrize("k", [2, 17, 256])
def test_identical_odd_shapes_and_partial_tiles(k, height, width, numpy_only):
    check_identical(blocky(k, height, width, seed=height + 7 * width), k, numpy_only)


@pytest.mark.parametrize("tile_log2", [2, 3, 5])
@pytest.mark.parametrize("pixels_per_lane", [1, 13, 1024])
def test_identical_small_tiles_and_many_lanes(monkeypatch, numpy_only, tile_log2,
                                              pixels_per_lane):
    monkeypatch.setattr(entropy, "TILE_LOG2", tile_log2)
    monkeypatch.setattr(entropy, "_PIXELS_PER_LANE", pixels_per_lane)
    payload = check_identical(blocky(37, 41, 53, seed=tile_log2), 37, numpy_only)
    assert payload[0] == tile_log2


def test_identical_on_a_larger_image_with_words(numpy_only):
    # enough pixels for many lanes and renormalization words, halved flag counts
    labels = blocky(64, 150, 230, seed=9, noise=0.1)
    payload = check_identical(labels, 64, numpy_only)
    assert len(payload) > 3 + 4 * int.from_bytes(payload[1:3], "big")


def test_flat_image_halves_flag_counts(numpy_only):
    # a single colour drives one pattern's counts past the 8192 limit many times
    check_identical(np.full((200, 300), 3, np.uint8), 4, numpy_only)


def test_tile_larger_than_image_is_clamped_the_same_way(numpy_only):
    labels = blocky(9, 5, 6, seed=2)
    data = bytearray(entropy.encode(labels, 9))
    data[0] = 15  # 32768-pixel tiles on a 6x5 image decode as 8x8 tiles
    for decode in (entropy.decode, lambda *a: numpy_only(entropy.decode, *a)):
        np.testing.assert_array_equal(decode(bytes(data), 9, 6, 5), labels)


@pytest.fixture(scope="module")
def sample():
    labels = blocky(16, 20, 30, seed=11)
    return labels, entropy.encode(labels, 16)


def test_truncation_gives_the_same_error(sample, numpy_only):
    _, payload = sample
    # every header byte, then every 5th byte of the states and words
    for cut in [*range(8), *range(8, len(payload), 5)]:
        compiled = outcome(payload[:cut], 16, 30, 20)
        assert isinstance(compiled, str)
        assert compiled == numpy_only(outcome, payload[:cut], 16, 30, 20)
    truncated = outcome(payload[:-2], 16, 30, 20)
    assert truncated == "FormatError: entropy payload is truncated: the coder ran out of words"


def test_bit_flips_give_the_same_outcome(numpy_only):
    labels = blocky(16, 6, 8, seed=5)
    payload = entropy.encode(labels, 16)
    messages = set()
    for bit in range(0, len(payload) * 8, 2):
        data = bytearray(payload)
        data[bit // 8] ^= 0x80 >> (bit % 8)
        compiled = outcome(bytes(data), 16, 8, 6)
        assert_same_outcome(compiled, numpy_only(outcome, bytes(data), 16, 8, 6))
        if isinstance(compiled, str):
            messages.add(compiled.split(":")[1])
    assert len(messages) >= 2  # more than one kind of corruption was met


def test_extra_words_give_the_same_error(sample, numpy_only):
    _, payload = sample
    compiled = outcome(payload + b"\0\0", 16, 30, 20)
    assert compiled == numpy_only(outcome, payload + b"\0\0", 16, 30, 20)
    assert "1 unread words" in compiled


def test_index_at_least_k_is_rejected_compiled(numpy_only):
    # the hand-coded 1x1 image of test_coding_entropy: literal leaf 7 with k = 5
    probs = np.array([2048, 819, 1, 1], dtype=np.int64)
    states, words = _rans.encode(probs, np.array([False, True, True, True]), [1, 0, 1, 1, 1], 1)
    payload = (bytes([6, 0, 1]) + states.astype(">u4").tobytes()
               + words.astype(">u2").tobytes())
    with pytest.raises(FormatError, match="index 7 >= k=5"):
        entropy.decode(payload, 5, 1, 1)
    assert outcome(payload, 5, 1, 1) == numpy_only(outcome, payload, 5, 1, 1)


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(2, 256),
    height=st.integers(1, 20),
    width=st.integers(1, 20),
    seed=st.integers(0, 2**32 - 1),
    noise=st.floats(0, 1),
)
def test_property_identical(k, height, width, seed, noise):
    labels = blocky(k, height, width, seed=seed, noise=noise)
    compiled = entropy.encode(labels, k)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KPAL_PURE_NUMPY", "1")
        assert entropy.encode(labels, k) == compiled
    np.testing.assert_array_equal(entropy.decode(compiled, k, width, height), labels)
