"""Payload codings: how the palette indices are turned into bytes.

Each coding lives in its own module and is registered here under the id that
the header's ``coding`` field stores (spec/kpal.md, "Payload codings"). A coding
provides three functions:

``encode(labels, k) -> bytes``
    ``labels`` is an ``ndarray`` of shape (height, width), dtype uint8, every
    value < ``k``.
``decode(payload, k, width, height) -> ndarray``
    The inverse: returns an ``ndarray`` of shape (height, width), dtype uint8.
    It must raise :class:`kpal.errors.FormatError` on a payload that is not a
    valid encoding (wrong length, index >= k, ...), never return wrong pixels.
``payload_size(k, width, height) -> int | None``
    The exact payload length the header implies, or ``None`` for codings whose
    length depends on the data. Decoders use it to reject a file whose length
    does not match *before* allocating anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kpal.errors import FormatError

from . import context, entropy, fixed, radix

__all__ = ["Coding", "CODINGS", "BY_NAME", "get"]


@dataclass(frozen=True)
class Coding:
    """One payload coding: its header id, name and functions."""

    id: int
    name: str
    encode: Callable[[np.ndarray, int], bytes]
    decode: Callable[[bytes, int, int, int], np.ndarray]
    payload_size: Callable[[int, int, int], int | None]
    #: What a reader needs beyond the spec's required codings (None: every reader has it).
    reader_needs: str | None = None
    #: ``check(width, height)`` raises before any work when this installation cannot
    #: encode such an image (None: every size can be encoded).
    check: Callable[[int, int], None] | None = None


def _from_module(module) -> Coding:
    return Coding(module.CODING_ID, module.NAME, module.encode, module.decode,
                  module.payload_size, getattr(module, "READER_NEEDS", None),
                  getattr(module, "check_encodable", None))


#: Registry keyed by the header's coding id. Adding a coding = one line here.
CODINGS: dict[int, Coding] = {
    c.id: c
    for c in (
        _from_module(fixed),
        _from_module(radix),
        _from_module(entropy),
        _from_module(context),
    )
}

#: The same registry keyed by name ("fixed", ...), for options and reports.
BY_NAME: dict[str, Coding] = {c.name: c for c in CODINGS.values()}


def get(coding: int | str) -> Coding:
    """Return the coding with this header id or name.

    Raises
    ------
    FormatError
        If no coding has that id or name.
    """
    table = BY_NAME if isinstance(coding, str) else CODINGS
    try:
        return table[coding]
    except KeyError:
        known = ", ".join(f"{c.id} ({c.name})" for c in CODINGS.values())
        msg = f"unknown payload coding {coding!r}; known codings: {known}"
        raise FormatError(msg) from None
