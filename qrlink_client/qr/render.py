"""Render a QR payload as PNG, SVG or terminal text.

The payload is binary (it always holds 0x00 and usually bytes >= 0x80), so it is encoded in byte mode with no
ECI designator: an ECI header would tell readers to transcode the bytes as text and change them.

Images (PNG, SVG) use error correction level Q, as in the MSC examples, not "boosted", so every image uses
exactly that level. A terminal has little room: :func:`terminal_symbol` keeps Q when the code fits the window
and otherwise goes down to M, then L (the lowest level the QR specification has), which is what lets a typical
Gen-1 code fit an 80x24 terminal. Error correction protects against damage and glare; a code on a screen
has little of either.
"""

from __future__ import annotations

import io
from itertools import zip_longest

import segno

__all__ = [
    "DEFAULT_BORDER",
    "DEFAULT_SCALE",
    "TERMINAL_BORDER",
    "make_symbol",
    "render_png",
    "render_svg",
    "render_terminal",
    "terminal_extent",
    "terminal_symbol",
]

DEFAULT_SCALE = 8
"""Pixels per module in PNG and SVG output."""

DEFAULT_BORDER = 4
"""Quiet-zone width in modules in images, the minimum ISO/IEC 18004 asks for."""

TERMINAL_BORDER = 2
"""Quiet-zone width in modules in the terminal. Less than an image's four, so that more codes fit the window;
scanners accept it on a screen, where the code is surrounded by a contrasting background."""

_TERMINAL_LEVELS = ("Q", "M", "L")
"""Error-correction levels tried for the terminal, most robust first."""

_BLACK_ON_WHITE = "\x1b[30;47m"
_RESET = "\x1b[0m"

_HALF_BLOCKS = {
    (False, False): " ",
    (True, False): "\u2580",  # upper half block
    (False, True): "\u2584",  # lower half block
    (True, True): "\u2588",  # full block
}


def make_symbol(data: bytes, *, error: str = "Q") -> segno.QRCode:
    """Build the segno QR symbol for ``data``: byte mode, error correction ``error`` (Q unless told), no ECI,
    never Micro QR."""
    return segno.make_qr(bytes(data), error=error.lower(), mode="byte", eci=False, boost_error=False)


def render_png(data: bytes, *, scale: int = DEFAULT_SCALE, border: int = DEFAULT_BORDER) -> bytes:
    """Render ``data`` as a black-on-white PNG image and return the file's bytes."""
    out = io.BytesIO()
    make_symbol(data).save(out, kind="png", scale=scale, border=border)
    return out.getvalue()


def render_svg(data: bytes, *, scale: int = DEFAULT_SCALE, border: int = DEFAULT_BORDER) -> str:
    """Render ``data`` as a standalone SVG document (black on white)."""
    out = io.BytesIO()
    make_symbol(data).save(out, kind="svg", scale=scale, border=border, xmldecl=False)
    return out.getvalue().decode("utf-8")


def terminal_extent(symbol: segno.QRCode, *, border: int = TERMINAL_BORDER) -> tuple[int, int]:
    """The ``(columns, lines)`` :func:`render_terminal` needs for ``symbol``: one column per module, two
    module rows per line."""
    width, height = (int(side) for side in symbol.symbol_size(scale=1, border=border))
    return width, (height + 1) // 2


def terminal_symbol(
    data: bytes,
    *,
    max_columns: int | None = None,
    max_lines: int | None = None,
    border: int = TERMINAL_BORDER,
) -> segno.QRCode:
    """The symbol to draw ``data`` in a terminal of at most ``max_columns`` by ``max_lines`` (``None``: no
    limit): error correction Q if that fits, else M, else L. If even L does not fit, the L symbol (the
    smallest) is returned; compare :func:`terminal_extent` with the window to tell the user."""
    for level in _TERMINAL_LEVELS[:-1]:
        symbol = make_symbol(data, error=level)
        columns, lines = terminal_extent(symbol, border=border)
        if (max_columns is None or columns <= max_columns) and (max_lines is None or lines <= max_lines):
            return symbol
    return make_symbol(data, error=_TERMINAL_LEVELS[-1])


def render_terminal(
    data: bytes | segno.QRCode,
    *,
    color: bool = True,
    border: int = TERMINAL_BORDER,
    invert: bool = False,
) -> str:
    """Draw a QR code with Unicode half blocks, two module rows per text line, each line ending in ``\\n``.

    ``data`` is the payload (drawn with error correction Q) or a symbol from :func:`terminal_symbol`.

    With ``color`` (the default) every line, quiet zone included, is black on white (ANSI SGR 30;47, reset
    before each line break), so the code is right on light and dark terminals alike. Without it the text has
    no escape codes: dark modules are drawn as blocks in the terminal's foreground colour, which is right on a
    light background and shows the code inverted on a dark one; ``invert=True`` draws the light modules
    instead, for a dark background. ``invert`` is ignored with ``color``.
    """
    symbol = data if isinstance(data, segno.QRCode) else make_symbol(data)
    # Modules are True when dark; a block is drawn where the foreground ink goes.
    ink_dark = color or not invert
    rows = [[bool(module) == ink_dark for module in row] for row in symbol.matrix_iter(scale=1, border=border)]
    width = len(rows[0])
    # An odd final row is paired with a light row, one more line of quiet zone.
    pad = [not ink_dark] * width
    lines = []
    for top, bottom in zip_longest(rows[0::2], rows[1::2], fillvalue=pad):
        text = "".join(_HALF_BLOCKS[pair] for pair in zip(top, bottom, strict=True))
        lines.append(f"{_BLACK_ON_WHITE}{text}{_RESET}" if color else text)
    return "\n".join(lines) + "\n"
