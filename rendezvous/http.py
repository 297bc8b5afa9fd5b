"""The small HTTP toolkit the routes share: requests, responses, Matrix errors, dates, bounded body reading.

The server speaks raw ASGI on its hot paths (a GET is one store read and one response), so this module keeps
the per-request work to header lookups and pre-encoded constant headers.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

from .protocol import M_INVALID_PARAM, M_TOO_LARGE, M_UNKNOWN

if TYPE_CHECKING:
    from .metrics import RouteMetrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

TEXT_PLAIN = b"text/plain"
APPLICATION_JSON = b"application/json"

#: Sent on every response. ``no-transform`` stops proxies compressing the body, which would weaken the strong
#: Gen-1 ETags (``W/"…"`` never satisfies If-Match: synapse PR #18178). Browsers read ETag only if exposed.
COMMON_HEADERS: Headers = [
    (b"cache-control", b"no-store, no-transform"),
    (b"pragma", b"no-cache"),
    (b"access-control-allow-origin", b"*"),
    # X-Qrlink-Push and Preference-Applied belong to the push extension (docs/push.md).
    (b"access-control-expose-headers", b"ETag, X-Qrlink-Push, Preference-Applied"),
]

#: Answer to a CORS preflight on any route: the Gen-1 conditional headers plus the Client-Server API set.
PREFLIGHT_HEADERS: Headers = [
    (b"access-control-allow-methods", b"GET, HEAD, POST, PUT, DELETE, OPTIONS"),
    (
        b"access-control-allow-headers",
        b"Authorization, Content-Type, If-Match, If-None-Match, Prefer, X-Requested-With",
    ),
    (b"access-control-max-age", b"86400"),
]


class Response:
    """A complete response: status, headers (``content-length`` is added on sending) and body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Headers, body: bytes = b"") -> None:
        self.status = status
        self.headers = headers
        self.body = body

    async def send(self, send: Send) -> None:
        """Write the response to the ASGI ``send`` callable."""
        headers = self.headers
        headers.append((b"content-length", str(len(self.body)).encode()))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


#: ``retry_after_ms`` of a 429 that names none.
DEFAULT_RETRY_AFTER_MS = 1_000


class MatrixError(Exception):
    """An error answered as a Matrix JSON error (``{"errcode", "error", …}``)."""

    def __init__(
        self,
        status: int,
        errcode: str,
        error: str,
        *,
        headers: Headers | None = None,
        extra: dict[str, Any] | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        super().__init__(f"{status} {errcode}: {error}")
        self.status = status
        self.errcode = errcode
        self.error = error
        self.headers = headers or []
        self.extra = extra or {}
        if retry_after_ms is None and status == 429:
            # Every 429 tells the client when to come back (MSC4388, RFC 6585), even one nobody timed.
            retry_after_ms = DEFAULT_RETRY_AFTER_MS
        self.retry_after_ms = retry_after_ms

    def to_response(self) -> Response:
        """The JSON error response, with the common headers and, where given, ``Retry-After``."""
        body: dict[str, Any] = {"errcode": self.errcode, "error": self.error, **self.extra}
        headers = [(b"content-type", APPLICATION_JSON), *COMMON_HEADERS, *self.headers]
        if not any(name == b"expires" for name, _ in self.headers):
            now = http_date(int(time.time()))
            # Gen-1 clients (rust-sdk) parse these on every non-4xx answer; sending them on errors too keeps
            # one rule for every response and costs nothing.
            headers += [(b"expires", now), (b"last-modified", now)]
        if self.retry_after_ms is not None:
            body["retry_after_ms"] = self.retry_after_ms
            headers.append((b"retry-after", str(max(1, math.ceil(self.retry_after_ms / 1000))).encode()))
        return Response(self.status, headers, json_bytes(body))


class ClientDisconnected(Exception):
    """The client went away while the request body was being read; there is nobody to answer."""


def json_bytes(value: Any) -> bytes:
    """Compact JSON, UTF-8 (non-ASCII kept as is, as Matrix servers do)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def json_response(status: int, value: Any, extra_headers: Headers | None = None) -> Response:
    """A JSON response with the common headers (and ``extra_headers``)."""
    headers = [(b"content-type", APPLICATION_JSON), *COMMON_HEADERS]
    if extra_headers:
        headers += extra_headers
    return Response(status, headers, json_bytes(value))


@functools.lru_cache(maxsize=8192)
def http_date(unix_seconds: int) -> bytes:
    """An IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``); cached because every Gen-1 answer carries two."""
    return formatdate(unix_seconds, usegmt=True).encode()


#: Default for how long :meth:`Request.read_body` waits for a whole body (``request_body_timeout_seconds``).
BODY_TIMEOUT_S = 10.0


class Request:
    """The parts of an ASGI HTTP request the routes use."""

    __slots__ = ("_headers", "body_timeout_s", "receive", "route", "scope")

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        route: RouteMetrics | None = None,
        body_timeout_s: float = BODY_TIMEOUT_S,
    ) -> None:
        self.scope = scope
        self.receive = receive
        #: Where this request's latency and status are counted; the router and the routes set it.
        self.route = route
        self.body_timeout_s = body_timeout_s
        self._headers: dict[bytes, bytes] | None = None

    @property
    def method(self) -> str:
        """The request method, upper case."""
        method: str = self.scope["method"]
        return method

    def header(self, name: bytes) -> bytes | None:
        """The value of header ``name`` (lower-case bytes); with repeats, the last one."""
        headers = self._headers
        if headers is None:
            headers = self._headers = dict(self.scope["headers"])
        return headers.get(name)

    def forget_headers(self) -> None:
        """Drop the parsed headers (a request about to wait long keeps less); :meth:`header` parses them again."""
        self._headers = None

    def content_length(self) -> int | None:
        """The declared body length, ``None`` when the body is streamed (chunked) or absent."""
        value = self.header(b"content-length")
        if value is None:
            return None
        # The HTTP parser has already rejected non-numeric values; be strict anyway rather than trust it.
        if not value.isdigit():
            raise MatrixError(400, M_INVALID_PARAM, "Invalid Content-Length")
        return int(value)

    async def read_body(self, limit: int) -> bytes:
        """The whole body, or :class:`MatrixError` 413 as soon as it exceeds ``limit`` bytes.

        A declared Content-Length over the limit is refused before reading anything; a streamed body is read
        only until it passes the limit, so an oversized upload never sits in memory. A body that has not all
        come within :attr:`body_timeout_s` gets 408 and the connection is closed: a client promising 4,000 bytes
        and sending 10 must not hold the request (and its connection) open.
        """
        declared = self.content_length()
        if declared is not None and declared > limit:
            raise too_large(limit)
        try:
            async with asyncio.timeout(self.body_timeout_s):
                return await self._read_body(limit)
        except TimeoutError:
            raise MatrixError(
                408, M_UNKNOWN, "Request body not received in time", headers=[(b"connection", b"close")]
            ) from None

    async def _read_body(self, limit: int) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            chunk: bytes = message.get("body", b"")
            if chunk:
                total += len(chunk)
                if total > limit:
                    raise too_large(limit)
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def too_large(limit: int) -> MatrixError:
    """413 ``M_TOO_LARGE``."""
    return MatrixError(413, M_TOO_LARGE, f"Request body is larger than {limit} bytes")


def media_type(value: bytes | None) -> bytes | None:
    """The lower-cased ``type/subtype`` of a Content-Type value, without parameters."""
    if value is None:
        return None
    return value.split(b";", 1)[0].strip().lower()
