"""A corpus of 26 real photos for the perceptual benchmarks, built offline.

Every photo comes from data that ships with a package the benchmarks already
need, so the corpus needs no download and is the same on every machine:

- scikit-image's bundled data (public domain or CC0; see ``skimage/data/README.txt``);
- scikit-learn's ``load_sample_images()`` (``china``, ``flower``: CC BY 2.0);
- matplotlib's sample data (``grace_hopper.jpg``, public domain;
  ``Minduka_Present_Blue_Pack.png``, CC BY-SA).

The two largest photos (hubble_deep_field, retina) are cut into crops that
do not overlap, each showing different content, at their own resolution
unless the entry says "resized" (Lanczos). No bundled colour photo is as large
as 1920 x 1280 (scikit-image's motorcycle is 741 x 500), so the two
1920 x 1280 entries are Lanczos upscales of a 3:2 part of the two largest
ones: they show content of the crops again, at another scale, and are there
for the size, so 24 of the 26 photos are distinct. Four are greyscale photos
(as RGB). Apart from astronaut, chelsea and coffee, which the quantizer
benchmark's corpus (``corpus.py``) holds too, none was used to tune kpal's settings.

=====================  ============  ==================================================
name                   size (w x h)  how it is made
=====================  ============  ==================================================
astronaut              512 x 512     ``skimage.data.astronaut()``
chelsea                451 x 300     ``skimage.data.chelsea()``
coffee                 600 x 400     ``skimage.data.coffee()``
rocket                 640 x 427     ``skimage.data.rocket()``
ihc                    512 x 512     ``skimage.data.immunohistochemistry()``
motorcycle             741 x 500     ``skimage.data.stereo_motorcycle()[0]``
china                  640 x 427     ``sklearn.datasets.load_sample_images()`` 0
flower                 640 x 427     ``sklearn.datasets.load_sample_images()`` 1
grace_hopper           512 x 600     matplotlib ``grace_hopper.jpg``
present                128 x 128     matplotlib ``Minduka_Present_Blue_Pack.png`` over white
camera, coins          512 x 512,    ``skimage.data.camera()``, ``.coins()``, ``.gravel()``,
gravel, grass          384 x 303,    ``.grass()`` (greyscale photos, as RGB)
                       512 x 512 ..
hubble_{1..6}          333 x 436     ``skimage.data.hubble_deep_field()`` (1000 x 872),
                                     a 3 x 2 grid of crops
retina_{1..4}          480 x 480     ``skimage.data.retina()`` (1411 x 1411),
                                     quadrants resized
hubble_big             1920 x 1280   hubble_deep_field rows 0..666, all columns, upscaled
retina_big             1920 x 1280   retina rows 235..1175, all columns, upscaled
=====================  ============  ==================================================

Usage::

    from bench.photos import PHOTOS, load
    pixels = load("coffee")          # (height, width, 3) uint8
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from PIL import Image

__all__ = ["PHOTOS", "BIG", "load"]


def _rgb(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(array)[..., :3], dtype=np.uint8)


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def make() -> np.ndarray:
        from skimage import data

        return _rgb(getattr(data, name)())

    return make


def _crop(source: Callable[[], np.ndarray], top: int, left: int, height: int, width: int,
          resize: tuple[int, int] | None = None) -> Callable[[], np.ndarray]:
    def make() -> np.ndarray:
        full = source()
        part = full[top:top + height, left:left + width]
        if part.shape[:2] != (height, width):
            msg = f"crop {height}x{width} at ({top}, {left}) leaves a {full.shape} photo"
            raise ValueError(msg)
        if resize is not None:
            part = np.asarray(Image.fromarray(part).resize(resize, Image.Resampling.LANCZOS))
        return _rgb(part)

    return make


def _grey(name: str) -> Callable[[], np.ndarray]:
    def make() -> np.ndarray:
        from skimage import data

        grey = np.asarray(getattr(data, name)(), dtype=np.uint8)
        return _rgb(np.repeat(grey[:, :, None], 3, axis=2))

    return make


def _motorcycle() -> np.ndarray:
    from skimage import data

    return _rgb(data.stereo_motorcycle()[0])


@functools.lru_cache(maxsize=1)
def _sklearn() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_sample_images

    return tuple(_rgb(image) for image in load_sample_images().images)


def _matplotlib(name: str) -> Callable[[], np.ndarray]:
    def make() -> np.ndarray:
        from matplotlib import cbook

        with cbook.get_sample_data(name) as file, Image.open(file) as image:
            image = image.convert("RGBA")
            white = Image.new("RGBA", image.size, (255, 255, 255, 255))
            return _rgb(np.asarray(Image.alpha_composite(white, image)))

    return make


def _upscaled(source: Callable[[], np.ndarray], top: int, height: int) -> Callable[[], np.ndarray]:
    def make() -> np.ndarray:
        part = source()[top:top + height]
        return _rgb(np.asarray(Image.fromarray(part).resize(
            (1920, 1280), Image.Resampling.LANCZOS)))

    return make


PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "ihc": _skimage("immunohistochemistry"),
    "motorcycle": _motorcycle,
    "china": lambda: _sklearn()[0],
    "flower": lambda: _sklearn()[1],
    "grace_hopper": _matplotlib("grace_hopper.jpg"),
    "present": _matplotlib("Minduka_Present_Blue_Pack.png"),
    "camera": _grey("camera"),
    "coins": _grey("coins"),
    "gravel": _grey("gravel"),
    "grass": _grey("grass"),
    **{f"hubble_{i + 1}": _crop(_skimage("hubble_deep_field"), top, left, 436, 333)
       for i, (top, left) in enumerate([(0, 0), (0, 333), (0, 666), (436, 0), (436, 333),
                                        (436, 666)])},
    **{f"retina_{i + 1}": _crop(_skimage("retina"), top, left, 705, 705, resize=(480, 480))
       for i, (top, left) in enumerate([(0, 0), (0, 706), (706, 0), (706, 706)])},
    "hubble_big": _upscaled(_skimage("hubble_deep_field"), 0, 667),
    "retina_big": _upscaled(_skimage("retina"), 235, 941),
}

#: The 1920 x 1280 photos.
BIG = ("hubble_big", "retina_big")


def load(name: str) -> np.ndarray:
    """The photo ``name`` of :data:`PHOTOS`, ndarray of shape (height, width, 3), uint8."""
    if name not in PHOTOS:
        msg = f"unknown photo {name!r}; known: {', '.join(PHOTOS)}"
        raise KeyError(msg)
    return PHOTOS[name]()
