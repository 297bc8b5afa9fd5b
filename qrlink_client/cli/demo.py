"""``qrlink demo``: the phone-to-desktop handover of a Matrix account on one machine.

It starts the development stack (:mod:`devstack`: an OAuth server, a real Synapse, our rendezvous server),
creates a user whose first device (the *phone*) has cross-signing, a key backup and secret storage and writes an
encrypted message whose room key it backs up, and runs a new device (the *desktop*) and the phone against each
other in one process, each printing its progress. Afterwards it asks Synapse whether the desktop's keys carry a
valid self-signing-key signature and whether the backup key it received is the server's, has the desktop read the
phone's encrypted message with the room key restored from the backup, prints a one-line JSON summary on stdout
and stops the stack.

The handover itself is :func:`devstack.handover.run_handover`; this module starts the stack and draws each
device's progress on the terminal. ``devstack`` is imported only when the command runs: it is development
tooling, and the client library never imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

from ..errors import QrLinkError
from .terminal import add_color_option, color_enabled

if TYPE_CHECKING:
    from devstack import DevStack

    from .io import Console

__all__ = ["EXISTING_SHOWS", "NEW_SHOWS", "StackUnavailable", "configure_demo", "run_demo"]

# The values of --roles, spelled as devstack.handover spells them: that module is imported only when the demo
# runs, and --help must work without the devstack extra.
NEW_SHOWS = "new-shows"
EXISTING_SHOWS = "existing-shows"


class StackUnavailable(QrLinkError):
    """The development stack could not be started (or its extra is not installed)."""


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
    add_color_option(parser)
    from .login import add_gen2_profile_option

    add_gen2_profile_option(parser, both_sides=True)


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo; exit status 0 only if the desktop ends cross-signed with the right backup key and reads the
    phone's encrypted message."""
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
            # Entering the `with` starts the stack; leaving it, however it is left (Ctrl-C and SIGTERM included, and
            # a failed start), stops what started and removes the data directory.
            with DevStack.start(poll_interval=1, gen2_rendezvous=args.gen2_rendezvous) as stack:
                console.line(f"stack up in {time.monotonic() - started:.1f}s")
                console.line(f"  homeserver  {stack.homeserver_url}  (server name {stack.server_name})")
                console.line(f"  OAuth       {stack.issuer}")
                console.line(f"  rendezvous  {stack.rendezvous_url or 'not started (the homeserver has its own)'}")
                try:
                    summary = asyncio.run(_demo(args, stack, console))
                except KeyboardInterrupt:
                    console.line("interrupted: everything in flight was cancelled")
                    raise
                finally:
                    console.line("stopping the development stack")
        except StartupError as error:
            raise StackUnavailable(f"the development stack did not start: {error}") from None
        finally:
            console.line("stopped")
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(json.dumps(summary), flush=True)
    succeeded = summary["cross_signed"] and summary["backup_key_verified"] and summary["history_decrypted"]
    return 0 if succeeded else 1


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


async def _demo(args: argparse.Namespace, stack: DevStack, console: Console) -> dict[str, Any]:
    """The handover on a running stack, each device's progress on its own console (``[desktop]``, ``[phone]``)."""
    from devstack.handover import DemoDevice, run_handover

    from ..flow import Progress
    from ..login import QrCodeReady
    from .io import Console, ProgressPrinter, check_code_prompt

    def device(label: str, peer: str) -> DemoDevice:
        terminal = Console(label)
        # Draws the QR code, with --auto too.
        printer = ProgressPrinter(terminal, peer=peer, color=color_enabled(args.no_color))

        def on_progress(step: Progress) -> None:
            printer(step)
            host = _loopback_host(step.qr) if isinstance(step, QrCodeReady) else None
            if host is not None:
                terminal.line(
                    f"this QR code points at {host} and is only for show: a real phone cannot reach this machine's "
                    "loopback; the demo hands the code to the other device in-process"
                )

        return DemoDevice(
            say=terminal.line,
            on_progress=on_progress,
            check_code_prompt=None if args.auto else check_code_prompt(terminal, peer=peer),
        )

    generation: Literal[1, 2] = 1 if args.gen == 1 else 2
    return await run_handover(
        stack,
        generation=generation,
        roles=args.roles,
        push=args.push,
        auto=args.auto,
        gen2_profile=args.gen2_profile,
        say=console.line,
        desktop=device("[desktop]", "the phone"),
        phone=device("[phone]", "the desktop"),
    )


def _loopback_host(qr: object) -> str | None:
    """The host of the QR code's rendezvous address (Gen-1) or homeserver (Gen-2) if it is this machine's
    loopback, else ``None``."""
    import ipaddress
    from urllib.parse import urlsplit

    url = getattr(qr, "rendezvous_url", None) or getattr(qr, "base_url", None)
    host = urlsplit(url).hostname if isinstance(url, str) else None
    if host is None:
        return None
    if host == "localhost":
        return host
    try:
        return host if ipaddress.ip_address(host).is_loopback else None
    except ValueError:
        return None
