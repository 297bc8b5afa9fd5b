"""The combined store operations, on every backend.

``limited_get`` must answer exactly as :meth:`~SessionStore.rate_limit` followed by :meth:`~SessionStore.get`
would, and ``write_generation`` as :meth:`~SessionStore.write` to a session of the given generation only.
"""

from __future__ import annotations

import pytest

from rendezvous.store import Generation, SessionNotFound, SessionStore, WriteOutcome
from rendezvous.store.base import RateLimit

TTL_MS = 60_000


async def test_limited_get_reads_the_session_when_a_token_is_left(store: SessionStore) -> None:
    s = await store.create(Generation.GEN1, b"payload", ttl_ms=TTL_MS)
    retry_after_ms, got = await store.limited_get(s.id, RateLimit("ip:a", 1.0, 5))
    assert retry_after_ms == 0
    assert got is not None
    assert (got.id, got.data, got.version, got.generation) == (s.id, b"payload", 1, Generation.GEN1)
    assert got.expires_at_ms == s.expires_at_ms
    assert 0 < got.expires_in_ms <= TTL_MS


async def test_limited_get_of_a_missing_session_is_none_and_still_takes_a_token(store: SessionStore) -> None:
    limit = RateLimit("ip:m", 1.0, 1)
    assert await store.limited_get("no-such-session", limit) == (0, None)
    assert await store.rate_limit(limit.key, rate_per_s=limit.rate_per_s, burst=limit.burst) > 0


async def test_limited_get_of_an_invalid_id_is_none_and_still_takes_a_token(store: SessionStore) -> None:
    limit = RateLimit("ip:i", 1.0, 1)
    assert await store.limited_get("not/an id", limit) == (0, None)
    assert await store.rate_limit(limit.key, rate_per_s=limit.rate_per_s, burst=limit.burst) > 0


async def test_limited_get_with_an_empty_bucket_asks_to_wait_and_reads_nothing(store: SessionStore) -> None:
    s = await store.create(Generation.GEN2, b"x", ttl_ms=TTL_MS)
    limit = RateLimit("ip:e", 1.0, 2)
    assert (await store.limited_get(s.id, limit))[0] == 0
    assert (await store.limited_get(s.id, limit))[0] == 0
    retry_after_ms, got = await store.limited_get(s.id, limit)
    assert 0 < retry_after_ms <= 1_100
    assert got is None


async def test_limited_get_shares_its_bucket_with_rate_limit(store: SessionStore) -> None:
    s = await store.create(Generation.GEN2, b"x", ttl_ms=TTL_MS)
    assert await store.rate_limit("ip:s", rate_per_s=1.0, burst=1) == 0
    assert (await store.limited_get(s.id, RateLimit("ip:s", 1.0, 1)))[0] > 0


async def test_limited_get_of_a_deleted_session_is_none(store: SessionStore) -> None:
    s = await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS)
    await store.delete(s.id)
    assert await store.limited_get(s.id, RateLimit("ip:d", 1.0, 5)) == (0, None)


async def test_write_generation_writes_a_session_of_that_generation(store: SessionStore) -> None:
    s = await store.create(Generation.GEN1, b"old", ttl_ms=TTL_MS)
    result = await store.write_generation(s.id, b"new", generation=Generation.GEN1, expected_version=1)
    assert (result.outcome, result.version, result.session.data) == (WriteOutcome.WRITTEN, 2, b"new")


async def test_write_generation_leaves_a_session_of_the_other_generation_alone(store: SessionStore) -> None:
    s = await store.create(Generation.GEN2, b"old", ttl_ms=TTL_MS)
    with pytest.raises(SessionNotFound):
        await store.write_generation(s.id, b"new", generation=Generation.GEN1, expected_version=1, txn_id="t1")
    got = await store.get(s.id)
    assert got is not None and (got.data, got.version) == (b"old", 1)
    # Nothing was recorded against the txnId either: the same txnId through the right generation writes.
    result = await store.write_generation(s.id, b"new", generation=Generation.GEN2, expected_version=1, txn_id="t1")
    assert (result.outcome, result.replayed) == (WriteOutcome.WRITTEN, False)


async def test_write_generation_of_a_missing_session_raises_not_found(store: SessionStore) -> None:
    with pytest.raises(SessionNotFound):
        await store.write_generation("no-such-session", b"x", generation=Generation.GEN2, expected_version=1)


async def test_write_generation_conflicts_on_a_stale_version_with_the_current_session(store: SessionStore) -> None:
    s = await store.create(Generation.GEN1, b"a", ttl_ms=TTL_MS)
    await store.write_generation(s.id, b"b", generation=Generation.GEN1, expected_version=1)
    result = await store.write_generation(s.id, b"c", generation=Generation.GEN1, expected_version=1)
    assert (result.outcome, result.version, result.session.data) == (WriteOutcome.CONFLICT, 2, b"b")


async def test_write_generation_replays_a_recorded_txn_id(store: SessionStore) -> None:
    s = await store.create(Generation.GEN2, b"a", ttl_ms=TTL_MS)
    first = await store.write_generation(s.id, b"b", generation=Generation.GEN2, expected_version=1, txn_id="t")
    again = await store.write_generation(s.id, b"b", generation=Generation.GEN2, expected_version=1, txn_id="t")
    assert (again.outcome, again.version, again.replayed) == (first.outcome, first.version, True)
