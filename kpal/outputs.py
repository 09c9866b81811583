"""A decoded image as each output format can hold it (``kpal decode``, batches).

A ``.kpal`` file decodes to a Pillow "P" image (:func:`kpal.codec.decode`);
writing it as another format is Pillow's job, but Pillow's writers differ in
what they keep: which store transparency, an ICC profile, more than one
channel, or write losslessly by default. :func:`for_format` turns the image
into what the chosen format holds (and says in one line what changed),
:func:`writer_options` gives the save arguments that keep every pixel, and
:func:`output_problem` refuses the formats that cannot hold the image at all.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
from PIL import Image

from kpal.codec import _to_srgb, flatten, has_transparency, is_srgb_profile, srgb_colour_in
from kpal.errors import KpalError

__all__ = ["ALPHA_FORMATS", "ICO_MAX_SIZE", "for_format", "output_problem", "pillow_format",
           "save_attempts", "without_palette", "writer_options"]


#: Pillow formats that keep transparency when written; others get a flattened image.
ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF", "GIF", "TGA", "ICO", "ICNS", "JPEG2000",
                           "AVIF", "QOI", "KPAL", "DDS", "SGI", "IM", "BLP"})
#: Formats written from the "P" image as it is: their writers keep an RGBA palette
#: (BLP takes only a palette image, and stores its alpha; TGA a 32-bit colour map).
_PALETTE_ALPHA_FORMATS = frozenset({"PNG", "KPAL", "BLP", "TGA"})
#: ICO stores an entry's width and height in one byte each (0 meaning 256).
ICO_MAX_SIZE = 256


#: Pillow writer options of a decode: formats whose lossless mode is not Pillow's default.
#: WebP's ``exact`` keeps the colour of fully transparent pixels too. JPEG has no
#: lossless mode: quality 95 without chroma subsampling, where Pillow's default
#: (75, 4:2:0) adds about as much error as the quantization did and smears a
#: dithered image's colours.
#: MPO is JPEG, and AVIF has no lossless mode for palette colours either: the same
#: quality, every chroma sample kept. Lossless writers are given their compression
#: (Pillow writes TIFF and TGA uncompressed by default), GIF no interlacing (larger,
#: and nothing to show progressively in a local file) and its palette as it is
#: (Pillow's ``optimize`` would renumber the indices: a shared palette stays shared).
_WRITER_OPTIONS = {"WEBP": {"lossless": True, "exact": True},
                   "JPEG": {"quality": 95, "subsampling": 0},
                   "MPO": {"quality": 95, "subsampling": 0},
                   "AVIF": {"quality": 95, "subsampling": "4:4:4"},
                   "TIFF": {"compression": "tiff_adobe_deflate"},
                   "TGA": {"compression": "tga_rle"},
                   "GIF": {"optimize": False, "interlace": False}}


def pillow_format(name: str) -> str | None:
    """The Pillow format that writes ``name`` (a format or an extension, any case), or None.

    Examples
    --------
    >>> pillow_format("png"), pillow_format("jpg"), pillow_format("TIF"), pillow_format("xyz")
    ('PNG', 'JPEG', 'TIFF', None)
    """
    Image.init()
    upper = name.upper()
    if upper in Image.SAVE:
        return upper
    fmt = Image.registered_extensions().get("." + name.lower().lstrip("."))
    return fmt if fmt in Image.SAVE else None


def output_problem(fmt: str, suffix: str | None = None) -> str | None:
    """Why a decoded palette image cannot be written as Pillow format ``fmt`` to ``suffix``.

    Both formats named here store floating-point samples, which Pillow writes
    without a word from a palette image: SPIDER as one grey channel, and a
    ``.pfm`` name gets Pillow's 8-bit PPM data.

    Parameters
    ----------
    fmt : str
        A Pillow format name, any case.
    suffix : str, optional
        The output file's extension, lower case.

    Returns
    -------
    str or None
        The problem, or None when the image can be written.

    Examples
    --------
    >>> output_problem("PNG", ".png") is None
    True
    >>> output_problem("PPM", ".pfm")
    'PFM holds floating-point samples (Pillow writes it from mode F only): write .ppm or .png'
    """
    if fmt.upper() == "SPIDER":
        return "SPIDER holds one channel of floating-point samples: write PNG or TIFF"
    if fmt.upper() == "ICNS":
        return ("ICNS holds only square icons of fixed sizes (16x16 to 1024x1024), so the "
                "image would be resized: write PNG, or ICO up to 256x256")
    if suffix == ".pfm":
        return ("PFM holds floating-point samples (Pillow writes it from mode F only): "
                "write .ppm or .png")
    return None


def writer_options(fmt: str, image: Image.Image | None = None) -> dict:
    """Keyword arguments for ``Image.save`` in Pillow format ``fmt`` that keep every pixel.

    Pillow writes WebP lossy by default; a decoded image is written losslessly
    where the format can be (JPEG and AVIF cannot: JPEG is written at quality
    95 without chroma subsampling). Given the image to be
    written, its ICC profile is passed on (Pillow's JPEG, WebP and JPEG 2000
    writers take it only from the save arguments) and an ICO file holds the
    image at its own size (Pillow's default resizes it to the icon sizes).

    Parameters
    ----------
    fmt : str
        A Pillow format name, any case.
    image : PIL.Image.Image, optional
        The image that will be saved with these options.

    Returns
    -------
    dict

    Raises
    ------
    KpalError
        ICNS (it holds only fixed square icon sizes, so the pixels would be
        resized), or ICO for an image above 256x256 pixels.

    Examples
    --------
    >>> writer_options("webp")
    {'lossless': True, 'exact': True}
    >>> writer_options("PNG")
    {}
    >>> writer_options("ico", Image.new("P", (80, 60)))
    {'sizes': [(80, 60)]}
    """
    name = fmt.upper()
    if name == "ICNS":
        msg = ("ICNS holds only square icons of fixed sizes (16x16 to 1024x1024), so the "
               "image would be resized: write PNG, or ICO up to 256x256")
        raise KpalError(msg)
    options = dict(_WRITER_OPTIONS.get(name, {}))
    if image is None:
        return options
    if name == "ICO":
        if image.width > ICO_MAX_SIZE or image.height > ICO_MAX_SIZE:
            msg = (f"an icon is at most {ICO_MAX_SIZE}x{ICO_MAX_SIZE} pixels, the image is "
                   f"{image.width}x{image.height}: write PNG, or resize it first")
            raise KpalError(msg)
        options["sizes"] = [image.size]
    icc_profile = image.info.get("icc_profile")
    if icc_profile:
        options["icc_profile"] = icc_profile
    return options


def for_format(image: Image.Image, fmt: str, background: tuple[int, int, int] | None = None,
               suffix: str | None = None, *, background_option: str = "background="
               ) -> tuple[Image.Image, str | None]:
    """A decoded image ready for Pillow format ``fmt``, and a note when it was flattened.

    Transparency is kept for formats that store it (:data:`ALPHA_FORMATS`);
    for the others (JPEG, BMP, PPM, ...) the image is composited over
    ``background``, white by default. With ``background`` given it is always
    flattened. Formats of one channel get one: a ``.pgm`` file grey levels, a
    ``.pbm`` or XBM file black and white (Pillow picks its PPM variant by
    mode, not by extension).

    Parameters
    ----------
    image : PIL.Image.Image
        A decoded image.
    fmt : str
        Pillow format name.
    background : tuple of 3 int, optional
        Colour to flatten transparency onto.
    suffix : str, optional
        The output file's extension, lower case (``".pgm"``).
    background_option : str, default "background="
        How a note names the way to choose the background colour (the
        command line passes ``"--background"``).

    Returns
    -------
    image : PIL.Image.Image
    note : str or None
        One line saying what was done, when pixels changed: a default
        flattening, or colours made grey or black and white.
    """
    image, note = _for_alpha(image, fmt, background)
    if note:
        note = note.format(background_option=background_option)
    # The profile first: grey levels are taken from the colours as they look (sRGB).
    image, profile_note = _for_profile(image, fmt.upper())
    image, channel_note = _for_channels(image, fmt.upper(), suffix)
    notes = [n for n in (note, profile_note, channel_note) if n]
    return image, "; ".join(notes) or None


#: Pillow writers that store an ICC profile (PDF only for RGB images).
_ICC_FORMATS = frozenset({"PNG", "JPEG", "MPO", "WEBP", "TIFF", "AVIF", "KPAL", "PDF"})


def _for_profile(image: Image.Image, fmt: str) -> tuple[Image.Image, str | None]:
    """The image in sRGB when ``fmt`` cannot store its ICC profile, and a note saying so.

    A viewer shows a file without a profile as sRGB: converting the colours
    (LittleCMS, perceptual intent; a palette image's entries, so its indices
    stay) keeps how the image looks, where dropping the profile would shift a
    Display P3 or Adobe RGB image's colours.
    """
    profile = image.info.get("icc_profile")
    if not profile or (fmt in _ICC_FORMATS and not (fmt == "PDF" and image.mode != "RGB")):
        return image, None
    if is_srgb_profile(profile):  # the colours are sRGB already: nothing to convert or say
        out = image.copy()
        del out.info["icc_profile"]
        return out, None
    from PIL import ImageCms

    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        if image.mode != "P":
            return _to_srgb(image, source), (f"{fmt} cannot hold the ICC profile: the colours "
                                             "were converted to sRGB")
        entries = _palette_entries(image)
        strip = Image.fromarray(np.ascontiguousarray(entries[None, :, :3]), "RGB")
        srgb = ImageCms.profileToProfile(strip, source, ImageCms.createProfile("sRGB"),
                                         outputMode="RGB")
    except (OSError, ImageCms.PyCMSError) as e:
        out = image.copy()
        out.info.pop("icc_profile", None)
        return out, f"{fmt} cannot hold the ICC profile, and it cannot be applied ({e}): dropped"
    colours = np.asarray(srgb)[0]
    out = Image.fromarray(np.asarray(image), "P")
    if isinstance(image.info.get("transparency"), int) and image.palette.mode == "RGB":
        # GIF's one transparent index over an RGB palette (_for_gif): kept as given
        out.putpalette(colours.reshape(-1).tolist(), "RGB")
        out.info["transparency"] = image.info["transparency"]
    elif entries[:, 3].min() < 255:  # an RGBA palette: its alpha kept (TGA, BLP)
        out.putpalette(np.column_stack([colours, entries[:, 3]]).reshape(-1).tolist(), "RGBA")
    else:
        out.putpalette(colours.reshape(-1).tolist(), "RGB")
    return out, f"{fmt} cannot hold the ICC profile: the palette was converted to sRGB"


#: One-channel outputs: Pillow's PPM writer picks P5 (grey) or P4 (bilevel) by
#: mode, whatever the extension, and its XBM writer takes bilevel images only.
_GREY_SUFFIXES = (".pgm",)
_BILEVEL_SUFFIXES = (".pbm",)
#: Formats whose writers take black and white images only.
_BILEVEL_FORMATS = frozenset({"XBM", "MSP"})


def _for_channels(image: Image.Image, fmt: str, suffix: str | None
                  ) -> tuple[Image.Image, str | None]:
    """The image as grey or bilevel when its output holds only that; a note if pixels changed."""
    bilevel = fmt in _BILEVEL_FORMATS or suffix in _BILEVEL_SUFFIXES
    if not bilevel and suffix not in _GREY_SUFFIXES:
        return image, None
    what = fmt if fmt in _BILEVEL_FORMATS else suffix.lstrip(".").upper()  # type: ignore[union-attr]
    rgb = np.asarray(image.convert("RGB"))
    is_grey = bool(np.array_equal(rgb[..., 0], rgb[..., 1])
                   and np.array_equal(rgb[..., 1], rgb[..., 2]))
    grey = Image.fromarray(np.ascontiguousarray(rgb[..., 0]), "L") if is_grey \
        else Image.fromarray(np.ascontiguousarray(rgb), "RGB").convert("L")
    if not bilevel:
        note = None if is_grey else (f"{what} holds grey levels: the colours were converted "
                                     "to grey (write .ppm or .png to keep them)")
        return grey, note  # no profile: the colours are sRGB by now (_for_profile)
    levels = np.asarray(grey)
    exact = is_grey and bool(np.isin(levels, (0, 255)).all())
    note = None if exact else (f"{what} holds black and white only: the image was dithered "
                               "to black and white (write .pgm or .png to keep its levels)")
    # Exact black and white stay as they are; other levels are dithered
    # (Floyd-Steinberg), which keeps their look.
    return grey.convert("1"), note


def _for_alpha(image: Image.Image, fmt: str, background: tuple[int, int, int] | None
               ) -> tuple[Image.Image, str | None]:
    """The image with its transparency as ``fmt`` can hold it (see :func:`for_format`)."""
    if not has_transparency(image):
        return image, None
    name = fmt.upper()
    if image.mode == "P" and _used_entries_opaque(image):
        # An RGBA palette whose entries in use are all opaque: nothing to flatten. A
        # writer that keeps the palette keeps it whole (one shared by many files stays
        # the same in each), unless a background asks for an opaque file.
        if name in _PALETTE_ALPHA_FORMATS and background is None:
            return image, None
        return _opaque_palette(image), None
    if background is not None:  # sRGB: in the profile's space, it shows as asked
        shown = srgb_colour_in(background, image.info.get("icc_profile"))
        return _with_profile(_flattened(image, shown), image), None
    if name in _PALETTE_ALPHA_FORMATS:
        return image, None  # a palette with alpha: PNG's tRNS chunk, a version 2 .kpal file
    if name == "GIF" and image.mode == "P":
        return _for_gif(image)
    if name in ALPHA_FORMATS:
        # Other writers (TIFF, ...) would drop a palette's alpha: give them RGBA.
        return (image if image.mode == "RGBA" else image.convert("RGBA")), None
    note = (f"{name} has no transparency: flattened onto white "  # for_format names the option
            "(choose the colour with {background_option})")
    return _with_profile(_flattened(image, (255, 255, 255)), image), note


def _flattened(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """:func:`flatten`, keeping a "P" image a palette image (its entries composited).

    The pixels are the same as flattening each pixel, and writers that take a
    palette image (BMP, PDF, PCX, Palm) then store it as one, losslessly: PDF
    would store an RGB image as JPEG.
    """
    if image.mode != "P":
        return flatten(image, background)
    from kpal.cluster.alpha import flatten as composite  # the one rounding rule

    out = Image.fromarray(np.asarray(image), "P")
    out.putpalette(composite(_palette_entries(image), background).reshape(-1).tolist(), "RGB")
    return out


def _used_entries_opaque(image: Image.Image) -> bool:
    """Whether every palette entry that a pixel of a "P" image uses is fully opaque."""
    alpha = _palette_entries(image)[:, 3]
    used = np.bincount(np.asarray(image).ravel(), minlength=256)[:alpha.shape[0]] > 0
    return bool((alpha[used] == 255).all())


def _opaque_palette(image: Image.Image) -> Image.Image:
    """A "P" image whose used entries are opaque, with an RGB palette (the same pixels)."""
    out = Image.fromarray(np.asarray(image), "P")
    out.putpalette(_palette_entries(image)[:, :3].reshape(-1).tolist(), "RGB")
    return _with_profile(out, image)


def without_palette(image: Image.Image, fmt: str = "") -> Image.Image:
    """The image for a writer that takes no palette image (JPEG, WebP, ...).

    A "P" image whose palette is all grey, with no ICC profile (an RGB profile
    does not describe one channel), becomes "L": a grey picture stays a grey
    file, a third of the samples. Any other image becomes "RGB", and so does
    every image for Pillow format ``fmt`` "PPM", whose writer picks its
    variant by mode (a ``.ppm`` file holds colour; ``.pgm`` is made grey
    before, by :func:`for_format`).

    Examples
    --------
    >>> grey = Image.new("P", (2, 1))
    >>> grey.putpalette([0, 0, 0, 128, 128, 128])
    >>> without_palette(grey).mode
    'L'
    """
    if image.mode == "P" and "icc_profile" not in image.info and image.palette.mode == "RGB" \
            and "transparency" not in image.info and fmt.upper() != "PPM":
        entries = np.asarray(image.getpalette("RGB"), np.uint8).reshape(-1, 3)
        if (entries == entries[:, :1]).all():
            return image.convert("L")
    return image.convert("RGB")


def save_attempts(image: Image.Image, fmt: str) -> Iterator[Image.Image]:
    """The images to hand Pillow's ``fmt`` writer, in turn, until one is written.

    The image as it is; then, for a writer that takes no palette image, as
    :func:`without_palette` gives it; then "RGB", for a writer that takes no
    "L" either (QOI). Made lazily: a later one only when an earlier one failed.
    """
    yield image
    if image.mode in ("RGB", "L"):
        return
    plain = without_palette(image, fmt)
    yield plain
    if plain.mode == "L":
        yield image.convert("RGB")


def _palette_entries(image: Image.Image) -> np.ndarray:
    """Every palette entry of a "P" image once, as RGBA, as Pillow reads them.

    The alpha comes from an RGBA palette or a transparency key (one index or
    bytes of alpha per entry).
    """
    rgb = image.getpalette("RGB") or []
    strip = Image.fromarray(np.arange(len(rgb) // 3, dtype=np.uint8)[None], "P")
    strip.putpalette(image.getpalette("RGBA"), "RGBA")
    if "transparency" in image.info:
        strip.info["transparency"] = image.info["transparency"]
    return np.ascontiguousarray(np.asarray(strip.convert("RGBA"))[0])


def _with_profile(out: Image.Image, source: Image.Image) -> Image.Image:
    """``out`` with ``source``'s ICC profile: its colours are in the same space."""
    if source.info.get("icc_profile"):
        out.info["icc_profile"] = source.info["icc_profile"]
    return out


def _for_gif(image: Image.Image) -> tuple[Image.Image, str | None]:
    """A "P" image with transparency as GIF can hold it: one fully transparent index.

    Fully transparent entries become that one index. GIF has no partial
    transparency, so translucent entries are composited over white, with a note.
    """
    from kpal.cluster.alpha import flatten as composite  # the one rounding rule

    entries = _palette_entries(image)
    alpha = entries[:, 3]
    translucent = (alpha > 0) & (alpha < 255)
    palette = entries[:, :3].copy()
    palette[translucent] = composite(entries[translucent], (255, 255, 255))
    indices = np.asarray(image)
    out = Image.fromarray(indices, "P")
    hidden = np.flatnonzero(alpha == 0)
    if hidden.size:
        out = Image.fromarray(np.where(np.isin(indices, hidden), hidden[0], indices)
                              .astype(np.uint8), "P")
        out.info["transparency"] = int(hidden[0])
    out.putpalette(palette.reshape(-1).tolist(), "RGB")
    note = None
    if translucent[np.unique(indices)].any():
        note = ("GIF has no partial transparency: translucent pixels flattened onto white, "
                "fully transparent ones kept (choose the colour with {background_option})")
    return _with_profile(out, image), note  # converted to sRGB next, as GIF holds none
