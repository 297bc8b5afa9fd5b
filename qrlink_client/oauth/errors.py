"""Errors of the OAuth 2.0 device authorization grant.

Every class derives from :class:`OAuthError`, itself a :class:`~qrlink_client.errors.QrLinkError`. Messages
carry the RFC 6749 error code and the HTTP status, never a token or a device code.
"""

from __future__ import annotations

from ..errors import QrLinkError

__all__ = [
    "AuthMetadataUnavailable",
    "ClientRegistrationFailed",
    "DeviceAuthorizationFailed",
    "DeviceGrantDenied",
    "DeviceGrantExpired",
    "DeviceGrantUnsupported",
    "HomeserverRequestFailed",
    "OAuthError",
    "OAuthProtocolError",
    "OAuthTransportError",
    "TokenRequestFailed",
]


class OAuthError(QrLinkError):
    """Base class of OAuth errors. ``error`` is the RFC 6749 error code, if the server sent one; ``status`` the
    HTTP status. ``description`` is the server's ``error_description`` (servers do not echo tokens there)."""

    def __init__(
        self, message: str, *, error: str | None = None, description: str | None = None, status: int | None = None
    ) -> None:
        detail = message
        if error:
            detail += f" ({error}{': ' + description if description else ''})"
        if status is not None:
            detail += f" [HTTP {status}]"
        super().__init__(detail)
        self.error = error
        self.description = description
        self.status = status


class OAuthTransportError(OAuthError):
    """The request did not get an answer (connection, timeout) or the server failed with 5xx."""


class OAuthProtocolError(OAuthError):
    """The server answered, but not with what the RFC says (not JSON, missing fields, wrong types)."""


class AuthMetadataUnavailable(OAuthError):
    """Neither the stable nor the unstable ``auth_metadata`` endpoint gave server metadata: the homeserver
    does not use the OAuth 2.0 API."""


class DeviceGrantUnsupported(OAuthError):
    """The server metadata lacks the device grant, its endpoints, or a registration endpoint when no static
    client ID is configured. In the QR flow, tell the peer ``unsupported_protocol``."""


class ClientRegistrationFailed(OAuthError):
    """Dynamic client registration (RFC 7591) was refused."""


class DeviceAuthorizationFailed(OAuthError):
    """The device authorization request (RFC 8628 §3.1) was refused (e.g. ``invalid_scope``,
    ``unauthorized_client``)."""


class DeviceGrantDenied(OAuthError):
    """The user denied the grant (``access_denied``)."""


class DeviceGrantExpired(OAuthError):
    """The device code expired (``expired_token``, or ``expires_in`` passed while polling)."""


class TokenRequestFailed(OAuthError):
    """The token endpoint refused otherwise (``invalid_grant``, ``invalid_client``, …)."""


class HomeserverRequestFailed(OAuthError):
    """A Matrix client-server request made with the new tokens failed (e.g. ``whoami``)."""
