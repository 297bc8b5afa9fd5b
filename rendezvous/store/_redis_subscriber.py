"""Wake-ups across workers: one process's shard-channel subscriptions, one connection per Redis node."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError, SlotNotCoveredError

from ._redis_common import REDIS_ERRORS, log, resp2_kwargs, unavailable_on_redis_errors
from .base import StoreUnavailable

__all__ = ["Subscriber", "SubscriptionLost", "Watch"]


class SubscriptionLost(Exception):
    """The subscriber connection dropped, or Redis refused a subscription; messages may have been missed."""


class Watch:
    """The local waiters of one session, sharing a single shard-channel subscription.

    Two kinds share it: waiters that hold a lease (:meth:`Subscriber.watch`) and wait on futures they arm, and
    one-shot callbacks (:meth:`Subscriber.call_on_message`), each held until its first message. The channel stays
    subscribed while either kind is left.
    """

    __slots__ = ("callbacks", "channel", "futures", "leases", "link", "lost", "ready", "wakes")

    def __init__(self, channel: bytes, link: Link, ready: asyncio.Future[bool]) -> None:
        self.channel = channel
        self.link = link
        #: True once Redis confirmed the subscription, False if it was refused or the connection dropped.
        self.ready = ready
        self.leases = 0
        self.futures: set[asyncio.Future[None]] = set()
        self.callbacks: set[Callable[[], object]] = set()
        #: How many messages (and losses) have woken this watch: tells a reader whether one came meanwhile.
        self.wakes = 0
        self.lost = False

    @property
    def in_use(self) -> bool:
        return self.leases > 0 or bool(self.callbacks)

    def arm(self) -> asyncio.Future[None]:
        """A future completed by the next message on the channel (or by the loss of the subscription)."""
        if self.lost:
            raise SubscriptionLost
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.futures.add(future)
        return future

    async def wait(self, future: asyncio.Future[None], timeout_s: float) -> None:
        """Wait for ``future`` at most ``timeout_s``. Raises :class:`SubscriptionLost`."""
        try:
            async with asyncio.timeout(timeout_s):
                await future
        except TimeoutError:
            pass
        finally:
            self.futures.discard(future)
        if self.lost:
            raise SubscriptionLost

    def wake(self) -> int:
        """Complete the armed futures and call the callbacks (forgetting them); how many callbacks were called."""
        self.wakes += 1
        for future in self.futures:
            if not future.done():
                future.set_result(None)
        self.futures.clear()
        callbacks = self.callbacks
        if not callbacks:
            return 0
        self.callbacks = set()
        for callback in callbacks:
            callback()
        return len(callbacks)

    def fail(self) -> int:
        """The subscription is lost: wake everyone (:meth:`wake`), and arm nothing more."""
        self.lost = True
        if not self.ready.done():
            self.ready.set_result(False)
        return self.wake()


class Subscriber:
    """One process's shard-channel subscriptions: one connection per Redis node, shared by every local waiter.

    A session's channel is subscribed while at least one local waiter watches it and unsubscribed when the
    last one leaves, so an idle waiter costs one future (a callback: one set entry) and no traffic. Nothing is
    re-subscribed in the background: when a connection drops, its waiters are woken with
    :class:`SubscriptionLost` (callbacks are called), read the session again and subscribe afresh, on a new
    connection, only if they still need to.
    """

    def __init__(self, client: Redis | RedisCluster, *, heartbeat_s: float) -> None:
        self._client = client
        self._heartbeat_s = heartbeat_s
        self._links: dict[str, Link] = {}
        self._connecting: dict[str, asyncio.Task[Link]] = {}
        self._watches: dict[bytes, Watch] = {}
        #: Callbacks registered by :meth:`call_on_message` and not yet called or forgotten.
        self.callbacks = 0
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

    async def _link_for(self, channel: bytes) -> Link:
        with unavailable_on_redis_errors():
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

    async def _connect(self, name: str, connection_class: type[AbstractConnection], kwargs: dict[str, Any]) -> Link:
        try:
            # RESP2 delivers messages as plain replies, without the client-side push machinery (maintenance
            # notifications need RESP3, so they go too; the link re-connects through its waiters anyway).
            connection = connection_class(**resp2_kwargs(kwargs))
            with unavailable_on_redis_errors():
                await connection.connect()  # type: ignore[no-untyped-call]
            if self._closed:
                await connection.disconnect()
                raise StoreUnavailable("the store is closed")
            link = Link(connection, self, heartbeat_s=self._heartbeat_s)
            self._links[name] = link
            return link
        finally:
            del self._connecting[name]

    @contextlib.asynccontextmanager
    async def watch(self, channel: bytes) -> AsyncIterator[Watch]:
        """Hold a confirmed subscription to ``channel`` for the duration of the block."""
        if self._closed:
            raise StoreUnavailable("the store is closed")
        watch = self._watches.get(channel)
        if watch is None:
            link = await self._link_for(channel)
            watch = self._watches.get(channel)  # another waiter may have subscribed meanwhile
            if watch is None:
                watch = Watch(channel, link, link.subscribe(channel))
                self._watches[channel] = watch
        watch.leases += 1
        try:
            # Shielded: the confirmation is shared, and one waiter's cancellation must not cancel it for all.
            if not await asyncio.shield(watch.ready):
                raise SubscriptionLost
            yield watch
        finally:
            watch.leases -= 1
            if watch.lost or not watch.in_use:
                self._forget(watch)

    async def call_on_message(
        self, channel: bytes, callback: Callable[[], object], unchanged: Callable[[], Awaitable[bool]]
    ) -> bool:
        """Call ``callback`` once, on the next message on ``channel`` or the loss of its subscription.

        The subscription is confirmed, then ``unchanged`` reads whether the session is still as the caller saw
        it: a write that the read misses publishes afterwards, to a subscriber already listening. ``False``
        (nothing registered) when it is not, or when a message came during the read. Raises
        :class:`SubscriptionLost` when the subscription was lost before the callback was registered. Once
        registered, the callback holds the channel's subscription until it is called or :meth:`forget_callback`.
        """
        async with self.watch(channel) as watch:
            wakes = watch.wakes
            still = await unchanged()
            if watch.lost:
                raise SubscriptionLost
            if not still or watch.wakes != wakes:
                return False
            if callback not in watch.callbacks:
                watch.callbacks.add(callback)
                self.callbacks += 1
            return True

    def forget_callback(self, channel: bytes, callback: Callable[[], object]) -> None:
        """Unregister a :meth:`call_on_message` callback; unsubscribe if it was the channel's last waiter."""
        watch = self._watches.get(channel)
        if watch is not None and callback in watch.callbacks:
            watch.callbacks.remove(callback)
            self.callbacks -= 1
            if not watch.in_use:
                self._forget(watch)

    def _forget(self, watch: Watch) -> None:
        if self._watches.get(watch.channel) is watch:
            del self._watches[watch.channel]
            if not watch.lost and not watch.link.closed:
                watch.link.unsubscribe(watch.channel)

    # -- called by links -------------------------------------------------------------------------------------

    def on_message(self, channel: bytes) -> None:
        watch = self._watches.get(channel)
        if watch is not None:
            called = watch.wake()
            if called:
                self.callbacks -= called
                if not watch.in_use:
                    self._forget(watch)

    def on_dropped(self, channel: bytes) -> None:
        """Redis ended a subscription by itself (its slot moved to another node)."""
        watch = self._watches.pop(channel, None)
        if watch is not None:
            self.callbacks -= watch.fail()

    def on_subscribe_refused(self, channel: bytes) -> None:
        watch = self._watches.get(channel)
        if watch is not None:
            del self._watches[channel]
            self.callbacks -= watch.fail()

    def on_link_closed(self, link: Link) -> None:
        for name, known in list(self._links.items()):
            if known is link:
                del self._links[name]
        for channel, watch in list(self._watches.items()):
            if watch.link is link:
                del self._watches[channel]
                self.callbacks -= watch.fail()

    async def close(self) -> None:
        self._closed = True
        for task in list(self._connecting.values()):
            task.cancel()
        for link in list(self._links.values()):
            await link.close()


#: (reply kind, channel, confirmation) of a command sent or queued on a :class:`Link`.
_Pending: TypeAlias = "tuple[bytes, bytes, asyncio.Future[bool] | None]"


class Link:
    """One RESP2 connection in subscriber mode: a reader task and a writer task.

    Commands are queued (so that unsubscribing never awaits, even from a cancelled waiter) and their replies
    matched in order. A heartbeat PING detects a silently dead connection; any failure closes the link for
    good.
    """

    def __init__(self, connection: AbstractConnection, owner: Subscriber, *, heartbeat_s: float) -> None:
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
                        log.warning("Redis subscriber connection missed a heartbeat; dropping it")
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
            log.warning("Redis subscriber connection lost", exc_info=True)
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
        # The sentinel and the flag stop the writer even if its cancellation is lost (on Python 3.11 redis-py's
        # asyncio.wait_for can swallow one).
        self._outbox.put_nowait(None)
        self._writer.cancel()
        while self._pending:
            _, _, confirmed = self._pending.popleft()
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(False)
        self._owner.on_link_closed(self)
        with contextlib.suppress(*REDIS_ERRORS):
            await self._connection.disconnect()

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
