"""The device grant client against the development stack's Authlib OAuth server (no Synapse), served behind two
small stand-ins a real Synapse cannot play:

- a homeserver that offers the auth metadata only on the *unstable* MSC2965 path (Synapse serves both), and
- a response rewriter that answers the four RFC 8628 polling errors with HTTP 403, as MAS does (Authlib sends
  400).

These stand in until a MAS instance can run in the test environment; approval needs Synapse and is covered in
``test_oauth_devstack.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devstack.oauth import OAuthService, OAuthSettings, build_oauth_service, server_metadata
from devstack.serving import ServerThread, bound_socket
from qrlink_client.oauth import (
    UNSTABLE_METADATA_PATH,
    AuthMetadataUnavailable,
    DeviceAuthorizationFailed,
    DeviceGrantClient,
    DeviceGrantDenied,
    DeviceGrantExpired,
    DeviceGrantUnsupported,
    OAuthTransportError,
    ScopePrefix,
    device_scope,
    discover_auth_metadata,
)

DEVICE_ID = "Vq3/XGd+0Plv8nLk1JYnZ0A2cQJtG0uY3QdYBqkQ1Qs"
POLLING_ERRORS = {"authorization_pending", "slow_down", "access_denied", "expired_token"}


class MasStatusCodes:
    """ASGI wrapper: token-endpoint polling errors leave with 403 instead of 400 (MAS behaviour)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.rewritten: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/oauth2/token":
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        start = next(m for m in held if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
        error = json.loads(body).get("error") if body.startswith(b"{") else None
        if start["status"] == 400 and error in POLLING_ERRORS:
            start = {**start, "status": 403}
            self.rewritten.append(error)
        await send(start)
        await send({"type": "http.response.body", "body": body})


@dataclass
class StandIn:
    base_url: str
    oauth: OAuthService
    statuses: MasStatusCodes
    thread: ServerThread

    def call(self, coroutine: Any) -> Any:
        return self.thread.call(coroutine)


def serve(*, lifetime: int = 600, interval: int = 1, offer_device_grant: bool = True) -> StandIn:
    sock = bound_socket()
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    oauth = build_oauth_service(
        OAuthSettings(issuer=base_url, device_code_lifetime=lifetime, poll_interval=interval),
        homeserver_url="http://127.0.0.1:9/",  # no Synapse: nothing here approves a grant
        server_name="example.org",
        synapse_secret="unused-secret",
        admin_token="unused-token",
    )

    async def unstable_metadata(request: Request) -> JSONResponse:
        metadata = server_metadata(oauth.server)
        if not offer_device_grant:
            metadata["grant_types_supported"] = ["authorization_code", "refresh_token"]
        return JSONResponse(metadata)

    statuses = MasStatusCodes(oauth.app)
    app = Starlette(
        routes=[Route("/" + UNSTABLE_METADATA_PATH, unstable_metadata), Mount("/", app=statuses)],
        lifespan=oauth.app.router.lifespan_context,
    )
    thread = ServerThread(app, sock)
    thread.start(10.0)
    return StandIn(base_url, oauth, statuses, thread)


@pytest.fixture
def server() -> Iterator[StandIn]:
    stand_in = serve()
    yield stand_in
    stand_in.thread.stop()


async def deny(server: StandIn, user_code: str) -> None:
    async def on_server_loop() -> None:
        grant = server.oauth.accounts.store.grant_by_user_code(user_code)
        assert grant is not None
        server.oauth.accounts.deny(grant)

    await server.thread.acall(on_server_loop())


async def test_metadata_falls_back_to_the_unstable_path(server: StandIn, http: httpx.AsyncClient) -> None:
    metadata = await discover_auth_metadata(http, server.base_url)

    assert metadata.issuer == server.base_url
    assert metadata.supports_device_grant


async def test_homeserver_without_metadata_is_reported(http: httpx.AsyncClient, server: StandIn) -> None:
    with pytest.raises(AuthMetadataUnavailable):
        await discover_auth_metadata(http, server.base_url + "not-a-homeserver/")


async def test_metadata_without_device_grant_is_unsupported(http: httpx.AsyncClient) -> None:
    stand_in = serve(offer_device_grant=False)
    try:
        with pytest.raises(DeviceGrantUnsupported):
            await DeviceGrantClient.create(http, stand_in.base_url)
    finally:
        stand_in.thread.stop()


async def test_static_client_id_skips_registration(server: StandIn, http: httpx.AsyncClient) -> None:
    registered = await DeviceGrantClient.create(http, server.base_url)

    static = await DeviceGrantClient.create(http, server.base_url, client_id=registered.client_id)

    assert static.client_id == registered.client_id
    assert (await static.request_device_authorization(DEVICE_ID)).user_code


@pytest.mark.parametrize("prefix", list(ScopePrefix))
async def test_device_ids_with_slash_and_plus_reach_the_server_intact(
    server: StandIn, http: httpx.AsyncClient, prefix: ScopePrefix
) -> None:
    client = await DeviceGrantClient.create(http, server.base_url)

    grant = await client.request_device_authorization(DEVICE_ID, prefix=prefix)

    stored = server.oauth.accounts.store.grant_by_user_code(grant.user_code)
    assert stored is not None and stored.device_id == DEVICE_ID
    assert stored.scope == device_scope(DEVICE_ID, prefix)


async def test_refused_device_authorization_is_named(server: StandIn, http: httpx.AsyncClient) -> None:
    client = await DeviceGrantClient.create(http, server.base_url, client_id="not-registered")

    with pytest.raises(DeviceAuthorizationFailed) as raised:
        await client.request_device_authorization(DEVICE_ID)
    assert raised.value.error == "invalid_client"


async def test_access_denied_sent_with_403_is_a_denial(server: StandIn, http: httpx.AsyncClient) -> None:
    polls = 0

    async def sleep(seconds: float) -> None:
        nonlocal polls
        polls += 1
        if polls == 2:
            await deny(server, grant.user_code)

    client = await DeviceGrantClient.create(http, server.base_url, sleep=sleep)
    grant = await client.request_device_authorization(DEVICE_ID)

    with pytest.raises(DeviceGrantDenied) as raised:
        await client.poll_token(grant)
    assert raised.value.status == 403
    assert server.statuses.rewritten[-1] == "access_denied"


async def test_authorization_pending_sent_with_403_keeps_polling(server: StandIn, http: httpx.AsyncClient) -> None:
    clock = [0.0]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        # Time passes for the client as asked; the server sees real (slower) time, so polls are too fast
        # for it only when the client ignores the interval.
        waits.append(seconds)
        clock[0] += seconds
        await asyncio.sleep(seconds)
        if len(waits) == 3:
            await deny(server, grant.user_code)

    client = await DeviceGrantClient.create(http, server.base_url, sleep=sleep, clock=lambda: clock[0])
    grant = await client.request_device_authorization(DEVICE_ID)

    with pytest.raises(DeviceGrantDenied):
        await client.poll_token(grant)
    assert server.statuses.rewritten == ["authorization_pending", "authorization_pending", "access_denied"]
    assert waits == [1.0, 1.0, 1.0]


async def test_slow_down_sent_with_403_adds_five_seconds(server: StandIn, http: httpx.AsyncClient) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            await deny(server, grant.user_code)

    client = await DeviceGrantClient.create(http, server.base_url, sleep=sleep)
    grant = await client.request_device_authorization(DEVICE_ID)

    with pytest.raises(DeviceGrantDenied):
        await client.poll_token(grant)
    assert server.statuses.rewritten[:2] == ["authorization_pending", "slow_down"]
    assert waits == [1.0, 1.0, 6.0]


async def test_expired_token_sent_with_403_is_expiry(http: httpx.AsyncClient) -> None:
    stand_in = serve(lifetime=2, interval=1)
    try:
        waits: list[float] = []

        async def sleep(seconds: float) -> None:
            waits.append(seconds)
            await asyncio.sleep(1.2)

        # The client's own clock never advances, so only the server can say the code expired.
        client = await DeviceGrantClient.create(http, stand_in.base_url, sleep=sleep, clock=lambda: 0.0)
        grant = await client.request_device_authorization(DEVICE_ID)

        with pytest.raises(DeviceGrantExpired) as raised:
            await client.poll_token(grant)
        assert raised.value.status == 403
        assert stand_in.statuses.rewritten[-1] == "expired_token"
    finally:
        stand_in.thread.stop()


async def test_polling_stops_when_the_code_expires_on_the_client_clock(
    server: StandIn, http: httpx.AsyncClient
) -> None:
    clock = [0.0]

    async def sleep(seconds: float) -> None:
        clock[0] += seconds

    client = await DeviceGrantClient.create(http, server.base_url, sleep=sleep, clock=lambda: clock[0])
    grant = await client.request_device_authorization(DEVICE_ID)
    clock[0] = grant.expires_at - 0.5

    with pytest.raises(DeviceGrantExpired):
        await client.poll_token(grant)


async def test_unreachable_server_is_a_transport_error(http: httpx.AsyncClient) -> None:
    sock = bound_socket()  # bound, never listening: connections are refused
    try:
        with pytest.raises(OAuthTransportError):
            await discover_auth_metadata(http, f"http://127.0.0.1:{sock.getsockname()[1]}/")
    finally:
        sock.close()


def test_scope_has_exactly_one_device_in_either_prefix() -> None:
    assert device_scope("A/b+c") == "urn:matrix:client:api:* urn:matrix:client:device:A/b+c"
    assert device_scope("A/b+c", ScopePrefix.UNSTABLE) == (
        "urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:org.matrix.msc2967.client:device:A/b+c"
    )


@pytest.mark.parametrize("device_id", ["", "two words", "tab\there", "new\nline"])
def test_scope_refuses_device_ids_that_would_split_it(device_id: str) -> None:
    with pytest.raises(ValueError):
        device_scope(device_id)
