"""The ASGI application: a thin router over the Gen-1 and Gen-2 route classes.

A small hand-written router instead of a framework keeps the hot path (a poll every second from each device)
down to a path split, one store read and one response; the OpenAPI document (:mod:`rendezvous.openapi`)
describes the same mounts.

Each uvicorn worker builds its own app with :func:`app_from_environment` (an app factory), from the settings
the CLI validated and passed down through the environment.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from urllib.parse import unquote

import httpx

from .auth import TokenVerifier
from .config import CreatePolicy, Settings, load_settings
from .context import ServerContext
from .gen1 import Gen1Api
from .gen1 import watch_frame as gen1_watch_frame
from .gen2 import Gen2Api
from .gen2 import watch_frame as gen2_watch_frame
from .http import (
    COMMON_HEADERS,
    PREFLIGHT_HEADERS,
    TEXT_PLAIN,
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
from .protocol import (
    GEN1_PATH,
    GEN2_STABLE_PATH,
    GEN2_UNSTABLE_PATH,
    HEALTH_PATH,
    M_UNKNOWN,
    M_UNRECOGNIZED,
    METRICS_PATH,
    OPENAPI_PATH,
)
from .proxy import ProxyResolver
from .push import Push, Watcher, refuse
from .store import Generation, SessionStore, StoreUnavailable
from .store.factory import open_store

logger = logging.getLogger("rendezvous")

#: Environment variable carrying the validated settings (JSON) from the CLI to every worker process.
WORKER_SETTINGS_ENV = "_RENDEZVOUS_WORKER_SETTINGS"
#: Suggested wait after the store failed.
STORE_RETRY_AFTER_MS = 2_000

Handler = Callable[[Request], Awaitable[Response]]


def _unrecognized() -> MatrixError:
    return MatrixError(404, M_UNRECOGNIZED, "Unrecognized request")


def _method_not_allowed(allowed: str) -> MatrixError:
    return MatrixError(405, M_UNRECOGNIZED, "Method not allowed", headers=[(b"allow", allowed.encode())])


def _preflight() -> Response:
    return Response(204, [(b"content-type", TEXT_PLAIN), *COMMON_HEADERS, *PREFLIGHT_HEADERS])


def _segments(scope: Scope, prefix: str) -> list[str]:
    """The path segments after ``prefix``, each percent-decoded on its own.

    Splitting the raw path first keeps an encoded ``%2F`` inside an id from turning into a separator.
    """
    raw: bytes | None = scope.get("raw_path")
    encoded_prefix = prefix.encode()
    if raw is not None and raw.startswith(encoded_prefix):
        rest = raw[len(encoded_prefix) :].decode("latin-1")
        # Invalid UTF-8 escapes become U+FFFD, which no id or txnId may contain: refused later, not here.
        return [unquote(part, errors="replace") for part in rest.split("/")[1:]]
    path: str = scope["path"]
    return path[len(prefix) :].split("/")[1:]


def _under(path: str, prefix: str) -> bool:
    return path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/")


class RendezvousApp:
    """The rendezvous server as an ASGI 3 application."""

    def __init__(self, settings: Settings, *, store: SessionStore | None = None) -> None:
        self.settings = settings
        self._owns_store = store is None
        self.store = store if store is not None else open_store(settings.store_url)
        self._http_client: httpx.AsyncClient | None = None
        verifier = None
        if settings.homeserver_url is not None:
            self._http_client = httpx.AsyncClient(
                timeout=settings.homeserver_timeout_seconds, follow_redirects=False, trust_env=False
            )
            verifier = TokenVerifier(
                settings.homeserver_url, self._http_client, cache_seconds=settings.token_cache_seconds
            )
        self.metrics = Metrics()
        # The routes see the store through the instrumented wrapper, which times and counts every call.
        store_view = InstrumentedStore(self.store, self.metrics)
        self.expiry = ExpiryWatch(store_view, self.metrics)
        self.context = ServerContext(
            settings, store_view, ProxyResolver(settings.trusted_proxies), self.metrics, self.expiry, verifier
        )
        self.push = Push(settings, store_view, self.metrics)
        self._gen1 = Gen1Api(self.context, self.push) if settings.gen1_enabled else None
        gen2_on = settings.gen2_create_policy is not CreatePolicy.OFF
        self._gen2: list[tuple[str, Gen2Api]] = []
        if gen2_on:
            self._gen2.append((GEN2_UNSTABLE_PATH, Gen2Api(self.context, self.push, stable=False)))
            if settings.gen2_stable_api:
                self._gen2.append((GEN2_STABLE_PATH, Gen2Api(self.context, self.push, stable=True)))
        self._gen1_watch = Watcher(self.context, self.push, Generation.GEN1, gen1_watch_frame)
        self._gen2_watch = Watcher(self.context, self.push, Generation.GEN2, gen2_watch_frame)
        self._openapi = json_bytes(build_openapi(settings))
        self._metrics_here = settings.metrics_enabled and settings.metrics_port is None
        self._metrics_server: asyncio.Server | None = None
        routes = self.metrics.routes
        self._r_gen1_create, self._r_gen1_get = routes["gen1.create"], routes["gen1.get"]
        self._r_gen1_put, self._r_gen1_delete = routes["gen1.put"], routes["gen1.delete"]
        self._r_gen2_discover, self._r_gen2_create = routes["gen2.discover"], routes["gen2.create"]
        self._r_gen2_get, self._r_gen2_put = routes["gen2.get"], routes["gen2.put"]
        self._r_gen2_delete, self._r_preflight = routes["gen2.delete"], routes["preflight"]
        self._r_health, self._r_openapi = routes["health"], routes["openapi"]
        self._r_metrics, self._r_other = routes["metrics"], routes["other"]

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
                except StoreUnavailable:
                    # Keep running: the store may come up later, and /health reports it meanwhile.
                    logger.warning("the session store is not reachable yet; /health will report 503")
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
                self.expiry.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

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
        request = Request(scope, receive, self._r_other)
        response: Response | None
        try:
            response = await self._route(request)
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

    async def _route(self, request: Request) -> Response:
        path: str = request.scope["path"]
        method = request.method
        gen1 = self._gen1
        if gen1 is not None and _under(path, GEN1_PATH):
            return await self._route_gen1(gen1, request, method)
        for prefix, api in self._gen2:
            if _under(path, prefix):
                return await self._route_gen2(api, prefix, request, method)
        if path == HEALTH_PATH:
            request.route = self._r_health
            if method in ("GET", "HEAD"):
                await self.store.ping()
                return json_response(200, {"status": "ok"})
            raise _method_not_allowed("GET, HEAD")
        if path == OPENAPI_PATH:
            request.route = self._r_openapi
            if method in ("GET", "HEAD"):
                return Response(200, [(b"content-type", b"application/json"), *COMMON_HEADERS], self._openapi)
            raise _method_not_allowed("GET, HEAD")
        if path == METRICS_PATH and self._metrics_here:
            request.route = self._r_metrics
            if method in ("GET", "HEAD"):
                body = await self.metrics.exposition(self.context.store)
                return Response(200, [(b"content-type", CONTENT_TYPE), (b"cache-control", b"no-store")], body)
            raise _method_not_allowed("GET, HEAD")
        raise _unrecognized()

    async def _route_gen1(self, api: Gen1Api, request: Request, method: str) -> Response:
        segments = _segments(request.scope, GEN1_PATH)
        if not segments:
            if method == "POST":
                request.route = self._r_gen1_create
                return await api.create(request)
            if method == "OPTIONS":
                request.route = self._r_preflight
                return _preflight()
            raise _method_not_allowed("POST, OPTIONS")
        if len(segments) == 1 and segments[0]:
            session_id = segments[0]
            if method == "GET" or method == "HEAD":
                request.route = self._r_gen1_get
                return await api.get(request, session_id)
            if method == "PUT":
                request.route = self._r_gen1_put
                return await api.put(request, session_id)
            if method == "DELETE":
                request.route = self._r_gen1_delete
                return await api.delete(request, session_id)
            if method == "OPTIONS":
                request.route = self._r_preflight
                return _preflight()
            raise _method_not_allowed("GET, HEAD, PUT, DELETE, OPTIONS")
        raise _unrecognized()

    async def _route_gen2(self, api: Gen2Api, prefix: str, request: Request, method: str) -> Response:
        segments = _segments(request.scope, prefix)
        if method == "OPTIONS" and len(segments) <= 2 and all(segments):
            request.route = self._r_preflight
            return _preflight()
        if not segments:
            if method == "GET" or method == "HEAD":
                request.route = self._r_gen2_discover
                return await api.discover(request)
            if method == "POST":
                request.route = self._r_gen2_create
                return await api.create(request)
            raise _method_not_allowed("GET, HEAD, POST, OPTIONS")
        if len(segments) == 1 and segments[0]:
            session_id = segments[0]
            if method == "GET" or method == "HEAD":
                request.route = self._r_gen2_get
                return await api.get(request, session_id)
            if method == "PUT":
                request.route = self._r_gen2_put
                return await api.put(request, session_id, None)
            if method == "DELETE":
                request.route = self._r_gen2_delete
                return await api.delete(request, session_id)
            raise _method_not_allowed("GET, HEAD, PUT, DELETE, OPTIONS")
        if len(segments) == 2 and segments[0] and segments[1]:
            if method == "PUT":
                request.route = self._r_gen2_put
                return await api.put(request, segments[0], segments[1])
            raise _method_not_allowed("PUT, OPTIONS")
        raise _unrecognized()

    # -- WebSocket watch (push extension) ------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``<session path>/watch`` of either generation; anything else is refused with 404."""
        path: str = scope["path"]
        watcher: Watcher | None = None
        segments: list[str] = []
        if self.push.websocket:
            if self._gen1 is not None and _under(path, GEN1_PATH):
                watcher, segments = self._gen1_watch, _segments(scope, GEN1_PATH)
            else:
                for prefix, _ in self._gen2:
                    if _under(path, prefix):
                        watcher, segments = self._gen2_watch, _segments(scope, prefix)
                        break
        try:
            if watcher is not None and len(segments) == 2 and segments[0] and segments[1] == "watch":
                await watcher(scope, receive, send, segments[0])
                return
            if (await receive())["type"] == "websocket.connect":
                await refuse(scope, send, _unrecognized())
        except StoreUnavailable:
            error = MatrixError(503, M_UNKNOWN, "Session store unavailable", retry_after_ms=STORE_RETRY_AFTER_MS)
            try:
                await refuse(scope, send, error)
            except (RuntimeError, OSError):
                # Already accepted: the handshake cannot be refused any more, so close the socket instead.
                await send({"type": "websocket.close", "code": 1011})


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
