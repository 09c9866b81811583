"""A ``.kpal`` file in a web browser: one self-contained HTML page.

The page is the JavaScript viewer of ``js/`` (``viewer.html``, ``viewer.css``,
``viewer.js`` and the decoder ``kpal.js``) with everything inlined: the style sheet,
the decoder (an import map sends ``./kpal.js`` to a ``data:`` URL, so the viewer's own
``import`` works without fetching anything), the viewer's script and, when a file is
given, the file's bytes as base64. Browsers refuse to load module files from
``file://``; an inlined page has none to load, so it opens from anywhere.

``js/viewer.html`` itself is such a page without a file: its inlined regions are
written by :func:`update_viewer` (``python -m kpal.view --update-viewer``) and
checked by the tests, so the sources in ``js/`` stay the only ones edited by hand.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import os
import re
import sys
import tempfile
import webbrowser
from pathlib import Path
from typing import IO

from PIL import Image

from kpal import codec
from kpal.errors import KpalError, warn

__all__ = ["JS_DIR", "to_html", "to_iframe", "view", "update_viewer"]

#: The viewer's sources: installed beside this module as ``kpal/_js`` (package data of
#: a wheel), or js/ of a source checkout (kpal installed with ``pip install -e``).
JS_DIR = next((folder for folder in (Path(__file__).resolve().parent / "_js",
                                     Path(__file__).resolve().parent.parent / "js")
               if (folder / "kpal.js").is_file()), Path(__file__).resolve().parent.parent / "js")
#: ``<!-- inline NAME -->`` ... ``<!-- /inline NAME -->`` in viewer.html.
_REGION = re.compile(
    r"(<!-- inline (?P<name>[\w.]+) -->\n)(?P<body>.*?)(<!-- /inline (?P=name) -->)", re.S)
_BASE64_LINE = 76


def _asset(name: str) -> str:
    path = JS_DIR / name
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        msg = f"{path}: the viewer's files are missing (a broken kpal install?)"
        raise FileNotFoundError(msg) from None


def _script_body(text: str, name: str) -> str:
    # Inside <script> only "</script" (any case) ends the element early.
    if re.search(r"</script", text, re.I):
        msg = f"{name} contains '</script', which cannot be inlined in a page"
        raise ValueError(msg)
    return text


def _base64_lines(data: bytes) -> str:
    text = base64.b64encode(data).decode("ascii")
    return "\n".join(text[i : i + _BASE64_LINE] for i in range(0, len(text), _BASE64_LINE))


def _region(name: str, data: bytes | None, file_name: str, file_bytes: int | None) -> str:
    if name == "viewer.css":
        return f"<style>\n{_script_body(_asset(name), name)}</style>\n"
    if name == "kpal.js":
        url = "data:text/javascript;base64," + base64.b64encode(
            _asset(name).encode("utf-8")).decode("ascii")
        imports = json.dumps({"imports": {"./kpal.js": url}})
        return f'<script type="importmap">\n{imports}\n</script>\n'
    if name == "viewer.js":
        return f'<script type="module">\n{_script_body(_asset(name), name)}</script>\n'
    if name == "file":
        if data is None:
            return ""
        # A name read from the file system may hold bytes that are not UTF-8
        # (surrogate escapes): the page shows U+FFFD for them.
        shown = file_name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        problem = _unseen_problem(data, file_bytes)
        said = f' data-problem="{html.escape(problem)}"' if problem else ""
        if file_bytes is not None and file_bytes != len(data):  # only its first bytes are here
            said += f' data-bytes="{file_bytes}"'
        return (f'<script type="application/octet-stream" id="kpal-embedded" '
                f'data-name="{html.escape(shown)}"{said}>\n{_base64_lines(data)}\n</script>\n')
    msg = f"viewer.html: unknown inline region {name!r}"
    raise ValueError(msg)


def _unseen_problem(data: bytes, file_bytes: int | None) -> str | None:
    """What is wrong with a file that the page's reader cannot tell by itself.

    A file in a coding the page's reader does not decode (3): the page can
    only say it is valid as far as its header goes; this reader decodes it,
    so a damaged one is shown as damaged. A file longer than its header
    implies, of which the page holds only the first bytes: this reader
    measured its length.
    """
    try:
        if codec.read_header(data)[0].coding != 3 and file_bytes in (None, len(data)):
            return None
        return codec.inspect(data, file_bytes=file_bytes)["problem"]
    except (KpalError, Image.DecompressionBombError):
        return None


def _fill(template: str, data: bytes | None, file_name: str,
          file_bytes: int | None = None) -> str:
    return _REGION.sub(lambda m: m.group(1) + _region(m.group("name"), data, file_name,
                                                      file_bytes) + m.group(4), template)


def to_html(source: bytes | bytearray | memoryview | str | os.PathLike | IO[bytes] | None = None,
            *, name: str | None = None, file_bytes: int | None = None) -> str:
    """Build one self-contained HTML page that shows a ``.kpal`` file.

    The page needs no network and no other file: the viewer, the decoder and the
    file are all inside it. A file whose header is valid but whose checksum or
    payload is not still gets a page, which shows the problem.

    Parameters
    ----------
    source : bytes, path, binary file object or None
        The ``.kpal`` file; None for the empty viewer (``js/viewer.html``).
    name : str, optional
        The name the page shows; default the path's name, else ``"image.kpal"``.
    file_bytes : int, optional
        The file's length, when ``source`` is only the first bytes
        :func:`kpal.codec.read_shown` gave of a file longer than its header
        implies. Such a file's page holds those bytes, not the rest.

    Returns
    -------
    str
        The HTML page.

    Raises
    ------
    FormatError
        ``source`` is not a ``.kpal`` file or its header is invalid.
    OSError
        The path cannot be read, or the viewer's files are missing.

    Examples
    --------
    >>> page = to_html()  # the empty viewer, as js/viewer.html
    >>> '<canvas id="canvas"' in page and "data:text/javascript;base64," in page
    True
    """
    data = None
    if source is not None:
        if name is None:
            name = Path(source).name if isinstance(source, (str, os.PathLike)) else "image.kpal"
        # a long file is shown, and said, not read whole
        data, file_bytes = codec.read_shown(source, file_bytes)
    return _fill(_asset("viewer.html"), data, name or "image.kpal", file_bytes)


def to_iframe(source: bytes | bytearray | memoryview | str | os.PathLike | IO[bytes] | None = None,
              *, name: str | None = None, height: int = 600) -> str:
    """The page of :func:`to_html` in an ``<iframe srcdoc>``, for a notebook cell.

    The page styles its whole document (its layout is a grid on ``<body>``):
    put straight into a notebook's output it would take over the notebook's
    own layout. Inside an iframe it keeps to its box.
    ``IPython.display.HTML(kpal.view.to_iframe("photo.kpal"))`` shows it.

    Parameters
    ----------
    source, name
        As for :func:`to_html`.
    height : int, default 600
        The frame's height in CSS pixels; its width is that of the cell.

    Returns
    -------
    str
        One ``<iframe>`` element.

    Examples
    --------
    >>> to_iframe(height=400).startswith('<iframe srcdoc="&lt;!doctype html&gt;')
    True
    """
    if isinstance(height, bool) or not isinstance(height, int) or height < 1:
        msg = f"height={height!r} must be a positive whole number of pixels"
        raise ValueError(msg)
    page = html.escape(to_html(source, name=name), quote=True)
    return (f'<iframe srcdoc="{page}" style="width: 100%; height: {height}px; border: 0" '
            'title="kpal viewer"></iframe>')


def view(path: str | os.PathLike, open_browser: bool = True,
         output: str | os.PathLike | None = None, data: bytes | None = None,
         file_bytes: int | None = None) -> Path:
    """Write the page of :func:`to_html` for a file and open it in the web browser.

    Parameters
    ----------
    path : str or PathLike
        The ``.kpal`` file.
    open_browser : bool, default True
        Open the page with :mod:`webbrowser`.
    output : str or PathLike, optional
        Where to write the page (replaced if it exists); default a new temporary
        folder, ``NAME.html`` inside it.
    data : bytes, optional
        The file's bytes, already read (``path`` then only names it).
    file_bytes : int, optional
        The file's length, when ``data`` holds only its first bytes (as for
        :func:`to_html`).

    Returns
    -------
    Path
        The page written.

    Raises
    ------
    FormatError
        Not a ``.kpal`` file, or its header is invalid.
    OSError
        The file cannot be read or the page cannot be written.
    """
    from kpal.io import write_atomic

    source = Path(path)
    page = to_html(source if data is None else data, name=source.name,
                   file_bytes=None if data is None else file_bytes).encode("utf-8")
    if output is None:
        target = Path(tempfile.mkdtemp(prefix="kpal-view-")) / f"{source.stem}.html"
    else:
        target = Path(output)
    write_atomic(target, page, force=True)
    if open_browser and not webbrowser.open(target.resolve().as_uri()):
        warn(f"no web browser could be started: open {target} yourself")
    return target


def update_viewer(check: bool = False) -> bool:
    """Rewrite the inlined regions of ``js/viewer.html`` from the sources beside it.

    Parameters
    ----------
    check : bool, default False
        Only compare; write nothing.

    Returns
    -------
    bool
        True when the file was already up to date.
    """
    path = JS_DIR / "viewer.html"
    current = path.read_text(encoding="utf-8")
    wanted = to_html()
    if current != wanted and not check:
        path.write_text(wanted, encoding="utf-8")
    return current == wanted


def main(argv: list[str] | None = None) -> int:
    """``python -m kpal.view FILE`` or ``python -m kpal.view --update-viewer [--check]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", help="A .kpal file to open in the browser.")
    parser.add_argument("--update-viewer", action="store_true",
                        help="Rewrite the inlined regions of js/viewer.html.")
    parser.add_argument("--check", action="store_true",
                        help="With --update-viewer: exit 1 if it is out of date, write nothing.")
    args = parser.parse_args(argv)
    if args.update_viewer:
        fresh = update_viewer(check=args.check)
        print("js/viewer.html is up to date" if fresh else
              ("js/viewer.html is out of date" if args.check else "js/viewer.html updated"))
        return 1 if args.check and not fresh else 0
    if not args.file:
        parser.error("give a .kpal file or --update-viewer")
    print(view(args.file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
