"""The RGBA corpus of the transparency benchmark (bench/bench_alpha.py).

Every image is made offline, deterministically, from data that ships with the
installed packages (scikit-image's bundled images) or drawn with Pillow. Shapes
with anti-aliased edges are drawn at 4x and reduced in premultiplied alpha, as
an icon exporter does.

=====================  =========  ==============================================
name                   size       what it is
=====================  =========  ==============================================
skimage-logo           500x500    scikit-image's ``logo.png`` (it ships opaque
                                  on white): white turned into transparency by
                                  colour-to-alpha, so soft edges stay soft
skimage-horse          400x328    scikit-image's ``horse.png`` (opaque grey
                                  levels): darkness as alpha over a brown coat,
                                  its anti-aliased outline translucent
app-icon               256x256    rounded square with a gradient, a ring and a
                                  glyph, anti-aliased, transparent corners
flat-logo              320x320    flat multi-colour logo (star, circles, bars)
                                  with anti-aliased edges on transparency
cutout-cat             451x300    photo (chelsea) cut out by an ellipse, edge
                                  anti-aliased
cutout-rocket          640x427    photo (rocket) with the sky removed by a
                                  colour threshold: a hard 0/255 mask
vignette-astronaut     512x512    photo (astronaut) with a soft radial alpha
                                  vignette, opaque centre to transparent corners
sprite                 192x192    GIF-style sprite: shaded shapes, 0/255 mask
ui-panel               360x240    semi-transparent UI art: glass panel, blurred
                                  drop shadow, translucent buttons and text
feathered-coffee       400x300    photo (coffee) cut out by a blurred
                                  (feathered) rounded-rectangle mask
=====================  =========  ==============================================
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = ["CORPUS", "load_corpus"]

#: Drawing scale of anti-aliased shapes: drawn this many times larger, then reduced.
SUPERSAMPLE = 4


def _reduce(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Downsample in premultiplied alpha (so transparent colour does not bleed)."""
    small = image.convert("RGBa").resize(size, Image.Resampling.BOX).convert("RGBA")
    return np.asarray(small)


def _skimage(name: str) -> np.ndarray:
    from skimage import data

    return getattr(data, name)()


def skimage_logo() -> np.ndarray:
    """scikit-image's logo with its white background made transparent (colour to alpha)."""
    rgb = _skimage("logo")[..., :3].astype(np.float64)
    # Colour to alpha: each pixel explained as a colour over white. The least
    # such alpha is max over channels of (255 - c) / 255; three times it (at
    # most 1) keeps the logo's own colours opaque and only its edges soft.
    alpha = np.minimum(3.0 * np.max(255.0 - rgb, axis=-1) / 255.0, 1.0)
    safe = np.maximum(alpha, 1e-9)[..., None]
    colour = 255.0 - (255.0 - rgb) / safe
    out = np.empty(rgb.shape[:2] + (4,), dtype=np.uint8)
    out[..., :3] = np.clip(np.rint(colour), 0, 255)
    out[..., 3] = np.clip(np.rint(alpha * 255), 0, 255)
    out[out[..., 3] == 0] = 0
    return out


def skimage_horse() -> np.ndarray:
    """scikit-image's horse: its darkness as alpha over a brown coat with a light gradient."""
    import skimage
    from PIL import Image as _Image

    path = f"{skimage.__path__[0]}/data/horse.png"
    grey = np.asarray(_Image.open(path).convert("L")).astype(np.float64)
    height, width = grey.shape
    out = np.empty((height, width, 4), dtype=np.uint8)
    shade = np.linspace(0.7, 1.2, height)[:, None] * np.ones((1, width))
    out[..., 0] = np.clip(120 * shade, 0, 255)
    out[..., 1] = np.clip(72 * shade, 0, 255)
    out[..., 2] = np.clip(40 * shade, 0, 255)
    out[..., 3] = np.rint(255 - grey)
    return out


def app_icon() -> np.ndarray:
    size = 256 * SUPERSAMPLE
    s = SUPERSAMPLE
    gradient = np.zeros((size, size, 4), dtype=np.uint8)
    t = np.linspace(0, 1, size)[:, None]
    gradient[..., 0] = np.rint(40 + 180 * t)
    gradient[..., 1] = np.rint(90 + 60 * (1 - t))
    gradient[..., 2] = np.rint(230 - 120 * t)
    gradient[..., 3] = 255
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).rounded_rectangle((8 * s, 8 * s, 248 * s, 248 * s), radius=56 * s,
                                           fill=255)
    icon = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    icon.paste(Image.fromarray(gradient), (0, 0), mask)
    draw = ImageDraw.Draw(icon)
    draw.ellipse((60 * s, 60 * s, 196 * s, 196 * s), outline=(255, 255, 255, 255),
                 width=14 * s)
    draw.polygon([(110 * s, 92 * s), (110 * s, 164 * s), (168 * s, 128 * s)],
                 fill=(255, 214, 90, 255))
    return _reduce(icon, (256, 256))


def flat_logo() -> np.ndarray:
    size = 320 * SUPERSAMPLE
    s = SUPERSAMPLE
    logo = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(logo)
    draw.ellipse((20 * s, 20 * s, 300 * s, 300 * s), fill=(25, 60, 110, 255))
    draw.ellipse((60 * s, 60 * s, 260 * s, 260 * s), fill=(240, 240, 235, 255))
    angles = np.linspace(-np.pi / 2, 1.5 * np.pi, 11)[:-1]
    radii = np.where(np.arange(10) % 2 == 0, 90, 38) * s
    star = [(160 * s + r * np.cos(a), 160 * s + r * np.sin(a)) for r, a in zip(radii, angles,
                                                                              strict=True)]
    draw.polygon(star, fill=(230, 60, 50, 255))
    for i, colour in enumerate([(250, 180, 30, 255), (60, 170, 90, 255), (120, 80, 200, 255)]):
        y = (232 + 18 * i) * s
        draw.rounded_rectangle((110 * s, y, 210 * s, y + 10 * s), radius=5 * s, fill=colour)
    draw.ellipse((250 * s, 10 * s, 310 * s, 70 * s), fill=(250, 200, 0, 255))
    return _reduce(logo, (320, 320))


def cutout_cat() -> np.ndarray:
    photo = Image.fromarray(_skimage("chelsea"))
    width, height = photo.size
    big = photo.resize((width * SUPERSAMPLE, height * SUPERSAMPLE), Image.Resampling.BICUBIC)
    mask = Image.new("L", big.size, 0)
    s = SUPERSAMPLE
    ImageDraw.Draw(mask).ellipse((70 * s, 10 * s, 340 * s, 290 * s), fill=255)
    big.putalpha(mask)
    return _reduce(big, (width, height))


def cutout_rocket() -> np.ndarray:
    rgb = _skimage("rocket")
    r, g, b = (rgb[..., c].astype(np.int32) for c in range(3))
    sky = (b > r + 25) & (b > 110)
    out = np.empty(rgb.shape[:2] + (4,), dtype=np.uint8)
    out[..., :3] = rgb
    out[..., 3] = np.where(sky, 0, 255)
    return out


def vignette_astronaut() -> np.ndarray:
    rgb = _skimage("astronaut")
    height, width = rgb.shape[:2]
    y, x = np.mgrid[0:height, 0:width]
    radius = np.hypot((x - width / 2) / (width / 2), (y - height / 2) / (height / 2))
    # Opaque inside r = 0.55, then a smooth (cosine) fall to 0 at r = 1.3.
    t = np.clip((radius - 0.55) / 0.75, 0, 1)
    alpha = 0.5 * (1 + np.cos(np.pi * t))
    out = np.empty((height, width, 4), dtype=np.uint8)
    out[..., :3] = rgb
    out[..., 3] = np.rint(alpha * 255)
    return out


def sprite() -> np.ndarray:
    size = 192
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    out = np.zeros((size, size, 4), dtype=np.uint8)
    # A shaded ball (many colours), a shaded box and a flat band; hard 0/255 edges.
    ball = np.hypot(x - 70, y - 80) < 55
    light = np.clip(1.1 - np.hypot(x - 50, y - 60) / 80, 0.15, 1)
    out[ball, 0] = np.rint(230 * light[ball])
    out[ball, 1] = np.rint(90 * light[ball])
    out[ball, 2] = np.rint(40 * light[ball])
    box = (x > 110) & (x < 180) & (y > 100) & (y < 175)
    out[box, 0] = np.rint(40 + 0.5 * (x[box] - 110))
    out[box, 1] = np.rint(120 + (y[box] - 100))
    out[box, 2] = 200
    band = (y > 20) & (y < 36) & (x > 100) & (x < 185)
    out[band, :3] = (250, 230, 60)
    out[..., 3] = np.where(ball | box | band, 255, 0)
    out[out[..., 3] == 0, :3] = (255, 0, 255)  # a colour key left under the mask
    return out


def ui_panel() -> np.ndarray:
    width, height, s = 360, 240, SUPERSAMPLE
    shadow = Image.new("RGBA", (width * s, height * s), (0, 0, 0, 0))
    ImageDraw.Draw(shadow).rounded_rectangle((34 * s, 38 * s, 334 * s, 218 * s), radius=24 * s,
                                             fill=(0, 0, 0, 150))
    shadow = shadow.filter(ImageFilter.GaussianBlur(10 * s))
    panel = Image.new("RGBA", shadow.size, (0, 0, 0, 0))
    glass = np.zeros((height * s, width * s, 4), dtype=np.uint8)
    t = np.linspace(0, 1, height * s)[:, None]
    glass[..., 0] = np.rint(235 - 40 * t)
    glass[..., 1] = np.rint(240 - 30 * t)
    glass[..., 2] = 250
    glass[..., 3] = np.rint(200 - 60 * t)
    mask = Image.new("L", shadow.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle((24 * s, 24 * s, 324 * s, 204 * s), radius=24 * s,
                                           fill=255)
    panel.paste(Image.fromarray(glass), (0, 0), mask)
    draw = ImageDraw.Draw(panel)
    draw.rounded_rectangle((48 * s, 150 * s, 168 * s, 186 * s), radius=18 * s,
                           fill=(30, 120, 240, 230))
    draw.rounded_rectangle((180 * s, 150 * s, 300 * s, 186 * s), radius=18 * s,
                           fill=(255, 255, 255, 120), outline=(30, 120, 240, 200), width=2 * s)
    for i in range(4):
        draw.rounded_rectangle((48 * s, (50 + 22 * i) * s, (290 - 40 * i) * s, (60 + 22 * i) * s),
                               radius=5 * s, fill=(20, 30, 50, 170 - 25 * i))
    art = Image.alpha_composite(shadow, panel)
    return _reduce(art, (width, height))


def feathered_coffee() -> np.ndarray:
    photo = Image.fromarray(_skimage("coffee")).resize((400, 300), Image.Resampling.LANCZOS)
    mask = Image.new("L", photo.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle((40, 30, 360, 270), radius=50, fill=255)
    photo.putalpha(mask.filter(ImageFilter.GaussianBlur(12)))
    return np.asarray(photo)


#: (name, function making the image as an ndarray of shape (height, width, 4), uint8).
CORPUS = (
    ("skimage-logo", skimage_logo),
    ("skimage-horse", skimage_horse),
    ("app-icon", app_icon),
    ("flat-logo", flat_logo),
    ("cutout-cat", cutout_cat),
    ("cutout-rocket", cutout_rocket),
    ("vignette-astronaut", vignette_astronaut),
    ("sprite", sprite),
    ("ui-panel", ui_panel),
    ("feathered-coffee", feathered_coffee),
)


def large_vignette(width: int = 4000, height: int = 3000) -> np.ndarray:
    """A 12 MP photo with a soft vignette alpha (the speed case of bench_alpha ``--large``).

    scikit-image's astronaut upscaled (bicubic) with a little fixed noise, so
    that nearly every pixel has its own colour as in a real 12 MP photo; alpha
    255 inside, a linear fall to 0 past the corners (about a third opaque,
    8% transparent, the rest translucent).
    """
    from PIL import Image

    rgb = np.asarray(Image.fromarray(_skimage("astronaut")).resize((width, height),
                                                                   Image.BICUBIC))
    noise = np.random.default_rng(0).integers(-3, 4, rgb.shape)
    rgb = np.clip(rgb.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    y, x = np.mgrid[0:height, 0:width]
    radius = np.hypot((x - width / 2) / (width / 2), (y - height / 2) / (height / 2))
    alpha = np.clip(np.rint((1.15 - radius) * 255 / 0.5), 0, 255).astype(np.uint8)
    return np.dstack([rgb, alpha])


def load_corpus(names: list[str] | None = None) -> list[tuple[str, np.ndarray]]:
    """Make the corpus images (all, or those named), in the order of :data:`CORPUS`."""
    known = dict(CORPUS)
    if names:
        unknown = [n for n in names if n not in known]
        if unknown:
            msg = f"unknown corpus image(s) {', '.join(unknown)}; known: {', '.join(known)}"
            raise ValueError(msg)
    return [(name, make()) for name, make in CORPUS if not names or name in names]


if __name__ == "__main__":
    for name, image in load_corpus():
        alpha = image[..., 3]
        kinds = (np.mean(alpha == 0), np.mean((alpha > 0) & (alpha < 255)), np.mean(alpha == 255))
        colours = np.unique(image.reshape(-1, 4).view(np.uint32)).size
        print(f"{name:20s} {image.shape[1]}x{image.shape[0]}  transparent {kinds[0]:.0%}  "
              f"translucent {kinds[1]:.0%}  opaque {kinds[2]:.0%}  {colours} RGBA colours")
