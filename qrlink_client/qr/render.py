"""Render a QR payload as PNG, SVG or terminal text.

The payload is binary (it always holds 0x00 and usually bytes >= 0x80), so it is encoded in byte mode with no
ECI designator: an ECI header would tell readers to transcode the bytes as text and change them. Error
correction is level Q, as in the MSC examples, and is not "boosted" so every rendering uses exactly that
level.
"""

from __future__ import annotations

import io
from itertools import zip_longest

import segno

__all__ = ["DEFAULT_BORDER", "DEFAULT_SCALE", "make_symbol", "render_png", "render_svg", "render_terminal"]

DEFAULT_SCALE = 8
"""Pixels per module in PNG and SVG output."""

DEFAULT_BORDER = 4
"""Quiet-zone width in modules, the minimum ISO/IEC 18004 asks for."""


def make_symbol(data: bytes) -> segno.QRCode:
    """Build the segno QR symbol for ``data``: byte mode, error correction Q, no ECI, never Micro QR."""
    return segno.make_qr(bytes(data), error="q", mode="byte", eci=False, boost_error=False)


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


_HALF_BLOCKS = {
    (False, False): " ",
    (True, False): "\u2580",  # upper half block
    (False, True): "\u2584",  # lower half block
    (True, True): "\u2588",  # full block
}


def render_terminal(data: bytes, *, border: int = DEFAULT_BORDER, invert: bool = True) -> str:
    """Render ``data`` as Unicode half blocks, two module rows per text line, one line per ``\\n``.

    With ``invert`` (the default) the *light* modules are drawn as blocks, which shows dark-on-light on the
    usual light-text-on-dark-background terminal; pass ``invert=False`` for dark text on a light background.
    """
    rows = [[bool(module) for module in row] for row in make_symbol(data).matrix_iter(scale=1, border=border)]
    # Modules are True when dark; a block is drawn where the module should appear in the foreground colour.
    ink = [[module != invert for module in row] for row in rows]
    width = len(ink[0])
    # An odd final row is paired with a light (quiet-zone) row; a light module is inked exactly when
    # inverting.
    pad = [invert] * width
    lines = []
    for top, bottom in zip_longest(ink[0::2], ink[1::2], fillvalue=pad):
        lines.append("".join(_HALF_BLOCKS[pair] for pair in zip(top, bottom, strict=True)))
    return "\n".join(lines) + "\n"
