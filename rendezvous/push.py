"""qrlink's push-delivery extension: long-polls and the WebSocket watch, parked on the store's change waits.

Standard clients never see any of this: a GET without the extension's parameters is an ordinary poll. A client
that knows the extension reads its advertisement (the ``X-Qrlink-Push`` header on session answers, the
``io.qrlink.push`` discovery field) and then

* long-polls: Gen-2 ``GET …/{id}?since=<token>&timeout_ms=N``, Gen-1 ``If-None-Match`` + ``Prefer: wait=N``
  (RFC 7240); the answer comes as soon as the session changes, or with the unchanged state at the deadline;
* or watches: ``<session path>/watch`` over a WebSocket, one JSON frame per revision, closed with 4404 when the
  session is gone.

A parked request holds one store waiter (a future, or a share of a Redis subscription) and one small task that
listens for the client going away, and costs no CPU until one of them fires. A held Gen-1 poll is leaner still:
it waits in its request's own task on the connection, woken by a store change callback (on Redis, a share of the
session's subscription) or by one shared deadline heap (:meth:`Push.hold`). A disconnect cancels the wait at
once, which releases the waiter. Past ``push_max_waiters`` parked requests in a process, long-polls are answered
at once like ordinary polls and new watches are refused; clients then poll at their normal pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from .config import Settings
from .context import ServerContext
from .http import ClientDisconnected, Headers, MatrixError, Receive, Request, Scope, Send
from .logs import redact
from .metrics import GenerationMetrics, Metrics
from .protocol import M_UNKNOWN
from .store import Generation, Session, SessionStore, is_opaque_id

logger = logging.getLogger("rendezvous.push")

T = TypeVar("T")

PUSH_HEADER = b"x-qrlink-push"
DISCOVERY_FIELD = "io.qrlink.push"
#: WebSocket close code for "the watched session was deleted or has expired" (4000-4999: application codes).
GONE_CLOSE_CODE = 4404
#: WebSocket close code for "the server is going away" (RFC 6455 1001): sent to every watch on shutdown.
GOING_AWAY_CLOSE_CODE = 1001
#: How long after a session's deadline a watch looks again, so that expiry is noticed just after it happens.
_EXPIRY_SLACK_S = 0.05
#: ``Prefer: wait`` values longer than this many digits are nonsense; they are treated as the maximum.
_MAX_WAIT_DIGITS = 9


def advertisement(settings: Settings) -> bytes | None:
    """The ``X-Qrlink-Push`` value for ``settings``, or ``None`` when push is off."""
    if not settings.push_enabled:
        return None
    value = b"long-poll; max-wait-ms=%d" % (settings.push_max_wait_seconds * 1000)
    if settings.push_websocket:
        value += b", websocket"
    return value


def discovery_field(settings: Settings) -> dict[str, Any] | None:
    """The ``io.qrlink.push`` object of Gen-2 discovery, or ``None`` when push is off."""
    if not settings.push_enabled:
        return None
    return {
        "long_poll": True,
        "max_timeout_ms": settings.push_max_wait_seconds * 1000,
        "websocket": settings.push_websocket,
    }


def preferred_wait(prefer: bytes | None) -> int | None:
    """The ``wait`` preference of a ``Prefer`` header (RFC 7240) in seconds, or ``None``.

    Preferences this server does not know, and a malformed ``wait``, are ignored, as RFC 7240 asks.
    """
    if prefer is None:
        return None
    for preference in prefer.split(b","):
        name, _, value = preference.split(b";", 1)[0].partition(b"=")
        if name.strip().lower() != b"wait":
            continue
        value = value.strip().strip(b'"')
        if value.isdigit():
            return int(value) if len(value) <= _MAX_WAIT_DIGITS else 10**_MAX_WAIT_DIGITS
    return None


async def until_disconnected(receive: Receive, disconnect: str, waiting: Awaitable[T]) -> T:
    """Await ``waiting`` unless the client goes away first; then it is cancelled and :class:`ClientDisconnected`
    raised.

    The listener reads ``receive`` for the ``disconnect`` message (``http.disconnect`` / ``websocket.disconnect``)
    in a small task of its own; everything else it reads (the empty body of a GET, WebSocket messages the
    client sends) is dropped.
    """
    current = asyncio.current_task()
    assert current is not None
    gone = False

    async def listen() -> None:
        nonlocal gone
        try:
            while (await receive())["type"] != disconnect:
                pass
        except Exception:  # noqa: S110 - a connection whose messages cannot be read is as good as gone
            pass
        gone = True
        current.cancel()

    listener = asyncio.get_running_loop().create_task(listen())
    try:
        return await waiting
    except asyncio.CancelledError:
        if gone and current.uncancel() == 0:
            raise ClientDisconnected from None
        raise
    finally:
        listener.cancel()


class _Hold:
    """One held poll, as the store's change callback and the deadline queue know it: the task to wake.

    Calling it wakes the hold (once: ``task`` is cleared), by cancelling the request's task where it waits on
    its connection; the hold takes that one cancellation back. Every wake goes through here, so a task is never
    cancelled twice for one hold. ``queued``: its deadline entry is still in :class:`_Deadlines`.
    """

    __slots__ = ("queued", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task: asyncio.Task[Any] | None = task
        self.queued = False

    def __call__(self) -> None:
        task = self.task
        if task is not None:
            self.task = None
            task.cancel()


class _Deadlines:
    """The deadlines of every held poll in one heap, on a single loop timer: no timer handle per hold.

    An entry whose hold ended before its deadline stays until that deadline comes (holding no task any more);
    once such entries outnumber the live ones the heap is rebuilt without them.
    """

    __slots__ = ("_handle", "_heap", "_loop", "_seq", "_stale", "_when")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Hold]] = []
        self._seq = 0
        self._stale = 0
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._when = 0.0

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, hold: _Hold, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        when = loop.time() + timeout_s
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, hold))
        hold.queued = True
        if self._handle is None or when < self._when or loop is not self._loop:
            self._schedule(loop, when)

    def ended(self, hold: _Hold) -> None:
        """``hold`` has ended (its task cleared): its entry, if still queued, is stale from now on."""
        if not hold.queued:
            return
        self._stale += 1
        heap = self._heap
        if self._stale > 1024 and self._stale * 2 > len(heap):
            live = []
            for entry in heap:
                if entry[2].task is None:
                    entry[2].queued = False
                else:
                    live.append(entry)
            heap[:] = live
            heapq.heapify(heap)
            self._stale = 0

    def wake_all(self) -> None:
        for _, _, hold in self._heap:
            hold()

    def _schedule(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._when = when
        self._loop = loop
        self._handle = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        heap = self._heap
        while heap and heap[0][0] <= now:
            hold = heapq.heappop(heap)[2]
            if hold.task is None and hold.queued and self._stale:
                self._stale -= 1  # counted as stale when its hold ended
            hold.queued = False
            hold()
        if heap:
            self._schedule(loop, heap[0][0])


class Push:
    """Parking of long-polls and watches for one app: the cap, the gauges and the disconnect handling."""

    def __init__(self, settings: Settings, store: SessionStore, metrics: Metrics) -> None:
        self.long_poll = settings.push_enabled
        self.websocket = settings.push_enabled and settings.push_websocket
        self.max_wait_s = settings.push_max_wait_seconds
        advertised = advertisement(settings)
        #: Added to every session answer (POST / GET / PUT) of both generations.
        self.headers: Headers = [(PUSH_HEADER, advertised)] if advertised is not None else []
        self.discovery = discovery_field(settings)
        self._store = store
        self._cap = settings.push_max_waiters
        self._parked = 0
        #: Set when the server starts shutting down.
        self._closed = False
        #: The tasks waiting in :meth:`changed` right now: :meth:`close` cuts their waits short. A set of tasks
        #: instead of a task per wait racing a shared future keeps a parked request to the one task it runs in.
        self._waiting: set[asyncio.Task[Any]] = set()
        self._long_poll_gauge = metrics.parked_long_polls
        self._watch_gauge = metrics.parked_watches
        # Held Gen-1 polls (no extension: docs/push.md, "Held Gen-1 polls"). Parked on the same store waits.
        self.hold_enabled = settings.hold_enabled and settings.hold_max > 0 and settings.hold_max_per_address > 0
        self.hold_s = settings.hold_ms / 1000
        self._hold_cap = settings.hold_max
        self._hold_cap_per_address = settings.hold_max_per_address
        self._holds = 0
        self._holds_by_address: dict[str, int] = {}
        self._hold_gauge = metrics.holds
        self._hold_outcomes = metrics.hold_outcomes
        self._hold_wake = metrics.hold_wake
        self._wall_clock = time.time
        self._deadlines = _Deadlines()

    @property
    def parked(self) -> int:
        """Long-polls and watches parked in this process right now."""
        return self._parked

    def has_room(self) -> bool:
        """Whether one more request may park (``push_max_waiters``, and not while shutting down)."""
        return self._parked < self._cap and not self.closing

    @property
    def closing(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def close(self) -> None:
        """The server is stopping: answer every parked long-poll now, close every watch, park nothing new.

        Without this a shutdown would wait for each long-poll's deadline (up to ``push_max_wait_seconds``).
        Must be called from the event loop's thread; calling it again does nothing.
        """
        if self._closed:
            return
        self._closed = True
        for task in self._waiting:
            task.cancel()
        self._deadlines.wake_all()

    async def changed(self, session_id: str, version: int, timeout_s: float) -> Session | None:
        """The store's ``wait_for_change``, cut short by :meth:`close`: then the session as it is now.

        The wait runs in the caller's task; :meth:`close` cancels it, and the cancellation it caused (and only
        that one) is taken back here.
        """
        if not self._closed:
            task = asyncio.current_task()
            assert task is not None
            self._waiting.add(task)
            try:
                return await self._store.wait_for_change(session_id, version, timeout_s)
            except asyncio.CancelledError:
                if not self._closed or task.uncancel() > 0:
                    raise  # not (only) the shutdown: a disconnect, or the server cancelling the request
            finally:
                self._waiting.discard(task)
        return await self._store.get(session_id)

    @contextlib.contextmanager
    def parking_watch(self) -> Iterator[None]:
        """Count a WebSocket watch as parked for as long as it is open."""
        self._parked += 1
        self._watch_gauge.inc()
        try:
            yield
        finally:
            self._parked -= 1
            self._watch_gauge.dec()

    async def wait(
        self, request: Request, session_id: str, version: int, timeout_s: float, counters: GenerationMetrics
    ) -> Session | None:
        """Park a long-poll until ``session_id`` moves past ``version`` or ``timeout_s`` passes.

        Returns the snapshot then (changed or not), or ``None`` when the session is gone. Raises
        :class:`ClientDisconnected` as soon as the client goes away.
        """
        self._parked += 1
        self._long_poll_gauge.inc()
        try:
            session = await until_disconnected(
                request.receive, "http.disconnect", self.changed(session_id, version, timeout_s)
            )
        except ClientDisconnected:
            counters.long_polls["disconnected"].inc()
            raise
        finally:
            self._parked -= 1
            self._long_poll_gauge.dec()
        if session is None:
            counters.long_polls["gone"].inc()
        else:
            counters.long_polls["changed" if session.version != version else "timeout"].inc()
        return session

    @property
    def holds(self) -> int:
        """Gen-1 polls held in this process right now."""
        return self._holds

    async def hold(self, request: Request, address: str, session: Session) -> Session | None:
        """Hold a plain Gen-1 poll of ``session`` (its ``If-None-Match`` named the current version).

        Returns the session as it is when the hold ends: changed (a write landed), unchanged (``hold_ms`` passed,
        the server is stopping, or a cap was reached and nothing was held), or ``None`` when it was deleted or
        expired. Raises :class:`ClientDisconnected` as soon as the client goes away. Counted once per request
        against the rate limits, like any read: the caller took the token before.
        """
        outcomes = self._hold_outcomes
        if self.closing:
            outcomes["shutdown"].inc()
            return session
        by_address = self._holds_by_address
        held_here = by_address.get(address, 0)
        if self._holds >= self._hold_cap or held_here >= self._hold_cap_per_address:
            outcomes["capped"].inc()
            return session
        by_address[address] = held_here + 1
        self._holds += 1
        self._hold_gauge.inc()
        version = session.version
        # Expiry wakes nobody: look again just after the session's deadline, and answer 404 then.
        timeout = min(self.hold_s, session.expires_in_ms / 1000 + _EXPIRY_SLACK_S)
        # The poll waits in the request's own task on its connection, until the store's change callback, the
        # shared deadline or close() wakes it. A held poll is thus this one coroutine (no second one: this frame
        # is part of the cost), one store callback entry and one deadline entry: no second task, no future, no
        # timer of its own. Registering returns at once on the memory store; on Redis it first subscribes (or
        # shares the subscription of another local hold). A store without change callbacks waits as long-polls do.
        task = asyncio.current_task()
        assert task is not None
        hold = _Hold(task)
        store = self._store
        try:
            registered = await store.register_change(session.id, version, hold)
            if registered is None:
                current = await until_disconnected(
                    request.receive, "http.disconnect", self.changed(session.id, version, timeout)
                )
            elif not registered or self._closed:
                # Moved already, or close() came while registering (it wakes only the holds it can see).
                current = await store.get(session.id)
            else:
                self._deadlines.add(hold, timeout)
                try:
                    while (await request.receive())["type"] != "http.disconnect":
                        pass
                    gone = True
                except asyncio.CancelledError:
                    if hold.task is not None or task.uncancel() > 0:
                        raise  # not (only) our wake: the server cancelling the request
                    gone = False
                except Exception:  # a connection whose messages cannot be read is as good as gone
                    gone = True
                if gone:
                    if hold.task is None:
                        # Woken in the same turn as the disconnect: take that cancellation back first.
                        try:
                            await asyncio.sleep(0)
                        except asyncio.CancelledError:
                            if task.uncancel() > 0:
                                raise
                    raise ClientDisconnected
                # Woken: a write or a delete, a lost Redis subscription, the deadline or the shutdown.
                current = await store.get(session.id)
        except ClientDisconnected:
            outcomes["disconnect"].inc()
            raise
        finally:
            hold.task = None
            self._deadlines.ended(hold)
            store.forget_change(session.id, hold)
            self._holds -= 1
            self._hold_gauge.dec()
            left = by_address[address] - 1
            if left:
                by_address[address] = left
            else:
                del by_address[address]
        if current is None:
            outcomes["deleted"].inc()
        elif current.version != version:
            outcomes["write"].inc()
            self._hold_wake.observe(max(0.0, self._wall_clock() - current.last_modified_ms / 1000))
        elif self.closing:
            outcomes["shutdown"].inc()
        else:
            outcomes["timeout"].inc()
        return current


# -- the WebSocket watch -------------------------------------------------------------------------------------

#: Renders one revision as the text of a watch frame.
FrameRenderer = Callable[[Session], str]


class Watcher:
    """Serves ``<session path>/watch`` for one generation."""

    def __init__(self, context: ServerContext, push: Push, generation: Generation, render: FrameRenderer) -> None:
        self._context = context
        self._store = context.store
        self._push = push
        self._generation = generation
        self._render = render
        self._counters = context.metrics.generations[generation]

    async def __call__(self, scope: Scope, receive: Receive, send: Send, session_id: str) -> None:
        """Run one watch connection from handshake to close."""
        if (await receive())["type"] != "websocket.connect":
            return
        request = Request(scope, receive)
        try:
            await self._context.limit_session(request)
            if not self._push.has_room():
                raise MatrixError(503, M_UNKNOWN, "Too many watchers; poll instead", retry_after_ms=5_000)
            session = await self._store.get(session_id) if is_opaque_id(session_id) else None
        except MatrixError as exc:
            await refuse(scope, send, exc)
            return
        await send({"type": "websocket.accept"})
        if session is None or session.generation is not self._generation:
            await send({"type": "websocket.close", "code": GONE_CLOSE_CODE, "reason": "session not found"})
            return
        with self._push.parking_watch():
            try:
                await until_disconnected(receive, "websocket.disconnect", self._stream(send, session))
            except (ClientDisconnected, OSError):
                # OSError: uvicorn's own ClientDisconnected, when a frame is sent to a peer that just left.
                return
        logger.debug("watch ended", extra={"fields": {"session": redact(session_id)}})

    async def _stream(self, send: Send, first: Session) -> None:
        session: Session | None = first
        version = 0
        while session is not None:
            if session.version != version:
                version = session.version
                await send({"type": "websocket.send", "text": self._render(session)})
                self._counters.watch_frames.inc()
            # Expiry wakes nobody: look again just after the session's deadline.
            timeout = min(self._push.max_wait_s, session.expires_in_ms / 1000 + _EXPIRY_SLACK_S)
            session = await self._push.changed(session.id, version, timeout)
            if self._push.closing:
                await send({"type": "websocket.close", "code": GOING_AWAY_CLOSE_CODE, "reason": "server stopping"})
                return
            if session is not None and session.generation is not self._generation:
                session = None
        await send({"type": "websocket.close", "code": GONE_CLOSE_CODE, "reason": "session gone"})


async def refuse(scope: Scope, send: Send, error: MatrixError) -> None:
    """Refuse a WebSocket handshake with ``error`` as an HTTP answer, or a bare 403 if the server cannot."""
    if "websocket.http.response" in scope.get("extensions", {}):
        response = error.to_response()
        headers = response.headers
        headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "websocket.http.response.start", "status": response.status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": response.body})
    else:
        await send({"type": "websocket.close", "code": 1008})
