"""kpal: a palette image codec.

Compress an image by clustering its pixels into k colours (k-means, or a
Gaussian mixture fitted by EM), store a header, a k×24-bit palette and
bit-packed ceil(log2 k)-bit indices in a ``.kpal`` file, and read it back —
from Python, from Pillow (``Image.open("x.kpal")``) or from the ``kpal`` CLI.

Importing kpal registers the Pillow plugin; :func:`register` does it
explicitly.
"""

from __future__ import annotations

from kpal.cluster import KMeans, quantize
from kpal.codec import decode, encode, save
from kpal.errors import (
    ChecksumError,
    FormatError,
    KpalError,
    KpalWarning,
    LimitError,
    OptionError,
    TruncatedError,
)
from kpal.options import EncodeOptions
from kpal.plugin import register

__version__ = "0.1.0"

__all__ = [
    "encode",
    "decode",
    "save",
    "EncodeOptions",
    "quantize",
    "KMeans",
    "GaussianMixture",
    "choose_k",
    "fit_palette",
    "load_palette",
    "save_palette",
    "register",
    "KpalError",
    "OptionError",
    "FormatError",
    "ChecksumError",
    "TruncatedError",
    "LimitError",
    "QualityError",
    "KpalWarning",
]


#: Imported on first use (most users need none of them): name -> module.
_LAZY = {
    "GaussianMixture": "kpal.cluster.gmm",
    "choose_k": "kpal.choose",
    "QualityError": "kpal.choose",
    "fit_palette": "kpal.palettes",
    "load_palette": "kpal.palettes",
    "save_palette": "kpal.palettes",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    msg = f"module 'kpal' has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    # The lazy names too, so that dir(kpal), help(kpal) and completion list them.
    return sorted(set(globals()) | set(_LAZY))


register()
