"""Reading a QR payload given on the command line: hex, base64, a file, or ``-`` for stdin.

``qrlink qr decode``, ``qrlink qr render``, ``qrlink login --scan`` and ``qrlink grant --qr`` all accept the
same forms:

- hex (even number of digits; whitespace ignored);
- base64, standard or URL-safe, with or without ``=`` padding (whitespace ignored);
- the path of an existing file: an image holding the QR code (PNG, JPEG, GIF, BMP, WebP, TIFF; read with
  zxing-cpp, the ``qr-image`` extra), a text file holding hex or base64, or the raw payload bytes;
- ``-``: the same file contents read from stdin (``qrlink qr`` only: ``login`` and ``grant`` keep stdin for
  the prompts).

The argument is told apart by its shape first. A real payload is 100 bytes or more, so its hex or base64 is
longer than a file name may be; only an argument that could name a file is looked up as one, and a lookup
that fails (e.g. ``ENAMETOOLONG``) just means "not a file".
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from .._b64 import InvalidBase64, b64decode
from ..errors import QrLinkError
from ..qr.codec import QrPrefix

__all__ = ["STDIN", "UnrecognisedInput", "existing_file", "parse_base64", "parse_hex", "read_qr_input"]

STDIN = "-"
"""The argument that means "read the payload from stdin"."""

_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")
_URL_SAFE = str.maketrans("-_", "+/")
_NAME_MAX = 255
"""Longest file name (one path component, in bytes) on the usual file systems."""
_PATH_MAX = 4096
"""Longest path Linux accepts, in bytes."""

_IMAGE_SIGNATURES = (
    b"\x89PNG\r\n\x1a\n",  # PNG
    b"\xff\xd8\xff",  # JPEG
    b"GIF87a",
    b"GIF89a",
    b"BM",  # BMP
    b"II*\x00",  # TIFF, little-endian
    b"MM\x00*",  # TIFF, big-endian
)


class UnrecognisedInput(QrLinkError):
    """A QR argument is neither an existing file, nor hex, nor base64 (or the file or stdin is empty)."""


def parse_hex(value: str) -> bytes | None:
    """The bytes ``value`` spells in hex (whitespace ignored), or ``None`` if it is not an even number of hex
    digits."""
    compact = "".join(value.split())
    return bytes.fromhex(compact) if _HEX.fullmatch(compact) else None


def parse_base64(value: str) -> bytes | None:
    """The bytes ``value`` spells in base64, or ``None`` if it is not base64.

    Standard (``+/``) and URL-safe (``-_``) alphabets are accepted, but not mixed; ``=`` padding is optional
    and whitespace (line breaks of wrapped output) is ignored.
    """
    compact = "".join(value.split())
    if not compact:
        return None
    if "-" in compact or "_" in compact:
        if "+" in compact or "/" in compact:
            return None
        compact = compact.translate(_URL_SAFE)
    try:
        return b64decode(compact)
    except InvalidBase64:
        return None


def _parse_text(value: str) -> bytes | None:
    """Hex, else base64 (a hex string is valid base64 too, and hex is what it more likely means)."""
    data = parse_hex(value)
    return data if data is not None else parse_base64(value)


def _could_be_path(value: str) -> bool:
    """Whether ``value`` has the shape of a path: not empty, no NUL or line break, no component longer than
    a file name may be, not longer than a path may be."""
    if not value or any(ch in value for ch in "\x00\n\r"):
        return False
    try:
        raw = os.fsencode(value)
    except UnicodeError:
        return False
    if os.sep != "/":
        raw = raw.replace(os.fsencode(os.sep), b"/")
    return len(raw) < _PATH_MAX and all(len(part) <= _NAME_MAX for part in raw.split(b"/"))


def existing_file(value: str) -> Path | None:
    """``value`` as the path of an existing regular file, or ``None``: looked up only if it could be a path,
    and any error of the lookup (a name too long, a permission denied on the way) counts as "no file"."""
    if not _could_be_path(value):
        return None
    path = Path(value)
    try:
        return path if path.is_file() else None
    except (OSError, ValueError):
        return None


def _payload_from_content(content: bytes, source: str) -> bytes:
    """The payload in a file's (or stdin's) bytes: the raw payload, hex or base64 text, or an image."""
    if not content.strip():
        raise UnrecognisedInput(f"{source} is empty")
    if any(content.startswith(prefix.value) for prefix in QrPrefix):
        return content
    try:
        text = content.decode("ascii")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        data = _parse_text(text)
        if data is not None:
            return data
    if content.startswith(_IMAGE_SIGNATURES) or (content[:4] == b"RIFF" and content[8:12] == b"WEBP"):
        # Image reading needs the optional qr-image extra: imported only when an image is given.
        from ..qr.image import read_qr_image

        return read_qr_image(content)
    return content  # raw bytes: decoding says what is wrong with them


def read_qr_input(value: str, *, allow_stdin: bool = False) -> bytes:
    """QR payload bytes from a command-line argument (see the module docstring for the forms).

    ``-`` reads stdin only with ``allow_stdin``. Raises :class:`UnrecognisedInput`, or an error of
    :mod:`qrlink_client.qr.image` for an image without a readable QR code.
    """
    if allow_stdin and value == STDIN:
        return _payload_from_content(sys.stdin.buffer.read(), "stdin")
    path = existing_file(value)
    if path is not None:
        return _payload_from_content(path.read_bytes(), f"the file {path}")
    if _could_be_path(value) and os.path.isdir(value):
        raise UnrecognisedInput(f"{value} is a directory, not a file")
    data = _parse_text(value)
    if data:
        return data
    if not "".join(value.split()):
        raise UnrecognisedInput("input is empty")
    if _could_be_path(value) and len(value) <= 200 and any(ch in value for ch in "./\\~"):
        raise UnrecognisedInput(f"no such file: {value} (and it is not hex or base64 either)")
    # The text is not echoed: it may be most of a payload, whose rendezvous URL is a live capability.
    raise UnrecognisedInput("input is not an existing file, hex or base64")
