"""What Gen1Transport and Gen2Transport do alike, against our real rendezvous server under uvicorn: each test
runs once per generation. What only one generation does is in ``test_transport_gen1.py`` and
``test_transport_gen2.py``."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from qrlink_client.transport import (
    ConcurrentWrite,
    ReceiveTimeout,
    RendezvousUnavailable,
    RetryPolicy,
    SessionNotFound,
    TransportOptions,
)
from tests.support import transport as support
from tests.support.deadlines import eventually
from tests.support.transport import (
    Generation,
    OurServer,
    RecordingTransport,
    Transport,
    both_generations,
    is_put,
)

# Fixtures shared with the other transport tests.
our_server = support.our_server

FAST = TransportOptions(poll_interval=0.05, retry=RetryPolicy(attempts=4, initial_delay=0.01, max_delay=0.05))

pytestmark = both_generations


async def pair(gen: Generation, http: httpx.AsyncClient, server: OurServer) -> tuple[Transport, Transport]:
    """G creates the session, S joins it (as from the QR code)."""
    return await gen.pair(http, server.base_url, FAST)


async def test_payloads_travel_both_ways(gen: Generation, http: httpx.AsyncClient, our_server: OurServer) -> None:
    generator, scanner = await pair(gen, http, our_server)

    await scanner.send("from scanner")
    assert await generator.receive(timeout=5) == "from scanner"
    await generator.send("from generator")
    assert await scanner.receive(timeout=5) == "from generator"


async def test_receiver_ignores_the_echo_of_its_own_write(
    gen: Generation, http: httpx.AsyncClient, our_server: OurServer
) -> None:
    _, scanner = await pair(gen, http, our_server)
    await scanner.send("mine")

    with pytest.raises(ReceiveTimeout):
        await scanner.receive(timeout=0.3)


async def test_each_payload_is_received_once(
    gen: Generation, http: httpx.AsyncClient, recorder: RecordingTransport, our_server: OurServer
) -> None:
    generator, scanner = await pair(gen, http, our_server)
    await scanner.send("once")
    assert await generator.receive(timeout=5) == "once"
    recorder.exchanges.clear()

    with pytest.raises(ReceiveTimeout):
        await generator.receive(timeout=0.3)
    # It kept polling (a Gen-2 GET returns "once" every time) and did not deliver it again.
    assert len(recorder.requests("GET")) >= 2


async def test_concurrent_write_is_a_named_error(
    gen: Generation, http: httpx.AsyncClient, our_server: OurServer
) -> None:
    generator, scanner = await pair(gen, http, our_server)
    await scanner.send("initiate")  # the generator has not read it yet

    with pytest.raises(ConcurrentWrite) as caught:
        await generator.send("stale")

    assert caught.value.status == gen.concurrent_write_status


async def test_concurrent_write_leaves_the_peers_payload_to_be_received(
    gen: Generation, http: httpx.AsyncClient, our_server: OurServer
) -> None:
    generator, scanner = await pair(gen, http, our_server)
    await scanner.send("initiate")
    with pytest.raises(ConcurrentWrite):
        await generator.send("stale")

    assert await generator.receive(timeout=5) == "initiate"


async def test_peer_delete_mid_flow_is_session_not_found_on_receive(
    gen: Generation, http: httpx.AsyncClient, our_server: OurServer
) -> None:
    generator, scanner = await pair(gen, http, our_server)
    await scanner.send("initiate")
    assert await generator.receive(timeout=5) == "initiate"

    await generator.delete()

    with pytest.raises(SessionNotFound) as caught:
        await scanner.receive(timeout=5)
    assert (caught.value.status, caught.value.errcode) == (404, "M_NOT_FOUND")


async def test_peer_delete_mid_flow_is_session_not_found_on_send(
    gen: Generation, http: httpx.AsyncClient, our_server: OurServer
) -> None:
    generator, scanner = await pair(gen, http, our_server)
    await scanner.send("initiate")
    await generator.delete()

    with pytest.raises(SessionNotFound):
        await scanner.send("too late")


async def test_after_a_lost_put_response_the_next_exchange_continues(
    gen: Generation, http: httpx.AsyncClient, recorder: RecordingTransport, our_server: OurServer
) -> None:
    generator, scanner = await pair(gen, http, our_server)
    recorder.drop_response(is_put)
    await scanner.send("lost response")
    assert await generator.receive(timeout=5) == "lost response"

    await generator.send("reply")
    assert await scanner.receive(timeout=5) == "reply"
    with pytest.raises(ReceiveTimeout):
        await generator.receive(timeout=0.3)


async def test_lost_put_response_payload_is_received_once(
    gen: Generation, http: httpx.AsyncClient, recorder: RecordingTransport, our_server: OurServer
) -> None:
    generator, scanner = await pair(gen, http, our_server)
    recorder.drop_response(is_put)
    await scanner.send("lost response")

    assert await generator.receive(timeout=5) == "lost response"
    with pytest.raises(ReceiveTimeout):
        await generator.receive(timeout=0.3)
    with pytest.raises(ReceiveTimeout):
        await scanner.receive(timeout=0.3)


async def test_network_errors_are_retried(
    gen: Generation, http: httpx.AsyncClient, recorder: RecordingTransport, our_server: OurServer
) -> None:
    generator, scanner = await pair(gen, http, our_server)
    recorder.refuse(is_put, times=2)

    await scanner.send("eventually")

    assert [e.fault for e in recorder.requests("PUT")] == ["refused", "refused", None]
    assert await generator.receive(timeout=5) == "eventually"


async def test_retries_are_bounded(
    gen: Generation, http: httpx.AsyncClient, recorder: RecordingTransport, our_server: OurServer
) -> None:
    _, scanner = await pair(gen, http, our_server)
    recorder.refuse(is_put, times=100)

    with pytest.raises(RendezvousUnavailable):
        await scanner.send("never")

    assert len(recorder.requests("PUT")) == FAST.retry.attempts


async def test_cancelled_receive_leaves_no_request_behind(
    gen: Generation, http: httpx.AsyncClient, recorder: RecordingTransport, our_server: OurServer
) -> None:
    generator, _ = await pair(gen, http, our_server)
    task = asyncio.create_task(generator.receive())
    await eventually(lambda: len(recorder.requests("GET")) >= 2)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    sent = len(recorder.exchanges)
    await asyncio.sleep(FAST.poll_interval * 5)

    assert recorder.in_flight == 0
    assert len(recorder.exchanges) == sent


async def test_transport_stays_usable_after_a_cancelled_receive(
    gen: Generation, http: httpx.AsyncClient, our_server: OurServer
) -> None:
    generator, scanner = await pair(gen, http, our_server)
    task = asyncio.create_task(generator.receive())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    await scanner.send("after cancel")
    assert await generator.receive(timeout=5) == "after cancel"


async def test_repr_hides_what_names_the_session(
    gen: Generation, http: httpx.AsyncClient, our_server: OurServer
) -> None:
    generator, _ = await pair(gen, http, our_server)

    for secret in gen.session_secrets(generator):
        assert secret not in repr(generator)
