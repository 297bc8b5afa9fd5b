"""The values of the device authorization grant (RFC 8628): its grant types, the Matrix scope that names one
device, and the device authorization and token answers, parsed.

Pure: no I/O. The requests that produce these answers are :class:`~.client.DeviceGrantClient`'s.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._fields import optional_str, required_str, required_token, seconds, token
from .errors import OAuthProtocolError

__all__ = [
    "DEFAULT_INTERVAL",
    "DEVICE_CODE_GRANT_TYPE",
    "REFRESH_TOKEN_GRANT_TYPE",
    "SLOW_DOWN_INCREMENT",
    "DeviceAuthorization",
    "ScopePrefix",
    "TokenResponse",
    "device_scope",
    "parse_device_authorization",
    "parse_token_response",
]

DEVICE_CODE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
REFRESH_TOKEN_GRANT_TYPE = "refresh_token"  # noqa: S105 - a grant type's name
SLOW_DOWN_INCREMENT = 5.0
"""RFC 8628 §3.5: after ``slow_down`` the interval grows by 5 s for this and every later request."""
DEFAULT_INTERVAL = 5.0
"""RFC 8628 §3.2: ``interval`` defaults to 5 s."""


class ScopePrefix(enum.Enum):
    """The Matrix scope namespace (MSC2967): stable (spec, js-sdk) or unstable (rust-sdk / Element X)."""

    STABLE = "urn:matrix:client"
    UNSTABLE = "urn:matrix:org.matrix.msc2967.client"


def device_scope(device_id: str, prefix: ScopePrefix = ScopePrefix.STABLE) -> str:
    """``<prefix>:api:* <prefix>:device:<device_id>``: full API access plus exactly one device.

    Device IDs may contain ``/`` and ``+`` (rust-sdk uses the base64 identity key); they may not contain
    whitespace, which separates scope tokens.
    """
    if not device_id or any(c.isspace() for c in device_id) or not device_id.isprintable():
        raise ValueError("a device ID must be non-empty printable text without whitespace")
    return f"{prefix.value}:api:* {prefix.value}:device:{device_id}"


@dataclass(frozen=True, repr=False)
class DeviceAuthorization:
    """An RFC 8628 §3.2 device authorization response. ``expires_at`` is in the client's clock.

    It fits :class:`~qrlink_client.flow.DeviceAuthorizationGrant`, so it can be handed to the new-device state
    machine as is. ``repr`` hides the device code.
    """

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float
    expires_at: float

    def __repr__(self) -> str:
        return (
            f"DeviceAuthorization(user_code={self.user_code!r}, verification_uri={self.verification_uri!r}, "
            f"expires_in={self.expires_in!r}, interval={self.interval!r})"
        )


@dataclass(frozen=True, repr=False)
class TokenResponse:
    """Tokens from the token endpoint. ``repr`` hides them."""

    access_token: str
    token_type: str
    refresh_token: str | None = None
    expires_in: float | None = None
    scope: str | None = None

    def __repr__(self) -> str:
        return (
            f"TokenResponse(token_type={self.token_type!r}, expires_in={self.expires_in!r}, scope={self.scope!r}, "
            f"refresh_token={'<hidden>' if self.refresh_token else None})"
        )


def parse_device_authorization(body: Any, started: float) -> DeviceAuthorization:
    """A successful device authorization answer; ``started`` is when the request was sent, in the client's
    clock. Raises :class:`~.errors.OAuthProtocolError` when a member is missing or bad."""
    if not isinstance(body, Mapping):
        raise OAuthProtocolError("device authorization answer is not a JSON object")
    expires_in = seconds(body, "expires_in", "device authorization", required=True)
    assert expires_in is not None
    interval = seconds(body, "interval", "device authorization", required=False)
    return DeviceAuthorization(
        device_code=required_token(body, "device_code", "device authorization"),
        user_code=required_str(body, "user_code", "device authorization"),
        verification_uri=required_str(body, "verification_uri", "device authorization"),
        verification_uri_complete=optional_str(body, "verification_uri_complete", "device authorization"),
        expires_in=expires_in,
        interval=interval if interval is not None and interval > 0 else DEFAULT_INTERVAL,
        expires_at=started + expires_in,
    )


def parse_token_response(body: Any) -> TokenResponse:
    """A successful token answer (Bearer only). Raises :class:`~.errors.OAuthProtocolError` when a member is
    missing or bad."""
    if not isinstance(body, Mapping):
        raise OAuthProtocolError("token answer is not a JSON object")
    token_type = required_str(body, "token_type", "token")
    if token_type.lower() != "bearer":
        raise OAuthProtocolError(f"token_type {token_type!r} is not Bearer")
    return TokenResponse(
        access_token=required_token(body, "access_token", "token"),
        token_type=token_type,
        refresh_token=token(body, "refresh_token", "token", required=False),
        expires_in=seconds(body, "expires_in", "token", required=False),
        scope=optional_str(body, "scope", "token"),
    )
