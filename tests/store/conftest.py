"""The ``store`` fixture: one fresh instance of each backend, so every contract test runs on all of them.

To add a backend, add a factory to ``BACKENDS``: an async context manager that yields an empty store and
cleans up.

``redis`` uses the machine's Redis (``REDIS_URL``, default ``redis://127.0.0.1:6379``) under a random key
prefix per test and deletes exactly those keys afterwards: the server is shared, so it is never flushed.
``redis-cluster`` uses a throwaway 3-master cluster started once per test session from ``redis-server`` and
torn down at the end.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from rendezvous.store import MemoryStore, SessionStore
from rendezvous.store.redis import RedisStore
from tests.support import redis_servers

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")


@contextlib.asynccontextmanager
async def memory_store() -> AsyncIterator[SessionStore]:
    store = MemoryStore()
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def redis_store_at(url: str) -> AsyncIterator[RedisStore]:
    """A :class:`RedisStore` on ``url`` under a fresh key prefix whose keys are all deleted afterwards."""
    prefix = f"rztest-{secrets.token_hex(6)}"
    store = RedisStore.from_url(url, key_prefix=prefix)
    try:
        yield store
    finally:
        await store.close()
        await delete_keys(url, prefix)


async def delete_keys(url: str, prefix: str) -> None:
    """Delete every key under ``prefix`` (on every master of a cluster), and nothing else."""
    cleaner = RedisStore.from_url(url, key_prefix=prefix)
    client: Any = cleaner._client
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for key in keys:
            await client.delete(key)
    finally:
        await cleaner.close()


@contextlib.asynccontextmanager
async def redis_store() -> AsyncIterator[SessionStore]:
    async with redis_store_at(REDIS_URL) as store:
        yield store


class _SharedCluster:
    """One throwaway cluster for the whole test session, started on first use."""

    def __init__(self) -> None:
        self._stack: contextlib.ExitStack | None = None
        self._cluster: redis_servers.RedisCluster | None = None

    def url(self) -> str:
        reason = redis_servers.missing_binaries()
        if reason is not None:
            pytest.skip(f"no throwaway Redis cluster: {reason}")
        if self._cluster is None:
            stack = contextlib.ExitStack()
            self._cluster = stack.enter_context(redis_servers.redis_cluster())
            self._stack = stack
        return self._cluster.url

    def ports(self) -> list[int]:
        """The masters' ports (starting the cluster if need be)."""
        self.url()
        assert self._cluster is not None
        return [node.port for node in self._cluster.nodes]

    def stop(self) -> None:
        stack, self._stack, self._cluster = self._stack, None, None
        if stack is not None:
            stack.close()


shared_cluster = _SharedCluster()
# A backstop for runs that never reach the session fixture's teardown (e.g. interrupted collection).
atexit.register(shared_cluster.stop)


@pytest.fixture(scope="session", autouse=True)
def _stop_shared_cluster() -> Iterator[None]:
    yield
    shared_cluster.stop()


@contextlib.asynccontextmanager
async def redis_cluster_store() -> AsyncIterator[SessionStore]:
    async with redis_store_at(shared_cluster.url()) as store:
        yield store


BACKENDS: dict[str, Callable[[], contextlib.AbstractAsyncContextManager[SessionStore]]] = {
    "memory": memory_store,
    "redis": redis_store,
    "redis-cluster": redis_cluster_store,
}


@pytest.fixture(params=sorted(BACKENDS))
async def store(request: Any) -> AsyncIterator[SessionStore]:
    async with BACKENDS[request.param]() as s:
        yield s
