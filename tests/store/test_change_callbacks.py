"""The change-callback contract (``register_change`` / ``forget_change``), on every backend.

A held Gen-1 poll registers one callback and waits on its connection; these are the guarantees it relies on.
On Redis a callback is woken through the session's shard channel, so its calls arrive a round trip later:
the tests wait for them, and give a wrong call the same time to show up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from rendezvous.store import Generation, Session, SessionStore
from tests.support.deadlines import eventually

TTL_MS = 60_000
#: Long enough for a message published by a write to reach the subscriber of the same process.
SETTLE_S = 0.2


class Calls:
    """A callback that counts its calls."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


async def registered(store: SessionStore, session: Session, callback: Callable[[], object]) -> None:
    assert await store.register_change(session.id, session.version, callback) is True


async def test_a_callback_is_called_once_on_a_write(store: SessionStore) -> None:
    s = await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS)
    calls = Calls()
    await registered(store, s, calls)
    assert store.waiter_count() == 1
    await asyncio.sleep(SETTLE_S)
    assert calls.count == 0
    await store.write(s.id, b"x", expected_version=1)
    await eventually(lambda: calls.count == 1)
    assert store.waiter_count() == 0
    await store.write(s.id, b"y", expected_version=2)
    await asyncio.sleep(SETTLE_S)
    assert calls.count == 1


async def test_a_callback_is_called_once_on_a_delete(store: SessionStore) -> None:
    s = await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS)
    calls = Calls()
    await registered(store, s, calls)
    assert await store.delete(s.id)
    await eventually(lambda: calls.count == 1)
    assert store.waiter_count() == 0
    await asyncio.sleep(SETTLE_S)
    assert calls.count == 1


async def test_every_callback_of_a_session_is_called(store: SessionStore) -> None:
    s = await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS)
    callbacks = [Calls() for _ in range(20)]
    for calls in callbacks:
        await registered(store, s, calls)
    assert store.waiter_count() == 20
    await store.write(s.id, b"x", expected_version=1)
    await eventually(lambda: all(calls.count == 1 for calls in callbacks))
    assert store.waiter_count() == 0


async def test_a_write_to_another_session_calls_nobody(store: SessionStore) -> None:
    watched = await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS)
    other = await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS)
    calls = Calls()
    await registered(store, watched, calls)
    await store.write(other.id, b"x", expected_version=1)
    assert await store.delete(other.id)
    await asyncio.sleep(SETTLE_S)
    assert calls.count == 0
    assert store.waiter_count() == 1
    await store.write(watched.id, b"x", expected_version=1)
    await eventually(lambda: calls.count == 1)


async def test_registering_on_a_session_that_moved_already_is_false_and_never_calls(store: SessionStore) -> None:
    s = await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS)
    await store.write(s.id, b"x", expected_version=1)
    calls = Calls()
    assert await store.register_change(s.id, 1, calls) is False
    assert await store.register_change("no-such-session", 1, calls) is False
    assert await store.register_change("not an id!", 1, calls) is False
    gone = await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS)
    await store.delete(gone.id)
    assert await store.register_change(gone.id, 1, calls) is False
    assert store.waiter_count() == 0
    await store.write(s.id, b"y", expected_version=2)
    await asyncio.sleep(SETTLE_S)
    assert calls.count == 0


async def test_a_forgotten_callback_is_never_called(store: SessionStore) -> None:
    s = await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS)
    forgotten, kept = Calls(), Calls()
    await registered(store, s, forgotten)
    await registered(store, s, kept)
    store.forget_change(s.id, forgotten)
    store.forget_change(s.id, forgotten)  # twice: nothing happens
    assert store.waiter_count() == 1
    await store.write(s.id, b"x", expected_version=1)
    await eventually(lambda: kept.count == 1)
    await asyncio.sleep(SETTLE_S)
    assert forgotten.count == 0
    store.forget_change(s.id, kept)  # after its call: nothing happens
    assert store.waiter_count() == 0


async def test_the_last_forgotten_callback_leaves_nothing_behind_and_the_next_one_works(store: SessionStore) -> None:
    s = await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS)
    for _ in range(3):
        callbacks = [Calls() for _ in range(10)]
        for calls in callbacks:
            await registered(store, s, calls)
        for calls in callbacks:
            store.forget_change(s.id, calls)
        assert store.waiter_count() == 0
    calls = Calls()
    await registered(store, s, calls)
    await store.write(s.id, b"x", expected_version=1)
    await eventually(lambda: calls.count == 1)
    assert store.waiter_count() == 0


async def test_cancelled_registrations_leave_nothing_behind(store: SessionStore) -> None:
    sessions = [await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS) for _ in range(5)]
    callbacks = [(s, Calls()) for s in sessions for _ in range(10)]
    tasks = [asyncio.create_task(store.register_change(s.id, 1, calls)) for s, calls in callbacks]
    await asyncio.sleep(0)
    for task in tasks:
        task.cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for (s, calls), outcome in zip(callbacks, outcomes, strict=True):
        assert outcome is True or isinstance(outcome, asyncio.CancelledError)
        if outcome is True:
            store.forget_change(s.id, calls)
    assert store.waiter_count() == 0
