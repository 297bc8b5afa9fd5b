"""Whole matrix-js-sdk logins (Element Web's ``MSC4108SignInWithQR``) through our server with held polls.

js-sdk's ``MSC4108RendezvousSession.receive`` GETs the session with ``If-None-Match`` and sleeps a second after
every 304; it sets no timeout and no abort signal on that fetch (js-sdk 43.0.0, ``lib/rendezvous/transports/
MSC4108RendezvousSession.js``). Our server holds such a GET until the other device writes, so every hand-over
takes milliseconds instead of up to a second, and js-sdk cannot tell (``docs/push.md``, "Held Gen-1 polls").

Each login runs the new device in js-sdk and ``grant_login`` as the existing device, both QR roles, on four
rendezvous servers: Synapse's own (the baseline), ours with holds off, ours with holds on, and ours with holds
on in two worker processes sharing the machine's Redis (each request may reach either worker, so a poll held by
one is woken by a write through the other). ``grant_login`` polls
like a standard client (``TransportOptions(push=False)``), so both devices send plain conditional GETs. Each
side's payloads are recorded in order: what one side received must be exactly what the other sent, no
payload missed, none twice.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from devstack import DevStack
from devstack.users import create_e2ee_user
from qrlink_client.transport import TransportOptions
from rendezvous.protocol import GEN1_PATH
from tests.interop.test_jssdk_signin import ExistingDevice, Login, js, run_login
from tests.peers.node import NodeDriver, NodeDriverFactory
from tests.support.urls import under

#: Redis for the two-worker server; its own database, as the bench empties the one it runs on.
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379").rstrip("/") + "/13"

pytestmark = [pytest.mark.node, pytest.mark.synapse, pytest.mark.timeout(180)]

#: Path fragments of Gen-1 session URLs: ours (and the create path), Synapse's sessions.
_GEN1_URL_PARTS = (GEN1_PATH, "/_synapse/client/rendezvous/")
POLLING = TransportOptions(push=False)


def _is_gen1(url: str) -> bool:
    return any(part in url for part in _GEN1_URL_PARTS)


@dataclass
class Payloads:
    """What one device sent (the create's body, then each accepted PUT) and received (each 200 GET), in order."""

    sent: list[str] = field(default_factory=list)
    received: list[str] = field(default_factory=list)
    #: 304 answers to its polls.
    not_modified: int = 0
    #: GETs abandoned by the client's own timeout.
    abandoned: int = 0

    def record(self, method: str, url: str, status: int | None, request_body: str | None, body: str | None) -> None:
        if not _is_gen1(url):
            return
        if method == "GET":
            if status == 200:
                assert body is not None
                self.received.append(body)
            elif status == 304:
                self.not_modified += 1
            elif status is None:
                self.abandoned += 1
        elif method in ("POST", "PUT") and status in (201, 202):
            self.sent.append(request_body or "")

    @classmethod
    def of_trace(cls, trace: list[dict[str, Any]]) -> Payloads:
        """js-sdk's side, from the driver's HTTP trace."""
        payloads = cls()
        for entry in trace:
            status, sent, body = entry.get("status"), entry.get("request_body"), entry.get("response_body")
            payloads.record(entry["method"], entry["url"], status, sent, body)
        return payloads

    def hooks(self) -> dict[str, list[Any]]:
        """httpx event hooks recording ``grant_login``'s side."""

        async def on_response(response: httpx.Response) -> None:
            request = response.request
            body = None
            if request.method == "GET" and response.status_code == 200 and _is_gen1(str(request.url)):
                body = (await response.aread()).decode()
            self.record(request.method, str(request.url), response.status_code, request.content.decode(), body)

        return {"response": [on_response]}


@dataclass
class Server:
    """One dev stack and where its Gen-1 sessions live."""

    name: str
    stack: DevStack
    gen1_create_url: str

    @property
    def holds(self) -> bool:
        return self.name.startswith("ours-holds-on")


@pytest.fixture(scope="module", params=["synapse", "ours-holds-off", "ours-holds-on", "ours-holds-on-redis-2-workers"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """Synapse's MSC4108 endpoint, or ours behind the stack's front proxy (the homeserver URL): js-sdk creates
    its session wherever the homeserver's ``/versions`` sends it, which is the front, hence our server."""
    name: str = request.param
    if name == "synapse":
        with DevStack.start(poll_interval=1, rendezvous=False) as stack:
            yield Server(name, stack, under(stack.homeserver_url, GEN1_PATH))
        return
    env = {"RENDEZVOUS_HOLD_ENABLED": "false" if name == "ours-holds-off" else "true"}
    if name == "ours-holds-on-redis-2-workers":
        env |= {"RENDEZVOUS_STORE_URL": REDIS_URL, "RENDEZVOUS_WORKERS": "2"}
    with DevStack.start(poll_interval=1, gen2_rendezvous="qrlink", rendezvous_env=env) as stack:
        yield Server(name, stack, under(stack.homeserver_url, GEN1_PATH))


@dataclass
class Traced:
    login: Login
    js: Payloads
    existing: Payloads
    seconds: float


async def traced_login(server: Server, driver: NodeDriver, *, new_device_shows: bool, **options: Any) -> Traced:
    existing_payloads = Payloads()
    started = time.monotonic()
    outcome = await run_login(
        server.stack,
        driver,
        new_device_shows=new_device_shows,
        gen1_create_url=server.gen1_create_url,
        http_hooks=existing_payloads.hooks(),
        transport_options=POLLING,
        **options,
    )
    seconds = time.monotonic() - started
    if not isinstance(outcome, Login):
        raise AssertionError(f"login failed: js-sdk {outcome[0]!r}, grant_login {outcome[1]!r}")
    state = await js(driver, "state")
    assert state["failures"] == []
    return Traced(outcome, Payloads.of_trace(outcome.trace), existing_payloads, seconds)


def assert_every_payload_once_in_order(traced: Traced) -> None:
    js_side, existing = traced.js, traced.existing
    # ~8 hand-overs: the create's empty payload, the channel's two, then the m.login.* messages.
    assert len(js_side.sent) + len(existing.sent) >= 7
    assert js_side.received == existing.sent
    assert existing.received == js_side.sent


ROLES = [pytest.param(True, id="new-device-shows"), pytest.param(False, id="existing-device-shows")]


@pytest.mark.parametrize("new_device_shows", ROLES)
async def test_whole_login_delivers_every_payload_once_in_order(
    server: Server, node_driver: NodeDriverFactory, new_device_shows: bool
) -> None:
    traced = await traced_login(server, node_driver("jssdk"), new_device_shows=new_device_shows)

    assert_every_payload_once_in_order(traced)
    sessions = {entry["url"] for entry in traced.login.trace if entry["method"] == "GET" and _is_gen1(entry["url"])}
    if server.name == "synapse":
        assert all("/_synapse/client/rendezvous/" in url for url in sessions)
    else:
        assert all(url.startswith(server.gen1_create_url + "/") for url in sessions)
    polls = traced.js.not_modified + traced.existing.not_modified
    if server.holds:
        # Every wait of this login is far below hold_ms: each poll is answered by the other side's write.
        assert polls == 0, (traced.js, traced.existing)
    else:
        assert polls > 0
    print(f"{server.name} new_device_shows={new_device_shows}: login {traced.seconds:.2f} s, {polls} 304s")


async def test_client_whose_request_timeout_is_shorter_than_hold_ms_retries_and_loses_nothing(
    server: Server, node_driver: NodeDriverFactory
) -> None:
    """js-sdk with every GET abandoned and sent again after 250 ms (the server holds for 20 s): the user takes
    1.5 s on the verification page, so js-sdk's wait for ``m.login.protocol_accepted`` outlasts several tries."""
    if not server.holds:
        pytest.skip("about held polls")
    driver = node_driver("jssdk")
    await js(driver, "set_get_timeout", ms=250)
    existing = ExistingDevice(await create_e2ee_user(server.stack, prefix="js", device_id="EXISTING"))
    existing.open_delay = 1.5

    traced = await traced_login(server, driver, new_device_shows=True, existing=existing)

    assert_every_payload_once_in_order(traced)
    assert traced.js.abandoned >= 3, traced.js
