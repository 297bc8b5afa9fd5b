"""Sign a new device in from this EXISTING (signed-in) device: `grant_login`.

It needs the access token of a signed-in device and the user's recovery key, which unlocks the cross-signing
keys in secret storage (the secrets the new device receives). Against the development stack:

    python -m devstack up --user alice:wonderland
    python -m devstack login-device alice PHONE            # prints an access token for the device PHONE
    export QRLINK_ACCESS_TOKEN=...
    python examples/existing_device.py --bootstrap         # first time only: sets up cross-signing and
                                                           # prints the recovery key; export it as below
    export QRLINK_RECOVERY_KEY=...
    python examples/existing_device.py --scan BASE64       # scan the new device's QR code ...
    python examples/existing_device.py                     # ... or show one for the new device to scan

The homeserver URL comes from --homeserver, $QRLINK_HOMESERVER or the dev stack's state file. The user
approves the new device on the verification page this script prints (and opens, unless --no-browser).
Needs the e2ee extra: pip install 'qrlink[e2ee]'.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import webbrowser
from pathlib import Path
from typing import Any

import httpx

from qrlink_client import (
    E2eeError,
    E2eeHomeserver,
    EstablishingSecureChannel,
    LoginFailed,
    OlmDevice,
    Progress,
    QrCodeReady,
    SecretStorageSecrets,
    ShowGen1,
    ShowGen2,
    WaitingForAuth,
    bootstrap_user,
    grant_login,
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
    parser = argparse.ArgumentParser(description="Approve a new device and send it the user's secrets.")
    parser.add_argument(
        "--homeserver",
        default=os.environ.get("QRLINK_HOMESERVER") or state.get("homeserver_url"),
        help="client-server API base URL (default: $QRLINK_HOMESERVER, else the dev stack's)",
    )
    parser.add_argument(
        "--rendezvous",
        default=os.environ.get("QRLINK_RENDEZVOUS") or state.get("gen1_rendezvous_create_url"),
        help="Gen-1 rendezvous create URL for showing a QR code (default: $QRLINK_RENDEZVOUS, else the dev stack's)",
    )
    parser.add_argument("--access-token", default=os.environ.get("QRLINK_ACCESS_TOKEN"), help="$QRLINK_ACCESS_TOKEN")
    parser.add_argument("--recovery-key", default=os.environ.get("QRLINK_RECOVERY_KEY"), help="$QRLINK_RECOVERY_KEY")
    parser.add_argument("--gen", type=int, choices=(1, 2), default=1, help="QR code generation to show")
    parser.add_argument("--scan", metavar="BASE64", help="scan the new device's QR payload instead of showing one")
    parser.add_argument("--no-browser", action="store_true", help="only print the verification URL")
    parser.add_argument(
        "--bootstrap", action="store_true", help="first give the user cross-signing and secret storage (new users)"
    )
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
    elif isinstance(step, WaitingForAuth):
        print(f"Waiting for the new device to be approved{left}")
    else:
        print(f"{type(step).__name__}{left}")


async def ask_check_code() -> str:
    """Only called on the device that shows the QR code: the two digits the other device displays."""
    print("Enter the check code shown on the other device:")
    return await asyncio.to_thread(input)


async def main() -> int:
    args = parse_args()
    if not (args.homeserver and args.access_token):
        sys.exit("pass --homeserver and --access-token (or set QRLINK_HOMESERVER and QRLINK_ACCESS_TOKEN)")

    async def open_verification_page(uri: str) -> bool:
        print(f"Open this URL to approve the new device: {uri}")
        if not args.no_browser:
            await asyncio.to_thread(webbrowser.open, uri)
        return True  # False would tell the new device that the page cannot be opened here

    async with httpx.AsyncClient(timeout=30) as http:
        homeserver = E2eeHomeserver(args.homeserver, args.access_token, client=http)
        user_id = await homeserver.user_id()
        try:
            if args.bootstrap:
                whoami = await homeserver.whoami()
                result = await bootstrap_user(homeserver, OlmDevice.generate(whoami["device_id"]))
                args.recovery_key = result.recovery_key()
                print(f"Cross-signing set up for {user_id}; recovery key: {args.recovery_key}")
            if not args.recovery_key:
                sys.exit("pass --recovery-key (or set QRLINK_RECOVERY_KEY), or --bootstrap for a new user")
            device_id = await grant_login(
                http,
                homeserver_url=args.homeserver,
                access_token=args.access_token,
                secrets=SecretStorageSecrets(args.recovery_key, homeserver),
                open_verification_uri=open_verification_page,
                on_progress=on_progress,
                scanned=base64.b64decode(args.scan) if args.scan else None,
                show=None if args.scan else (ShowGen1(args.rendezvous) if args.gen == 1 else ShowGen2(args.homeserver)),
                server_name=user_id.partition(":")[2],  # named in a Gen-1 QR code: where the new device signs in
                check_code_prompt=ask_check_code,
            )
        except (LoginFailed, E2eeError) as error:
            print(f"Failed: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
    print(f"Signed in the new device {device_id} and sent it the secrets")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
