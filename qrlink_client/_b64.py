"""Unpadded standard base64, as every Matrix QR-login peer writes it.

vodozemac encodes with the standard alphabet and no padding, and decodes "padding indifferent": canonical
padding is accepted, missing padding is accepted, wrong padding is not. Non-canonical trailing bits and
characters outside the alphabet (including whitespace) are rejected, so one byte string has exactly one
accepted unpadded spelling.
"""

from __future__ import annotations

import base64
import binascii

from .errors import QrLinkError

__all__ = ["InvalidBase64", "b64decode", "b64encode"]


class InvalidBase64(QrLinkError, ValueError):
    """The text is not valid standard base64 (alphabet, length, padding or trailing bits)."""


def b64encode(data: bytes) -> str:
    """Encode ``data`` as standard base64 without ``=`` padding."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def b64decode(text: str) -> bytes:
    """Decode standard base64, with or without canonical ``=`` padding.

    Raises :class:`InvalidBase64` for anything else; the message never echoes the input, which may be secret.
    """
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise InvalidBase64("base64 text contains non-ASCII characters") from None
    unpadded = raw.rstrip(b"=")
    padding = len(raw) - len(unpadded)
    if padding and (padding > 2 or len(raw) % 4 != 0):
        raise InvalidBase64("base64 text has wrong padding")
    if len(unpadded) % 4 == 1:
        raise InvalidBase64("base64 text has an impossible length")
    try:
        decoded = binascii.a2b_base64(unpadded + b"=" * (-len(unpadded) % 4), strict_mode=True)
    except binascii.Error:
        raise InvalidBase64("base64 text contains characters outside the standard alphabet") from None
    # Reject non-canonical trailing bits (e.g. "AB" instead of "AA"), as vodozemac's decoder does.
    if b64encode(decoded).encode("ascii") != unpadded:
        raise InvalidBase64("base64 text has non-canonical trailing bits")
    return decoded
