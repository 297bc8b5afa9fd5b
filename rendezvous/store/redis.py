"""The shared store: sessions in Redis (or Valkey), one server or a cluster, for any number of workers.

Key layout, for the default prefix ``rz`` (see ``docs/redis.md``)::

    rz:{<id>}:s      hash: generation, data, version, last-modified, expires-at, the newest versions' write ids;
                     PEXPIRE = the session's TTL
    rz:{<id>}:t      hash: txnId -> recorded outcome; expires at the same instant as the session
    rz:{<id>}:o      list: the recorded txnIds, oldest first (at most TXN_RECORDS_KEPT); expires with them
    rz:{<id>}:d      string: the write id of the call that deleted the session; for a minute after the delete
    rz:{<id>}:c      shard channel: a message on every write and delete (wakes ``wait_for_change`` and the
                     change callbacks of held polls)
    rz:live          sorted set: session id -> deadline ms; the shared session count
    rz:rl:<key>      hash: one rate-limit token bucket; expires once it would be full again

A session's keys share the ``{<id>}`` hash tag, so each of its scripts touches one cluster slot. Every write
is one Lua script (compare-and-swap, txnId record, version bump and publish together), so nothing is ever
half-written. On a single server, a few scripts also touch the session count or a rate-limit bucket (other
slots), saving a round trip: creating and counting, deleting and uncounting, a rate-limit take and a read.
A script whose reply was lost with its connection is sent again, though it may have run: each call that
changes a session carries a write id, the same in every attempt, so that a re-send answers what the first
attempt did (see :mod:`._redis_scripts`).
Every Redis failure surfaces as :class:`~rendezvous.store.base.StoreUnavailable`; connections are re-made on
the next call once Redis answers again.

The scripts are in :mod:`._redis_scripts`, the pipelined connection of a single server in
:mod:`._redis_pipeline`, and the shard-channel subscriber that wakes long polls and held polls in
:mod:`._redis_subscriber`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from . import _redis_scripts as scripts
from ._redis_common import REDIS_ERRORS, UNAVAILABLE_MESSAGE, log, unavailable_on_redis_errors
from ._redis_pipeline import Multiplexer, UnsupportedConnection
from ._redis_subscriber import Subscriber, SubscriptionLost
from .base import (
    TXN_RECORDS_KEPT,
    Generation,
    RateLimit,
    Session,
    SessionNotFound,
    SessionStore,
    StoreFull,
    StoreUnavailable,
    WriteOutcome,
    WriteResult,
    is_opaque_id,
    new_session_id,
)

__all__ = ["RedisStore"]

_CLUSTER_SCHEMES: Final = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_PLAIN_SCHEMES: Final = frozenset({"redis", "rediss", "unix"})

#: How many times one ``wait_for_change`` (or ``register_change``) re-subscribes after its subscription was lost
#: before giving up.
_RESUBSCRIBE_ATTEMPTS: Final = 3


def _raise_if_cancelled() -> None:
    """Deliver a cancellation that a redis-py call swallowed.

    On Python 3.11, ``asyncio.wait_for`` (which redis-py wraps socket writes in) can drop a cancellation that
    arrives just as the write completes; a waiter must not then park for its whole timeout.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _int(value: Any) -> int:
    return int(value)


def _write_id() -> str:
    """A fresh write id: picked once per store call and sent with each of its attempts (96 random bits)."""
    return secrets.token_urlsafe(12)


class RedisStore(SessionStore):
    """:class:`SessionStore` on Redis (or Valkey), a single server or a cluster, shared by every worker.

    Build it with :meth:`from_url`, or pass a ready ``redis.asyncio`` client (with
    ``decode_responses=False``).
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        key_prefix: str = "rz",
        max_connections: int = 100,
        queue_timeout_s: float = 3.0,
        subscriber_heartbeat_s: float = 15.0,
    ) -> None:
        if not key_prefix or "{" in key_prefix or "}" in key_prefix:
            # A brace in the prefix would become the hash tag and put every key into one slot.
            raise ValueError("key_prefix must be non-empty and must not contain '{' or '}'")
        self._client: Redis | RedisCluster = client
        self._prefix = key_prefix
        self._live_key = f"{key_prefix}:live"
        self._subscriber = Subscriber(client, heartbeat_s=subscriber_heartbeat_s)
        self._waiters = 0
        # redis-py fails a command at once when its pool is exhausted; a burst should queue briefly instead.
        self._connections = asyncio.Semaphore(max_connections)
        self._queue_timeout_s = queue_timeout_s
        #: One server: every script call shares one pipelined connection (see :class:`Multiplexer`). A
        #: cluster routes each call to its slot's node through redis-py's cluster client.
        self._multiplexer = Multiplexer(client) if isinstance(client, Redis) else None
        retry = client.get_retry() if isinstance(client, Redis) else None
        #: Re-sends after a connection error, as the client's own retry policy does for its commands.
        self._retries = retry.get_retries() if retry is not None else 0
        register = client.register_script
        self._reserve = register(scripts.RESERVE)
        self._release = register(scripts.RELEASE)
        self._count = register(scripts.COUNT)
        self._create = register(scripts.CREATE)
        self._get = register(scripts.GET)
        self._write = register(scripts.WRITE)
        self._delete = register(scripts.DELETE)
        self._create_counted = register(scripts.CREATE_COUNTED)
        self._delete_counted = register(scripts.DELETE_COUNTED)
        self._rate_limit = register(scripts.RATE_LIMIT)
        self._limited_get = register(scripts.LIMITED_GET)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        key_prefix: str = "rz",
        connect_timeout_s: float = 1.0,
        socket_timeout_s: float = 2.0,
        retries: int = 1,
        max_connections: int = 100,
        subscriber_heartbeat_s: float = 15.0,
        **redis_options: Any,
    ) -> RedisStore:
        """A store for ``url``: ``redis://``, ``rediss://`` (TLS), ``unix://``, or a cluster with
        ``redis+cluster://`` / ``rediss+cluster://`` (any one node's address; the others are discovered).

        The timeouts are short so that an outage turns into :class:`StoreUnavailable` quickly instead of
        parking requests. ``retries`` re-sends a command after a connection error (a stale pooled connection
        after a Redis restart, a cluster failover; on a cluster redis-py also re-sends after a timeout). The
        first attempt may have run with only its reply lost: every script that changes a session answers a
        re-send as it answered the first attempt (see ``docs/redis.md``). At most ``max_connections`` commands
        run at once (per node of a cluster); more wait up to the time the timeouts allow. Other keyword
        arguments go to the redis-py client (``ssl_ca_certs``, ``username``, ...).
        """
        scheme, sep, rest = url.partition("://")
        if not sep:
            raise ValueError("the Redis URL needs a scheme such as redis://")
        scheme = scheme.lower()
        options: dict[str, Any] = {
            "socket_connect_timeout": connect_timeout_s,
            "socket_timeout": socket_timeout_s,
            "retry": Retry(NoBackoff(), retries, supported_errors=(RedisConnectionError,)),
            "max_connections": max_connections,
            **redis_options,
            # Payloads are bytes: decoding would corrupt them.
            "decode_responses": False,
        }
        client: Redis | RedisCluster
        if scheme in _CLUSTER_SCHEMES:
            client = RedisCluster.from_url(f"{_CLUSTER_SCHEMES[scheme]}://{rest}", **options)
        elif scheme in _PLAIN_SCHEMES:
            client = Redis.from_url(url, **options)
        else:
            raise ValueError("unsupported Redis URL scheme; use redis, rediss, unix, redis+cluster or rediss+cluster")
        return cls(
            client,
            key_prefix=key_prefix,
            max_connections=max_connections,
            queue_timeout_s=connect_timeout_s + socket_timeout_s,
            subscriber_heartbeat_s=subscriber_heartbeat_s,
        )

    # -- keys ------------------------------------------------------------------------------------------------

    def _session_key(self, session_id: str) -> str:
        return f"{self._prefix}:{{{session_id}}}:s"

    def _txn_key(self, session_id: str) -> str:
        return f"{self._prefix}:{{{session_id}}}:t"

    def _txn_order_key(self, session_id: str) -> str:
        return f"{self._prefix}:{{{session_id}}}:o"

    def _record_keys(self, session_id: str) -> list[str]:
        """The session's keys that scripts write: the session, its txnId records and their order."""
        return [self._session_key(session_id), self._txn_key(session_id), self._txn_order_key(session_id)]

    def _deletion_keys(self, session_id: str) -> list[str]:
        """The keys a delete script takes: :meth:`_record_keys` and the deletion record."""
        return [*self._record_keys(session_id), f"{self._prefix}:{{{session_id}}}:d"]

    def _channel(self, session_id: str) -> bytes:
        return f"{self._prefix}:{{{session_id}}}:c".encode()

    def _bucket_key(self, key: str) -> str:
        return f"{self._prefix}:rl:{key}"

    async def _call(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """Run ``script``, waiting for a free slot if ``max_connections`` calls are in flight.

        Raises redis-py's errors.
        """
        connections = self._connections
        if connections.locked():
            try:
                async with asyncio.timeout(self._queue_timeout_s):
                    await connections.acquire()
            except TimeoutError as exc:
                raise RedisConnectionError("no free Redis connection") from exc
        else:
            await connections.acquire()
        try:
            multiplexer = self._multiplexer
            if multiplexer is None:
                return await script(keys=keys, args=args)
            return await self._call_pipelined(multiplexer, script, keys, args)
        finally:
            connections.release()

    async def _call_pipelined(
        self, multiplexer: Multiplexer, script: AsyncScript, keys: list[str], args: list[Any]
    ) -> Any:
        """Run ``script`` over the pipelined connection, or through redis-py's client where that cannot serve."""
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        attempt = 0
        while True:
            try:
                return await multiplexer.call(command)
            except UnsupportedConnection:
                # The multiplexer uses a private attribute of redis-py's connections; if a redis-py release
                # changes it, the store keeps working through redis-py's own client, only slower.
                log.warning("redis-py's connection is not the one expected: not pipelining script calls")
                self._multiplexer = None
                await multiplexer.close()
                return await script(keys=keys, args=args)
            except NoScriptError:
                # Redis lost its script cache (a restart, SCRIPT FLUSH): the script object loads it again.
                return await script(keys=keys, args=args)
            except RedisConnectionError:
                # The first attempt may have run with only its reply lost: the scripts answer a re-send as they
                # answered it (see _redis_scripts). Not after a timeout: a server that hung fails the call fast.
                attempt += 1
                if attempt > self._retries:
                    raise

    async def _run(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        with unavailable_on_redis_errors():
            return await self._call(script, keys, args)

    def _snapshot(self, session_id: str, fields: list[Any]) -> Session:
        generation, data, version, modified, expires_at, pttl = fields
        return Session(
            id=session_id,
            generation=Generation(_int(generation)),
            data=bytes(data),
            version=_int(version),
            last_modified_ms=_int(modified),
            expires_at_ms=_int(expires_at),
            expires_in_ms=max(0, _int(pttl)),
        )

    # -- SessionStore ----------------------------------------------------------------------------------------

    async def create(
        self, generation: Generation, data: bytes, *, ttl_ms: int, max_sessions: int | None = None
    ) -> Session:
        if ttl_ms <= 0:
            raise ValueError("ttl_ms must be positive")
        limit = -1 if max_sessions is None else max_sessions
        if self._multiplexer is not None:
            return await self._create_counted_session(generation, data, ttl_ms, limit)
        # On a cluster the count and the session live in different slots, so no one script can do both. Order and
        # compensation keep them consistent: the session is counted first and stored second, so a stored
        # session is always counted. If storing fails, the session keys are deleted (in case the script ran
        # but its answer was lost) and then the reservation is released. If Redis is unreachable for that too,
        # what is left is a reservation scored by its deadline: it stops counting by itself when the session
        # would have expired. No session is ever stored uncounted, which would let the store exceed
        # max_sessions. Each script is safe to re-send: the session id (new to each create, the same in its
        # re-sends) makes the reservation idempotent, and the write id lets storing recognise its own session.
        for _ in range(3):
            session_id = new_session_id()
            write_id = _write_id()
            try:
                now_ms = _int(await self._run(self._reserve, [self._live_key], [session_id, ttl_ms, limit]))
            except StoreUnavailable:
                # The reservation may have been made with only its answer lost.
                await self._release_reservation(session_id)
                raise
            if now_ms < 0:
                raise StoreFull
            try:
                created = await self._run(
                    self._create, [self._session_key(session_id)], [int(generation), data, ttl_ms, write_id]
                )
            except BaseException:
                await self._forget(session_id)
                raise
            if created is None:
                # 192 random bits: never in practice, but the reservation must not outlive the attempt.
                await self._release_reservation(session_id)
                continue
            return self._created(session_id, generation, data, ttl_ms, created)
        raise StoreUnavailable("could not allocate a session id")

    async def _create_counted_session(self, generation: Generation, data: bytes, ttl_ms: int, limit: int) -> Session:
        """:meth:`create` on a single server: counting and storing the session are one script."""
        for _ in range(3):
            # Both chosen before the first attempt: a re-send after a lost reply finds its own session.
            session_id = new_session_id()
            keys = [self._live_key, self._session_key(session_id)]
            args = [session_id, int(generation), data, ttl_ms, limit, _write_id()]
            try:
                created = await self._run(self._create_counted, keys, args)
            except BaseException:
                # The script may have run with only its answer lost: nobody will ever know the id, so undo it.
                await self._forget(session_id)
                raise
            if created is None:
                continue  # 192 random bits: never in practice
            if not isinstance(created, list):
                raise StoreFull
            return self._created(session_id, generation, data, ttl_ms, created)
        raise StoreUnavailable("could not allocate a session id")

    @staticmethod
    def _created(session_id: str, generation: Generation, data: bytes, ttl_ms: int, reply: list[Any]) -> Session:
        created_ms, pttl = (_int(v) for v in reply)
        return Session(
            id=session_id,
            generation=generation,
            data=data,
            version=1,
            last_modified_ms=created_ms,
            expires_at_ms=created_ms + ttl_ms,
            expires_in_ms=max(0, pttl),
        )

    async def _forget(self, session_id: str) -> None:
        """Best-effort undo of a create whose outcome is unknown (see :meth:`create`)."""
        undo = self._call(self._delete, self._deletion_keys(session_id), self._delete_args(session_id))
        try:
            # Shielded: a request cancelled mid-create must still clean up after itself.
            await asyncio.shield(undo)
        except REDIS_ERRORS:
            # The session may exist: keep it counted (its reservation lapses with it).
            return
        await self._release_reservation(session_id)

    async def _release_reservation(self, session_id: str) -> None:
        try:
            await asyncio.shield(self._call(self._release, [self._live_key], [session_id]))
        except REDIS_ERRORS:
            log.warning("could not release a session reservation; it lapses at the session's deadline")

    async def get(self, session_id: str) -> Session | None:
        if not is_opaque_id(session_id):
            return None
        fields = await self._run(self._get, [self._session_key(session_id)], [])
        return None if fields is None else self._snapshot(session_id, fields)

    async def write(
        self, session_id: str, data: bytes, *, expected_version: int, txn_id: str | None = None
    ) -> WriteResult:
        return await self._write_script(session_id, data, expected_version, txn_id, None)

    async def write_generation(
        self,
        session_id: str,
        data: bytes,
        *,
        generation: Generation,
        expected_version: int,
        txn_id: str | None = None,
    ) -> WriteResult:
        return await self._write_script(session_id, data, expected_version, txn_id, generation)

    async def _write_script(
        self, session_id: str, data: bytes, expected_version: int, txn_id: str | None, generation: Generation | None
    ) -> WriteResult:
        if not is_opaque_id(session_id):
            raise SessionNotFound
        reply = await self._run(
            self._write,
            self._record_keys(session_id),
            [
                data,
                expected_version,
                txn_id if txn_id is not None else "",
                self._channel(session_id),
                "" if generation is None else int(generation),
                TXN_RECORDS_KEPT,
                _write_id(),
            ],
        )
        if reply is None:
            raise SessionNotFound
        outcome_code = bytes(reply[0]).decode()
        answered = _int(reply[1])
        outcome = WriteOutcome.WRITTEN if outcome_code.endswith("W") else WriteOutcome.CONFLICT
        return WriteResult(
            outcome,
            answered,
            self._snapshot(session_id, reply[2:]),
            replayed=outcome_code.startswith("R"),
        )

    async def delete(self, session_id: str) -> bool:
        if not is_opaque_id(session_id):
            return False
        if self._multiplexer is not None:
            keys = [*self._deletion_keys(session_id), self._live_key]
            args = [*self._delete_args(session_id), session_id]
            return _int(await self._run(self._delete_counted, keys, args)) == 1
        deleted = _int(await self._run(self._delete, self._deletion_keys(session_id), self._delete_args(session_id)))
        if deleted:
            # The session is gone whatever happens next; a reservation left behind by an outage here stops
            # counting at the session's deadline, so the delete still reports success.
            await self._release_reservation(session_id)
        return deleted == 1

    def _delete_args(self, session_id: str) -> list[Any]:
        """A delete script's arguments, with a fresh write id: one call's, for each of its attempts."""
        return [self._channel(session_id), _write_id(), scripts.DELETION_RECORD_MS]

    async def count(self) -> int:
        return _int(await self._run(self._count, [self._live_key], []))

    async def rate_limit(self, key: str, *, rate_per_s: float, burst: int) -> int:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be positive and burst at least 1")
        args = [repr(float(rate_per_s)), burst]
        return _int(await self._run(self._rate_limit, [self._bucket_key(key)], args))

    async def limited_get(self, session_id: str, limit: RateLimit) -> tuple[int, Session | None]:
        if self._multiplexer is None:
            # A cluster keeps the bucket and the session in different slots: two calls.
            return await super().limited_get(session_id, limit)
        if limit.rate_per_s <= 0 or limit.burst < 1:
            raise ValueError("rate_per_s must be positive and burst at least 1")
        keys = [self._bucket_key(limit.key)]
        if is_opaque_id(session_id):
            keys.append(self._session_key(session_id))
        reply = await self._run(self._limited_get, keys, [repr(float(limit.rate_per_s)), limit.burst])
        retry_after_ms = _int(reply[0])
        if retry_after_ms > 0 or len(reply) == 1:
            return retry_after_ms, None
        return 0, self._snapshot(session_id, reply[1:])

    async def wait_for_change(self, session_id: str, after_version: int, timeout_s: float) -> Session | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        channel = self._channel(session_id)
        # Counted from the start: the call is parked on Redis round trips before it is parked on a wake-up.
        self._waiters += 1
        try:
            if timeout_s <= 0 or not is_opaque_id(session_id):
                return await self.get(session_id)
            # No read before subscribing: a long poll usually finds nothing new, and the read that follows the
            # subscription answers at once if something is.
            for _ in range(_RESUBSCRIBE_ATTEMPTS):
                try:
                    async with self._subscriber.watch(channel) as watch:
                        # The subscription is confirmed and each wake-up armed before the version is read: a
                        # write that the read misses publishes afterwards, to a subscriber already listening.
                        while True:
                            wake_up = watch.arm()
                            snapshot = await self.get(session_id)
                            remaining = deadline - loop.time()
                            if snapshot is None or snapshot.version != after_version or remaining <= 0:
                                return snapshot
                            _raise_if_cancelled()
                            # Expiry publishes nothing: look again when the session's lifetime is over.
                            await watch.wait(wake_up, min(remaining, snapshot.expires_in_ms / 1000 + 0.001))
                except SubscriptionLost:
                    # Messages may have been missed while the subscription was down: read the version afresh.
                    continue
            raise StoreUnavailable(UNAVAILABLE_MESSAGE)
        finally:
            self._waiters -= 1

    async def register_change(self, session_id: str, after_version: int, callback: Callable[[], object]) -> bool:
        if not is_opaque_id(session_id):
            return False

        async def unchanged() -> bool:
            snapshot = await self.get(session_id)
            _raise_if_cancelled()
            return snapshot is not None and snapshot.version == after_version

        channel = self._channel(session_id)
        for _ in range(_RESUBSCRIBE_ATTEMPTS):
            with contextlib.suppress(SubscriptionLost):
                return await self._subscriber.call_on_message(channel, callback, unchanged)
        raise StoreUnavailable(UNAVAILABLE_MESSAGE)

    def forget_change(self, session_id: str, callback: Callable[[], object]) -> None:
        self._subscriber.forget_callback(self._channel(session_id), callback)

    @property
    def pipelined(self) -> bool:
        """Whether script calls go over the pipelined connection (see ``docs/redis.md``).

        True on a single server until the first call finds that the installed redis-py's connections lack the
        internals the pipeline needs; from then on calls go through redis-py's client (slower, and a warning is
        logged). Always False on a cluster.
        """
        return self._multiplexer is not None

    def waiter_count(self) -> int:
        return self._waiters + self._subscriber.callbacks

    async def ping(self) -> None:
        with unavailable_on_redis_errors():
            await self._client.ping()

    async def close(self) -> None:
        await self._subscriber.close()
        if self._multiplexer is not None:
            await self._multiplexer.close()
        with contextlib.suppress(*REDIS_ERRORS):
            await self._client.aclose()
