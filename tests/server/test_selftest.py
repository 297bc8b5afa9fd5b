"""``rendezvous selftest``: passes against our own server, fails with a named check behind a broken proxy.

The broken deployments are real: a small reverse proxy (an ASGI app forwarding with httpx, under uvicorn on
its own socket) sits in front of real rendezvous servers and damages the answers the way misconfigured
nginx / CDN / load-balancer setups do. The self-test runs as its command, in a subprocess, against the proxy's URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import itertools
import json
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from rendezvous.protocol import VERSIONS_PATH
from rendezvous.selftest import (
    SelfTestOptions,
    Status,
    describe_etag_problem,
    describe_preflight_problems,
    run_selftest,
)
from rendezvous.store import MemoryStore
from tests.support.server import REPO_ROOT, clean_environ, run_cli, serve_app, serve_cli, serve_settings

from .helpers import GEN1

Headers = list[tuple[bytes, bytes]]
#: (request headers, response status, response headers, response body) → new response headers and body.
Rewrite = Callable[[Headers, int, Headers, bytes], tuple[Headers, bytes]]

_HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"upgrade", b"content-length"}
_NO_LIMITS: dict[str, Any] = {"create_rate_per_second": 0, "session_rate_per_second": 0}


@dataclass
class Exchange:
    """One request the proxy forwarded, and the status the client got."""

    method: str
    path: str
    status: int
    body: bytes


@dataclass
class ReverseProxy:
    """A small HTTP reverse proxy: forwards every request (Host kept) to the upstreams in turn, then rewrites.

    ``delay`` may hold a request back before forwarding it, to make the client time out. ``read_timeout``
    answers ``504`` when the upstream takes longer than that many seconds, as nginx's ``proxy_read_timeout``.
    """

    upstreams: list[str]
    rewrite: Rewrite | None = None
    delay: Callable[[str], float] | None = None
    read_timeout: float | None = None
    exchanges: list[Exchange] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._turn = itertools.cycle(self.upstreams)
        self._client: httpx.AsyncClient | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self._client = httpx.AsyncClient(timeout=30, trust_env=False)
                    await send({"type": "lifespan.startup.complete"})
                else:
                    assert self._client is not None
                    await self._client.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        method: str = scope["method"]
        if self.delay is not None and (wait := self.delay(method)) > 0:
            await asyncio.sleep(wait)
        target = scope["raw_path"] + (b"?" + scope["query_string"] if scope["query_string"] else b"")
        request_headers: Headers = [(k, v) for k, v in scope["headers"] if k not in _HOP_BY_HOP]
        with self._lock:
            upstream = next(self._turn)
        assert self._client is not None
        forwarded = self._client.request(
            method, upstream + target.decode("latin-1"), headers=request_headers, content=body
        )
        try:
            answer = await asyncio.wait_for(forwarded, self.read_timeout)
        except TimeoutError:
            await send({"type": "http.response.start", "status": 504, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        headers: Headers = [(k, v) for k, v in answer.headers.raw if k.lower() not in _HOP_BY_HOP]
        content = answer.content
        if self.rewrite is not None:
            headers, content = self.rewrite(request_headers, answer.status_code, headers, content)
        self.exchanges.append(Exchange(method, scope["path"], answer.status_code, content))
        headers.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": answer.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": content})


@contextlib.contextmanager
def proxy(upstreams: list[str], **kwargs: Any) -> Iterator[tuple[str, ReverseProxy]]:
    app = ReverseProxy(upstreams, **kwargs)
    with serve_app(app) as url:
        yield url, app


def selftest(url: str, *args: str) -> tuple[int, dict[str, Any]]:
    """Run the command with ``--json``; its exit status and its report."""
    result = run_cli(["selftest", url, "--json", "--repeat", "6", *args], timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def check(report: dict[str, Any], name: str) -> dict[str, str]:
    found: dict[str, str] = next(c for c in report["checks"] if c["name"] == name)
    return found


def _replace_header(headers: Headers, name: bytes, change: Callable[[bytes], bytes | None]) -> Headers:
    out = []
    for key, value in headers:
        if key.lower() == name:
            new = change(value)
            if new is not None:
                out.append((key, new))
        else:
            out.append((key, value))
    return out


# -- rewrites: the broken deployments ------------------------------------------------------------------------


def weaken_etags(_: Headers, __: int, headers: Headers, body: bytes) -> tuple[Headers, bytes]:
    return _replace_header(headers, b"etag", lambda v: b"W/" + v), body


def gzip_like_nginx(request: Headers, _: int, headers: Headers, body: bytes) -> tuple[Headers, bytes]:
    """What ``gzip on`` does to an answer whose client accepts gzip: compress it and weaken its ETag."""
    accepts = b"gzip" in dict(request).get(b"accept-encoding", b"")
    if not accepts or len(body) < 20:
        return headers, body
    headers = _replace_header(headers, b"etag", lambda v: b"W/" + v)
    return [*headers, (b"content-encoding", b"gzip")], gzip.compress(body)


def drop_expose_headers(_: Headers, __: int, headers: Headers, body: bytes) -> tuple[Headers, bytes]:
    return _replace_header(headers, b"access-control-expose-headers", lambda v: None), body


def add_charset(_: Headers, __: int, headers: Headers, body: bytes) -> tuple[Headers, bytes]:
    def change(value: bytes) -> bytes:
        return b"text/plain; charset=utf-8" if value == b"text/plain" else value

    return _replace_header(headers, b"content-type", change), body


# -- our own server -----------------------------------------------------------------------------------------


def test_selftest_passes_against_our_server_with_its_default_rate_limits() -> None:
    with serve_cli() as base:
        status, report = selftest(base)
    assert status == 0, report
    assert report["ok"] is True
    assert report["summary"]["fail"] == 0
    names = {c["name"] for c in report["checks"] if c["status"] == "pass"}
    assert {"gen1.etag_strong", "gen1.content_type", "gen2.txn_replay", "gen2.consistency"} <= names


def test_selftest_passes_against_the_stable_gen2_paths(server: str) -> None:
    status, report = selftest(server, "--gen2-stable", "--skip-gen1")
    assert status == 0, report
    assert "M_CONCURRENT_WRITE" in check(report, "gen2.conflict")["message"]
    assert check(report, "gen1")["status"] == "skip"


def test_selftest_prints_each_check_as_plain_text() -> None:
    with serve_settings(**_NO_LIMITS) as base:
        result = run_cli(["selftest", base, "--repeat", "2", "--skip-gen2"], timeout=60)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert any(line.split()[:2] == ["PASS", "gen1.etag_strong"] for line in lines if line.strip())
    assert lines[-1].startswith("OK: ")


def test_selftest_warns_when_the_url_is_not_a_homeserver_advertising_msc4108(server: str) -> None:
    status, report = selftest(server, "--skip-gen2")
    assert status == 0
    discovery = check(report, "gen1.discovery")
    assert discovery["status"] == "warn"
    assert "org.matrix.msc4108" in discovery["message"]


def test_selftest_fails_when_nothing_answers() -> None:
    with serve_settings(**_NO_LIMITS) as base:
        pass  # the port is now closed
    status, report = selftest(base, "--timeout", "2")
    assert status == 1
    assert check(report, "gen1.reachable")["status"] == "fail"
    assert check(report, "gen2.reachable")["status"] == "fail"


async def test_selftest_never_reports_the_access_token(server: str) -> None:
    printed: list[str] = []
    options = SelfTestOptions(server, access_token="syt_secret_token_value", repeat=2)
    report = await run_selftest(options, on_result=lambda result: printed.append(result.message))
    assert report.ok
    assert "syt_secret_token_value" not in json.dumps(report.as_dict())
    assert "syt_secret_token_value" not in repr(options)


# -- delegation (Synapse's msc4108_delegation_endpoint) -----------------------------------------------------


def _homeserver_delegating_to(rendezvous: str) -> Callable[[dict[str, Any], Any, Any], Awaitable[None]]:
    """A stand-in homeserver front: /versions lists MSC4108 and the create POST is a CORS-enabled 307."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        cors = [(b"access-control-allow-origin", b"*")]
        if scope["path"] == VERSIONS_PATH:
            body = json.dumps({"versions": ["v1.11"], "unstable_features": {"org.matrix.msc4108": True}}).encode()
            headers = [(b"content-type", b"application/json"), *cors]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif scope["path"] == GEN1 and scope["method"] == "POST":
            headers = [(b"location", f"{rendezvous}{GEN1}".encode()), *cors]
            await send({"type": "http.response.start", "status": 307, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({"type": "http.response.start", "status": 404, "headers": cors})
            await send({"type": "http.response.body", "body": b""})

    return app


def test_selftest_follows_a_307_delegation_and_checks_discovery(server: str) -> None:
    with serve_app(_homeserver_delegating_to(server)) as homeserver:
        status, report = selftest(homeserver, "--skip-gen2", "--allow-origin", server)
    assert status == 0, report
    assert check(report, "gen1.discovery")["status"] == "pass"
    create = check(report, "gen1.create")
    assert create["status"] == "pass"
    assert "redirect" in create["message"]


def test_selftest_does_not_follow_a_delegation_to_an_origin_it_was_not_given(server: str) -> None:
    with serve_app(_homeserver_delegating_to(server)) as homeserver:
        status, report = selftest(homeserver, "--skip-gen2")
    assert status == 1
    create = check(report, "gen1.create")
    assert create["status"] == "fail"
    assert f"--allow-origin {server}" in create["message"]


class _Recorder:
    """An internal service a hostile rendezvous server would like the self-test to hit: records every request."""

    def __init__(self) -> None:
        self.requests: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        self.requests.append(f"{scope['method']} {scope['path']}")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _hostile_rendezvous(target: str) -> Callable[[dict[str, Any], Any, Any], Awaitable[None]]:
    """A Gen-1 create that hands out a session URL on ``target``."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        cors = [(b"access-control-allow-origin", b"*"), (b"access-control-expose-headers", b"ETag")]
        if scope["path"] == GEN1 and scope["method"] == "POST":
            body = json.dumps({"url": f"{target}/admin/delete-everything"}).encode()
            headers = [(b"content-type", b"application/json"), (b"etag", b'"x-1"'), *cors]
            await send({"type": "http.response.start", "status": 201, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        else:
            await send({"type": "http.response.start", "status": 404, "headers": cors})
            await send({"type": "http.response.body", "body": b""})

    return app


def test_selftest_sends_nothing_to_a_session_url_on_another_origin() -> None:
    internal = _Recorder()
    with serve_app(internal) as target, serve_app(_hostile_rendezvous(target)) as hostile:
        status, report = selftest(hostile, "--skip-gen2")
    assert status == 1
    assert internal.requests == []
    create = check(report, "gen1.create")
    assert create["status"] == "fail"
    assert "--allow-origin" in create["message"]


# -- broken proxies -----------------------------------------------------------------------------------------


def test_selftest_passes_through_a_transparent_proxy(server: str) -> None:
    with proxy([server]) as (url, _):
        status, report = selftest(url)
    assert status == 0, report


def test_selftest_sees_a_held_poll_answered_by_a_write_through_a_proxy() -> None:
    with serve_settings(hold_ms=10_000, **_NO_LIMITS) as base, proxy([base]) as (url, _):
        status, report = selftest(url, "--skip-gen2", "--hold-wait", "1")
    assert status == 0, report
    held = check(report, "gen1.held_poll")
    assert held["status"] == "pass"
    assert "answered by a write from another connection" in held["message"]


def test_selftest_fails_when_a_proxy_cuts_held_polls() -> None:
    with serve_settings(hold_ms=10_000, **_NO_LIMITS) as base, proxy([base], read_timeout=0.5) as (url, _):
        status, report = selftest(url, "--skip-gen2", "--hold-wait", "2")
    assert status == 1
    held = check(report, "gen1.held_poll")
    assert held["status"] == "fail"
    assert "504" in held["message"] and "proxy_read_timeout" in held["message"]
    assert check(report, "gen1.not_modified")["status"] == "pass"


def test_selftest_skips_the_held_poll_check_on_a_server_that_answers_at_once() -> None:
    with serve_settings(hold_enabled=False, **_NO_LIMITS) as base:
        status, report = selftest(base, "--skip-gen2")
    assert status == 0, report
    assert check(report, "gen1.held_poll")["status"] == "skip"


def test_selftest_fails_when_a_proxy_weakens_etags(server: str) -> None:
    with proxy([server], rewrite=weaken_etags) as (url, _):
        status, report = selftest(url, "--skip-gen2")
    assert status == 1
    etag = check(report, "gen1.etag_strong")
    assert etag["status"] == "fail"
    assert "weak" in etag["message"]
    assert "gzip" in etag["message"]


def test_selftest_fails_when_a_proxy_compresses_despite_no_transform(server: str) -> None:
    with proxy([server], rewrite=gzip_like_nginx) as (url, _):
        status, report = selftest(url, "--skip-gen2")
    assert status == 1
    compressed = check(report, "gen1.no_transform")
    assert compressed["status"] == "fail"
    assert "Content-Encoding: gzip" in compressed["message"]


def test_selftest_fails_when_a_proxy_drops_the_exposed_etag(server: str) -> None:
    with proxy([server], rewrite=drop_expose_headers) as (url, _):
        status, report = selftest(url, "--skip-gen2")
    assert status == 1
    cors = check(report, "gen1.cors_headers")
    assert cors["status"] == "fail"
    assert "Access-Control-Expose-Headers" in cors["message"]


def test_selftest_fails_when_a_proxy_adds_a_charset(server: str) -> None:
    with proxy([server], rewrite=add_charset) as (url, _):
        status, report = selftest(url, "--skip-gen2")
    assert status == 1
    content_type = check(report, "gen1.content_type")
    assert content_type["status"] == "fail"
    assert "text/plain; charset=utf-8" in content_type["message"]


def test_selftest_fails_when_a_load_balancer_splits_two_memory_stores() -> None:
    with (
        serve_settings(MemoryStore(), **_NO_LIMITS) as first,
        serve_settings(MemoryStore(), **_NO_LIMITS) as second,
        proxy([first, second]) as (url, _),
    ):
        status, report = selftest(url)
    assert status == 1
    for name in ("gen1.consistency", "gen2.consistency"):
        split = check(report, name)
        assert split["status"] == "fail"
        assert "do not share sessions" in split["message"]


def _sessions_created(exchanges: list[Exchange]) -> list[str]:
    paths = []
    for exchange in exchanges:
        if exchange.method == "POST" and exchange.status in (200, 201):
            body = json.loads(exchange.body)
            paths.append(httpx.URL(body["url"]).path if "url" in body else body["id"])
    return paths


def _sessions_deleted(exchanges: list[Exchange]) -> list[str]:
    return [e.path for e in exchanges if e.method == "DELETE" and e.status in (200, 204)]


def test_selftest_deletes_its_sessions_when_it_passes(server: str) -> None:
    with proxy([server]) as (url, app):
        selftest(url)
    created = _sessions_created(app.exchanges)
    deleted = _sessions_deleted(app.exchanges)
    assert len(created) == 2
    assert all(any(path.endswith(session) for path in deleted) for session in created)


def test_selftest_deletes_its_sessions_when_a_step_times_out(server: str) -> None:
    # Preflights hang past the client's timeout: both generations stop half-way, and clean up anyway.
    with proxy([server], delay=lambda method: 3.0 if method == "OPTIONS" else 0.0) as (url, app):
        status, report = selftest(url, "--timeout", "1")
    assert status == 1
    assert check(report, "gen1.reachable")["status"] == "fail"
    assert check(report, "cleanup")["status"] == "pass"
    created = _sessions_created(app.exchanges)
    deleted = _sessions_deleted(app.exchanges)
    assert len(created) == 2
    assert all(any(path.endswith(session) for path in deleted) for session in created)


async def test_selftest_reports_progress_as_each_check_finishes(server: str) -> None:
    seen: list[Status] = []
    report = await run_selftest(SelfTestOptions(server, repeat=1), on_result=lambda r: seen.append(r.status))
    assert len(seen) == len(report.results) > 20


# -- the verdicts on single answers (pure functions) --------------------------------------------------------


def test_a_weak_etag_is_blamed_on_compression() -> None:
    problem = describe_etag_problem('W/"abc-2"')
    assert problem is not None
    assert "compressing" in problem


def test_a_strong_etag_has_no_problem() -> None:
    assert describe_etag_problem('"abc-2"') is None


def test_a_wildcard_allow_headers_does_not_cover_authorization() -> None:
    response = httpx.Response(
        204,
        headers={
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": "*",
        },
    )
    problems = describe_preflight_problems(
        response, "https://app.element.io", "POST", ["Content-Type", "Authorization"]
    )
    assert problems == ["Access-Control-Allow-Headers does not allow Authorization"]


# -- what the self-test loads ----------------------------------------------------------------------------------

#: The server side: the self-test is an HTTP client and takes the protocol's names from rendezvous.protocol.
_SERVER_MODULES = (
    "rendezvous.store",
    "rendezvous.metrics",
    "rendezvous.app",
    "rendezvous.gen1",
    "rendezvous.gen2",
    "prometheus_client",
)


def test_importing_the_selftest_loads_nothing_of_the_server() -> None:
    code = (
        "import json, sys; import rendezvous.selftest as s; [getattr(s, name) for name in s.__all__]; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout)
    assert {"rendezvous.selftest.runner", "rendezvous.selftest.gen1_probes", "httpx"} <= set(loaded)
    server_side = [m for m in loaded if any(m == s or m.startswith(f"{s}.") for s in _SERVER_MODULES)]
    assert server_side == []


def test_selftest_refuses_a_repeat_count_below_one() -> None:
    result = run_cli(["selftest", "http://127.0.0.1:9", "--repeat", "0"])
    assert result.returncode == 2
    assert "--repeat" in result.stderr
