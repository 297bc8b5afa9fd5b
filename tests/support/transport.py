"""Shared plumbing for the transport tests (this module holds no tests).

- :class:`RecordingTransport`: an httpx transport that forwards every request to the real server and records
  it, counts requests in flight, and can inject network faults: fail before forwarding (the server never sees
  the request) or *drop the response* (the server applied the request, the client gets a network error).
- :class:`UvicornThread`: runs an ASGI app under real uvicorn on a free 127.0.0.1 port in a background thread.
- :func:`our_server`: our rendezvous server, started by ``tests.support.server.serve_cli``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn

from rendezvous.protocol import GEN1_PATH
from tests.support.server import free_port, serve_cli

RequestMatcher = Callable[[httpx.Request], bool]


@dataclass
class Exchange:
    """One request as the client sent it, and what became of it."""

    method: str
    url: httpx.URL
    headers: httpx.Headers
    body: bytes
    status: int | None = None
    response_headers: httpx.Headers = field(default_factory=httpx.Headers)
    response_body: bytes = b""
    fault: str | None = None  # "refused" (never forwarded) or "dropped" (forwarded, response lost)


@dataclass
class _Fault:
    matcher: RequestMatcher
    kind: str  # "refuse" or "drop"
    remaining: int


@dataclass
class RecordingTransport(httpx.AsyncBaseTransport):
    """Forwards to the real network through :class:`httpx.AsyncHTTPTransport`, recording every exchange."""

    exchanges: list[Exchange] = field(default_factory=list)
    in_flight: int = 0
    _inner: httpx.AsyncHTTPTransport = field(default_factory=httpx.AsyncHTTPTransport)
    _faults: list[_Fault] = field(default_factory=list)

    def refuse(self, matcher: RequestMatcher, times: int = 1) -> None:
        """Fail the next *times* matching requests with a connect error before they reach the server."""
        self._faults.append(_Fault(matcher, "refuse", times))

    def drop_response(self, matcher: RequestMatcher, times: int = 1) -> None:
        """Forward the next *times* matching requests, then raise a read error instead of the response."""
        self._faults.append(_Fault(matcher, "drop", times))

    def _fault_for(self, request: httpx.Request) -> str | None:
        for fault in self._faults:
            if fault.remaining > 0 and fault.matcher(request):
                fault.remaining -= 1
                return fault.kind
        return None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        exchange = Exchange(request.method, request.url, request.headers, body)
        self.exchanges.append(exchange)
        kind = self._fault_for(request)
        if kind == "refuse":
            exchange.fault = "refused"
            raise httpx.ConnectError("injected: connection refused", request=request)
        self.in_flight += 1
        try:
            response = await self._inner.handle_async_request(request)
            await response.aread()
        finally:
            self.in_flight -= 1
        exchange.status = response.status_code
        exchange.response_headers = response.headers
        exchange.response_body = response.content
        if kind == "drop":
            exchange.fault = "dropped"
            await response.aclose()
            raise httpx.ReadError("injected: response lost after the server handled it", request=request)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()

    def requests(self, method: str | None = None) -> list[Exchange]:
        """The recorded exchanges, optionally only those with *method*."""
        return [e for e in self.exchanges if method is None or e.method == method]


def is_put(request: httpx.Request) -> bool:
    return request.method == "PUT"




class UvicornThread:
    """Real uvicorn serving *app* on 127.0.0.1 in a thread with its own event loop."""

    def __init__(self, app: Any, **config: Any) -> None:
        self.port = free_port()
        self._server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="auto", **config
            )
        )
        self._thread = threading.Thread(target=self._server.run, name="uvicorn-test", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> UvicornThread:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


@dataclass(frozen=True)
class OurServer:
    """Our rendezvous server, reachable at :attr:`base_url`."""

    base_url: str

    @property
    def gen1_create_url(self) -> str:
        return f"{self.base_url}{GEN1_PATH}"


@pytest.fixture(scope="module")
def our_server() -> Iterator[OurServer]:
    """Our rendezvous server, started through its CLI exactly as an operator runs it (memory store), with the
    rate limits off so that fast test polling is not throttled."""
    # Push off: these tests exercise interval polling; push against our server is tested in tests/server/test_push*.
    env = {
        "RENDEZVOUS_SESSION_RATE_PER_SECOND": "0",
        "RENDEZVOUS_CREATE_RATE_PER_SECOND": "0",
        "RENDEZVOUS_PUSH_ENABLED": "false",
    }
    with serve_cli(env) as base_url:
        yield OurServer(base_url)


async def eventually(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until *predicate* holds (polling every 10 ms), failing the test after *within* seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)
