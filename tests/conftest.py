"""Shared fixtures: sample paths and small deterministic images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
GOLDEN = SAMPLES / "golden"


def p_image(width: int, height: int, k: int, seed: int = 0) -> Image.Image:
    """A "P" image using exactly k palette entries (indices 0..k-1 all present when N >= k)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=(height, width), dtype=np.uint8)
    n = min(k, labels.size)
    labels.reshape(-1)[:n] = np.arange(n, dtype=np.uint8)
    # Distinct colours, so decoded RGB identifies the index too.
    codes = rng.choice(1 << 24, size=k, replace=False)
    palette = np.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], axis=1)
    im = Image.fromarray(labels, "P")
    im.putpalette(palette.astype(np.uint8).reshape(-1).tolist())
    return im


@pytest.fixture
def photo() -> Image.Image:
    """A small real photo (NASA astronaut, public domain), 64x48 RGB."""
    with Image.open(SAMPLES / "astronaut.jpg") as im:
        return im.convert("RGB").resize((64, 48), Image.Resampling.LANCZOS)


@pytest.fixture
def rocket_path() -> Path:
    return SAMPLES / "rocket.jpg"
