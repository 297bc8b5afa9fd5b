"""Matrix canonical JSON (spec appendix "Canonical JSON").

The shortest UTF-8 JSON encoding: no insignificant whitespace, object keys sorted by Unicode code point,
non-ASCII characters written as UTF-8 rather than ``\\u`` escapes, and only integers in ``[-(2**53)+1,
(2**53)-1]`` as numbers. Everything signed in Matrix (device keys, cross-signing keys, backup ``auth_data``)
is signed over these bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .errors import CanonicalJsonError

__all__ = ["MAX_SAFE_INTEGER", "canonical_json"]

MAX_SAFE_INTEGER = 2**53 - 1
"""The largest integer canonical JSON allows (the smallest is its negation)."""


def canonical_json(value: Any) -> bytes:
    """Encode ``value`` as Matrix canonical JSON bytes.

    Accepts ``None``, ``bool``, ``int``, ``str``, lists/tuples and mappings with string keys. Raises
    :class:`CanonicalJsonError` for floats (the encoding forbids them), integers outside the safe range,
    non-string keys, lone surrogates and any other type.
    """
    plain = _plain(value, "$")
    try:
        # The spec's reference encoder is exactly this json.dumps call; _check() has already ruled out the
        # inputs where json.dumps would diverge from the grammar (floats, NaN, huge integers, non-string
        # keys).
        text = json.dumps(plain, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise CanonicalJsonError("a string contains a lone surrogate, which has no UTF-8 encoding") from None


def _plain(value: Any, where: str) -> Any:
    """Validate ``value`` against the canonical JSON grammar and return it as plain dicts/lists."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise CanonicalJsonError(f"integer at {where} is outside [-(2**53)+1, (2**53)-1]")
        return int(value)
    if isinstance(value, float):
        raise CanonicalJsonError(f"float at {where}: canonical JSON allows only integers")
    if isinstance(value, list | tuple):
        return [_plain(item, f"{where}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, Mapping):
        plain: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalJsonError(f"non-string object key at {where}")
            plain[key] = _plain(item, f"{where}.{key}")
        return plain
    raise CanonicalJsonError(f"value of type {type(value).__name__} at {where} is not JSON")
