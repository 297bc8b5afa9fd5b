"""Connection limits with nothing in front of the server: slow headers, huge headers, stalled bodies, floods.

Each test runs ``rendezvous serve`` (uvicorn and :mod:`rendezvous.connections`) with short deadlines and talks to
it over raw sockets on 127.0.0.1, the way a slow or hostile client would.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from rendezvous.connections import HEALTH_RESERVE
from tests.support.server import serve_cli

from .helpers import GEN1

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
MAX_CONNECTIONS = 10
ENV = {
    "RENDEZVOUS_REQUEST_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT_S),
    "RENDEZVOUS_REQUEST_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT_S),
    "RENDEZVOUS_CREATE_RATE_PER_SECOND": "0",
    "RENDEZVOUS_SESSION_RATE_PER_SECOND": "0",
}


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    with serve_cli(ENV) as base:
        yield "127.0.0.1", int(base.rsplit(":", 1)[1])


def _answer(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def _read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


# -- slow headers ----------------------------------------------------------------------------------------------


async def _trickle(host: str, port: int) -> float:
    """Send a header line every 0.3 s until the server hangs up; how long that took."""
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    try:
        while True:
            try:
                if await asyncio.wait_for(reader.read(65536), 0.3) == b"":
                    break
            except TimeoutError:
                writer.write(b"X-Slow: 1\r\n")
                await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()
    return time.monotonic() - started


async def _slowloris(host: str, port: int, connections: int) -> tuple[list[float], list[float]]:
    trickles = [asyncio.create_task(_trickle(host, port)) for _ in range(connections)]
    health_times = []
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
        await asyncio.sleep(0.2)
        for _ in range(5):
            started = time.monotonic()
            assert (await client.get("/health", timeout=2)).status_code == 200
            health_times.append(time.monotonic() - started)
            await asyncio.sleep(0.1)
    durations = await asyncio.wait_for(asyncio.gather(*trickles), HEADER_TIMEOUT_S + 5)
    return durations, health_times


def test_slow_header_connections_are_cut_at_the_deadline_while_health_answers(server: tuple[str, int]) -> None:
    durations, health_times = asyncio.run(_slowloris(*server, 200))
    assert max(durations) < HEADER_TIMEOUT_S + 1.5
    assert max(health_times) < 1.0


def test_slow_headers_get_408(server: tuple[str, int]) -> None:
    with socket.create_connection(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        status, headers, body = _answer(_read_until_closed(sock, HEADER_TIMEOUT_S + 3))
    assert status == 408
    assert json.loads(body)["errcode"] == "M_UNKNOWN"
    assert headers["connection"] == "close"


def test_a_connection_that_sends_nothing_is_closed(server: tuple[str, int]) -> None:
    started = time.monotonic()
    with socket.create_connection(server) as sock:
        assert _read_until_closed(sock, HEADER_TIMEOUT_S + 3) == b""
    assert time.monotonic() - started < HEADER_TIMEOUT_S + 1.5


def test_blank_lines_do_not_hold_a_connection(server: tuple[str, int]) -> None:
    started = time.monotonic()
    with socket.create_connection(server) as sock:
        sock.settimeout(0.25)
        closed = False
        while not closed and time.monotonic() - started < HEADER_TIMEOUT_S + 3:
            try:
                sock.sendall(b"\r\n")
                closed = sock.recv(100) == b""
            except TimeoutError:
                continue
            except ConnectionError:
                closed = True
    assert closed
    assert time.monotonic() - started < HEADER_TIMEOUT_S + 1.5


# -- huge headers ----------------------------------------------------------------------------------------------


def test_oversize_headers_get_431(server: tuple[str, int]) -> None:
    with socket.create_connection(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n")
        status, headers, body = _answer(_read_until_closed(sock, 5))
    assert status == 431
    assert json.loads(body)["errcode"] == "M_TOO_LARGE"
    assert headers["connection"] == "close"


def test_a_huge_header_is_refused_before_it_is_all_sent(server: tuple[str, int]) -> None:
    with socket.create_connection(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        try:
            while sent < 4_000_000:
                sock.sendall(b"a" * 16384)
                sent += 16384
        except ConnectionError:
            pass
        data = _read_until_closed(sock, 5) if sent < 4_000_000 else b""
    assert sent < 4_000_000
    assert data == b"" or _answer(data)[0] == 431


def test_headers_within_the_limit_are_served(server: tuple[str, int]) -> None:
    host, port = server
    response = httpx.get(f"http://{host}:{port}/health", headers={"X-Fine": "a" * 8000})
    assert response.status_code == 200


# -- WebSocket handshakes --------------------------------------------------------------------------------------

WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
HANDSHAKE = f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n"


def _gen1_watch_path(host: str, port: int) -> str:
    created = httpx.post(f"http://{host}:{port}{GEN1}", headers={"Content-Type": "text/plain"})
    return f"{GEN1}/{created.json()['url'].rsplit('/', 1)[1]}/watch"


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("GET", "Sec-WebSocket-Key: junk\r\n"),  # a second, invalid key
        ("GET", "Sec-WebSocket-Version: 8\r\n"),
        ("GET", "Sec-WebSocket-Extensions: ;;;\r\n"),
        ("GET", "Sec-WebSocket-Protocol: a b\r\n"),
        ("GET", "Content-Length: 3\r\n"),
        ("POST", "Content-Length: 0\r\n"),
    ],
    ids=["two-keys", "version-8", "bad-extensions", "bad-protocol", "body", "post"],
)
def test_a_refused_websocket_handshake_is_a_matrix_error(server: tuple[str, int], method: str, extra: str) -> None:
    # Found by tests/server/test_fuzz_http.py: the WebSocket library answered these with a text/plain 400 or 405.
    path = _gen1_watch_path(*server)
    with socket.create_connection(server) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{HANDSHAKE}{extra}\r\nabc".encode())
        status, headers, body = _answer(_read_until_closed(sock, 5))
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert headers["access-control-allow-origin"] == "*"
    error = json.loads(body)
    assert error["errcode"] == "M_INVALID_PARAM"
    assert error["error"].startswith("Invalid WebSocket handshake: ")


def test_a_valid_websocket_handshake_still_upgrades(server: tuple[str, int]) -> None:
    path = _gen1_watch_path(*server)
    with socket.create_connection(server, timeout=5) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: x\r\n{HANDSHAKE}"
            "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n".encode()
        )
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
    status, headers, _ = _answer(received)
    assert status == 101
    assert headers["upgrade"] == "websocket"


# -- stalled bodies --------------------------------------------------------------------------------------------


def test_a_stalled_body_gets_408_and_the_connection_closes(server: tuple[str, int]) -> None:
    started = time.monotonic()
    with socket.create_connection(server) as sock:
        sock.sendall(
            f"POST {GEN1} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 4000\r\n\r\n".encode()
            + b"0123456789"
        )
        status, headers, body = _answer(_read_until_closed(sock, BODY_TIMEOUT_S + 5))
    assert status == 408
    assert json.loads(body)["errcode"] == "M_UNKNOWN"
    assert headers["connection"] == "close"
    assert time.monotonic() - started < BODY_TIMEOUT_S + 1.5


def test_a_trickled_body_nobody_reads_does_not_hold_the_connection(server: tuple[str, int]) -> None:
    started = time.monotonic()
    with socket.create_connection(server) as sock:
        sock.sendall(b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\n0123456789")
        sock.settimeout(0.3)
        received = b""
        while time.monotonic() - started < BODY_TIMEOUT_S + 5:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                sock.sendall(b"x")
                continue
            except ConnectionError:
                break
            if not chunk:
                break
            received += chunk
    assert _answer(received)[0] == 405
    assert time.monotonic() - started < BODY_TIMEOUT_S + 2.5


# -- the connection cap ----------------------------------------------------------------------------------------


@pytest.fixture
def capped() -> Iterator[tuple[str, tuple[str, int]]]:
    env = {
        **ENV,
        "RENDEZVOUS_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "RENDEZVOUS_REQUEST_HEADER_TIMEOUT_SECONDS": "30",
    }
    with serve_cli(env) as base:
        yield base, ("127.0.0.1", int(base.rsplit(":", 1)[1]))


def test_past_the_connection_cap_requests_get_503_but_health_answers(capped: tuple[str, tuple[str, int]]) -> None:
    base, address = capped
    idle = [socket.create_connection(address) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)
        assert httpx.get(f"{base}/health").status_code == 200
        busy = httpx.get(f"{base}/_rendezvous/openapi.json")
        assert busy.status_code == 503
        assert busy.json()["errcode"] == "M_UNKNOWN"
        assert int(busy.headers["retry-after"]) >= 1
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.3)
    assert httpx.get(f"{base}/_rendezvous/openapi.json").status_code == 200


def test_idle_connections_past_the_cap_are_cut_quickly(capped: tuple[str, tuple[str, int]]) -> None:
    _, address = capped
    idle = [socket.create_connection(address) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)
        started = time.monotonic()
        with socket.create_connection(address) as extra:
            assert _read_until_closed(extra, 5) == b""
        # The reserve's header deadline (1 s), not the configured 30 s.
        assert time.monotonic() - started < 2.5
    finally:
        for sock in idle:
            sock.close()


def test_connections_past_the_health_reserve_are_dropped_at_once(capped: tuple[str, tuple[str, int]]) -> None:
    _, address = capped
    idle = [socket.create_connection(address) for _ in range(MAX_CONNECTIONS + HEALTH_RESERVE)]
    try:
        time.sleep(0.2)
        with socket.create_connection(address) as extra:
            # Dropped on accept: well before the reserve's 1 s header deadline could close it.
            try:
                assert _read_until_closed(extra, 0.6) == b""
            except ConnectionError:
                pass
    finally:
        for sock in idle:
            sock.close()


# -- pipelining ------------------------------------------------------------------------------------------------


def test_pipelined_requests_are_answered_in_order(server: tuple[str, int]) -> None:
    """Three requests in one write: uvicorn queues the later ones (in our list-based pipeline) and answers each,
    in the order sent, on the one connection."""
    host, port = server
    with socket.create_connection((host, port), timeout=5) as sock:
        requests = [
            f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()
            for path, extra in (("/health", ""), ("/nowhere", ""), ("/health", "Connection: close\r\n"))
        ]
        sock.sendall(b"".join(requests))
        raw = _read_until_closed(sock, 5)
    statuses = [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)]
    assert statuses == [200, 404, 200]
