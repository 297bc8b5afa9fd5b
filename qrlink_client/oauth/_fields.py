"""Reading the members of a server's JSON answer (strings, tokens, numbers), each checked for its type.

Pure; a bad member raises :class:`~.errors.OAuthProtocolError` naming the answer and the member, never its value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from .errors import OAuthProtocolError

__all__ = ["optional_str", "required_str", "required_token", "seconds", "token"]

_VSCHAR = re.compile(r"[\x20-\x7e]+")
"""RFC 6749 Appendix A: access and refresh tokens and device codes are ``1*VSCHAR``; an access token also goes
into an ``Authorization`` header, which httpx can only encode as ASCII."""


def optional_str(data: Mapping[str, Any], name: str, what: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise OAuthProtocolError(f"{what}: {name} is not a string")
    return value


def required_str(data: Mapping[str, Any], name: str, what: str) -> str:
    value = optional_str(data, name, what)
    if not value:
        raise OAuthProtocolError(f"{what}: {name} is missing")
    return value


def token(data: Mapping[str, Any], name: str, what: str, *, required: bool) -> str | None:
    """A token or code: ``1*VSCHAR`` (RFC 6749 Appendix A). The message never contains it."""
    value = required_str(data, name, what) if required else optional_str(data, name, what)
    if value is not None and not _VSCHAR.fullmatch(value):
        raise OAuthProtocolError(f"{what}: {name} is not printable ASCII")
    return value


def required_token(data: Mapping[str, Any], name: str, what: str) -> str:
    value = token(data, name, what, required=True)
    assert value is not None  # required
    return value


def seconds(data: Mapping[str, Any], name: str, what: str, *, required: bool) -> float | None:
    """A lifetime or interval in seconds: a finite, non-negative JSON number."""
    value = data.get(name)
    if value is None:
        if required:
            raise OAuthProtocolError(f"{what}: {name} is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OAuthProtocolError(f"{what}: {name} is not a number")
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits
        raise OAuthProtocolError(f"{what}: {name} is out of range") from None
    if not math.isfinite(number) or number < 0:
        raise OAuthProtocolError(f"{what}: {name} is out of range")
    return number
