"""Push wake-ups cross processes through Redis: a write served by one server process wakes a long-poll or a
watch parked in another. Two servers started through the CLI share the machine's Redis, in a database of their
own (the sessions they leave there simply expire)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.server.helpers import GEN1, GEN2, TEXT
from tests.server.test_push_support import NO_LIMITS
from tests.support.server import serve_cli

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379").rstrip("/") + "/11"


@pytest.fixture(scope="module")
def two_servers() -> Iterator[tuple[str, str]]:
    env = {**NO_LIMITS, "RENDEZVOUS_STORE_URL": REDIS_URL}
    with serve_cli(env) as first, serve_cli(env) as second:
        yield first, second


async def test_gen2_long_poll_is_woken_by_a_write_to_another_process(two_servers: tuple[str, str]) -> None:
    first, second = two_servers
    async with httpx.AsyncClient(timeout=10) as http:
        session = (await http.post(f"{first}{GEN2}", json={"data": ""})).json()
        poll = asyncio.create_task(
            http.get(f"{first}{GEN2}/{session['id']}", params={"since": "1", "timeout_ms": "10000"})
        )
        await asyncio.sleep(0.3)
        put_at = time.monotonic()
        put = await http.put(
            f"{second}{GEN2}/{session['id']}/{secrets.token_hex(8)}", json={"sequence_token": "1", "data": "x"}
        )
        assert put.status_code == 200
        response = await poll
        assert time.monotonic() - put_at < 0.1
        assert response.json()["sequence_token"] == put.json()["sequence_token"]


async def test_gen1_watch_is_woken_by_a_write_and_a_delete_in_another_process(
    two_servers: tuple[str, str],
) -> None:
    first, second = two_servers
    async with httpx.AsyncClient(timeout=10) as http:
        created = await http.post(f"{first}{GEN1}", content=b"", headers=TEXT)
        url, etag = created.json()["url"], created.headers["etag"]
        other_url = url.replace(first, second)
        async with connect(url.replace("http://", "ws://") + "/watch") as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 2))["etag"] == etag
            put = await http.put(other_url, content=b"hi", headers={**TEXT, "If-Match": etag})
            assert json.loads(await asyncio.wait_for(ws.recv(), 1)) == {"etag": put.headers["etag"], "data": "hi"}
            await http.delete(other_url)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 2)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404


async def test_a_held_gen1_poll_is_woken_by_a_write_to_another_process(two_servers: tuple[str, str]) -> None:
    """A held poll is a change callback on its process's subscription to the session's channel."""
    first, second = two_servers
    async with httpx.AsyncClient(timeout=10) as http:
        created = await http.post(f"{first}{GEN1}", content=b"", headers=TEXT)
        url, etag = created.json()["url"], created.headers["etag"]
        poll = asyncio.create_task(http.get(url, headers={"If-None-Match": etag}))
        await asyncio.sleep(0.3)
        assert not poll.done()
        put_at = time.monotonic()
        put = await http.put(url.replace(first, second), content=b"held", headers={**TEXT, "If-Match": etag})
        assert put.status_code == 202
        response = await poll
        assert time.monotonic() - put_at < 0.5
        assert response.status_code == 200
        assert response.content == b"held"


async def test_a_held_gen1_poll_is_answered_404_by_a_delete_in_another_process(two_servers: tuple[str, str]) -> None:
    first, second = two_servers
    async with httpx.AsyncClient(timeout=10) as http:
        created = await http.post(f"{first}{GEN1}", content=b"", headers=TEXT)
        url, etag = created.json()["url"], created.headers["etag"]
        poll = asyncio.create_task(http.get(url, headers={"If-None-Match": etag}))
        await asyncio.sleep(0.3)
        assert not poll.done()
        deleted_at = time.monotonic()
        assert (await http.delete(url.replace(first, second))).status_code == 204
        response = await poll
        assert time.monotonic() - deleted_at < 0.5
        assert response.status_code == 404
        assert response.json()["errcode"] == "M_NOT_FOUND"
