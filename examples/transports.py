"""The rendezvous transports on their own: `qrlink_client.transport`, both devices in one process.

Gen-1 moves opaque strings through an MSC4108 session; Gen-2 creates an MSC4388 session on the homeserver
(if it lets this requester create one) and binds every ciphertext to the sequence token of the revision it is
written over, sealing right before `send()` and opening with the token read before `receive()`
(docs/client-transports.md, "Sequence tokens and the Gen-2 AAD"). Against the development stack it needs no
arguments; elsewhere pass --rendezvous / --homeserver or set QRLINK_RENDEZVOUS / QRLINK_HOMESERVER.

    python examples/transports.py
    python examples/transports.py --homeserver https://matrix.example.org/ [--access-token TOKEN]
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

from qrlink_client import QrLinkError
from qrlink_client.channel import HpkeChannel
from qrlink_client.discovery import discover_gen2
from qrlink_client.transport import Gen1Transport, Gen2Transport


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
    parser = argparse.ArgumentParser(description="Move strings between two devices through a rendezvous server.")
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
    return parser.parse_args()


async def gen1(http: httpx.AsyncClient, create_url: str) -> None:
    g = await Gen1Transport.create(http, create_url)  # the device showing the QR code
    qr_url = g.url  # goes into the QR code
    s = await Gen1Transport.join(http, qr_url)  # the device scanning it
    await s.send("initiate")  # first GETs without If-None-Match to learn the ETag
    print(f"Gen-1: G received {await g.receive(timeout=30)!r}")  # waits for the scanner's first message
    await g.send("ok")
    print(f"Gen-1: S received {await s.receive(timeout=30)!r}")
    await s.aclose()
    await g.delete()  # the creator ends the session
    await g.aclose()


async def gen2(http: httpx.AsyncClient, base_url: str, access_token: str | None) -> None:
    if not (await discover_gen2(http, base_url, access_token)).create_available:
        print(f"Gen-2: {base_url} lets this requester create no session")
        return
    async with await Gen2Transport.create(http, base_url, access_token=access_token) as g:
        # The QR code carries base_url and rendezvous_id; join() GETs once to learn the current token.
        async with await Gen2Transport.join(http, g.base_url, g.rendezvous_id) as s:
            g_channel = HpkeChannel.generator(g.base_url, g.rendezvous_id)
            s_channel = HpkeChannel.scanner(g.base_url, g.rendezvous_id)
            # The handshake: each message is sealed with the sender's current token just before send() ...
            await s.send(s_channel.initiate(g_channel.public_key, sequence_token=s.sequence_token))
            token = g.sequence_token  # ... and opened with the token read before receive()
            g_channel.accept_initiate(await g.receive(timeout=30), sequence_token=token)
            await g.send(g_channel.ok_message(sequence_token=g.sequence_token))
            token = s.sequence_token
            s_channel.accept_ok(await s.receive(timeout=30), sequence_token=token)

            # Messages, the same way.
            await s.send(s_channel.encrypt(b"hello from S", sequence_token=s.sequence_token))
            token = g.sequence_token  # before receiving: the revision the peer writes over
            plaintext = g_channel.decrypt(await g.receive(timeout=30), sequence_token=token)
            codes = g_channel.check_code.digits, s_channel.check_code.digits
            print(f"Gen-2: G received {plaintext!r}; check codes {codes[0]} and {codes[1]} (the users compare them)")
        await g.delete()


async def main() -> int:
    args = parse_args()
    if not (args.rendezvous or args.homeserver):
        sys.exit("pass --rendezvous (Gen-1) and/or --homeserver (Gen-2), or start the dev stack")
    async with httpx.AsyncClient(timeout=30) as http:  # borrowed by the transports: they never close it
        try:
            if args.rendezvous:
                await gen1(http, args.rendezvous)
            if args.homeserver:
                await gen2(http, args.homeserver, args.access_token)
        except QrLinkError as error:
            print(f"Failed: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
    print("Done")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
