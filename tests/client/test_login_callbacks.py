"""The login drivers' callbacks: a callback of the wrong kind fails the login at once with :class:`CallbackError`
(and the other device is told), every progress step carries the time left for a countdown, and a wait that
runs out says what it waited for.

One side runs the real driver (:func:`login_new_device` / :func:`grant_login`) against our rendezvous server;
the test plays the other device with the handshake and raw ``m.login.*`` messages, so no homeserver is needed
(the existing device's device check goes to a scripted homeserver).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from qrlink_client.channel import ChannelError
from qrlink_client.e2ee import CrossSigningKeys, SecretsBundle, StaticSecrets
from qrlink_client.flow import (
    DeviceAuthorizationGrantInfo,
    EstablishingSecureChannel,
    FlowTimeout,
    FlowTimeouts,
    Progress,
    ProtocolMessage,
    Starting,
)
from qrlink_client.handshake import Handshake, scan_qr, show_qr
from qrlink_client.login import CallbackError, QrCodeReady, ShowGen1, grant_login, login_new_device
from qrlink_client.qr import decode_qr
from qrlink_client.transport import RetryPolicy, TransportOptions
from tests.support import transport as support
from tests.support.transport import OurServer

our_server = support.our_server

FAST = TransportOptions(poll_interval=0.05, push=False, retry=RetryPolicy(attempts=2, initial_delay=0.01))
HOMESERVER = "http://homeserver.test/"
PICKLE_KEY = b"k" * 32
pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """Reaches our rendezvous server for real; the homeserver knows no device (404)."""
    homeserver = httpx.MockTransport(lambda request: httpx.Response(404, json={"errcode": "M_NOT_FOUND"}))
    async with httpx.AsyncClient(trust_env=False, timeout=10.0, mounts={HOMESERVER: homeserver}) as http:
        yield http


async def _qr_shown(steps: list[Progress]) -> QrCodeReady:
    while True:
        for step in steps:
            if isinstance(step, QrCodeReady):
                return step
        await asyncio.sleep(0.02)


async def _read(handshake: Handshake) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await handshake.receive(timeout=10.0))
    return message


async def _new_device_showing(
    client: httpx.AsyncClient, our_server: OurServer, prompt: Callable[[], Any]
) -> tuple[asyncio.Task[Any], Handshake, list[Progress]]:
    """The driver shows a Gen-1 QR code; the test scans it and completes the handshake."""
    steps: list[Progress] = []
    login = asyncio.create_task(
        login_new_device(
            client,
            pickle_key=PICKLE_KEY,
            on_progress=steps.append,
            show=ShowGen1(our_server.gen1_create_url),
            check_code_prompt=prompt,
            timeouts=FlowTimeouts(message=30.0),
            transport_options=FAST,
        )
    )
    shown = await asyncio.wait_for(_qr_shown(steps), 10.0)
    scanner = await scan_qr(client, decode_qr(shown.data), options=FAST)
    # A prompt that fails at once writes m.login.failure over LoginOk before this side has read it (a Gen-1
    # session holds one payload), so the handshake may fail here; the tests that read the failure make the
    # prompt wait until the handshake is complete.
    with contextlib.suppress(ChannelError):
        await scanner.complete()
    return login, scanner, steps


async def test_a_prompt_run_through_to_thread_fails_at_once_and_the_peer_is_told(
    client: httpx.AsyncClient, our_server: OurServer
) -> None:
    async def ask() -> str:
        return "00"

    scanned = asyncio.Event()

    async def prompt() -> str:
        await scanned.wait()
        return await asyncio.to_thread(ask)  # type: ignore[arg-type]  # the mistake under test

    started = time.monotonic()
    login, scanner, _ = await _new_device_showing(client, our_server, prompt)
    assert scanner.established
    scanned.set()

    with pytest.raises(CallbackError, match="check_code_prompt returned an un-awaited coroutine instead of a str"):
        await asyncio.wait_for(login, 10.0)
    assert time.monotonic() - started < 10.0
    assert await _read(scanner) == {"type": "m.login.failure", "reason": "user_cancelled"}
    await scanner.aclose()


async def test_a_sync_prompt_is_refused_with_a_named_error(client: httpx.AsyncClient, our_server: OurServer) -> None:
    login, scanner, _ = await _new_device_showing(client, our_server, lambda: "00")

    with pytest.raises(CallbackError, match="check_code_prompt must be an async function") as caught:
        await asyncio.wait_for(login, 10.0)
    assert isinstance(caught.value, TypeError)
    await scanner.aclose()


async def test_progress_steps_carry_the_time_left(client: httpx.AsyncClient, our_server: OurServer) -> None:
    entered = asyncio.Event()

    async def ask() -> str:
        entered.set()
        await asyncio.sleep(3600)
        return "00"

    login, scanner, steps = await _new_device_showing(client, our_server, ask)
    await asyncio.wait_for(entered.wait(), 10.0)
    login.cancel()
    await asyncio.gather(login, return_exceptions=True)
    await scanner.aclose()

    starting, shown, established = steps
    assert isinstance(starting, Starting) and isinstance(shown, QrCodeReady)
    assert isinstance(established, EstablishingSecureChannel)
    for step in steps:
        # The machine's 30 s wait, or the session's own expiry if that comes first.
        assert step.time_left_s is not None and 0 < step.time_left_s <= 30.0
        assert step.deadline is not None and step.deadline > time.monotonic() - 30.0
    assert starting.time_left_s is not None and starting.time_left_s > 29.0


async def test_an_async_progress_callback_is_refused_before_any_request() -> None:
    async def on_progress(step: Progress) -> None:
        return None

    requests: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda request: requests.append(request) or httpx.Response(500))
    async with httpx.AsyncClient(transport=transport) as http:
        with pytest.raises(CallbackError, match="on_progress is called synchronously"):
            await login_new_device(
                http,
                pickle_key=PICKLE_KEY,
                on_progress=on_progress,  # type: ignore[arg-type]
                show=ShowGen1("http://rendezvous.test/"),
                check_code_prompt=lambda: asyncio.sleep(0, "00"),
            )
    assert requests == []


async def test_a_verification_page_opener_run_through_to_thread_fails_at_once(
    client: httpx.AsyncClient, our_server: OurServer
) -> None:
    async def open_page(uri: str) -> bool:
        return True

    def opener(uri: str) -> Awaitable[bool]:
        return asyncio.to_thread(open_page, uri)  # type: ignore[arg-type]

    new_device = await show_qr(client, ShowGen1(our_server.gen1_create_url), options=FAST)
    existing = asyncio.create_task(
        grant_login(
            client,
            homeserver_url=HOMESERVER,
            access_token="token",
            secrets=StaticSecrets(SecretsBundle(CrossSigningKeys.generate())),
            open_verification_uri=opener,
            on_progress=lambda step: None,
            scanned=new_device.qr.to_bytes(),
            transport_options=FAST,
        )
    )
    await new_device.complete()
    assert (await _read(new_device))["type"] == "m.login.protocols"
    protocol = ProtocolMessage(
        device_id="NEWDEVICE",
        device_authorization_grant=DeviceAuthorizationGrantInfo(
            verification_uri="https://auth.example/link", verification_uri_complete=None
        ),
    )
    await new_device.send(protocol.to_json())

    with pytest.raises(CallbackError, match="open_verification_uri returned an un-awaited coroutine"):
        await asyncio.wait_for(existing, 10.0)
    assert await _read(new_device) == {"type": "m.login.failure", "reason": "user_cancelled"}
    await new_device.aclose()


async def test_a_qr_code_nobody_scans_times_out_naming_the_wait(
    client: httpx.AsyncClient, our_server: OurServer
) -> None:
    with pytest.raises(FlowTimeout) as caught:
        await login_new_device(
            client,
            pickle_key=PICKLE_KEY,
            on_progress=lambda step: None,
            show=ShowGen1(our_server.gen1_create_url),
            check_code_prompt=lambda: asyncio.sleep(0, "00"),
            timeouts=FlowTimeouts(message=1.0),
            transport_options=FAST,
        )
    assert str(caught.value) == (
        "timed out while waiting for the other device to scan the QR code and set up the secure channel (waited 1 s)"
    )
