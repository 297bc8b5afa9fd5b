"""Reading JSON that another party wrote: the one reader for server answers and peer messages.

``json.loads`` lets through three things a hostile sender can use to crash a caller that trusts its result:

- nesting deeper than the interpreter's stack raises :class:`RecursionError`, which is not a ``ValueError``;
- a ``\\ud800`` escape decodes to a lone surrogate, which no UTF-8 encoder accepts, so the string raises
  :class:`UnicodeEncodeError` later, wherever it is used (a URL, a header, an AAD);
- ``NaN``, ``Infinity`` and ``1e400`` decode to floats that are not finite.

:func:`loads` refuses all three with :class:`InvalidJson` (a ``ValueError``), as I-JSON (RFC 7493) does, so a
caller catches ``ValueError`` once and turns it into its own named error. Integers are left as they are
(Python's limit of 4300 digits still applies): each field that holds one must bound it.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["InvalidJson", "is_unicode", "loads"]


class InvalidJson(ValueError):
    """The text is not JSON, or not I-JSON: too deep, a lone surrogate, or a number that is not finite."""


def loads(data: bytes | bytearray | str) -> Any:
    """Parse ``data`` (UTF-8, -16 or -32 bytes, or text); raises :class:`InvalidJson` and nothing else.

    The message never quotes the input.
    """
    try:
        value = json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise InvalidJson("JSON is nested too deeply") from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, a refused constant or float
        raise InvalidJson("not valid JSON") from None
    _check_strings(value)
    return value


def is_unicode(text: str) -> bool:
    """Whether ``text`` can be encoded as UTF-8 (it holds no lone surrogate)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _check_strings(value: Any) -> None:
    """Refuse a lone surrogate in any string or key; iterative, so any depth the parser allowed is fine."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not is_unicode(item):
                raise InvalidJson("JSON string is not valid Unicode (a lone surrogate)")
        elif isinstance(item, dict):
            for key, member in item.items():
                if not is_unicode(key):
                    raise InvalidJson("JSON string is not valid Unicode (a lone surrogate)")
                pending.append(member)
        elif isinstance(item, list):
            pending.extend(item)
