"""Context payload coding (coding id 3, spec §12): exact bytes, both kernels, rejection."""

from __future__ import annotations

import importlib.util
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpal.coding import _context_kernel, context, entropy, get
from kpal.errors import FormatError, KpalError

from .test_coding_entropy import blocky

#: The worked example of spec §12.7: a 2x1 image, k = 3, indices 2 2.
WORKED_PAYLOAD = bytes.fromhex("FF0C07 000102 B33789D2")


@pytest.fixture
def plain(monkeypatch):
    """The plain-Python kernel at every size (it refuses images over PLAIN_MAX_PIXELS)."""
    monkeypatch.setenv("KPAL_PURE_NUMPY", "1")


@pytest.fixture
def compiled(monkeypatch):
    """The numba kernel at every size."""
    pytest.importorskip("numba")
    monkeypatch.setenv("KPAL_PURE_NUMPY", "0")


def round_trip(labels: np.ndarray, k: int) -> bytes:
    payload = context.encode(labels, k)
    height, width = labels.shape
    decoded = context.decode(payload, k, width, height)
    assert decoded.dtype == np.uint8 and decoded.shape == labels.shape
    np.testing.assert_array_equal(decoded, labels)
    return payload


def test_registered_under_id_3_with_data_dependent_size():
    assert get(3).name == "context" and get("context").id == 3
    assert context.payload_size(16, 10, 10) is None


def test_worked_example_of_the_spec(plain):
    labels = np.array([[2, 2]], np.uint8)
    assert context.encode(labels, 3) == WORKED_PAYLOAD
    np.testing.assert_array_equal(context.decode(WORKED_PAYLOAD, 3, 2, 1), labels)


def test_squash_stretch_and_rate_tables_match_the_spec():
    squash, stretch, rate = context.tables()
    assert (squash[0], squash[2047], squash[2048], squash[4094]) == (1, 2047, 2051, 4094)
    assert np.all(np.diff(squash) >= 0)
    # stretch(p) is the smallest d with squash(d) >= p, 2047 when there is none
    for p in (0, 1, 2, 2047, 2048, 3000, 4094, 4095):
        reached = np.nonzero(squash >= p)[0]
        assert stretch[p] == (reached[0] - 2047 if reached.size else 2047)
    assert (rate[0], rate[1], rate[255]) == (43690, 26214, 255)


@pytest.mark.parametrize(("n_pixels", "bits"), [(1, 12), (4095, 12), (4096, 13), (393216, 19),
                                               (12_000_000, 20)])
def test_table_bits_follow_the_pixel_count_only(n_pixels, bits):
    assert context.table_bits(n_pixels) == bits


@pytest.mark.parametrize("k", [2, 3, 5, 16, 17, 100, 256])
@pytest.mark.parametrize(("height", "width"), [(1, 1), (1, 9), (9, 1), (7, 13)])
def test_round_trip_plain(plain, k, height, width):
    round_trip(blocky(k, height, width, seed=k + width), k)


@pytest.mark.parametrize("k", [2, 5, 16, 17, 256])
def test_plain_and_compiled_kernels_write_the_same_bytes(monkeypatch, k):
    pytest.importorskip("numba")
    labels = blocky(k, 37, 61, seed=k)
    monkeypatch.setenv("KPAL_PURE_NUMPY", "1")
    plain_bytes = context.encode(labels, k)
    monkeypatch.setenv("KPAL_PURE_NUMPY", "0")
    assert context.encode(labels, k) == plain_bytes
    np.testing.assert_array_equal(context.decode(plain_bytes, k, 61, 37), labels)


def test_compiled_round_trip_of_a_larger_image(compiled):
    labels = blocky(16, 300, 401, seed=3, noise=0.05)
    payload = round_trip(labels, 16)
    assert len(payload) < len(entropy.encode(labels, 16))  # smaller than coding 2


def test_every_pixel_equal_costs_almost_nothing(compiled):
    payload = round_trip(np.full((200, 300), 7, np.uint8), 16)
    assert len(payload) < 3 + 16 + 40


def test_k1_is_empty_and_rejects_bytes():
    assert context.encode(np.zeros((3, 4), np.uint8), 1) == b""
    np.testing.assert_array_equal(context.decode(b"", 1, 4, 3), np.zeros((3, 4), np.uint8))
    with pytest.raises(FormatError, match="must be empty for k=1, got 1 bytes"):
        context.decode(b"\0", 1, 4, 3)


def test_encoder_rejects_bad_labels():
    with pytest.raises(ValueError, match="label 5 >= k=5"):
        context.encode(np.full((2, 2), 5, np.uint8), 5)
    with pytest.raises(ValueError, match="no pixels"):
        context.encode(np.zeros((0, 3), np.uint8), 5)


def test_palette_order_is_a_path_along_the_transitions():
    # columns of colours 3 | 0 | 2 | 1: the path must keep the neighbours next to each other
    labels = np.repeat(np.array([[3, 0, 2, 1]], np.uint8), 5, axis=0).repeat(4, axis=1)
    order = context.palette_order(labels, 4)
    assert sorted(order.tolist()) == [0, 1, 2, 3]
    assert order.tolist() in ([3, 0, 2, 1], [1, 2, 0, 3])


def test_palette_order_counts_the_same_in_chunks(monkeypatch):
    labels = blocky(17, 23, 19, seed=5)
    whole = context.palette_order(labels, 17)
    monkeypatch.setattr(context, "_ROWS_PER_CHUNK", 4)
    np.testing.assert_array_equal(context.palette_order(labels, 17), whole)


def test_payload_stores_settings_and_order(plain):
    labels = blocky(5, 6, 7, seed=1)
    payload = context.encode(labels, 5)
    assert payload[:3] == bytes([context.COUNT_LIMIT, context.MIXER_SHIFT, context.APM_RATE])
    order = np.frombuffer(payload[3:8], np.uint8)
    np.testing.assert_array_equal(order, context.palette_order(labels, 5))


# ------------------------------------------------------------------ rejection (spec §12.6)
def _good() -> tuple[bytes, np.ndarray]:
    labels = blocky(5, 6, 7, seed=2)
    return context.encode(labels, 5), labels


@pytest.mark.parametrize(("offset", "value", "match"), [
    (0, 0, "count_limit=0 must be between 1 and 255"),
    (1, 7, "mixer_shift=7 must be between 8 and 20"),
    (1, 21, "mixer_shift=21 must be between 8 and 20"),
    (2, 0, "apm_rate=0 must be between 1 and 15"),
    (2, 16, "apm_rate=16 must be between 1 and 15"),
    (4, 255, r"order is not a permutation of 0\.\.4"),
])
def test_header_fields_out_of_range_are_rejected(plain, offset, value, match):
    payload = bytearray(_good()[0])
    payload[offset] = value
    with pytest.raises(FormatError, match=match):
        context.decode(bytes(payload), 5, 7, 6)


def test_repeated_order_entry_is_rejected(plain):
    payload = bytearray(_good()[0])
    payload[4] = payload[3]
    with pytest.raises(FormatError, match="not a permutation"):
        context.decode(bytes(payload), 5, 7, 6)


@pytest.mark.parametrize("length", [0, 3, 8, 11])
def test_too_short_for_header_order_and_flush(plain, length):
    with pytest.raises(FormatError, match=f"context payload is {length} bytes, shorter than 12"):
        context.decode(_good()[0][:length], 5, 7, 6)


def test_every_truncation_and_extra_byte_is_rejected(plain):
    payload, _ = _good()
    for cut in range(12, len(payload)):
        with pytest.raises(FormatError, match="truncated|does not end|invalid literal"):
            context.decode(payload[:cut], 5, 7, 6)
    with pytest.raises(FormatError, match="does not end where the coder does"):
        context.decode(payload + b"\0", 5, 7, 6)


def test_literal_index_ge_k_is_rejected(plain):
    coded = np.zeros((3, 4), np.uint8)
    coded[1, 2] = 5  # not an index of k = 5: the encoder refuses it, the kernel codes it
    data = np.zeros(256, np.uint8)
    n = context._run(_context_kernel.code, False, coded, 5, (255, 12, 7), data, False)
    payload = bytes([255, 12, 7, 0, 1, 2, 3, 4]) + data[:n].tobytes()
    with pytest.raises(FormatError, match="invalid literal: an index >= k=5"):
        context.decode(payload, 5, 4, 3)


def test_every_single_bit_flip_of_the_coded_bytes_is_rejected_or_changes_nothing(plain):
    """Flips of the coded bytes decode to other pixels or fail; never an exception
    other than FormatError (the checksum catches the rest in a file)."""
    payload, labels = _good()
    rejected = 0
    for bit in range(8 * 8, 8 * len(payload)):
        flipped = bytearray(payload)
        flipped[bit // 8] ^= 0x80 >> (bit % 8)
        try:
            decoded = context.decode(bytes(flipped), 5, 7, 6)
        except FormatError:
            rejected += 1
        else:
            assert not np.array_equal(decoded, labels)
    assert rejected > (8 * len(payload) - 64) // 2


def test_large_image_without_the_compiled_kernels_names_what_is_needed(plain):
    width, height = 200, 100
    # With numba installed, KPAL_PURE_NUMPY=1 is what turned the kernels off.
    remedy = (r"unset KPAL_PURE_NUMPY=1" if importlib.util.find_spec("numba") is not None
              else r"install kpal\[fast\]")
    with pytest.raises(KpalError, match=r"cannot decode coding 3 \(context\) for a 200x100 "
                                        r"image without the compiled kernels: " + remedy):
        context.decode(WORKED_PAYLOAD, 3, width, height)
    with pytest.raises(KpalError, match=r"cannot encode coding 3 \(context\)"):
        context.encode(np.zeros((height, width), np.uint8), 3)
    assert context.PLAIN_MAX_PIXELS < width * height
    assert "optional for readers" in context.READER_NEEDS


def test_decoding_memory_follows_the_pixels_not_the_payload(plain):
    """A 1x1 image allocates the smallest tables whatever the payload says (spec §12.6)."""
    payload = bytes([255, 12, 7]) + bytes(range(256)) + bytes(64)
    tracemalloc.start()
    try:
        with pytest.raises(FormatError):
            context.decode(payload, 256, 1, 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


@settings(max_examples=25, deadline=None)
@given(k=st.integers(2, 256), width=st.integers(1, 12), height=st.integers(1, 6),
       seed=st.integers(0, 1 << 16), noise=st.sampled_from([0.0, 0.1, 1.0]))
def test_decode_of_encode_is_the_identity(k, width, height, seed, noise):
    labels = blocky(k, height, width, seed=seed, noise=noise)
    round_trip(labels, k)


def test_an_image_too_large_for_plain_python_is_refused_before_the_fit(monkeypatch):
    import kpal

    monkeypatch.setenv("KPAL_PURE_NUMPY", "1")  # as without kpal[fast]
    rgb = np.random.default_rng(0).integers(0, 256, (130, 130, 3), dtype=np.uint8)
    # Small enough for plain Python: encoded and decoded as usual.
    small = np.ascontiguousarray(rgb[:64, :64])
    data = kpal.encode(small, k=16, coding="context")
    assert np.asarray(kpal.decode(data).convert("RGB")).shape == (64, 64, 3)

    def no_fit(*args, **kwargs):
        raise AssertionError("the palette was fitted first")

    monkeypatch.setattr("kpal.codec.quantize", no_fit)
    with pytest.raises(KpalError, match=r"cannot encode coding 3 \(context\) for a 130x130 "
                                        r"image without the compiled kernels"):
        kpal.encode(rgb, k=16, coding="context")
