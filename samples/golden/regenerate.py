"""Write the golden .kpal files and their expected decodings.

Each golden image is a "P" image with an explicit palette and indices, so the
files depend only on the format, not on the quantizer. Run from the repository
root: ``python samples/golden/regenerate.py``. The tests check that the
encoder still writes these exact bytes and that they decode to the expected
indices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

import kpal
from kpal import codec

HERE = Path(__file__).parent


def _image(width: int, height: int, k: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=(height, width), dtype=np.uint8)
    labels.reshape(-1)[: min(k, labels.size)] = np.arange(min(k, labels.size))  # use the top index
    palette = rng.integers(0, 256, size=(k, 3), dtype=np.uint8)
    im = Image.fromarray(labels, "P")
    im.putpalette(palette.reshape(-1).tolist())
    return im


#: name: (width, height, k, payload coding)
GOLDEN = {
    "k3_3x2": (3, 2, 3, "fixed"),
    "k17_5x5": (5, 5, 17, "fixed"),
    "k1_4x3": (4, 3, 1, "fixed"),
    "k2_9x1": (9, 1, 2, "fixed"),
    "k5_7x3": (7, 3, 5, "fixed"),
    "k256_16x16": (16, 16, 256, "fixed"),
    "radix_k3_7x5": (7, 5, 3, "radix"),
    "radix_k100_9x4": (9, 4, 100, "radix"),
    "entropy_k5_11x7": (11, 7, 5, "entropy"),
    "entropy_k17_70x3": (70, 3, 17, "entropy"),
}


def expected_text(data: bytes) -> str:
    """The human-readable expectation written next to each golden file."""
    header, palette, labels = codec.decode_indices(data)
    lines = [
        f"version {header.version}",
        f"coding {header.coding}",
        f"k {header.k}",
        f"bits_per_index {header.bits_per_index}",
        f"width {header.width}",
        f"height {header.height}",
        f"payload_length {header.payload_length}",
        f"file_size {len(data)}",
        "palette " + " ".join(bytes(c).hex() for c in palette),
        "indices",
    ]
    lines += [" ".join(str(int(v)) for v in row) for row in labels]
    return "\n".join(lines) + "\n"


def build(name: str) -> bytes:
    width, height, k, coding = GOLDEN[name]
    return kpal.encode(_image(width, height, k, seed=len(name) * 7 + k), coding=coding)


def main() -> None:
    for name in GOLDEN:
        data = build(name)
        (HERE / f"{name}.kpal").write_bytes(data)
        (HERE / f"{name}.expected.txt").write_text(expected_text(data))
        print(f"{name}.kpal: {len(data)} bytes")


if __name__ == "__main__":
    main()
