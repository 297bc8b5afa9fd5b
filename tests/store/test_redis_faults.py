"""The Redis store under outages, and wake-ups between worker processes.

Each test runs its own throwaway ``redis-server`` (started and stopped by PID), so taking Redis down affects
nothing else.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from rendezvous.store import Generation, Session, StoreUnavailable, WriteOutcome
from rendezvous.store.redis import RedisStore
from tests.support.redis_servers import RedisServer, missing_binaries, redis_server

pytestmark = pytest.mark.skipif(missing_binaries() is not None, reason=f"no throwaway Redis: {missing_binaries()}")

TTL_MS = 60_000
#: Short timeouts, so that a hung server is noticed within the test's patience.
FAST: dict[str, Any] = {"connect_timeout_s": 0.5, "socket_timeout_s": 0.5}


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with redis_server() as s:
        yield s


@pytest.fixture
async def store(server: RedisServer) -> AsyncIterator[RedisStore]:
    s = RedisStore.from_url(server.url, **FAST)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def raw(server: RedisServer) -> AsyncIterator[Redis]:
    """A plain client for looking at what the store left in Redis."""
    client = Redis.from_url(server.url, socket_timeout=2)
    try:
        yield client
    finally:
        await client.aclose()


def operations(session: Session) -> dict[str, Callable[[RedisStore], Awaitable[Any]]]:
    return {
        "create": lambda s: s.create(Generation.GEN2, b"x", ttl_ms=TTL_MS, max_sessions=10),
        "get": lambda s: s.get(session.id),
        "write": lambda s: s.write(session.id, b"y", expected_version=1, txn_id="t"),
        "delete": lambda s: s.delete(session.id),
        "count": lambda s: s.count(),
        "rate_limit": lambda s: s.rate_limit("ip:a", rate_per_s=1.0, burst=5),
        "wait_for_change": lambda s: s.wait_for_change(session.id, 1, timeout_s=30),
        "register_change": lambda s: s.register_change(session.id, 1, lambda: None),
        "ping": lambda s: s.ping(),
    }


async def test_every_operation_fails_fast_with_store_unavailable_while_redis_is_down(
    server: RedisServer, store: RedisStore
) -> None:
    session = await store.create(Generation.GEN2, b"", ttl_ms=TTL_MS)
    server.stop()
    for name, operation in operations(session).items():
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as caught:
            await asyncio.wait_for(operation(store), 5)
        assert time.monotonic() - started < 2.5, name
        assert caught.value.__cause__ is not None, name
        assert session.id not in str(caught.value), name


async def test_operations_fail_fast_while_redis_hangs(server: RedisServer, store: RedisStore) -> None:
    session = await store.create(Generation.GEN2, b"", ttl_ms=TTL_MS)
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)  # accepts connections, answers nothing
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(store.get(session.id), 5)
        assert time.monotonic() - started < 2.5
    finally:
        os.kill(server.pid, signal.SIGCONT)


async def test_the_same_store_works_again_after_redis_restarts(server: RedisServer, store: RedisStore) -> None:
    await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS)
    server.stop()
    with pytest.raises(StoreUnavailable):
        await store.count()
    server.start()
    session = await store.create(Generation.GEN1, b"again", ttl_ms=TTL_MS)
    assert (await store.write(session.id, b"more", expected_version=1)).outcome is WriteOutcome.WRITTEN
    got = await store.get(session.id)
    assert got is not None and got.data == b"more"
    await store.ping()


async def test_wake_ups_work_again_after_redis_restarts(server: RedisServer, store: RedisStore) -> None:
    before = await store.create(Generation.GEN2, b"", ttl_ms=TTL_MS)
    # Opens the subscriber connection, which the outage then breaks.
    await store.wait_for_change(before.id, 1, timeout_s=0.05)
    server.stop()
    server.start()
    session = await store.create(Generation.GEN2, b"", ttl_ms=TTL_MS)
    waiter = asyncio.create_task(store.wait_for_change(session.id, 1, timeout_s=10))
    await asyncio.sleep(0.2)
    await store.write(session.id, b"news", expected_version=1)
    got = await asyncio.wait_for(waiter, 2)
    assert got is not None and got.version == 2


async def test_a_parked_waiter_fails_promptly_when_redis_goes_down(server: RedisServer, store: RedisStore) -> None:
    session = await store.create(Generation.GEN2, b"", ttl_ms=TTL_MS)
    waiter = asyncio.create_task(store.wait_for_change(session.id, 1, timeout_s=30))
    await asyncio.sleep(0.2)
    server.stop()
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(waiter, 3)
    assert store.waiter_count() == 0


async def test_a_lost_subscription_calls_the_change_callbacks_and_a_new_one_works(
    server: RedisServer, store: RedisStore
) -> None:
    """A held poll's callback is its only wake-up: when the subscription drops, every callback is called (the
    poll then reads the session again) and nothing is left registered."""
    sessions = [await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS) for _ in range(2)]
    calls: list[str] = []
    for s in sessions:
        for _ in range(3):
            assert await store.register_change(s.id, 1, lambda s=s: calls.append(s.id)) is True
    assert store.waiter_count() == 6
    server.stop()
    deadline = time.monotonic() + 3
    while len(calls) < 6:
        assert time.monotonic() < deadline, calls
        await asyncio.sleep(0.02)
    assert sorted(calls) == sorted(s.id for s in sessions for _ in range(3))
    assert store.waiter_count() == 0
    server.start()
    session = await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS)
    woken = asyncio.Event()
    assert await store.register_change(session.id, 1, woken.set) is True
    await store.write(session.id, b"news", expected_version=1)
    await asyncio.wait_for(woken.wait(), 2)
    assert store.waiter_count() == 0
    assert len(calls) == 6


async def test_a_write_cut_off_by_an_outage_is_applied_whole_or_not_at_all(
    server: RedisServer, store: RedisStore, raw: Redis
) -> None:
    session = await store.create(Generation.GEN2, b"old", ttl_ms=TTL_MS)
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)
    try:
        # The script reaches the server's socket, but the answer never comes back in time.
        with pytest.raises(StoreUnavailable):
            await store.write(session.id, b"new", expected_version=1, txn_id="t1")
    finally:
        os.kill(server.pid, signal.SIGCONT)
    got = await store.get(session.id)
    assert got is not None
    record = await raw.hget(f"rz:{{{session.id}}}:t", "t1")
    # Whatever Redis did with the request, data, version and txnId record agree with each other (a record is
    # the outcome and version, then the write id of the call that made it).
    outcome = None if record is None else record[:2]
    assert (got.version, got.data, outcome) in {(1, b"old", None), (2, b"new", b"W2")}
    # And the client's retry gets the one answer for the txnId, applied exactly once.
    retry = await store.write(session.id, b"new", expected_version=1, txn_id="t1")
    assert (retry.outcome, retry.version) == (WriteOutcome.WRITTEN, 2)
    final = await store.get(session.id)
    assert final is not None and (final.version, final.data) == (2, b"new")


async def test_a_write_through_another_store_wakes_this_stores_waiter(server: RedisServer, store: RedisStore) -> None:
    other_worker = RedisStore.from_url(server.url, **FAST)
    try:
        session = await store.create(Generation.GEN2, b"", ttl_ms=TTL_MS)
        waiter = asyncio.create_task(store.wait_for_change(session.id, 1, timeout_s=10))
        await asyncio.sleep(0.2)
        assert not waiter.done()
        started = time.monotonic()
        await other_worker.write(session.id, b"from elsewhere", expected_version=1)
        got = await asyncio.wait_for(waiter, 2)
        assert got is not None and got.data == b"from elsewhere"
        assert time.monotonic() - started < 0.5
    finally:
        await other_worker.close()


async def test_a_delete_through_another_store_wakes_this_stores_waiter(server: RedisServer, store: RedisStore) -> None:
    other_worker = RedisStore.from_url(server.url, **FAST)
    try:
        session = await store.create(Generation.GEN2, b"", ttl_ms=TTL_MS)
        waiter = asyncio.create_task(store.wait_for_change(session.id, 1, timeout_s=10))
        await asyncio.sleep(0.2)
        await other_worker.delete(session.id)
        assert await asyncio.wait_for(waiter, 2) is None
    finally:
        await other_worker.close()


async def shard_subscriptions(raw: Redis) -> list[bytes | str]:
    return await raw.pubsub_shardchannels()


async def eventually_subscribed(raw: Redis, expected: int, timeout_s: float = 5.0) -> list[bytes | str]:
    """The server's shard subscriptions once there are ``expected`` of them (or at the deadline)."""
    deadline = time.monotonic() + timeout_s
    while True:  # the server offers nothing to wait on: poll it
        channels = await shard_subscriptions(raw)
        if len(channels) == expected or time.monotonic() > deadline:
            return channels
        await asyncio.sleep(0.02)


async def test_cancelled_waiters_leave_no_subscriptions_behind(store: RedisStore, raw: Redis) -> None:
    sessions = [await store.create(Generation.GEN2, b"", ttl_ms=TTL_MS) for _ in range(20)]
    waiters = [asyncio.create_task(store.wait_for_change(s.id, 1, timeout_s=30)) for s in sessions for _ in range(10)]
    assert len(await eventually_subscribed(raw, 20)) == 20
    for w in waiters:
        w.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    assert store.waiter_count() == 0
    # Unsubscribing is sent in the background: give it a moment to reach the server.
    assert await eventually_subscribed(raw, 0) == []


async def test_thousands_of_parked_waiters_use_no_cpu(store: RedisStore) -> None:
    sessions = [await store.create(Generation.GEN2, b"", ttl_ms=TTL_MS) for _ in range(200)]
    waiters = [asyncio.create_task(store.wait_for_change(s.id, 1, timeout_s=30)) for s in sessions for _ in range(10)]
    try:
        # Parking takes a few round trips each; once they are all parked, the process should go quiet.
        idle_windows = []
        for _ in range(20):
            cpu_before = time.process_time()
            await asyncio.sleep(0.5)
            idle_windows.append(time.process_time() - cpu_before < 0.02)
            if idle_windows[-1]:
                break
        assert idle_windows[-1]
        assert store.waiter_count() == 2_000
        assert not any(w.done() for w in waiters)
    finally:
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
