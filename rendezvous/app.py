"""The ASGI application: the route table's router over the Gen-1 and Gen-2 route classes.

A small hand-written router (:mod:`rendezvous.router`) instead of a framework keeps the hot path (a poll every
second from each device) down to a path split, one store read and one response; the router, the metrics and the
OpenAPI document (:mod:`rendezvous.openapi`) all read the one route table (:mod:`rendezvous.routes`).

Each uvicorn worker builds its own app with :func:`app_from_environment` (an app factory), from the settings
the CLI validated and passed down through the environment.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from .auth import TokenVerifier
from .config import Settings, load_settings
from .context import ServerContext
from .describe import index_page, store_unreachable_message
from .gen1 import Gen1Api
from .gen1 import watch_frame as gen1_watch_frame
from .gen2 import Gen2Api
from .gen2 import watch_frame as gen2_watch_frame
from .http import (
    COMMON_HEADERS,
    ClientDisconnected,
    MatrixError,
    Receive,
    Request,
    Response,
    Scope,
    Send,
    json_bytes,
    json_response,
)
from .logs import configure_logging
from .metrics import CONTENT_TYPE, ExpiryWatch, InstrumentedStore, Metrics, serve_metrics_port
from .openapi import build_openapi
from .protocol import HEALTH_PATH, M_UNKNOWN, OPENAPI_PATH
from .proxy import ProxyResolver
from .push import Push, Watcher, refuse
from .router import Router, unrecognized
from .routes import OTHER, Mount, mounted
from .store import Generation, SessionStore, StoreUnavailable
from .store.factory import open_store

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger("rendezvous")

#: Environment variable carrying the validated settings (JSON) from the CLI to every worker process.
WORKER_SETTINGS_ENV = "_RENDEZVOUS_WORKER_SETTINGS"
#: Suggested wait after the store failed.
STORE_RETRY_AFTER_MS = 2_000


class RendezvousApp:
    """The rendezvous server as an ASGI 3 application."""

    def __init__(self, settings: Settings, *, store: SessionStore | None = None) -> None:
        self.settings = settings
        self._owns_store = store is None
        self.store = store if store is not None else open_store(settings.store_url)
        self._http_client: httpx.AsyncClient | None = None
        verifier = None
        if settings.homeserver_url is not None:
            self._http_client = TokenVerifier.http_client(settings.homeserver_timeout_seconds)
            verifier = TokenVerifier(
                settings.homeserver_url, self._http_client, cache_seconds=settings.token_cache_seconds
            )
        self.metrics = Metrics()
        # The routes see the store through the instrumented wrapper, which times and counts every call.
        store_view = InstrumentedStore(self.store, self.metrics)
        self.expiry = ExpiryWatch(store_view, self.metrics)
        proxies = ProxyResolver(settings.trusted_proxies, settings.forwarded_header)
        self.context = ServerContext(settings, store_view, proxies, self.metrics, self.expiry, verifier)
        self.push = Push(settings, store_view, self.metrics)
        self._watchers = {
            Generation.GEN1: Watcher(self.context, self.push, Generation.GEN1, gen1_watch_frame),
            Generation.GEN2: Watcher(self.context, self.push, Generation.GEN2, gen2_watch_frame),
        }
        self._openapi = json_bytes(build_openapi(settings))
        self._index = index_page(settings, health_path=HEALTH_PATH, openapi_path=OPENAPI_PATH).encode()
        self._body_timeout_s = settings.request_body_timeout_seconds
        self._metrics_server: asyncio.Server | None = None
        self._router = Router(mounted(settings), self._api_of, self.metrics.routes)
        self._r_other = self.metrics.routes[OTHER]

    def _api_of(self, mount: Mount) -> object:
        """The object whose methods answer the operations of ``mount``."""
        if mount.generation is Generation.GEN1:
            return Gen1Api(self.context, self.push)
        if mount.generation is Generation.GEN2:
            return Gen2Api(self.context, self.push, stable=mount.stable)
        return self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)

    # -- lifespan -------------------------------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.store.ping()
                except StoreUnavailable as exc:
                    # Keep running: the store may come up later, and /health reports it meanwhile.
                    logger.warning(store_unreachable_message(self.settings.store_url, exc))
                settings = self.settings
                if settings.metrics_enabled and settings.metrics_port is not None:
                    try:
                        self._metrics_server = await serve_metrics_port(
                            self.metrics, self.context.store, settings.metrics_host, settings.metrics_port
                        )
                    except OSError as exc:
                        message_text = f"cannot listen on the metrics port: {exc.strerror}"
                        await send({"type": "lifespan.startup.failed", "message": message_text})
                        return
                if settings.server == "granian":
                    _on_termination_signal(self.begin_shutdown)
                self.expiry.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.begin_shutdown()
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def begin_shutdown(self) -> None:
        """The server stops accepting: answer parked long-polls and close watches now, not at their deadlines.

        Called by :mod:`rendezvous.connections` as soon as uvicorn starts a graceful shutdown (before it waits
        for the requests in flight), and again at lifespan shutdown for servers that only send that.
        """
        self.push.close()

    async def aclose(self) -> None:
        """Release the store (if this app opened it), the homeserver client and the background tasks."""
        await self.expiry.stop()
        if self._metrics_server is not None:
            self._metrics_server.close()
            await self._metrics_server.wait_closed()
            self._metrics_server = None
        self.metrics.process_exited()
        if self._http_client is not None:
            await self._http_client.aclose()
        if self._owns_store:
            await self.store.close()

    # -- requests -------------------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request = Request(scope, receive, self._r_other, self._body_timeout_s)
        response: Response | None
        try:
            response = await self._router.dispatch(request)
        except MatrixError as exc:
            response = exc.to_response()
        except StoreUnavailable:
            response = MatrixError(
                503, M_UNKNOWN, "Session store unavailable", retry_after_ms=STORE_RETRY_AFTER_MS
            ).to_response()
        except ClientDisconnected:
            response = None
        except Exception:
            logger.exception("unexpected error handling %s", scope.get("method"))
            response = MatrixError(500, M_UNKNOWN, "Internal server error").to_response()
        if response is not None:
            await response.send(send)
        route = request.route
        if route is not None:
            # 499 (as nginx logs it): the client closed the connection before the answer.
            route.observe(499 if response is None else response.status, time.perf_counter() - started)

    # -- the server's own paths (handlers named in the route table) -----------------------------------------

    async def serve_health(self, request: Request) -> Response:
        """``GET /health``: 200 while the store answers."""
        await self.store.ping()
        return json_response(200, {"status": "ok"})

    async def serve_openapi(self, request: Request) -> Response:
        """``GET /_rendezvous/openapi.json``: the OpenAPI document of the mounted routes."""
        return Response(200, [(b"content-type", b"application/json"), *COMMON_HEADERS], self._openapi)

    async def serve_index(self, request: Request) -> Response:
        """``GET /``: a few lines of text saying what this server is and where its docs are."""
        return Response(200, [(b"content-type", b"text/plain; charset=utf-8"), *COMMON_HEADERS], self._index)

    async def serve_metrics(self, request: Request) -> Response:
        """``GET /metrics`` on the main port: the Prometheus exposition."""
        body = await self.metrics.exposition(self.context.store)
        return Response(200, [(b"content-type", CONTENT_TYPE), (b"cache-control", b"no-store")], body)

    # -- WebSocket watch (push extension) ------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``<session path>/watch`` of either generation; anything else is refused with 404."""
        target = self._router.watch(scope) if self.push.websocket else None
        try:
            if target is not None:
                generation, session_id = target
                await self._watchers[generation](scope, receive, send, session_id)
                return
            if (await receive())["type"] == "websocket.connect":
                await refuse(scope, send, unrecognized())
        except StoreUnavailable:
            error = MatrixError(503, M_UNKNOWN, "Session store unavailable", retry_after_ms=STORE_RETRY_AFTER_MS)
            try:
                await refuse(scope, send, error)
            except (RuntimeError, OSError):
                # Already accepted: the handshake cannot be refused any more, so close the socket instead.
                await send({"type": "websocket.close", "code": 1011})


def _on_termination_signal(callback: Callable[[], None]) -> None:
    """Call ``callback`` in this loop as soon as SIGTERM or SIGINT arrives (granian's workers only).

    uvicorn tells :mod:`rendezvous.connections` when it starts shutting down; granian tells nobody, and sends
    ``lifespan.shutdown`` only after every request in flight, parked long-polls included, has finished. Its
    worker takes the signals through the event loop (the wakeup file descriptor), which leaves the
    Python-level handler a no-op: chaining ours there keeps granian's handling as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)

        def handler(number: int, frame: FrameType | None, previous: object = previous) -> None:
            loop.call_soon_threadsafe(callback)
            if callable(previous):
                previous(number, frame)

        signal.signal(signum, handler)


def create_app(settings: Settings | None = None, *, store: SessionStore | None = None) -> RendezvousApp:
    """The app for ``settings`` (default: from the environment and config file), on ``store`` if given.

    A store passed in stays the caller's to close.
    """
    return RendezvousApp(settings if settings is not None else load_settings(), store=store)


def app_from_environment() -> RendezvousApp:
    """uvicorn app factory: the settings the CLI validated, or else the environment and config file."""
    serialized = os.environ.get(WORKER_SETTINGS_ENV)
    settings = Settings.model_validate_json(serialized) if serialized is not None else load_settings()
    # uvicorn has set up its loggers by now; give them our format and redaction.
    configure_logging(settings)
    return RendezvousApp(settings)
