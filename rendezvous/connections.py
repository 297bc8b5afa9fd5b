"""Connection limits under uvicorn: what a reverse proxy in front would otherwise bound.

uvicorn reads request headers with no deadline and no size limit (with httptools), keeps a connection whose body
trickles in for as long as bytes keep coming, and accepts connections until file descriptors run out. Its
``limit_concurrency`` answers 503 to everyone past the limit, ``/health`` included. :class:`GuardedProtocol` is
uvicorn's httptools protocol with, per connection:

* a header deadline (``request_header_timeout_seconds``), from the connection's start or a request's first byte
  to the end of its headers: 408 (or a silent close when nothing came) when it passes;
* a header size limit (``max_request_header_bytes``): 431 as soon as the request line and headers pass it;
* a body deadline, the backstop for bodies nobody reads (the routes that read a body have their own deadline,
  answered with 408, in :meth:`rendezvous.http.Request.read_body`);
* a connection cap (``max_connections`` per process): past it every request but ``/health`` gets 503 and the
  header deadline shrinks to :data:`BUSY_HEADER_TIMEOUT_S`, and past it plus :data:`HEALTH_RESERVE`
  connections are dropped as soon as they are accepted, before they can take the last file descriptors;
* a WebSocket handshake the WebSocket library would refuse (a bad ``Sec-WebSocket-Key``, not a GET, …) is
  answered as ``400 M_INVALID_PARAM`` instead of the library's ``text/plain`` answer;
* a shutdown notice: uvicorn asks every connection to shut down before it waits for requests in flight, and that
  is when the app answers its parked long-polls (:meth:`rendezvous.app.RendezvousApp.begin_shutdown`).

The limits come from the settings of the app uvicorn loaded, so each worker process reads its own.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.http11 import Request as HandshakeRequest
from websockets.server import ServerProtocol

from .config import Settings
from .http import MatrixError, Receive, Scope, Send, json_bytes
from .protocol import M_INVALID_PARAM, M_TOO_LARGE, M_UNKNOWN

logger = logging.getLogger("rendezvous.connections")

#: Connections past ``max_connections`` kept open only for ``/health``, so a load balancer still sees the
#: process answer while it refuses work.
HEALTH_RESERVE = 64
#: File descriptors kept for everything but client connections: the store, the homeserver client, logs.
FD_SLACK = 128
#: The body backstop fires this long after the routes' own deadline, so that their 408 goes first.
BODY_BACKSTOP_GRACE_S = 1.0
#: Header deadline of a connection accepted past ``max_connections``: it gets the reserve only if it asks at once.
BUSY_HEADER_TIMEOUT_S = 1.0
#: Suggested wait in the 503 past the connection cap.
BUSY_RETRY_AFTER_MS = 2_000
#: At most one warning about refused connections per this many seconds.
_WARN_EVERY_S = 60.0
_HEALTH_PATH = b"/health"


@dataclass(frozen=True, slots=True)
class Limits:
    """The per-connection limits of one worker process."""

    header_timeout_s: float = 5.0
    body_timeout_s: float = 10.0
    max_header_bytes: int = 32_768
    max_connections: int = 16_000

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits ``settings`` ask for, the connection cap lowered to what the file descriptors allow."""
        return cls(
            header_timeout_s=settings.request_header_timeout_seconds,
            body_timeout_s=settings.request_body_timeout_seconds,
            max_header_bytes=settings.max_request_header_bytes,
            max_connections=min(settings.max_connections, _fd_budget()),
        )


@functools.cache
def _fd_budget() -> int:
    """Connections this process can hold: its descriptor limit minus the slack and the ``/health`` reserve."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 30
    return max(1, soft - FD_SLACK - HEALTH_RESERVE)


def raise_fd_limit(max_connections: int) -> None:
    """Raise this process's soft descriptor limit (up to the hard one) to fit ``max_connections``.

    Worker processes inherit it. When the hard limit is lower, the cap is lowered instead, with a warning.
    """
    wanted = max_connections + HEALTH_RESERVE + FD_SLACK
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        logger.warning(
            "the file descriptor limit (%d) is below max_connections + %d; serving at most %d connections",
            target,
            HEALTH_RESERVE + FD_SLACK,
            max(1, target - HEALTH_RESERVE - FD_SLACK),
        )


def _refusing(error: MatrixError) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI app that answers every request with ``error``, then closes the connection."""
    error.headers.append((b"connection", b"close"))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await error.to_response().send(send)

    return app


#: The app past the connection cap: 503 with ``Retry-After``.
_busy = _refusing(MatrixError(503, M_UNKNOWN, "Server busy; try again later", retry_after_ms=BUSY_RETRY_AFTER_MS))
#: The app for a request whose headers arrived in one piece but are too large.
_headers_too_large = _refusing(MatrixError(431, M_TOO_LARGE, "Request headers are too large"))


#: The WebSocket library's logger for the check: silent, outside the logger tree (so no logging configuration
#: turns it on). At debug level the library logs the whole request, session id included; a refused handshake
#: is the client's error, answered as such.
_handshake_logger = logging.Logger("rendezvous.connections.handshake", level=logging.CRITICAL + 1)
_handshake_logger.addHandler(logging.NullHandler())
_handshake_logger.propagate = False


def _handshake_refusal(wire: bytes, per_message_deflate: bool) -> str | None:
    """Why the WebSocket library would refuse the upgrade request ``wire``, or ``None`` if it would accept it.

    The same checks uvicorn's websockets protocol makes after the upgrade, made before it: a refused handshake
    is then answered by the app's error path (a Matrix error) instead of the library's ``text/plain`` 400.
    """
    # The extensions uvicorn's websockets-sansio protocol offers.
    deflate = ServerPerMessageDeflateFactory(
        server_max_window_bits=12, client_max_window_bits=12, compress_settings={"memLevel": 5}
    )
    extensions = [deflate] if per_message_deflate else []
    protocol = ServerProtocol(extensions=extensions, logger=_handshake_logger)
    protocol.receive_data(wire)
    if protocol.handshake_exc is not None:
        return str(protocol.handshake_exc)
    request = next((event for event in protocol.events_received() if isinstance(event, HandshakeRequest)), None)
    if request is None:
        return "incomplete handshake request"
    response = protocol.accept(request)
    if response.status_code != 101:
        return response.body.decode("utf-8", "replace").strip()
    return None


def _raw_error(status: int, errcode: str, message: str) -> bytes:
    """A complete Matrix error answer, for writing to a transport before any app is involved."""
    body = json_bytes({"errcode": errcode, "error": message})
    head = b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    return STATUS_LINE[status] + head + body


def _unwrap(app: Any) -> Any:
    # uvicorn may wrap the loaded app in middlewares (proxy headers, message logging); each keeps it in .app.
    while not hasattr(app, "begin_shutdown") and hasattr(app, "app"):
        app = app.app
    return app


class _Pipeline(list[Any]):
    """uvicorn's queue of pipelined requests, as a list: it only ``appendleft``s and ``pop``s, and almost always
    holds nothing. An empty ``deque`` is 760 bytes, an empty list 56, on every open connection."""

    __slots__ = ()

    def appendleft(self, item: Any) -> None:
        self.insert(0, item)


def _lighten(event: asyncio.Event) -> None:
    """Keep ``event``'s waiters in a list instead of a deque (760 bytes even empty): ``asyncio.Event`` only appends,
    removes and iterates them, and uvicorn has at most one waiter per event. Left alone if not as expected."""
    waiters = getattr(event, "_waiters", None)
    if type(waiters) is collections.deque and not waiters:
        setattr(event, "_waiters", [])  # noqa: B010 - a private attribute, set on purpose


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines, a header size limit, a connection cap and a shutdown notice."""

    # Our attributes in slots: uvicorn's 28 then stay within what an instance dict shares its keys for (30 in
    # CPython 3.11), and the dict is not built out in full, 1.3 KB on every open connection.
    __slots__ = (
        "_begin_shutdown",
        "_chunk_len",
        "_deadline",
        "_header_bytes",
        "_in_body",
        "_in_headers",
        "_limits",
        "_messages",
        "_refusal",
        "_upgraded",
    )

    _last_warning = 0.0

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # Per open connection, and 10,000 held polls are 10,000 connections (docs/benchmarks.md).
        self.pipeline = _Pipeline()  # type: ignore[assignment]
        app = _unwrap(self.app)
        settings = getattr(app, "settings", None)
        self._limits = Limits.from_settings(settings) if isinstance(settings, Settings) else Limits()
        self._begin_shutdown = getattr(app, "begin_shutdown", None)
        self._deadline: asyncio.TimerHandle | None = None
        # Between a request's first byte and the end of its headers, and how many bytes came meanwhile.
        self._in_headers = False
        self._header_bytes = 0
        # Between the end of a request's headers and the end of its body.
        self._in_body = False
        # The app that answers instead of ours (busy, headers too large), for the request being parsed.
        self._refusal: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None
        self._upgraded = False
        self._messages = 0
        self._chunk_len = 0

    # -- deadlines ----------------------------------------------------------------------------------------------

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _header_deadline_passed(self) -> None:
        self._deadline = None
        if self._upgraded or self.transport.is_closing():
            return
        if self._in_headers:
            self._refuse(408, M_UNKNOWN, "Request headers not received in time")
        else:
            # A connection that never sent a byte: nobody to answer.
            self.transport.close()

    def _body_deadline_passed(self) -> None:
        self._deadline = None
        if not self._upgraded and not self.transport.is_closing():
            # The app, if it is still reading, sees a disconnect.
            self.transport.close()

    def _refuse(self, status: int, errcode: str, message: str) -> None:
        self._disarm()
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_raw_error(status, errcode, message))
        self.transport.close()

    # -- uvicorn's protocol ----------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _lighten(self.flow._is_writable_event)
        if len(self.connections) > self._limits.max_connections + HEALTH_RESERVE:
            # Accepting cost a descriptor already; keeping it could cost the last one.
            self._warn_refused()
            transport.abort()
            return
        timeout = self._limits.header_timeout_s
        if len(self.connections) > self._limits.max_connections:
            # In the /health reserve: an idle or slow connection must not keep a load balancer's check out.
            timeout = min(timeout, BUSY_HEADER_TIMEOUT_S)
        self._arm(timeout, self._header_deadline_passed)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        completed = self._messages
        self._chunk_len = len(data)
        super().data_received(data)
        if self._messages != completed and not (self._in_headers or self._in_body):
            return  # whole requests, the usual case: nothing to time
        if self._upgraded or self.transport.is_closing():
            return
        if self._in_body:
            if self._deadline is None:
                self._arm(self._limits.body_timeout_s + BODY_BACKSTOP_GRACE_S, self._body_deadline_passed)
            return
        if self._in_headers:
            self._header_bytes += len(data)
            if self._header_bytes > self._limits.max_header_bytes:
                self._refuse(431, M_TOO_LARGE, "Request headers are too large")
                return
        # Partial headers, or bytes that start no request at all (blank lines): the header deadline runs.
        if self._deadline is None:
            self._arm(self._limits.header_timeout_s, self._header_deadline_passed)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_headers = False
        # The body, if any, is timed from here; a WebSocket upgrade stops all timing (handle_websocket_upgrade).
        self._in_body = True
        if self._deadline is not None:
            self._disarm()
        limits = self._limits
        if (
            self._header_bytes + self._chunk_len <= limits.max_header_bytes
            and len(self.connections) <= limits.max_connections
            and not self.parser.should_upgrade()
        ):
            self._refusal = None  # the usual case, decided without a call
            super().on_headers_complete()
        else:
            self._refusal = self._refusal_for_request() or self._refusal_for_upgrade()
            if self._refusal is None:
                super().on_headers_complete()
            else:
                app, self.app = self.app, self._refusal
                try:
                    super().on_headers_complete()
                finally:
                    self.app = app
        cycle = self.cycle
        if cycle is not None and not self._upgraded:
            # Nothing waits on the new request's event yet: its task has not started.
            _lighten(cycle.message_event)

    def _refusal_for_request(self) -> Callable[[Scope, Receive, Send], Awaitable[None]] | None:
        limit = self._limits.max_header_bytes
        # Headers that came whole in one read escaped the check in data_received; measure only when they can
        # be too large, which a normal request never is.
        if self._header_bytes + self._chunk_len > limit and self._head_size() > limit:
            return _headers_too_large
        if len(self.connections) > self._limits.max_connections and not self._is_health():
            return _busy
        return None

    def _refusal_for_upgrade(self) -> Callable[[Scope, Receive, Send], Awaitable[None]] | None:
        """A Matrix 400 for a WebSocket upgrade the WebSocket library would refuse; ``None`` for any other."""
        if not (self.parser.should_upgrade() and super()._should_upgrade()):
            return None
        # The request exactly as handle_websocket_upgrade hands it to the WebSocket protocol.
        wire = b"".join(
            [self.parser.get_method(), b" ", self.url, b" HTTP/1.1\r\n"]
            + [name + b": " + value + b"\r\n" for name, value in self.headers]
            + [b"\r\n"]
        )
        reason = _handshake_refusal(wire, self.config.ws_per_message_deflate)
        if reason is None:
            return None
        return _refusing(MatrixError(400, M_INVALID_PARAM, f"Invalid WebSocket handshake: {reason}"))

    def _head_size(self) -> int:
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def on_message_complete(self) -> None:
        self._in_body = False
        self._messages += 1
        self._disarm()
        super().on_message_complete()

    def _is_health(self) -> bool:
        return self.url.split(b"?", 1)[0] == _HEALTH_PATH

    def _should_upgrade(self) -> bool:
        # A refused WebSocket handshake is answered like any other request (503, 431).
        return self._refusal is None and super()._should_upgrade()

    def _unsupported_upgrade_warning(self) -> None:
        if self._refusal is None:
            super()._unsupported_upgrade_warning()

    def handle_websocket_upgrade(self) -> None:
        self._upgraded = True
        self._in_body = False
        self._disarm()
        super().handle_websocket_upgrade()

    def shutdown(self) -> None:
        super().shutdown()
        if self._begin_shutdown is not None:
            self._begin_shutdown()

    def _warn_refused(self) -> None:
        now = time.monotonic()
        if now - GuardedProtocol._last_warning >= _WARN_EVERY_S:
            GuardedProtocol._last_warning = now
            logger.warning(
                "refusing connections: %d open, max_connections is %d (+%d for /health)",
                len(self.connections),
                self._limits.max_connections,
                HEALTH_RESERVE,
            )
