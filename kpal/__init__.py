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
from kpal.errors import ChecksumError, FormatError, KpalError, LimitError, OptionError
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
    "register",
    "KpalError",
    "OptionError",
    "FormatError",
    "ChecksumError",
    "LimitError",
    "__version__",
]


def __getattr__(name: str):
    # GaussianMixture is imported on first use: most users never fit one.
    if name == "GaussianMixture":
        from kpal.cluster.gmm import GaussianMixture

        return GaussianMixture
    msg = f"module 'kpal' has no attribute {name!r}"
    raise AttributeError(msg)


register()
