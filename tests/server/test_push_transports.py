"""Our client transports (``qrlink_client.transport``) use the server's push extension, end to end.

Both sides run against our real server under uvicorn. Each receive is parked before the peer sends, and the
payload must arrive well before the 1 s poll interval could have delivered it; the server's parked gauge
shows which mechanism carried it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from qrlink_client.transport import Gen2Transport, TransportOptions
from tests.server.test_push_support import NO_LIMITS, sample, scrape
from tests.support.server import serve_cli
from tests.support.transport import Generation, Transport, both_generations

#: Well under the 1 s poll interval: only push can deliver this fast.
PUSH_LATENCY_S = 0.3


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve_cli(NO_LIMITS) as base_url:
        yield base_url


async def _delivered_fast(server: str, receiver: Transport, sender: Transport, payload: str, kind: str) -> None:
    receiving = asyncio.create_task(receiver.receive(timeout=10))
    await asyncio.sleep(0.4)
    parked = sample(scrape(server), "rendezvous_push_parked", kind=kind)
    assert parked >= 1, f"no {kind} parked on the server"
    sent_at = time.monotonic()
    await sender.send(payload)
    assert await receiving == payload
    assert time.monotonic() - sent_at < PUSH_LATENCY_S


@both_generations
@pytest.mark.parametrize(("websocket", "kind"), [(False, "long_poll"), (True, "websocket")])
async def test_transports_exchange_payloads_through_push(
    server: str, http: httpx.AsyncClient, gen: Generation, websocket: bool, kind: str
) -> None:
    creator, joiner = await gen.pair(http, server, TransportOptions(websocket=websocket))
    async with creator, joiner:
        assert creator.push is not None and creator.push.long_poll and creator.push.websocket
        if gen.number == 2:  # a Gen-2 join reads the session; a Gen-1 joiner learns of push on its first read
            assert joiner.push is not None and joiner.push.long_poll
        await _delivered_fast(server, creator, joiner, "login initiate", kind)
        await _delivered_fast(server, joiner, creator, "login ok", kind)
        await _delivered_fast(server, creator, joiner, "third", kind)


async def test_gen2_discovery_reports_the_push_extension(server: str, http: httpx.AsyncClient) -> None:
    discovery = await Gen2Transport.discover(http, server)
    assert discovery.push is not None
    assert discovery.push.long_poll and discovery.push.websocket
    assert discovery.push.max_wait_ms == 30_000
