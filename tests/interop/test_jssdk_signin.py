"""matrix-js-sdk 43's ``MSC4108SignInWithQR`` as the **new** device, against our existing device (``grant_login``).

Since js-sdk #5283 the class can be the new device: built without a ``MatrixClient`` its intent is ``Login``. It then
needs no client of its own for the channel, only, from the app, the homeserver's OAuth metadata, a registered
``client_id`` and a device ID (``deviceAuthorizationGrant({metadata, clientId, deviceId})``); it reads just
``device_authorization_endpoint`` and ``token_endpoint`` from the metadata. The steps are driven one by one through
the jssdk Node driver, on the development stack (real Synapse, the dev OAuth server, our rendezvous server), with
``grant_login`` as the other device in this process and the verification page answered over plain HTTP:

1. the new device shows the QR (``signInByGeneratingQR`` with a temporary ``MatrixClient``: the session is created
   on Synapse's MSC4108 endpoint) and ``grant_login`` scans it, or ``grant_login`` shows a Gen-1 QR on our
   rendezvous server and the new device scans it;
2. ``negotiateProtocols``: the channel, equal check codes, and ``m.login.protocols`` naming our homeserver;
3. the OAuth metadata, client registration (js-sdk's ``OAuth2.registerClient``), then ``deviceAuthorizationGrant``:
   the RFC 8628 request and ``m.login.protocol``; ``grant_login`` checks the device ID and opens the URI;
4. ``completeLoginOnNewDevice``: ``m.login.protocol_accepted``, then token polling until the user approved;
5. ``shareSecrets``: ``m.login.success``, then ``m.login.secrets``, which the Rust crypto's ``SecretsBundle`` parses.

**Where the real app stops.** js-sdk's only way to the metadata, ``MatrixClient.getAuthMetadata()``, validates it
against the full Matrix OAuth profile (``authorization_endpoint``, ``response_types_supported: ["code"]``,
``response_modes_supported``, ``code_challenge_methods_supported: ["S256"]``, grant ``authorization_code``). The dev
stack offers only the device grant and refresh (docs/devstack.md, "Limits"), so ``getAuthMetadata`` throws
``OAuth2Error.OpSupport`` and ``isSignInWithQRAvailable`` answers false: an app built on js-sdk stops right after
the secure channel and ``m.login.protocols``, and cancels. The tests assert that stop, and then carry on past it by
handing js-sdk the metadata exactly as Synapse serves it, unvalidated (what ``ValidatedAuthMetadata`` would hold
minus the fields the device grant never reads), so that every later step runs js-sdk's own code for real.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest

from devstack import DevStack
from devstack.browser import VerificationPage
from devstack.users import E2eeUser, create_e2ee_user
from qrlink_client.channel import CheckCode
from qrlink_client.e2ee import E2eeHomeserver, StaticSecrets
from qrlink_client.flow import EstablishingSecureChannel, LoginAborted, LoginDeclined, Progress
from qrlink_client.login import QrCodeReady, ShowGen1, grant_login
from qrlink_client.qr import Gen1Mode, Gen1QrCode, decode_qr
from rendezvous.protocol import GEN1_PATH
from tests.devstack.flow import DEVICE_GRANT
from tests.peers.node import NodeDriver, NodeDriverError, NodeDriverFactory
from tests.support.urls import under

pytestmark = [pytest.mark.node, pytest.mark.synapse, pytest.mark.timeout(120)]

# What an app registers for a device-grant login through js-sdk's OAuth2.registerClient. The grant types are given
# because js-sdk's default adds authorization_code, which the dev stack does not offer (registration would throw
# DynamicRegistrationNotSupported before any request).
CLIENT_METADATA = {
    "client_name": "js-sdk new device",
    "client_uri": "https://example.org/",
    "application_type": "native",
    "redirect_uris": [],
    "grant_types": [DEVICE_GRANT, "refresh_token"],
}


@pytest.fixture(scope="module")
def stack() -> Iterator[DevStack]:
    """One stack for the module; the device grant polls every second so logins finish quickly."""
    with DevStack.start(poll_interval=1, rendezvous=True) as running:
        yield running


async def js(driver: NodeDriver, op: str, **fields: Any) -> dict[str, Any]:
    """One driver op, awaited without blocking the event loop that runs ``grant_login``."""
    return await asyncio.to_thread(driver.call, op, **fields)


@dataclass
class ExistingDevice:
    """``grant_login`` and its user: progress, the URIs it opened, the verification page's answers."""

    user: E2eeUser
    action: Literal["approve", "deny"] = "approve"
    #: Seconds the user takes on the verification page before it opens (the new device waits meanwhile).
    open_delay: float = 0.0
    progress: list[Progress] = field(default_factory=list)
    page: VerificationPage = field(init=False)
    qr: asyncio.Future[bytes] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    typed: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def on_progress(self, step: Progress) -> None:
        self.progress.append(step)
        if isinstance(step, QrCodeReady):
            self.qr.set_result(step.data)

    def check_code(self) -> CheckCode | None:
        steps = [step for step in self.progress if isinstance(step, EstablishingSecureChannel)]
        return steps[0].check_code if steps else None

    def __post_init__(self) -> None:
        self.page = VerificationPage(self.user, self.action)

    @property
    def opened(self) -> list[str]:
        """The verification URIs ``grant_login`` opened."""
        return self.page.opened

    @property
    def answers(self) -> list[asyncio.Task[httpx.Response]]:
        """The browser's visits to them, each ending with the last page."""
        return self.page.answers

    async def prompt(self) -> str:
        """The user types the code the new device shows."""
        return await self.typed

    async def open_verification_uri(self, uri: str) -> bool:
        """The verification page, opened after :attr:`open_delay`."""
        if self.open_delay:
            await asyncio.sleep(self.open_delay)
        return await self.page.open(uri)

    def start(self, http: httpx.AsyncClient, stack: DevStack, **role: Any) -> asyncio.Task[str]:
        return asyncio.create_task(
            grant_login(
                http,
                homeserver_url=stack.homeserver_url,
                access_token=self.user.access_token,
                secrets=StaticSecrets(self.user.bootstrap.bundle),
                open_verification_uri=self.open_verification_uri,
                on_progress=self.on_progress,
                **role,
            )
        )


@dataclass
class Login:
    """Every step's outcome of one login with js-sdk as the new device."""

    user: E2eeUser
    device_id: str
    qr: bytes
    negotiated: dict[str, Any]
    client_id: str
    authorization: dict[str, Any]
    tokens: dict[str, Any]
    shared: dict[str, Any]
    existing_result: str
    existing: ExistingDevice
    trace: list[dict[str, Any]]


async def auth_metadata(http: httpx.AsyncClient, stack: DevStack) -> dict[str, Any]:
    """The metadata exactly as Synapse serves it (``GET /_matrix/client/v1/auth_metadata``), unvalidated."""
    response = await http.get(f"{stack.homeserver_url}_matrix/client/v1/auth_metadata")
    response.raise_for_status()
    metadata: dict[str, Any] = response.json()
    return metadata


async def run_login(
    stack: DevStack,
    driver: NodeDriver,
    *,
    new_device_shows: bool,
    action: Literal["approve", "deny"] = "approve",
    gen1_create_url: str | None = None,
    existing: ExistingDevice | None = None,
    http_hooks: dict[str, list[Any]] | None = None,
    **existing_options: Any,
) -> Login | tuple[BaseException, BaseException | str, ExistingDevice]:
    """A whole login, js-sdk's steps in order; on a failure, (js-sdk's error, grant_login's outcome, its side).

    ``gen1_create_url``: where ``grant_login`` creates its session when it shows the QR (default: our rendezvous
    server). ``existing``: the existing device's side, if the caller made it. ``http_hooks``: httpx event hooks on
    ``grant_login``'s client. ``existing_options`` go to ``grant_login`` (``transport_options``).
    """
    if existing is None:
        existing = ExistingDevice(await create_e2ee_user(stack, prefix="js", device_id="EXISTING"), action)
    user = existing.user
    device_id = f"JSSDK{uuid.uuid4().hex[:8].upper()}"
    async with httpx.AsyncClient(timeout=30, trust_env=False, event_hooks=http_hooks) as http:
        if new_device_shows:
            shown = await js(driver, "sign_in_generate", homeserver_url=stack.homeserver_url)
            qr = bytes.fromhex(shown["hex"])
            existing_task = existing.start(http, stack, scanned=qr, **existing_options)
        else:
            if gen1_create_url is None:
                assert stack.rendezvous_url is not None
                gen1_create_url = under(stack.rendezvous_url, GEN1_PATH)
            existing_task = existing.start(
                http,
                stack,
                **existing_options,
                show=ShowGen1(gen1_create_url),
                server_name="localhost",
                check_code_prompt=existing.prompt,
            )
            qr = await existing.qr
            await js(driver, "sign_in_scan", qr_hex=qr.hex())
        try:
            negotiated = await js(driver, "negotiate")
            if not new_device_shows:
                existing.typed.set_result(negotiated["check_code"])
            metadata = await auth_metadata(http, stack)
            client_id = (await js(driver, "register_client", metadata=metadata, client_metadata=CLIENT_METADATA))[
                "client_id"
            ]
            authorization = await js(
                driver, "device_authorization", metadata=metadata, client_id=client_id, device_id=device_id
            )
            tokens = await js(driver, "complete_login", client_id=client_id)
            shared = await js(driver, "share_secrets")
        except NodeDriverError as error:
            outcome: BaseException | str
            try:
                outcome = await asyncio.wait_for(existing_task, 30)
            except Exception as raised:
                outcome = raised
            return error, outcome, existing
        existing_result = await existing_task
        for answer in existing.answers:
            assert (await answer).status_code == 200
    trace = (await js(driver, "trace"))["trace"]
    return Login(
        user, device_id, qr, negotiated, client_id, authorization, tokens, shared, existing_result, existing, trace
    )


@pytest.fixture(scope="module")
def logins() -> dict[bool, Login]:
    """Each approved login once per module (keyed by whether the new device showed the QR)."""
    return {}


async def approved_login(
    stack: DevStack, cache: dict[bool, Login], node_driver: NodeDriverFactory, shows: bool
) -> Login:
    if shows not in cache:
        outcome = await run_login(stack, node_driver("jssdk"), new_device_shows=shows)
        if not isinstance(outcome, Login):
            raise outcome[0]
        cache[shows] = outcome
    return cache[shows]


ROLES = [pytest.param(True, id="new-device-shows"), pytest.param(False, id="existing-device-shows")]


# --- where an app built on js-sdk stops on the dev stack ----------------------------------------------------


def test_js_sdk_refuses_the_dev_stacks_auth_metadata(stack: DevStack, node_driver: NodeDriverFactory) -> None:
    """getAuthMetadata validates the full Matrix OAuth profile; the dev stack has no authorization-code grant."""
    driver = node_driver("jssdk")

    with pytest.raises(NodeDriverError) as raised:
        driver.call("auth_metadata", homeserver_url=stack.homeserver_url)

    assert raised.value.reply["message"] == "Configured OAuth2 OP does not support required functions"


def test_js_sdk_reports_qr_login_unavailable_on_the_dev_stack(stack: DevStack, node_driver: NodeDriverFactory) -> None:
    """isSignInWithQRAvailable needs getAuthMetadata to succeed, so an app would not even offer the QR login."""
    driver = node_driver("jssdk")

    assert driver.call("qr_login_available", homeserver_url=stack.homeserver_url) == {"available": False}


async def test_new_device_that_cannot_get_metadata_cancels_and_the_existing_device_aborts(
    stack: DevStack, node_driver: NodeDriverFactory
) -> None:
    """The real app's path: channel and m.login.protocols work, getAuthMetadata throws, the app cancels the
    rendezvous (js-sdk's HomeserverLacksSupport deletes the session), and grant_login, waiting for
    ``m.login.protocol``, finds the session gone."""
    driver = node_driver("jssdk")
    existing = ExistingDevice(await create_e2ee_user(stack, prefix="js", device_id="EXISTING"))
    async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
        shown = await js(driver, "sign_in_generate", homeserver_url=stack.homeserver_url)
        existing_task = existing.start(http, stack, scanned=bytes.fromhex(shown["hex"]))
        await js(driver, "negotiate")
        with pytest.raises(NodeDriverError):
            await js(driver, "auth_metadata", homeserver_url=stack.homeserver_url)
        await js(driver, "cancel", reason="homeserver_lacks_support")

        with pytest.raises(LoginAborted):
            await asyncio.wait_for(existing_task, 30)


# --- each step, carried past the metadata check ---------------------------------------------------------------


async def test_new_device_creates_its_session_on_the_homeservers_msc4108_endpoint(
    stack: DevStack, logins: dict[bool, Login], node_driver: NodeDriverFactory
) -> None:
    login = await approved_login(stack, logins, node_driver, True)

    qr = decode_qr(login.qr)
    creates = [entry for entry in login.trace if entry["method"] == "POST" and entry["url"].endswith(GEN1_PATH)]
    assert [entry["url"] for entry in creates] == [under(stack.homeserver_url, GEN1_PATH)]
    assert isinstance(qr, Gen1QrCode) and qr.mode is Gen1Mode.LOGIN and qr.server_name is None


async def test_both_devices_show_the_same_check_code(
    stack: DevStack, logins: dict[bool, Login], node_driver: NodeDriverFactory
) -> None:
    login = await approved_login(stack, logins, node_driver, True)

    ours = login.existing.check_code()
    assert ours is not None and login.negotiated["check_code"] == ours.digits


async def test_existing_device_that_showed_the_qr_accepts_the_code_js_sdk_shows(
    stack: DevStack, logins: dict[bool, Login], node_driver: NodeDriverFactory
) -> None:
    """grant_login asks its user for the digits js-sdk displays and compares them with its own channel's code
    (a mismatch would end it with CheckCodeMismatch before any message is read)."""
    login = await approved_login(stack, logins, node_driver, False)

    (step,) = [step for step in login.existing.progress if isinstance(step, EstablishingSecureChannel)]
    assert step.must_enter_code and step.check_code is None
    assert len(login.negotiated["check_code"]) == 2
    assert login.existing_result == login.device_id


async def test_new_device_learns_the_homeserver_from_m_login_protocols(
    stack: DevStack, logins: dict[bool, Login], node_driver: NodeDriverFactory
) -> None:
    """A Gen-1 ``m.login.protocols`` carries the base URL in ``homeserver``; js-sdk hands it to the app."""
    login = await approved_login(stack, logins, node_driver, True)

    assert login.negotiated["server_name"] == stack.homeserver_url


async def test_new_device_that_scanned_takes_the_homeserver_from_the_qr_code(
    stack: DevStack, logins: dict[bool, Login], node_driver: NodeDriverFactory
) -> None:
    """No ``m.login.protocols`` when the new device scanned: negotiateProtocols returns no server name."""
    login = await approved_login(stack, logins, node_driver, False)

    qr = decode_qr(login.qr)
    assert isinstance(qr, Gen1QrCode) and qr.mode is Gen1Mode.RECIPROCATE and qr.server_name == "localhost"
    assert login.negotiated["server_name"] is None


@pytest.mark.parametrize("new_device_shows", ROLES)
async def test_js_sdk_registers_and_requests_the_device_grant_with_its_own_scope(
    stack: DevStack, logins: dict[bool, Login], node_driver: NodeDriverFactory, new_device_shows: bool
) -> None:
    login = await approved_login(stack, logins, node_driver, new_device_shows)

    requests = [entry for entry in login.trace if entry["url"].endswith("oauth2/device")]
    assert [entry["status"] for entry in requests] == [200]
    body = parse_qs(requests[0]["request_body"])
    assert body == {
        "client_id": [login.client_id],
        "scope": [f"urn:matrix:client:api:* urn:matrix:client:device:{login.device_id}"],
    }


@pytest.mark.parametrize("new_device_shows", ROLES)
async def test_existing_device_opens_the_uri_sent_in_m_login_protocol(
    stack: DevStack, logins: dict[bool, Login], node_driver: NodeDriverFactory, new_device_shows: bool
) -> None:
    """js-sdk returns verification_uri_complete to its app and sends it in ``m.login.protocol``; grant_login,
    having found the device ID unused, opens that same URI."""
    login = await approved_login(stack, logins, node_driver, new_device_shows)

    uri = login.authorization["verification_uri"]
    assert login.existing.opened == [uri]
    assert uri.startswith(f"{stack.issuer}link?user_code=")
    assert parse_qs(urlsplit(uri).query)["user_code"] == [login.authorization["user_code"]]


@pytest.mark.parametrize("new_device_shows", ROLES)
async def test_new_device_polls_until_approved_and_its_token_is_the_new_device(
    stack: DevStack, logins: dict[bool, Login], node_driver: NodeDriverFactory, new_device_shows: bool
) -> None:
    login = await approved_login(stack, logins, node_driver, new_device_shows)

    async with E2eeHomeserver(stack.homeserver_url, login.tokens["access_token"]) as hs:
        me = await hs.whoami()

    assert (me["user_id"], me["device_id"]) == (login.user.user_id, login.device_id)
    assert login.tokens["token_type"].lower() == "bearer" and login.tokens["refresh_token"]


@pytest.mark.parametrize("new_device_shows", ROLES)
async def test_new_device_exists_in_synapse_and_grant_login_names_it(
    stack: DevStack, logins: dict[bool, Login], node_driver: NodeDriverFactory, new_device_shows: bool
) -> None:
    login = await approved_login(stack, logins, node_driver, new_device_shows)

    async with httpx.AsyncClient(timeout=15, trust_env=False) as http:
        response = await http.get(
            f"{stack.homeserver_url}_matrix/client/v3/devices/{quote(login.device_id, safe='')}",
            headers={"Authorization": f"Bearer {login.user.access_token}"},
        )

    assert response.status_code == 200
    assert (response.json()["device_id"], login.existing_result) == (login.device_id, login.device_id)


@pytest.mark.parametrize("new_device_shows", ROLES)
async def test_secrets_reach_js_sdk_and_parse_as_the_rust_crypto_bundle(
    stack: DevStack, logins: dict[bool, Login], node_driver: NodeDriverFactory, new_device_shows: bool
) -> None:
    """What ``importSecretsBundle`` would do first: ``SecretsBundle.from_json`` on the payload's content."""
    login = await approved_login(stack, logins, node_driver, new_device_shows)

    ours = login.user.bootstrap.bundle.to_content()
    parsed = login.shared["bundle"]
    assert {name: parsed[name] for name in ("master_key", "self_signing_key", "user_signing_key")} == ours[
        "cross_signing"
    ]
    assert parsed["backup"] == {
        "key": ours["backup"]["key"],
        "backup_version": ours["backup"]["backup_version"],
    }


# --- denial ----------------------------------------------------------------------------------------------------


async def test_denial_ends_js_sdk_with_user_cancelled_and_grant_login_with_login_declined(
    stack: DevStack, node_driver: NodeDriverFactory
) -> None:
    """js-sdk answers ``access_denied`` with ``m.login.failure`` ``user_cancelled`` (not ``m.login.declined``)."""
    outcome = await run_login(stack, node_driver("jssdk"), new_device_shows=True, action="deny")

    assert not isinstance(outcome, Login)
    js_error, existing_outcome, _ = outcome
    assert isinstance(js_error, NodeDriverError)
    assert (js_error.error, js_error.reply.get("code")) == ("RendezvousError", "user_cancelled")
    assert isinstance(existing_outcome, LoginDeclined) and existing_outcome.by_peer
