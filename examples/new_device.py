"""Sign this machine in as a NEW device with a QR code: `login_new_device`.

Against the development stack (`python -m devstack up --user alice:wonderland`) it needs no arguments: the
URLs come from the stack's state file. Elsewhere pass --homeserver (and --rendezvous for Gen-1) or set
QRLINK_HOMESERVER / QRLINK_RENDEZVOUS.

    python examples/new_device.py                  # show a Gen-1 QR code; the existing device scans it
    python examples/new_device.py --gen 2          # show a Gen-2 QR code (the session lives on the homeserver)
    python examples/new_device.py --scan BASE64    # scan the QR code the existing device shows

The QR code is drawn in the terminal and its payload printed as one base64 line, which
examples/existing_device.py takes with --scan. Needs the e2ee extra: pip install 'qrlink[e2ee]'.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import httpx

from qrlink_client import (
    EstablishingSecureChannel,
    LoginFailed,
    Progress,
    QrCodeReady,
    ShowGen1,
    ShowGen2,
    WaitingForToken,
    login_new_device,
)
from qrlink_client.qr.render import render_terminal


def devstack_state() -> dict[str, Any]:
    """What `python -m devstack up` recorded (URLs of the running stack), or {} when none runs."""
    cache = Path(os.environ.get("QRLINK_CACHE") or Path.home() / ".cache" / "qrlink")
    try:
        state: dict[str, Any] = json.loads((cache / "devstack-state.json").read_text())
    except (OSError, ValueError):
        return {}
    return state


def parse_args() -> argparse.Namespace:
    state = devstack_state()
    parser = argparse.ArgumentParser(description="Sign this machine in as a new device with a QR code.")
    parser.add_argument(
        "--homeserver",
        default=os.environ.get("QRLINK_HOMESERVER") or state.get("homeserver_url"),
        help="client-server API base URL (default: $QRLINK_HOMESERVER, else the dev stack's)",
    )
    parser.add_argument(
        "--rendezvous",
        default=os.environ.get("QRLINK_RENDEZVOUS") or state.get("gen1_rendezvous_create_url"),
        help="Gen-1 (MSC4108) rendezvous create URL (default: $QRLINK_RENDEZVOUS, else the dev stack's)",
    )
    parser.add_argument("--gen", type=int, choices=(1, 2), default=1, help="QR code generation to show")
    parser.add_argument("--scan", metavar="BASE64", help="scan this QR payload instead of showing one")
    return parser.parse_args()


def on_progress(step: Progress) -> None:
    """Called synchronously with each step; it must return quickly."""
    left = f" ({step.time_left_s:.0f} s left)" if step.time_left_s is not None else ""
    if isinstance(step, QrCodeReady):
        print(render_terminal(step.data))
        print(f"QR code payload (base64): {base64.b64encode(step.data).decode()}{left}")
    elif isinstance(step, EstablishingSecureChannel):
        if step.check_code is not None:
            print(f"Secure channel established; check code: {step.check_code.digits}")
        else:
            print("Secure channel established; type the check code the other device shows")
    elif isinstance(step, WaitingForToken):
        print(f"Waiting for the other device to approve this one; user code: {step.user_code}{left}")
    else:
        print(f"{type(step).__name__}{left}")


async def ask_check_code() -> str:
    """Only called on the device that shows the QR code: the two digits the other device displays."""
    print("Enter the check code shown on the other device:")
    return await asyncio.to_thread(input)


async def main() -> int:
    args = parse_args()
    if args.scan is None and args.gen == 1 and not args.rendezvous:
        sys.exit("Gen-1 needs a rendezvous server: pass --rendezvous or start the dev stack")
    if args.scan is None and args.gen == 2 and not args.homeserver:
        sys.exit("Gen-2 needs the homeserver: pass --homeserver or start the dev stack")

    async def resolve_homeserver(server_name: str) -> str:
        # A Gen-1 QR code names the homeserver by server name; --homeserver says where it is (a real client
        # leaves resolve_homeserver out and the name is looked up at https://{name}/.well-known/matrix/client).
        return str(args.homeserver)

    show = ShowGen1(args.rendezvous) if args.gen == 1 else ShowGen2(args.homeserver)
    async with httpx.AsyncClient(timeout=30) as http:
        try:
            result = await login_new_device(
                http,
                pickle_key=secrets.token_bytes(32),  # keep it: it decrypts result.pickled_account
                on_progress=on_progress,
                show=None if args.scan else show,
                scanned=base64.b64decode(args.scan) if args.scan else None,
                check_code_prompt=ask_check_code,
                resolve_homeserver=resolve_homeserver if args.homeserver else None,
            )
        except LoginFailed as error:
            print(f"Login failed: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
    # A real app stores the tokens and the pickled Olm account here.
    print(f"Signed in as {result.user_id}, device {result.device_id}, at {result.homeserver_url}")
    print("Its keys are uploaded and cross-signed with the user's self-signing key.")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
