"""What the memory store does beyond the contract: housekeeping that must not change any answer."""

from __future__ import annotations

from rendezvous.store import Generation, MemoryStore


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_bucket_sweep_judges_each_bucket_by_its_own_rate() -> None:
    clock = _Clock()
    store = MemoryStore(monotonic=clock)
    store._BUCKET_SWEEP_THRESHOLD = 10
    # A slow create bucket, emptied: full again only after 100 s.
    assert await store.rate_limit("create:a", rate_per_s=0.01, burst=1) == 0
    assert await store.rate_limit("create:a", rate_per_s=0.01, burst=1) > 0
    clock.now += 2
    # Enough fast read buckets to trigger a sweep: at their rate, the create bucket would have refilled.
    for i in range(20):
        await store.rate_limit(f"session:{i}", rate_per_s=10.0, burst=1)
    assert await store.rate_limit("create:a", rate_per_s=0.01, burst=1) > 0


async def test_a_bucket_sweep_drops_the_buckets_that_are_full_again() -> None:
    clock = _Clock()
    store = MemoryStore(monotonic=clock)
    store._BUCKET_SWEEP_THRESHOLD = 10
    for i in range(10):
        await store.rate_limit(f"session:{i}", rate_per_s=10.0, burst=1)
    await store.rate_limit("create:a", rate_per_s=0.01, burst=1)
    clock.now += 1
    await store.rate_limit("session:new", rate_per_s=10.0, burst=1)
    assert set(store._buckets) == {"create:a", "session:new"}


async def test_a_change_callback_is_called_once_on_a_write_or_delete_and_counts_as_a_waiter() -> None:
    store = MemoryStore()
    session = await store.create(Generation.GEN1, b"", ttl_ms=60_000)
    calls: list[str] = []
    assert store.on_change(session.id, session.version, lambda: calls.append("a")) is True
    assert store.on_change(session.id, session.version + 1, lambda: calls.append("stale")) is False
    assert store.on_change("no-such-session", 1, lambda: calls.append("gone")) is False
    assert store.waiter_count() == 1
    await store.write(session.id, b"x", expected_version=session.version)
    await store.write(session.id, b"y", expected_version=session.version + 1)
    assert calls == ["a"]
    assert store.waiter_count() == 0
    second = await store.create(Generation.GEN1, b"", ttl_ms=60_000)
    store.on_change(second.id, second.version, lambda: calls.append("b"))
    await store.delete(second.id)
    assert calls == ["a", "b"]


async def test_a_forgotten_change_callback_is_never_called() -> None:
    store = MemoryStore()
    session = await store.create(Generation.GEN1, b"", ttl_ms=60_000)
    calls: list[str] = []

    def callback() -> None:
        calls.append("called")

    store.on_change(session.id, session.version, callback)
    store.forget_change(session.id, callback)
    store.forget_change(session.id, callback)  # twice: nothing happens
    assert store.waiter_count() == 0
    await store.write(session.id, b"x", expected_version=session.version)
    assert calls == []
