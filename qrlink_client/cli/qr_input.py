"""Reading a QR payload given on the command line: an image file, hex or base64.

``qrlink qr decode``, ``qrlink login --scan`` and ``qrlink grant --qr`` all accept the same forms.
"""

from __future__ import annotations

import re
from pathlib import Path

from .._b64 import b64decode
from ..errors import QrLinkError

__all__ = ["UnrecognisedInput", "parse_hex", "read_qr_input"]

_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")


class UnrecognisedInput(QrLinkError):
    """A QR argument is neither an existing image file, nor hex, nor standard base64."""


def parse_hex(value: str) -> bytes | None:
    """The bytes ``value`` spells in hex (whitespace ignored), or ``None`` if it is not an even number of hex
    digits."""
    compact = "".join(value.split())
    return bytes.fromhex(compact) if _HEX.fullmatch(compact) else None


def read_qr_input(value: str) -> bytes:
    """QR payload bytes from an image file path, hex, or standard base64 (tried in that order)."""
    path = Path(value)
    if path.is_file():
        # Image reading needs the optional qr-image extra: imported only when a file is given.
        from ..qr.image import read_qr_image

        return read_qr_image(path)
    data = parse_hex(value)
    if data is not None:
        return data
    try:
        data = b64decode("".join(value.split()))
    except QrLinkError:
        raise UnrecognisedInput("input is not an image file, hex or standard base64") from None
    if not data:
        raise UnrecognisedInput("input is empty")
    return data
