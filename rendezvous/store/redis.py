"""The shared store: sessions in Redis (or Valkey), one server or a cluster, for any number of workers.

Key layout, for the default prefix ``rz`` (see ``docs/redis.md``)::

    rz:{<id>}:s      hash: generation, data, version, last-modified, expires-at; PEXPIRE = the session's TTL
    rz:{<id>}:t      hash: txnId -> recorded outcome; expires at the same instant as the session
    rz:{<id>}:c      shard channel: a message on every write and delete (wakes ``wait_for_change``)
    rz:live          sorted set: session id -> deadline ms; the shared session count
    rz:rl:<key>      hash: one rate-limit token bucket; expires once it would be full again

A session's keys share the ``{<id>}`` hash tag, so each of its scripts touches one cluster slot. Every write
is one Lua script (compare-and-swap, txnId record, version bump and publish together), so nothing is ever
half-written. On a single server, a few scripts also touch the session count or a rate-limit bucket (other
slots), saving a round trip: creating and counting, deleting and uncounting, a rate-limit take and a read.
Every Redis failure surfaces as :class:`~rendezvous.store.base.StoreUnavailable`; connections are re-made on
the next call once Redis answers again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final, TypeAlias

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisClusterException, RedisError, ResponseError, SlotNotCoveredError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import _redis_scripts as scripts
from .base import (
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

_log = logging.getLogger(__name__)

#: Everything redis-py raises when the server cannot serve a request (RedisClusterException is no RedisError).
_REDIS_ERRORS: Final = (RedisError, RedisClusterException, OSError)
_UNAVAILABLE_MESSAGE: Final = "the Redis store is unavailable"

_CLUSTER_SCHEMES: Final = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_PLAIN_SCHEMES: Final = frozenset({"redis", "rediss", "unix"})

#: How many times one ``wait_for_change`` re-subscribes after its subscription was lost before giving up.
_RESUBSCRIBE_ATTEMPTS: Final = 3


@contextlib.contextmanager
def _unavailable_on_redis_errors() -> Iterator[None]:
    try:
        yield
    except _REDIS_ERRORS as exc:
        # A fixed message: the redis-py error is chained for operators; ids and payloads never reach the text.
        raise StoreUnavailable(_UNAVAILABLE_MESSAGE) from exc


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
        self._subscriber = _Subscriber(client, heartbeat_s=subscriber_heartbeat_s)
        self._waiters = 0
        # redis-py fails a command at once when its pool is exhausted; a burst should queue briefly instead.
        self._connections = asyncio.Semaphore(max_connections)
        self._queue_timeout_s = queue_timeout_s
        #: One server: every script call shares one pipelined connection (see :class:`_Multiplexer`). A
        #: cluster routes each call to its slot's node through redis-py's cluster client.
        self._multiplexer = _Multiplexer(client) if isinstance(client, Redis) else None
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
        parking requests. ``retries`` re-sends a command only after a connection error (a stale pooled
        connection after a Redis restart, a cluster failover), never after a timeout, where the first attempt
        may have been applied. At most ``max_connections`` commands run at once (per node of a cluster);
        more wait up to the time the timeouts allow. Other keyword arguments go to the redis-py client
        (``ssl_ca_certs``, ``username``, ...).
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
            command = ("EVALSHA", script.sha, len(keys), *keys, *args)
            attempt = 0
            while True:
                try:
                    return await multiplexer.call(command)
                except _UnsupportedConnection:
                    # The multiplexer uses a private attribute of redis-py's connections; if a redis-py release
                    # changes it, the store keeps working through redis-py's own client, only slower.
                    _log.warning("redis-py's connection is not the one expected: not pipelining script calls")
                    self._multiplexer = None
                    await multiplexer.close()
                    return await script(keys=keys, args=args)
                except NoScriptError:
                    # Redis lost its script cache (a restart, SCRIPT FLUSH): the script object loads it again.
                    return await script(keys=keys, args=args)
                except RedisConnectionError:
                    # Never after a timeout (a TimeoutError): the first attempt may have been applied.
                    attempt += 1
                    if attempt > self._retries:
                        raise
        finally:
            connections.release()

    async def _run(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        with _unavailable_on_redis_errors():
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
        # max_sessions.
        for _ in range(3):
            session_id = new_session_id()
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
                    self._create, [self._session_key(session_id)], [int(generation), data, ttl_ms]
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
            session_id = new_session_id()
            keys = [self._live_key, self._session_key(session_id)]
            args = [session_id, int(generation), data, ttl_ms, limit]
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
        undo = self._call(
            self._delete,
            [self._session_key(session_id), self._txn_key(session_id)],
            [self._channel(session_id)],
        )
        try:
            # Shielded: a request cancelled mid-create must still clean up after itself.
            await asyncio.shield(undo)
        except _REDIS_ERRORS:
            # The session may exist: keep it counted (its reservation lapses with it).
            return
        await self._release_reservation(session_id)

    async def _release_reservation(self, session_id: str) -> None:
        try:
            await asyncio.shield(self._call(self._release, [self._live_key], [session_id]))
        except _REDIS_ERRORS:
            _log.warning("could not release a session reservation; it lapses at the session's deadline")

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
            [self._session_key(session_id), self._txn_key(session_id)],
            [
                data,
                expected_version,
                txn_id if txn_id is not None else "",
                self._channel(session_id),
                "" if generation is None else int(generation),
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
            keys = [self._session_key(session_id), self._txn_key(session_id), self._live_key]
            return _int(await self._run(self._delete_counted, keys, [self._channel(session_id), session_id])) == 1
        deleted = _int(
            await self._run(
                self._delete,
                [self._session_key(session_id), self._txn_key(session_id)],
                [self._channel(session_id)],
            )
        )
        if deleted:
            # The session is gone whatever happens next; a reservation left behind by an outage here stops
            # counting at the session's deadline, so the delete still reports success.
            await self._release_reservation(session_id)
        return deleted == 1

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
                except _SubscriptionLost:
                    # Messages may have been missed while the subscription was down: read the version afresh.
                    continue
            raise StoreUnavailable(_UNAVAILABLE_MESSAGE)
        finally:
            self._waiters -= 1

    def waiter_count(self) -> int:
        return self._waiters

    async def ping(self) -> None:
        with _unavailable_on_redis_errors():
            await self._client.ping()

    async def close(self) -> None:
        await self._subscriber.close()
        if self._multiplexer is not None:
            await self._multiplexer.close()
        with contextlib.suppress(*_REDIS_ERRORS):
            await self._client.aclose()


# -- one pipelined connection per process (single server) -----------------------------------------------------

_PackedCommand: TypeAlias = "list[bytes]"


class _UnsupportedConnection(Exception):
    """The installed redis-py's connection does not expose the stream the multiplexer writes to."""


class _Multiplexer:
    """Every script call of one process, on one connection, pipelined: sent without waiting for earlier replies.

    Under load most of a Redis round trip is spent in the client, not in Redis: through redis-py's client, every
    command takes a connection from the pool, writes and reads with a system call each way under timeouts of
    its own, and does its own bookkeeping. Here a call packs its command and queues it; the commands queued
    while the event loop runs request handlers go out together in one write, and one reader task matches the
    replies to the callers in order (Redis answers a connection's commands in the order it received them).
    Each script is still its own atomic step in Redis: commands share a connection, not a transaction, and an
    error reply fails only its own caller.

    The connection is made with redis-py's connection class and options (TLS, authentication, database), in
    RESP2 so that no out-of-band push message can come between the replies. When it fails, every call waiting
    on it fails with the error, and the next call opens a new one. A reply missing for ``socket_timeout``
    fails the connection the same way.
    """

    def __init__(self, client: Redis) -> None:
        pool = client.connection_pool
        self._connection_class = pool.connection_class
        self._connection_kwargs = _resp2_kwargs(pool.connection_kwargs)
        self._reply_timeout_s: float | None = pool.connection_kwargs.get("socket_timeout")
        self._pipe: _Pipe | None = None
        self._connecting: asyncio.Task[_Pipe] | None = None
        self._closed = False

    async def call(self, command: tuple[Any, ...]) -> Any:
        """Send ``command`` and return its reply. Raises redis-py's errors (an error reply included)."""
        pipe = self._pipe
        if pipe is None or pipe.closed:
            pipe = await self._open()
        return await pipe.send(command)

    async def _open(self) -> _Pipe:
        if self._closed:
            raise RedisConnectionError("the store is closed")
        task = self._connecting
        if task is None:
            # A task of its own: a caller cancelled meanwhile must not abort the connection for the others.
            task = self._connecting = asyncio.create_task(self._connect())
            task.add_done_callback(self._connected)
        return await asyncio.shield(task)

    async def _connect(self) -> _Pipe:
        connection = self._connection_class(**self._connection_kwargs)
        await connection.connect()  # type: ignore[no-untyped-call]
        if self._closed:
            await connection.disconnect()
            raise RedisConnectionError("the store is closed")
        try:
            pipe = self._pipe = _Pipe(connection, reply_timeout_s=self._reply_timeout_s)
        except _UnsupportedConnection:
            await connection.disconnect()
            raise
        return pipe

    def _connected(self, task: asyncio.Task[_Pipe]) -> None:
        self._connecting = None
        if not task.cancelled():
            task.exception()  # retrieved here; each caller gets it from its own await

    async def close(self) -> None:
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        if self._pipe is not None:
            await self._pipe.close()


def _resp2_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """redis-py connection options for a RESP2 connection without maintenance notifications (RESP3 only)."""
    options = dict(kwargs)
    options["protocol"] = 2
    for key in [k for k in options if k.startswith("maint_notifications") or k.startswith("oss_cluster_maint")]:
        del options[key]
    return options


class _Pipe:
    """One connection of a :class:`_Multiplexer`: commands to write, a reader task, the calls awaiting replies."""

    def __init__(self, connection: AbstractConnection, *, reply_timeout_s: float | None) -> None:
        self._connection = connection
        # The connection's stream, written without awaiting: commands are small and their number is capped
        # (``max_connections``), and a server that stops reading is caught by the watchdog below. redis-py's
        # own send awaits a drain under asyncio.wait_for, which on Python 3.11 can swallow the cancellation
        # that closing the store needs.
        stream = getattr(connection, "_writer", None)
        if not isinstance(stream, asyncio.StreamWriter):
            raise _UnsupportedConnection
        self._stream = stream
        self._reply_timeout_s = reply_timeout_s
        #: The caller of every command queued or written, in order; replies come in the same order.
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._outbox: list[bytes] = []
        self._to_read = asyncio.Event()
        #: Replies read so far; the watchdog compares it between two of its checks.
        self._replies = 0
        self._watchdog: asyncio.TimerHandle | None = None
        self.closed = False
        self._disconnecting: asyncio.Task[None] | None = None
        self._reader = asyncio.create_task(self._read_loop())

    def send(self, command: tuple[bytes | str | int, ...]) -> asyncio.Future[Any]:
        """Queue ``command``; the future gets its reply, the error reply, or the connection's failure."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self.closed:
            future.set_exception(RedisConnectionError("the Redis connection was closed"))
            return future
        if not self._outbox:
            # Written at the end of this turn of the loop, with everything else the turn queues: one write.
            loop.call_soon(self._flush)
        self._outbox.append(_pack(command))
        self._waiting.append(future)
        self._to_read.set()
        if self._watchdog is None and self._reply_timeout_s is not None:
            self._watchdog = loop.call_later(self._reply_timeout_s, self._check_progress, self._replies)
        return future

    def _flush(self) -> None:
        chunks, self._outbox = self._outbox, []
        if self.closed or not chunks:
            return
        if self._stream.is_closing():
            self._fail(RedisConnectionError("the Redis connection was closed"))
            return
        try:
            self._stream.writelines(chunks)
        except Exception as exc:
            self._fail(exc)

    def _check_progress(self, replies_then: int) -> None:
        """No reply for a whole ``socket_timeout`` while calls wait: the server hung or the network did."""
        self._watchdog = None
        if self.closed or not self._waiting:
            return
        if self._replies == replies_then:
            self._fail(RedisTimeoutError("no reply from Redis within the socket timeout"))
            return
        assert self._reply_timeout_s is not None
        self._watchdog = asyncio.get_running_loop().call_later(
            self._reply_timeout_s, self._check_progress, self._replies
        )

    async def _read_loop(self) -> None:
        waiting = self._waiting
        read = self._connection.read_response
        try:
            while True:
                if not waiting:
                    self._to_read.clear()
                    await self._to_read.wait()
                    continue
                try:
                    # No timeout per read (the watchdog covers the connection as a whole).
                    reply: Any = await read(timeout=math.inf, disconnect_on_error=False)
                except ResponseError as exc:
                    reply = exc
                self._replies += 1
                future = waiting.popleft()
                if future.done():  # the caller was cancelled meanwhile; the command ran all the same
                    continue
                if isinstance(reply, ResponseError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc)

    def _fail(self, error: Exception) -> None:
        """Close for good: every caller still waiting gets ``error`` (a redis-py error)."""
        if self.closed:
            return
        self.closed = True
        if not isinstance(error, _REDIS_ERRORS):
            error = RedisConnectionError(f"the Redis connection failed: {type(error).__name__}")
        elif isinstance(error, OSError):
            error = RedisConnectionError(f"the Redis connection failed: {type(error).__name__}")
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if self._watchdog is not None:
            self._watchdog.cancel()
        if asyncio.current_task() is not self._reader:
            self._reader.cancel()
        self._disconnecting = asyncio.get_running_loop().create_task(self._disconnect())

    async def _disconnect(self) -> None:
        with contextlib.suppress(*_REDIS_ERRORS):
            await self._connection.disconnect(nowait=True)

    async def close(self) -> None:
        self._fail(RedisConnectionError("the store is closed"))
        tasks = [t for t in (self._reader, self._disconnecting) if t is not None]
        await asyncio.gather(*tasks, return_exceptions=True)


def _pack(command: tuple[bytes | str | int, ...]) -> bytes:
    """``command`` in the Redis protocol (RESP): an array of bulk strings."""
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        value = arg.encode() if isinstance(arg, str) else b"%d" % arg if isinstance(arg, int) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(value), value))
    return b"".join(parts)


# -- cross-process wake-ups ----------------------------------------------------------------------------------


class _SubscriptionLost(Exception):
    """The subscriber connection dropped, or Redis refused a subscription; messages may have been missed."""


class _Watch:
    """The local waiters of one session, sharing a single shard-channel subscription."""

    __slots__ = ("channel", "futures", "leases", "link", "lost", "ready")

    def __init__(self, channel: bytes, link: _Link, ready: asyncio.Future[bool]) -> None:
        self.channel = channel
        self.link = link
        #: True once Redis confirmed the subscription, False if it was refused or the connection dropped.
        self.ready = ready
        self.leases = 0
        self.futures: set[asyncio.Future[None]] = set()
        self.lost = False

    def arm(self) -> asyncio.Future[None]:
        """A future completed by the next message on the channel (or by the loss of the subscription)."""
        if self.lost:
            raise _SubscriptionLost
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.futures.add(future)
        return future

    async def wait(self, future: asyncio.Future[None], timeout_s: float) -> None:
        """Wait for ``future`` at most ``timeout_s``. Raises :class:`_SubscriptionLost`."""
        try:
            async with asyncio.timeout(timeout_s):
                await future
        except TimeoutError:
            pass
        finally:
            self.futures.discard(future)
        if self.lost:
            raise _SubscriptionLost

    def wake(self) -> None:
        for future in self.futures:
            if not future.done():
                future.set_result(None)
        self.futures.clear()

    def fail(self) -> None:
        self.lost = True
        if not self.ready.done():
            self.ready.set_result(False)
        self.wake()


class _Subscriber:
    """One process's shard-channel subscriptions: one connection per Redis node, shared by every local waiter.

    A session's channel is subscribed while at least one local waiter watches it and unsubscribed when the
    last one leaves, so an idle waiter costs one future and no traffic. Nothing is re-subscribed in the
    background: when a connection drops, its waiters are woken with :class:`_SubscriptionLost`, read the
    session again and subscribe afresh, on a new connection, only if they still need to.
    """

    def __init__(self, client: Redis | RedisCluster, *, heartbeat_s: float) -> None:
        self._client = client
        self._heartbeat_s = heartbeat_s
        self._links: dict[str, _Link] = {}
        self._connecting: dict[str, asyncio.Task[_Link]] = {}
        self._watches: dict[bytes, _Watch] = {}
        self._closed = False

    async def _node_for(self, channel: bytes) -> tuple[str, type[AbstractConnection], dict[str, Any]]:
        client = self._client
        if isinstance(client, RedisCluster):
            # Learns the slot map if no command has yet (a no-op afterwards).
            await client.initialize()
            # A shard channel lives on the node serving its key's slot (the session's own slot).
            try:
                node = client.get_node_from_key(channel.decode())
            except SlotNotCoveredError:
                # The slot map is stale (a resharding or failover): learn it again, once.
                await client.nodes_manager.initialize()
                node = client.get_node_from_key(channel.decode())
            if node is None:
                raise StoreUnavailable("no Redis node serves the session's slot")
            return node.name, node.connection_class, dict(node.connection_kwargs)
        pool = client.connection_pool
        return "", pool.connection_class, dict(pool.connection_kwargs)

    async def _link_for(self, channel: bytes) -> _Link:
        with _unavailable_on_redis_errors():
            name, connection_class, kwargs = await self._node_for(channel)
        link = self._links.get(name)
        if link is not None and not link.closed:
            return link
        task = self._connecting.get(name)
        if task is None:
            # A task of its own, so that a waiter cancelled meanwhile does not abort the connection for
            # others.
            task = asyncio.create_task(self._connect(name, connection_class, kwargs))
            self._connecting[name] = task
        return await asyncio.shield(task)

    async def _connect(self, name: str, connection_class: type[AbstractConnection], kwargs: dict[str, Any]) -> _Link:
        try:
            # RESP2 delivers messages as plain replies, without the client-side push machinery (maintenance
            # notifications need RESP3, so they go too; the link re-connects through its waiters anyway).
            kwargs["protocol"] = 2
            for key in [k for k in kwargs if k.startswith("maint_notifications") or k.startswith("oss_cluster_maint")]:
                del kwargs[key]
            connection = connection_class(**kwargs)
            with _unavailable_on_redis_errors():
                await connection.connect()  # type: ignore[no-untyped-call]
            if self._closed:
                await connection.disconnect()
                raise StoreUnavailable("the store is closed")
            link = _Link(connection, self, heartbeat_s=self._heartbeat_s)
            self._links[name] = link
            return link
        finally:
            del self._connecting[name]

    @contextlib.asynccontextmanager
    async def watch(self, channel: bytes) -> AsyncIterator[_Watch]:
        """Hold a confirmed subscription to ``channel`` for the duration of the block."""
        if self._closed:
            raise StoreUnavailable("the store is closed")
        watch = self._watches.get(channel)
        if watch is None:
            link = await self._link_for(channel)
            watch = self._watches.get(channel)  # another waiter may have subscribed meanwhile
            if watch is None:
                watch = _Watch(channel, link, link.subscribe(channel))
                self._watches[channel] = watch
        watch.leases += 1
        try:
            # Shielded: the confirmation is shared, and one waiter's cancellation must not cancel it for all.
            if not await asyncio.shield(watch.ready):
                raise _SubscriptionLost
            yield watch
        finally:
            watch.leases -= 1
            if watch.lost or (watch.leases == 0 and self._watches.get(channel) is watch):
                self._forget(watch)

    def _forget(self, watch: _Watch) -> None:
        if self._watches.get(watch.channel) is watch:
            del self._watches[watch.channel]
            if not watch.lost and not watch.link.closed:
                watch.link.unsubscribe(watch.channel)

    # -- called by links -------------------------------------------------------------------------------------

    def on_message(self, channel: bytes) -> None:
        watch = self._watches.get(channel)
        if watch is not None:
            watch.wake()

    def on_dropped(self, channel: bytes) -> None:
        """Redis ended a subscription by itself (its slot moved to another node)."""
        watch = self._watches.pop(channel, None)
        if watch is not None:
            watch.fail()

    def on_subscribe_refused(self, channel: bytes) -> None:
        watch = self._watches.get(channel)
        if watch is not None:
            del self._watches[channel]
            watch.fail()

    def on_link_closed(self, link: _Link) -> None:
        for name, known in list(self._links.items()):
            if known is link:
                del self._links[name]
        for channel, watch in list(self._watches.items()):
            if watch.link is link:
                del self._watches[channel]
                watch.fail()

    async def close(self) -> None:
        self._closed = True
        for task in list(self._connecting.values()):
            task.cancel()
        for link in list(self._links.values()):
            await link.close()


#: (reply kind, channel, confirmation) of a command sent or queued on a :class:`_Link`.
_Pending: TypeAlias = "tuple[bytes, bytes, asyncio.Future[bool] | None]"


class _Link:
    """One RESP2 connection in subscriber mode: a reader task and a writer task.

    Commands are queued (so that unsubscribing never awaits, even from a cancelled waiter) and their replies
    matched in order. A heartbeat PING detects a silently dead connection; any failure closes the link for
    good.
    """

    def __init__(self, connection: AbstractConnection, owner: _Subscriber, *, heartbeat_s: float) -> None:
        self._connection = connection
        self._owner = owner
        self._heartbeat_s = heartbeat_s
        self._outbox: asyncio.Queue[tuple[bytes, ...] | None] = asyncio.Queue()
        #: (reply kind, channel, confirmation) for each command sent or queued, in order.
        self._pending: collections.deque[_Pending] = collections.deque()
        self._ping_outstanding = False
        self.closed = False
        self._reader = asyncio.create_task(self._read_loop())
        self._writer = asyncio.create_task(self._write_loop())

    def subscribe(self, channel: bytes) -> asyncio.Future[bool]:
        confirmed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._send((b"SSUBSCRIBE", channel), b"ssubscribe", channel, confirmed)
        return confirmed

    def unsubscribe(self, channel: bytes) -> None:
        self._send((b"SUNSUBSCRIBE", channel), b"sunsubscribe", channel, None)

    def _send(
        self, command: tuple[bytes, ...], kind: bytes, channel: bytes, confirmed: asyncio.Future[bool] | None
    ) -> None:
        if self.closed:
            if confirmed is not None:
                confirmed.set_result(False)
            return
        self._pending.append((kind, channel, confirmed))
        self._outbox.put_nowait(command)

    async def _write_loop(self) -> None:
        try:
            while not self.closed:
                try:
                    async with asyncio.timeout(self._heartbeat_s):
                        command = await self._outbox.get()
                    if command is None:  # the link is shut
                        return
                except TimeoutError:
                    if self._ping_outstanding:
                        _log.warning("Redis subscriber connection missed a heartbeat; dropping it")
                        self._reader.cancel()
                        return
                    # Queue empty: everything before this PING has been sent, so its reply comes last.
                    self._ping_outstanding = True
                    self._pending.append((b"pong", b"", None))
                    command = (b"PING",)
                await self._connection.send_command(*command, check_health=False)
        except asyncio.CancelledError:
            raise
        except Exception:  # the reader sees the same failure and closes the link
            self._reader.cancel()

    async def _read_loop(self) -> None:
        try:
            while True:
                try:
                    reply = await self._connection.read_response(timeout=math.inf, disconnect_on_error=False)
                except ResponseError:
                    # A refused command (MOVED after a resharding, ...): errors carry no channel, order tells.
                    if self._pending:
                        kind, channel, confirmed = self._pending.popleft()
                        if confirmed is not None and not confirmed.done():
                            confirmed.set_result(False)
                        if kind == b"ssubscribe":
                            self._owner.on_subscribe_refused(channel)
                    continue
                self._dispatch(reply)
        except asyncio.CancelledError:
            pass
        except Exception:
            _log.warning("Redis subscriber connection lost", exc_info=True)
        finally:
            await self._shut()

    def _dispatch(self, reply: Any) -> None:
        if not isinstance(reply, list) or not reply:
            return
        kind = bytes(reply[0]).lower()
        channel = bytes(reply[1]) if len(reply) > 1 and isinstance(reply[1], bytes) else b""
        if kind == b"smessage":
            self._owner.on_message(channel)
            return
        if self._pending and self._pending[0][:2] == (kind, channel):
            _, _, confirmed = self._pending.popleft()
            if kind == b"pong":
                self._ping_outstanding = False
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(True)
        elif kind == b"sunsubscribe":
            # Not an answer to us: Redis dropped the subscription because the slot moved.
            self._owner.on_dropped(channel)

    async def _shut(self) -> None:
        if self.closed:
            return
        self.closed = True
        # The sentinel and the flag stop the writer even if a cancellation is lost (see _raise_if_cancelled).
        self._outbox.put_nowait(None)
        self._writer.cancel()
        while self._pending:
            _, _, confirmed = self._pending.popleft()
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(False)
        self._owner.on_link_closed(self)
        with contextlib.suppress(*_REDIS_ERRORS):
            await self._connection.disconnect()

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
