"""``grant_login``'s device ID check, the one that stops a login from taking over a device the user already has:
both real drivers (``grant_login`` and ``login_new_device``) over our rendezvous server in this process, with a
homeserver whose ``GET /_matrix/client/v3/devices/{id}`` says the ID is taken.

The homeserver (and its OAuth server) is a small stand-in, an :class:`httpx.MockTransport` behind the one
address both devices use for it, not Synapse: it has to answer the device check with any status the test
chooses (a real homeserver answers 200 only for a device that exists, and 401/403/5xx only when something else
is wrong), and the test must end in well under a second. The same check against a real Synapse runs end to end
in ``tests/e2e/test_failures.py`` (``-k device_id_in_use``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from qrlink_client.channel import CheckCode
from qrlink_client.e2ee import CrossSigningKeys, OlmDevice, SecretsBundle, StaticSecrets
from qrlink_client.flow import DeviceAlreadyExists, EstablishingSecureChannel, Progress
from qrlink_client.login import QrCodeReady, ShowGen1, grant_login, login_new_device
from qrlink_client.transport import RetryPolicy, TransportOptions
from rendezvous.protocol import GEN1_PATH
from tests.support.server import serve_settings
from tests.support.urls import under

HOMESERVER = "http://hs.test/"
SERVER_NAME = "hs.test"
NEW_DEVICE_ID = "QR/taken+x"  # "/" and "+" must reach the homeserver percent-encoded
DEVICE_PATH = "/_matrix/client/v3/devices/QR%2Ftaken%2Bx"
ACCESS_TOKEN = "syt_existing_device"
FAST = TransportOptions(poll_interval=0.02, push=False, retry=RetryPolicy(attempts=2, initial_delay=0.01))
WITHIN = 5.0  # seconds; the whole login takes a few hundred milliseconds


@dataclass
class Homeserver:
    """The stand-in: device authorization for the new device, and ``device_status`` for the device check."""

    device_status: int
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.raw_path.decode()
        if path == "/_matrix/client/v1/auth_metadata":
            return httpx.Response(
                200,
                json={
                    "issuer": HOMESERVER,
                    "token_endpoint": f"{HOMESERVER}oauth/token",
                    "device_authorization_endpoint": f"{HOMESERVER}oauth/device",
                    "registration_endpoint": f"{HOMESERVER}oauth/register",
                    "grant_types_supported": ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
                },
            )
        if path == "/oauth/register":
            return httpx.Response(201, json={"client_id": "new-device-client"})
        if path == "/oauth/device":
            return httpx.Response(
                200,
                json={
                    "device_code": "device-code",
                    "user_code": "WDJB-MJHT",
                    "verification_uri": f"{HOMESERVER}link",
                    "expires_in": 600,
                    "interval": 1,
                },
            )
        if path.startswith("/_matrix/client/v3/devices/"):
            if self.device_status == 200:
                return httpx.Response(200, json={"device_id": NEW_DEVICE_ID, "display_name": "the user's phone"})
            return httpx.Response(self.device_status, json={"errcode": "M_UNKNOWN", "error": "stand-in"})
        return httpx.Response(404, json={"errcode": "M_UNRECOGNIZED", "error": f"the stand-in has no {path}"})

    def device_checks(self) -> list[tuple[str, str | None]]:
        return [
            (r.url.raw_path.decode(), r.headers.get("authorization"))
            for r in self.requests
            if r.url.raw_path.startswith(b"/_matrix/client/v3/devices/")
        ]

    def paths(self) -> list[str]:
        return [r.url.raw_path.decode() for r in self.requests]


@pytest.fixture(scope="module")
def rendezvous() -> Iterator[str]:
    """Our rendezvous server in a thread of this process, the rate limits off for fast polling."""
    with serve_settings(create_rate_per_second=0, session_rate_per_second=0) as base_url:
        yield base_url


@dataclass
class Device:
    """One device's progress, the QR code it shows and the check code it displays."""

    progress: list[Progress] = field(default_factory=list)
    qr: asyncio.Future[bytes] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    code: asyncio.Future[CheckCode] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def on_progress(self, step: Progress) -> None:
        self.progress.append(step)
        if isinstance(step, QrCodeReady):
            self.qr.set_result(step.data)
        if isinstance(step, EstablishingSecureChannel) and step.check_code is not None:
            self.code.set_result(step.check_code)


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, Homeserver]]:
    """One HTTP client for both devices: the stand-in homeserver at hs.test, the real network for the rest."""
    homeserver = Homeserver(device_status=200)
    async with httpx.AsyncClient(
        mounts={"all://hs.test": httpx.MockTransport(homeserver)}, timeout=5, trust_env=False
    ) as http:
        yield http, homeserver


async def run_both(http: httpx.AsyncClient, rendezvous: str, new_device_shows: bool) -> tuple[Any, Any, list[str]]:
    """Both devices until both end, the one that shows the QR first; fails the test if either is still running
    after :data:`WITHIN` seconds. Returns (new device's outcome, existing device's outcome, URIs opened)."""
    new, existing = Device(), Device()
    opened: list[str] = []
    show = ShowGen1(under(rendezvous, GEN1_PATH))

    async def open_uri(uri: str) -> bool:
        opened.append(uri)
        return True

    async def resolve(server_name: str) -> str:
        assert server_name == SERVER_NAME
        return HOMESERVER

    def new_device(**role: Any) -> asyncio.Task[Any]:
        return asyncio.create_task(
            login_new_device(
                http,
                pickle_key=b"k" * 32,
                on_progress=new.on_progress,
                device=OlmDevice.generate(NEW_DEVICE_ID),
                resolve_homeserver=resolve,
                transport_options=FAST,
                **role,
            )
        )

    def existing_device(**role: Any) -> asyncio.Task[Any]:
        return asyncio.create_task(
            grant_login(
                http,
                homeserver_url=HOMESERVER,
                access_token=ACCESS_TOKEN,
                secrets=StaticSecrets(SecretsBundle(CrossSigningKeys.generate())),
                open_verification_uri=open_uri,
                on_progress=existing.on_progress,
                transport_options=FAST,
                **role,
            )
        )

    async def typed(scanner: Device) -> str:
        return (await scanner.code).digits

    async def first_qr(shower: Device) -> bytes:
        try:
            return await asyncio.wait_for(shower.qr, WITHIN)
        except TimeoutError:
            pytest.fail(f"no QR code was shown within {WITHIN:.0f} s")

    if new_device_shows:
        new_task = new_device(show=show, check_code_prompt=lambda: typed(existing))
        existing_task = existing_device(scanned=await first_qr(new))
    else:
        existing_task = existing_device(show=show, server_name=SERVER_NAME, check_code_prompt=lambda: typed(new))
        new_task = new_device(scanned=await first_qr(existing))
    tasks = {"new device": new_task, "existing device": existing_task}
    _, pending = await asyncio.wait(tasks.values(), timeout=WITHIN)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    still_running = [name for name, task in tasks.items() if task in pending]
    if still_running:
        pytest.fail(
            f"the {' and the '.join(still_running)} did not end within {WITHIN:.0f} s; "
            f"the new device was to be told device_already_exists (URIs opened: {opened})"
        )
    return _outcome(new_task), _outcome(existing_task), opened


def _outcome(task: asyncio.Task[Any]) -> Any:
    error = task.exception()
    return error if error is not None else task.result()


ROLES = pytest.mark.parametrize("new_device_shows", [True, False], ids=["new-device-shows", "existing-device-shows"])


@ROLES
@pytest.mark.parametrize("status", [200, 403, 500])
@pytest.mark.timeout(10)
async def test_grant_login_tells_the_new_device_its_id_is_taken_when_the_homeserver_does_not_answer_404(
    client: tuple[httpx.AsyncClient, Homeserver], rendezvous: str, new_device_shows: bool, status: int
) -> None:
    http, homeserver = client
    homeserver.device_status = status
    loop = asyncio.get_running_loop()
    started = loop.time()

    new, existing, opened = await run_both(http, rendezvous, new_device_shows)

    assert isinstance(existing, DeviceAlreadyExists), f"grant_login ended with {existing!r}"
    assert not existing.by_peer and existing.reason == "device_already_exists"
    assert isinstance(new, DeviceAlreadyExists), f"login_new_device ended with {new!r}"
    assert new.by_peer and new.reason == "device_already_exists"
    assert homeserver.device_checks() == [(DEVICE_PATH, f"Bearer {ACCESS_TOKEN}")]
    assert opened == []  # the user was never sent to approve a login onto the taken ID
    assert "/oauth/token" not in homeserver.paths()  # nor did the new device start polling for tokens
    assert loop.time() - started < 1.0


@pytest.mark.timeout(10)
async def test_grant_login_goes_on_to_the_verification_uri_when_the_homeserver_answers_404(
    client: tuple[httpx.AsyncClient, Homeserver], rendezvous: str
) -> None:
    # The counterpart: the same stand-in answering 404 lets the login go on. The user then never approves, so
    # the existing device is cancelled once it opened the URI; that is as far as this test needs to go.
    http, homeserver = client
    homeserver.device_status = 404
    new, existing = Device(), Device()
    opened = asyncio.Event()

    async def open_uri(uri: str) -> bool:
        opened.set()
        return True

    grant = asyncio.create_task(
        grant_login(
            http,
            homeserver_url=HOMESERVER,
            access_token=ACCESS_TOKEN,
            secrets=StaticSecrets(SecretsBundle(CrossSigningKeys.generate())),
            open_verification_uri=open_uri,
            on_progress=existing.on_progress,
            show=ShowGen1(under(rendezvous, GEN1_PATH)),
            server_name=SERVER_NAME,
            check_code_prompt=lambda: _digits(new),
            transport_options=FAST,
        )
    )
    login = asyncio.create_task(
        login_new_device(
            http,
            pickle_key=b"k" * 32,
            on_progress=new.on_progress,
            device=OlmDevice.generate(NEW_DEVICE_ID),
            scanned=await asyncio.wait_for(existing.qr, WITHIN),
            resolve_homeserver=lambda _: _home(),
            transport_options=FAST,
        )
    )
    try:
        await asyncio.wait_for(opened.wait(), WITHIN)
    except TimeoutError:
        pytest.fail(f"grant_login did not open the verification URI within {WITHIN:.0f} s after a 404")
    finally:
        # Cancelled at once: grant_login is then sending m.login.protocol_accepted, and a cancellation that
        # arrives during a send must end it too (it once went unnoticed and the driver waited for ever).
        for task in (grant, login):
            task.cancel()
        _, still_running = await asyncio.wait({grant, login}, timeout=2)
    assert not still_running, "cancelling grant_login and login_new_device did not end them within 2 s"
    assert homeserver.device_checks() == [(DEVICE_PATH, f"Bearer {ACCESS_TOKEN}")]


async def _digits(device: Device) -> str:
    return (await device.code).digits


async def _home() -> str:
    return HOMESERVER
