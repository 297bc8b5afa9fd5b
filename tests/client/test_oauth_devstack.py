"""The device grant client against the development stack: the Authlib OAuth server in front of a real Synapse
in MAS mode, discovered through Synapse's own ``auth_metadata``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest

from devstack import DevStack
from devstack.browser import Browser
from qrlink_client.oauth import (
    DeviceAuthorization,
    DeviceGrantClient,
    DeviceGrantDenied,
    ScopePrefix,
    TokenRequestFailed,
    discover_auth_metadata,
    whoami,
)

pytestmark = pytest.mark.synapse


@pytest.fixture(scope="module")
def stack() -> Iterator[DevStack]:
    with DevStack.start(rendezvous=False, poll_interval=1) as running:
        yield running


@pytest.fixture
def user(stack: DevStack) -> tuple[str, str]:
    localpart, password = f"oauth-{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    stack.create_user(localpart, password)
    return localpart, password


@pytest.fixture
async def client(stack: DevStack, http: httpx.AsyncClient) -> DeviceGrantClient:
    return await DeviceGrantClient.create(http, stack.homeserver_url)


def element_x_device_id() -> str:
    return f"QR/{uuid.uuid4().hex[:8]}+dev"


async def answer_in_browser(grant: DeviceAuthorization, user: tuple[str, str], action: str) -> None:
    def run() -> None:
        with Browser() as browser:
            page = browser.approve(
                {"verification_uri_complete": grant.verification_uri_complete, "user_code": grant.user_code},
                *user,
                action=action,
            )
            assert page.status_code == 200, page.text

    await asyncio.to_thread(run)


async def test_metadata_is_discovered_through_the_homeserver(stack: DevStack, http: httpx.AsyncClient) -> None:
    metadata = await discover_auth_metadata(http, stack.homeserver_url)

    assert metadata.issuer == stack.issuer
    assert metadata.supports_device_grant


@pytest.mark.parametrize("prefix", list(ScopePrefix))
async def test_approved_grant_signs_the_device_in(
    stack: DevStack, http: httpx.AsyncClient, client: DeviceGrantClient, user: tuple[str, str], prefix: ScopePrefix
) -> None:
    device_id = element_x_device_id()
    grant = await client.request_device_authorization(device_id, prefix=prefix)

    tokens, _ = await asyncio.gather(client.poll_token(grant), answer_in_browser(grant, user, "approve"))

    me = await whoami(http, stack.homeserver_url, tokens.access_token)
    assert me.user_id == f"@{user[0]}:{stack.server_name}"
    assert me.device_id == device_id


async def test_refreshed_token_is_accepted_by_the_homeserver(
    stack: DevStack, http: httpx.AsyncClient, client: DeviceGrantClient, user: tuple[str, str]
) -> None:
    grant = await client.request_device_authorization(element_x_device_id())
    tokens, _ = await asyncio.gather(client.poll_token(grant), answer_in_browser(grant, user, "approve"))
    assert tokens.refresh_token is not None

    refreshed = await client.refresh(tokens.refresh_token)

    assert refreshed.access_token != tokens.access_token
    assert (await whoami(http, stack.homeserver_url, refreshed.access_token)).user_id.startswith(f"@{user[0]}:")


async def test_used_refresh_token_is_refused(client: DeviceGrantClient, user: tuple[str, str]) -> None:
    grant = await client.request_device_authorization(element_x_device_id())
    tokens, _ = await asyncio.gather(client.poll_token(grant), answer_in_browser(grant, user, "approve"))
    assert tokens.refresh_token is not None
    await client.refresh(tokens.refresh_token)

    with pytest.raises(TokenRequestFailed) as raised:
        await client.refresh(tokens.refresh_token)
    assert raised.value.error == "invalid_grant"


async def test_denied_grant_raises_device_grant_denied(client: DeviceGrantClient, user: tuple[str, str]) -> None:
    grant = await client.request_device_authorization(element_x_device_id())

    with pytest.raises(DeviceGrantDenied) as raised:
        await asyncio.gather(client.poll_token(grant), answer_in_browser(grant, user, "deny"))
    assert raised.value.error == "access_denied"


async def test_polling_too_fast_backs_off_by_five_seconds_per_slow_down(
    stack: DevStack, http: httpx.AsyncClient
) -> None:
    waits: list[float] = []

    class Stop(Exception):
        pass

    async def no_wait(seconds: float) -> None:
        # Not sleeping makes every poll after the first too fast for the server's clock.
        waits.append(seconds)
        if len(waits) == 4:
            raise Stop

    client = await DeviceGrantClient.create(http, stack.homeserver_url, sleep=no_wait)
    grant = await client.request_device_authorization(element_x_device_id())

    with pytest.raises(Stop):
        await client.poll_token(grant)
    assert waits == [1.0, 1.0, 6.0, 11.0]


async def test_token_and_device_code_stay_out_of_reprs(client: DeviceGrantClient, user: tuple[str, str]) -> None:
    grant = await client.request_device_authorization(element_x_device_id())
    tokens, _ = await asyncio.gather(client.poll_token(grant), answer_in_browser(grant, user, "approve"))

    assert grant.device_code not in repr(grant)
    assert tokens.access_token not in repr(tokens)
    assert tokens.refresh_token is not None and tokens.refresh_token not in repr(tokens)
