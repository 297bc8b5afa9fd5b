"""Shared plumbing for the transport tests (this module holds no tests).

- :class:`RecordingTransport`: an httpx transport that forwards every request to the real server and records
  it, counts requests in flight, and can inject network faults: fail before forwarding (the server never sees
  the request) or *drop the response* (the server applied the request, the client gets a network error).
- :class:`UvicornThread`: runs an ASGI app under real uvicorn on a free 127.0.0.1 port in a background thread.
- :func:`our_server`: our rendezvous server, started by ``tests.support.server.serve_cli``.
- :class:`Generation` (:data:`GENERATIONS`, :data:`both_generations`): what differs between the Gen-1 and the
  Gen-2 transport, for the tests of behaviour they share, which run once per generation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import pytest
import uvicorn

from qrlink_client.transport import Gen1Transport, Gen2Transport, TransportOptions
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
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="auto", **config)
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
    # Push and held polls off: these tests exercise interval polling, and a held poll would answer late on
    # purpose. Push against our server is tested in tests/server/test_push*, held polls in tests/server/test_holds
    # and tests/interop/test_jssdk_held_polls.
    env = {
        "RENDEZVOUS_SESSION_RATE_PER_SECOND": "0",
        "RENDEZVOUS_CREATE_RATE_PER_SECOND": "0",
        "RENDEZVOUS_PUSH_ENABLED": "false",
        "RENDEZVOUS_HOLD_ENABLED": "false",
    }
    with serve_cli(env) as base_url:
        yield OurServer(base_url)


Transport = Gen1Transport | Gen2Transport


@dataclass(frozen=True)
class Generation:
    """One generation's transport as the tests of shared behaviour see it."""

    number: Literal[1, 2]
    #: The status of a write against a revision the writer has not seen: If-Match failed / token mismatch.
    concurrent_write_status: int

    def __str__(self) -> str:
        return f"gen{self.number}"

    async def create(
        self, http: httpx.AsyncClient, base_url: str, options: TransportOptions, *, gen1_path: str = GEN1_PATH
    ) -> Transport:
        """A new session. Gen-1 creates at ``base_url + gen1_path`` (a stand-in server may put it elsewhere),
        Gen-2 discovers its endpoint from ``base_url``."""
        if self.number == 1:
            return await Gen1Transport.create(http, base_url + gen1_path, options=options)
        return await Gen2Transport.create(http, base_url, options=options)

    async def join(
        self, http: httpx.AsyncClient, base_url: str, generator: Transport, options: TransportOptions
    ) -> Transport:
        """The peer's side of ``generator``'s session, reached the way its QR code says."""
        if isinstance(generator, Gen1Transport):
            return await Gen1Transport.join(http, generator.url, options=options)
        return await Gen2Transport.join(http, base_url, generator.rendezvous_id, options=options)

    async def pair(
        self, http: httpx.AsyncClient, base_url: str, options: TransportOptions, *, gen1_path: str = GEN1_PATH
    ) -> tuple[Transport, Transport]:
        """G creates the session, S joins it (as from the QR code)."""
        generator = await self.create(http, base_url, options, gen1_path=gen1_path)
        return generator, await self.join(http, base_url, generator, options)

    def session_secrets(self, transport: Transport) -> list[str]:
        """What names the session, which ``repr`` must not show: the session URL and its last segment for
        Gen-1, the rendezvous ID for Gen-2."""
        if isinstance(transport, Gen1Transport):
            return [transport.url, transport.url.rsplit("/", 1)[1]]
        return [transport.rendezvous_id]

    def is_long_poll(self, exchange: Exchange) -> bool:
        """Whether a GET asked the server to hold it: ``Prefer: wait`` (Gen-1), ``since`` (Gen-2)."""
        if self.number == 1:
            # ``Prefer: wait=0`` asks for the answer now (a poll a server could otherwise hold).
            return exchange.headers.get("prefer", "wait=0") != "wait=0"
        return "since" in exchange.url.params


GENERATIONS = [Generation(1, concurrent_write_status=412), Generation(2, concurrent_write_status=409)]
#: Runs a test once per generation, with ``gen`` the :class:`Generation`: ``test_x[gen1]``, ``test_x[gen2]``.
both_generations = pytest.mark.parametrize("gen", GENERATIONS, ids=str)
