"""The ASGI application: a thin router over the Gen-1 and Gen-2 route classes.

A small hand-written router instead of a framework keeps the hot path (a poll every second from each device)
down to a path split, one store read and one response; the OpenAPI document (:mod:`rendezvous.openapi`)
describes the same mounts.

Each uvicorn worker builds its own app with :func:`app_from_environment` (an app factory), from the settings
the CLI validated and passed down through the environment.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from urllib.parse import unquote

import httpx

from .auth import TokenVerifier
from .config import CreatePolicy, Settings, load_settings
from .context import ServerContext
from .gen1 import PATH as GEN1_PATH
from .gen1 import Gen1Api
from .gen2 import STABLE_PATH, UNSTABLE_PATH, Gen2Api
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
from .openapi import HEALTH_PATH, OPENAPI_PATH, build_openapi
from .proxy import ProxyResolver
from .store import SessionStore, StoreUnavailable
from .store.factory import open_store

logger = logging.getLogger("rendezvous")

#: Environment variable carrying the validated settings (JSON) from the CLI to every worker process.
WORKER_SETTINGS_ENV = "_RENDEZVOUS_WORKER_SETTINGS"
#: Suggested wait after the store failed.
STORE_RETRY_AFTER_MS = 2_000

Handler = Callable[[Request], Awaitable[Response]]


def _unrecognized() -> MatrixError:
    return MatrixError(404, "M_UNRECOGNIZED", "Unrecognized request")


def _method_not_allowed(allowed: str) -> MatrixError:
    return MatrixError(405, "M_UNRECOGNIZED", "Method not allowed", headers=[(b"allow", allowed.encode())])


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
        self.context = ServerContext(settings, self.store, ProxyResolver(settings.trusted_proxies), verifier)
        self._gen1 = Gen1Api(self.context) if settings.gen1_enabled else None
        gen2_on = settings.gen2_create_policy is not CreatePolicy.OFF
        self._gen2: list[tuple[str, Gen2Api]] = []
        if gen2_on:
            self._gen2.append((UNSTABLE_PATH, Gen2Api(self.context, stable=False)))
            if settings.gen2_stable_api:
                self._gen2.append((STABLE_PATH, Gen2Api(self.context, stable=True)))
        self._openapi = json_bytes(build_openapi(settings))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})

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
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        """Release the store (if this app opened it) and the homeserver client."""
        if self._http_client is not None:
            await self._http_client.aclose()
        if self._owns_store:
            await self.store.close()

    # -- requests -------------------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await self._route(request)
        except MatrixError as exc:
            response = exc.to_response()
        except StoreUnavailable:
            response = MatrixError(
                503, "M_UNKNOWN", "Session store unavailable", retry_after_ms=STORE_RETRY_AFTER_MS
            ).to_response()
        except ClientDisconnected:
            return
        except Exception:
            logger.exception("unexpected error handling %s", scope.get("method"))
            response = MatrixError(500, "M_UNKNOWN", "Internal server error").to_response()
        await response.send(send)

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
            if method in ("GET", "HEAD"):
                await self.store.ping()
                return json_response(200, {"status": "ok"})
            raise _method_not_allowed("GET, HEAD")
        if path == OPENAPI_PATH:
            if method in ("GET", "HEAD"):
                return Response(200, [(b"content-type", b"application/json"), *COMMON_HEADERS], self._openapi)
            raise _method_not_allowed("GET, HEAD")
        raise _unrecognized()

    async def _route_gen1(self, api: Gen1Api, request: Request, method: str) -> Response:
        segments = _segments(request.scope, GEN1_PATH)
        if not segments:
            if method == "POST":
                return await api.create(request)
            if method == "OPTIONS":
                return _preflight()
            raise _method_not_allowed("POST, OPTIONS")
        if len(segments) == 1 and segments[0]:
            session_id = segments[0]
            if method == "GET" or method == "HEAD":
                return await api.get(request, session_id)
            if method == "PUT":
                return await api.put(request, session_id)
            if method == "DELETE":
                return await api.delete(request, session_id)
            if method == "OPTIONS":
                return _preflight()
            raise _method_not_allowed("GET, HEAD, PUT, DELETE, OPTIONS")
        raise _unrecognized()

    async def _route_gen2(self, api: Gen2Api, prefix: str, request: Request, method: str) -> Response:
        segments = _segments(request.scope, prefix)
        if method == "OPTIONS" and len(segments) <= 2 and all(segments):
            return _preflight()
        if not segments:
            if method == "GET" or method == "HEAD":
                return await api.discover(request)
            if method == "POST":
                return await api.create(request)
            raise _method_not_allowed("GET, HEAD, POST, OPTIONS")
        if len(segments) == 1 and segments[0]:
            session_id = segments[0]
            if method == "GET" or method == "HEAD":
                return await api.get(request, session_id)
            if method == "PUT":
                return await api.put(request, session_id, None)
            if method == "DELETE":
                return await api.delete(request, session_id)
            raise _method_not_allowed("GET, HEAD, PUT, DELETE, OPTIONS")
        if len(segments) == 2 and segments[0] and segments[1]:
            if method == "PUT":
                return await api.put(request, segments[0], segments[1])
            raise _method_not_allowed("PUT, OPTIONS")
        raise _unrecognized()


def create_app(settings: Settings | None = None, *, store: SessionStore | None = None) -> RendezvousApp:
    """The app for ``settings`` (default: from the environment and config file), on ``store`` if given.

    A store passed in stays the caller's to close.
    """
    return RendezvousApp(settings if settings is not None else load_settings(), store=store)


def app_from_environment() -> RendezvousApp:
    """uvicorn app factory: the settings the CLI validated, or else the environment and config file."""
    serialized = os.environ.get(WORKER_SETTINGS_ENV)
    if serialized is not None:
        return RendezvousApp(Settings.model_validate_json(serialized))
    return create_app()
