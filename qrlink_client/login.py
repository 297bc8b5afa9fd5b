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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import httpx

from ._driver import (
    CallbackError,
    CheckCodePrompt,
    Driver,
    HomeserverResolver,
    ProgressCallback,
    QrCodeReady,
    VerificationUriOpener,
    call_async,
    check_progress_callback,
)
from .channel import HpkeProfile
from .discovery import well_known_base_url
from .e2ee import E2eeHomeserver, OlmDevice, SecretsBundle, SecretsSource, publish_new_device
from .errors import QrLinkError
from .flow import (
    Action,
    CheckDeviceUnused,
    ExistingDeviceLogin,
    FailureReason,
    FlowTimeouts,
    Homeserver,
    NewDeviceLogin,
    NewDeviceResult,
    OpenVerificationUri,
    PollToken,
    StartDeviceAuthorization,
    WaitForDevice,
)
from .handshake import ShowGen1, ShowGen2, ShowQr, UnknownGen2Profile, gen2_profile_of
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
from .transport import TransportOptions

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

_DEVICE_POLL_INTERVAL = 0.5  # seconds between GET /devices/{id} while the existing device waits for it


class WrongQrCode(QrLinkError):
    """The scanned QR code was shown by the same kind of device (two new or two existing devices)."""


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
    check_progress_callback(on_progress)
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
            return lambda: machine.abort(unsupported, reason=FailureReason.UNSUPPORTED_PROTOCOL, now=time.monotonic())
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

    driver = Driver(machine, on_progress, check_code_prompt)
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
    check_progress_callback(on_progress)
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
        if await call_async(open_verification_uri, "open_verification_uri", bool, action.uri):
            return lambda: machine.verification_uri_opened(now=time.monotonic())
        return machine.verification_uri_unavailable

    async def wait_for_device(action: WaitForDevice) -> Callable[[], list[Action]]:
        # The main loop ends the wait at the machine's deadline (DeviceNotFound) and cancels this task.
        while await device_status(action.device_id) != 200:  # noqa: ASYNC110 - polling a remote server
            await asyncio.sleep(_DEVICE_POLL_INTERVAL)
        return lambda: machine.device_appeared(now=time.monotonic())

    driver = Driver(machine, on_progress, check_code_prompt)
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
