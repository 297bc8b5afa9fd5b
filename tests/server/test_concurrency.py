"""Many simultaneous writes against the same version: exactly one wins, and its payload is the one stored."""

from __future__ import annotations

import asyncio
import secrets

import httpx

from .helpers import GEN1, GEN2, TEXT

WRITERS = 40


async def test_gen1_simultaneous_puts_with_one_etag_have_one_winner(server: str) -> None:
    limits = httpx.Limits(max_connections=WRITERS)
    async with httpx.AsyncClient(base_url=server, limits=limits, timeout=30) as client:
        created = await client.post(GEN1, headers=TEXT)
        url, etag = created.json()["url"], created.headers["etag"]
        bodies = [f"writer-{i}".encode() for i in range(WRITERS)]
        responses = await asyncio.gather(
            *(client.put(url, content=body, headers={**TEXT, "If-Match": etag}) for body in bodies)
        )
        statuses = [r.status_code for r in responses]
        assert statuses.count(202) == 1
        assert statuses.count(412) == WRITERS - 1
        winner = bodies[statuses.index(202)]
        stored = await client.get(url)
        assert stored.content == winner
        assert stored.headers["etag"] == responses[statuses.index(202)].headers["etag"]


async def test_gen2_simultaneous_puts_with_one_token_have_one_winner(server: str) -> None:
    limits = httpx.Limits(max_connections=WRITERS)
    async with httpx.AsyncClient(base_url=server, limits=limits, timeout=30) as client:
        session = (await client.post(GEN2, json={"data": ""})).json()
        path = f"{GEN2}/{session['id']}"
        data = [f"writer-{i}" for i in range(WRITERS)]
        responses = await asyncio.gather(
            *(client.put(f"{path}/{secrets.token_urlsafe(12)}", json={"sequence_token": "1", "data": d}) for d in data)
        )
        statuses = [r.status_code for r in responses]
        assert statuses.count(200) == 1
        assert statuses.count(409) == WRITERS - 1
        stored = (await client.get(path)).json()
        assert stored["data"] == data[statuses.index(200)]
        assert stored["sequence_token"] == "2"
