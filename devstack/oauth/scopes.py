"""Matrix OAuth 2.0 scopes (MSC2967): which scopes a device may ask for, and the device ID they carry.

A Matrix client asks for API access plus exactly one device, in the stable form (Matrix v1.15+) or the
unstable MSC2967 form. Element X sends the unstable pair, matrix-js-sdk the stable pair, and neither sends
``openid``; an authorization server has to accept both.
"""

from __future__ import annotations

from dataclasses import dataclass

STABLE_PREFIX = "urn:matrix:client:"
UNSTABLE_PREFIX = "urn:matrix:org.matrix.msc2967.client:"
API_SCOPES = frozenset({f"{STABLE_PREFIX}api:*", f"{UNSTABLE_PREFIX}api:*"})
DEVICE_SCOPE_PREFIXES = (f"{STABLE_PREFIX}device:", f"{UNSTABLE_PREFIX}device:")
# Scopes a client may add that grant nothing here but must not make the request fail.
HARMLESS_SCOPES = frozenset({"openid"})
# Synapse's own limit on a device ID taken from a token (``synapse/api/auth/mas.py``).
MAX_DEVICE_ID_LENGTH = 255

SCOPES_SUPPORTED = [
    "openid",
    f"{STABLE_PREFIX}api:*",
    f"{STABLE_PREFIX}device:*",
    f"{UNSTABLE_PREFIX}api:*",
    f"{UNSTABLE_PREFIX}device:*",
]


class InvalidMatrixScope(ValueError):
    """The requested scope is not a Matrix device scope this server can grant."""


@dataclass(frozen=True)
class MatrixScope:
    """A validated scope: the scope tokens in request order and the one device ID they name."""

    tokens: tuple[str, ...]
    device_id: str

    def __str__(self) -> str:
        return " ".join(self.tokens)


def parse_matrix_scope(scope: str | None) -> MatrixScope:
    """Validate *scope* (space-separated) and return it with its device ID.

    Rules: at least one API scope, exactly one device scope (any number of repeats of the same one are still
    one device), no scope this server does not know. Device IDs may contain any visible ASCII character,
    including ``/`` and ``+`` (Element X uses unpadded base64), up to 255 characters.
    """
    tokens = tuple(dict.fromkeys((scope or "").split()))  # de-duplicate, keep order
    if not tokens:
        raise InvalidMatrixScope("the scope is empty")
    device_ids: set[str] = set()
    has_api = False
    for token in tokens:
        if token in API_SCOPES:
            has_api = True
        elif token.startswith(DEVICE_SCOPE_PREFIXES):
            device_ids.add(_device_id_of(token))
        elif token not in HARMLESS_SCOPES:
            raise InvalidMatrixScope(f"unknown scope {token!r}")
    if not has_api:
        raise InvalidMatrixScope("the scope does not ask for Matrix client API access")
    if len(device_ids) != 1:
        raise InvalidMatrixScope(f"the scope must name exactly one device, not {len(device_ids)}")
    (device_id,) = device_ids
    return MatrixScope(tokens=tokens, device_id=device_id)


def device_scope(device_id: str, *, unstable: bool = False) -> str:
    """The two-token scope that grants API access for *device_id*."""
    prefix = UNSTABLE_PREFIX if unstable else STABLE_PREFIX
    return f"{prefix}api:* {prefix}device:{device_id}"


def _device_id_of(token: str) -> str:
    prefix = next(prefix for prefix in DEVICE_SCOPE_PREFIXES if token.startswith(prefix))
    device_id = token[len(prefix) :]
    if not device_id:
        raise InvalidMatrixScope("the device scope has an empty device ID")
    if len(device_id) > MAX_DEVICE_ID_LENGTH:
        raise InvalidMatrixScope(f"the device ID is longer than {MAX_DEVICE_ID_LENGTH} characters")
    if not all(0x21 <= ord(char) <= 0x7E for char in device_id):
        raise InvalidMatrixScope("the device ID has a character outside visible ASCII")
    return device_id
