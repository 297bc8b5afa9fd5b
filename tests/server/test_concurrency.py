"""Many simultaneous writes against the same version: exactly one wins, and its payload is the one stored.

Each race is run on the memory store and on Redis behind ``rendezvous serve --workers 2`` (one port, so the
writers of one race land on both worker processes), for Gen-1 (If-Match), Gen-2 with a txnId, the older Gen-2
PUT without one, and the stable Gen-2 prefix (whose 409 carries the stable errcode). Every test runs several
rounds on one session, each round's writers starting from the version the previous round's winner made.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import httpx
import pytest

from rendezvous.protocol import GEN2_STABLE_CONCURRENT_WRITE, GEN2_UNSTABLE_CONCURRENT_WRITE
from tests.support import redis_servers
from tests.support.server import serve_cli

from .helpers import GEN1, GEN2, GEN2_STABLE, TEXT

WRITERS = 40
ROUNDS = 3


@pytest.fixture(scope="module")
def redis_two_workers() -> Iterator[str]:
    reason = redis_servers.missing_binaries()
    if reason is not None:
        pytest.skip(reason)
    env = {
        "RENDEZVOUS_CREATE_RATE_PER_SECOND": "0",
        "RENDEZVOUS_SESSION_RATE_PER_SECOND": "0",
        "RENDEZVOUS_GEN2_STABLE_API": "true",
    }
    with (
        redis_servers.redis_server() as redis,
        serve_cli({**env, "RENDEZVOUS_STORE_URL": redis.url}, ["--workers", "2"]) as url,
    ):
        yield url


@pytest.fixture(params=["memory", "redis-2-workers"])
def base_url(request: pytest.FixtureRequest) -> str:
    fixture = "server" if request.param == "memory" else "redis_two_workers"
    url: str = request.getfixturevalue(fixture)
    return url


def _client(base_url: str) -> httpx.AsyncClient:
    # One connection per writer, so that the writes really are in flight together (and spread over workers).
    return httpx.AsyncClient(base_url=base_url, limits=httpx.Limits(max_connections=WRITERS), timeout=30)


async def test_gen1_simultaneous_puts_with_one_etag_have_one_winner(base_url: str) -> None:
    async with _client(base_url) as client:
        created = await client.post(GEN1, headers=TEXT)
        url, etag = created.json()["url"], created.headers["etag"]
        for round_ in range(ROUNDS):
            bodies = [f"round-{round_}-writer-{i}".encode() for i in range(WRITERS)]
            responses = await asyncio.gather(
                *(client.put(url, content=body, headers={**TEXT, "If-Match": etag}) for body in bodies)
            )
            statuses = [r.status_code for r in responses]
            assert statuses.count(202) == 1, statuses
            assert statuses.count(412) == WRITERS - 1, statuses
            for loser in responses:
                if loser.status_code == 412:
                    assert loser.json()["org.matrix.msc4108.errcode"] == "M_CONCURRENT_WRITE"
            winner = responses[statuses.index(202)]
            stored = await client.get(url)
            assert stored.content == bodies[statuses.index(202)]
            assert stored.headers["etag"] == winner.headers["etag"] != etag
            etag = winner.headers["etag"]


@pytest.mark.parametrize(
    ("prefix", "with_txn_id", "errcode"),
    [
        (GEN2, True, GEN2_UNSTABLE_CONCURRENT_WRITE),
        (GEN2, False, GEN2_UNSTABLE_CONCURRENT_WRITE),
        (GEN2_STABLE, True, GEN2_STABLE_CONCURRENT_WRITE),
    ],
    ids=["txn-id", "no-txn-id", "stable"],
)
async def test_gen2_simultaneous_puts_with_one_token_have_one_winner(
    base_url: str, prefix: str, with_txn_id: bool, errcode: str
) -> None:
    async with _client(base_url) as client:
        session = (await client.post(prefix, json={"data": ""})).json()
        path = f"{prefix}/{session['id']}"
        token = session["sequence_token"]
        for round_ in range(ROUNDS):
            data = [f"round-{round_}-writer-{i}" for i in range(WRITERS)]
            responses = await asyncio.gather(
                *(
                    client.put(
                        f"{path}/{secrets.token_urlsafe(12)}" if with_txn_id else path,
                        json={"sequence_token": token, "data": d},
                    )
                    for d in data
                )
            )
            statuses = [r.status_code for r in responses]
            assert statuses.count(200) == 1, statuses
            assert statuses.count(409) == WRITERS - 1, statuses
            assert {r.json()["errcode"] for r in responses if r.status_code == 409} == {errcode}
            new_token = responses[statuses.index(200)].json()["sequence_token"]
            stored = (await client.get(path)).json()
            assert stored["data"] == data[statuses.index(200)]
            assert stored["sequence_token"] == new_token == str(int(token) + 1)
            token = new_token
