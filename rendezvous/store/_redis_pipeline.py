"""The Redis store's fast path on a single server: every script call of a worker on one pipelined connection.

It writes to the stream of a redis-py connection, a private attribute (``_writer``); when an installed redis-py
lacks it, :class:`Multiplexer` raises :class:`UnsupportedConnection` and the store falls back to redis-py's
client (see ``docs/redis.md``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._redis_common import REDIS_ERRORS, resp2_kwargs

__all__ = ["Multiplexer", "UnsupportedConnection"]


class UnsupportedConnection(Exception):
    """The installed redis-py's connection does not expose the stream the multiplexer writes to."""


class Multiplexer:
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
        self._connection_kwargs = resp2_kwargs(pool.connection_kwargs)
        self._reply_timeout_s: float | None = pool.connection_kwargs.get("socket_timeout")
        self._pipe: Pipe | None = None
        self._connecting: asyncio.Task[Pipe] | None = None
        self._closed = False

    @property
    def connected(self) -> bool:
        """Whether a pipelined connection is open (made at the first call, and again after a failure)."""
        return self._pipe is not None and not self._pipe.closed

    async def call(self, command: tuple[Any, ...]) -> Any:
        """Send ``command`` and return its reply. Raises redis-py's errors (an error reply included)."""
        pipe = self._pipe
        if pipe is None or pipe.closed:
            pipe = await self._open()
        return await pipe.send(command)

    async def _open(self) -> Pipe:
        if self._closed:
            raise RedisConnectionError("the store is closed")
        task = self._connecting
        if task is None:
            # A task of its own: a caller cancelled meanwhile must not abort the connection for the others.
            task = self._connecting = asyncio.create_task(self._connect())
            task.add_done_callback(self._connected)
        return await asyncio.shield(task)

    async def _connect(self) -> Pipe:
        connection = self._connection_class(**self._connection_kwargs)
        await connection.connect()  # type: ignore[no-untyped-call]
        if self._closed:
            await connection.disconnect()
            raise RedisConnectionError("the store is closed")
        try:
            pipe = self._pipe = Pipe(connection, reply_timeout_s=self._reply_timeout_s)
        except UnsupportedConnection:
            await connection.disconnect()
            raise
        return pipe

    def _connected(self, task: asyncio.Task[Pipe]) -> None:
        self._connecting = None
        if not task.cancelled():
            task.exception()  # retrieved here; each caller gets it from its own await

    async def close(self) -> None:
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        if self._pipe is not None:
            await self._pipe.close()


class Pipe:
    """One connection of a :class:`Multiplexer`: commands to write, a reader task, the calls awaiting replies."""

    def __init__(self, connection: AbstractConnection, *, reply_timeout_s: float | None) -> None:
        self._connection = connection
        # The connection's stream, written without awaiting: commands are small and their number is capped
        # (``max_connections``), and a server that stops reading is caught by the watchdog below. redis-py's
        # own send awaits a drain under asyncio.wait_for, which on Python 3.11 can swallow the cancellation
        # that closing the store needs.
        stream = getattr(connection, "_writer", None)
        if not isinstance(stream, asyncio.StreamWriter):
            raise UnsupportedConnection
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
        if not isinstance(error, REDIS_ERRORS):
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
        with contextlib.suppress(*REDIS_ERRORS):
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
