"""Every encode option in one place: its name, default, range and message.

:class:`EncodeOptions` is the single source of truth for the options of an
encode. The three ways in are thin mappings onto it, so adding an option is
one entry in :data:`SPECS` and one field of :class:`EncodeOptions`:

==================  =========================================================
surface             names
==================  =========================================================
Python API          the field names: ``kpal.encode(im, k=16, coding="radix")``
``im.save(...)``    the field names, and ``colors`` for ``k`` as in Pillow's
                    ``Image.quantize(colors=)``
command line        ``-k/--colors``, ``--method``, ``--init``, ``--seed``,
                    ``--max-iter``, ``--tol``, ``--sample``, ``--coding``;
                    ``--packing radix`` and ``--entropy`` are shorthands for
                    ``--coding`` (giving two of them is a usage error)
==================  =========================================================

An unknown name is an error naming it and the accepted ones, never silently
ignored. Every value is checked when the options are built, before any input
is read or any work is done.

This module imports nothing from kpal but its errors, so every layer (the
clustering included) can check its parameters with the same messages.
"""

from __future__ import annotations

import contextlib
import dataclasses
import decimal
import difflib
import functools
import math
import numbers
import operator
import os
import re
import reprlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from kpal.errors import OptionError

__all__ = [
    "EncodeOptions",
    "DITHERS",
    "SPACES",
    "Spec",
    "SPECS",
    "METHODS",
    "INITS",
    "CODINGS",
    "METHOD_DEFAULTS",
    "DEFAULT_K",
    "MAX_K",
    "PALETTE_DECIDERS",
    "check",
    "check_ks",
    "check_number",
    "flag_names",
]

#: Palette size when none is given (a "P" image then keeps its own palette).
DEFAULT_K = 16
#: The format stores 1..256 colours (spec/kpal.md §2).
MAX_K = 256
METHODS = ("kmeans", "gmm")
INITS = ("k-means++", "random")
#: Payload codings by name, as ``kpal.coding`` registers them (spec/kpal.md §5–7).
CODINGS = ("fixed", "radix", "entropy", "context")
#: How pixels are mapped to the palette (:mod:`kpal.cluster.remap`).
DITHERS = ("none", "fs", "ordered")
#: Where the clustering measures colour distances.
SPACES = ("rgb", "oklab")
#: Quality targets are PSNR in dB; 100 dB is beyond any 8-bit error but zero.
MAX_QUALITY = 100.0
#: A size budget beyond any file the format can hold (65535 x 65535 x 8 bits).
MAX_SIZE_LIMIT = 1 << 40
#: (max_iter, tol) when none is given: EM converges in far fewer, costlier steps.
METHOD_DEFAULTS = {"kmeans": (300, 1e-4), "gmm": (100, 1e-3)}
#: The options that decide the palette: one at most is given (k, a target or a palette).
PALETTE_DECIDERS = ("k", "quality", "max_size", "palette")
#: Seeds are drawn into numpy's generators, which take any non-negative integer;
#: the bound keeps them printable and storable as u64.
MAX_SEED = (1 << 64) - 1
#: An iteration budget no fit needs; past it a typo (an extra zero or two) runs for hours.
MAX_ITER = 1_000_000


# ------------------------------------------------------------------ checks
#: Values in messages: long lists and strings shortened (a 300-colour palette is one line).
_SHORT = reprlib.Repr()
_SHORT.maxlist = _SHORT.maxtuple = 4
_SHORT.maxstring = _SHORT.maxother = 60


def _listed(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``: items in a sentence."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _describe(value: object) -> str:
    return _SHORT.repr(value)


def _integer(name: str, low: int, high: int) -> Callable[[object], int]:
    def check_int(value: object) -> int:
        if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):
            value = int(value.strip(), 10)  # ASCII digits only: not "1_6", not other scripts
        if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
                or not low <= value <= high):
            msg = f"{name}={_describe(value)} must be an integer between {low} and {high}"
            raise OptionError(msg)
        return int(value)

    return check_int


#: A number as text: ASCII digits, a point and an exponent (as -k takes its digits).
_ASCII_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _real(name: str, low: float, high: float, *, open_low: bool) -> Callable[[object], float]:
    interval = f"{'(' if open_low else '['}{low:g}, {high:g}]"
    if math.isinf(high):
        interval = f"{'>' if open_low else '>='} {low:g}"

    def check_real(value: object) -> float:
        number = value
        if isinstance(value, str) and _ASCII_NUMBER.fullmatch(value.strip()):
            try:
                number = float(value.strip())
                if number.is_integer() and "." not in value and "e" not in value.lower():
                    number = int(number)  # echo "0" as 0, not 0.0
            except (ValueError, OverflowError):
                number = value
        ok = (not isinstance(number, bool) and isinstance(number, numbers.Real)
              and math.isfinite(number)
              and (low < number if open_low else low <= number) and number <= high)
        if not ok:
            what = "a fraction in" if not math.isinf(high) else "a finite number"
            msg = f"{name}={_describe(number)} must be {what} {interval}"
            raise OptionError(msg)
        return float(number)

    return check_real


def check_ks(ks: object) -> list[int]:
    """The distinct ``k`` values of ``ks`` (an iterable of integers 1..256), ascending.

    Raises
    ------
    OptionError
        ``ks`` is not an iterable of k values (a string, a number, a 0-d
        array), holds a value that is not a k, or is empty.
    """
    if (isinstance(ks, (str, bytes)) or not isinstance(ks, Iterable)
            or getattr(ks, "ndim", 1) == 0):
        msg = f"ks={_describe(ks)} must be an iterable of k values, e.g. [4, 16, 64]"
        raise OptionError(msg)
    given = list(ks)
    try:
        wanted = sorted({check("k", k) for k in given})
    except OptionError as error:
        msg = f"ks={_describe(given)}: {error}"
        raise OptionError(msg) from None
    if not wanted:
        msg = f"ks={_describe(given)} must hold at least one k between 1 and {MAX_K}"
        raise OptionError(msg)
    return wanted


def check_number(name: str, value: object) -> int | float:
    """Check a numeric parameter of an estimator (``k``, ``seed``, ``max_iter``, ``tol``).

    The ranges and messages of :data:`SPECS`, but a string is refused, as
    scikit-learn's estimators refuse one: ``encode(k="16")`` takes the
    command line's text, an estimator's parameters are Python numbers.
    """
    if isinstance(value, str):
        msg = f"{name}={_describe(value)} must be a number, not a string"
        raise OptionError(msg)
    return SPECS[name].checker(value)


def _choice(name: str, choices: tuple[str, ...]) -> Callable[[object], str]:
    def check_choice(value: object) -> str:
        if not isinstance(value, str) or value not in choices:
            msg = f"{name}={_describe(value)} must be one of {', '.join(map(repr, choices))}"
            raise OptionError(msg)
        return value

    return check_choice


def _quality(value: object) -> tuple[float, float]:
    """``"MIN-MAX"``, ``"MAX"``, a number or a (min, max) pair, in PSNR dB."""
    text = value
    if isinstance(value, str):
        parts = value.strip().split("-")
        if len(parts) == 2 and parts[0].strip() == "":  # "-5": a negative number
            parts = [value.strip()]
        try:
            value = tuple(float(part) for part in parts)
        except ValueError:
            value = text
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = (value,)
    ok = (isinstance(value, (tuple, list)) and len(value) in (1, 2)
          and all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                  and math.isfinite(v) and 0 < v <= MAX_QUALITY for v in value))
    if ok and len(value) == 2 and value[0] > value[1]:
        msg = f"quality={_describe(text)}: MIN {value[0]:g} is above MAX {value[1]:g}"
        raise OptionError(msg)
    if not ok:
        msg = (f"quality={_describe(text)} must be MAX or MIN-MAX, PSNR in dB above 0 and at "
               f"most {MAX_QUALITY:g} (e.g. 35-40)")
        raise OptionError(msg)
    low, high = (float(value[0]), float(value[-1]))
    return (low, high)


_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
               "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3,
               "t": 1000**4, "tb": 1000**4, "tib": 1024**4}


def _max_size(value: object) -> int:
    """Bytes: an integer, or text with a unit (``50000``, ``50k``, ``1.5MiB``)."""
    number = value
    if isinstance(value, str):
        text = value.strip().lower()
        digits = text.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = _SIZE_UNITS.get(text[len(digits):].strip())
        try:
            if not _ASCII_NUMBER.fullmatch(digits.strip()):  # not "1_000", nor other scripts
                raise decimal.InvalidOperation
            # Decimal, not float: 1.001M is 1,001,000 bytes exactly (1.001 * 1e6 is not).
            amount = decimal.Decimal(digits.strip()) * (unit or 1)
        except decimal.Overflow:  # 1e999999999k: a number, far out of range
            amount = decimal.Decimal(MAX_SIZE_LIMIT + 1)
        except decimal.InvalidOperation:
            amount = None
        if unit is not None and amount is not None and amount.is_finite():
            if not 1 <= amount <= MAX_SIZE_LIMIT:  # before int(): 1e999999999 is a huge int
                msg = f"max_size={_describe(value)} must be between 1 and {MAX_SIZE_LIMIT:,} bytes"
                raise OptionError(msg)
            if amount != amount.to_integral_value():
                msg = (f"max_size={_describe(value)} is not a whole number of bytes "
                       f"({amount.normalize():f})")
                raise OptionError(msg)
            number = int(amount)
    if isinstance(number, bool) or not isinstance(number, numbers.Integral):
        msg = (f"max_size={_describe(value)} must be a number of bytes, e.g. 50000, 50k or "
               "2MiB")
        raise OptionError(msg)
    if not 1 <= number <= MAX_SIZE_LIMIT:
        msg = f"max_size={_describe(value)} must be between 1 and {MAX_SIZE_LIMIT:,} bytes"
        raise OptionError(msg)
    return int(number)


def _palette(value: object) -> str | tuple[tuple[int, ...], ...]:
    """A palette file's path (read when the encode starts), or the colours themselves
    (RGB, or RGBA with straight alpha: all of one length)."""
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if isinstance(path, str) and path:
            return path
    else:
        try:
            colours = tuple(tuple(_channel(c) for c in row) for row in value)  # type: ignore[union-attr]
            ok = len({len(row) for row in colours}) == 1 and len(colours[0]) in (3, 4) and all(
                0 <= c <= 255 for row in colours for c in row)
            if ok and 1 <= len(colours) <= MAX_K:
                return colours
        except (TypeError, ValueError, IndexError):
            pass
    given = _describe(value) if not hasattr(value, "shape") else "array"
    if not isinstance(value, str) and hasattr(value, "__len__") and len(value) > _SHORT.maxlist:
        given += f" ({len(value)} entries)"  # the list was shortened
    msg = (f"palette={given} must be a "
           f"palette file or 1..{MAX_K} colours, each three (RGB) or four (RGBA) integers in "
           "0..255 (round floats first, e.g. numpy.rint(centres).astype(int))")
    raise OptionError(msg)


def _channel(value: object) -> int:
    """One palette channel: an integer (numpy's included), never a bool or a float,
    which ``int()`` would quietly truncate."""
    if isinstance(value, bool):
        raise TypeError(value)
    return operator.index(value)  # type: ignore[arg-type]


def _colour(value: object) -> tuple[int, int, int]:
    """An opaque colour: ``#rrggbb``, ``#rgb``, a CSS name, ``r,g,b``, ``rgb(...)`` or a triple.

    The one colour parser of kpal (``background=``, ``--background``,
    :func:`kpal.cluster.alpha.flatten`); the message names the option, the
    value and what is wrong with it.
    """
    reason = None
    rgb = None
    if isinstance(value, str):
        rgb, reason = _colour_text(value.strip())
    elif isinstance(value, (tuple, list)) and len(value) == 3 and all(
            isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in value):
        rgb = tuple(int(c) for c in value)
        if not all(0 <= c <= 255 for c in rgb):
            rgb, reason = None, "each of r,g,b must be 0..255"
    if rgb is None:
        msg = (f"background={_describe(value)} must be a colour: #rrggbb, #rgb, a name such as "
               f"white, or r,g,b with each 0..255{f' ({reason})' if reason else ''}")
        raise OptionError(msg)
    return rgb  # type: ignore[return-value]


def _colour_text(text: str) -> tuple[tuple[int, ...] | None, str | None]:
    """The colour of a text (Pillow's ``ImageColor`` names and forms), or why not."""
    from PIL import ImageColor

    if "," in text and not text.lower().startswith(("rgb", "hsl", "hsv")):
        fields = [f.strip() for f in text.split(",")]
        if len(fields) != 3 or not all(f.isdigit() for f in fields):
            return None, "r,g,b needs three integers"
        text = f"rgb({text})"
    if text.startswith("#") and len(text) not in (4, 7):
        return None, ("a colour with alpha: a background is opaque" if len(text) in (5, 9)
                      else "a hex colour needs 3 or 6 hex digits after '#'")
    try:
        rgb = ImageColor.getrgb(text)
    except ValueError:
        return None, ("a hex colour needs 3 or 6 hex digits after '#'" if text.startswith("#")
                      else "not a known colour name" if text else "empty")
    if len(rgb) != 3:
        return None, "a colour with alpha: a background is opaque"
    if not all(0 <= c <= 255 for c in rgb):
        return None, "each of r,g,b must be 0..255"
    return tuple(int(c) for c in rgb), None


@dataclass(frozen=True)
class Spec:
    """One encode option: what it is called, what it takes and what it means.

    Attributes
    ----------
    name : str
        The keyword in the Python API and ``im.save``.
    default : object
        Value when the option is not given (``None``: decided later, see help).
    help : str
        One sentence for ``--help`` and the docs.
    flags : tuple of str
        Command-line spellings, e.g. ``("-k", "--colors")``.
    metavar : str
        Placeholder shown in ``--help``.
    checker : callable
        Takes a value (or the text of a command-line flag), returns it
        normalized or raises :class:`~kpal.errors.OptionError`.
    choices : tuple of str
        The accepted values of a choice option, else empty.
    """

    name: str
    default: Any
    help: str
    flags: tuple[str, ...]
    metavar: str
    checker: Callable[[object], Any]
    choices: tuple[str, ...] = ()

    def check(self, value: object) -> Any:
        """Return ``value`` normalized, ``None`` kept for options that default later."""
        if value is None and self.default is None:
            return None
        return self.checker(value)


#: Every encode option, in the order ``--help`` lists them.
SPECS: dict[str, Spec] = {
    spec.name: spec
    for spec in (
        Spec("k", None, "Number of colours, 1..256 (default 16; a P image keeps its own "
             "palette unless K is given and smaller than its number of colours).",
             ("-k", "--colors"), "K",
             _integer("k", 1, MAX_K)),
        Spec("method", "kmeans", "How the palette is chosen: kmeans or gmm (a Gaussian "
             "mixture fitted by EM).", ("--method",), "|".join(METHODS),
             _choice("method", METHODS), METHODS),
        Spec("init", "k-means++", "How the clustering chooses its starting centres.",
             ("--init",), "|".join(INITS), _choice("init", INITS), INITS),
        Spec("seed", 0, "Random seed; the same input and seed give byte-identical files.",
             ("--seed",), "N", _integer("seed", 0, MAX_SEED)),
        Spec("max_iter", None, "Maximum iterations (default 300 for kmeans, at each coarse-to-fine "
             "level; 100 for gmm).",
             ("--max-iter",), "N", _integer("max_iter", 1, MAX_ITER)),
        Spec("tol", None, "Convergence tolerance (default 1e-4 for kmeans, 1e-3 for gmm).",
             ("--tol",), "X", _real("tol", 0.0, math.inf, open_low=False)),
        Spec("sample", None, "Fit on this fraction of the pixels (0 < F <= 1), then assign "
             "every pixel to the nearest palette colour.", ("--sample",), "F",
             _real("sample", 0.0, 1.0, open_low=True)),
        Spec("coding", "fixed", "Index payload: fixed (ceil(log2 k) bits each), radix "
             "(log2 k bits each, to within 1.6 %), entropy (one adaptive context model + rANS) or "
             "context (context mixing of several models, smallest; decoded pixel by pixel, "
             "needs kpal[fast] above 16384 pixels).",
             ("--coding",), "|".join(CODINGS), _choice("coding", CODINGS), CODINGS),
        Spec("dither", "none", "Map pixels to the palette by nearest colour (none), "
             "Floyd-Steinberg error diffusion (fs) or a blue-noise threshold map (ordered).",
             ("--dither",), "|".join(DITHERS), _choice("dither", DITHERS), DITHERS),
        Spec("dither_strength", 1.0, "Fraction of the dithering applied, 0..1 (0 = none).",
             ("--dither-strength",), "F", _real("dither_strength", 0.0, 1.0, open_low=False)),
        Spec("space", "rgb", "Colour space of the clustering: rgb (PSNR-optimal, the "
             "textbook k-means) or oklab (perceptual).", ("--space",), "|".join(SPACES),
             _choice("space", SPACES), SPACES),
        Spec("palette", None, "Map onto this palette instead of fitting one: a .kpal, "
             ".gpl, .act, PNG-8/GIF or hex-colour text file.", ("--palette",), "FILE",
             _palette),
        Spec("quality", None, "Choose the smallest k whose PSNR reaches MAX dB, accepting "
             "down to MIN; exit 99 (no file) if k=256 cannot reach MIN.", ("--quality",),
             "MIN-MAX", _quality),
        Spec("max_size", None, "Choose the largest k whose file fits in this many bytes "
             "(50000, 50k, 2MiB).", ("--max-size",), "BYTES", _max_size),
        Spec("background", None, "Flatten transparency onto this colour (#rrggbb, a name "
             "or r,g,b; sRGB) for an opaque result.", ("--background",), "COLOR", _colour),
    )
}

#: Names people reach for, and what kpal calls them (used in the unknown-option message).
_HINTS = {
    "colors": "k", "colours": "k", "n_colors": "k", "n_colours": "k", "palette_size": "k",
    "packing": "coding", "entropy": "coding='entropy'", "random_state": "seed",
    "n_iter": "max_iter", "iterations": "max_iter",
}


def check(name: str, value: object) -> Any:
    """Check one option's value; return it normalized.

    Parameters
    ----------
    name : str
        A key of :data:`SPECS`.
    value : object

    Raises
    ------
    OptionError
        The value is of the wrong type or out of range; the message names the
        option, the value and the accepted range.

    Examples
    --------
    >>> check("k", 16)
    16
    >>> check("k", 300)
    Traceback (most recent call last):
    ...
    kpal.errors.OptionError: k=300 must be an integer between 1 and 256
    """
    return SPECS[name].check(value)


#: True while :func:`flag_names` is in effect (in this thread or task).
_FLAG_NAMES: ContextVar[bool] = ContextVar("kpal_flag_names", default=False)


@contextlib.contextmanager
def flag_names() -> Iterator[None]:
    """Name options by their command-line flags in the messages of conflicting options.

    The command line builds :class:`EncodeOptions` inside this, so that
    ``-k 16 --quality 40`` is refused as "-k and --quality both decide the
    palette", where the Python API says "k and quality".
    """
    token = _FLAG_NAMES.set(True)
    try:
        yield
    finally:
        _FLAG_NAMES.reset(token)


def _name(name: str) -> str:
    """An option as a message names it: ``max_size``, or ``--max-size`` on the command line."""
    return SPECS[name].flags[0] if _FLAG_NAMES.get() else name


def _setting(name: str, value: object) -> str:
    """An option and its value: ``dither='fs'``, or ``--dither fs`` on the command line."""
    if not _FLAG_NAMES.get():
        return f"{name}={value!r}"
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{SPECS[name].flags[0]} {shown}"


@dataclass(frozen=True)
class EncodeOptions:
    """The options of one encode, validated when built (see :data:`SPECS`).

    Parameters
    ----------
    k : int, optional
        Number of colours, 1..256. Default: 16, or a "P" image's own palette.
    method : {"kmeans", "gmm"}, default "kmeans"
    init : {"k-means++", "random"}, default "k-means++"
    seed : int, default 0
    max_iter : int, optional
        Default 300 for k-means, 100 for EM (see :attr:`iterations`).
    tol : float, optional
        Default 1e-4 for k-means, 1e-3 for EM (see :attr:`tolerance`).
    sample : float in (0, 1], optional
        Fit on this fraction of the pixels, then assign every pixel.
    coding : {"fixed", "radix", "entropy", "context"}, default "fixed"
    dither : {"none", "fs", "ordered"}, default "none"
        Nearest colour, Floyd--Steinberg error diffusion, or ordered (blue noise).
    dither_strength : float in [0, 1], default 1.0
    space : {"rgb", "oklab"}, default "rgb"
        Where the clustering measures distances; the palette is stored as sRGB.
    palette : path or sequence of (r, g, b) or (r, g, b, a), optional
        Map onto this palette instead of fitting one (with alpha: an RGBA
        palette, stored as given).
    quality : (min, max) PSNR in dB, optional
        Choose the smallest k reaching ``max`` (accepting down to ``min``).
    max_size : int, optional
        Choose the largest k whose file fits in this many bytes.
    background : (r, g, b), optional
        Flatten transparency onto this colour.

    Raises
    ------
    OptionError
        Any value of the wrong type or out of range.

    Examples
    --------
    >>> EncodeOptions(k=8, coding="radix").iterations
    300
    >>> EncodeOptions.from_keywords({"colours": 8})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    kpal.errors.OptionError: unknown option 'colours' (kpal calls it k); accepted: k, method, ...
    """

    k: int | None = None
    method: str = "kmeans"
    init: str = "k-means++"
    seed: int = 0
    max_iter: int | None = None
    tol: float | None = None
    sample: float | None = None
    coding: str = "fixed"
    dither: str = "none"
    dither_strength: float = 1.0
    space: str = "rgb"
    palette: str | tuple[tuple[int, ...], ...] | None = None
    quality: tuple[float, float] | None = None
    max_size: int | None = None
    background: tuple[int, int, int] | None = None

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = SPECS[field.name].check(getattr(self, field.name))
            object.__setattr__(self, field.name, value)
        # What decides the palette: k, a target (quality or max_size) or a given palette.
        chosen = [name for name in PALETTE_DECIDERS if getattr(self, name) is not None]
        if len(chosen) > 1:
            names = [_name(name) for name in chosen]
            which = (f"{names[0]} and {names[1]} both" if len(names) == 2
                     else f"{', '.join(names[:-1])} and {names[-1]} all")
            msg = f"{which} decide the palette; give one"
            raise OptionError(msg)
        fitted_otherwise = [_setting(name, getattr(self, name)) for name, usual in
                            (("method", "kmeans"), ("space", "rgb"), ("sample", None))
                            if getattr(self, name) != usual]
        if chosen and chosen[0] in ("quality", "max_size") and fitted_otherwise:
            msg = (f"{_name(chosen[0])} chooses k with its own k-means search (in RGB, or "
                   f"premultiplied RGBA with transparency); "
                   f"{_listed(fitted_otherwise)} cannot be combined with it")
            raise OptionError(msg)
        if self.space != "rgb" and self.method != "kmeans":
            msg = (f"{_setting('method', self.method)} is available with "
                   f"{_setting('space', 'rgb')} only; {_setting('space', self.space)} "
                   "clusters with kmeans")
            raise OptionError(msg)
        if chosen == ["max_size"] and self.dither != "none" and self.dither_strength > 0:
            msg = (f"{_name('max_size')} measures the undithered file, and "
                   f"{_setting('dither', self.dither)} changes its size: drop one")
            raise OptionError(msg)
        if chosen == ["quality"] and self.dither != "none" and self.dither_strength > 0:
            msg = (f"{_name('quality')} measures the undithered PSNR, and "
                   f"{_setting('dither', self.dither)} lowers it (by 1-3 dB): drop one")
            raise OptionError(msg)
        if self.dither == "none" and self.dither_strength != 1.0:
            msg = (f"{_setting('dither_strength', self.dither_strength)} has no effect "
                   f"without {_name('dither')} ('fs' or 'ordered')")
            raise OptionError(msg)
        fitting = [_setting(name, getattr(self, name)) for name, usual in
                   (("method", "kmeans"), ("sample", None), ("init", "k-means++"),
                    ("max_iter", None), ("tol", None)) if getattr(self, name) != usual]
        if chosen == ["palette"] and self.seed != 0 and self.dither != "ordered":
            fitting.append(_setting("seed", self.seed))  # it only shifts an ordered pattern
        if chosen == ["palette"] and fitting:
            msg = (f"{_name('palette')} maps onto given colours: {_listed(fitting)} "
                   f"{'has' if len(fitting) == 1 else 'have'} nothing to fit")
            raise OptionError(msg)

    # ---------------------------------------------------------- derived values
    @property
    def iterations(self) -> int:
        """``max_iter``, or the method's default when it was not given."""
        return METHOD_DEFAULTS[self.method][0] if self.max_iter is None else self.max_iter

    @property
    def tolerance(self) -> float:
        """``tol``, or the method's default when it was not given."""
        return METHOD_DEFAULTS[self.method][1] if self.tol is None else self.tol

    def replace(self, **changes: Any) -> EncodeOptions:
        """A copy with some options changed (validated like the constructor)."""
        _reject_unknown(changes, names())
        return dataclasses.replace(self, **changes)

    # ---------------------------------------------------------- the surfaces
    @classmethod
    def from_keywords(cls, keywords: Mapping[str, Any], *,
                      aliases: Mapping[str, str] | None = None) -> EncodeOptions:
        """Build options from keyword arguments, rejecting unknown names.

        Parameters
        ----------
        keywords : mapping of str to object
            Option names (or ``aliases``) to values; ``None`` values count as
            not given.
        aliases : mapping of str to str, optional
            Extra accepted names and the option each stands for (``im.save``
            accepts ``colors`` for ``k``). Giving an option under two names
            is an error.

        Raises
        ------
        OptionError
            An unknown name, an option given twice, or a bad value.
        """
        aliases = dict(aliases or {})
        _reject_unknown(keywords, (*names(), *aliases))
        values: dict[str, Any] = {}
        given_as: dict[str, str] = {}
        for key, value in keywords.items():
            if value is None:
                continue
            name = aliases.get(key, key)
            if name in values and values[name] != value:
                msg = (f"{given_as[name]}={values[name]!r} and {key}={value!r} both set "
                       f"{name}: give one")
                raise OptionError(msg)
            values[name] = value
            given_as[name] = key
        for name, key in given_as.items():
            if key != name:  # the message names the keyword the caller wrote
                try:
                    SPECS[name].check(values[name])
                except OptionError as e:
                    raise OptionError(str(e).replace(f"{name}=", f"{key}=", 1)) from None
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """Every option and its value (``None`` where the default applies later)."""
        return dataclasses.asdict(self)


_dataclass_init = EncodeOptions.__init__


@functools.wraps(_dataclass_init)  # help() and IDEs show the fields and their defaults
def _checked_init(self, *args: Any, **kwargs: Any) -> None:
    """The dataclass constructor, an unknown option name raising OptionError as everywhere."""
    _reject_unknown(kwargs, names())
    _dataclass_init(self, *args, **kwargs)


EncodeOptions.__init__ = _checked_init


def names() -> tuple[str, ...]:
    """The option names, in :data:`SPECS` order."""
    return tuple(SPECS)


def _reject_unknown(keywords: Iterable[str], accepted: Iterable[str]) -> None:
    accepted = tuple(accepted)
    for key in keywords:
        if key in accepted:
            continue
        hint = _HINTS.get(key)
        if hint is None:
            close = difflib.get_close_matches(str(key), accepted, n=1)
            hint = close[0] if close else None
        hint_text = f" (kpal calls it {hint})" if hint else ""
        msg = f"unknown option {key!r}{hint_text}; accepted: {', '.join(accepted)}"
        raise OptionError(msg)
