"""What the Redis store keeps in Redis, and what several workers sharing it see (beyond the contract)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from rendezvous.store import TXN_RECORDS_KEPT, Generation, StoreFull
from rendezvous.store import _redis_pipeline as redis_pipeline
from rendezvous.store._redis_pipeline import Multiplexer
from rendezvous.store.base import RateLimit
from rendezvous.store.redis import RedisStore
from tests.store.conftest import REDIS_URL, redis_store_at, shared_cluster
from tests.support.deadlines import eventually

TTL_MS = 60_000


@pytest.fixture
async def store() -> AsyncIterator[RedisStore]:
    async with redis_store_at(REDIS_URL) as s:
        yield s


@pytest.fixture
async def raw() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def two_workers(url: str) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    """Two stores on one key space, as two worker processes would have."""
    async with redis_store_at(url) as first:
        second = RedisStore.from_url(url, key_prefix=first._prefix)
        try:
            yield first, second
        finally:
            await second.close()


def url_of(backend: str) -> str:
    return REDIS_URL if backend == "redis" else shared_cluster.url()


def test_a_sessions_keys_and_channel_share_one_cluster_slot(store: RedisStore) -> None:
    session_id = "abcDEF123-_.~"
    names = [store._session_key(session_id), store._txn_key(session_id), store._channel(session_id).decode()]
    assert len({key_slot(name.encode()) for name in names}) == 1
    assert all(f"{{{session_id}}}" in name for name in names)


async def test_the_session_ttl_is_held_by_redis_in_milliseconds(store: RedisStore, raw: Redis) -> None:
    session = await store.create(Generation.GEN1, b"", ttl_ms=1_234)
    pttl = await raw.pttl(store._session_key(session.id))
    assert 1_000 < pttl <= 1_234


async def test_txn_records_expire_at_the_same_instant_as_their_session(store: RedisStore, raw: Redis) -> None:
    session = await store.create(Generation.GEN2, b"", ttl_ms=TTL_MS)
    await store.write(session.id, b"x", expected_version=1, txn_id="t1")
    session_deadline = await raw.pexpiretime(store._session_key(session.id))
    txn_deadline = await raw.pexpiretime(store._txn_key(session.id))
    order_deadline = await raw.pexpiretime(store._txn_order_key(session.id))
    assert txn_deadline == order_deadline == session_deadline > 0


async def test_a_sessions_txn_records_stay_bounded_in_redis(store: RedisStore, raw: Redis) -> None:
    # The finding: a client stuck on a stale token, sending fresh txnIds, grew one hash without bound.
    session = await store.create(Generation.GEN2, b"", ttl_ms=TTL_MS)
    for i in range(3 * TXN_RECORDS_KEPT):
        await store.write(session.id, b"x" * 100, expected_version=7, txn_id=f"txn-{i}")
    assert await raw.hlen(store._txn_key(session.id)) == TXN_RECORDS_KEPT
    assert await raw.llen(store._txn_order_key(session.id)) == TXN_RECORDS_KEPT
    assert await store.delete(session.id)
    assert await raw.exists(*store._record_keys(session.id)) == 0


async def test_an_expired_session_leaves_no_keys(store: RedisStore, raw: Redis) -> None:
    session = await store.create(Generation.GEN2, b"", ttl_ms=100)
    await store.write(session.id, b"x", expected_version=1, txn_id="t1")
    await asyncio.sleep(0.3)
    assert await raw.exists(*store._record_keys(session.id)) == 0


async def test_rate_limit_buckets_expire_once_full_again(store: RedisStore, raw: Redis) -> None:
    await store.rate_limit("ip:a", rate_per_s=10.0, burst=5)
    pttl = await raw.pttl(store._bucket_key("ip:a"))
    assert 0 < pttl <= 101  # one token short at 10 per second: full again in 100 ms


async def test_an_id_outside_the_opaque_grammar_is_unknown_without_touching_redis(store: RedisStore) -> None:
    assert await store.get("a}b{c") is None
    assert await store.delete("a}b{c") is False


@pytest.mark.parametrize("prefix", ["", "rz{x}"])
def test_a_key_prefix_that_would_break_hash_tags_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError):
        RedisStore(Redis(), key_prefix=prefix)


def test_an_unknown_url_scheme_is_refused() -> None:
    with pytest.raises(ValueError):
        RedisStore.from_url("http://127.0.0.1:6379")


async def test_a_cluster_url_selects_the_cluster_client() -> None:
    store = RedisStore.from_url("redis+cluster://127.0.0.1:7000")
    try:
        assert isinstance(store._client, RedisCluster)
    finally:
        await store.close()


@pytest.mark.parametrize("backend", ["redis", "redis-cluster"])
async def test_workers_share_the_session_count_and_its_maximum(backend: str) -> None:
    async with two_workers(url_of(backend)) as (first, second):
        await first.create(Generation.GEN1, b"", ttl_ms=TTL_MS, max_sessions=2)
        await second.create(Generation.GEN1, b"", ttl_ms=TTL_MS, max_sessions=2)
        assert await first.count() == await second.count() == 2
        with pytest.raises(StoreFull):
            await first.create(Generation.GEN1, b"", ttl_ms=TTL_MS, max_sessions=2)


@pytest.mark.parametrize("backend", ["redis", "redis-cluster"])
async def test_workers_share_rate_limit_buckets(backend: str) -> None:
    async with two_workers(url_of(backend)) as (first, second):
        assert await first.rate_limit("ip:a", rate_per_s=0.5, burst=1) == 0
        assert await second.rate_limit("ip:a", rate_per_s=0.5, burst=1) > 0


@pytest.mark.parametrize("backend", ["redis", "redis-cluster"])
async def test_a_write_by_one_worker_wakes_waiters_of_another(backend: str) -> None:
    async with two_workers(url_of(backend)) as (first, second):
        # Several sessions, so that on a cluster the channels land on different nodes.
        sessions = [await first.create(Generation.GEN2, b"", ttl_ms=TTL_MS) for _ in range(6)]
        waiters = [asyncio.create_task(first.wait_for_change(s.id, 1, timeout_s=10)) for s in sessions]
        await asyncio.sleep(0.2)
        for s in sessions:
            await second.write(s.id, b"news", expected_version=1)
        results = await asyncio.wait_for(asyncio.gather(*waiters), 2)
        assert all(r is not None and r.version == 2 for r in results)


@pytest.mark.parametrize("backend", ["redis", "redis-fallback", "redis-cluster"])
async def test_a_write_by_one_worker_calls_the_change_callbacks_of_another(backend: str) -> None:
    """Held polls register callbacks: a write through another worker calls each of them once, on a single
    server (pipelined or through redis-py's client) and on a cluster."""
    async with two_workers(url_of("redis-cluster" if backend == "redis-cluster" else "redis")) as workers:
        first, second = workers
        if backend == "redis-fallback":
            first._multiplexer = second._multiplexer = None
        # Several sessions, so that on a cluster the channels land on different nodes.
        sessions = [await first.create(Generation.GEN1, b"", ttl_ms=TTL_MS) for _ in range(6)]
        calls = {s.id: 0 for s in sessions}

        def counter(session_id: str) -> Callable[[], None]:
            def called() -> None:
                calls[session_id] += 1

            return called

        for s in sessions:
            for _ in range(3):
                assert await first.register_change(s.id, 1, counter(s.id)) is True
        assert first.waiter_count() == 18
        for s in sessions:
            await second.write(s.id, b"news", expected_version=1)
        await eventually(lambda: all(n == 3 for n in calls.values()))
        assert first.waiter_count() == 0


async def test_change_callbacks_share_one_subscription_per_session_and_release_it(
    store: RedisStore, raw: Redis
) -> None:
    sessions = [await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS) for _ in range(3)]
    callbacks = {s.id: [lambda: None for _ in range(5)] for s in sessions}
    for s in sessions:
        for callback in callbacks[s.id]:
            assert await store.register_change(s.id, 1, callback) is True
    assert len(await _subscriptions(raw, store, 3)) == 3
    written, deleted, forgotten = sessions
    await store.write(written.id, b"x", expected_version=1)
    await store.delete(deleted.id)
    for callback in callbacks[forgotten.id]:
        store.forget_change(forgotten.id, callback)
    # Unsubscribing is sent in the background: give it a moment to reach the server.
    assert await _subscriptions(raw, store, 0) == []
    assert store.waiter_count() == 0


async def _subscriptions(raw: Redis, store: RedisStore, expected: int) -> list[bytes | str]:
    """The store's shard subscriptions on the server once there are ``expected`` of them (or after 3 s)."""
    deadline = time.monotonic() + 3.0
    while True:  # the server offers nothing to wait on: poll it
        channels: list[bytes | str] = await raw.pubsub_shardchannels(f"{store._prefix}:*")
        if len(channels) == expected or time.monotonic() > deadline:
            return channels
        await asyncio.sleep(0.02)


async def test_with_the_installed_redis_py_script_calls_are_pipelined(
    store: RedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    # The fast path depends on a private attribute of redis-py's connections: this fails when the installed
    # redis-py no longer has it (the store would silently run on the slower fallback).
    caplog.set_level(logging.WARNING, logger="rendezvous.store.redis")
    session = await store.create(Generation.GEN2, b"x", ttl_ms=60_000)
    await store.write(session.id, b"y", expected_version=1)
    assert await store.get(session.id) is not None
    retry_after_ms, seen = await store.limited_get(session.id, RateLimit("ip:a", rate_per_s=10.0, burst=5))
    assert retry_after_ms == 0 and seen is not None
    assert await store.delete(session.id) is True
    assert store.pipelined
    assert isinstance(store._multiplexer, Multiplexer) and store._multiplexer.connected
    assert not [r for r in caplog.records if r.name.startswith("rendezvous.store")]


async def test_a_cluster_store_is_not_pipelined() -> None:
    async with redis_store_at(shared_cluster.url()) as store:
        assert not store.pipelined


async def test_without_the_expected_connection_internals_the_store_falls_back_to_redis_py(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The pipelined connection reads a private attribute of redis-py's connections; a redis-py release without
    # it must cost speed, not service.
    def unsupported(*args: object, **kwargs: object) -> None:
        raise redis_pipeline.UnsupportedConnection

    monkeypatch.setattr(redis_pipeline, "Pipe", unsupported)
    caplog.set_level(logging.WARNING, logger="rendezvous.store.redis")
    session = await store.create(Generation.GEN2, b"x", ttl_ms=60_000)
    written = await store.write(session.id, b"y", expected_version=1)
    got = await store.get(session.id)
    assert written.version == 2
    assert got is not None and got.data == b"y"
    assert await store.delete(session.id) is True
    assert store._multiplexer is None
    assert not store.pipelined
    assert [r.levelno for r in caplog.records if "not pipelining" in r.getMessage()] == [logging.WARNING]
