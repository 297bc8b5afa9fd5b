"""Limits: rate limits, max sessions, payload sizes, oversized and streamed bodies, expiry, store outages."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from rendezvous.protocol import HEALTH_PATH
from rendezvous.store import MemoryStore
from tests.support.server import free_port, serve_settings

from .helpers import GEN1, GEN2, TEXT, assert_matrix_error, gen1_put, gen1_session, gen2_session

FIVE_MB = 5 * 1024 * 1024


def _assert_rate_limited(response: httpx.Response) -> None:
    body = assert_matrix_error(response, 429, "M_LIMIT_EXCEEDED")
    assert body["retry_after_ms"] > 0
    assert int(response.headers["retry-after"]) >= 1


# -- rate limits
# -------------------------------------------------------------------------------------------------


def test_create_rate_limit_answers_429_with_retry_after() -> None:
    with (
        serve_settings(create_rate_per_second=0.01, create_burst=2) as base,
        httpx.Client(base_url=base) as c,
    ):
        assert c.post(GEN1, content=b"", headers=TEXT).status_code == 201
        assert c.post(GEN2, json={"data": ""}).status_code == 200
        _assert_rate_limited(c.post(GEN1, content=b"", headers=TEXT))
        _assert_rate_limited(c.post(GEN2, json={"data": ""}))


def test_session_rate_limit_covers_reads_and_writes() -> None:
    with (
        serve_settings(session_rate_per_second=0.01, session_burst=3) as base,
        httpx.Client(base_url=base) as c,
    ):
        url, etag = gen1_session(c)
        assert c.get(url).status_code == 200
        assert gen1_put(c, url, etag, b"x").status_code == 202
        assert c.get(url).status_code == 200
        _assert_rate_limited(c.get(url))
        _assert_rate_limited(c.delete(url))


def test_rate_limited_create_does_not_create_a_session() -> None:
    store = MemoryStore()
    with serve_settings(store=store, create_rate_per_second=0.01, create_burst=1) as base:
        with httpx.Client(base_url=base) as c:
            c.post(GEN1, content=b"", headers=TEXT)
            c.post(GEN1, content=b"", headers=TEXT)
    assert asyncio.run(store.count()) == 1


def test_rate_limits_are_per_client_address_behind_a_trusted_proxy() -> None:
    settings: dict[str, Any] = {
        "create_rate_per_second": 0.01,
        "create_burst": 1,
        "trusted_proxies": ["127.0.0.1"],
    }
    with serve_settings(**settings) as base, httpx.Client(base_url=base) as c:
        one = {**TEXT, "X-Forwarded-For": "198.51.100.1"}
        two = {**TEXT, "X-Forwarded-For": "198.51.100.2"}
        assert c.post(GEN1, content=b"", headers=one).status_code == 201
        assert c.post(GEN1, content=b"", headers=two).status_code == 201
        _assert_rate_limited(c.post(GEN1, content=b"", headers=one))


def test_forwarded_for_from_an_untrusted_peer_does_not_dodge_the_limit() -> None:
    with (
        serve_settings(create_rate_per_second=0.01, create_burst=1) as base,
        httpx.Client(base_url=base) as c,
    ):
        assert c.post(GEN1, content=b"", headers={**TEXT, "X-Forwarded-For": "198.51.100.1"}).status_code == 201
        response = c.post(GEN1, content=b"", headers={**TEXT, "X-Forwarded-For": "198.51.100.2"})
        _assert_rate_limited(response)


# -- max sessions
# -----------------------------------------------------------------------------------------------


def test_max_sessions_refuses_with_429_instead_of_evicting() -> None:
    with serve_settings(max_sessions=2) as base, httpx.Client(base_url=base) as c:
        first_url, _ = gen1_session(c, b"first")
        gen2_session(c)
        assert_matrix_error(c.post(GEN1, content=b"", headers=TEXT), 429, "M_LIMIT_EXCEEDED")
        assert_matrix_error(c.post(GEN2, json={"data": ""}), 429, "M_LIMIT_EXCEEDED")
        assert c.get(first_url).content == b"first"


def test_the_session_cap_429_says_when_to_retry() -> None:
    with serve_settings(max_sessions=1) as base, httpx.Client(base_url=base) as c:
        gen1_session(c)
        for response in (c.post(GEN1, content=b"", headers=TEXT), c.post(GEN2, json={"data": ""})):
            body = assert_matrix_error(response, 429, "M_LIMIT_EXCEEDED")
            assert body["retry_after_ms"] > 0
            assert int(response.headers["retry-after"]) == -(-body["retry_after_ms"] // 1000)


def test_deleting_a_session_frees_a_slot() -> None:
    with serve_settings(max_sessions=1) as base, httpx.Client(base_url=base) as c:
        url, _ = gen1_session(c)
        c.delete(url)
        assert c.post(GEN1, content=b"", headers=TEXT).status_code == 201


# -- payload limits
# ---------------------------------------------------------------------------------------------


def test_lowered_payload_limit_applies_to_both_generations() -> None:
    with serve_settings(max_payload_bytes=10) as base, httpx.Client(base_url=base) as c:
        assert c.post(GEN1, content=b"a" * 10, headers=TEXT).status_code == 201
        assert_matrix_error(c.post(GEN1, content=b"a" * 11, headers=TEXT), 413, "M_TOO_LARGE")
        assert c.post(GEN2, json={"data": "a" * 10}).status_code == 200
        assert_matrix_error(c.post(GEN2, json={"data": "a" * 11}), 413, "M_TOO_LARGE")


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        chunk = b"a" * min(size, total - sent)
        sent += len(chunk)
        yield chunk


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("target", ["gen1-create", "gen1-put", "gen2-create", "gen2-put"])
def test_multi_megabyte_body_is_413_and_server_carries_on(
    client: httpx.Client, server: str, target: str, chunked: bool
) -> None:
    url, etag = gen1_session(client)
    session = gen2_session(client)
    method, path, headers = {
        "gen1-create": ("POST", GEN1, TEXT),
        "gen1-put": ("PUT", url, {**TEXT, "If-Match": etag}),
        "gen2-create": ("POST", GEN2, {"Content-Type": "application/json"}),
        "gen2-put": ("PUT", f"{GEN2}/{session['id']}/txn1", {"Content-Type": "application/json"}),
    }[target]
    content = _chunks(FIVE_MB) if chunked else b"a" * FIVE_MB
    response = client.request(method, path, content=content, headers=headers)
    assert_matrix_error(response, 413, "M_TOO_LARGE")
    assert client.get(HEALTH_PATH).status_code == 200
    assert client.get(url).status_code == 200
    assert gen1_put(client, url, etag, b"still fine").status_code == 202


def _raw_request(base_url: str, head: bytes, body_parts: list[bytes]) -> bytes:
    """Send a request head and some body bytes, without finishing the body, and read the answer."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(head)
        for part in body_parts:
            sock.sendall(part)
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        return answer


def test_declared_oversized_body_is_refused_before_any_of_it_is_sent(server: str) -> None:
    head = (
        f"POST {GEN1} HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\nContent-Length: {50 * 1024 * 1024}\r\n\r\n"
    ).encode()
    answer = _raw_request(server, head, [])
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_streamed_body_is_refused_as_soon_as_it_passes_the_limit(server: str) -> None:
    head = (
        f"POST {GEN1} HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"%x\r\n%s\r\n" % (3000, b"a" * 3000)
    # 6000 bytes sent and the body left unfinished: the server must answer without waiting for the rest.
    answer = _raw_request(server, head, [chunk, chunk])
    assert answer.startswith(b"HTTP/1.1 413 ")


# -- expiry
# ----------------------------------------------------------------------------------------------------


class _Clock:
    """A monotonic clock the test moves by hand (the store's own clock hook; wall time stays real)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sessions_expire_after_the_ttl_for_both_generations() -> None:
    clock = _Clock()
    with serve_settings(store=MemoryStore(monotonic=clock), ttl_seconds=120) as base:
        with httpx.Client(base_url=base) as c:
            url, _ = gen1_session(c)
            session = gen2_session(c)
            assert session["expires_in_ms"] == 120_000
            clock.now += 119.5
            assert c.get(url).status_code == 200
            assert c.get(f"{GEN2}/{session['id']}").json()["expires_in_ms"] == 500
            clock.now += 1
            assert_matrix_error(c.get(url), 404, "M_NOT_FOUND")
            assert_matrix_error(c.get(f"{GEN2}/{session['id']}"), 404, "M_NOT_FOUND")


def test_writes_do_not_extend_the_lifetime() -> None:
    clock = _Clock()
    with serve_settings(store=MemoryStore(monotonic=clock), ttl_seconds=120) as base:
        with httpx.Client(base_url=base) as c:
            session = gen2_session(c)
            clock.now += 100
            c.put(f"{GEN2}/{session['id']}/t1", json={"sequence_token": "1", "data": "x"})
            clock.now += 21
            assert_matrix_error(c.get(f"{GEN2}/{session['id']}"), 404, "M_NOT_FOUND")


# -- store outage
# ----------------------------------------------------------------------------------------------


def test_unreachable_store_gives_503_with_retry_after_not_500() -> None:
    pytest.importorskip("redis")
    with serve_settings(store_url=f"redis://127.0.0.1:{free_port()}/0") as base:
        with httpx.Client(base_url=base, timeout=15) as c:
            started = time.monotonic()
            for response in (
                c.post(GEN1, content=b"", headers=TEXT),
                c.get(f"{GEN1}/someid"),
                c.post(GEN2, json={"data": ""}),
                c.get(HEALTH_PATH),
            ):
                assert_matrix_error(response, 503, "M_UNKNOWN")
                assert int(response.headers["retry-after"]) >= 1
            assert time.monotonic() - started < 20
