"""Our transports on both sides of Synapse 1.163.2's rendezvous: Gen-2 (MSC4388, which lacks the txnId route,
so sends fall back to the older ``PUT /{id}``), Gen-1 (MSC4108), and Gen-1 create delegated by Synapse."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from qrlink_client.channel import EciesChannel, HpkeChannel
from qrlink_client.transport import (
    ConcurrentWrite,
    Gen1Transport,
    Gen2Transport,
    ReceiveTimeout,
    RetryPolicy,
    SessionNotFound,
    TransportOptions,
)
from tests.peers.synapse import SynapseServer
from tests.support import transport as support
from tests.support.transport import RecordingTransport, is_put

pytestmark = [pytest.mark.synapse]

# Fixture shared with the client transport tests.
our_server = support.our_server

OPTIONS = TransportOptions(poll_interval=0.1, retry=RetryPolicy(attempts=4, initial_delay=0.02, max_delay=0.1))


async def gen2_pair(http: httpx.AsyncClient, synapse: SynapseServer) -> tuple[Gen2Transport, Gen2Transport]:
    generator = await Gen2Transport.create(http, synapse.base_url, options=OPTIONS)
    scanner = await Gen2Transport.join(http, synapse.base_url, generator.rendezvous_id, options=OPTIONS)
    return generator, scanner


# --- Gen-2 --------------------------------------------------------------------------------------------------


async def test_gen2_discovery_on_synapse_offers_create_without_push(
    http: httpx.AsyncClient, synapse: SynapseServer
) -> None:
    discovery = await Gen2Transport.discover(http, synapse.base_url)

    assert (discovery.create_available, discovery.push) == (True, None)


async def test_gen2_hpke_handshake_and_payloads_through_synapse(
    http: httpx.AsyncClient, synapse: SynapseServer
) -> None:
    generator, scanner = await gen2_pair(http, synapse)
    base, rid = synapse.base_url, generator.rendezvous_id
    g_channel, s_channel = HpkeChannel.generator(base, rid), HpkeChannel.scanner(base, rid)

    await scanner.send(s_channel.initiate(g_channel.public_key, sequence_token=scanner.sequence_token))
    g_channel.accept_initiate(await generator.receive(timeout=10), sequence_token=generator.own_sequence_token)
    await generator.send(g_channel.ok_message(sequence_token=generator.sequence_token))
    s_channel.accept_ok(await scanner.receive(timeout=10), sequence_token=scanner.own_sequence_token)
    await scanner.send(s_channel.encrypt(b'{"type":"m.login.protocols"}', sequence_token=scanner.sequence_token))
    to_g = g_channel.decrypt(await generator.receive(timeout=10), sequence_token=generator.own_sequence_token)
    await generator.send(g_channel.encrypt(b'{"type":"m.login.protocol"}', sequence_token=generator.sequence_token))
    to_s = s_channel.decrypt(await scanner.receive(timeout=10), sequence_token=scanner.own_sequence_token)

    assert s_channel.check_code == g_channel.check_code
    assert (json.loads(to_g), json.loads(to_s)) == (
        {"type": "m.login.protocols"},
        {"type": "m.login.protocol"},
    )


async def test_gen2_send_falls_back_to_the_legacy_put_on_synapse(
    http: httpx.AsyncClient, recorder: RecordingTransport, synapse: SynapseServer
) -> None:
    _generator, scanner = await gen2_pair(http, synapse)

    await scanner.send("initiate")

    txn_put, legacy_put = recorder.requests("PUT")
    assert txn_put.url.path.startswith(httpx.URL(scanner.session_url).path + "/")
    assert (txn_put.status, json.loads(txn_put.response_body)["errcode"]) == (404, "M_UNRECOGNIZED")
    assert txn_put.body == legacy_put.body
    assert (legacy_put.url.path, legacy_put.status) == (httpx.URL(scanner.session_url).path, 200)
    assert scanner.uses_legacy_put


async def test_gen2_after_the_fallback_sends_go_straight_to_the_legacy_put(
    http: httpx.AsyncClient, recorder: RecordingTransport, synapse: SynapseServer
) -> None:
    generator, scanner = await gen2_pair(http, synapse)
    await scanner.send("initiate")
    assert await generator.receive(timeout=10) == "initiate"
    await generator.send("ok")
    assert await scanner.receive(timeout=10) == "ok"
    recorder.exchanges.clear()

    await scanner.send("second")

    (put,) = recorder.requests("PUT")
    assert (put.url.path, put.status) == (httpx.URL(scanner.session_url).path, 200)


async def test_gen2_lost_legacy_put_response_is_replayed_and_applied_once_on_synapse(
    http: httpx.AsyncClient, recorder: RecordingTransport, synapse: SynapseServer
) -> None:
    generator, scanner = await gen2_pair(http, synapse)
    await scanner.send("initiate")  # learns that Synapse needs the legacy PUT
    assert await generator.receive(timeout=10) == "initiate"
    await generator.send("ok")  # the generator learns it too
    assert await scanner.receive(timeout=10) == "ok"
    recorder.exchanges.clear()
    recorder.drop_response(is_put)

    await scanner.send("next")

    first, retry = recorder.requests("PUT")
    assert first.fault == "dropped" and first.status == 200
    assert (retry.url, retry.body) == (first.url, first.body)  # the same request again
    # Synapse's idempotence rule answers the replay with the token of the applied write: not advanced twice.
    assert json.loads(retry.response_body)["sequence_token"] == json.loads(first.response_body)["sequence_token"]
    state = (await http.get(scanner.session_url)).json()
    assert (state["data"], state["sequence_token"]) == ("next", scanner.own_sequence_token)
    assert await generator.receive(timeout=10) == "next"
    with pytest.raises(ReceiveTimeout):
        await generator.receive(timeout=0.3)


async def test_gen2_concurrent_write_on_synapse_is_a_named_error(
    http: httpx.AsyncClient, synapse: SynapseServer
) -> None:
    generator, scanner = await gen2_pair(http, synapse)
    await scanner.send("initiate")

    with pytest.raises(ConcurrentWrite) as caught:
        await generator.send("stale")

    assert (caught.value.status, caught.value.errcode) == (409, "IO_ELEMENT_MSC4388_CONCURRENT_WRITE")


async def test_gen2_delete_on_synapse_ends_the_peers_receive(http: httpx.AsyncClient, synapse: SynapseServer) -> None:
    generator, scanner = await gen2_pair(http, synapse)

    await generator.delete()

    with pytest.raises(SessionNotFound):
        await scanner.receive(timeout=10)


async def test_gen2_expiry_comes_from_synapses_expires_in_ms(http: httpx.AsyncClient, synapse: SynapseServer) -> None:
    generator, _ = await gen2_pair(http, synapse)

    assert generator.expires_in is not None and 115 <= generator.expires_in <= 120  # Synapse: 120 s TTL


# --- Gen-1 --------------------------------------------------------------------------------------------------


async def test_gen1_ecies_both_sides_ours_through_synapse(http: httpx.AsyncClient, synapse: SynapseServer) -> None:
    generator = await Gen1Transport.create(http, synapse.gen1_create_url, options=OPTIONS)
    scanner = await Gen1Transport.join(http, generator.url, options=OPTIONS)
    g_channel, s_channel = EciesChannel.generator(), EciesChannel.scanner()

    await scanner.send(s_channel.initiate(g_channel.public_key))
    g_channel.accept_initiate(await generator.receive(timeout=10))
    await generator.send(g_channel.ok_message())
    s_channel.accept_ok(await scanner.receive(timeout=10))
    await generator.send(g_channel.encrypt(b"to S"))
    to_s = s_channel.decrypt(await scanner.receive(timeout=10))

    assert generator.url.startswith(f"{synapse.base_url}_synapse/client/rendezvous/")
    assert s_channel.check_code == g_channel.check_code
    assert to_s == b"to S"


async def test_gen1_expiry_from_synapse_is_its_60_second_ttl(http: httpx.AsyncClient, synapse: SynapseServer) -> None:
    generator = await Gen1Transport.create(http, synapse.gen1_create_url, options=OPTIONS)

    assert generator.expires_in is not None and 58 <= generator.expires_in <= 61


async def test_gen1_lost_put_response_is_recognised_on_synapse(
    http: httpx.AsyncClient, recorder: RecordingTransport, synapse: SynapseServer
) -> None:
    generator = await Gen1Transport.create(http, synapse.gen1_create_url, options=OPTIONS)
    scanner = await Gen1Transport.join(http, generator.url, options=OPTIONS)
    recorder.drop_response(is_put)

    await scanner.send("initiate")

    first, retry = recorder.requests("PUT")
    assert (first.fault, first.status, retry.status) == ("dropped", 202, 412)
    assert await generator.receive(timeout=10) == "initiate"
    await generator.send("ok")
    assert await scanner.receive(timeout=10) == "ok"


@pytest.fixture(scope="module")
def delegating_synapse(our_server: support.OurServer) -> Iterator[SynapseServer]:
    """A second Synapse that delegates Gen-1 create to our server (``msc4108_delegation_endpoint``)."""
    with SynapseServer(msc4108_delegation_endpoint=our_server.gen1_create_url) as server:
        yield server


async def test_gen1_create_follows_synapses_307_delegation_to_our_server(
    http: httpx.AsyncClient,
    recorder: RecordingTransport,
    delegating_synapse: SynapseServer,
    our_server: support.OurServer,
) -> None:
    generator = await Gen1Transport.create(http, delegating_synapse.gen1_create_url, options=OPTIONS)
    scanner = await Gen1Transport.join(http, generator.url, options=OPTIONS)

    delegated, created = recorder.requests("POST")
    assert (str(delegated.url), delegated.status) == (delegating_synapse.gen1_create_url, 307)
    assert (str(created.url), created.status, created.body) == (our_server.gen1_create_url, 201, b"")
    assert generator.url.startswith(our_server.gen1_create_url + "/")
    await scanner.send("initiate")
    assert await generator.receive(timeout=10) == "initiate"
