"""Drawing a QR code in the terminal: ``qrlink qr render`` and the QR code ``login``, ``grant`` and ``demo`` show.

- :func:`add_color_option` / :func:`color_enabled`: ``--no-color`` and ``$NO_COLOR`` (https://no-color.org).
- :func:`terminal_size`: the window the text goes to.
- :func:`draw_qr`: the code as half-block text sized for that window, and advice when it does not fit.

The QR libraries are imported when a code is drawn, so ``--help`` stays quick.
"""

from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import dataclass
from typing import TextIO

__all__ = ["NO_COLOR_ENV", "TerminalQr", "add_color_option", "color_enabled", "draw_qr", "terminal_size"]

NO_COLOR_ENV = "NO_COLOR"


def add_color_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--no-color`` to a command that draws a QR code in the terminal."""
    parser.add_argument(
        "--no-color",
        action="store_true",
        help=(
            "draw the terminal QR code without colours: plain half blocks in the terminal's own colours, right "
            f"on a light background (also when ${NO_COLOR_ENV} is set, or TERM=dumb). By default it is drawn black "
            "on white, which scans on any background"
        ),
    )


def color_enabled(no_color: bool = False) -> bool:
    """Whether to draw in colour: not with ``--no-color``, a non-empty ``$NO_COLOR`` or ``TERM=dumb``."""
    return not no_color and not os.environ.get(NO_COLOR_ENV) and os.environ.get("TERM") != "dumb"


def _env_size(name: str) -> int:
    try:
        return max(int(os.environ.get(name, "")), 0)
    except ValueError:
        return 0


def _window(stream: TextIO) -> os.terminal_size | None:
    """The size of the terminal ``stream`` is on, else of the one stderr, stdout or stdin is on (output
    redirected to a file is usually shown in the same window), else ``None``."""
    candidates = []
    try:
        candidates.append(stream.fileno())
    except (AttributeError, OSError, ValueError):
        pass
    for fd in [*candidates, 2, 1, 0]:
        try:
            size = os.get_terminal_size(fd)
        except (OSError, ValueError):
            continue
        if size.columns and size.lines:
            return size
    return None


def terminal_size(stream: TextIO) -> os.terminal_size:
    """The size of the window ``stream`` writes to.

    As :func:`shutil.get_terminal_size`: ``$COLUMNS`` and ``$LINES`` win, then the terminal itself, then 80x24.
    Unlike it, the terminal asked is first the one of ``stream`` (the QR code of ``login`` goes to stderr), then
    any the process's standard streams are on, not only stdout's (which may be a pipe).
    """
    columns, lines = _env_size("COLUMNS"), _env_size("LINES")
    if not (columns and lines):
        actual = _window(stream) or shutil.get_terminal_size()
        columns, lines = columns or actual.columns, lines or actual.lines
    return os.terminal_size((columns, lines))


@dataclass(frozen=True)
class TerminalQr:
    """A QR code drawn for a terminal window."""

    text: str
    """The lines to write as they are, each ending in ``\\n``."""
    columns: int
    lines: int
    """Its size in character cells."""
    error: str
    """Its error-correction level: ``"Q"``, ``"M"`` or ``"L"``."""
    advice: str | None
    """What to do because it does not fit the window, or ``None`` if it does."""


def draw_qr(data: bytes, stream: TextIO, *, color: bool = True, image_option: str | None = None) -> TerminalQr:
    """Draw the payload ``data`` for the window ``stream`` writes to.

    It must fit with one line to spare (for the cursor or the next message), so a code of 23 lines fits a
    24-line terminal. The error correction is the highest of Q, M and L that fits. When even L does not fit,
    the code is drawn anyway (a window made taller afterwards shows it whole) and :attr:`TerminalQr.advice`
    says to enlarge the window or to use ``image_option`` (the command's option that writes an image).
    """
    from ..qr.render import render_terminal, terminal_extent, terminal_symbol

    window = terminal_size(stream)
    room = max(window.lines - 1, 1)
    symbol = terminal_symbol(data, max_columns=window.columns, max_lines=room)
    columns, lines = terminal_extent(symbol)
    advice = None
    if columns > window.columns or lines > room:
        advice = (
            f"the QR code needs {columns} columns by {lines + 1} lines and this terminal has {window.columns} by "
            f"{window.lines}: enlarge the window or make the font smaller"
        )
        if image_option:
            advice += f", or use {image_option} FILE and scan the image"
    return TerminalQr(render_terminal(symbol, color=color), columns, lines, str(symbol.error), advice)
