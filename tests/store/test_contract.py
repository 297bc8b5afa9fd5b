"""The SessionStore contract: every backend must behave exactly like this."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from rendezvous.store import (
    TXN_RECORDS_KEPT,
    Generation,
    SessionNotFound,
    SessionStore,
    StoreFull,
    WriteOutcome,
    is_opaque_id,
)

TTL_MS = 60_000


async def test_create_returns_version_1_with_the_data(store: SessionStore) -> None:
    s = await store.create(Generation.GEN2, b"hello", ttl_ms=TTL_MS)
    assert s.version == 1
    assert s.data == b"hello"
    assert s.generation is Generation.GEN2


async def test_create_reports_the_lifetime_left(store: SessionStore) -> None:
    before_ms = int(time.time() * 1000)
    s = await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS)
    assert TTL_MS - 2_000 <= s.expires_in_ms <= TTL_MS
    assert before_ms + TTL_MS - 2_000 <= s.expires_at_ms <= before_ms + TTL_MS + 2_000
    assert before_ms - 2_000 <= s.last_modified_ms <= before_ms + 2_000


async def test_ids_are_opaque_identifiers_with_at_least_128_random_bits(store: SessionStore) -> None:
    ids = {(await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS)).id for _ in range(50)}
    assert len(ids) == 50
    for session_id in ids:
        assert is_opaque_id(session_id)
        # URL-safe base64 carries 6 bits per character.
        assert len(session_id) * 6 >= 128


async def test_get_returns_the_stored_session(store: SessionStore) -> None:
    s = await store.create(Generation.GEN1, b"payload", ttl_ms=TTL_MS)
    got = await store.get(s.id)
    assert got is not None
    assert (got.id, got.data, got.version, got.generation) == (s.id, b"payload", 1, Generation.GEN1)


async def test_a_snapshot_without_data_keeps_everything_else(store: SessionStore) -> None:
    s = await store.create(Generation.GEN1, b"payload", ttl_ms=TTL_MS)
    stripped = s.without_data()
    assert stripped.data == b""
    assert dataclasses.replace(stripped, data=s.data) == s


async def test_get_of_an_unknown_id_is_none(store: SessionStore) -> None:
    assert await store.get("no-such-session") is None


async def test_payloads_are_binary_safe(store: SessionStore) -> None:
    data = bytes(range(256)) * 16
    s = await store.create(Generation.GEN1, data, ttl_ms=TTL_MS)
    got = await store.get(s.id)
    assert got is not None and got.data == data


async def test_write_with_the_current_version_replaces_the_data(store: SessionStore) -> None:
    s = await store.create(Generation.GEN2, b"", ttl_ms=TTL_MS)
    result = await store.write(s.id, b"next", expected_version=1)
    assert result.outcome is WriteOutcome.WRITTEN
    assert result.version == 2
    assert not result.replayed
    got = await store.get(s.id)
    assert got is not None and (got.data, got.version) == (b"next", 2)


async def test_write_of_identical_data_still_advances_the_version(store: SessionStore) -> None:
    s = await store.create(Generation.GEN1, b"same", ttl_ms=TTL_MS)
    first = await store.write(s.id, b"same", expected_version=1)
    second = await store.write(s.id, b"same", expected_version=2)
    assert (first.version, second.version) == (2, 3)


async def test_write_with_a_stale_version_conflicts_and_changes_nothing(store: SessionStore) -> None:
    s = await store.create(Generation.GEN1, b"a", ttl_ms=TTL_MS)
    await store.write(s.id, b"b", expected_version=1)
    result = await store.write(s.id, b"c", expected_version=1)
    assert result.outcome is WriteOutcome.CONFLICT
    assert result.version == 2
    assert result.session.data == b"b"
    got = await store.get(s.id)
    assert got is not None and (got.data, got.version) == (b"b", 2)


async def test_write_to_an_unknown_session_raises_not_found(store: SessionStore) -> None:
    with pytest.raises(SessionNotFound):
        await store.write("no-such-session", b"x", expected_version=1)


async def test_write_updates_last_modified_but_not_expiry(store: SessionStore) -> None:
    s = await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS)
    await asyncio.sleep(0.02)
    result = await store.write(s.id, b"x", expected_version=1)
    assert result.session.last_modified_ms > s.last_modified_ms
    assert result.session.expires_at_ms == s.expires_at_ms
    assert result.session.expires_in_ms <= s.expires_in_ms


async def test_a_repeated_txn_id_replays_the_recorded_write(store: SessionStore) -> None:
    s = await store.create(Generation.GEN2, b"", ttl_ms=TTL_MS)
    first = await store.write(s.id, b"one", expected_version=1, txn_id="t1")
    await store.write(s.id, b"two", expected_version=2, txn_id="t2")
    again = await store.write(s.id, b"one", expected_version=1, txn_id="t1")
    assert again.replayed
    assert again.outcome is WriteOutcome.WRITTEN
    assert again.version == first.version == 2
    got = await store.get(s.id)
    assert got is not None and (got.data, got.version) == (b"two", 3)


async def test_a_replay_ignores_changed_data_and_version(store: SessionStore) -> None:
    s = await store.create(Generation.GEN2, b"", ttl_ms=TTL_MS)
    await store.write(s.id, b"one", expected_version=1, txn_id="t1")
    again = await store.write(s.id, b"different", expected_version=2, txn_id="t1")
    assert again.replayed and again.version == 2
    got = await store.get(s.id)
    assert got is not None and (got.data, got.version) == (b"one", 2)


async def test_a_recorded_conflict_is_replayed_as_a_conflict(store: SessionStore) -> None:
    s = await store.create(Generation.GEN2, b"", ttl_ms=TTL_MS)
    conflict = await store.write(s.id, b"x", expected_version=7, txn_id="t1")
    assert conflict.outcome is WriteOutcome.CONFLICT and not conflict.replayed
    # Now the same txnId carries the right version: it must still answer with the recorded conflict.
    again = await store.write(s.id, b"x", expected_version=1, txn_id="t1")
    assert again.replayed
    assert again.outcome is WriteOutcome.CONFLICT
    got = await store.get(s.id)
    assert got is not None and got.version == 1


async def test_only_the_newest_txn_records_of_a_session_are_kept(store: SessionStore) -> None:
    s = await store.create(Generation.GEN2, b"", ttl_ms=TTL_MS)
    forgotten = 5
    # Stale-token writes with fresh txnIds (each recording a conflict), as a client stuck on an old token sends.
    for i in range(TXN_RECORDS_KEPT + forgotten):
        result = await store.write(s.id, b"x", expected_version=7, txn_id=f"t{i}")
        assert result.outcome is WriteOutcome.CONFLICT and not result.replayed
    # The newest are replayed, however many came before them.
    for i in range(forgotten, TXN_RECORDS_KEPT + forgotten):
        again = await store.write(s.id, b"x", expected_version=1, txn_id=f"t{i}")
        assert again.replayed and again.outcome is WriteOutcome.CONFLICT, i
    # The oldest are forgotten: the same txnId is a new request, compared and recorded afresh.
    fresh = await store.write(s.id, b"y", expected_version=1, txn_id="t0")
    assert fresh.outcome is WriteOutcome.WRITTEN and not fresh.replayed
    for i in range(1, forgotten):
        result = await store.write(s.id, b"x", expected_version=7, txn_id=f"t{i}")
        assert not result.replayed, i
    got = await store.get(s.id)
    assert got is not None and (got.data, got.version) == (b"y", 2)


async def test_txn_ids_are_scoped_to_their_session(store: SessionStore) -> None:
    a = await store.create(Generation.GEN2, b"", ttl_ms=TTL_MS)
    b = await store.create(Generation.GEN2, b"", ttl_ms=TTL_MS)
    await store.write(a.id, b"a", expected_version=1, txn_id="shared")
    result = await store.write(b.id, b"b", expected_version=1, txn_id="shared")
    assert result.outcome is WriteOutcome.WRITTEN and not result.replayed


async def test_delete_removes_the_session_for_every_operation(store: SessionStore) -> None:
    s = await store.create(Generation.GEN1, b"x", ttl_ms=TTL_MS)
    assert await store.delete(s.id) is True
    assert await store.get(s.id) is None
    with pytest.raises(SessionNotFound):
        await store.write(s.id, b"y", expected_version=1)
    assert await store.delete(s.id) is False


async def test_delete_of_an_unknown_id_is_false(store: SessionStore) -> None:
    assert await store.delete("no-such-session") is False


async def test_an_expired_session_is_gone_for_every_operation(store: SessionStore) -> None:
    s = await store.create(Generation.GEN2, b"x", ttl_ms=150)
    await store.write(s.id, b"y", expected_version=1, txn_id="t")
    await asyncio.sleep(0.4)
    assert await store.get(s.id) is None
    with pytest.raises(SessionNotFound):
        await store.write(s.id, b"z", expected_version=2)
    with pytest.raises(SessionNotFound):
        await store.write(s.id, b"y", expected_version=1, txn_id="t")
    assert await store.delete(s.id) is False
    assert await store.count() == 0


async def test_writes_do_not_extend_the_lifetime(store: SessionStore) -> None:
    s = await store.create(Generation.GEN1, b"", ttl_ms=400)
    await asyncio.sleep(0.2)
    await store.write(s.id, b"x", expected_version=1)
    await asyncio.sleep(0.35)
    assert await store.get(s.id) is None


async def test_count_reports_live_sessions(store: SessionStore) -> None:
    assert await store.count() == 0
    a = await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS)
    await store.create(Generation.GEN2, b"", ttl_ms=TTL_MS)
    assert await store.count() == 2
    await store.delete(a.id)
    assert await store.count() == 1


async def test_create_beyond_the_maximum_raises_store_full(store: SessionStore) -> None:
    await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS, max_sessions=2)
    second = await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS, max_sessions=2)
    with pytest.raises(StoreFull):
        await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS, max_sessions=2)
    # Live sessions are never evicted to make room.
    assert await store.get(second.id) is not None
    await store.delete(second.id)
    await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS, max_sessions=2)


async def test_expired_sessions_do_not_count_towards_the_maximum(store: SessionStore) -> None:
    await store.create(Generation.GEN1, b"", ttl_ms=100, max_sessions=1)
    await asyncio.sleep(0.3)
    await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS, max_sessions=1)


async def test_concurrent_writes_with_the_same_version_have_exactly_one_winner(store: SessionStore) -> None:
    s = await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS)
    payloads = [f"writer-{i}".encode() for i in range(40)]
    results = await asyncio.gather(*(store.write(s.id, p, expected_version=1) for p in payloads))
    winners = [p for p, r in zip(payloads, results, strict=True) if r.outcome is WriteOutcome.WRITTEN]
    assert len(winners) == 1
    got = await store.get(s.id)
    assert got is not None and got.data == winners[0] and got.version == 2


async def test_concurrent_requests_with_one_txn_id_apply_once(store: SessionStore) -> None:
    s = await store.create(Generation.GEN2, b"", ttl_ms=TTL_MS)
    results = await asyncio.gather(*(store.write(s.id, b"x", expected_version=1, txn_id="t") for _ in range(20)))
    assert all(r.outcome is WriteOutcome.WRITTEN and r.version == 2 for r in results)
    assert sum(not r.replayed for r in results) == 1
    got = await store.get(s.id)
    assert got is not None and got.version == 2


async def test_rate_limit_allows_a_burst_then_asks_to_wait(store: SessionStore) -> None:
    allowed = [await store.rate_limit("ip:a", rate_per_s=1.0, burst=3) for _ in range(3)]
    assert allowed == [0, 0, 0]
    wait_ms = await store.rate_limit("ip:a", rate_per_s=1.0, burst=3)
    assert 0 < wait_ms <= 1_100


async def test_rate_limit_buckets_are_independent(store: SessionStore) -> None:
    await store.rate_limit("ip:a", rate_per_s=1.0, burst=1)
    assert await store.rate_limit("ip:a", rate_per_s=1.0, burst=1) > 0
    assert await store.rate_limit("ip:b", rate_per_s=1.0, burst=1) == 0


async def test_rate_limit_refills_over_time(store: SessionStore) -> None:
    await store.rate_limit("ip:r", rate_per_s=20.0, burst=1)
    assert await store.rate_limit("ip:r", rate_per_s=20.0, burst=1) > 0
    await asyncio.sleep(0.1)
    assert await store.rate_limit("ip:r", rate_per_s=20.0, burst=1) == 0


async def test_wait_for_change_returns_as_soon_as_a_write_lands(store: SessionStore) -> None:
    s = await store.create(Generation.GEN2, b"", ttl_ms=TTL_MS)
    waiter = asyncio.create_task(store.wait_for_change(s.id, 1, timeout_s=10))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await store.write(s.id, b"news", expected_version=1)
    got = await asyncio.wait_for(waiter, 2)
    assert got is not None and (got.version, got.data) == (2, b"news")


async def test_wait_for_change_returns_the_unchanged_session_at_the_deadline(store: SessionStore) -> None:
    s = await store.create(Generation.GEN2, b"old", ttl_ms=TTL_MS)
    got = await store.wait_for_change(s.id, 1, timeout_s=0.2)
    assert got is not None and (got.version, got.data) == (1, b"old")


async def test_wait_for_change_returns_at_once_when_already_changed(store: SessionStore) -> None:
    s = await store.create(Generation.GEN2, b"", ttl_ms=TTL_MS)
    await store.write(s.id, b"x", expected_version=1)
    got = await asyncio.wait_for(store.wait_for_change(s.id, 1, timeout_s=30), 2)
    assert got is not None and got.version == 2


async def test_wait_for_change_returns_none_when_the_session_is_deleted(store: SessionStore) -> None:
    s = await store.create(Generation.GEN2, b"", ttl_ms=TTL_MS)
    waiter = asyncio.create_task(store.wait_for_change(s.id, 1, timeout_s=10))
    await asyncio.sleep(0.1)
    await store.delete(s.id)
    assert await asyncio.wait_for(waiter, 2) is None


async def test_wait_for_change_of_an_unknown_session_is_none(store: SessionStore) -> None:
    assert await store.wait_for_change("no-such-session", 1, timeout_s=5) is None


async def test_a_cancelled_waiter_leaves_nothing_behind(store: SessionStore) -> None:
    s = await store.create(Generation.GEN2, b"", ttl_ms=TTL_MS)
    waiters = [asyncio.create_task(store.wait_for_change(s.id, 1, timeout_s=30)) for _ in range(100)]
    await asyncio.sleep(0.1)
    assert store.waiter_count() == 100
    for w in waiters:
        w.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    assert store.waiter_count() == 0
