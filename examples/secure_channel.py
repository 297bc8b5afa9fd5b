"""The layer below the login: a secure channel over a rendezvous session, both devices in one process.

One side shows a QR code (`show_qr`), the other scans it (`scan_qr`); after the handshake both have the same
check code and exchange encrypted messages through the rendezvous server. No account or e2ee extra is needed.

    python examples/secure_channel.py                              # Gen-1 at the dev stack's rendezvous server
    python examples/secure_channel.py --rendezvous https://rendezvous.example.org/_matrix/client/unstable/org.matrix.msc4108/rendezvous
    python examples/secure_channel.py --gen 2 --homeserver https://matrix.example.org/ [--access-token TOKEN]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from qrlink_client import QrLinkError, ShowGen1, ShowGen2, decode_qr, scan_qr, show_qr


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
    parser = argparse.ArgumentParser(description="Set up a secure channel over a rendezvous session.")
    parser.add_argument(
        "--rendezvous",
        default=os.environ.get("QRLINK_RENDEZVOUS") or state.get("gen1_rendezvous_create_url"),
        help="Gen-1 (MSC4108) rendezvous create URL (default: $QRLINK_RENDEZVOUS, else the dev stack's)",
    )
    parser.add_argument(
        "--homeserver",
        default=os.environ.get("QRLINK_HOMESERVER") or state.get("homeserver_url"),
        help="Gen-2 (MSC4388) homeserver base URL (default: $QRLINK_HOMESERVER, else the dev stack's)",
    )
    parser.add_argument("--access-token", default=os.environ.get("QRLINK_ACCESS_TOKEN"), help="for a Gen-2 create")
    parser.add_argument("--gen", type=int, choices=(1, 2), default=1)
    return parser.parse_args()


async def main() -> int:
    args = parse_args()
    where = args.rendezvous if args.gen == 1 else args.homeserver
    if not where:
        sys.exit("pass --rendezvous (Gen-1) or --homeserver (Gen-2), or start the dev stack")
    show = ShowGen1(args.rendezvous) if args.gen == 1 else ShowGen2(args.homeserver)

    async with httpx.AsyncClient(timeout=30) as http:
        try:
            # Device A creates the session; the QR code exists at once (render qr.to_bytes() for the user).
            a = await show_qr(http, show, access_token=args.access_token)
            payload = a.qr.to_bytes()
            print(f"A shows a Gen-{a.generation} QR code of {len(payload)} bytes")

            # Device B scans it: decode_qr turns the bytes back into the session address and A's public key.
            b = await scan_qr(http, decode_qr(payload))
            await asyncio.gather(a.complete(), b.complete())  # B sends LoginInitiate, A answers LoginOk
            a_code, b_code = a.channel.check_code.digits, b.channel.check_code.digits
            print(f"Secure channel established; check codes A={a_code} B={b_code} (the users compare them)")

            # Messages take turns: B writes, A reads, A answers, B reads.
            # Handshake.send / receive seal and open with the right sequence tokens (Gen-2 binds them).
            await b.send(b"hello from B")
            print(f"A received: {(await a.receive(timeout=30)).decode()}")
            await a.send(b"hello back from A")
            print(f"B received: {(await b.receive(timeout=30)).decode()}")

            await b.aclose()
            await a.aclose(delete=True)  # A created the session, so A deletes it
        except QrLinkError as error:
            print(f"Failed: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
    print("Done")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
