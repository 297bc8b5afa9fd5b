"""A whole sign in with QR code between two devices, each driven by its own :mod:`qrlink_client.login` call,
on the development stack: real Synapse, the real OAuth server (whose verification page a plain HTTP "browser"
answers) and, for Gen-1, our rendezvous server; Gen-2 goes through Synapse's MSC4388 endpoints, since a Gen-2
QR code names the homeserver that hosts the session.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import pytest

from devstack import DevStack
from devstack.browser import VerificationPage
from devstack.users import E2eeUser, create_e2ee_user
from qrlink_client.channel import CheckCode, DecryptionError, HpkeProfile
from qrlink_client.e2ee import (
    E2eeHomeserver,
    OlmDevice,
    StaticSecrets,
    verify_json,
)
from qrlink_client.flow import (
    Done,
    EstablishingSecureChannel,
    LoginAborted,
    LoginDeclined,
    LoginFailed,
    Progress,
    Starting,
    SyncingSecrets,
    WaitingForAuth,
    WaitingForToken,
)
from qrlink_client.login import (
    NewDeviceLoginResult,
    QrCodeReady,
    ShowGen1,
    ShowGen2,
    grant_login,
    login_new_device,
)
from rendezvous.protocol import GEN1_PATH
from tests.e2e._limits import LOGIN_WITHIN, STEP_WITHIN
from tests.support.deadlines import ended_within, step_within
from tests.support.urls import under

pytestmark = pytest.mark.synapse

SERVER_NAME = "localhost"  # DevStack's default server name, carried by a Gen-1 QR the existing device shows


@dataclass
class Sides:
    """What each device shows the other: the QR code, and the check code of the device that scanned it."""

    qr: asyncio.Future[bytes] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    code: asyncio.Future[CheckCode] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    progress: list[Progress] = field(default_factory=list)

    def on_progress(self, step: Progress) -> None:
        self.progress.append(step)
        if isinstance(step, QrCodeReady):
            self.qr.set_result(step.data)
        if isinstance(step, EstablishingSecureChannel) and step.check_code is not None:
            self.code.set_result(step.check_code)

    async def typed_code(self) -> str:
        return (await self.code).digits

    def describe(self) -> str:
        """What this device did last, for a test that gave up waiting on it."""
        return f"last progress {type(self.progress[-1]).__name__ if self.progress else 'nothing'}"


async def run_login(
    stack: DevStack,
    user: E2eeUser,
    *,
    generation: Literal[1, 2],
    new_device_shows: bool,
    page: VerificationPage,
    show_profile: HpkeProfile = HpkeProfile.ELEMENT_X,
    scan_profile: HpkeProfile | None = None,
    waiting_for: str = "both devices to end the login",
    within: float = LOGIN_WITHIN,
) -> tuple[NewDeviceLoginResult | BaseException, str | BaseException, Sides, Sides]:
    """Both devices concurrently: the one that shows the QR starts first, the other scans what it showed.

    Gen-2: the code is shown with ``show_profile``; the scanner takes ``scan_profile`` if given, else the one
    the code's layout implies. Fails the test, naming ``waiting_for``, when they have not both ended within
    ``within`` seconds.
    """
    assert stack.rendezvous_url is not None
    show = (
        ShowGen1(under(stack.rendezvous_url, GEN1_PATH))
        if generation == 1
        else ShowGen2(stack.homeserver_url, profile=show_profile)
    )
    scanning: dict[str, Any] = {} if generation == 1 else {"gen2_profile": scan_profile}
    new, existing = Sides(), Sides()

    async def resolve(server_name: str) -> str:
        assert server_name == SERVER_NAME
        return stack.homeserver_url

    async with httpx.AsyncClient(timeout=30, trust_env=False) as http:

        def new_device(**role: Any) -> asyncio.Task[NewDeviceLoginResult]:
            return asyncio.create_task(
                login_new_device(
                    http,
                    pickle_key=b"k" * 32,
                    on_progress=new.on_progress,
                    # "/" and "+" must be percent-encoded in the existing device's GET /devices/{id}.
                    device=OlmDevice.generate(f"QR/{uuid.uuid4().hex[:8]}+x"),
                    resolve_homeserver=resolve,
                    **role,
                )
            )

        def existing_device(**role: Any) -> asyncio.Task[str]:
            return asyncio.create_task(
                grant_login(
                    http,
                    homeserver_url=stack.homeserver_url,
                    access_token=user.access_token,
                    secrets=StaticSecrets(user.bootstrap.bundle),
                    open_verification_uri=page.open,
                    on_progress=existing.on_progress,
                    **role,
                )
            )

        new_task: asyncio.Task[NewDeviceLoginResult]
        existing_task: asyncio.Task[str]
        if new_device_shows:
            new_task = new_device(show=show, check_code_prompt=existing.typed_code)
            existing_task = existing_device(
                scanned=await step_within(new.qr, STEP_WITHIN, "the new device to show a QR code"), **scanning
            )
        else:
            existing_task = existing_device(show=show, server_name=SERVER_NAME, check_code_prompt=new.typed_code)
            new_task = new_device(
                scanned=await step_within(existing.qr, STEP_WITHIN, "the existing device to show a QR code"), **scanning
            )
        devices: dict[str, asyncio.Task[Any]] = {"new device": new_task, "existing device": existing_task}
        by_name = {"new device": new, "existing device": existing}
        await ended_within(devices, within, waiting_for, lambda name: by_name[name].describe())
        for answer in page.answers:
            assert (await step_within(answer, STEP_WITHIN, "the verification page to answer")).status_code == 200
        return _outcome(new_task), _outcome(existing_task), new, existing


def _outcome(task: asyncio.Task[Any]) -> Any:
    """What a device's call returned, or the exception it raised."""
    error = task.exception()
    return error if error is not None else task.result()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


ROLES = [
    pytest.param(1, True, id="gen1-new-device-shows"),
    pytest.param(1, False, id="gen1-existing-device-shows"),
    pytest.param(2, True, id="gen2-new-device-shows"),
    pytest.param(2, False, id="gen2-existing-device-shows"),
]


@dataclass(frozen=True)
class Login:
    user: E2eeUser
    new: NewDeviceLoginResult
    existing_saw: str
    new_progress: list[Progress]
    existing_progress: list[Progress]


@pytest.fixture(scope="module")
def logins(stack: DevStack) -> dict[tuple[int, bool], Login]:
    """Each approved login once per module (a login takes a few seconds), keyed by (generation, new shows)."""
    return {}


async def approved_login(stack: DevStack, cache: dict[tuple[int, bool], Login], gen: int, shows: bool) -> Login:
    key = (gen, shows)
    if key not in cache:
        user = await create_e2ee_user(stack, prefix="e2e", device_id="EXISTING")
        generation: Literal[1, 2] = 1 if gen == 1 else 2
        page = VerificationPage(user, "approve")
        new, existing, new_sides, existing_sides = await run_login(
            stack,
            user,
            generation=generation,
            new_device_shows=shows,
            page=page,
            waiting_for="both devices to end an approved login",
        )
        if isinstance(new, BaseException):
            raise new
        if isinstance(existing, BaseException):
            raise existing
        cache[key] = Login(user, new, existing, new_sides.progress, existing_sides.progress)
    return cache[key]


@pytest.mark.parametrize(("generation", "new_device_shows"), ROLES)
async def test_both_devices_agree_on_the_new_device(
    stack: DevStack, logins: Any, generation: int, new_device_shows: bool
) -> None:
    login = await approved_login(stack, logins, generation, new_device_shows)

    assert (login.new.user_id, login.new.device_id) == (login.user.user_id, login.existing_saw)


@pytest.mark.parametrize(("generation", "new_device_shows"), ROLES)
async def test_each_device_reports_its_progress_steps_in_order(
    stack: DevStack, logins: Any, generation: int, new_device_shows: bool
) -> None:
    login = await approved_login(stack, logins, generation, new_device_shows)

    new_steps = [type(step) for step in login.new_progress]
    existing_steps = [type(step) for step in login.existing_progress]
    shown_by_new = [QrCodeReady] if new_device_shows else []
    shown_by_existing = [] if new_device_shows else [QrCodeReady]
    assert (new_steps, existing_steps) == (
        [Starting, *shown_by_new, EstablishingSecureChannel, WaitingForToken, SyncingSecrets, Done],
        [Starting, *shown_by_existing, EstablishingSecureChannel, WaitingForAuth, SyncingSecrets, Done],
    )


@pytest.mark.parametrize(("generation", "new_device_shows"), ROLES)
async def test_new_device_keys_are_signed_by_the_self_signing_key(
    stack: DevStack, logins: Any, generation: int, new_device_shows: bool
) -> None:
    login = await approved_login(stack, logins, generation, new_device_shows)
    user, new = login.user, login.new

    async with E2eeHomeserver(stack.homeserver_url, user.access_token) as hs:
        keys = await hs.query_keys([user.user_id])
    device_keys = keys["device_keys"][user.user_id][new.device_id]
    ((key_id, public_key),) = keys["self_signing_keys"][user.user_id]["keys"].items()

    verify_json(device_keys, signer_id=user.user_id, key_id=key_id, public_key=public_key)


@pytest.mark.parametrize(("generation", "new_device_shows"), ROLES)
async def test_new_device_received_the_servers_backup_key(
    stack: DevStack, logins: Any, generation: int, new_device_shows: bool
) -> None:
    login = await approved_login(stack, logins, generation, new_device_shows)
    user, new = login.user, login.new

    async with E2eeHomeserver(stack.homeserver_url, user.access_token) as hs:
        info = await hs.get_backup_version()
    assert new.secrets.backup is not None and info is not None
    assert (new.secrets.backup.backup_version, b64(new.secrets.backup.key.public_key)) == (
        info["version"],
        info["auth_data"]["public_key"],
    )


@pytest.mark.parametrize(("generation", "new_device_shows"), ROLES)
async def test_new_device_tokens_work_on_the_homeserver(
    stack: DevStack, logins: Any, generation: int, new_device_shows: bool
) -> None:
    new = (await approved_login(stack, logins, generation, new_device_shows)).new

    async with E2eeHomeserver(stack.homeserver_url, new.access_token) as hs:
        me = await hs.whoami()

    assert (me["user_id"], me["device_id"]) == (new.user_id, new.device_id)


@pytest.mark.parametrize("generation", [1, 2])
async def test_denying_on_the_verification_page_fails_both_devices_with_login_declined(
    stack: DevStack, generation: Literal[1, 2]
) -> None:
    user = await create_e2ee_user(stack, prefix="e2e", device_id="EXISTING")
    page = VerificationPage(user, "deny")

    new, existing, _, _ = await run_login(
        stack,
        user,
        generation=generation,
        new_device_shows=True,
        page=page,
        waiting_for="the existing device to be told m.login.declined after the denial",
    )

    assert isinstance(new, LoginDeclined) and not new.by_peer
    assert isinstance(existing, LoginDeclined) and existing.by_peer


# --- Gen-2 channel profiles: Element X's on both sides, and a pair that cannot agree -------------------------


def established(progress: list[Progress]) -> EstablishingSecureChannel:
    [step] = [step for step in progress if isinstance(step, EstablishingSecureChannel)]
    return step


@pytest.mark.parametrize(("generation", "new_device_shows"), ROLES)
async def test_each_device_reports_the_gen2_profile_it_used(
    stack: DevStack, logins: Any, generation: int, new_device_shows: bool
) -> None:
    """Gen-2 codes are shown with element-x and the scanner detects it from the code's layout; all four roles
    (new/existing device, shows/scans) end with element-x. Gen-1 has no profile."""
    login = await approved_login(stack, logins, generation, new_device_shows)

    expected = HpkeProfile.ELEMENT_X if generation == 2 else None
    assert (established(login.new_progress).profile, established(login.existing_progress).profile) == (
        expected,
        expected,
    )


async def assert_mixed_profiles_fail_fast(
    stack: DevStack, *, new_device_shows: bool, shown: HpkeProfile, scanning: HpkeProfile
) -> None:
    """A scanner forced onto another profile than the shown code's: the shower cannot open LoginInitiate
    (DecryptionError), deletes the session, and the scanner stops at once; nobody hangs."""
    user = await create_e2ee_user(stack, prefix="e2e", device_id="EXISTING")
    page = VerificationPage(user, "approve")
    started = asyncio.get_running_loop().time()

    new, existing, _, _ = await run_login(
        stack,
        user,
        generation=2,
        new_device_shows=new_device_shows,
        page=page,
        show_profile=shown,
        scan_profile=scanning,
        waiting_for=f"both devices to stop on a {shown.value} code scanned as {scanning.value}",
        within=15.0,
    )

    assert asyncio.get_running_loop().time() - started < 8
    shower, scanner = (new, existing) if new_device_shows else (existing, new)
    assert isinstance(shower, LoginAborted) and isinstance(shower.__cause__, DecryptionError)
    assert isinstance(scanner, LoginFailed)
    assert page.answers == []  # nothing got as far as the verification page


@pytest.mark.parametrize("new_device_shows", [True, False], ids=["new-device-shows", "existing-device-shows"])
async def test_element_x_against_msc4388_fails_both_devices_within_seconds(
    stack: DevStack, new_device_shows: bool
) -> None:
    await assert_mixed_profiles_fail_fast(
        stack, new_device_shows=new_device_shows, shown=HpkeProfile.ELEMENT_X, scanning=HpkeProfile.MSC
    )
