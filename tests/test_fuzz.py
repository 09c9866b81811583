"""Randomized decoding of mutated .kpal files (hypothesis); the long run is tests/fuzz_decode.py.

About 3,000 mutated files per run: each goes through ``kpal.decode``,
``Image.open(...).load()`` and ``codec.inspect`` (the oracle ``check`` in
fuzz_decode.py), which must agree and let only documented exceptions escape.
"""

from __future__ import annotations

import random
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from kpal import container
from tests.fuzz_decode import (
    FIELDS,
    INTERESTING,
    check,
    mutate,
    patch_field,
    seed_corpus,
    with_checksum,
)

SEEDS = seed_corpus()
FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)

_position = st.integers(0, 1 << 11)
_mutation = st.one_of(
    st.tuples(st.just("flip"), _position, st.integers(0, 7)),
    st.tuples(st.just("set"), _position, st.integers(0, 255)),
    st.tuples(st.just("field"), st.sampled_from(sorted(FIELDS)), st.integers(0, 1 << 32)),
    st.tuples(st.just("truncate"), _position, st.none()),
    st.tuples(st.just("insert"), _position, st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), _position, st.integers(1, 16)),
    st.tuples(st.just("append"), st.none(), st.binary(min_size=1, max_size=32)),
)


def _apply(data: bytes, mutation: tuple) -> bytes:
    op, where, value = mutation
    out = bytearray(data)
    i = where % (len(out) + 1) if isinstance(where, int) else 0
    if op == "flip" and i < len(out):
        out[i] ^= 1 << value
    elif op == "set" and i < len(out):
        out[i] = value
    elif op == "field":
        fmt = FIELDS[where][1]
        choices = INTERESTING[fmt]
        # half the time an interesting value, else any value that fits the field
        fitted = value % (1 << (8 * struct.calcsize(fmt)))
        chosen = choices[value % len(choices)] if value & 1 else fitted
        return patch_field(data, where, chosen)
    elif op == "truncate":
        del out[i:]
    elif op == "insert":
        out[i:i] = value
    elif op == "delete":
        del out[i : i + value]
    elif op == "append":
        out += value
    return bytes(out)


@settings(FAST, max_examples=600)
@given(
    seed=st.sampled_from(range(len(SEEDS))),
    mutations=st.lists(_mutation, min_size=1, max_size=4),
    redo_checksum=st.booleans(),
)
def test_mutated_files_fail_cleanly(seed, mutations, redo_checksum):
    original = SEEDS[seed]
    data = original
    for mutation in mutations:
        data = _apply(data, mutation)
    if redo_checksum:
        data = with_checksum(data)
    check(data, must_reject=not redo_checksum and data != original)


@settings(FAST, max_examples=400)
@given(
    fields=st.fixed_dictionaries({
        "version": st.sampled_from([0, 1, 1, 1, 2]),
        "coding": st.sampled_from([0, 0, 1, 1, 2, 3]),
        "k": st.one_of(st.integers(1, 256), st.sampled_from(INTERESTING[">H"])),
        "width": st.one_of(st.integers(1, 40), st.sampled_from(INTERESTING[">I"])),
        "height": st.one_of(st.integers(1, 40), st.sampled_from(INTERESTING[">I"])),
    }),
    b_delta=st.sampled_from([0, 0, 0, 1, -1]),
    body=st.binary(max_size=600),
    honest_length=st.booleans(),
)
def test_random_headers_with_valid_checksums(fields, b_delta, body, honest_length):
    """Headers built from scratch, mostly self-consistent, so the payload decoders are reached."""
    b = max(0, min(255, container.bits_for(max(fields["k"], 1)) + b_delta))
    if honest_length:
        payload_length = max(0, len(body) - 3 * fields["k"])
    else:
        payload_length = (fields["width"] * fields["height"] * b + 7) // 8 % (1 << 32)
    header = struct.pack(">9sBBBHIII", container.MAGIC, fields["version"], fields["coding"], b,
                         fields["k"] % (1 << 16), fields["width"], fields["height"],
                         payload_length)
    old_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 1 << 20  # a k = 1 header may claim many pixels in no bytes
    try:
        check(with_checksum(header + body + bytes(4)))
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit


@settings(FAST, max_examples=250)
@given(seed=st.integers(0, (1 << 64) - 1))
def test_batches_of_mutated_files(seed):
    """Cheap volume: eight files per example from fuzz_decode.py's own mutator."""
    rng = random.Random(seed)
    for _ in range(8):
        original = rng.choice(SEEDS)
        data, redone = mutate(original, rng)
        check(data, must_reject=not redone and data != original)
