"""The ways a sign in with QR code fails, end to end on the development stack (real Synapse, the real OAuth
server and, for Gen-1, our rendezvous server), each driven by the two real :mod:`qrlink_client.login` calls.

Every test checks the named error on both devices and what crossed the rendezvous: each device's own HTTP
client records its rendezvous PUTs, and a spy on the driver's secure-channel send records the plaintext
message types behind them (one PUT per message after the one handshake PUT), so "the peer was told X" and
"no secrets were sent" are both facts about the wire. The man-in-the-middle tests go further: a real proxy
rendezvous decrypts everything the attacked device sent to it.

The wrong-code tests type at once, as soon as the scanner shows its code, so the failure is sent while the peer
may be writing its own next message. The out-of-turn tests make that race happen in each order on purpose: a
gate in the devices' HTTP clients holds both writes until both are in flight and lets them reach the
rendezvous one after the other, so the second meets a concurrent write (412/409); or it keeps the typing device
from reading the peer's write until it types. Either way the peer ends within seconds.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devstack import DevStack
from devstack.browser import VerificationPage
from devstack.serving import ServerThread, bound_socket
from devstack.users import E2eeUser, create_e2ee_user
from qrlink_client.channel import ChannelError, CheckCode, EciesChannel, HpkeChannel, SecureChannel
from qrlink_client.e2ee import (
    CrossSigningKeys,
    E2eeHomeserver,
    OlmDevice,
    SecretsBundle,
    SecretsMismatch,
    StaticSecrets,
)
from qrlink_client.flow import (
    AuthorizationExpired,
    CheckCodeMismatch,
    DeviceAlreadyExists,
    DeviceNotFound,
    EstablishingSecureChannel,
    FlowTimeouts,
    LoginAborted,
    LoginCancelled,
    LoginDeclined,
    Progress,
    WaitingForToken,
)
from qrlink_client.handshake import gen2_profile_of
from qrlink_client.link import Link
from qrlink_client.login import QrCodeReady, ShowGen1, ShowGen2, grant_login, login_new_device
from qrlink_client.qr import Gen1QrCode, Gen2QrCode, decode_qr
from qrlink_client.transport import SessionNotFound, TransportOptions
from rendezvous.protocol import GEN1_PATH, GEN2_UNSTABLE_PATH
from tests.e2e._limits import FAILURE_WITHIN, STEP_WITHIN
from tests.support.deadlines import ended_within, step_within
from tests.support.urls import under

pytestmark = pytest.mark.synapse

SERVER_NAME = "localhost"
SECRETS = "m.login.secrets"
FAILURE = "m.login.failure"
BOTH_GENERATIONS = pytest.mark.parametrize("generation", [1, 2], ids=["gen1", "gen2"])


# --- users and the browser ----------------------------------------------------------------------------------


EXISTING_DEVICE_ID = "EXISTING"


# --- what each device did -----------------------------------------------------------------------------------


After = Callable[[httpx.Request, httpx.Response], Awaitable[None]]
Before = Callable[[httpx.Request], Awaitable[None]]
CONFLICT_STATUSES = (409, 412)


class RecordingTransport(httpx.AsyncBaseTransport):
    """A real HTTP transport that also records every PUT body (and every write the server refused as
    concurrent), and can run a hook before each request and after each response."""

    def __init__(self, side: str) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.side = side
        self.puts: list[bytes] = []
        self.conflicts = 0
        self.before: Before | None = None
        self.after: After | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # Tells the man-in-the-middle proxy who wrote; a real attacker tells the devices apart by address.
        request.headers["x-test-side"] = self.side
        if self.before is not None:
            await self.before(request)
        response = await self._inner.handle_async_request(request)
        if request.method == "PUT" and 200 <= response.status_code < 300:
            # Only writes the server took (a Gen-2 PUT with a txnId may first meet a server without that route).
            self.puts.append(await request.aread())
        if request.method == "PUT" and response.status_code in CONFLICT_STATUSES:
            self.conflicts += 1
        if self.after is not None:
            await response.aread()
            await self.after(request, response)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class Side:
    """One device: its own HTTP client, its progress, the messages it sent, the code it shows."""

    name: str
    transport: RecordingTransport
    http: httpx.AsyncClient
    progress: list[Progress] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    qr: asyncio.Future[bytes] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    code: asyncio.Future[CheckCode] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    on_step: Callable[[Progress], None] | None = None

    def on_progress(self, step: Progress) -> None:
        self.progress.append(step)
        if isinstance(step, QrCodeReady):
            self.qr.set_result(step.data)
        if isinstance(step, EstablishingSecureChannel) and step.check_code is not None:
            self.code.set_result(step.check_code)
        if self.on_step is not None:
            self.on_step(step)

    @property
    def sent_types(self) -> list[str]:
        return [message["type"] for message in self.sent]

    def describe(self) -> str:
        """What this device did last, for a test that gave up waiting on it."""
        last = type(self.progress[-1]).__name__ if self.progress else "nothing"
        return f"last progress {last}, sent {self.sent_types or 'nothing'} after the handshake"


@pytest.fixture
async def sides(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Side, Side]]:
    """The new and the existing device, each with its own recorded HTTP client.

    The driver's channel send is wrapped by a spy (observation only: it calls the real send) that notes each
    plaintext message whose write the rendezvous took, and the device it came from.
    """
    by_client: dict[int, Side] = {}
    real_send = Link.send

    async def spy(link: Any, plaintext: bytes, **options: Any) -> None:
        side = by_client[id(link.transport._client)]
        writes = len(side.transport.puts)
        await real_send(link, plaintext, **options)
        if len(side.transport.puts) > writes:
            side.sent.append(json.loads(plaintext))

    monkeypatch.setattr(Link, "send", spy)
    made = []
    for name in ("new", "existing"):
        transport = RecordingTransport(name)
        http = httpx.AsyncClient(transport=transport, timeout=30, trust_env=False)
        side = Side(name, transport, http)
        by_client[id(http)] = side
        made.append(side)
    try:
        yield made[0], made[1]
    finally:
        for side in made:
            await side.http.aclose()


def handshake_puts_plus_messages(side: Side) -> bool:
    """Every PUT after the one handshake PUT (LoginInitiate or LoginOk) carried one recorded message."""
    return len(side.transport.puts) == 1 + len(side.sent)


# --- running both devices -----------------------------------------------------------------------------------


@dataclass
class Setup:
    generation: Literal[1, 2] = 1
    new_device_shows: bool = True
    page_action: Literal["approve", "deny", "ignore"] = "approve"
    new_device_id: str | None = None
    secrets: SecretsBundle | None = None
    existing_timeouts: FlowTimeouts | None = None
    base_url: str | None = None  # where sessions are created (a proxy), default: the stack
    wrong_code: bool = False  # the user types a code other than the one the scanner shows
    typed_code: Callable[[], Awaitable[str]] | None = None
    transport_options: TransportOptions | None = None  # both devices'
    # What the test waits for, named when the devices have not both ended within `within` seconds.
    waiting_for: str = "both devices to end"
    within: float = FAILURE_WITHIN


@dataclass
class Outcome:
    new: Any
    existing: Any
    page: VerificationPage
    typed_at: float | None  # loop time the check code was typed
    ended_at: dict[str, float]  # loop time each device's call ended, by side name

    def seconds_after_typing(self, side: Side) -> float:
        assert self.typed_at is not None
        return self.ended_at[side.name] - self.typed_at


async def run_login(stack: DevStack, user: E2eeUser, new: Side, existing: Side, setup: Setup) -> Outcome:
    """Both devices concurrently: the one that shows the QR starts first, the other scans what it showed."""
    assert stack.rendezvous_url is not None
    base = setup.base_url or (stack.rendezvous_url if setup.generation == 1 else stack.homeserver_url)
    show = ShowGen1(under(base, GEN1_PATH)) if setup.generation == 1 else ShowGen2(base)
    page = VerificationPage(user, setup.page_action)
    shower, scanner = (new, existing) if setup.new_device_shows else (existing, new)
    loop = asyncio.get_running_loop()
    typed_at: list[float] = []
    ended_at: dict[str, float] = {}

    async def typed() -> str:
        if setup.typed_code is not None:
            entered = await setup.typed_code()
        else:
            # Typed the moment the scanner shows its code: the scanner may be writing its next message meanwhile.
            digits = (await scanner.code).digits
            entered = f"{(int(digits) + 1) % 100:02d}" if setup.wrong_code else digits
        typed_at.append(loop.time())
        return entered

    async def resolve(server_name: str) -> str:
        assert server_name == SERVER_NAME
        return stack.homeserver_url

    def new_device(**role: Any) -> asyncio.Task[Any]:
        device_id = setup.new_device_id or f"QR/{uuid.uuid4().hex[:8]}+x"
        return asyncio.create_task(
            login_new_device(
                new.http,
                pickle_key=b"k" * 32,
                on_progress=new.on_progress,
                device=OlmDevice.generate(device_id),
                resolve_homeserver=resolve,
                transport_options=setup.transport_options,
                **role,
            )
        )

    def existing_device(**role: Any) -> asyncio.Task[Any]:
        return asyncio.create_task(
            grant_login(
                existing.http,
                homeserver_url=stack.homeserver_url,
                access_token=user.access_token,
                secrets=StaticSecrets(setup.secrets or user.bootstrap.bundle),
                open_verification_uri=page.open,
                on_progress=existing.on_progress,
                timeouts=setup.existing_timeouts,
                transport_options=setup.transport_options,
                **role,
            )
        )

    def shown_qr() -> Awaitable[bytes]:
        return step_within(shower.qr, STEP_WITHIN, f"the {shower.name} device to show a QR code")

    if setup.new_device_shows:
        new_task = new_device(show=show, check_code_prompt=typed)
        existing_task = existing_device(scanned=await shown_qr())
    else:
        existing_task = existing_device(show=show, server_name=SERVER_NAME, check_code_prompt=typed)
        new_task = new_device(scanned=await shown_qr())

    def note_end(name: str) -> Callable[[asyncio.Task[Any]], None]:
        def ended(_: asyncio.Task[Any]) -> None:
            ended_at[name] = loop.time()

        return ended

    new_task.add_done_callback(note_end(new.name))
    existing_task.add_done_callback(note_end(existing.name))
    devices = {"new device": new_task, "existing device": existing_task}
    by_name = {"new device": new, "existing device": existing}
    await ended_within(devices, setup.within, setup.waiting_for, lambda name: by_name[name].describe())
    for answer in page.answers:
        assert (await step_within(answer, STEP_WITHIN, "the verification page to answer")).status_code == 200
    return Outcome(_outcome(new_task), _outcome(existing_task), page, typed_at[0] if typed_at else None, ended_at)


def _outcome(task: asyncio.Task[Any]) -> Any:
    """What a device's call returned, or the exception it raised."""
    error = task.exception()
    return error if error is not None else task.result()


@pytest.fixture
async def user(stack: DevStack) -> E2eeUser:
    return await create_e2ee_user(stack, prefix="fail", device_id=EXISTING_DEVICE_ID)


async def device_keys(stack: DevStack, user: E2eeUser, device_id: str) -> Any:
    async with E2eeHomeserver(stack.homeserver_url, user.access_token) as hs:
        keys = await hs.query_keys([user.user_id])
    return keys["device_keys"].get(user.user_id, {}).get(device_id)


# --- the user denies ----------------------------------------------------------------------------------------


@BOTH_GENERATIONS
async def test_denial_sends_declined_and_both_devices_raise_login_declined(
    stack: DevStack, user: E2eeUser, sides: tuple[Side, Side], generation: Literal[1, 2]
) -> None:
    new, existing = sides

    setup = Setup(
        generation=generation,
        page_action="deny",
        waiting_for="the existing device to be told m.login.declined after the denial",
    )

    outcome = await run_login(stack, user, new, existing, setup)

    assert isinstance(outcome.new, LoginDeclined) and not outcome.new.by_peer
    assert isinstance(outcome.existing, LoginDeclined) and outcome.existing.by_peer
    assert new.sent_types == ["m.login.protocol", "m.login.declined"]
    assert existing.sent_types == ["m.login.protocols", "m.login.protocol_accepted"]
    assert handshake_puts_plus_messages(new) and handshake_puts_plus_messages(existing)


# --- the device grant expires -------------------------------------------------------------------------------


@pytest.fixture
def short_device_codes(stack: DevStack) -> Any:
    """Device codes that live three seconds while the test runs."""
    stack.set_device_code_lifetime(3)
    yield
    stack.set_device_code_lifetime(1200)


@BOTH_GENERATIONS
@pytest.mark.usefixtures("short_device_codes")
async def test_an_expired_grant_ends_both_devices_with_authorization_expired(
    stack: DevStack, user: E2eeUser, sides: tuple[Side, Side], generation: Literal[1, 2]
) -> None:
    new, existing = sides

    setup = Setup(
        generation=generation,
        page_action="ignore",
        waiting_for="the existing device to be told authorization_expired once the 3 s device code expired",
    )

    outcome = await run_login(stack, user, new, existing, setup)

    assert isinstance(outcome.new, AuthorizationExpired) and not outcome.new.by_peer
    assert isinstance(outcome.existing, AuthorizationExpired) and outcome.existing.by_peer
    assert outcome.existing.reason == "authorization_expired"
    assert new.sent[-1] == {"type": FAILURE, "reason": "authorization_expired"}
    assert SECRETS not in existing.sent_types and handshake_puts_plus_messages(new)


# --- the device ID is taken ---------------------------------------------------------------------------------


@BOTH_GENERATIONS
async def test_a_device_id_in_use_ends_both_devices_with_device_already_exists(
    stack: DevStack, user: E2eeUser, sides: tuple[Side, Side], generation: Literal[1, 2]
) -> None:
    new, existing = sides
    setup = Setup(
        generation=generation,
        new_device_shows=False,
        new_device_id=EXISTING_DEVICE_ID,
        # Told right after its m.login.protocol: the check is one GET before the user is asked anything.
        waiting_for="the new device to be told device_already_exists",
        within=10.0,
    )

    outcome = await run_login(stack, user, new, existing, setup)

    assert isinstance(outcome.existing, DeviceAlreadyExists) and not outcome.existing.by_peer
    assert isinstance(outcome.new, DeviceAlreadyExists) and outcome.new.by_peer
    assert outcome.new.reason == "device_already_exists"
    assert existing.sent == [{"type": FAILURE, "reason": "device_already_exists"}]
    assert outcome.page.opened == [] and handshake_puts_plus_messages(existing)


# --- the new device never appears ---------------------------------------------------------------------------


@BOTH_GENERATIONS
async def test_a_device_that_never_appears_ends_both_devices_with_device_not_found(
    stack: DevStack, user: E2eeUser, sides: tuple[Side, Side], generation: Literal[1, 2]
) -> None:
    new, existing = sides

    async def remove_device_once_signed_in(request: httpx.Request, response: httpx.Response) -> None:
        # The device signed in (whoami answered) and is removed before it tells the existing device so.
        if request.url.path.endswith("/account/whoami") and response.status_code == 200:
            await stack.async_delete_device(user.localpart, response.json()["device_id"])

    new.transport.after = remove_device_once_signed_in
    setup = Setup(
        generation=generation,
        existing_timeouts=FlowTimeouts(device_appearance=1.5),
        waiting_for="the new device to be told device_not_found 1.5 s after m.login.success",
    )

    outcome = await run_login(stack, user, new, existing, setup)

    assert isinstance(outcome.existing, DeviceNotFound) and not outcome.existing.by_peer
    assert isinstance(outcome.new, DeviceNotFound) and outcome.new.by_peer
    assert outcome.new.reason == "device_not_found"
    assert existing.sent_types == ["m.login.protocols", "m.login.protocol_accepted", FAILURE]
    assert existing.sent[-1]["reason"] == "device_not_found" and handshake_puts_plus_messages(existing)


# --- the wrong check code -----------------------------------------------------------------------------------


@BOTH_GENERATIONS
async def test_a_wrong_check_code_on_the_new_device_cancels_the_existing_device(
    stack: DevStack, user: E2eeUser, sides: tuple[Side, Side], generation: Literal[1, 2]
) -> None:
    new, existing = sides

    setup = Setup(
        generation=generation,
        wrong_code=True,
        waiting_for="the existing device to be told user_cancelled after the wrong check code",
    )

    outcome = await run_login(stack, user, new, existing, setup)

    assert isinstance(outcome.new, CheckCodeMismatch) and outcome.new.reason == "user_cancelled"
    assert isinstance(outcome.existing, LoginCancelled) and outcome.existing.by_peer
    assert outcome.seconds_after_typing(existing) < PROMPTLY
    assert new.sent == [{"type": FAILURE, "reason": "user_cancelled"}]
    # m.login.protocols was on its way as the code was typed; it may have lost the race to the failure.
    assert existing.sent_types in (["m.login.protocols"], [])


@BOTH_GENERATIONS
async def test_a_wrong_check_code_on_the_existing_device_sends_no_secrets(
    stack: DevStack, user: E2eeUser, sides: tuple[Side, Side], generation: Literal[1, 2]
) -> None:
    new, existing = sides
    setup = Setup(
        generation=generation,
        new_device_shows=False,
        wrong_code=True,
        waiting_for="the new device to be told user_cancelled after the wrong check code",
    )

    outcome = await run_login(stack, user, new, existing, setup)

    assert isinstance(outcome.existing, CheckCodeMismatch) and outcome.existing.reason == "user_cancelled"
    assert isinstance(outcome.new, LoginCancelled) and outcome.new.by_peer
    assert outcome.seconds_after_typing(new) < PROMPTLY
    assert existing.sent == [{"type": FAILURE, "reason": "user_cancelled"}]
    assert outcome.page.opened == [] and handshake_puts_plus_messages(existing)


# --- a failure sent out of turn -----------------------------------------------------------------------------


PROMPTLY = 10.0  # seconds within which the peer of a failing device ends (its message timeout is 1260 s)
GATE_WAIT = STEP_WITHIN  # seconds a gate waits for the other device's write before the login fails


def first_message_write(side: Side, request: httpx.Request) -> bool:
    """A rendezvous write after the device's one handshake write."""
    return request.method == "PUT" and len(side.transport.puts) >= 1


class CrossingWrites:
    """Makes the failure typed on one device and the other device's next message cross at the rendezvous.

    Each device's first message write is held until both are in flight, so both are made against the same
    revision; then ``first`` reaches the rendezvous, and ``second`` only once ``first`` has its answer. The
    second meets a concurrent write (412/409) for certain.
    """

    def __init__(self, first: Side, second: Side) -> None:
        self.first, self.second = first, second
        self.in_flight = {first.name: asyncio.Event(), second.name: asyncio.Event()}
        self.first_answered = asyncio.Event()
        first.transport.before = lambda request: self._hold(first, request)
        second.transport.before = lambda request: self._hold(second, request)
        first.transport.after = self._first_answer

    async def _hold(self, side: Side, request: httpx.Request) -> None:
        arrived = self.in_flight[side.name]
        if arrived.is_set() or not first_message_write(side, request):
            return
        arrived.set()
        both = asyncio.gather(*(event.wait() for event in self.in_flight.values()))
        await asyncio.wait_for(both, GATE_WAIT)
        if side is self.second:
            await asyncio.wait_for(self.first_answered.wait(), GATE_WAIT)

    async def _first_answer(self, request: httpx.Request, response: httpx.Response) -> None:
        if request.method == "PUT" and self.in_flight[self.first.name].is_set():
            self.first_answered.set()


class UnreadUntilTyped:
    """The peer's next message lands before the user types, and the typing device has not read it yet.

    After its handshake, every rendezvous read the typing device starts before its user types is held (the
    driver's next send cancels it); the user types once the peer's message write has landed. Reads must go
    through the HTTP client for this: the devices run without the push extension's WebSocket (:data:`NO_WATCH`).
    """

    def __init__(self, typist: Side, peer: Side) -> None:
        self.typist, self.peer = typist, peer
        self.typed = False
        self.peer_wrote = asyncio.Event()
        typist.transport.before = self._hold_reads
        peer.transport.after = self._peer_write

    async def _hold_reads(self, request: httpx.Request) -> None:
        if request.method == "GET" and self.typist.transport.puts and not self.typed:
            await asyncio.Event().wait()  # until the driver cancels the read

    async def _peer_write(self, request: httpx.Request, response: httpx.Response) -> None:
        if len(self.peer.transport.puts) >= 2:  # its handshake write and its next message
            self.peer_wrote.set()

    async def type_wrong_code(self) -> str:
        await asyncio.wait_for(self.peer_wrote.wait(), GATE_WAIT)
        self.typed = True
        digits = (await self.peer.code).digits
        return f"{(int(digits) + 1) % 100:02d}"


NO_WATCH = TransportOptions(websocket=False)


ROLES = pytest.mark.parametrize(
    ("generation", "new_device_shows"),
    [
        pytest.param(1, True, id="gen1-wrong-code-on-new-device"),
        pytest.param(1, False, id="gen1-wrong-code-on-existing-device"),
        pytest.param(2, True, id="gen2-wrong-code-on-new-device"),
        pytest.param(2, False, id="gen2-wrong-code-on-existing-device"),
    ],
)


def typist_and_peer(new: Side, existing: Side, new_device_shows: bool) -> tuple[Side, Side, str]:
    """The device the user types into, the other one, and the message the other one sends next."""
    if new_device_shows:
        return new, existing, "m.login.protocols"
    return existing, new, "m.login.protocol"


def assert_peer_told_promptly(outcome: Outcome, typist: Side, peer: Side, new: Side) -> None:
    typist_error, peer_error = (outcome.new, outcome.existing) if typist is new else (outcome.existing, outcome.new)
    assert isinstance(typist_error, CheckCodeMismatch) and typist_error.reason == "user_cancelled"
    assert isinstance(peer_error, LoginCancelled) and peer_error.by_peer
    assert outcome.seconds_after_typing(peer) < PROMPTLY
    assert typist.sent == [{"type": FAILURE, "reason": "user_cancelled"}]


@ROLES
async def test_a_failure_that_loses_the_race_to_the_peers_message_is_sent_again_and_ends_the_peer(
    stack: DevStack, user: E2eeUser, sides: tuple[Side, Side], generation: Literal[1, 2], new_device_shows: bool
) -> None:
    new, existing = sides
    typist, peer, peer_message = typist_and_peer(new, existing, new_device_shows)
    CrossingWrites(first=peer, second=typist)
    setup = Setup(
        generation=generation,
        new_device_shows=new_device_shows,
        wrong_code=True,
        waiting_for=f"the {peer.name} device to be told user_cancelled after the wrong check code",
    )

    outcome = await run_login(stack, user, new, existing, setup)

    assert_peer_told_promptly(outcome, typist, peer, new)
    assert (typist.transport.conflicts, peer.transport.conflicts) == (1, 0)
    assert peer.sent_types == [peer_message]


@ROLES
async def test_a_message_that_loses_the_race_to_a_failure_leaves_the_failure_to_be_read(
    stack: DevStack, user: E2eeUser, sides: tuple[Side, Side], generation: Literal[1, 2], new_device_shows: bool
) -> None:
    new, existing = sides
    typist, peer, _ = typist_and_peer(new, existing, new_device_shows)
    CrossingWrites(first=typist, second=peer)
    setup = Setup(
        generation=generation,
        new_device_shows=new_device_shows,
        wrong_code=True,
        waiting_for=f"the {peer.name} device to be told user_cancelled after the wrong check code",
    )

    outcome = await run_login(stack, user, new, existing, setup)

    assert_peer_told_promptly(outcome, typist, peer, new)
    assert (typist.transport.conflicts, peer.transport.conflicts) == (0, 1)
    assert peer.sent_types == []


@ROLES
async def test_a_failure_typed_after_an_unread_peer_message_is_sealed_after_reading_it(
    stack: DevStack, user: E2eeUser, sides: tuple[Side, Side], generation: Literal[1, 2], new_device_shows: bool
) -> None:
    new, existing = sides
    typist, peer, peer_message = typist_and_peer(new, existing, new_device_shows)
    unread = UnreadUntilTyped(typist, peer)
    setup = Setup(
        generation=generation,
        new_device_shows=new_device_shows,
        typed_code=unread.type_wrong_code,
        transport_options=NO_WATCH,
        waiting_for=f"the {peer.name} device to be told user_cancelled after the wrong check code",
    )

    outcome = await run_login(stack, user, new, existing, setup)

    assert_peer_told_promptly(outcome, typist, peer, new)
    assert (typist.transport.conflicts, peer.transport.conflicts) == (0, 0)
    assert peer.sent_types == [peer_message]


# --- the rendezvous session disappears ----------------------------------------------------------------------


def session_url(stack: DevStack, qr: bytes) -> str:
    code = decode_qr(qr)
    if isinstance(code, Gen1QrCode):
        return code.rendezvous_url
    assert isinstance(code, Gen2QrCode)
    return f"{under(stack.homeserver_url, GEN2_UNSTABLE_PATH)}/{code.rendezvous_id}"


async def delete(url: str) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False) as http:
        return await http.delete(url)


@BOTH_GENERATIONS
async def test_a_session_deleted_mid_flow_aborts_both_devices_with_session_not_found(
    stack: DevStack, user: E2eeUser, sides: tuple[Side, Side], generation: Literal[1, 2]
) -> None:
    new, existing = sides
    deleted: list[asyncio.Task[httpx.Response]] = []

    def delete_when_waiting_for_token(step: Progress) -> None:
        # The user code is on screen: the session goes away between protocol_accepted and the outcome.
        if isinstance(step, WaitingForToken):
            deleted.append(asyncio.create_task(delete(session_url(stack, new.qr.result()))))

    new.on_step = delete_when_waiting_for_token

    setup = Setup(
        generation=generation,
        page_action="ignore",
        waiting_for="both devices to abort once the rendezvous session was deleted",
    )

    outcome = await run_login(stack, user, new, existing, setup)

    assert [(await task).is_success for task in deleted] == [True]
    for error in (outcome.new, outcome.existing):
        assert isinstance(error, LoginAborted) and isinstance(error.__cause__, SessionNotFound)
        assert error.reason is None  # nothing can reach the peer any more
    assert SECRETS not in existing.sent_types and new.sent_types == ["m.login.protocol"]


# --- secrets that do not match the published keys -----------------------------------------------------------


async def test_secrets_that_do_not_match_the_published_keys_are_refused_and_nothing_is_uploaded(
    stack: DevStack, user: E2eeUser, sides: tuple[Side, Side]
) -> None:
    new, existing = sides
    real = user.bootstrap.bundle
    wrong = replace(
        real, cross_signing=replace(real.cross_signing, self_signing_key=CrossSigningKeys.generate().self_signing_key)
    )
    device_id = f"QR/{uuid.uuid4().hex[:8]}+x"

    setup = Setup(
        secrets=wrong,
        new_device_id=device_id,
        waiting_for="the new device to refuse secrets that do not match the published keys",
    )

    outcome = await run_login(stack, user, new, existing, setup)

    assert isinstance(outcome.new, SecretsMismatch) and outcome.new.key_name == "self_signing_key"
    assert outcome.existing == device_id  # the existing device cannot tell: the check is the new device's
    assert await device_keys(stack, user, device_id) is None


# --- a man in the middle ------------------------------------------------------------------------------------


@dataclass
class Written:
    side: str
    body: bytes


class MitmProxy:
    """A rendezvous (Gen-1) or homeserver (Gen-2) reverse proxy that attacks the secure channel.

    The attacker has seen the QR code (:attr:`qr`, e.g. photographed) and controls the rendezvous: it drops the
    scanner's LoginInitiate and writes its own, made to the QR's key, so the device that showed the QR builds
    its channel with the attacker. Everything else is forwarded. It then reads whatever that device sends it.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.qr: Gen1QrCode | Gen2QrCode | None = None
        self.channel: SecureChannel | None = None
        self.writes: list[Written] = []
        self.decrypted: list[dict[str, Any]] = []
        self.undecryptable = 0
        self.established = False
        self._http: httpx.AsyncClient | None = None
        self.base_url = ""
        self.app = Starlette(routes=[Route("/{path:path}", self._forward, methods=["GET", "POST", "PUT", "DELETE"])])

    async def _forward(self, request: Request) -> Response:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=60, trust_env=False)
        body = await request.body()
        write = request.method == "PUT" and re.search(r"/rendezvous/[^/]+(/[^/]+)?$", request.url.path)
        forwarded, forged = self._forge(body) if write and self.channel is None else (body, None)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        url = f"{self.upstream}{request.url.path}" + (f"?{request.url.query}" if request.url.query else "")
        upstream = await self._http.request(request.method, url, content=forwarded, headers=headers)
        if write and 200 <= upstream.status_code < 300:
            # Only writes the server took count (a Gen-2 PUT with a txnId may first meet an older server).
            self._took(request.headers.get("x-test-side", "?"), body, forged)
        content = upstream.content
        if request.method == "POST" and request.url.path.endswith("/rendezvous") and upstream.status_code < 300:
            content = content.replace(self.upstream.encode(), self.base_url.rstrip("/").encode())
        # The push extension's WebSocket would bypass this proxy; the devices poll through it instead.
        dropped = ("content-length", "content-encoding", "transfer-encoding", "x-qrlink-push", "connection")
        kept = {k: v for k, v in upstream.headers.items() if k.lower() not in dropped}
        return Response(content, status_code=upstream.status_code, headers=kept)

    def _fields(self, body: bytes) -> tuple[dict[str, Any] | None, str, str | None]:
        """(the Gen-2 JSON document or ``None``, the channel payload, the Gen-2 sequence token)."""
        if isinstance(self.qr, Gen2QrCode):
            document = json.loads(body)
            return document, document["data"], document["sequence_token"]
        return None, body.decode(), None

    def _forge(self, body: bytes) -> tuple[bytes, SecureChannel]:
        """The scanner's LoginInitiate, replaced by one the attacker made to the QR code's key."""
        assert self.qr is not None, "the attacker has not seen the QR code"
        document, _, token = self._fields(body)
        channel: SecureChannel
        if isinstance(self.qr, Gen2QrCode):
            # The attacker reads the channel profile off the code's layout, as an honest scanner does.
            profile = gen2_profile_of(self.qr)
            channel = HpkeChannel.scanner(self.qr.base_url, self.qr.rendezvous_id, profile=profile)
        else:
            channel = EciesChannel.scanner()
        forged = channel.initiate(self.qr.public_key, sequence_token=token)
        if document is not None:
            return json.dumps({**document, "data": forged}).encode(), channel
        return forged.encode(), channel

    def _took(self, side: str, body: bytes, forged: SecureChannel | None) -> None:
        self.writes.append(Written(side, body))
        if forged is not None:
            self.channel = forged
            return
        assert self.channel is not None
        _, data, token = self._fields(body)
        try:
            if not self.established:
                self.channel.accept_ok(data, sequence_token=token)  # the shower's LoginOk, made for us
                self.established = True
            else:
                self.decrypted.append(json.loads(self.channel.decrypt(data, sequence_token=token)))
        except ChannelError:
            self.undecryptable += 1

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


@pytest.fixture
async def mitm(stack: DevStack, request: pytest.FixtureRequest) -> AsyncIterator[MitmProxy]:
    generation = request.node.callspec.params["generation"]
    assert stack.rendezvous_url is not None
    proxy = MitmProxy(stack.rendezvous_url if generation == 1 else stack.homeserver_url)
    sock = bound_socket()
    thread = ServerThread(proxy.app, sock)
    proxy.base_url = thread.base_url
    thread.start(10)
    try:
        yield proxy
    finally:
        thread.call(proxy.aclose())
        thread.stop()


MITM_ROLES = pytest.mark.parametrize(
    ("generation", "new_device_shows"),
    [
        pytest.param(1, True, id="gen1-new-device-shows"),
        pytest.param(1, False, id="gen1-existing-device-shows"),
        pytest.param(2, True, id="gen2-new-device-shows"),
        pytest.param(2, False, id="gen2-existing-device-shows"),
    ],
)


@MITM_ROLES
async def test_a_man_in_the_middle_is_detected_and_no_secret_leaves_the_existing_device(
    stack: DevStack,
    user: E2eeUser,
    sides: tuple[Side, Side],
    mitm: MitmProxy,
    generation: Literal[1, 2],
    new_device_shows: bool,
) -> None:
    new, existing = sides
    shower, scanner = (new, existing) if new_device_shows else (existing, new)
    scanner_done = asyncio.Event()

    def photograph(step: Progress) -> None:
        if isinstance(step, QrCodeReady):
            mitm.qr = decode_qr(step.data)  # the attacker saw the QR code too

    def scanner_step(step: Progress) -> None:
        if isinstance(step, EstablishingSecureChannel):
            scanner_done.set()

    async def guess() -> str:
        # The scanner shows no code (its channel check failed), so the user can only guess; the guess differs
        # from the attacker's code, the one this device would accept.
        assert mitm.channel is not None and mitm.established
        return f"{(int(mitm.channel.check_code.digits) + 1) % 100:02d}"

    shower.on_step = photograph
    scanner.on_step = scanner_step
    setup = Setup(
        generation=generation,
        new_device_shows=new_device_shows,
        base_url=mitm.base_url,
        typed_code=guess,
        waiting_for=f"the {shower.name} device to refuse the attacker's check code",
    )

    outcome = await run_login(stack, user, new, existing, setup)

    shown, scanned = (outcome.new, outcome.existing) if new_device_shows else (outcome.existing, outcome.new)
    assert isinstance(scanned, LoginAborted) and isinstance(scanned.__cause__, ChannelError)
    assert scanned.reason is None and not scanner_done.is_set()  # the scanner never showed a code
    assert isinstance(shown, CheckCodeMismatch) and shown.reason == "user_cancelled"
    # What the attacker read from the device that trusted it: one failure, nothing else.
    assert mitm.decrypted == [{"type": FAILURE, "reason": "user_cancelled"}] and mitm.undecryptable == 0
    assert SECRETS not in existing.sent_types
    assert [w.side for w in mitm.writes] == [scanner.name, shower.name, shower.name]
