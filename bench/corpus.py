"""Benchmark corpus: real public-domain photos written as PNG into a cache folder.

Images (scikit-image's bundled data, public domain):

- ``astronaut`` 512×512, ``coffee`` 600×400, ``chelsea`` 451×300 as shipped;
- ``coffee_600x420``: coffee resized with Lanczos to ~0.25 MP;
- ``astronaut_12mp``: astronaut upscaled with Lanczos to 4000×3000;
- ``astronaut_100mp``: astronaut upscaled to 10000×10000 for the memory
  test, written only when asked for (``--huge``).

Usage::

    python bench/corpus.py            # writes bench/.cache/*.png, prints the list
    python bench/corpus.py --huge     # also the 100 MP image
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_CACHE = Path(__file__).resolve().parent / ".cache"


@dataclass(frozen=True)
class CorpusImage:
    """One corpus entry: a name and the PNG file that holds it."""

    name: str
    path: Path

    @property
    def megapixels(self) -> float:
        """Pixel count in millions, read from the PNG header only."""
        with allow_large_images(), Image.open(self.path) as im:
            return im.width * im.height / 1e6


@contextmanager
def allow_large_images() -> Iterator[None]:
    """Silence Pillow's decompression-bomb warning: the 100 MP image is ours, on purpose."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def _skimage(name: str) -> Image.Image:
    from skimage import data

    return Image.fromarray(np.ascontiguousarray(getattr(data, name)()[..., :3]), "RGB")


def _resized(source: str, size: tuple[int, int]) -> Image.Image:
    return _skimage(source).resize(size, Image.Resampling.LANCZOS)


# name -> how to build it; insertion order is the default benchmark order.
BUILDERS = {
    "astronaut": lambda: _skimage("astronaut"),
    "coffee": lambda: _skimage("coffee"),
    "chelsea": lambda: _skimage("chelsea"),
    "coffee_600x420": lambda: _resized("coffee", (600, 420)),
    "astronaut_12mp": lambda: _resized("astronaut", (4000, 3000)),
}
HUGE_BUILDERS = {
    "astronaut_100mp": lambda: _resized("astronaut", (10000, 10000)),
}
SMALL = ("astronaut", "coffee", "chelsea", "coffee_600x420")
TWELVE_MP = "astronaut_12mp"
QUARTER_MP = "coffee_600x420"
HUNDRED_MP = "astronaut_100mp"


def ensure(name: str, cache: Path = DEFAULT_CACHE) -> CorpusImage:
    """Return the corpus image ``name``, writing its PNG first if missing.

    Parameters
    ----------
    name : str
        A key of ``BUILDERS`` or ``HUGE_BUILDERS``.
    cache : Path
        Folder holding the PNG files.

    Returns
    -------
    CorpusImage
    """
    builders = {**BUILDERS, **HUGE_BUILDERS}
    if name not in builders:
        msg = f"unknown corpus image {name!r}; known: {', '.join(builders)}"
        raise KeyError(msg)
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{name}.png"
    if not path.exists():
        tmp = path.with_suffix(".png.tmp")
        # compress_level=1: these are inputs, small files do not matter, speed does.
        builders[name]().save(tmp, format="PNG", compress_level=1)
        tmp.replace(path)
    return CorpusImage(name, path)


def build(names: list[str] | None = None, cache: Path = DEFAULT_CACHE,
          huge: bool = False) -> list[CorpusImage]:
    """Write (if needed) and return the corpus images.

    Parameters
    ----------
    names : list of str, optional
        Subset to build; default every regular image (plus the huge one when
        ``huge``).
    cache : Path
        Folder holding the PNG files.
    huge : bool
        Include the 100 MP image when ``names`` is not given.

    Returns
    -------
    list of CorpusImage
    """
    if names is None:
        names = list(BUILDERS) + (list(HUGE_BUILDERS) if huge else [])
    return [ensure(name, cache) for name in names]


def load_rgb(image: CorpusImage) -> np.ndarray:
    """Read a corpus PNG as an ``(height, width, 3)`` uint8 array."""
    with allow_large_images(), Image.open(image.path) as im:
        return np.asarray(im.convert("RGB"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help="Folder for the PNG files.")
    parser.add_argument("--huge", action="store_true",
                        help="Also write the 100 MP (10000x10000) image.")
    args = parser.parse_args(argv)
    for image in build(cache=args.cache, huge=args.huge):
        print(f"{image.name:18s} {image.megapixels:7.2f} MP  {image.path}")


if __name__ == "__main__":
    main()
