"""DEV ONLY: a Matrix account handed from a phone to a desktop, both devices in this process, on a dev stack.

This is the login ``qrlink demo`` shows and ``python -m bench demo-login`` times. :func:`run_handover` creates
a user whose first device (the *phone*) has cross-signing, a key backup and secret storage, and has the phone
write encrypted history (:mod:`devstack.history`). It runs a new device (the *desktop*) and the phone against
each other with the client library's two drivers, then asks Synapse whether the desktop's keys carry a valid
self-signing-key signature and whether the backup key it received is the server's, and has the desktop read
the phone's encrypted message with the room key restored from the backup. It returns a summary; it prints
nothing itself: every line goes to the callbacks of :class:`DemoDevice`, so the command line draws them on the
terminal and the benchmark keeps them in a log.

Each device's lines are emitted from that device's own progress steps (or its own prompt and browser), so they
come out in the order things happened: the scanner says it scanned when it starts, and with ``auto`` the
scripted browser approves only once the desktop shows its user code, and checks the page shows the same one.

Needs the ``devstack`` and ``e2ee`` extras.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx

from devstack.demo import DemoUser, VerificationPageError, answer_verification_page, create_demo_user
from devstack.stack import DevStack
from qrlink_client.errors import QrLinkError

if TYPE_CHECKING:
    from devstack.history import EncryptedHistory
    from qrlink_client.channel import HpkeProfile
    from qrlink_client.e2ee import E2eeHomeserver
    from qrlink_client.flow import Progress
    from qrlink_client.login import CheckCodePrompt, NewDeviceLoginResult, ShowGen1, ShowGen2

__all__ = ["EXISTING_SHOWS", "NEW_SHOWS", "ApprovalFailed", "DemoDevice", "run_handover"]

NEW_SHOWS = "new-shows"
"""Roles: the desktop (new device) shows the QR code and the phone scans it."""
EXISTING_SHOWS = "existing-shows"
"""Roles: the phone (existing device) shows the QR code and the desktop scans it."""
# How long one device may still run after the other failed: its peer was told, so it normally ends at once.
_PEER_GRACE_SECONDS = 10.0


class ApprovalFailed(QrLinkError):
    """``auto`` could not approve the new device on the verification page."""


@dataclass(frozen=True)
class DemoDevice:
    """How one device of the handover reports to whoever watches it."""

    say: Callable[[str], None]
    """Receives one line of text about this device (the verification URL, "scanned the QR code", ...)."""
    on_progress: Callable[[Progress], None]
    """Receives every progress step of the device's login driver."""
    check_code_prompt: CheckCodePrompt | None = None
    """Asks a human for the check code the other device displays, when this device shows the QR code. Not
    used with ``auto``, which types the code the other device displayed."""


def _future() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()


@dataclass
class _Handover:
    """What one device shows the other (or the user) in the demo: the QR code, the scanner's check code, the
    verification URI the phone opened and the desktop's user code."""

    qr: asyncio.Future[bytes] = field(default_factory=_future)
    check_code: asyncio.Future[str] = field(default_factory=_future)
    verification_uri: asyncio.Future[str] = field(default_factory=_future)
    user_code: asyncio.Future[str] = field(default_factory=_future)

    def watch(self, device: DemoDevice, *, scanned: str | None = None) -> Callable[[Progress], None]:
        """``device``'s progress printer, also catching what the other side needs. ``scanned`` names the QR
        code this device scans ("the desktop's"), said when the device starts."""
        from qrlink_client.flow import EstablishingSecureChannel, Starting, WaitingForToken
        from qrlink_client.login import QrCodeReady

        def on_progress(step: Progress) -> None:
            device.on_progress(step)
            if isinstance(step, Starting) and scanned is not None:
                device.say(f"scanned {scanned} QR code")
            if isinstance(step, QrCodeReady):
                _set(self.qr, step.data)
            if isinstance(step, EstablishingSecureChannel) and step.check_code is not None:
                _set(self.check_code, step.check_code.digits)
            if isinstance(step, WaitingForToken):
                _set(self.user_code, step.user_code)

        return on_progress


def _set(future: asyncio.Future[Any], value: object) -> None:
    if not future.done():
        future.set_result(value)


async def run_handover(
    stack: DevStack,
    *,
    generation: Literal[1, 2],
    roles: str = NEW_SHOWS,
    push: bool = True,
    auto: bool = False,
    gen2_profile: HpkeProfile | None = None,
    say: Callable[[str], None],
    desktop: DemoDevice,
    phone: DemoDevice,
) -> dict[str, Any]:
    """Create a demo user with encrypted history and sign a desktop in from its phone; the summary ``qrlink demo``
    prints.

    ``say`` receives the lines about the demo as a whole. With ``auto`` nobody is needed: the verification page
    is answered over HTTP once the desktop shows its user code, and the showing device types the check code the
    scanner displayed; without it the showing device's :attr:`DemoDevice.check_code_prompt` asks and the phone
    prints the URL to approve. ``gen2_profile`` is the Gen-2 channel profile of both devices (default:
    ``element-x`` shown, and the scanner takes what the code's layout implies). The summary's ``error`` holds a
    login failure (``elapsed_ms`` then runs to the failure); other errors are raised.
    """
    from devstack.history import write_encrypted_history
    from qrlink_client.e2ee import E2eeHomeserver, SecretStorageSecrets
    from qrlink_client.login import grant_login, login_new_device
    from qrlink_client.transport import TransportOptions

    new_shows = roles == NEW_SHOWS
    user = await create_demo_user(stack)
    say(
        f"created {user.user_id}; its first device, the phone ({user.device_id}), has cross-signing, "
        "a key backup and secret storage"
    )
    handover = _Handover()
    options = TransportOptions(push=push)
    summary: dict[str, Any] = {
        "roles": roles,
        "generation": generation,
        "user_id": user.user_id,
        "device_id": None,
        "cross_signed": False,
        "backup_key_verified": False,
        "history_decrypted": False,
        "elapsed_ms": 0,
        "error": None,
    }

    # Every part of the stack is on loopback: a configured proxy must not see this traffic.
    async with httpx.AsyncClient(timeout=30.0, trust_env=False) as http:
        phone_homeserver = E2eeHomeserver(stack.homeserver_url, user.access_token, user_id=user.user_id, client=http)
        history = await write_encrypted_history(
            phone_homeserver,
            device_id=user.device_id,
            text=f"Hello from the phone, written before the desktop existed ({time.strftime('%H:%M:%S')})",
        )
        phone.say(
            f"sent a Megolm-encrypted message in the encrypted room {history.room_id} and stored its room key in "
            f"key backup {history.backup_version}: a new device can read it only with the backup key"
        )
        show = await _show(http, stack, generation, gen2_profile)
        started = time.monotonic()

        async def resolve(server_name: str) -> str:
            # The dev stack's server name ("localhost") has no .well-known; the demo knows where it is.
            return stack.homeserver_url

        def new_device(**role: Any) -> asyncio.Task[NewDeviceLoginResult]:
            return asyncio.create_task(
                login_new_device(
                    http,
                    pickle_key=secrets.token_bytes(32),  # the demo keeps no session
                    on_progress=handover.watch(desktop, scanned=None if new_shows else "the phone's"),
                    resolve_homeserver=resolve,
                    transport_options=options,
                    **role,
                )
            )

        def existing_device(**role: Any) -> asyncio.Task[str]:
            return asyncio.create_task(
                grant_login(
                    http,
                    homeserver_url=stack.homeserver_url,
                    access_token=user.access_token,
                    # The phone unlocks its secret storage with the recovery key, as `qrlink grant` does.
                    secrets=SecretStorageSecrets(user.recovery_key, phone_homeserver),
                    open_verification_uri=_opener(auto, phone, user, handover),
                    on_progress=handover.watch(phone, scanned="the desktop's" if new_shows else None),
                    transport_options=options,
                    **role,
                )
            )

        scan_profile = gen2_profile if generation == 2 else None
        # With auto, the scripted browser: it waits for the URI the phone opens and the code the desktop shows.
        approval = asyncio.create_task(_approve(phone, user, handover)) if auto else None
        tasks: list[asyncio.Task[Any]] = [approval] if approval is not None else []
        try:
            if new_shows:
                new_task = new_device(show=show, check_code_prompt=_prompt(auto, desktop, handover))
                tasks.append(new_task)
                qr = await _first(handover.qr, new_task)
                existing_task = existing_device(scanned=qr, gen2_profile=scan_profile)
            else:
                existing_task = existing_device(
                    show=show,
                    server_name=stack.server_name,
                    check_code_prompt=_prompt(auto, phone, handover),
                )
                tasks.append(existing_task)
                qr = await _first(handover.qr, existing_task)
                new_task = new_device(scanned=qr, gen2_profile=scan_profile)
            tasks = [new_task, existing_task, *([approval] if approval is not None else [])]
            result = await _both(new_task, existing_task, approval)
        except QrLinkError as error:
            summary["elapsed_ms"] = _ms_since(started)
            say(f"the login failed: {type(error).__name__}: {error}")
            summary["error"] = f"{type(error).__name__}: {error}"
            return summary
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        summary["device_id"] = result.device_id
        desktop.say("published its device keys, signed with the self-signing key it received")
        desktop_homeserver = E2eeHomeserver(
            stack.homeserver_url, result.access_token, user_id=result.user_id, client=http
        )
        summary["cross_signed"], summary["backup_key_verified"] = await _check_on_synapse(
            desktop_homeserver, result, say
        )
        # The handover's time ends with the Synapse checks, as it always has (python -m bench demo-login times
        # it); reading the history afterwards is the demo's proof, not part of the login.
        summary["elapsed_ms"] = _ms_since(started)
        summary["history_decrypted"] = await _read_history(desktop_homeserver, result, history, desktop)
    return summary


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


async def _show(
    http: httpx.AsyncClient, stack: DevStack, generation: Literal[1, 2], profile: HpkeProfile | None
) -> ShowGen1 | ShowGen2:
    from qrlink_client.channel import HpkeProfile
    from qrlink_client.discovery import discover_gen1_rendezvous, gen1_create_url
    from qrlink_client.login import ShowGen1, ShowGen2

    if generation == 2:
        return ShowGen2(stack.homeserver_url, profile=profile or HpkeProfile.ELEMENT_X)
    if stack.rendezvous_url is not None:
        return ShowGen1(gen1_create_url(stack.rendezvous_url))
    return ShowGen1(await discover_gen1_rendezvous(http, stack.homeserver_url))


def _prompt(auto: bool, device: DemoDevice, handover: _Handover) -> CheckCodePrompt:
    """The showing device's check-code prompt: the human's, or with ``auto`` the code the scanner displayed."""
    if not auto:
        if device.check_code_prompt is None:
            raise ValueError("without auto, the device that shows the QR code needs a check_code_prompt")
        return device.check_code_prompt

    async def typed() -> str:
        digits = await handover.check_code
        device.say(f"typing the check code {digits} (--auto)")
        return digits

    return typed


def _opener(auto: bool, phone: DemoDevice, user: DemoUser, handover: _Handover) -> Callable[[str], Any]:
    """The phone's verification-URI opener: it prints the URI once. With ``auto`` it hands the URI to the scripted
    browser (:func:`_approve`), else the human opens it."""

    async def open_for_script(uri: str) -> bool:
        phone.say(f"opening the verification page (--auto: a scripted browser answers it): {uri}")
        _set(handover.verification_uri, uri)
        return True

    async def ask_human(uri: str) -> bool:
        phone.say(f"open this URL in a browser and approve the desktop: {uri}")
        # A throwaway account on a stack that lives only as long as this command: showing it is the point.
        phone.say(f"sign in there as {user.localpart} with password {user.password} (dev-only account)")
        return True

    return open_for_script if auto else ask_human


async def _approve(phone: DemoDevice, user: DemoUser, handover: _Handover) -> None:
    """``auto``'s user at the browser: once the phone opened the page and the desktop shows its user code, sign
    in, check that the consent page shows the same code and press *Approve*."""
    uri = await handover.verification_uri
    expected = await handover.user_code
    try:
        shown = await answer_verification_page(
            uri, localpart=user.localpart, password=user.password, expected_user_code=expected
        )
    except (VerificationPageError, OSError) as error:
        raise ApprovalFailed(str(error)) from None
    phone.say(f"the verification page shows user code {shown}, as the desktop does: approved (--auto)")


async def _first(value: asyncio.Future[bytes], task: asyncio.Task[Any]) -> bytes:
    """``value`` once set, or the error of ``task`` if it fails first (the QR never comes then)."""
    await asyncio.wait({value, task}, return_when=asyncio.FIRST_COMPLETED)
    if value.done():
        return value.result()
    task.result()  # raises the device's error
    raise AssertionError("a login that ended successfully showed no QR code")  # pragma: no cover


async def _both(
    new_task: asyncio.Task[NewDeviceLoginResult],
    existing_task: asyncio.Task[str],
    approval: asyncio.Task[None] | None = None,
) -> NewDeviceLoginResult:
    """Wait for both devices (and ``auto``'s approval). When one device fails, the other was told and ends soon;
    its error is the one raised when both failed the same way, else the first failure. A failed approval is
    raised at once: nothing tells the devices, which the caller then cancels."""
    watched: set[asyncio.Task[Any]] = {new_task, existing_task}
    if approval is not None:
        watched.add(approval)
    await asyncio.wait(watched, return_when=asyncio.FIRST_EXCEPTION)
    if approval is not None and approval.done() and not approval.cancelled():
        error = approval.exception()
        if error is not None:
            raise error
    devices = (new_task, existing_task)
    failed = [task for task in devices if task.done() and task.exception() is not None]
    pending = [task for task in devices if not task.done()]
    if failed and pending:
        await asyncio.wait(pending, timeout=_PEER_GRACE_SECONDS)
    for task in devices:
        error = task.exception() if task.done() else None
        if error is not None:
            raise error
    if not (new_task.done() and existing_task.done()):
        raise AssertionError("both devices ended without an error")  # pragma: no cover
    return new_task.result()


async def _check_on_synapse(
    homeserver: E2eeHomeserver, result: NewDeviceLoginResult, say: Callable[[str], None]
) -> tuple[bool, bool]:
    """Ask the homeserver, with the desktop's new token, whether its keys are cross-signed and whether the
    backup key it received is the one of the server's current backup."""
    from qrlink_client.e2ee import MEGOLM_BACKUP_ALGORITHM, E2eeError, check_backup_key, verify_json

    keys = await homeserver.query_keys([result.user_id])
    user, device = result.user_id, result.device_id
    try:
        ((master_id, master_key),) = keys["master_keys"][user]["keys"].items()
        self_signing = keys["self_signing_keys"][user]
        ((ssk_id, ssk_key),) = self_signing["keys"].items()
        # The chain a verifying client follows: master key → self-signing key → device keys.
        verify_json(self_signing, signer_id=user, key_id=master_id, public_key=master_key)
        verify_json(keys["device_keys"][user][device], signer_id=user, key_id=ssk_id, public_key=ssk_key)
        cross_signed = True
        say(f"Synapse /keys/query: {device} is signed by the self-signing key, which the master key signed")
    except (E2eeError, KeyError, TypeError, ValueError) as error:
        cross_signed = False
        say(f"Synapse /keys/query: {device} is NOT cross-signed ({type(error).__name__}: {error})")

    backup = result.secrets.backup
    info = await homeserver.get_backup_version()
    try:
        if backup is None:
            raise ValueError("the desktop received no backup key")
        check_backup_key(backup.key, backup.backup_version, MEGOLM_BACKUP_ALGORITHM, info)
        backup_ok = True
        say(f"Synapse /room_keys/version: backup {backup.backup_version} matches the received key")
    except (E2eeError, ValueError) as error:
        backup_ok = False
        say(f"Synapse /room_keys/version: the backup key does NOT match ({error})")
    return cross_signed, backup_ok


async def _read_history(
    homeserver: E2eeHomeserver, result: NewDeviceLoginResult, history: EncryptedHistory, desktop: DemoDevice
) -> bool:
    """The desktop restores the room keys from the backup with the key it received, fetches the encrypted
    events from Synapse and decrypts them; true if it read the phone's message as the phone wrote it."""
    from devstack.history import read_encrypted_history
    from qrlink_client.e2ee import E2eeError

    backup = result.secrets.backup
    if backup is None:
        desktop.say("could NOT read the encrypted history: it received no backup key")
        return False
    try:
        reading = await read_encrypted_history(homeserver, backup)
    except E2eeError as error:
        desktop.say(f"could NOT read the encrypted history ({type(error).__name__}: {error})")
        return False
    desktop.say(
        f"restored {reading.room_keys} room key(s) from key backup {backup.backup_version} with the backup key "
        "received over the secure channel"
    )
    for message in reading.messages:
        desktop.say(f"decrypted {message.sender_device}'s message in {message.room_id}: {message.body!r}")
    found = [m for m in reading.messages if m.event_id == history.event_id]
    if not found or found[0].body != history.text:
        desktop.say(f"could NOT read the phone's message {history.event_id}")
        return False
    return True
