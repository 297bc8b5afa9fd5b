"""Typed reads of the fields of a JSON request object, for JSON front ends of the library.

Each reader takes the request (a mapping from ``json.loads``) and a field name, and returns the field as the
wanted type or raises :class:`MissingField` / :class:`InvalidFieldValue`. The messages name the field but
never echo its value, which may be secret (``secret_hex``).

Conventions: binary values are lower- or upper-case hex in fields ending ``_hex``, public keys standard base64
in fields ending ``_b64``; ``null`` counts as absent; ``true``/``false`` are not numbers.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from ._b64 import b64decode
from .errors import QrLinkError

__all__ = [
    "FieldError",
    "InvalidFieldValue",
    "MissingField",
    "Request",
    "Response",
    "b64_field",
    "choice_field",
    "field",
    "hex_field",
    "int_field",
    "non_negative_int_field",
    "optional_str_field",
    "required_hex_field",
    "required_str_field",
    "str_field",
]

Request = Mapping[str, Any]
"""A parsed JSON request object."""
Response = dict[str, Any]
"""A JSON response object, before serialisation."""

_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
_E = TypeVar("_E", bound=enum.Enum)


class FieldError(QrLinkError):
    """Base class of the errors about one field of a request."""


class MissingField(FieldError):
    """A required request field is absent or null."""


class InvalidFieldValue(FieldError):
    """A request field has the wrong JSON type, is not valid hex/base64, or is not an allowed value."""


def field(req: Request, name: str, *, required: bool) -> Any:
    """The raw value of ``name`` (``None`` when absent or null); :class:`MissingField` if ``required``."""
    value = req.get(name)
    if value is None and required:
        raise MissingField(f"field {name!r} is required")
    return value


def str_field(req: Request, name: str, *, required: bool = True) -> Any:
    """A string field (``None`` when absent and not ``required``)."""
    value = field(req, name, required=required)
    if value is not None and not isinstance(value, str):
        raise InvalidFieldValue(f"field {name!r} must be a string")
    return value


def required_str_field(req: Request, name: str) -> str:
    """A string field that must be present."""
    value: str = str_field(req, name)
    return value


def optional_str_field(req: Request, name: str) -> str | None:
    """A string field that may be absent."""
    value: str | None = str_field(req, name, required=False)
    return value


def int_field(req: Request, name: str, choices: tuple[int, ...], *, default: int | None = None) -> int:
    """An integer field, one of ``choices``; required unless a ``default`` is given."""
    value = field(req, name, required=default is None)
    if value is None:
        assert default is not None
        return default
    # bool is an int subclass in Python, but true/false is not a number on the wire.
    if not isinstance(value, int) or isinstance(value, bool) or value not in choices:
        raise InvalidFieldValue(f"field {name!r} must be one of {', '.join(map(str, choices))}")
    return value


def non_negative_int_field(req: Request, name: str, default: int) -> int:
    """A non-negative integer field, ``default`` when absent."""
    value = field(req, name, required=False)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidFieldValue(f"field {name!r} must be a non-negative integer")
    return value


def hex_field(req: Request, name: str, *, required: bool = True) -> bytes | None:
    """Bytes given as hex with an even number of digits (``None`` when absent and not ``required``)."""
    value = str_field(req, name, required=required)
    if value is None:
        return None
    if not _HEX.fullmatch(value):
        raise InvalidFieldValue(f"field {name!r} must be hex with an even number of digits")
    return bytes.fromhex(value)


def required_hex_field(req: Request, name: str) -> bytes:
    """Bytes given as hex that must be present."""
    value = hex_field(req, name)
    assert value is not None
    return value


def b64_field(req: Request, name: str) -> bytes:
    """Bytes given as standard base64 (padded or not) that must be present."""
    try:
        return b64decode(required_str_field(req, name))
    except QrLinkError:
        raise InvalidFieldValue(f"field {name!r} must be standard base64") from None


def choice_field(req: Request, name: str, kind: type[_E], *, default: _E | None = None) -> _E:
    """A member of the enum ``kind``, given by value or by name; required unless a ``default`` is given.

    The value is looked up with ``kind(value)`` first, so an enum that accepts aliases (``_missing_``, as
    :class:`~qrlink_client.channel.HpkeProfile` does) takes them here too.
    """
    value = field(req, name, required=default is None)
    if value is None:
        assert default is not None
        return default
    if isinstance(value, str | int) and not isinstance(value, bool):
        try:
            return kind(value)
        except ValueError:
            pass
    for member in kind:
        if member.name == value:
            return member
    allowed = ", ".join(json.dumps(m.value if isinstance(m.value, str) else m.name) for m in kind)
    raise InvalidFieldValue(f"field {name!r} must be one of {allowed}")
