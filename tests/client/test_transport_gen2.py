"""Gen2Transport (MSC4388, sequence_token, txnId PUT) against our real rendezvous server under uvicorn: what only
Gen-2 does.

What both generations do alike is tested once per generation in ``test_transport_generations.py``.
"""

from __future__ import annotations

import json

import httpx
import pytest

from qrlink_client.channel import HpkeChannel
from qrlink_client.transport import (
    Gen2Prefix,
    Gen2Transport,
    PayloadTooLarge,
    ReceiveTimeout,
    RendezvousUnavailable,
    RetryPolicy,
    SessionNotFound,
    TransportOptions,
    rendezvous_endpoint,
)
from tests.support import transport as support
from tests.support.transport import OurServer, RecordingTransport, is_put

# Fixtures shared with the other transport tests.
our_server = support.our_server

FAST = TransportOptions(poll_interval=0.05, retry=RetryPolicy(attempts=4, initial_delay=0.01, max_delay=0.05))


async def pair(http: httpx.AsyncClient, server: OurServer) -> tuple[Gen2Transport, Gen2Transport]:
    """G creates the session, S joins it by base URL + id (as from the QR code)."""
    generator = await Gen2Transport.create(http, server.base_url, options=FAST)
    scanner = await Gen2Transport.join(http, server.base_url, generator.rendezvous_id, options=FAST)
    return generator, scanner


async def server_state(http: httpx.AsyncClient, transport: Gen2Transport) -> dict[str, object]:
    response = await http.get(transport.session_url)
    body: dict[str, object] = response.json()
    return body


def put_body(exchange: object) -> dict[str, str]:
    body: dict[str, str] = json.loads(exchange.body)  # type: ignore[attr-defined]
    return body


async def test_discovery_reports_create_available(http: httpx.AsyncClient, our_server: OurServer) -> None:
    discovery = await Gen2Transport.discover(http, our_server.base_url)

    assert discovery.create_available is True


async def test_create_learns_id_token_and_relative_expiry(http: httpx.AsyncClient, our_server: OurServer) -> None:
    generator = await Gen2Transport.create(http, our_server.base_url, options=FAST)

    state = await server_state(http, generator)
    assert generator.sequence_token == state["sequence_token"]
    assert generator.own_sequence_token == state["sequence_token"]
    assert generator.expires_in is not None and 175 <= generator.expires_in <= 180


async def test_base_url_with_trailing_slash_reaches_the_same_api(
    http: httpx.AsyncClient, our_server: OurServer
) -> None:
    generator = await Gen2Transport.create(http, our_server.base_url + "/", options=FAST)

    assert generator.base_url == our_server.base_url + "/"  # kept verbatim for the AAD
    assert generator.session_url.startswith(rendezvous_endpoint(our_server.base_url) + "/")


async def test_join_learns_the_current_token(http: httpx.AsyncClient, our_server: OurServer) -> None:
    generator, scanner = await pair(http, our_server)

    assert scanner.sequence_token == generator.sequence_token
    assert scanner.own_sequence_token is None


async def test_send_puts_under_a_fresh_txn_id_each_time(
    http: httpx.AsyncClient, recorder: RecordingTransport, our_server: OurServer
) -> None:
    generator, scanner = await pair(http, our_server)
    await scanner.send("one")
    assert await generator.receive(timeout=5) == "one"
    await generator.send("two")

    first, second = recorder.requests("PUT")
    session_path = httpx.URL(scanner.session_url).path
    assert first.url.path.rsplit("/", 1)[0] == second.url.path.rsplit("/", 1)[0] == session_path
    assert first.url.path != second.url.path
    assert len(first.url.path.rsplit("/", 1)[1]) >= 22  # ≥ 128 random bits
    assert not scanner.uses_legacy_put


async def test_sender_puts_with_the_token_it_last_saw(
    http: httpx.AsyncClient, recorder: RecordingTransport, our_server: OurServer
) -> None:
    _generator, scanner = await pair(http, our_server)
    token_seen_by_scanner = scanner.sequence_token

    await scanner.send("initiate")

    (put,) = recorder.requests("PUT")
    assert put_body(put) == {"sequence_token": token_seen_by_scanner, "data": "initiate"}


async def test_tokens_follow_the_aad_rule_under_ping_pong(http: httpx.AsyncClient, our_server: OurServer) -> None:
    generator, scanner = await pair(http, our_server)
    t1 = generator.sequence_token

    await scanner.send("initiate")  # sealed by S with T1
    t2 = scanner.own_sequence_token
    await generator.receive(timeout=5)
    opened_by_g_with = generator.own_sequence_token  # G opens with the token of its own POST
    sealed_by_g_with = generator.sequence_token  # G seals with the token it will PUT with
    await generator.send("ok")
    await scanner.receive(timeout=5)
    opened_by_s_with = scanner.own_sequence_token

    assert opened_by_g_with == t1
    assert sealed_by_g_with == t2
    assert opened_by_s_with == t2
    assert scanner.sequence_token == generator.own_sequence_token


async def test_hpke_handshake_and_messages_over_our_server(http: httpx.AsyncClient, our_server: OurServer) -> None:
    generator, scanner = await pair(http, our_server)
    base, rid = our_server.base_url, generator.rendezvous_id
    g_channel, s_channel = HpkeChannel.generator(base, rid), HpkeChannel.scanner(base, rid)

    await scanner.send(s_channel.initiate(g_channel.public_key, sequence_token=scanner.sequence_token))
    initiate = await generator.receive(timeout=5)
    g_channel.accept_initiate(initiate, sequence_token=generator.own_sequence_token)
    await generator.send(g_channel.ok_message(sequence_token=generator.sequence_token))
    s_channel.accept_ok(await scanner.receive(timeout=5), sequence_token=scanner.own_sequence_token)
    await scanner.send(s_channel.encrypt(b"to G", sequence_token=scanner.sequence_token))
    to_g = g_channel.decrypt(await generator.receive(timeout=5), sequence_token=generator.own_sequence_token)
    await generator.send(g_channel.encrypt(b"to S", sequence_token=generator.sequence_token))
    to_s = s_channel.decrypt(await scanner.receive(timeout=5), sequence_token=scanner.own_sequence_token)

    assert s_channel.check_code == g_channel.check_code
    assert (to_g, to_s) == (b"to G", b"to S")


async def test_lost_put_response_is_replayed_with_the_same_txn_id(
    http: httpx.AsyncClient, recorder: RecordingTransport, our_server: OurServer
) -> None:
    _generator, scanner = await pair(http, our_server)
    recorder.drop_response(is_put)

    await scanner.send("lost response")

    first, retry = recorder.requests("PUT")
    assert first.fault == "dropped" and first.status == 200  # the server applied it
    assert retry.url == first.url  # same txnId
    assert retry.body == first.body  # same token and data
    assert retry.status == 200


async def test_lost_put_response_advances_the_token_once(
    http: httpx.AsyncClient, recorder: RecordingTransport, our_server: OurServer
) -> None:
    generator, scanner = await pair(http, our_server)
    recorder.drop_response(is_put)

    await scanner.send("lost response")

    state = await server_state(http, scanner)
    assert scanner.own_sequence_token == state["sequence_token"]
    assert state["data"] == "lost response"
    # Our server's tokens are a per-session counter (MSC4388 recommends one): POST gave 1, one write gives 2.
    assert (generator.own_sequence_token, state["sequence_token"]) == ("1", "2")


async def test_unconfirmed_write_seen_later_is_adopted_not_delivered(
    http: httpx.AsyncClient, recorder: RecordingTransport, our_server: OurServer
) -> None:
    generator, scanner = await pair(http, our_server)
    recorder.drop_response(is_put, times=FAST.retry.attempts)  # every try lands, no answer ever arrives
    with pytest.raises(RendezvousUnavailable):
        await scanner.send("landed")
    state = await server_state(http, scanner)

    with pytest.raises(ReceiveTimeout):
        await scanner.receive(timeout=0.3)  # polls see "landed": our own echo

    assert scanner.own_sequence_token == state["sequence_token"]
    assert await generator.receive(timeout=5) == "landed"


async def test_too_large_payload_is_a_named_error(http: httpx.AsyncClient, our_server: OurServer) -> None:
    _, scanner = await pair(http, our_server)

    with pytest.raises(PayloadTooLarge):
        await scanner.send("x" * 4097)


async def test_join_of_an_unknown_session_is_session_not_found(http: httpx.AsyncClient, our_server: OurServer) -> None:
    with pytest.raises(SessionNotFound):
        await Gen2Transport.join(http, our_server.base_url, "no-such-session", options=FAST)


async def test_delete_twice_is_harmless(http: httpx.AsyncClient, our_server: OurServer) -> None:
    generator, _ = await pair(http, our_server)

    await generator.delete()
    await generator.delete()

    assert (await http.get(generator.session_url)).status_code == 404


async def test_stable_prefix_is_refused_when_the_server_serves_only_unstable(
    http: httpx.AsyncClient, our_server: OurServer
) -> None:
    discovery = await Gen2Transport.discover(http, our_server.base_url, prefix=Gen2Prefix.STABLE)

    assert discovery.create_available is False
