"""Messages that end a login sent out of turn, at the level of the driver's link: a real channel pair over real
transports to our rendezvous server under uvicorn (the full drivers race in ``tests/e2e/test_failures.py``).

The scenarios are built step by step instead of by timing: one side writes, and the other seals before it has
read that write, exactly as when a user types a wrong code just as the peer writes its next message.
"""

from __future__ import annotations

import asyncio
import json
from typing import Literal

import httpx
import pytest

from qrlink_client.channel import DecryptionError
from qrlink_client.handshake import ShowGen1, ShowGen2, ShowQr, scan_qr, show_qr
from qrlink_client.link import Link as _Link
from qrlink_client.transport import ConcurrentWrite, Gen2Transport, RetryPolicy, TransportOptions
from tests.support import transport as support
from tests.support.transport import OurServer

our_server = support.our_server

# Plain polling every 50 ms: the scenarios read the slot only when they say so.
FAST = TransportOptions(poll_interval=0.05, push=False, retry=RetryPolicy(attempts=2, initial_delay=0.01))
BOTH_GENERATIONS = pytest.mark.parametrize("generation", [1, 2], ids=["gen1", "gen2"])
FAILURE = json.dumps({"type": "m.login.failure", "reason": "user_cancelled"}).encode()
SUCCESS = json.dumps({"type": "m.login.success"}).encode()
PROTOCOLS = json.dumps({"type": "m.login.protocols", "protocols": ["device_authorization_grant"]}).encode()


async def established(http: httpx.AsyncClient, server: OurServer, generation: Literal[1, 2]) -> tuple[_Link, _Link]:
    """(G, S): both links after the channel handshake; S has read LoginOk, so it is S's turn to write."""
    show: ShowQr = ShowGen1(server.gen1_create_url) if generation == 1 else ShowGen2(server.base_url)
    g = await show_qr(http, show, options=FAST)
    s = await scan_qr(http, g.qr, options=FAST)
    await asyncio.gather(g.complete(), s.complete())
    return _Link(g.transport, g.channel), _Link(s.transport, s.channel)


# --- the transport additions --------------------------------------------------------------------------------


@BOTH_GENERATIONS
async def test_receive_pending_returns_an_unread_payload_once(
    http: httpx.AsyncClient, our_server: OurServer, generation: Literal[1, 2]
) -> None:
    g, s = await established(http, our_server, generation)
    await s.transport.send("payload")

    assert await g.transport.receive_pending() == "payload"
    assert await g.transport.receive_pending() is None


@BOTH_GENERATIONS
async def test_receive_pending_skips_the_echo_of_the_own_write(
    http: httpx.AsyncClient, our_server: OurServer, generation: Literal[1, 2]
) -> None:
    g, _ = await established(http, our_server, generation)

    assert await g.transport.receive_pending() is None  # the slot holds G's own LoginOk


async def test_replaced_sequence_token_is_the_token_the_last_write_was_made_against(
    http: httpx.AsyncClient, our_server: OurServer
) -> None:
    _, s = await established(http, our_server, 2)
    before = s.transport.sequence_token

    await s.transport.send("payload")

    assert isinstance(s.transport, Gen2Transport)
    assert s.transport.replaced_sequence_token == before != s.transport.own_sequence_token


# --- the link -----------------------------------------------------------------------------------------------


@BOTH_GENERATIONS
async def test_an_ending_message_reads_the_peers_unread_write_first_and_reaches_the_peer(
    http: httpx.AsyncClient, our_server: OurServer, generation: Literal[1, 2]
) -> None:
    g, s = await established(http, our_server, generation)
    await s.send(PROTOCOLS)  # S's turn; G has not read it

    await g.send(FAILURE, ends_login=True)

    assert await g.next_message() == PROTOCOLS  # read and opened before the failure was sealed
    # Sealed against S's write: S opens it with its own last write's token, as MSC4388 says.
    assert s.channel.decrypt(await s.transport.receive(), sequence_token=s.transport.own_sequence_token) == FAILURE


@BOTH_GENERATIONS
async def test_an_ending_message_that_meets_a_concurrent_write_is_put_again_and_opened_by_the_peer(
    http: httpx.AsyncClient, our_server: OurServer, generation: Literal[1, 2], recorder: support.RecordingTransport
) -> None:
    g, s = await established(http, our_server, generation)
    real_receive_pending = g.transport.receive_pending
    crossed: list[bool] = []

    async def s_writes_just_after_g_read() -> str | None:
        # G found nothing new, so it seals against LoginOk's revision; S's write then lands before G's PUT.
        pending = await real_receive_pending()
        if not crossed:
            crossed.append(True)
            await s.send(PROTOCOLS)
        return pending

    g.transport.receive_pending = s_writes_just_after_g_read  # type: ignore[method-assign]

    await g.send(FAILURE, ends_login=True)

    conflicts = [e for e in recorder.requests("PUT") if e.status in (409, 412)]
    assert len(conflicts) == 1
    assert await s.next_message() == FAILURE


@BOTH_GENERATIONS
async def test_a_message_of_the_own_turn_that_loses_to_a_failure_leaves_the_failure_to_read(
    http: httpx.AsyncClient, our_server: OurServer, generation: Literal[1, 2]
) -> None:
    g, s = await established(http, our_server, generation)
    await g.send(FAILURE, ends_login=True)  # out of turn: S has not read it

    await s.send(PROTOCOLS)

    assert await s.next_message() == FAILURE


@BOTH_GENERATIONS
async def test_a_message_of_the_own_turn_that_loses_to_anything_but_a_failure_raises_concurrent_write(
    http: httpx.AsyncClient, our_server: OurServer, generation: Literal[1, 2]
) -> None:
    g, s = await established(http, our_server, generation)
    await g.send(SUCCESS)  # out of turn, and not a message that ends the login

    with pytest.raises(ConcurrentWrite):
        await s.send(PROTOCOLS)


async def stale_sealed_put(g: _Link, s: _Link, plaintext: bytes) -> None:
    """S writes its turn; G seals *plaintext* against the revision before it, then PUTs it after reading S's
    write (what a crossed ending message looks like on the wire)."""
    await s.send(PROTOCOLS)
    sealed = g.channel.encrypt(plaintext, sequence_token=g.transport.sequence_token)
    assert await g.transport.receive_pending() is not None
    await g.transport.send(sealed)


async def test_gen2_opens_an_ending_message_bound_to_the_token_its_own_write_replaced(
    http: httpx.AsyncClient, our_server: OurServer
) -> None:
    g, s = await established(http, our_server, 2)

    await stale_sealed_put(g, s, FAILURE)

    assert await s.next_message() == FAILURE


async def test_gen2_refuses_any_other_message_bound_to_the_token_its_own_write_replaced(
    http: httpx.AsyncClient, our_server: OurServer
) -> None:
    g, s = await established(http, our_server, 2)

    await stale_sealed_put(g, s, SUCCESS)

    with pytest.raises(DecryptionError):
        await s.next_message()
