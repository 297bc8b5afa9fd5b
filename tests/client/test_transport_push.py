"""The push extension (long-poll, WebSocket watch) and its automatic fallback to interval polling.

Delivery itself is tested against our real server (long-poll and WebSocket watch, both generations), and so is
the fallback when the server advertises nothing. :class:`PushServer` below is a stand-in for what our server
cannot be made to do on purpose: a tiny ASGI app (Starlette) on real uvicorn implementing the extension with
knobs — refusing or closing watches, answering without push, sessions living a second or two, a skewed clock
(a real server has a 120 s minimum lifetime and an honest clock) — plus the request shapes it records.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from qrlink_client.transport import (
    Gen1Transport,
    Gen2Transport,
    PushSupport,
    ReceiveTimeout,
    RetryPolicy,
    SessionExpired,
    SessionNotFound,
    TransportOptions,
)
from qrlink_client.transport.push import parse_push_discovery, parse_push_header
from rendezvous.protocol import GEN1_PATH, GEN2_UNSTABLE_PATH
from tests.support import transport as support
from tests.support.deadlines import eventually
from tests.support.server import serve_cli
from tests.support.transport import (
    Generation,
    OurServer,
    RecordingTransport,
    Transport,
    UvicornThread,
    both_generations,
)

# Fixtures shared with the other transport tests.
our_server = support.our_server

SLOW_POLLING = RetryPolicy(attempts=3, initial_delay=0.01, max_delay=0.05)


# --- the stand-in server ------------------------------------------------------------------------------------


@dataclass
class _Session:
    data: str
    expires_at: float
    version: int = 1
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    txns: dict[str, tuple[int, dict[str, str]]] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        return f'"v{self.version}"'

    def write(self, data: str) -> None:
        self.data, self.version = data, self.version + 1
        self.changed.set()
        self.changed = asyncio.Event()


@dataclass
class PushServer:
    """Stand-in for the push extension (see the module docstring). Knobs say what it advertises and does."""

    ttl: float = 60.0
    long_poll: bool = True
    websocket: bool = True
    refuse_websocket: bool = False  # advertise the watch, then refuse the upgrade
    clock_skew: float = 0.0  # seconds added to Date and Expires, as a server with a wrong clock would
    max_wait_ms: int = 5_000
    sessions: dict[str, _Session] = field(default_factory=dict)
    ids: Iterator[int] = field(default_factory=itertools.count)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/g1", self.g1_create, methods=["POST"]),
                Route("/g1/{sid}", self.g1_session, methods=["GET", "PUT", "DELETE"]),
                WebSocketRoute("/g1/{sid}/watch", self.watch),
                Route(GEN2_UNSTABLE_PATH, self.g2_collection, methods=["GET", "POST"]),
                Route(GEN2_UNSTABLE_PATH + "/{sid}", self.g2_session, methods=["GET", "DELETE"]),
                Route(GEN2_UNSTABLE_PATH + "/{sid}/{txn}", self.g2_put, methods=["PUT"]),
                WebSocketRoute(GEN2_UNSTABLE_PATH + "/{sid}/watch", self.watch),
            ]
        )

    # helpers
    def header(self) -> dict[str, str]:
        features = []
        if self.long_poll:
            features.append(f"long-poll; max-wait-ms={self.max_wait_ms}")
        if self.websocket:
            features.append("websocket")
        return {"X-Qrlink-Push": ", ".join(features)} if features else {}

    def live(self, sid: str) -> _Session | None:
        session = self.sessions.get(sid)
        if session is not None and time.monotonic() >= session.expires_at:
            del self.sessions[sid]
            session.changed.set()
            return None
        return session

    def g1_headers(self, session: _Session) -> dict[str, str]:
        now = time.time() + self.clock_skew
        expires = now + (session.expires_at - time.monotonic())
        return {
            **self.header(),
            "ETag": session.tag,
            "Date": email.utils.formatdate(now, usegmt=True),
            "Expires": email.utils.formatdate(expires, usegmt=True),
            "Last-Modified": email.utils.formatdate(now, usegmt=True),
        }

    def new_session(self) -> tuple[str, _Session]:
        sid = f"s{next(self.ids)}"
        self.sessions[sid] = _Session("", time.monotonic() + self.ttl)
        return sid, self.sessions[sid]

    async def wait_for_change(self, session: _Session, version: int, seconds: float) -> None:
        if session.version == version:
            try:
                await asyncio.wait_for(session.changed.wait(), seconds)
            except TimeoutError:
                pass

    # Gen-1
    async def g1_create(self, request: Request) -> Response:
        sid, session = self.new_session()
        return JSONResponse({"url": f"{request.base_url}g1/{sid}"}, 201, headers=self.g1_headers(session))

    async def g1_session(self, request: Request) -> Response:
        session = self.live(request.path_params["sid"])
        if session is None:
            return JSONResponse({"errcode": "M_NOT_FOUND"}, 404, headers={"Date": email.utils.formatdate()})
        if request.method == "DELETE":
            del self.sessions[request.path_params["sid"]]
            session.changed.set()
            return Response(status_code=204)
        if request.method == "PUT":
            if request.headers.get("if-match") != session.tag:
                return JSONResponse({"errcode": "M_UNKNOWN"}, 412)
            session.write((await request.body()).decode())
            return Response(status_code=202, headers=self.g1_headers(session), media_type="text/plain")
        extra = {}
        prefer = request.headers.get("prefer", "")
        if request.headers.get("if-none-match") == session.tag and prefer.startswith("wait="):
            wait = min(int(prefer[5:]), self.max_wait_ms // 1000)
            extra["Preference-Applied"] = f"wait={wait}"
            await self.wait_for_change(session, session.version, wait)
            if self.live(request.path_params["sid"]) is None:
                return JSONResponse({"errcode": "M_NOT_FOUND"}, 404)
        if request.headers.get("if-none-match") == session.tag:
            return Response(status_code=304, headers={**self.g1_headers(session), **extra})
        return Response(session.data, 200, headers={**self.g1_headers(session), **extra}, media_type="text/plain")

    # Gen-2
    async def g2_collection(self, request: Request) -> Response:
        if request.method == "GET":
            push = {
                "long_poll": self.long_poll,
                "max_timeout_ms": self.max_wait_ms,
                "websocket": self.websocket,
            }
            return JSONResponse({"create_available": True, "io.qrlink.push": push})
        sid, session = self.new_session()
        body = {"id": sid, "sequence_token": str(session.version), "expires_in_ms": int(self.ttl * 1000)}
        return JSONResponse(body, headers=self.header())

    def g2_state(self, session: _Session) -> dict[str, Any]:
        left = int((session.expires_at - time.monotonic()) * 1000)
        return {"data": session.data, "sequence_token": str(session.version), "expires_in_ms": max(left, 0)}

    async def g2_session(self, request: Request) -> Response:
        session = self.live(request.path_params["sid"])
        if session is None:
            return JSONResponse({"errcode": "M_NOT_FOUND"}, 404)
        if request.method == "DELETE":
            del self.sessions[request.path_params["sid"]]
            session.changed.set()
            return JSONResponse({})
        since, timeout_ms = request.query_params.get("since"), request.query_params.get("timeout_ms")
        if since == str(session.version) and timeout_ms is not None:
            await self.wait_for_change(session, session.version, min(int(timeout_ms), self.max_wait_ms) / 1000)
            if self.live(request.path_params["sid"]) is None:
                return JSONResponse({"errcode": "M_NOT_FOUND"}, 404)
        return JSONResponse(self.g2_state(session), headers=self.header())

    async def g2_put(self, request: Request) -> Response:
        session = self.live(request.path_params["sid"])
        if session is None:
            return JSONResponse({"errcode": "M_NOT_FOUND"}, 404)
        body = await request.json()
        if body["sequence_token"] != str(session.version):
            return JSONResponse({"errcode": "M_CONCURRENT_WRITE"}, 409)
        session.write(body["data"])
        return JSONResponse({"sequence_token": str(session.version)}, headers=self.header())

    # WebSocket watch (both generations)
    async def watch(self, websocket: WebSocket) -> None:
        if self.refuse_websocket:
            await websocket.close(code=1008)  # before accept: uvicorn answers the upgrade with 403
            return
        session = self.live(websocket.path_params["sid"])
        if session is None:
            await websocket.close(code=4404)
            return
        await websocket.accept()
        key = "etag" if websocket.url.path.startswith("/g1/") else "sequence_token"
        sent = 0
        # The client never sends; a receive() that returns means it went away.
        gone = asyncio.ensure_future(websocket.receive())
        try:
            while not gone.done():
                if self.live(websocket.path_params["sid"]) is None:
                    await websocket.close(code=4404)
                    return
                if session.version != sent:
                    sent = session.version
                    tag = session.tag if key == "etag" else str(session.version)
                    await websocket.send_text(json.dumps({key: tag, "data": session.data}))
                changed = asyncio.ensure_future(session.changed.wait())
                await asyncio.wait(
                    {changed, gone},
                    timeout=max(session.expires_at - time.monotonic(), 0.01),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                changed.cancel()
        except WebSocketDisconnect:
            return
        finally:
            gone.cancel()


@pytest.fixture
def push_server(request: pytest.FixtureRequest) -> Iterator[tuple[PushServer, str]]:
    """The stand-in with knobs from ``@pytest.mark.parametrize("push_server", [{...}], indirect=True)``."""
    server = PushServer(**getattr(request, "param", {}))
    # date_header=False: the stand-in writes its own (possibly skewed) Date header.
    with UvicornThread(server.app(), date_header=False) as running:
        yield server, running.base_url


@pytest.fixture
async def opened() -> Any:
    """Transports made by the pair helpers, closed after the test (their watches hold connections open)."""
    transports: list[Gen1Transport | Gen2Transport] = []
    yield transports
    for transport in transports:
        await transport.aclose()


def options(**overrides: Any) -> TransportOptions:
    # A long poll interval: a payload that arrives quickly can only have come through push.
    return TransportOptions(**{"poll_interval": 3.0, "retry": SLOW_POLLING, **overrides})


async def gen1_pair(
    http: httpx.AsyncClient, base: str, opened: list[Any], **overrides: Any
) -> tuple[Gen1Transport, Gen1Transport]:
    generator = await Gen1Transport.create(http, f"{base}/g1", options=options(**overrides))
    scanner = await Gen1Transport.join(http, generator.url, options=options(**overrides))
    opened += [generator, scanner]
    return generator, scanner


async def gen2_pair(
    http: httpx.AsyncClient, base: str, opened: list[Any], **overrides: Any
) -> tuple[Gen2Transport, Gen2Transport]:
    generator = await Gen2Transport.create(http, base, options=options(**overrides))
    scanner = await Gen2Transport.join(http, base, generator.rendezvous_id, options=options(**overrides))
    opened += [generator, scanner]
    return generator, scanner


async def open_pair(
    gen: Generation, http: httpx.AsyncClient, base: str, opened: list[Any], **overrides: Any
) -> tuple[Transport, Transport]:
    """:func:`gen1_pair` or :func:`gen2_pair` by ``gen``; Gen-1 sessions are created at the stand-in's ``/g1``
    unless ``gen1_path`` says otherwise."""
    gen1_path = overrides.pop("gen1_path", "/g1")
    generator, scanner = await gen.pair(http, base, options(**overrides), gen1_path=gen1_path)
    opened += [generator, scanner]
    return generator, scanner


async def timed_receive(receiver: Gen1Transport | Gen2Transport, sender: Any, data: str) -> tuple[str, float]:
    """Start a receive, let it settle into waiting, have the peer send; return the payload and its latency."""
    task = asyncio.create_task(receiver.receive(timeout=10))
    await asyncio.sleep(0.3)
    sent_at = time.monotonic()
    await sender.send(data)
    received = await task
    return received, time.monotonic() - sent_at


# --- advertisement parsing ----------------------------------------------------------------------------------


def test_header_with_long_poll_and_websocket_is_parsed() -> None:
    assert parse_push_header("long-poll; max-wait-ms=25000, websocket") == PushSupport(True, 25000, True)


def test_header_with_long_poll_only_is_parsed() -> None:
    assert parse_push_header("long-poll; max-wait-ms=1000") == PushSupport(True, 1000, False)


def test_header_naming_unknown_features_only_means_no_push() -> None:
    assert parse_push_header("carrier-pigeon") is None


def test_malformed_max_wait_is_ignored() -> None:
    assert parse_push_header("long-poll; max-wait-ms=soon") == PushSupport(True, None, False)


def test_discovery_field_is_parsed() -> None:
    body = {
        "create_available": True,
        "io.qrlink.push": {"long_poll": True, "max_timeout_ms": 30000, "websocket": False},
    }

    assert parse_push_discovery(body) == PushSupport(True, 30000, False)


def test_discovery_without_the_field_means_no_push() -> None:
    assert parse_push_discovery({"create_available": True}) is None


# --- long-poll ----------------------------------------------------------------------------------------------

LONG_POLL_ONLY = {"websocket": False}


@pytest.mark.parametrize("push_server", [LONG_POLL_ONLY], indirect=True)
async def test_gen1_long_poll_sends_prefer_wait_with_if_none_match(
    http: httpx.AsyncClient,
    opened: list[Any],
    recorder: RecordingTransport,
    push_server: tuple[PushServer, str],
) -> None:
    generator, scanner = await gen1_pair(http, push_server[1], opened)
    await scanner.send("initiate")
    assert await generator.receive(timeout=5) == "initiate"
    recorder.exchanges.clear()

    await timed_receive(scanner, generator, "ok")

    polls = recorder.requests("GET")
    assert polls and all(p.headers["prefer"].startswith("wait=") for p in polls)
    assert all("if-none-match" in p.headers for p in polls)


@pytest.mark.parametrize("push_server", [LONG_POLL_ONLY], indirect=True)
async def test_gen2_long_poll_sends_since_and_timeout_ms(
    http: httpx.AsyncClient,
    opened: list[Any],
    recorder: RecordingTransport,
    push_server: tuple[PushServer, str],
) -> None:
    generator, scanner = await gen2_pair(http, push_server[1], opened)
    await scanner.send("initiate")
    assert await generator.receive(timeout=5) == "initiate"
    recorder.exchanges.clear()

    received, latency = await timed_receive(scanner, generator, "ok")

    (poll, *_) = recorder.requests("GET")
    assert poll.url.params["since"] == scanner.own_sequence_token
    assert int(poll.url.params["timeout_ms"]) <= 5_000  # capped by the advertised max
    assert (received, latency < 1.0) == ("ok", True)


@pytest.mark.parametrize("push_server", [LONG_POLL_ONLY], indirect=True)
async def test_gen2_discovery_reports_the_push_extension(
    http: httpx.AsyncClient, push_server: tuple[PushServer, str]
) -> None:
    discovery = await Gen2Transport.discover(http, push_server[1])

    assert discovery.push == PushSupport(long_poll=True, max_wait_ms=5_000, websocket=False)


@pytest.mark.parametrize("push_server", [LONG_POLL_ONLY], indirect=True)
async def test_push_disabled_by_options_polls_plainly(
    http: httpx.AsyncClient,
    opened: list[Any],
    recorder: RecordingTransport,
    push_server: tuple[PushServer, str],
) -> None:
    _, scanner = await gen2_pair(http, push_server[1], opened, push=False, poll_interval=0.1)
    await scanner.send("initiate")
    recorder.exchanges.clear()

    with pytest.raises(ReceiveTimeout):
        await scanner.receive(timeout=0.35)

    assert [p.url.params.get("since") for p in recorder.requests("GET")] == [None] * len(recorder.requests("GET"))


# --- delivery through our real server ----------------------------------------------------------------------


@pytest.fixture(scope="module", params=["websocket", "long-poll"])
def our_push_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """Our rendezvous server with push on; ``long-poll``: the WebSocket watch switched off. Rate limits off."""
    env = {"RENDEZVOUS_SESSION_RATE_PER_SECOND": "0", "RENDEZVOUS_CREATE_RATE_PER_SECOND": "0"}
    if request.param == "long-poll":
        env["RENDEZVOUS_PUSH_WEBSOCKET"] = "false"
    with serve_cli(env) as base_url:
        yield request.param, base_url


@both_generations
async def test_our_server_delivers_faster_than_the_poll_interval(
    http: httpx.AsyncClient,
    opened: list[Any],
    recorder: RecordingTransport,
    our_push_server: tuple[str, str],
    gen: Generation,
) -> None:
    mode, base = our_push_server
    generator, scanner = await open_pair(gen, http, base, opened, gen1_path=GEN1_PATH)
    await scanner.send("initiate")
    assert await generator.receive(timeout=5) == "initiate"
    recorder.exchanges.clear()

    received, latency = await timed_receive(scanner, generator, "ok")

    assert received == "ok"
    assert latency < 1.0  # interval polling would need up to 3 s
    if mode == "websocket":
        assert recorder.requests("GET") == []  # delivered over the watch, no polls


# --- WebSocket watch ----------------------------------------------------------------------------------------


async def test_watch_skips_the_echo_of_its_own_write(
    http: httpx.AsyncClient, opened: list[Any], push_server: tuple[PushServer, str]
) -> None:
    generator, scanner = await gen2_pair(http, push_server[1], opened)
    await scanner.send("initiate")
    assert await generator.receive(timeout=5) == "initiate"  # the watch is open from here on
    await generator.send("ok")

    with pytest.raises(ReceiveTimeout):
        await generator.receive(timeout=0.5)  # the watch streams "ok" back: our own write


async def test_watch_delivers_each_payload_once(
    http: httpx.AsyncClient, opened: list[Any], push_server: tuple[PushServer, str]
) -> None:
    generator, scanner = await gen1_pair(http, push_server[1], opened)
    await scanner.send("initiate")
    assert await generator.receive(timeout=5) == "initiate"

    with pytest.raises(ReceiveTimeout):
        await generator.receive(timeout=0.5)


async def test_watch_closed_with_4404_is_session_not_found(
    http: httpx.AsyncClient, opened: list[Any], push_server: tuple[PushServer, str]
) -> None:
    generator, scanner = await gen2_pair(http, push_server[1], opened)
    task = asyncio.create_task(scanner.receive(timeout=10))
    await asyncio.sleep(0.3)

    await generator.delete()

    with pytest.raises(SessionNotFound):
        await task


@pytest.mark.parametrize("push_server", [{"refuse_websocket": True}], indirect=True)
async def test_refused_watch_falls_back_to_long_poll(
    http: httpx.AsyncClient,
    opened: list[Any],
    recorder: RecordingTransport,
    push_server: tuple[PushServer, str],
) -> None:
    generator, scanner = await gen1_pair(http, push_server[1], opened)
    await scanner.send("initiate")
    assert await generator.receive(timeout=5) == "initiate"
    recorder.exchanges.clear()

    received, latency = await timed_receive(scanner, generator, "ok")

    assert (received, latency < 1.0) == ("ok", True)
    assert any("prefer" in p.headers for p in recorder.requests("GET"))


@pytest.mark.parametrize("push_server", [{"refuse_websocket": True, "long_poll": False}], indirect=True)
async def test_refused_watch_without_long_poll_falls_back_to_interval_polling(
    http: httpx.AsyncClient,
    opened: list[Any],
    recorder: RecordingTransport,
    push_server: tuple[PushServer, str],
) -> None:
    generator, scanner = await gen2_pair(http, push_server[1], opened, poll_interval=0.1)
    await scanner.send("initiate")
    assert await generator.receive(timeout=5) == "initiate"
    recorder.exchanges.clear()

    received, _ = await timed_receive(scanner, generator, "ok")

    assert received == "ok"
    assert all("since" not in p.url.params for p in recorder.requests("GET"))


async def test_aclose_closes_the_watch(
    http: httpx.AsyncClient, opened: list[Any], push_server: tuple[PushServer, str]
) -> None:
    generator, scanner = await gen2_pair(http, push_server[1], opened)
    await scanner.send("initiate")
    assert await generator.receive(timeout=5) == "initiate"
    watch = generator._watch
    assert watch is not None

    await generator.aclose()

    assert generator._watch is None


# --- fallback against our real server (no extension advertised) ---------------------------------------------


@both_generations
async def test_on_a_server_without_push_polls_plainly(
    gen: Generation, http: httpx.AsyncClient, recorder: RecordingTransport, our_server: OurServer
) -> None:
    generator, scanner = await gen.pair(http, our_server.base_url, options(poll_interval=0.1))
    recorder.exchanges.clear()

    received, _ = await timed_receive(generator, scanner, "initiate")

    assert received == "initiate" and generator.push is None
    assert not any(gen.is_long_poll(e) for e in recorder.requests("GET"))


# --- expiry -------------------------------------------------------------------------------------------------

SHORT_LIVED_PLAIN = {"ttl": 1.5, "long_poll": False, "websocket": False}


@both_generations
@pytest.mark.parametrize("push_server", [SHORT_LIVED_PLAIN], indirect=True)
async def test_receive_stops_at_session_expiry_without_further_requests(
    gen: Generation,
    http: httpx.AsyncClient,
    opened: list[Any],
    recorder: RecordingTransport,
    push_server: tuple[PushServer, str],
) -> None:
    generator, _ = await open_pair(gen, http, push_server[1], opened, poll_interval=0.1)
    started = time.monotonic()

    with pytest.raises(SessionExpired):
        await generator.receive()
    stopped_after = time.monotonic() - started
    sent = len(recorder.exchanges)
    with pytest.raises(SessionExpired):
        await generator.send("too late")

    assert 0.4 <= stopped_after <= 2.0  # Gen-1: Expires - Date has one-second resolution
    assert len(recorder.exchanges) == sent  # decided locally, nothing sent
    assert generator.expires_in == 0.0


@both_generations
@pytest.mark.parametrize("push_server", [SHORT_LIVED_PLAIN], indirect=True)
async def test_a_session_the_server_expired_early_is_refused_locally_from_then_on(
    gen: Generation,
    http: httpx.AsyncClient,
    opened: list[Any],
    recorder: RecordingTransport,
    push_server: tuple[PushServer, str],
) -> None:
    """The server's clock ends the session before ours does (HTTP dates have one-second resolution): its 404 this
    close to the deadline is the expiry, and the transport holds to that without asking again."""
    server, base = push_server
    generator, _ = await open_pair(gen, http, base, opened, poll_interval=0.1)
    server.sessions.clear()  # expired there, with our deadline still about a second away

    with pytest.raises(SessionExpired):
        await generator.receive()
    sent = len(recorder.exchanges)
    with pytest.raises(SessionExpired):
        await generator.send("too late")

    assert len(recorder.exchanges) == sent  # decided locally, nothing sent
    assert generator.expires_in == 0.0


@pytest.mark.parametrize("push_server", [{"ttl": 1.5}], indirect=True)
async def test_long_poll_and_watch_also_stop_at_session_expiry(
    http: httpx.AsyncClient, opened: list[Any], push_server: tuple[PushServer, str]
) -> None:
    generator, _ = await gen2_pair(http, push_server[1], opened)
    started = time.monotonic()

    with pytest.raises(SessionExpired):
        await generator.receive()

    assert time.monotonic() - started <= 2.0


@pytest.mark.parametrize("push_server", [{"ttl": 60, "clock_skew": 3600}], indirect=True)
async def test_gen1_expiry_ignores_a_skewed_server_clock(
    http: httpx.AsyncClient, push_server: tuple[PushServer, str]
) -> None:
    generator = await Gen1Transport.create(http, f"{push_server[1]}/g1", options=options())

    # The server's clock is an hour ahead: Expires against our clock would say 61 minutes.
    assert generator.expires_in is not None
    assert 58 <= generator.expires_in <= 61


@pytest.mark.parametrize("push_server", [{"ttl": 60, "clock_skew": -3600}], indirect=True)
async def test_gen1_expiry_ignores_a_server_clock_behind_ours(
    http: httpx.AsyncClient, opened: list[Any], push_server: tuple[PushServer, str]
) -> None:
    generator, scanner = await gen1_pair(http, push_server[1], opened, poll_interval=0.1)

    # Expires against our clock would lie in the past and stop every request at once.
    await scanner.send("initiate")
    assert await generator.receive(timeout=5) == "initiate"


@pytest.mark.parametrize("push_server", [LONG_POLL_ONLY], indirect=True)
async def test_cancelled_long_poll_leaves_no_request_behind(
    http: httpx.AsyncClient,
    opened: list[Any],
    recorder: RecordingTransport,
    push_server: tuple[PushServer, str],
) -> None:
    generator, _ = await gen2_pair(http, push_server[1], opened)
    task = asyncio.create_task(generator.receive())
    await eventually(lambda: recorder.in_flight == 1)  # the long-poll is held open by the server

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    sent = len(recorder.exchanges)
    await asyncio.sleep(0.3)

    assert recorder.in_flight == 0
    assert len(recorder.exchanges) == sent
