"""The new device's OAuth 2.0 device authorization grant (RFC 8628) against a Matrix homeserver
(docs/protocol.md, "OAuth 2.0 device authorization grant"), async over httpx.

One entry point: :meth:`DeviceGrantClient.create` discovers the auth server metadata (MSC2965: stable
``/_matrix/client/v1/auth_metadata``, then the unstable ``org.matrix.msc2965`` path), checks that the device
grant is offered, and registers a public client (RFC 7591 / MSC2966) unless a static ``client_id`` is configured.
Then :meth:`~DeviceGrantClient.request_device_authorization` (scope with exactly one device, stable or MSC2967
unstable prefix), :meth:`~DeviceGrantClient.poll_token` (honours ``interval``, ``slow_down``,
``authorization_pending``, ``access_denied`` and ``expired_token``, whatever the HTTP status: MAS answers them with
403), :meth:`~DeviceGrantClient.refresh`, and :func:`whoami`.

Tokens and device codes never reach logs, reprs or exception messages.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from ._json import loads
from .errors import QrLinkError

__all__ = [
    "DEVICE_CODE_GRANT_TYPE",
    "REFRESH_TOKEN_GRANT_TYPE",
    "AuthMetadata",
    "AuthMetadataUnavailable",
    "ClientMetadata",
    "ClientRegistrationFailed",
    "DeviceAuthorization",
    "DeviceAuthorizationFailed",
    "DeviceGrantClient",
    "DeviceGrantDenied",
    "DeviceGrantExpired",
    "DeviceGrantUnsupported",
    "HomeserverRequestFailed",
    "OAuthError",
    "OAuthProtocolError",
    "OAuthTransportError",
    "ScopePrefix",
    "TokenRequestFailed",
    "TokenResponse",
    "WhoAmI",
    "device_scope",
    "discover_auth_metadata",
    "whoami",
]

logger = logging.getLogger(__name__)

DEVICE_CODE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
REFRESH_TOKEN_GRANT_TYPE = "refresh_token"  # noqa: S105 - a grant type's name
STABLE_METADATA_PATH = "_matrix/client/v1/auth_metadata"
UNSTABLE_METADATA_PATH = "_matrix/client/unstable/org.matrix.msc2965/auth_metadata"
SLOW_DOWN_INCREMENT = 5.0
"""RFC 8628 §3.5: after ``slow_down`` the interval grows by 5 s for this and every later request."""
DEFAULT_INTERVAL = 5.0
"""RFC 8628 §3.2: ``interval`` defaults to 5 s."""
_VSCHAR = re.compile(r"[\x20-\x7e]+")
"""RFC 6749 Appendix A: access and refresh tokens and device codes are ``1*VSCHAR``; an access token also goes
into an ``Authorization`` header, which httpx can only encode as ASCII."""


# --- errors -------------------------------------------------------------------------------------------------


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


# --- values -------------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class AuthMetadata:
    """The parts of the auth server metadata (RFC 8414) the device grant needs."""

    issuer: str
    token_endpoint: str
    device_authorization_endpoint: str | None
    registration_endpoint: str | None
    revocation_endpoint: str | None
    grant_types_supported: tuple[str, ...]
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def supports_device_grant(self) -> bool:
        """Whether the device grant is advertised and has its endpoint."""
        return DEVICE_CODE_GRANT_TYPE in self.grant_types_supported and bool(self.device_authorization_endpoint)

    @classmethod
    def from_json(cls, data: Any) -> AuthMetadata:
        """Parse a metadata document; raises :class:`OAuthProtocolError` when a required member is bad."""
        if not isinstance(data, Mapping):
            raise OAuthProtocolError("auth metadata is not a JSON object")
        grant_types = data.get("grant_types_supported", [])
        if not isinstance(grant_types, list) or not all(isinstance(g, str) for g in grant_types):
            raise OAuthProtocolError("auth metadata grant_types_supported is not a list of strings")
        return cls(
            issuer=_required(data, "issuer", "auth metadata"),
            token_endpoint=_required(data, "token_endpoint", "auth metadata"),
            device_authorization_endpoint=_optional(data, "device_authorization_endpoint", "auth metadata"),
            registration_endpoint=_optional(data, "registration_endpoint", "auth metadata"),
            revocation_endpoint=_optional(data, "revocation_endpoint", "auth metadata"),
            grant_types_supported=tuple(grant_types),
            raw=dict(data),
        )


@dataclass(frozen=True)
class ClientMetadata:
    """What a public native client registers (RFC 7591 / MSC2966). MAS insists on ``client_uri``."""

    client_name: str = "qrlink"
    client_uri: str = "https://github.com/matrix-org/matrix-spec-proposals/pull/4108"
    application_type: str = "native"

    def to_json(self) -> dict[str, Any]:
        """The registration request body: no secret (``token_endpoint_auth_method: none``), device + refresh
        grants only, so no redirect URIs are needed."""
        return {
            "client_name": self.client_name,
            "client_uri": self.client_uri,
            "application_type": self.application_type,
            "token_endpoint_auth_method": "none",
            "grant_types": [DEVICE_CODE_GRANT_TYPE, REFRESH_TOKEN_GRANT_TYPE],
            "response_types": [],
        }


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


@dataclass(frozen=True)
class WhoAmI:
    """``GET /account/whoami``: who the access token belongs to."""

    user_id: str
    device_id: str | None


# --- discovery ----------------------------------------------------------------------------------------------


def _join(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + "/" + path


async def discover_auth_metadata(http: httpx.AsyncClient, base_url: str) -> AuthMetadata:
    """Fetch the auth server metadata through the homeserver: stable path first, then the unstable one.

    Raises :class:`AuthMetadataUnavailable` if neither answers 200 with a metadata object.
    """
    failures: list[str] = []
    for path in (STABLE_METADATA_PATH, UNSTABLE_METADATA_PATH):
        response = await _request(http, "GET", _join(base_url, path))
        if response.status_code == 200:
            return AuthMetadata.from_json(_json_body(response, "auth metadata"))
        failures.append(f"{path}: HTTP {response.status_code}")
        logger.debug("auth metadata not at %s (HTTP %s)", path, response.status_code)
    raise AuthMetadataUnavailable("the homeserver has no OAuth 2.0 server metadata (" + "; ".join(failures) + ")")


async def whoami(http: httpx.AsyncClient, base_url: str, access_token: str) -> WhoAmI:
    """``GET /_matrix/client/v3/account/whoami`` with ``access_token``."""
    response = await _request(
        http,
        "GET",
        _join(base_url, "_matrix/client/v3/account/whoami"),
        headers={"Authorization": f"Bearer {access_token}"},
    )
    body = _json_body(response, "whoami", allow_error=True)
    if response.status_code != 200:
        errcode = body.get("errcode") if isinstance(body, Mapping) else None
        raise HomeserverRequestFailed(
            "whoami failed", error=errcode if isinstance(errcode, str) else None, status=response.status_code
        )
    if not isinstance(body, Mapping):
        raise OAuthProtocolError("whoami answer is not a JSON object")
    return WhoAmI(user_id=_required(body, "user_id", "whoami"), device_id=_optional(body, "device_id", "whoami"))


# --- the client ---------------------------------------------------------------------------------------------


class DeviceGrantClient:
    """A registered OAuth client running device grants on one auth server.

    ``clock`` and ``sleep`` default to :func:`time.monotonic` and :func:`asyncio.sleep`; tests may pass their
    own.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        metadata: AuthMetadata,
        client_id: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not metadata.supports_device_grant:
            raise DeviceGrantUnsupported(f"{metadata.issuer} does not offer the device authorization grant")
        self._http = http
        self.metadata = metadata
        self.client_id = client_id
        self._clock = clock
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"DeviceGrantClient(issuer={self.metadata.issuer!r}, client_id={self.client_id!r})"

    @classmethod
    async def create(
        cls,
        http: httpx.AsyncClient,
        base_url: str,
        *,
        client_id: str | None = None,
        client_metadata: ClientMetadata | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> DeviceGrantClient:
        """Discover the homeserver's auth server, check the device grant, and register a client (unless
        ``client_id`` is given). Raises :class:`AuthMetadataUnavailable`, :class:`DeviceGrantUnsupported`,
        :class:`ClientRegistrationFailed`."""
        metadata = await discover_auth_metadata(http, base_url)
        if not metadata.supports_device_grant:
            raise DeviceGrantUnsupported(f"{metadata.issuer} does not offer the device authorization grant")
        if client_id is None:
            client_id = await register_client(http, metadata, client_metadata or ClientMetadata())
        return cls(http, metadata, client_id, clock=clock, sleep=sleep)

    async def request_device_authorization(
        self, device_id: str, *, prefix: ScopePrefix = ScopePrefix.STABLE
    ) -> DeviceAuthorization:
        """RFC 8628 §3.1 for ``device_id``. Raises :class:`DeviceAuthorizationFailed`."""
        assert self.metadata.device_authorization_endpoint is not None  # checked in __init__
        started = self._clock()
        response = await _request(
            self._http,
            "POST",
            self.metadata.device_authorization_endpoint,
            data={"client_id": self.client_id, "scope": device_scope(device_id, prefix)},
        )
        body = _json_body(response, "device authorization", allow_error=True)
        if response.status_code != 200:
            raise _error_from(DeviceAuthorizationFailed, "device authorization refused", response, body)
        if not isinstance(body, Mapping):
            raise OAuthProtocolError("device authorization answer is not a JSON object")
        expires_in = _number(body, "expires_in", "device authorization", required=True)
        assert expires_in is not None
        interval = _number(body, "interval", "device authorization", required=False)
        return DeviceAuthorization(
            device_code=_required_token(body, "device_code", "device authorization"),
            user_code=_required(body, "user_code", "device authorization"),
            verification_uri=_required(body, "verification_uri", "device authorization"),
            verification_uri_complete=_optional(body, "verification_uri_complete", "device authorization"),
            expires_in=expires_in,
            interval=interval if interval is not None and interval > 0 else DEFAULT_INTERVAL,
            expires_at=started + expires_in,
        )

    async def poll_token(self, authorization: DeviceAuthorization) -> TokenResponse:
        """Poll the token endpoint (RFC 8628 §3.4/3.5) until the user approves, denies, or the code expires.

        Waits ``interval`` before each request, adding 5 s for good after each ``slow_down``. Raises
        :class:`DeviceGrantDenied`, :class:`DeviceGrantExpired`, :class:`TokenRequestFailed`.
        """
        interval = authorization.interval
        while True:
            if self._clock() + interval >= authorization.expires_at:
                raise DeviceGrantExpired("the device code expired before the user approved it")
            await self._sleep(interval)
            response = await _request(
                self._http,
                "POST",
                self.metadata.token_endpoint,
                data={
                    "grant_type": DEVICE_CODE_GRANT_TYPE,
                    "device_code": authorization.device_code,
                    "client_id": self.client_id,
                },
            )
            body = _json_body(response, "token", allow_error=True)
            if response.status_code == 200:
                return _token_response(body)
            error = body.get("error") if isinstance(body, Mapping) else None
            # RFC 6749 says 400; MAS sends these four with 403, so the status is not consulted for them.
            if error == "authorization_pending":
                continue
            if error == "slow_down":
                interval += SLOW_DOWN_INCREMENT
                logger.debug("token endpoint asked to slow down; interval now %s s", interval)
                continue
            if error == "access_denied":
                raise _error_from(DeviceGrantDenied, "the user denied the device", response, body)
            if error == "expired_token":
                raise _error_from(DeviceGrantExpired, "the device code expired", response, body)
            raise _error_from(TokenRequestFailed, "the token request failed", response, body)

    async def refresh(self, refresh_token: str) -> TokenResponse:
        """RFC 6749 §6: new tokens for a refresh token. Raises :class:`TokenRequestFailed`."""
        response = await _request(
            self._http,
            "POST",
            self.metadata.token_endpoint,
            data={"grant_type": REFRESH_TOKEN_GRANT_TYPE, "refresh_token": refresh_token, "client_id": self.client_id},
        )
        body = _json_body(response, "token", allow_error=True)
        if response.status_code != 200:
            raise _error_from(TokenRequestFailed, "refreshing the token failed", response, body)
        return _token_response(body)


async def register_client(http: httpx.AsyncClient, metadata: AuthMetadata, client: ClientMetadata) -> str:
    """Register a public client (RFC 7591) and return its ``client_id``. Raises :class:`DeviceGrantUnsupported`
    without a registration endpoint, :class:`ClientRegistrationFailed` when refused."""
    if not metadata.registration_endpoint:
        raise DeviceGrantUnsupported(f"{metadata.issuer} has no registration endpoint; configure a client ID")
    response = await _request(http, "POST", metadata.registration_endpoint, json=client.to_json())
    body = _json_body(response, "client registration", allow_error=True)
    if response.status_code not in (200, 201):
        raise _error_from(ClientRegistrationFailed, "client registration refused", response, body)
    if not isinstance(body, Mapping):
        raise OAuthProtocolError("client registration answer is not a JSON object")
    return _required(body, "client_id", "client registration")


# --- helpers ------------------------------------------------------------------------------------------------


async def _request(http: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    try:
        httpx.URL(url)
    except (httpx.InvalidURL, UnicodeError):
        # The URL came from a server (metadata endpoints, the well-known base URL) and httpx cannot send it.
        raise OAuthProtocolError(f"{method}: the endpoint is not a valid URL") from None
    try:
        response = await http.request(method, url, **kwargs)
    except httpx.HTTPError as error:
        # The request (and so the exception's own text) may hold a device code or token: keep only its kind.
        raise OAuthTransportError(f"{method} {_no_query(url)} failed: {type(error).__name__}") from None
    if response.status_code >= 500:
        raise OAuthTransportError(f"{method} {_no_query(url)} failed", status=response.status_code)
    return response


def _no_query(url: str) -> str:
    return url.split("?", 1)[0]


def _json_body(response: httpx.Response, what: str, *, allow_error: bool = False) -> Any:
    try:
        return loads(response.content)
    except ValueError:  # not JSON, or not I-JSON: nested too deep, a lone surrogate, NaN or 1e400
        if allow_error and response.status_code != 200:
            return None
        raise OAuthProtocolError(f"{what} answer is not JSON", status=response.status_code) from None


def _error_from(kind: type[OAuthError], message: str, response: httpx.Response, body: Any) -> OAuthError:
    error = body.get("error") if isinstance(body, Mapping) else None
    description = body.get("error_description") if isinstance(body, Mapping) else None
    return kind(
        message,
        error=error if isinstance(error, str) else None,
        description=description if isinstance(description, str) else None,
        status=response.status_code,
    )


def _token_response(body: Any) -> TokenResponse:
    if not isinstance(body, Mapping):
        raise OAuthProtocolError("token answer is not a JSON object")
    token_type = _required(body, "token_type", "token")
    if token_type.lower() != "bearer":
        raise OAuthProtocolError(f"token_type {token_type!r} is not Bearer")
    return TokenResponse(
        access_token=_required_token(body, "access_token", "token"),
        token_type=token_type,
        refresh_token=_token(body, "refresh_token", "token", required=False),
        expires_in=_number(body, "expires_in", "token", required=False),
        scope=_optional(body, "scope", "token"),
    )


def _optional(data: Mapping[str, Any], name: str, what: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise OAuthProtocolError(f"{what}: {name} is not a string")
    return value


def _required(data: Mapping[str, Any], name: str, what: str) -> str:
    value = _optional(data, name, what)
    if not value:
        raise OAuthProtocolError(f"{what}: {name} is missing")
    return value


def _token(data: Mapping[str, Any], name: str, what: str, *, required: bool) -> str | None:
    """A token or code: ``1*VSCHAR`` (RFC 6749 Appendix A). The message never contains it."""
    value = _required(data, name, what) if required else _optional(data, name, what)
    if value is not None and not _VSCHAR.fullmatch(value):
        raise OAuthProtocolError(f"{what}: {name} is not printable ASCII")
    return value


def _required_token(data: Mapping[str, Any], name: str, what: str) -> str:
    value = _token(data, name, what, required=True)
    assert value is not None  # required
    return value


def _number(data: Mapping[str, Any], name: str, what: str, *, required: bool) -> float | None:
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
