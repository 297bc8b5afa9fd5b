"""qrlink's push-delivery extension: long-polls and the WebSocket watch, parked on the store's change waits.

Standard clients never see any of this: a GET without the extension's parameters is an ordinary poll. A client
that knows the extension reads its advertisement (the ``X-Qrlink-Push`` header on session answers, the
``io.qrlink.push`` discovery field) and then

* long-polls: Gen-2 ``GET …/{id}?since=<token>&timeout_ms=N``, Gen-1 ``If-None-Match`` + ``Prefer: wait=N``
  (RFC 7240); the answer comes as soon as the session changes, or with the unchanged state at the deadline;
* or watches: ``<session path>/watch`` over a WebSocket, one JSON frame per revision, closed with 4404 when the
  session is gone.

A parked request holds one store waiter (a future, or a share of a Redis subscription) and one small task that
listens for the client going away, and costs no CPU until one of them fires. A disconnect cancels the wait at
once, which releases the waiter. Past ``push_max_waiters`` parked requests in a process, long-polls are answered
at once like ordinary polls and new watches are refused; clients then poll at their normal pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
        #: Resolved when the server starts shutting down; every parked wait races it.
        self._closing: asyncio.Future[None] | None = None
        self._long_poll_gauge = metrics.parked_long_polls
        self._watch_gauge = metrics.parked_watches

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
        return self._closing is not None and self._closing.done()

    def close(self) -> None:
        """The server is stopping: answer every parked long-poll now, close every watch, park nothing new.

        Without this a shutdown would wait for each long-poll's deadline (up to ``push_max_wait_seconds``).
        Must be called from the event loop's thread; calling it again does nothing.
        """
        closing = self._closing_future()
        if not closing.done():
            closing.set_result(None)

    def _closing_future(self) -> asyncio.Future[None]:
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_future()
        return self._closing

    async def changed(self, session_id: str, version: int, timeout_s: float) -> Session | None:
        """The store's ``wait_for_change``, cut short by :meth:`close`: then the session as it is now."""
        closing = self._closing_future()
        if not closing.done():
            change = asyncio.ensure_future(self._store.wait_for_change(session_id, version, timeout_s))
            try:
                await asyncio.wait((change, closing), return_when=asyncio.FIRST_COMPLETED)
            finally:
                change.cancel()  # releases the store waiter; nothing when it has finished
            if change.done() and not change.cancelled():
                return change.result()
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
