""":class:`DeviceGrantClient`: a registered OAuth client running device grants on one auth server, async over
httpx: the device authorization request, token polling and refresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import httpx

from ._http import error_from, json_body, request
from .errors import (
    DeviceAuthorizationFailed,
    DeviceGrantDenied,
    DeviceGrantExpired,
    DeviceGrantUnsupported,
    TokenRequestFailed,
)
from .grant import (
    DEVICE_CODE_GRANT_TYPE,
    REFRESH_TOKEN_GRANT_TYPE,
    SLOW_DOWN_INCREMENT,
    DeviceAuthorization,
    ScopePrefix,
    TokenResponse,
    device_scope,
    parse_device_authorization,
    parse_token_response,
)
from .metadata import AuthMetadata, discover_auth_metadata
from .registration import ClientMetadata, register_client

__all__ = ["DeviceGrantClient"]

logger = logging.getLogger(__package__)  # qrlink_client.oauth: one logger for the package


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
        response = await request(
            self._http,
            "POST",
            self.metadata.device_authorization_endpoint,
            data={"client_id": self.client_id, "scope": device_scope(device_id, prefix)},
        )
        body = json_body(response, "device authorization", allow_error=True)
        if response.status_code != 200:
            raise error_from(DeviceAuthorizationFailed, "device authorization refused", response, body)
        return parse_device_authorization(body, started)

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
            response = await request(
                self._http,
                "POST",
                self.metadata.token_endpoint,
                data={
                    "grant_type": DEVICE_CODE_GRANT_TYPE,
                    "device_code": authorization.device_code,
                    "client_id": self.client_id,
                },
            )
            body = json_body(response, "token", allow_error=True)
            if response.status_code == 200:
                return parse_token_response(body)
            error = body.get("error") if isinstance(body, Mapping) else None
            # RFC 6749 says 400; MAS sends these four with 403, so the status is not consulted for them.
            if error == "authorization_pending":
                continue
            if error == "slow_down":
                interval += SLOW_DOWN_INCREMENT
                logger.debug("token endpoint asked to slow down; interval now %s s", interval)
                continue
            if error == "access_denied":
                raise error_from(DeviceGrantDenied, "the user denied the device", response, body)
            if error == "expired_token":
                raise error_from(DeviceGrantExpired, "the device code expired", response, body)
            raise error_from(TokenRequestFailed, "the token request failed", response, body)

    async def refresh(self, refresh_token: str) -> TokenResponse:
        """RFC 6749 §6: new tokens for a refresh token. Raises :class:`TokenRequestFailed`."""
        response = await request(
            self._http,
            "POST",
            self.metadata.token_endpoint,
            data={"grant_type": REFRESH_TOKEN_GRANT_TYPE, "refresh_token": refresh_token, "client_id": self.client_id},
        )
        body = json_body(response, "token", allow_error=True)
        if response.status_code != 200:
            raise error_from(TokenRequestFailed, "refreshing the token failed", response, body)
        return parse_token_response(body)
