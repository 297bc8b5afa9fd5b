"""The Redis store when a reply is lost: the script ran, the connection broke before its answer arrived.

The store then sends the script again on a fresh connection (``retries``; on a cluster, redis-py's cluster
client does). Every mutating script must answer that re-send exactly as it answered the first attempt: a PUT
whose payload was stored is not a conflict, a create makes one session (counted once), a delete that deleted
is not "no such session".

A :class:`~tests.support.fault_proxy.FaultProxy` sits between the store and each Redis server (on a cluster,
one per master, through redis-py's ``address_remap``) and loses the reply to one chosen script call. A single
server is tried both over the store's pipelined connection and over redis-py's client (the fallback), which
re-sends by itself.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from rendezvous.store import Generation, WriteOutcome
from rendezvous.store import _redis_pipeline as redis_pipeline
from rendezvous.store import _redis_scripts as scripts
from rendezvous.store.redis import RedisStore
from tests.store.conftest import REDIS_URL, shared_cluster
from tests.support.fault_proxy import FaultProxy, fault_proxy

TTL_MS = 60_000
FAST: dict[str, Any] = {"connect_timeout_s": 1.0, "socket_timeout_s": 1.0}


@dataclass
class Lossy:
    """A store whose every Redis connection goes through a fault proxy."""

    store: RedisStore
    proxies: list[FaultProxy]
    #: The Redis servers behind the proxies (every master of a cluster), for looking at what is stored.
    ports: list[int]

    @contextlib.contextmanager
    def losing_one_reply(
        self, script: AsyncScript, meanwhile: Callable[[], Awaitable[None]] | None = None
    ) -> Iterator[None]:
        """Lose the reply to the next call of ``script`` (on whichever server it goes to).

        ``meanwhile`` runs between the lost reply and the store's re-send.
        """
        before = sum(p.dropped for p in self.proxies)
        for proxy in self.proxies:
            proxy.drop_reply(script.sha.encode(), meanwhile=meanwhile)
        try:
            yield
        finally:
            for proxy in self.proxies:
                proxy.disarm()
        assert sum(p.dropped for p in self.proxies) == before + 1, "no reply was lost"

    async def stored_sessions(self) -> int:
        """How many session hashes exist in Redis under the store's prefix, counted or not."""
        total = 0
        for port in self.ports:
            raw = Redis(host="127.0.0.1", port=port)
            try:
                total += len([k async for k in raw.scan_iter(match=f"{self.store._prefix}:*:s", count=1000)])
            finally:
                await raw.aclose()
        return total


async def _load_scripts(ports: list[int]) -> None:
    # Loaded beforehand, so that the reply a test loses is the script's own, never a NOSCRIPT error.
    texts = [v for k, v in vars(scripts).items() if k.isupper() and isinstance(v, str)]
    for port in ports:
        raw = Redis(host="127.0.0.1", port=port)
        try:
            for text in texts:
                await raw.script_load(text)
        finally:
            await raw.aclose()


async def _delete_keys(ports: list[int], prefix: str) -> None:
    for port in ports:
        raw = Redis(host="127.0.0.1", port=port)
        try:
            keys = [k async for k in raw.scan_iter(match=f"{prefix}:*", count=1000)]
            for key in keys:  # one by one: a cluster node refuses keys of several slots in one command
                await raw.delete(key)
        finally:
            await raw.aclose()


@pytest.fixture(params=["redis", "redis-unpipelined", "redis-cluster"])
async def lossy(request: Any, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Lossy]:
    single = request.param != "redis-cluster"
    if single:
        port = urlsplit(REDIS_URL).port
        ports = [6379 if port is None else port]
    else:
        ports = shared_cluster.ports()
    await _load_scripts(ports)
    prefix = f"rztest-{secrets.token_hex(6)}"
    async with contextlib.AsyncExitStack() as stack:
        proxies = {port: await stack.enter_async_context(fault_proxy(port)) for port in ports}
        if single:
            store = RedisStore.from_url(proxies[ports[0]].url, key_prefix=prefix, **FAST)
            if request.param == "redis-unpipelined":
                # The fallback through redis-py's client (see docs/redis.md), which re-sends by itself.
                monkeypatch.setattr(redis_pipeline, "Pipe", _unsupported)
                await store.count()
                assert not store.pipelined
        else:

            def through_proxy(address: tuple[str, int]) -> tuple[str, int]:
                proxy = proxies.get(address[1])
                return address if proxy is None else ("127.0.0.1", proxy.port)

            entry = proxies[ports[0]].port
            store = RedisStore.from_url(
                f"redis+cluster://127.0.0.1:{entry}", key_prefix=prefix, address_remap=through_proxy, **FAST
            )
        try:
            yield Lossy(store, list(proxies.values()), ports)
        finally:
            await store.close()
            await _delete_keys(ports, prefix)


def _unsupported(*args: object, **kwargs: object) -> None:
    raise redis_pipeline.UnsupportedConnection


def _direct_url(lossy: Lossy) -> str:
    """A URL that reaches the same Redis without the proxies."""
    scheme = "redis+cluster" if isinstance(lossy.store._client, RedisCluster) else "redis"
    return f"{scheme}://127.0.0.1:{lossy.ports[0]}"


def _create_scripts(store: RedisStore) -> list[AsyncScript]:
    # Pipelined on one server: count and store in one script. Else: count (reserve), then store.
    return [store._create_counted] if store.pipelined else [store._reserve, store._create]


async def test_a_create_whose_reply_was_lost_makes_one_session_counted_once(lossy: Lossy) -> None:
    store = lossy.store
    for script in _create_scripts(store):
        before = await store.count()
        with lossy.losing_one_reply(script):
            # At the maximum once the first attempt has run: the re-send must not count it a second time.
            session = await store.create(Generation.GEN2, b"x", ttl_ms=TTL_MS, max_sessions=before + 1)
        assert await store.count() == before + 1
        assert await lossy.stored_sessions() == before + 1
        got = await store.get(session.id)
        assert got is not None and (got.data, got.version, got.generation) == (b"x", 1, Generation.GEN2)
        assert abs(got.expires_at_ms - session.expires_at_ms) <= 1


async def test_a_gen1_write_whose_reply_was_lost_is_reported_written(lossy: Lossy) -> None:
    store = lossy.store
    session = await store.create(Generation.GEN1, b"old", ttl_ms=TTL_MS)
    with lossy.losing_one_reply(store._write):
        result = await store.write_generation(session.id, b"new", generation=Generation.GEN1, expected_version=1)
    assert (result.outcome, result.version, result.replayed) == (WriteOutcome.WRITTEN, 2, False)
    assert (result.session.data, result.session.version) == (b"new", 2)
    # The next write, with the version the answer reported, goes through.
    after = await store.write_generation(session.id, b"newer", generation=Generation.GEN1, expected_version=2)
    assert (after.outcome, after.version) == (WriteOutcome.WRITTEN, 3)


async def test_a_write_whose_reply_was_lost_is_reported_written_though_another_landed_since(lossy: Lossy) -> None:
    store = lossy.store
    session = await store.create(Generation.GEN1, b"v1", ttl_ms=TTL_MS)
    # The peer sees version 2 (published by the first attempt) and answers before this worker's re-send.
    peer = RedisStore.from_url(_direct_url(lossy), key_prefix=store._prefix)

    async def peer_writes() -> None:
        written = await peer.write(session.id, b"v3", expected_version=2)
        assert written.outcome is WriteOutcome.WRITTEN

    try:
        with lossy.losing_one_reply(store._write, meanwhile=peer_writes):
            result = await store.write(session.id, b"v2", expected_version=1)
    finally:
        await peer.close()
    assert (result.outcome, result.version, result.replayed) == (WriteOutcome.WRITTEN, 2, False)
    assert (result.session.data, result.session.version) == (b"v3", 3)


async def test_a_txn_write_whose_reply_was_lost_is_answered_as_first_applied(lossy: Lossy) -> None:
    store = lossy.store
    session = await store.create(Generation.GEN2, b"", ttl_ms=TTL_MS)
    with lossy.losing_one_reply(store._write):
        result = await store.write_generation(
            session.id, b"x", generation=Generation.GEN2, expected_version=1, txn_id="t1"
        )
    assert (result.outcome, result.version, result.replayed) == (WriteOutcome.WRITTEN, 2, False)
    # A client's own retry of the txnId is a replay, as ever.
    again = await store.write(session.id, b"x", expected_version=1, txn_id="t1")
    assert (again.outcome, again.version, again.replayed) == (WriteOutcome.WRITTEN, 2, True)
    got = await store.get(session.id)
    assert got is not None and (got.data, got.version) == (b"x", 2)


async def test_a_txn_conflict_whose_reply_was_lost_is_answered_as_first_recorded(lossy: Lossy) -> None:
    store = lossy.store
    session = await store.create(Generation.GEN2, b"", ttl_ms=TTL_MS)
    with lossy.losing_one_reply(store._write):
        result = await store.write(session.id, b"x", expected_version=5, txn_id="t1")
    assert (result.outcome, result.version, result.replayed) == (WriteOutcome.CONFLICT, 1, False)
    again = await store.write(session.id, b"x", expected_version=1, txn_id="t1")
    assert (again.outcome, again.replayed) == (WriteOutcome.CONFLICT, True)


async def test_a_delete_whose_reply_was_lost_is_reported_deleted(lossy: Lossy) -> None:
    store = lossy.store
    kept = await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS)
    session = await store.create(Generation.GEN1, b"", ttl_ms=TTL_MS)
    delete_script = store._delete_counted if store.pipelined else store._delete
    with lossy.losing_one_reply(delete_script):
        assert await store.delete(session.id) is True
    assert await store.get(session.id) is None
    assert await store.count() == 1
    assert await lossy.stored_sessions() == 1
    # Deleting again is a new request: there is nothing left to delete.
    assert await store.delete(session.id) is False
    assert await store.get(kept.id) is not None
