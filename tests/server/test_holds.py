"""Held Gen-1 polls: a plain ``If-None-Match`` GET naming the current ETag waits for the next write.

No client opts in: Element's clients poll once a second with ``If-None-Match`` and cannot tell a held answer
from a late one. The servers here run in-process (real uvicorn, real sockets) with short holds. The tests that
take the ``store`` fixture run on the memory store and on the machine's Redis (a fresh key prefix each, whose
keys are deleted afterwards): a held poll is woken by a store change callback on both.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis import Redis

from rendezvous.config import load_settings
from rendezvous.http import Request
from rendezvous.metrics import InstrumentedStore, Metrics
from rendezvous.push import Push
from rendezvous.store import Generation, MemoryStore, SessionStore
from rendezvous.store.redis import RedisStore
from tests.server.helpers import GEN1, TEXT
from tests.server.test_push_support import ParkedRequest, sample, scrape
from tests.store.conftest import BACKENDS, delete_keys
from tests.support.deadlines import eventually
from tests.support.server import serve_settings

NO_LIMITS: dict[str, Any] = {"create_rate_per_second": 0, "session_rate_per_second": 0}
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    """A store for one server (the server's own loop uses it; the app leaves it open, its loop's end closes it)."""
    if request.param == "memory":
        yield MemoryStore()
        return
    prefix = f"rztest-{secrets.token_hex(6)}"
    try:
        yield RedisStore.from_url(REDIS_URL, key_prefix=prefix)
    finally:
        await delete_keys(REDIS_URL, prefix)


def _subscriptions(store: SessionStore) -> int:
    """The shard channels subscribed under ``store``'s key prefix on the Redis server (0 on the memory store)."""
    if not isinstance(store, RedisStore):
        return 0
    with Redis.from_url(REDIS_URL) as raw:
        return len(raw.pubsub_shardchannels(f"{store._prefix}:*"))


async def _create(client: httpx.AsyncClient, body: bytes = b"") -> tuple[str, str]:
    created = await client.post(GEN1, content=body, headers=TEXT)
    assert created.status_code == 201, created.text
    return created.json()["url"], created.headers["etag"]


def _outcome(base_url: str, outcome: str) -> float:
    return sample(scrape(base_url), "rendezvous_holds_ended_total", outcome=outcome)


async def test_a_held_poll_gets_the_write_at_once_and_counts_its_wake(store: SessionStore) -> None:
    with serve_settings(store=store, hold_ms=10_000, **NO_LIMITS) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=15) as client:
            url, etag = await _create(client)
            held = asyncio.create_task(client.get(url, headers={"If-None-Match": etag}))
            await eventually(lambda: store.waiter_count() == 1)
            assert sample(scrape(base_url), "rendezvous_holds") == 1
            assert not held.done()
            put = await client.put(url, content=b"hello", headers={**TEXT, "If-Match": etag})
            written = time.monotonic()
            response = await asyncio.wait_for(held, 5)
            delay = time.monotonic() - written
        samples = scrape(base_url)
        assert store.waiter_count() == 0
    assert delay < 0.1, delay
    assert (response.status_code, response.content) == (200, b"hello")
    assert response.headers["etag"] == put.headers["etag"]
    assert response.headers["content-type"] == "text/plain"
    assert {"expires", "last-modified"} <= set(response.headers)
    assert "preference-applied" not in response.headers
    assert sample(samples, "rendezvous_holds") == 0
    assert sample(samples, "rendezvous_holds_ended_total", outcome="write") == 1
    assert sample(samples, "rendezvous_hold_wake_seconds_count") == 1
    assert sample(samples, "rendezvous_http_responses_total", route="gen1.hold", status="200") == 1


async def test_a_held_poll_nobody_writes_to_is_the_usual_304_at_hold_ms(store: SessionStore) -> None:
    with serve_settings(store=store, hold_ms=600, **NO_LIMITS) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=15) as client:
            url, etag = await _create(client, b"x")
            plain = await client.get(url, headers={"If-None-Match": etag, "Prefer": "wait=0"})
            started = time.monotonic()
            response = await client.get(url, headers={"If-None-Match": etag})
            elapsed = time.monotonic() - started
        assert _outcome(base_url, "timeout") == 1
        assert store.waiter_count() == 0
        await eventually(lambda: _subscriptions(store) == 0, within=1.0)
    assert 0.55 < elapsed < 2.0, elapsed
    assert response.status_code == 304
    assert response.content == b""
    assert "preference-applied" not in response.headers
    # Exactly the headers of an immediate 304, dates included (nothing was written meanwhile).
    for name in ("etag", "expires", "last-modified", "content-type", "cache-control", "x-qrlink-push"):
        assert response.headers[name] == plain.headers[name], name


async def test_a_held_poll_of_a_deleted_session_is_404_at_once(store: SessionStore) -> None:
    with serve_settings(store=store, hold_ms=10_000, **NO_LIMITS) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=15) as client:
            url, etag = await _create(client)
            held = asyncio.create_task(client.get(url, headers={"If-None-Match": etag}))
            await eventually(lambda: store.waiter_count() == 1)
            assert (await client.delete(url)).status_code == 204
            response = await asyncio.wait_for(held, 1)
        assert _outcome(base_url, "deleted") == 1
        assert store.waiter_count() == 0
    assert response.status_code == 404
    assert response.json()["errcode"] == "M_NOT_FOUND"


async def test_a_held_poll_of_a_session_that_expires_is_404_just_after_its_deadline() -> None:
    offset = 0.0
    store = MemoryStore(monotonic=lambda: time.monotonic() + offset)
    with serve_settings(store=store, hold_ms=20_000, ttl_seconds=120, **NO_LIMITS) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=15) as client:
            url, etag = await _create(client)
            offset = 119.5  # half a second of its lifetime left
            started = time.monotonic()
            response = await client.get(url, headers={"If-None-Match": etag})
            elapsed = time.monotonic() - started
        assert _outcome(base_url, "deleted") == 1
    assert response.status_code == 404
    assert 0.3 < elapsed < 2.0, elapsed


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Prefer": "wait=0"}, id="prefer-wait-0"),
        pytest.param({"Prefer": "respond-async, wait=0"}, id="prefer-list-wait-0"),
        pytest.param({"weak": "1"}, id="weak-form"),
        pytest.param({"star": "1"}, id="star"),
        pytest.param({"list": "1"}, id="list"),
    ],
)
async def test_only_a_plain_poll_naming_exactly_the_current_etag_is_held(headers: dict[str, str]) -> None:
    with serve_settings(hold_ms=10_000, **NO_LIMITS) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=15) as client:
            url, etag = await _create(client)
            if_none_match = etag
            if "weak" in headers:
                if_none_match = f"W/{etag}"
            elif "star" in headers:
                if_none_match = "*"
            elif "list" in headers:
                if_none_match = f'"other", {etag}'
            request_headers = {"If-None-Match": if_none_match}
            if "Prefer" in headers:
                request_headers["Prefer"] = headers["Prefer"]
            started = time.monotonic()
            response = await client.get(url, headers=request_headers)
            assert time.monotonic() - started < 0.5
            assert response.status_code == 304


async def test_head_and_polls_with_holds_off_are_answered_at_once() -> None:
    with serve_settings(hold_enabled=False, **NO_LIMITS) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=15) as client:
            url, etag = await _create(client)
            started = time.monotonic()
            response = await client.get(url, headers={"If-None-Match": etag})
            assert time.monotonic() - started < 0.5
            assert response.status_code == 304
    with serve_settings(hold_ms=10_000, **NO_LIMITS) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=15) as client:
            url, etag = await _create(client)
            started = time.monotonic()
            response = await client.head(url, headers={"If-None-Match": etag})
            assert time.monotonic() - started < 0.5
            assert response.status_code == 304


async def test_polls_past_the_caps_get_304_at_once() -> None:
    with serve_settings(hold_ms=30_000, hold_max=3, hold_max_per_address=2, **NO_LIMITS) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=15) as client:
            url, etag = await _create(client)
            path = url.removeprefix(base_url)
            parked = [await ParkedRequest.open(base_url, path, {"If-None-Match": etag}) for _ in range(2)]
            await eventually(lambda: sample(scrape(base_url), "rendezvous_holds") == 2)
            # Per address: 127.0.0.1 holds 2 already.
            started = time.monotonic()
            response = await client.get(url, headers={"If-None-Match": etag})
            assert time.monotonic() - started < 0.5
            assert response.status_code == 304
            assert _outcome(base_url, "capped") == 1
            for request in parked:
                request.abort()
            await eventually(lambda: sample(scrape(base_url), "rendezvous_holds") == 0)
        assert _outcome(base_url, "disconnect") == 2


async def test_server_wide_cap() -> None:
    with serve_settings(hold_ms=30_000, hold_max=2, hold_max_per_address=100, **NO_LIMITS) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=15) as client:
            url, etag = await _create(client)
            path = url.removeprefix(base_url)
            parked = [await ParkedRequest.open(base_url, path, {"If-None-Match": etag}) for _ in range(2)]
            await eventually(lambda: sample(scrape(base_url), "rendezvous_holds") == 2)
            response = await client.get(url, headers={"If-None-Match": etag})
            assert response.status_code == 304
            assert _outcome(base_url, "capped") == 1
            # A write answers both held polls; room again afterwards.
            await client.put(url, content=b"go", headers={**TEXT, "If-Match": etag})
            assert [await asyncio.wait_for(r.status(), 5) for r in parked] == [200, 200]
            for request in parked:
                request.abort()


async def test_a_client_that_disconnects_frees_its_hold_at_once(store: SessionStore) -> None:
    with serve_settings(store=store, hold_ms=30_000, **NO_LIMITS) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=15) as client:
            url, etag = await _create(client)
        path = url.removeprefix(base_url)
        parked = [await ParkedRequest.open(base_url, path, {"If-None-Match": etag}) for _ in range(5)]
        await eventually(lambda: store.waiter_count() == 5)
        assert _subscriptions(store) == (1 if isinstance(store, RedisStore) else 0)
        for request in parked:
            request.abort()
        await eventually(lambda: store.waiter_count() == 0, within=1.0)
        # The last hold of the session to leave unsubscribes its channel.
        await eventually(lambda: _subscriptions(store) == 0, within=1.0)
        samples = scrape(base_url)
    assert sample(samples, "rendezvous_holds") == 0
    assert sample(samples, "rendezvous_holds_ended_total", outcome="disconnect") == 5
    assert sample(samples, "rendezvous_http_responses_total", route="gen1.hold", status="499") == 5


async def test_a_client_whose_timeout_is_shorter_than_hold_ms_retries_and_loses_nothing(store: SessionStore) -> None:
    """A client giving up after 0.4 s on a 5 s hold: each try is freed, the retry is held afresh, and the
    payload written meanwhile reaches the retry."""
    with serve_settings(store=store, hold_ms=5_000, **NO_LIMITS) as base_url:
        async with (
            httpx.AsyncClient(base_url=base_url, timeout=15) as writer,
            httpx.AsyncClient(base_url=base_url, timeout=0.4) as impatient,
        ):
            url, etag = await _create(writer)

            async def poll() -> tuple[int, httpx.Response]:
                tries = 0
                while True:
                    tries += 1
                    try:
                        response = await impatient.get(url, headers={"If-None-Match": etag})
                    except httpx.TimeoutException:
                        continue
                    if response.status_code != 304:
                        return tries, response

            reader = asyncio.create_task(poll())
            await asyncio.sleep(1.0)
            put = await writer.put(url, content=b"late", headers={**TEXT, "If-Match": etag})
            tries, response = await asyncio.wait_for(reader, 5)
            await eventually(lambda: store.waiter_count() == 0, within=1.0)
        samples = scrape(base_url)
    assert tries >= 3
    assert (response.status_code, response.content, response.headers["etag"]) == (200, b"late", put.headers["etag"])
    assert sample(samples, "rendezvous_holds_ended_total", outcome="disconnect") >= 2
    assert sample(samples, "rendezvous_holds") == 0


async def test_a_held_poll_takes_one_rate_limit_token() -> None:
    """Two tokens in the bucket, none refilled in the test's time: two held polls, and the third read is 429."""
    with serve_settings(
        hold_ms=500, create_rate_per_second=0, session_rate_per_second=0.001, session_burst=2
    ) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=15) as client:
            url, etag = await _create(client)
            first = await client.get(url, headers={"If-None-Match": etag})
            second = await client.get(url, headers={"If-None-Match": etag})
            third = await client.get(url, headers={"If-None-Match": etag})
        assert _outcome(base_url, "timeout") == 2
    assert [first.status_code, second.status_code, third.status_code] == [304, 304, 429]


async def test_a_hold_on_one_server_is_answered_by_a_write_and_a_delete_through_another() -> None:
    """Two servers (two workers, as it were) share one Redis: each held poll of server A is a change callback
    on A's subscription, woken by what server B does."""
    prefix = f"rztest-{secrets.token_hex(6)}"
    a_store = RedisStore.from_url(REDIS_URL, key_prefix=prefix)
    b_store = RedisStore.from_url(REDIS_URL, key_prefix=prefix)
    try:
        with (
            serve_settings(store=a_store, hold_ms=10_000, **NO_LIMITS) as a,
            serve_settings(store=b_store, hold_ms=10_000, **NO_LIMITS) as b,
        ):
            async with httpx.AsyncClient(base_url=a, timeout=15) as client:
                url, etag = await _create(client)
                on_b = url.replace(a, b)
                held = [asyncio.create_task(client.get(url, headers={"If-None-Match": etag})) for _ in range(3)]
                await eventually(lambda: a_store.waiter_count() == 3)
                put = await client.put(on_b, content=b"from b", headers={**TEXT, "If-Match": etag})
                written = time.monotonic()
                answers = await asyncio.wait_for(asyncio.gather(*held), 5)
                delay = time.monotonic() - written
                assert delay < 0.5, delay
                assert [(r.status_code, r.content) for r in answers] == [(200, b"from b")] * 3
                assert {r.headers["etag"] for r in answers} == {put.headers["etag"]}
                again = asyncio.create_task(client.get(url, headers={"If-None-Match": put.headers["etag"]}))
                await eventually(lambda: a_store.waiter_count() == 1)
                assert (await client.delete(on_b)).status_code == 204
                gone = await asyncio.wait_for(again, 2)
                assert gone.status_code == 404
            assert a_store.waiter_count() == b_store.waiter_count() == 0
            await eventually(lambda: _subscriptions(a_store) == 0, within=1.0)
    finally:
        await delete_keys(REDIS_URL, prefix)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
async def test_a_held_poll_runs_in_its_request_task_alone_on_every_store(backend: str) -> None:
    """No listener task, no long-poll wait: the hold is its request's task, a change callback and a deadline
    entry, on the memory store and on Redis (behind the app's instrumented store) alike."""
    disconnected = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await disconnected.wait()
        return {"type": "http.disconnect"}

    request = Request({"type": "http", "method": "GET", "headers": []}, receive)
    async with BACKENDS[backend]() as inner:
        metrics = Metrics()
        store = InstrumentedStore(inner, metrics)
        push = Push(load_settings(environ={}, hold_ms=10_000), store, metrics)
        session = await store.create(Generation.GEN1, b"", ttl_ms=60_000)
        # A first hold opens what the store shares between holds (Redis: the subscriber's connection).
        first = asyncio.create_task(push.hold(request, "192.0.2.1", session))
        await eventually(lambda: store.waiter_count() == 1)
        before = asyncio.all_tasks()
        second = asyncio.create_task(push.hold(request, "192.0.2.1", session))
        await eventually(lambda: store.waiter_count() == 2)
        assert asyncio.all_tasks() - before == {second}
        await store.write(session.id, b"x", expected_version=1)
        answers = await asyncio.wait_for(asyncio.gather(first, second), 2)
        assert [a.version if a is not None else None for a in answers] == [2, 2]
        assert store.waiter_count() == 0
        assert push.holds == 0
