"""Gen1Transport (MSC4108 2024, ETag) against our real rendezvous server under uvicorn: what only Gen-1 does.

What both generations do alike is tested once per generation in ``test_transport_generations.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from qrlink_client.channel import EciesChannel
from qrlink_client.transport import (
    Gen1Transport,
    ReceiveTimeout,
    RetryPolicy,
    TransportClosed,
    TransportOptions,
)
from tests.support import transport as support
from tests.support.server import serve_cli
from tests.support.transport import OurServer, RecordingTransport, is_put

# Fixtures shared with the other transport tests.
our_server = support.our_server

FAST = TransportOptions(poll_interval=0.05, retry=RetryPolicy(attempts=4, initial_delay=0.01, max_delay=0.05))


async def pair(http: httpx.AsyncClient, server: OurServer) -> tuple[Gen1Transport, Gen1Transport]:
    """G creates the session, S joins it by URL (as from the QR code)."""
    generator = await Gen1Transport.create(http, server.gen1_create_url, options=FAST)
    scanner = await Gen1Transport.join(http, generator.url, options=FAST)
    return generator, scanner


async def test_create_returns_a_session_url_on_the_server(http: httpx.AsyncClient, our_server: OurServer) -> None:
    generator = await Gen1Transport.create(http, our_server.gen1_create_url, options=FAST)

    assert generator.url.startswith(our_server.gen1_create_url + "/")
    assert (await http.get(generator.url)).status_code == 200


async def test_create_posts_an_empty_text_plain_body(
    http: httpx.AsyncClient, recorder: RecordingTransport, our_server: OurServer
) -> None:
    await Gen1Transport.create(http, our_server.gen1_create_url, options=FAST)

    (post,) = recorder.requests("POST")
    assert post.headers["content-type"] == "text/plain"
    assert post.body == b""


async def test_expires_in_comes_from_the_servers_expires_minus_date(
    http: httpx.AsyncClient, our_server: OurServer
) -> None:
    generator = await Gen1Transport.create(http, our_server.gen1_create_url, options=FAST)

    # Our server's default TTL is 180 s; Expires and Date have one-second resolution.
    assert generator.expires_in is not None
    assert 178 <= generator.expires_in <= 181


async def test_joiner_first_send_learns_the_etag_with_an_unconditional_get(
    http: httpx.AsyncClient, recorder: RecordingTransport, our_server: OurServer
) -> None:
    _generator, scanner = await pair(http, our_server)
    recorder.exchanges.clear()

    await scanner.send("initiate")

    get, put = recorder.exchanges
    assert (get.method, get.status) == ("GET", 200)
    assert "if-none-match" not in get.headers
    assert (put.method, put.status) == ("PUT", 202)
    assert put.headers["if-match"] == get.response_headers["etag"]
    assert put.headers["content-type"] == "text/plain"


async def test_send_uses_the_etag_of_the_latest_revision_it_saw(
    http: httpx.AsyncClient, recorder: RecordingTransport, our_server: OurServer
) -> None:
    generator, scanner = await pair(http, our_server)
    await scanner.send("initiate")
    assert await generator.receive(timeout=5) == "initiate"
    await generator.send("ok")
    assert await scanner.receive(timeout=5) == "ok"
    # The scanner's receive ended on the generator's write, whose ETag the generator's PUT returned.
    scanner_etag_after_first_receive = recorder.requests("PUT")[-1].response_headers["etag"]
    recorder.exchanges.clear()

    await scanner.send("second")

    (put,) = recorder.requests("PUT")
    assert put.status == 202
    assert put.headers["if-match"] == scanner_etag_after_first_receive


async def test_poll_sends_if_none_match_and_gets_304_while_nothing_changed(
    http: httpx.AsyncClient, recorder: RecordingTransport, our_server: OurServer
) -> None:
    generator, _ = await pair(http, our_server)
    recorder.exchanges.clear()

    with pytest.raises(ReceiveTimeout):
        await generator.receive(timeout=0.3)

    polls = recorder.requests("GET")
    assert len(polls) >= 2
    assert all("if-none-match" in p.headers and p.status == 304 for p in polls)


async def test_polls_are_spaced_by_the_poll_interval(
    http: httpx.AsyncClient, recorder: RecordingTransport, our_server: OurServer
) -> None:
    generator = await Gen1Transport.create(
        http, our_server.gen1_create_url, options=TransportOptions(poll_interval=0.25)
    )
    recorder.exchanges.clear()

    with pytest.raises(ReceiveTimeout):
        await generator.receive(timeout=0.9)

    assert 3 <= len(recorder.requests("GET")) <= 5


async def test_ecies_handshake_and_messages_over_our_server(http: httpx.AsyncClient, our_server: OurServer) -> None:
    generator, scanner = await pair(http, our_server)
    g_channel, s_channel = EciesChannel.generator(), EciesChannel.scanner()

    await scanner.send(s_channel.initiate(g_channel.public_key))
    g_channel.accept_initiate(await generator.receive(timeout=5))
    await generator.send(g_channel.ok_message())
    s_channel.accept_ok(await scanner.receive(timeout=5))
    await scanner.send(s_channel.encrypt(b'{"type":"m.login.protocols"}'))
    received = g_channel.decrypt(await generator.receive(timeout=5))

    assert s_channel.check_code == g_channel.check_code
    assert received == b'{"type":"m.login.protocols"}'


async def test_lost_put_response_is_retried_and_recognised_as_applied(
    http: httpx.AsyncClient, recorder: RecordingTransport, our_server: OurServer
) -> None:
    generator, scanner = await pair(http, our_server)
    recorder.drop_response(is_put)

    await scanner.send("lost response")

    first, retry = recorder.requests("PUT")
    assert first.fault == "dropped" and first.status == 202  # the server applied it
    assert retry.headers["if-match"] == first.headers["if-match"]  # the same request again
    assert retry.status == 412
    assert await generator.receive(timeout=5) == "lost response"


async def test_deleted_transport_refuses_further_use(http: httpx.AsyncClient, our_server: OurServer) -> None:
    generator, _ = await pair(http, our_server)
    await generator.delete()

    with pytest.raises(TransportClosed):
        await generator.receive(timeout=1)
    assert (await http.get(generator.url)).status_code == 404


async def test_polls_after_a_put_use_the_etag_that_put_returned(
    http: httpx.AsyncClient, recorder: RecordingTransport, our_server: OurServer
) -> None:
    _, scanner = await pair(http, our_server)
    await scanner.send("initiate")
    (put,) = recorder.requests("PUT")
    recorder.exchanges.clear()

    with pytest.raises(ReceiveTimeout):
        await scanner.receive(timeout=0.2)

    assert {p.headers["if-none-match"] for p in recorder.requests("GET")} == {put.response_headers["etag"]}


@pytest.fixture(scope="module")
def holding_server() -> Iterator[OurServer]:
    """Our server with held polls on (the default) and push off, as a server that holds plain polls."""
    env = {
        "RENDEZVOUS_SESSION_RATE_PER_SECOND": "0",
        "RENDEZVOUS_CREATE_RATE_PER_SECOND": "0",
        "RENDEZVOUS_PUSH_ENABLED": "false",
        "RENDEZVOUS_HOLD_MS": "10000",
    }
    with serve_cli(env) as base_url:
        yield OurServer(base_url)


async def test_receive_pending_is_answered_at_once_by_a_server_that_holds_polls(
    http: httpx.AsyncClient, holding_server: OurServer
) -> None:
    # An out-of-turn write first reads what it has not read; a held answer would delay it by the whole hold.
    generator, scanner = await pair(http, holding_server)
    await scanner.send("initiate")
    assert await generator.receive(timeout=5) == "initiate"

    started = time.monotonic()
    assert await generator.receive_pending() is None
    assert time.monotonic() - started < 2
