"""``qrlink demo``: the phone-to-desktop handover of a Matrix account on one machine.

It starts the development stack (:mod:`devstack`: an OAuth server, a real Synapse, our rendezvous server),
creates a user whose first device (the *phone*) has cross-signing, a key backup and secret storage, and runs
a new device (the *desktop*) and the phone against each other in one process, each printing its progress.
Afterwards it asks Synapse whether the desktop's keys carry a valid self-signing-key signature and whether
the backup key it received is the server's, prints a one-line JSON summary on stdout and stops the stack.

``devstack`` is imported only here and only when the command runs: it is development tooling, not part of
the client library.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

from ..errors import QrLinkError

if TYPE_CHECKING:
    import httpx

    from devstack import DevStack
    from devstack.demo import DemoUser

    from ..flow import Progress
    from ..login import CheckCodePrompt, NewDeviceLoginResult, ShowGen1, ShowGen2
    from .io import Console

__all__ = ["ApprovalFailed", "StackUnavailable", "configure_demo", "run_demo"]

NEW_SHOWS = "new-shows"
EXISTING_SHOWS = "existing-shows"
# How long one device may still run after the other failed: its peer was told, so it normally ends at once.
_PEER_GRACE_SECONDS = 10.0


class StackUnavailable(QrLinkError):
    """The development stack could not be started (or its extra is not installed)."""


class ApprovalFailed(QrLinkError):
    """``--auto`` could not approve the new device on the verification page."""


def configure_demo(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``qrlink demo``."""
    parser.add_argument(
        "--auto",
        action="store_true",
        help=(
            "no human needed: approve on the verification page over HTTP and type the check code "
            "automatically. Without it you open the printed URL in a browser and type the check code"
        ),
    )
    parser.add_argument(
        "--gen",
        type=int,
        choices=(1, 2),
        default=1,
        help="1 = MSC4108 through our rendezvous server (default), 2 = MSC4388 under the homeserver URL",
    )
    parser.add_argument(
        "--gen2-rendezvous",
        choices=("synapse", "qrlink"),
        default="synapse",
        help=(
            "who hosts Gen-2 sessions: Synapse's own MSC4388 endpoint (default), or our rendezvous server behind a "
            "front proxy that serves as the homeserver URL, as an admin would deploy it"
        ),
    )
    parser.add_argument(
        "--roles",
        choices=(NEW_SHOWS, EXISTING_SHOWS),
        default=NEW_SHOWS,
        help=(
            f"{NEW_SHOWS}: the desktop (new device) shows the QR code and the phone scans it (default); "
            f"{EXISTING_SHOWS}: the phone shows it and the desktop scans"
        ),
    )
    parser.add_argument(
        "--push",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="use the rendezvous server's push delivery (long-poll or WebSocket) when offered (default: yes)",
    )


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo; exit status 0 only if the desktop ends cross-signed with the right backup key."""
    from .io import Console
    from .login import require_e2ee

    require_e2ee()
    try:
        from devstack import DevStack, StartupError
        from devstack.synapse import SYNAPSE_VERSION, synapse_home
    except ImportError:
        raise StackUnavailable("the demo needs the development stack: install qrlink[devstack,e2ee]") from None

    console = Console("[demo]")
    if not (synapse_home() / ".installed").is_file():
        console.line(
            f"first run: installing Synapse {SYNAPSE_VERSION} into {synapse_home()} "
            "(about 240 MB, one to two minutes; later runs start in seconds)"
        )
    console.line("starting the development stack: OAuth server, Synapse (a few seconds), rendezvous server")
    # SIGTERM stops the demo like Ctrl-C: the stack's child processes are stopped and its data removed.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        started = time.monotonic()
        try:
            with DevStack.start(poll_interval=1, gen2_rendezvous=args.gen2_rendezvous) as stack:
                console.line(f"stack up in {time.monotonic() - started:.1f}s")
                console.line(f"  homeserver  {stack.homeserver_url}  (server name {stack.server_name})")
                console.line(f"  OAuth       {stack.issuer}")
                console.line(f"  rendezvous  {stack.rendezvous_url or 'not started (the homeserver has its own)'}")
                try:
                    summary = asyncio.run(_demo(args, stack, console))
                finally:
                    console.line("stopping the development stack")
        except StartupError as error:
            raise StackUnavailable(f"the development stack did not start: {error}") from None
        console.line("stopped")
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(json.dumps(summary), flush=True)
    return 0 if summary["cross_signed"] and summary["backup_key_verified"] else 1


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@dataclass
class _Handover:
    """What one device shows the other in the demo: the QR code, and the scanner's check code."""

    qr: asyncio.Future[bytes] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    check_code: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def watch(self, printer: Callable[[Progress], None]) -> Callable[[Progress], None]:
        """``printer``, also catching the QR payload and the displayed check code for the other side."""
        from ..flow import EstablishingSecureChannel
        from ..login import QrCodeReady

        def on_progress(step: Progress) -> None:
            printer(step)
            if isinstance(step, QrCodeReady) and not self.qr.done():
                self.qr.set_result(step.data)
            if isinstance(step, EstablishingSecureChannel) and step.check_code is not None:
                if not self.check_code.done():
                    self.check_code.set_result(step.check_code.digits)

        return on_progress


async def _demo(args: argparse.Namespace, stack: DevStack, console: Console) -> dict[str, Any]:
    import httpx

    from devstack.demo import create_demo_user

    from ..e2ee import E2eeHomeserver, SecretStorageSecrets
    from ..login import grant_login, login_new_device
    from ..transport import TransportOptions
    from .io import Console, ProgressPrinter

    generation: Literal[1, 2] = 1 if args.gen == 1 else 2
    new_shows = args.roles == NEW_SHOWS
    user = await create_demo_user(stack)
    console.line(
        f"created {user.user_id}; its first device, the phone ({user.device_id}), has cross-signing, "
        "a key backup and secret storage"
    )
    desktop, phone = Console("[desktop]"), Console("[phone]")
    handover = _Handover()
    options = TransportOptions(push=args.push)
    summary: dict[str, Any] = {
        "roles": args.roles,
        "generation": generation,
        "user_id": user.user_id,
        "device_id": None,
        "cross_signed": False,
        "backup_key_verified": False,
        "elapsed_ms": 0,
        "error": None,
    }

    # Every part of the stack is on loopback: a configured proxy must not see this traffic.
    async with httpx.AsyncClient(timeout=30.0, trust_env=False) as http:
        show = await _show(http, stack, generation)
        phone_homeserver = E2eeHomeserver(stack.homeserver_url, user.access_token, user_id=user.user_id, client=http)
        started = time.monotonic()

        async def resolve(server_name: str) -> str:
            # The dev stack's server name ("localhost") has no .well-known; the demo knows where it is.
            return stack.homeserver_url

        def new_device(**role: Any) -> asyncio.Task[NewDeviceLoginResult]:
            printer = ProgressPrinter(desktop, peer="the phone", show_qr=not args.auto)
            return asyncio.create_task(
                login_new_device(
                    http,
                    pickle_key=secrets.token_bytes(32),  # the demo keeps no session
                    on_progress=handover.watch(printer),
                    resolve_homeserver=resolve,
                    transport_options=options,
                    **role,
                )
            )

        def existing_device(**role: Any) -> asyncio.Task[str]:
            printer = ProgressPrinter(phone, peer="the desktop", show_qr=not args.auto)
            return asyncio.create_task(
                grant_login(
                    http,
                    homeserver_url=stack.homeserver_url,
                    access_token=user.access_token,
                    # The phone unlocks its secret storage with the recovery key, as `qrlink grant` does.
                    secrets=SecretStorageSecrets(user.recovery_key, phone_homeserver),
                    open_verification_uri=_opener(args, phone, user),
                    on_progress=handover.watch(printer),
                    transport_options=options,
                    **role,
                )
            )

        tasks: list[asyncio.Task[Any]] = []
        try:
            if new_shows:
                new_task = new_device(show=show, check_code_prompt=_prompt(args, desktop, "the phone", handover))
                tasks.append(new_task)
                qr = await _first(handover.qr, new_task)
                phone.line("scanned the desktop's QR code")
                existing_task = existing_device(scanned=qr)
            else:
                existing_task = existing_device(
                    show=show,
                    server_name=stack.server_name,
                    check_code_prompt=_prompt(args, phone, "the desktop", handover),
                )
                tasks.append(existing_task)
                qr = await _first(handover.qr, existing_task)
                desktop.line("scanned the phone's QR code")
                new_task = new_device(scanned=qr)
            tasks = [new_task, existing_task]
            result = await _both(new_task, existing_task)
        except QrLinkError as error:
            console.line(f"the login failed: {type(error).__name__}: {error}")
            summary["error"] = f"{type(error).__name__}: {error}"
            return summary
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        summary["device_id"] = result.device_id
        summary["cross_signed"], summary["backup_key_verified"] = await _check_on_synapse(
            http, stack.homeserver_url, result, console
        )
        summary["elapsed_ms"] = round((time.monotonic() - started) * 1000)
    return summary


async def _show(http: httpx.AsyncClient, stack: DevStack, generation: Literal[1, 2]) -> ShowGen1 | ShowGen2:
    from ..discovery import discover_gen1_rendezvous, gen1_create_url
    from ..login import ShowGen1, ShowGen2

    if generation == 2:
        return ShowGen2(stack.homeserver_url)
    if stack.rendezvous_url is not None:
        return ShowGen1(gen1_create_url(stack.rendezvous_url))
    return ShowGen1(await discover_gen1_rendezvous(http, stack.homeserver_url))


def _prompt(args: argparse.Namespace, console: Console, peer: str, handover: _Handover) -> CheckCodePrompt:
    """The showing device's check-code prompt: stdin, or with ``--auto`` the code the scanner displayed."""
    from .io import check_code_prompt

    if not args.auto:
        return check_code_prompt(console, peer=peer)

    async def typed() -> str:
        digits = await handover.check_code
        console.line(f"typing the check code {digits} (--auto)")
        return digits

    return typed


def _opener(args: argparse.Namespace, console: Console, user: DemoUser) -> Callable[[str], Any]:
    """The phone's verification-URI opener: the scripted browser with ``--auto``, else the human."""

    async def approve(uri: str) -> bool:
        from devstack.demo import VerificationPageError, answer_verification_page

        console.line("approving on the verification page (--auto)")
        try:
            await answer_verification_page(uri, localpart=user.localpart, password=user.password)
        except (VerificationPageError, OSError) as error:
            raise ApprovalFailed(str(error)) from None
        console.line("approved")
        return True

    async def ask_human(uri: str) -> bool:
        console.line(f"open this URL in a browser and approve the desktop: {uri}")
        # A throwaway account on a stack that lives only as long as this command: showing it is the point.
        console.line(f"sign in there as {user.localpart} with password {user.password} (dev-only account)")
        return True

    return approve if args.auto else ask_human


async def _first(value: asyncio.Future[bytes], task: asyncio.Task[Any]) -> bytes:
    """``value`` once set, or the error of ``task`` if it fails first (the QR never comes then)."""
    await asyncio.wait({value, task}, return_when=asyncio.FIRST_COMPLETED)
    if value.done():
        return value.result()
    task.result()  # raises the device's error
    raise AssertionError("a login that ended successfully showed no QR code")  # pragma: no cover


async def _both(new_task: asyncio.Task[NewDeviceLoginResult], existing_task: asyncio.Task[str]) -> NewDeviceLoginResult:
    """Wait for both devices. When one fails, the other was told and ends soon; its error is the one raised
    when both failed the same way, else the first failure."""
    pending: set[asyncio.Task[Any]] = {new_task, existing_task}
    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
    failed = [task for task in done if task.exception() is not None]
    if failed and pending:
        await asyncio.wait(pending, timeout=_PEER_GRACE_SECONDS)
    for task in (new_task, existing_task):
        error = task.exception() if task.done() else None
        if error is not None:
            raise error
    if not (new_task.done() and existing_task.done()):
        raise AssertionError("both devices ended without an error")  # pragma: no cover
    return new_task.result()


async def _check_on_synapse(
    http: httpx.AsyncClient, homeserver_url: str, result: NewDeviceLoginResult, console: Console
) -> tuple[bool, bool]:
    """Ask the homeserver, with the desktop's new token, whether its keys are cross-signed and whether the
    backup key it received is the one of the server's current backup."""
    from ..e2ee import MEGOLM_BACKUP_ALGORITHM, E2eeError, E2eeHomeserver, check_backup_key, verify_json

    homeserver = E2eeHomeserver(homeserver_url, result.access_token, user_id=result.user_id, client=http)
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
        console.line(f"Synapse /keys/query: {device} is signed by the self-signing key, which the master key signed")
    except (E2eeError, KeyError, TypeError, ValueError) as error:
        cross_signed = False
        console.line(f"Synapse /keys/query: {device} is NOT cross-signed ({type(error).__name__}: {error})")

    backup = result.secrets.backup
    info = await homeserver.get_backup_version()
    try:
        if backup is None:
            raise ValueError("the desktop received no backup key")
        check_backup_key(backup.key, backup.backup_version, MEGOLM_BACKUP_ALGORITHM, info)
        backup_ok = True
        console.line(f"Synapse /room_keys/version: backup {backup.backup_version} matches the received key")
    except (E2eeError, ValueError) as error:
        backup_ok = False
        console.line(f"Synapse /room_keys/version: the backup key does NOT match ({error})")
    return cross_signed, backup_ok
