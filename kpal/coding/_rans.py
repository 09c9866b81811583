"""Interleaved binary rANS over many lanes, vectorized with numpy.

The entropy coding (``entropy.py``) turns the image into a sequence of binary
decisions, each with a 12-bit probability of a 1. Decision number ``g`` (in
the order the decoder meets them) belongs to lane ``g mod n_lanes``; each lane
is an ordinary rANS coder with a 32-bit state and 16-bit renormalization words.
The decoder handles decisions in *rounds*: runs of at most ``n_lanes``
consecutive decisions that it can decode at once, because they are independent
of each other and each belongs to a different lane. All lanes share one stream
of 16-bit words; inside a round the lanes that renormalize read their word in
decision order. The encoder runs the same rounds backwards and writes words in
exactly the reverse order (spec/kpal.md, "Coding 2: entropy").
"""

from __future__ import annotations

import numpy as np

from kpal.errors import FormatError

PROB_BITS = 12
PROB_ONE = 1 << PROB_BITS
STATE_LOW = 1 << 16  # states live in [STATE_LOW, 2**32)
WORD_BITS = 16
WORD_MASK = (1 << WORD_BITS) - 1
# Encoder renormalizes when x >= freq * 2**_EMIT_SHIFT, so that after coding the
# state is back below 2**32: (STATE_LOW >> PROB_BITS) << WORD_BITS = 2**20.
_EMIT_SHIFT = 16 - PROB_BITS + WORD_BITS
#: Below this many lanes a round holds too few decisions for numpy's per-call cost
#: (about a microsecond a call, ten calls a round): a plain loop codes them one by
#: one instead, with the same arithmetic, so the bytes are the same. Small images
#: have few lanes (one per 1024 pixels), so this is their path.
SCALAR_LANES = 128


def rounds(group_sizes: list[int], n_lanes: int) -> list[tuple[int, int]]:
    """Split decision groups into rounds ``(start, stop)`` the decoder decodes at once.

    A group is a run of decisions the decoder can decode together (one context
    level of one wavefront step). A round is a run of consecutive decisions of
    one group on consecutive lanes that does not wrap past the last lane, so its
    lanes are the slice ``start % n_lanes`` .. ``(stop - 1) % n_lanes``.
    """
    out = []
    start = 0
    for size in group_sizes:
        stop = start + size
        while start < stop:
            end = min(stop, start + n_lanes - start % n_lanes)
            out.append((start, end))
            start = end
    return out


def encode(probs: np.ndarray, bits: np.ndarray, group_sizes: list[int],
           n_lanes: int) -> tuple[np.ndarray, np.ndarray]:
    """Code every decision; return ``(final_states, words)`` in stream order.

    Parameters
    ----------
    probs : ndarray of shape (n,), integer
        Probability of a 1, in units of ``2**-12``, each in 1..4095.
    bits : ndarray of shape (n,), bool
        The decisions.
    group_sizes : list of int
        Sizes of the consecutive decision groups (they sum to ``n``).
    n_lanes : int
        Number of interleaved rANS states.

    Returns
    -------
    final_states : ndarray of shape (n_lanes,), uint32
        The states the decoder starts from.
    words : ndarray of uint16
        Renormalization words in the order the decoder reads them.
    """
    if n_lanes < SCALAR_LANES:
        return _encode_scalar(probs, bits, n_lanes)
    state = np.full(n_lanes, STATE_LOW, dtype=np.int64)
    emitted: list[np.ndarray] = []
    for start, stop in reversed(rounds(group_sizes, n_lanes)):
        lane = start % n_lanes
        lanes = slice(lane, lane + stop - start)
        p1 = probs[start:stop].astype(np.int64)
        one = bits[start:stop]
        freq = np.where(one, p1, PROB_ONE - p1)
        x = state[lanes]
        emit = x >= (freq << _EMIT_SHIFT)
        if emit.any():
            # Written in reverse decision order: the whole list is reversed at the end.
            emitted.append((x[emit] & WORD_MASK)[::-1])
            x = np.where(emit, x >> WORD_BITS, x)
        quotient, remainder = np.divmod(x, freq)
        # cum is PROB_ONE - p1 for a 1 and 0 for a 0
        state[lanes] = (quotient << PROB_BITS) + remainder + np.where(one, PROB_ONE - p1, 0)
    words = np.concatenate(emitted)[::-1] if emitted else np.zeros(0, np.int64)
    return state.astype(np.uint32), words.astype(np.uint16)


def _encode_scalar(probs: np.ndarray, bits: np.ndarray,
                   n_lanes: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`encode` one decision at a time, last first (decision g on lane g % n_lanes)."""
    state = [STATE_LOW] * n_lanes
    emitted: list[int] = []
    emit_shift = _EMIT_SHIFT
    for g in range(len(probs) - 1, -1, -1):
        p1 = int(probs[g])
        lane = g % n_lanes
        x = state[lane]
        freq = p1 if bits[g] else PROB_ONE - p1
        if x >= freq << emit_shift:
            emitted.append(x & WORD_MASK)
            x >>= WORD_BITS
        quotient, remainder = divmod(x, freq)
        state[lane] = (quotient << PROB_BITS) + remainder + (PROB_ONE - p1 if bits[g] else 0)
    emitted.reverse()
    return np.array(state, dtype=np.uint32), np.array(emitted, dtype=np.uint16)


class Decoder:
    """The decoding side: lane states and a read position in the word stream."""

    def __init__(self, states: np.ndarray, words: np.ndarray) -> None:
        self.state = states.astype(np.int64)
        # read as stored (a view of the payload); only the words of a round are widened
        self.words = words
        self.n_lanes = states.size
        self.position = 0  # next word to read
        self.lane = 0  # lane of the next decision
        self._scalar: list[int] | None = None  # the states as ints, on the scalar path

    def decode(self, probs: np.ndarray) -> np.ndarray:
        """Decode one group of independent decisions; return them as a bool array."""
        if self.n_lanes < SCALAR_LANES:
            return self._decode_scalar(probs)
        n = probs.size
        out = np.empty(n, dtype=bool)
        offset = 0
        while offset < n:
            stop = min(n, offset + self.n_lanes - self.lane)
            lanes = slice(self.lane, self.lane + stop - offset)
            p1 = probs[offset:stop]
            x = self.state[lanes]
            slot = x & (PROB_ONE - 1)
            zero_freq = PROB_ONE - p1
            one = slot >= zero_freq
            # x = freq * (x >> 12) + slot - cum, with (freq, cum) = (p1, zero_freq) for
            # a 1 and (zero_freq, 0) for a 0
            x = np.where(one, p1, zero_freq) * (x >> PROB_BITS) + slot
            x -= np.where(one, zero_freq, 0)
            refill = np.flatnonzero(x < STATE_LOW)
            if refill.size:
                end = self.position + refill.size
                if end > self.words.size:
                    msg = "entropy payload is truncated: the coder ran out of words"
                    raise FormatError(msg)
                x[refill] = (x[refill] << WORD_BITS) | self.words[self.position : end]
                self.position = end
            self.state[lanes] = x
            out[offset:stop] = one
            self.lane = (self.lane + stop - offset) % self.n_lanes
            offset = stop
        return out

    def _decode_scalar(self, probs: np.ndarray) -> np.ndarray:
        """:meth:`decode` one decision at a time: the same states, words and bits."""
        if self._scalar is None:
            self._scalar = self.state.tolist()
        state, words, position, lane = self._scalar, self.words, self.position, self.lane
        n_lanes, mask = self.n_lanes, PROB_ONE - 1
        out = []
        for p1 in probs.tolist():
            x = state[lane]
            slot = x & mask
            zero_freq = PROB_ONE - p1
            if slot >= zero_freq:
                x = p1 * (x >> PROB_BITS) + slot - zero_freq
                out.append(True)
            else:
                x = zero_freq * (x >> PROB_BITS) + slot
                out.append(False)
            if x < STATE_LOW:
                if position >= words.size:
                    msg = "entropy payload is truncated: the coder ran out of words"
                    raise FormatError(msg)
                x = (x << WORD_BITS) | int(words[position])
                position += 1
            state[lane] = x
            lane = lane + 1 if lane + 1 < n_lanes else 0
        self.position, self.lane = position, lane
        return np.array(out, dtype=bool)

    def check_finished(self) -> None:
        """Raise FormatError unless every word was read and every lane is back at its start."""
        if self._scalar is not None:
            self.state = np.array(self._scalar, dtype=np.int64)
        if self.position != self.words.size:
            msg = (f"entropy payload has {self.words.size - self.position} unread words "
                   "after the last pixel")
            raise FormatError(msg)
        if np.any(self.state != STATE_LOW):
            lane = int(np.argmax(self.state != STATE_LOW))
            msg = (f"entropy payload is corrupt: lane {lane} ends in state "
                   f"{int(self.state[lane])}, expected {STATE_LOW}")
            raise FormatError(msg)
