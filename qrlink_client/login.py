"""Async drivers that run a whole sign in with QR code, one per device.

The protocol itself lives in the sans-I/O machines of :mod:`qrlink_client.flow`. This module does their I/O:
it runs the secure channel handshake over a rendezvous session (:mod:`~qrlink_client.handshake`), carries
out every action a machine returns (messages, the OAuth 2.0 device grant, homeserver device checks, the
user's check code and verification URI) and feeds each outcome back as an input. Progress goes to the app
through one callback.

- :func:`login_new_device`: the device being signed in. Ends with its tokens, user and device IDs, its
  pickled Olm account and the user's secrets, verified against the homeserver and used to publish the
  device's cross-signed keys.
- :func:`grant_login`: the device already signed in. Ends once it has sent the user's secrets to the new
  device.

Either device may show the QR code (:class:`ShowGen1` / :class:`ShowGen2`) or scan it (``scanned=`` bytes).
Every failure is raised as a :class:`~qrlink_client.flow.LoginFailed` subclass (``LoginDeclined``,
``LoginAborted`` …), after the peer has been told where a channel exists; its message says what the login was
waiting for and for how long. :class:`WrongQrCode` when a scanned QR code was made for the other kind of
device; :class:`CallbackError` when a callback is of the wrong kind (an ``async`` ``on_progress``, a sync
prompt, an opener that hands back an un-awaited coroutine).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import httpx

from .channel import ChannelError, DecryptionError, HpkeProfile, Role, SecureChannel
from .discovery import well_known_base_url
from .e2ee import E2eeHomeserver, OlmDevice, SecretsBundle, SecretsSource, publish_new_device
from .errors import QrLinkError
from .flow import (
    Action,
    CheckDeviceUnused,
    DeclinedMessage,
    Done,
    EstablishingSecureChannel,
    ExistingDeviceLogin,
    Failed,
    FailureMessage,
    FailureReason,
    FlowTimeouts,
    Homeserver,
    LoginFailed,
    LoginMachine,
    MessageError,
    NewDeviceLogin,
    NewDeviceResult,
    OpenVerificationUri,
    PollToken,
    Progress,
    SendMessage,
    StartDeviceAuthorization,
    WaitForDevice,
    parse_message,
)
from .handshake import ShowGen1, ShowGen2, ShowQr, UnknownGen2Profile, gen2_profile_of, scan_qr, show_qr
from .oauth import (
    AuthMetadataUnavailable,
    ClientMetadata,
    DeviceAuthorization,
    DeviceGrantClient,
    DeviceGrantDenied,
    DeviceGrantExpired,
    DeviceGrantUnsupported,
    ScopePrefix,
    TokenResponse,
    whoami,
)
from .qr import Gen1Mode, Gen1QrCode, Gen2Intent, Gen2QrCode, QrCode, decode_qr
from .transport import ConcurrentWrite, RendezvousError, RendezvousTransport, TransportOptions

__all__ = [
    "CallbackError",
    "CheckCodePrompt",
    "HomeserverResolver",
    "NewDeviceLoginResult",
    "ProgressCallback",
    "QrCodeReady",
    "ShowGen1",
    "ShowGen2",
    "UnknownGen2Profile",
    "VerificationUriOpener",
    "WrongQrCode",
    "grant_login",
    "login_new_device",
    "well_known_base_url",
]

ProgressCallback = Callable[[Progress], None]
"""Receives every progress step (:class:`QrCodeReady`, the flow's :class:`~qrlink_client.flow.Progress`
subclasses, ending with :class:`~qrlink_client.flow.Done`). Called synchronously; it must not block."""
CheckCodePrompt = Callable[[], Awaitable[str]]
"""Asks the user of the device that showed the QR for the two digits the other device displays."""
VerificationUriOpener = Callable[[str], Awaitable[bool]]
"""Opens the verification URI for the user (a browser, a web view); ``False`` when it cannot be opened."""
HomeserverResolver = Callable[[str], Awaitable[str]]
"""Turns a server name into a client-server API base URL."""

_DEVICE_POLL_INTERVAL = 0.5  # seconds between GET /devices/{id} while the existing device waits for it
# PUTs of one message that ends the login. Under ping-pong the peer writes at most one message of its own turn
# and then one that ends the login without reading ours, so a third conflict cannot come from a working peer.
_ENDING_SEND_ATTEMPTS = 3


class WrongQrCode(QrLinkError):
    """The scanned QR code was shown by the same kind of device (two new or two existing devices)."""


class CallbackError(QrLinkError, TypeError):
    """A callback passed to :func:`login_new_device` or :func:`grant_login` is of the wrong kind.

    ``on_progress`` is called synchronously and must not be ``async``; ``check_code_prompt`` and
    ``open_verification_uri`` must return an awaitable whose result is a ``str`` / ``bool``, not a coroutine
    that nobody awaits (what an ``async`` function run through :func:`asyncio.to_thread` returns). Raised as
    soon as the callback is seen or called, after telling the other device that the login is cancelled.
    """


def _check_progress_callback(on_progress: ProgressCallback) -> None:
    if inspect.iscoroutinefunction(on_progress) or inspect.iscoroutinefunction(
        getattr(on_progress, "__call__", None)  # noqa: B004 - an object with an async __call__
    ):
        raise CallbackError(
            "on_progress is called synchronously and must return quickly, but it is an async function, whose "
            "body would never run: pass a plain function (it may hand work to a task or a queue's put_nowait)"
        )


async def _call_async(callback: Callable[..., Any], name: str, expected: type, *args: Any) -> Any:
    """Call an async callback and check what it gives back (see :class:`CallbackError`)."""
    pending = callback(*args)
    if not inspect.isawaitable(pending):
        raise CallbackError(
            f"{name} must be an async function (or return an awaitable), but it returned "
            f"{type(pending).__name__}: wrap a blocking function as `async def f(...): return await "
            "asyncio.to_thread(blocking, ...)`"
        )
    result = await pending
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()  # never awaited: close it so no "was never awaited" warning follows
        raise CallbackError(
            f"{name} returned an un-awaited coroutine instead of a {expected.__name__}: await it inside the "
            "callback (an async function run through asyncio.to_thread returns its coroutine unrun)"
        )
    if not isinstance(result, expected):
        raise CallbackError(f"{name} must return a {expected.__name__}, not {type(result).__name__}")
    return result


@dataclass(frozen=True)
class QrCodeReady(Progress):
    """The device showing the QR code has a rendezvous session: render :attr:`data` (``qr.to_bytes()``)."""

    qr: QrCode = field(repr=False)  # holds the session address, which lets anyone join

    @property
    def data(self) -> bytes:
        """The bytes to encode in the QR code."""
        return self.qr.to_bytes()


@dataclass(frozen=True)
class NewDeviceLoginResult:
    """What :func:`login_new_device` ends with. ``repr`` shows neither tokens nor the pickle."""

    homeserver_url: str
    user_id: str
    device_id: str
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    pickled_account: str = field(repr=False)
    """The device's Olm account, encrypted with the caller's ``pickle_key`` (:meth:`OlmDevice.from_pickle`)."""
    secrets: SecretsBundle = field(repr=False)
    """The user's cross-signing and backup secrets, checked against the homeserver's public keys."""


# --- the new device -----------------------------------------------------------------------------------------


async def login_new_device(
    http: httpx.AsyncClient,
    *,
    pickle_key: bytes,
    on_progress: ProgressCallback,
    show: ShowQr | None = None,
    scanned: bytes | None = None,
    gen2_profile: HpkeProfile | None = None,
    check_code_prompt: CheckCodePrompt | None = None,
    device: OlmDevice | None = None,
    resolve_homeserver: HomeserverResolver | None = None,
    client_metadata: ClientMetadata | None = None,
    scope_prefix: ScopePrefix = ScopePrefix.STABLE,
    timeouts: FlowTimeouts | None = None,
    transport_options: TransportOptions | None = None,
) -> NewDeviceLoginResult:
    """Sign this device in with a QR code and set up its end-to-end encryption.

    Pass exactly one of ``show`` (this device shows the QR; then ``check_code_prompt`` is required) and
    ``scanned`` (the bytes read from the existing device's QR). A Gen-2 code this device shows uses
    :attr:`ShowGen2.profile` (default ``element-x``); a scanned one the profile its layout implies, unless
    ``gen2_profile`` names another (see :func:`~qrlink_client.handshake.gen2_profile_of`; a legacy u16/u16 code
    needs ``gen2_profile`` and otherwise raises :class:`UnknownGen2Profile` before anything starts).
    ``device`` defaults to a fresh :class:`OlmDevice` whose ID is requested in the OAuth scope. A server name
    (Gen-1 QR, or ``m.login.protocols`` from js-sdk) is turned into a base URL by ``resolve_homeserver``
    (default :func:`well_known_base_url`).

    After ``m.login.secrets`` the secrets are checked against ``/keys/query`` and the backup version, then the
    device's keys, signed by the self-signing key, are uploaded (:func:`publish_new_device`). Raises a
    :class:`LoginFailed` subclass, :class:`WrongQrCode`, or an :class:`~qrlink_client.e2ee.E2eeError` from the
    last step.
    """
    _one_of(show, scanned, gen2_profile)
    _check_progress_callback(on_progress)
    olm = device or OlmDevice.generate()
    qr = _scanned_qr(scanned, expect_shown_by_existing=True) if scanned is not None else None
    profile = _scan_profile(qr, gen2_profile)
    if qr is not None:
        location = Homeserver.from_qr(qr)
        if location is None:
            raise WrongQrCode("this QR code names no homeserver: it was shown by a device that is not signed in")
        machine = NewDeviceLogin.scanning_qr(olm.device_id, location, timeouts=timeouts)
    else:
        if check_code_prompt is None:
            raise ValueError("a device that shows the QR code needs check_code_prompt")
        machine = NewDeviceLogin.showing_qr(olm.device_id, timeouts=timeouts)

    resolver = resolve_homeserver or (lambda name: well_known_base_url(http, name))
    state: dict[str, Any] = {}

    async def authorize(action: StartDeviceAuthorization) -> Callable[[], list[Action]]:
        location = action.homeserver
        base_url = location.base_url or await resolver(str(location.server_name))
        try:
            client = await DeviceGrantClient.create(http, base_url, client_metadata=client_metadata)
        except (AuthMetadataUnavailable, DeviceGrantUnsupported) as error:
            unsupported = error
            return lambda: machine.abort(
                unsupported, reason=FailureReason.UNSUPPORTED_PROTOCOL, now=time.monotonic()
            )
        grant = await client.request_device_authorization(action.device_id, prefix=scope_prefix)
        state.update(base_url=base_url, client=client, grant=grant)
        return lambda: machine.device_authorization_ready(grant, now=time.monotonic())

    async def poll(_: PollToken) -> Callable[[], list[Action]]:
        client: DeviceGrantClient = state["client"]
        grant: DeviceAuthorization = state["grant"]
        try:
            tokens = await client.poll_token(grant)
        except DeviceGrantDenied:
            return machine.access_denied
        except DeviceGrantExpired:
            return machine.grant_expired
        me = await whoami(http, state["base_url"], tokens.access_token)
        state.update(tokens=tokens, user_id=me.user_id)
        return lambda: machine.token_granted(now=time.monotonic())

    driver = _Driver(machine, on_progress, check_code_prompt)
    driver.handlers[StartDeviceAuthorization] = authorize
    driver.handlers[PollToken] = poll
    done = await driver.run(http, show, qr, None, transport_options, profile)

    result = done.result
    assert isinstance(result, NewDeviceResult)  # what NewDeviceLogin always ends with
    secrets = result.secrets
    tokens_: TokenResponse = state["tokens"]
    async with E2eeHomeserver(state["base_url"], tokens_.access_token, user_id=state["user_id"], client=http) as hs:
        await publish_new_device(hs, olm, secrets)
    return NewDeviceLoginResult(
        homeserver_url=state["base_url"],
        user_id=state["user_id"],
        device_id=olm.device_id,
        access_token=tokens_.access_token,
        refresh_token=tokens_.refresh_token,
        pickled_account=olm.pickle(pickle_key),
        secrets=secrets,
    )


# --- the existing device ------------------------------------------------------------------------------------


async def grant_login(
    http: httpx.AsyncClient,
    *,
    homeserver_url: str,
    access_token: str,
    secrets: SecretsSource,
    open_verification_uri: VerificationUriOpener,
    on_progress: ProgressCallback,
    show: ShowQr | None = None,
    server_name: str | None = None,
    scanned: bytes | None = None,
    gen2_profile: HpkeProfile | None = None,
    check_code_prompt: CheckCodePrompt | None = None,
    timeouts: FlowTimeouts | None = None,
    transport_options: TransportOptions | None = None,
) -> str:
    """Sign a new device in from this signed-in device; returns the new device's ID.

    Pass exactly one of ``show`` (this device shows the QR: ``check_code_prompt`` is then required, and a
    Gen-1 QR carries ``server_name`` so the new device knows where to sign in) and ``scanned`` (the bytes read
    from the new device's QR). ``gen2_profile`` as for :func:`login_new_device`. ``secrets`` is read once,
    before the rendezvous starts. The user approves the new device at the URI given to
    ``open_verification_uri``; the secrets go out only once the new device exists on the homeserver. Raises a
    :class:`LoginFailed` subclass, :class:`WrongQrCode` or :class:`UnknownGen2Profile`.
    """
    _one_of(show, scanned, gen2_profile)
    _check_progress_callback(on_progress)
    qr = _scanned_qr(scanned, expect_shown_by_existing=False) if scanned is not None else None
    profile = _scan_profile(qr, gen2_profile)
    generation: Literal[1, 2] = 1 if isinstance(qr or show, (Gen1QrCode, ShowGen1)) else 2
    if isinstance(show, ShowGen1) and not server_name:
        raise ValueError("a Gen-1 QR code shown by the existing device must carry server_name")
    if qr is None and check_code_prompt is None:
        raise ValueError("a device that shows the QR code needs check_code_prompt")
    bundle = await secrets.load_bundle()
    machine = (
        ExistingDeviceLogin.scanning_qr(homeserver_url, bundle, generation=generation, timeouts=timeouts)
        if qr is not None
        else ExistingDeviceLogin.showing_qr(homeserver_url, bundle, generation=generation, timeouts=timeouts)
    )
    auth = {"Authorization": f"Bearer {access_token}"}

    async def device_status(device_id: str) -> int:
        # Device IDs may hold "/" and "+" (rust-sdk uses the Curve25519 key); both must be escaped.
        url = f"{homeserver_url.rstrip('/')}/_matrix/client/v3/devices/{quote(device_id, safe='')}"
        return (await http.get(url, headers=auth)).status_code

    async def check_device(action: CheckDeviceUnused) -> Callable[[], list[Action]]:
        status = await device_status(action.device_id)
        return lambda: machine.device_checked(status, now=time.monotonic())

    async def open_uri(action: OpenVerificationUri) -> Callable[[], list[Action]]:
        if await _call_async(open_verification_uri, "open_verification_uri", bool, action.uri):
            return lambda: machine.verification_uri_opened(now=time.monotonic())
        return machine.verification_uri_unavailable

    async def wait_for_device(action: WaitForDevice) -> Callable[[], list[Action]]:
        # The main loop ends the wait at the machine's deadline (DeviceNotFound) and cancels this task.
        while await device_status(action.device_id) != 200:  # noqa: ASYNC110 - polling a remote server
            await asyncio.sleep(_DEVICE_POLL_INTERVAL)
        return lambda: machine.device_appeared(now=time.monotonic())

    driver = _Driver(machine, on_progress, check_code_prompt)
    driver.handlers[CheckDeviceUnused] = check_device
    driver.handlers[OpenVerificationUri] = open_uri
    driver.handlers[WaitForDevice] = wait_for_device
    done = await driver.run(http, show, qr, (server_name, access_token), transport_options, profile)
    return done.result.device_id


# --- shared machinery ---------------------------------------------------------------------------------------


def _one_of(show: ShowQr | None, scanned: bytes | None, gen2_profile: HpkeProfile | None) -> None:
    if (show is None) == (scanned is None):
        raise ValueError("pass exactly one of show= and scanned=")
    if show is not None and gen2_profile is not None:
        raise ValueError("gen2_profile is for a scanned QR code; a shown one takes ShowGen2(profile=...)")


def _scan_profile(qr: QrCode | None, chosen: HpkeProfile | None) -> HpkeProfile | None:
    """The Gen-2 profile to scan with: the one chosen, else the one the code's layout implies."""
    if not isinstance(qr, Gen2QrCode):
        return None
    return HpkeProfile(chosen) if chosen is not None else gen2_profile_of(qr)


def _scanned_qr(data: bytes, *, expect_shown_by_existing: bool) -> QrCode:
    qr = decode_qr(data)
    by_existing = qr.mode is Gen1Mode.RECIPROCATE if isinstance(qr, Gen1QrCode) else qr.intent is Gen2Intent.RECIPROCATE
    if by_existing != expect_shown_by_existing:
        shown_by = "a signed-in device" if by_existing else "a device that is not signed in"
        raise WrongQrCode(f"this QR code was shown by {shown_by}; scan it with the other kind of device")
    return qr


class _Link:
    """One established secure channel over one rendezvous transport.

    The transport serialises its calls and a ``receive`` holds it for the whole wait, so a send first cancels
    the pending receive (cancellation is safe: a payload is either delivered or left for the next receive).

    Messages normally alternate (ping-pong), but a message that ends the login (``m.login.failure``,
    ``m.login.declined``) may be sent out of turn, while the peer is writing its own next message. Both
    writes are made against the same revision and the rendezvous takes only one (the other gets 412/409);
    :meth:`send` makes sure the ending message still reaches the peer, and that a message of our turn that
    loses to the peer's ending message leaves that message to be read. No nonce or sequence number is ever
    used for two different ciphertexts, and each payload is opened exactly once, in order.
    """

    def __init__(
        self, transport: RendezvousTransport, channel: SecureChannel, profile: HpkeProfile | None = None
    ) -> None:
        self.transport = transport
        self.channel = channel
        self.profile = profile
        self._receiving: asyncio.Task[bytes] | None = None
        # Outcomes of receives that finished just as a send cancelled them, or of catching up before or
        # after a write that met the peer's: a message, or the error to raise.
        self._inbox: deque[bytes | BaseException] = deque()

    def next_message(self) -> asyncio.Task[bytes]:
        """The task that yields the peer's next decrypted message (the same task until it is taken)."""
        if self._receiving is None:
            self._receiving = asyncio.ensure_future(self._receive())
        return self._receiving

    def taken(self) -> None:
        """The caller consumed the finished :meth:`next_message` task."""
        self._receiving = None

    async def _receive(self) -> bytes:
        if self._inbox:
            outcome = self._inbox.popleft()
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        tokens = self._open_tokens()
        message = await self.transport.receive()
        return self._open(message, *tokens)

    def _open_tokens(self) -> tuple[str | None, str | None]:
        """Gen-2: the token the peer's next message is sealed with, and the one it may be sealed with instead.

        The peer seals with the token of the last revision it knew, which is the last one we know before its
        write: our own last write under ping-pong, or its previous message when it sends twice in a row (a
        failure right after LoginOk, before our user typed the check code). When our last write crossed the
        peer's ending message, the peer had not seen our write and sealed with the token our write replaced;
        that second candidate is accepted only for a message that ends the login (:meth:`_open`).
        """
        t = self.transport
        token = t.sequence_token
        crossed = t.replaced_sequence_token if token is not None and token == t.own_sequence_token else None
        return token, crossed

    def _open(self, message: str, token: str | None, crossed: str | None) -> bytes:
        try:
            return self.channel.decrypt(message, sequence_token=token)
        except DecryptionError:
            if crossed is None:
                raise
        # A failed open leaves the receive sequence where it was, so the same message can be tried again.
        # Binding to the older token tells only that the sender had not read our last write; that is what a
        # message ending the login sent out of turn looks like, and ending the login is all it can do, so
        # nothing else is accepted this way.
        plaintext = self.channel.decrypt(message, sequence_token=crossed)
        if not _ends_login(plaintext):
            raise DecryptionError("a message bound to an earlier sequence token does not end the login")
        return plaintext

    async def _catch_up(self) -> bytes | BaseException | None:
        """Read and open the peer's payload that this side has not read yet, if there is one; its outcome is
        queued for :meth:`next_message` and returned. Brings the channel's counters and (Gen-2) the token the
        next write is made against up to date."""
        tokens = self._open_tokens()
        message = await self.transport.receive_pending()
        if message is None:
            return None
        outcome: bytes | BaseException
        try:
            outcome = self._open(message, *tokens)
        except ChannelError as error:
            outcome = error
        self._inbox.append(outcome)
        return outcome

    async def send(self, plaintext: bytes, *, ends_login: bool = False) -> None:
        """Seal and write one message; ``ends_login`` for a failure or a decline (see the class docstring).

        A message of our turn that meets a concurrent write lost to the peer's out-of-turn message: that
        message is queued for :meth:`next_message` and ours is dropped, since the peer has ended the login.
        Raises :class:`ConcurrentWrite` when what crossed it does not end the login.
        """
        await self.stop_receiving()
        if ends_login:
            await self._send_ending(plaintext)
            return
        t = self.transport
        try:
            await t.send(self.channel.encrypt(plaintext, sequence_token=t.sequence_token))
        except ConcurrentWrite:
            crossed = await self._catch_up()
            if not (isinstance(crossed, bytes) and _ends_login(crossed)):
                raise

    async def _send_ending(self, plaintext: bytes) -> None:
        """Write a message that ends the login, whether or not it is our turn.

        First the peer's unread payload, if any, is read and opened (it is discarded with the login), so the
        message is sealed against the current revision and at the sequence the peer expects. If the peer
        still writes in the moment before our PUT, the same ciphertext is PUT again against the new revision
        once the peer's payload is opened: it was never delivered, so nothing is sealed twice, and the peer
        opens it at the sequence it expects (Gen-2: with the token its own write replaced, :meth:`_open`).
        Nothing more is sent once the peer's payload itself ends the login: nobody reads ours any more.
        """
        t = self.transport
        await self._catch_up()
        sealed = self.channel.encrypt(plaintext, sequence_token=t.sequence_token)
        for attempt in range(1, _ENDING_SEND_ATTEMPTS + 1):
            try:
                await t.send(sealed)
                return
            except ConcurrentWrite:
                if attempt == _ENDING_SEND_ATTEMPTS:
                    raise
                crossed = await self._catch_up()
                if isinstance(crossed, bytes) and _ends_login(crossed):
                    return

    async def stop_receiving(self) -> None:
        task, self._receiving = self._receiving, None
        if task is None:
            return
        task.cancel()
        # Not ``await task``: a CancelledError from it could be this task's own cancellation (the caller's
        # deadline), which must not be taken for the receive's and swallowed. ``wait`` raises only the latter.
        await asyncio.wait({task})
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            self._inbox.append(task.result())
        elif isinstance(error, QrLinkError):
            # A receive that failed just before the cancel: the next receive raises its error.
            self._inbox.append(error)
        else:
            raise error

    async def aclose(self) -> None:
        await self.stop_receiving()
        # The session is left to expire rather than deleted: the peer may still have to read our last message.
        await self.transport.aclose()


def _ends_login(plaintext: bytes) -> bool:
    """Whether a decrypted message is ``m.login.failure`` or ``m.login.declined``."""
    try:
        message = parse_message(plaintext)
    except MessageError:
        return False
    return isinstance(message, FailureMessage | DeclinedMessage)


_Work = Callable[[Any], Coroutine[Any, Any, Callable[[], list[Action]]]]


class _Driver:
    """Runs one machine to its end: handshake, then a loop over the peer's messages, the current work item
    and the machine's deadline."""

    def __init__(self, machine: LoginMachine, on_progress: ProgressCallback, prompt: CheckCodePrompt | None):
        self.machine = machine
        self.on_progress = on_progress
        self.prompt = prompt
        self.handlers: dict[type[Action], _Work] = {}
        self._work: asyncio.Task[Callable[[], list[Action]]] | None = None
        self._link: _Link | None = None
        self._done: Done | None = None

    async def run(
        self,
        http: httpx.AsyncClient,
        show: ShowQr | None,
        scanned: QrCode | None,
        existing: tuple[str | None, str] | None,
        options: TransportOptions | None,
        profile: HpkeProfile | None = None,
    ) -> Done:
        machine = self.machine
        try:
            await self._apply(machine.start(now=time.monotonic()))
            try:
                link = await asyncio.wait_for(
                    self._handshake(http, show, scanned, existing, options, profile), self._time_left()
                )
            except TimeoutError as error:
                if not isinstance(error, RendezvousError):
                    # The machine's deadline passed during the handshake: a FlowTimeout naming the wait.
                    # (asyncio may wake a hair before the deadline: never report it as not yet passed)
                    await self._apply(machine.timeout(now=max(time.monotonic(), machine.deadline or 0.0)))
                await self._apply(machine.abort(error, reason=None, now=time.monotonic()))
                raise AssertionError("abort always fails the login") from error  # pragma: no cover
            except (RendezvousError, ChannelError, httpx.HTTPError) as error:
                await self._apply(machine.abort(error, reason=None, now=time.monotonic()))
                raise AssertionError("abort always fails the login") from error  # pragma: no cover
            self._link = link
            established = machine.channel_established(
                link.channel.check_code, now=time.monotonic(), profile=link.profile
            )
            await self._apply(established)
            await self._loop(link)
        except CallbackError as error:
            # A programming error: tell the peer the login is cancelled (if a channel exists), then raise it.
            if not machine.finished:
                with contextlib.suppress(LoginFailed, RendezvousError, ChannelError):
                    await self._apply(machine.abort(error, now=time.monotonic()))
            raise
        finally:
            await self._cleanup()
        assert self._done is not None
        return self._done

    def _time_left(self) -> float | None:
        deadline = self.machine.deadline
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    async def _handshake(
        self,
        http: httpx.AsyncClient,
        show: ShowQr | None,
        scanned: QrCode | None,
        existing: tuple[str | None, str] | None,
        options: TransportOptions | None,
        profile: HpkeProfile | None,
    ) -> _Link:
        if scanned is not None:
            handshake = await scan_qr(http, scanned, profile=profile, options=options)
        else:
            assert show is not None
            server_name, access_token = existing if existing is not None else (None, None)
            # The signed-in device offers to sign another in; the device without an account asks to be.
            handshake = await show_qr(
                http,
                show,
                reciprocate=existing is not None,
                server_name=server_name,
                access_token=access_token,
                options=options,
            )
        try:
            if handshake.role is Role.GENERATOR:
                self._emit(QrCodeReady(handshake.qr), handshake.transport)
            await handshake.complete()
        except ChannelError:
            if handshake.role is not Role.GENERATOR:
                # LoginOk did not open. The device that showed the code learns it from the check code, which
                # this side never shows (its user cannot type one), so the session is left as it is.
                await handshake.aclose()
                raise
            # LoginInitiate did not open (a scanner on another Gen-2 profile, or a forged one): there is no
            # channel at all, nothing sealed can reach the scanner, and it would wait for a LoginOk that never
            # comes. The session is this side's own, so it is deleted: the scanner then stops at once
            # (SessionNotFound).
            with contextlib.suppress(QrLinkError, httpx.HTTPError):
                await handshake.aclose(delete=True)
            raise
        except BaseException:
            await handshake.aclose()
            raise
        return _Link(handshake.transport, handshake.channel, handshake.profile)

    async def _loop(self, link: _Link) -> None:
        machine = self.machine
        while not machine.finished:
            incoming = link.next_message()
            waiting: set[asyncio.Future[Any]] = {incoming}
            if self._work is not None:
                waiting.add(self._work)
            done, _ = await asyncio.wait(waiting, timeout=self._time_left(), return_when=asyncio.FIRST_COMPLETED)
            if not done:
                await self._apply(machine.timeout(now=time.monotonic()))
                continue
            if self._work is not None and self._work in done:
                work, self._work = self._work, None
                try:
                    feed = work.result()
                except CallbackError:
                    raise
                except (QrLinkError, httpx.HTTPError) as error:
                    await self._apply(machine.abort(error, now=time.monotonic()))
                    continue
                await self._apply(feed())
            if not machine.finished and incoming in done and incoming is link.next_message():
                link.taken()
                try:
                    plaintext = incoming.result()
                except (RendezvousError, ChannelError) as error:
                    # The channel or session is gone: nothing can reach the peer any more.
                    await self._apply(machine.abort(error, reason=None, now=time.monotonic()))
                    continue
                await self._apply(machine.message_received(plaintext, now=time.monotonic()))

    async def _apply(self, actions: list[Action]) -> None:
        """Carry out ``actions`` in order; :class:`Failed` raises its error."""
        for action in actions:
            if isinstance(action, SendMessage):
                assert self._link is not None  # the machines send nothing before the channel exists
                ends = isinstance(action.message, FailureMessage | DeclinedMessage)
                try:
                    await self._link.send(action.message.to_json(), ends_login=ends)
                except (RendezvousError, ChannelError) as error:
                    # After a message that ends the login the machine has failed already: abort does nothing
                    # and the next action raises the named error.
                    await self._apply(self.machine.abort(error, reason=None, now=time.monotonic()))
            elif isinstance(action, Failed):
                raise action.error
            elif isinstance(action, Progress):
                if isinstance(action, Done):
                    self._done = action
                self._emit(action, self._link.transport if self._link is not None else None)
                if isinstance(action, EstablishingSecureChannel) and action.must_enter_code:
                    self._start(self._ask_check_code())
            else:
                handler = self.handlers.get(type(action))
                if handler is None:  # pragma: no cover - every work action has a handler
                    raise TypeError(f"no handler for {type(action).__name__}")
                self._start(handler(action))

    def _emit(self, progress: Progress, transport: RendezvousTransport | None) -> None:
        """Report ``progress`` with the time left: the machine's deadline or the session's expiry, the earlier."""
        now = time.monotonic()
        deadline = self.machine.deadline
        expires_in = transport.expires_in if transport is not None and not self.machine.finished else None
        if expires_in is not None and (deadline is None or now + expires_in < deadline):
            deadline = now + expires_in
        if deadline is not None:
            progress = dataclasses.replace(progress, deadline=deadline, time_left_s=max(0.0, deadline - now))
        returned = self.on_progress(progress)
        if inspect.isawaitable(returned):
            if inspect.iscoroutine(returned):
                returned.close()
            raise CallbackError(
                "on_progress returned an awaitable; it is called synchronously and nothing awaits it: pass a "
                "plain function (it may hand work to a task or a queue's put_nowait)"
            )

    async def _ask_check_code(self) -> Callable[[], list[Action]]:
        assert self.prompt is not None  # checked by the public functions
        entered: str = await _call_async(self.prompt, "check_code_prompt", str)
        return lambda: self.machine.check_code_entered(entered, now=time.monotonic())

    def _start(self, work: Coroutine[Any, Any, Callable[[], list[Action]]]) -> None:
        # The machines run one work item at a time: each waits for its outcome before asking for the next.
        assert self._work is None, "a work item is still running"
        self._work = asyncio.ensure_future(work)

    async def _cleanup(self) -> None:
        if self._work is not None:
            self._work.cancel()
            with contextlib.suppress(BaseException):
                await self._work
            self._work = None
        if self._link is not None:
            await self._link.aclose()
