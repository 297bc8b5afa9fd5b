"""The stack's front reverse proxy: the homeserver's client URL, with the rendezvous paths on our server.

This is what an admin sets up with nginx or Caddy (``docs/deployment.md``, "Reverse-proxying the rendezvous
paths"): requests below a rendezvous prefix go to our rendezvous server, everything else to Synapse. A Gen-2 QR
code names only the homeserver's base URL, so this is the only way Gen-2 sessions reach our server.

The proxy streams bodies both ways and forwards headers as they came, dropping only the hop-by-hop ones
(RFC 9110 §7.6.1): the rendezvous protocols depend on ``ETag``, ``If-Match``, ``Content-Type`` and friends
reaching each side byte for byte. It adds no ``X-Forwarded-*`` headers and keeps ``Host``, as a proxy that
forwards "untouched" would; our server builds its URLs from ``public_base_url`` instead. No WebSocket.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, MutableMapping
from typing import Any

import httpx
import uvicorn

from devstack._process import StartupError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Path prefixes served by our rendezvous server: Gen-2 unstable and stable, and Gen-1 (MSC4108).
RENDEZVOUS_PREFIXES = (
    b"/_matrix/client/unstable/io.element.msc4388/rendezvous",
    b"/_matrix/client/v1/rendezvous",
    b"/_matrix/client/unstable/org.matrix.msc4108/rendezvous",
)

_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

# Long enough for the rendezvous server's long-polls (push_max_wait_seconds, 30 s by default) to end on their own.
_UPSTREAM_TIMEOUT = httpx.Timeout(90.0, connect=5.0)


def is_rendezvous_path(raw_path: bytes) -> bool:
    """Whether *raw_path* is a rendezvous prefix itself or below one (``/rendezvousX`` is not)."""
    return any(raw_path == prefix or raw_path.startswith(prefix + b"/") for prefix in RENDEZVOUS_PREFIXES)


def _forwarded(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """*headers* without the hop-by-hop ones, including any a ``Connection`` header names."""
    named = {
        token.strip().lower() for name, value in headers if name.lower() == b"connection" for token in value.split(b",")
    }
    return [(name, value) for name, value in headers if name.lower() not in _HOP_BY_HOP | named]


class FrontProxy:
    """ASGI app routing rendezvous paths to *rendezvous_url* and every other path to *homeserver_url*.

    Both URLs are origins with a trailing slash (``http://127.0.0.1:PORT/``). The upstream client lives for the
    app's lifespan, on the loop that serves it.
    """

    def __init__(self, *, homeserver_url: str, rendezvous_url: str) -> None:
        self._homeserver = homeserver_url.rstrip("/")
        self._rendezvous = rendezvous_url.rstrip("/")
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"FrontProxy(homeserver={self._homeserver!r}, rendezvous={self._rendezvous!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._proxy(scope, receive, send)
        # WebSocket scopes are not served: uvicorn refuses the handshake when the app does not accept it.

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # trust_env=False: the upstreams are on loopback and a configured proxy must never see them.
                self._client = httpx.AsyncClient(timeout=_UPSTREAM_TIMEOUT, trust_env=False)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._client is not None:
                    await self._client.aclose()
                    self._client = None
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._client is None:
            raise RuntimeError("the front proxy serves requests only between lifespan startup and shutdown")
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        upstream = self._rendezvous if is_rendezvous_path(raw_path) else self._homeserver
        url = upstream + raw_path.decode("latin-1")
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode("latin-1")
        headers = _forwarded(list(scope["headers"]))
        has_body = any(name.lower() in (b"content-length", b"transfer-encoding") for name, _ in scope["headers"])
        # Built directly, not with client.build_request: that would merge in httpx's default headers
        # (Accept-Encoding, User-Agent …), and a request must reach the upstream as the client sent it.
        request = httpx.Request(
            scope["method"],
            url,
            headers=headers,
            content=_request_body(receive) if has_body else b"",
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as error:
            await _plain_response(send, 502, f"upstream unavailable: {type(error).__name__}")
            return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": _forwarded(list(response.headers.raw)),
                }
            )
            # aiter_raw: bytes exactly as the upstream sent them, never decompressed.
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()


async def _request_body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk: bytes = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _plain_response(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop when it is installed, as ``uvicorn.run`` would, else on asyncio's own loop.

    On asyncio's loop an answer the front relays after the upstream held it (a held Gen-1 poll, a long-poll)
    reached the client about 45 ms late, every time but the first on a connection; on uvloop it takes 1-2 ms.
    """
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


class FrontServer:
    """:class:`FrontProxy` on uvicorn in a background thread, on an already-bound socket.

    Unlike the OAuth server's runner, uvicorn here adds no ``Server`` or ``Date`` header of its own: the
    upstream's are forwarded, and a second copy would be a change the client can see.
    """

    def __init__(self, app: FrontProxy, sock: socket.socket) -> None:
        self._sock = sock
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_level="warning",
                access_log=False,  # request lines hold session IDs, which are capabilities
                lifespan="on",
                server_header=False,
                date_header=False,
                timeout_graceful_shutdown=5,
            )
        )
        self._thread = threading.Thread(target=self._run, name="devstack-front", daemon=True)
        self._failure: BaseException | None = None

    def __repr__(self) -> str:
        return f"FrontServer(base_url={self.base_url!r})"

    def _run(self) -> None:
        try:
            _run_loop(self._server.serve(sockets=[self._sock]))
        except BaseException as error:  # reported by start(); a thread cannot raise to its creator
            self._failure = error

    def start(self, timeout: float) -> None:
        """Start serving; return once uvicorn accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise StartupError(f"the front proxy stopped while starting: {self._failure!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise StartupError(f"the front proxy did not start within {timeout:.0f}s")
            time.sleep(0.02)

    def stop(self) -> None:
        """Ask uvicorn to finish (graceful, at most a few seconds) and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()
