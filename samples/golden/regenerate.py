"""Write the golden .kpal files and their expected decodings.

Each golden image is a "P" image with an explicit palette and indices, so the
files depend only on the format, not on the quantizer. Run from the repository
root: ``python samples/golden/regenerate.py``. The tests check that the
encoder still writes these exact bytes and that they decode to the expected
indices.

Version 1 files go through ``kpal.encode``. Version 2 files (RGBA palettes,
metadata blocks; spec §2.1, §3.1) are assembled from their palette, indices
and blocks with ``kpal.container.write``. Their ICC profile is ``srgb.icc``:
the bytes of Pillow's ``ImageCms.createProfile("sRGB")`` (LittleCMS, 588
bytes) with the creation date set to 2026-11-29 00:00:00 so that it does not
change from one run to the next; it is stored rather than rebuilt because
another LittleCMS version may write other bytes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

import kpal
from kpal import codec, container
from kpal import coding as codings

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
    "rgba_k4_5x3": (5, 3, 4, "fixed"),
    "rgba_key_k3_4x2": (4, 2, 3, "fixed"),
    "rgba_entropy_k17_9x7": (9, 7, 17, "entropy"),
    "icc_k5_7x3": (7, 3, 5, "fixed"),
    "rgba_icc_extra_radix_k5_6x4": (6, 4, 5, "radix"),
    "context_k5_11x7": (11, 7, 5, "context"),
    "context_k17_70x3": (70, 3, 17, "context"),
    "context_k256_16x16": (16, 16, 256, "context"),
}

#: Version 2 files: name -> (alpha of each palette entry, or None for RGB; metadata
#: blocks, "icc" standing for srgb.icc). "xtra" is a block type no reader knows: its
#: lower-case first letter lets readers skip it (spec §3.1).
VERSION_2 = {
    "rgba_k4_5x3": ([0, 128, 255, 64], []),
    "rgba_key_k3_4x2": ([255, 0, 255], []),  # one transparent entry: GIF-style
    "rgba_entropy_k17_9x7": ("random", []),
    "icc_k5_7x3": (None, [("iccp", "icc")]),
    "rgba_icc_extra_radix_k5_6x4": ([0, 255, 200, 255, 255],
                                    [("iccp", "icc"), ("xtra", b"skip me")]),
}
ICC = HERE / "srgb.icc"


def expected_text(data: bytes) -> str:
    """The human-readable expectation written next to each golden file.

    Version 2 files add ``flags``, ``metadata_length`` and one ``metadata``
    line per block (type, length, SHA-256 of the data); their RGBA palette
    entries are 8 hex digits.
    """
    header, palette, labels = codec.decode_indices(data)
    lines = [
        f"version {header.version}",
        f"coding {header.coding}",
        f"k {header.k}",
        f"bits_per_index {header.bits_per_index}",
        f"width {header.width}",
        f"height {header.height}",
        f"payload_length {header.payload_length}",
    ]
    if header.version != container.VERSION:
        lines += [f"flags {header.flags}", f"metadata_length {header.metadata_length}"]
    lines += [
        f"file_size {len(data)}",
        "palette " + " ".join(bytes(c).hex() for c in palette),
    ]
    for name, body in container.read_parts(data)[2]:
        lines.append(f"metadata {name} {len(body)} {hashlib.sha256(body).hexdigest()}")
    lines.append("indices")
    lines += [" ".join(str(int(v)) for v in row) for row in labels]
    return "\n".join(lines) + "\n"


def build(name: str) -> bytes:
    width, height, k, coding = GOLDEN[name]
    image = _image(width, height, k, seed=len(name) * 7 + k)
    if name not in VERSION_2 and coding != "context":
        return kpal.encode(image, coding=coding)
    # coding 3 is assembled from its payload like the version 2 files: the same bytes
    # kpal.encode writes, without depending on which codings the encode options offer
    alpha, blocks = VERSION_2.get(name, (None, []))
    labels = np.asarray(image)
    palette = np.array(image.getpalette()[: 3 * k], np.uint8).reshape(k, 3)
    if alpha is not None:
        if alpha == "random":
            alpha = np.random.default_rng(k).integers(0, 256, k)
            alpha[:2] = (0, 255)
        palette = np.column_stack([palette, np.asarray(alpha, np.uint8)])
        palette[palette[:, 3] == 0, :3] = 0  # a transparent entry is written as 0 0 0 0
    metadata = [(t, ICC.read_bytes() if body == "icc" else body) for t, body in blocks]
    chosen = codings.get(coding)
    payload = chosen.encode(labels, k)
    header = container.Header.for_image(
        coding=chosen.id, k=k, width=width, height=height, payload_length=len(payload),
        alpha=alpha is not None, metadata_length=len(container.pack_metadata(metadata)))
    return container.write(header, palette, payload, metadata=metadata)


def main() -> None:
    for name in GOLDEN:
        data = build(name)
        (HERE / f"{name}.kpal").write_bytes(data)
        (HERE / f"{name}.expected.txt").write_text(expected_text(data))
        print(f"{name}.kpal: {len(data)} bytes")


if __name__ == "__main__":
    main()
