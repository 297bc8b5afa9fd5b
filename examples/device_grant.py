"""The new device's OAuth 2.0 device authorization grant on its own: `qrlink_client.oauth`.

In a QR login the flow machine asks for this (`StartDeviceAuthorization`, `PollToken`) and the other device
opens the verification URL; here the user opens it. Against the development stack it needs no arguments (the
homeserver URL comes from the stack's state file); elsewhere pass --homeserver or set QRLINK_HOMESERVER.

    python examples/device_grant.py                 # prints the URL to approve at, then who it signed in as
    python examples/device_grant.py --unstable      # the org.matrix.msc2967 scope, as Element X asks
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import httpx

from qrlink_client.oauth import DeviceGrantClient, OAuthError, ScopePrefix, whoami


def devstack_state() -> dict[str, Any]:
    """What `python -m devstack up` recorded (URLs of the running stack), or {} when none runs."""
    cache = Path(os.environ.get("QRLINK_CACHE") or Path.home() / ".cache" / "qrlink")
    try:
        state: dict[str, Any] = json.loads((cache / "devstack-state.json").read_text())
    except (OSError, ValueError):
        return {}
    return state


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Sign a device in with the OAuth 2.0 device authorization grant.")
    parser.add_argument(
        "--homeserver",
        default=os.environ.get("QRLINK_HOMESERVER") or devstack_state().get("homeserver_url"),
        help="homeserver base URL (default: $QRLINK_HOMESERVER, else the dev stack's)",
    )
    parser.add_argument("--device-id", default=f"GRANT{secrets.token_hex(4).upper()}", help="the device to create")
    parser.add_argument("--unstable", action="store_true", help="ask with the unstable MSC2967 scope")
    return parser.parse_args()


async def main() -> int:
    args = parse_args()
    if not args.homeserver:
        sys.exit("pass --homeserver or start the dev stack")
    prefix = ScopePrefix.UNSTABLE if args.unstable else ScopePrefix.STABLE
    async with httpx.AsyncClient(timeout=30) as http:
        try:
            # Discovery (auth_metadata), the device-grant check, and RFC 7591 registration.
            client = await DeviceGrantClient.create(http, args.homeserver)
            grant = await client.request_device_authorization(args.device_id, prefix=prefix)
            uri = grant.verification_uri_complete or grant.verification_uri
            print(f"Open this URL to approve the new device: {uri}")
            print(f"User code: {grant.user_code}", flush=True)
            # Honours the interval and slow_down (+5 s); access_denied and expired_token raise.
            tokens = await client.poll_token(grant)
            me = await whoami(http, args.homeserver, tokens.access_token)
        except OAuthError as error:
            print(f"Failed: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
    print(f"Signed in as {me.user_id}, device {me.device_id}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
