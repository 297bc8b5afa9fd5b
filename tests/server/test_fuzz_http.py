"""Hostile HTTP against a real server: no input gets a 5xx, every 4xx is a Matrix error, nothing is logged as a crash.

Every operation of the route table (:data:`rendezvous.routes.MOUNTS`, read here so that a new route is fuzzed
without touching this file) gets hypothesis-generated requests over a raw socket: methods (odd ones included),
ids and txnIds (live sessions of either generation, random identifiers, percent-encodings, overlong and dot
segments), query strings (``since``, ``timeout_ms``, ``access_token`` with NUL, LF and non-ASCII), headers
(Content-Type variants, If-Match / If-None-Match junk and weak ETags, ``Prefer``, ``Authorization``, forwarding
headers, ``Sec-Fetch-*``, ``Host``, ``Expect``, WebSocket handshakes whole or broken, values of several KiB),
bodies (random bytes, JSON of every shape, deep nesting, escaped surrogates, huge numbers, UTF-16), framings
(exact, chunked, ``Content-Length`` lies), absolute-form targets and HTTP/1.0. Each part of a request is
plausible three times in four, so that most requests get past a handler's first check and into the next.

Each request goes to ``rendezvous serve`` in a subprocess whose stderr is written to a file, against three
configurations: the memory store (trusting ``X-Forwarded-*`` from 127.0.0.1, rate limits on but generous),
Redis with ``--workers 2`` on a throwaway ``redis-server`` (trusting ``Forwarded``), and the ``authenticated``
create policy. Its homeserver is the stand-in of ``test_create_policy.py``, not Synapse: the point here is the
hostile requests, the stand-in answers each token check at once and never fails for reasons of its own (a
503 would hide everything else), and a real Synapse would need an OAuth server to issue the token the
authenticated creates need.

Asserted per answer: status below 500 (a 503 is documented only for a store or homeserver outage, and neither
happens here); every 4xx is ``application/json`` with string ``errcode`` and ``error`` (bodiless for HEAD),
a 405 names ``Allow``, a 304 has no body, a 101 answers only a request that asked for a WebSocket, and a
Gen-1 session URL has a host and a usable port. The one answer allowed not to come from the app is uvicorn's own
"Invalid HTTP request received." 400, and only for requests whose framing is deliberately broken. After each
run the server's stderr must hold no traceback. A separate property fuzzes only the Host and forwarding headers
of Gen-1 creates: the URL built from them is usable, or the answer is 400.

Hypothesis alone, not schemathesis: schemathesis 4 is installable here but would bring 14 packages into the
dev dependencies (requests, Werkzeug, graphql-core, rich, …), and it generates requests that match the OpenAPI
document, whereas what breaks servers are requests that do not (lying framings, junk conditional headers,
broken handshakes, odd methods, paths outside the document).

Runs are derandomized (the same examples on every run; 1000 per configuration, about 7 s each).
``QRLINK_FUZZ_EXAMPLES=5000`` runs more locally, and ``QRLINK_FUZZ_SEED=N`` a different reproducible set.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from rendezvous.protocol import GEN1_PATH, GEN2_UNSTABLE_PATH, HEALTH_PATH
from rendezvous.routes import MOUNTS, Mount, Resource
from rendezvous.store import Generation
from tests.support import redis_servers
from tests.support.server import REPO_ROOT, clean_environ, free_port, serve_app

from .test_create_policy import ALICE_TOKEN, StandInHomeserver

EXAMPLES = int(os.environ.get("QRLINK_FUZZ_EXAMPLES", "1000"))
#: Unset: derandomized (the same examples on every run). Set: a different, reproducible, set of examples.
SEED = os.environ.get("QRLINK_FUZZ_SEED") or None
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=SEED is None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
STARTUP_TIMEOUT_S = 30.0
#: Longest a fuzz request may take: a held long-poll is at most 1 s (``push_max_wait_seconds`` below).
ANSWER_TIMEOUT_S = 10.0
#: The markers a generated request uses for values only known when it is sent (a live session of each kind).
LIVE_ID, OTHER_ID, LIVE_ETAG, LIVE_TOKEN = "@@ID@@", "@@OTHER@@", "@@ETAG@@", "@@TOKEN@@"
#: uvicorn's own answer to a request it cannot parse; it never reaches the app.
UVICORN_BAD_REQUEST = b"Invalid HTTP request received."

BASE_ENV = {
    "RENDEZVOUS_CREATE_RATE_PER_SECOND": "0",
    "RENDEZVOUS_SESSION_RATE_PER_SECOND": "0",
    "RENDEZVOUS_GEN2_STABLE_API": "true",
    "RENDEZVOUS_PUSH_MAX_WAIT_SECONDS": "1",
    # A poll naming the current ETag is held: a short hold keeps it well inside the answer timeout.
    "RENDEZVOUS_HOLD_MS": "200",
    # Every example creates sessions; a long local run must not reach the default cap of 10,000.
    "RENDEZVOUS_MAX_SESSIONS": "1000000",
    "RENDEZVOUS_LOG_LEVEL": "warning",
}


# -- the servers ---------------------------------------------------------------------------------------------


@dataclass
class Target:
    """One ``rendezvous serve`` process under fuzz: its address, its stderr file, and how to make sessions."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path
    create_headers: Mapping[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def fuzz_server(env: Mapping[str, str], *args: str, create_headers: Mapping[str, str] = {}) -> Iterator[Target]:
    with tempfile.TemporaryDirectory(prefix="rz-fuzz-") as directory:
        log = Path(directory) / "stderr.log"
        port = free_port()
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "rendezvous", "serve", "--host", "127.0.0.1", "--port", str(port), *args],
                env=clean_environ({**BASE_ENV, **env}),
                cwd=REPO_ROOT,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        target = Target(port, process, log, create_headers)
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"server exited during startup:\n{target.log_text()}")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{target.url}{HEALTH_PATH}", timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"server at {target.url} did not come up:\n{target.log_text()}")
                time.sleep(0.05)
            yield target
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture(scope="module")
def memory_server() -> Iterator[Target]:
    # Rate limits on, but too generous to refuse anything: their buckets are keyed by the forwarded address.
    env = {
        "RENDEZVOUS_TRUSTED_PROXIES": "127.0.0.1/32",
        "RENDEZVOUS_CREATE_RATE_PER_SECOND": "10000",
        "RENDEZVOUS_CREATE_BURST": "10000",
        "RENDEZVOUS_SESSION_RATE_PER_SECOND": "10000",
        "RENDEZVOUS_SESSION_BURST": "10000",
    }
    with fuzz_server(env) as target:
        yield target


@pytest.fixture(scope="module")
def redis_workers_server() -> Iterator[Target]:
    reason = redis_servers.missing_binaries()
    if reason is not None:
        pytest.skip(reason)
    with redis_servers.redis_server() as redis:
        env = {
            "RENDEZVOUS_STORE_URL": redis.url,
            "RENDEZVOUS_TRUSTED_PROXIES": "127.0.0.1/32",
            "RENDEZVOUS_FORWARDED_HEADER": "forwarded",
        }
        with fuzz_server(env, "--workers", "2") as target:
            yield target


@pytest.fixture(scope="module")
def authenticated_server() -> Iterator[Target]:
    with serve_app(StandInHomeserver()) as homeserver:
        env = {"RENDEZVOUS_GEN2_CREATE_POLICY": "authenticated", "RENDEZVOUS_HOMESERVER_URL": homeserver}
        with fuzz_server(env, create_headers={"Authorization": f"Bearer {ALICE_TOKEN}"}) as target:
            yield target


# -- what a fuzz request is made of --------------------------------------------------------------------------

#: Methods llhttp (uvicorn's httptools parser) knows; an unknown one never reaches the app.
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS")
ODD_METHODS = ("PATCH", "TRACE", "PROPFIND", "MKCOL", "COPY", "MOVE", "LOCK", "PURGE", "SEARCH", "REPORT", "QUERY")

printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
latin1 = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")
anything = st.characters(codec="utf-8")  # every code point but the surrogates
identifier = st.from_regex(r"[A-Za-z0-9._~-]{1,40}", fullmatch=True)


def _percent(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


segments = st.one_of(
    st.sampled_from([LIVE_ID, LIVE_ID, OTHER_ID]),
    identifier,
    st.sampled_from(
        [
            ".",
            "..",
            "%2e%2e",
            "%2E",
            "%2F",
            "a%2Fb",
            "%00",
            "%0A",
            "%ZZ",
            "%",
            "%e2%82",
            "%C3%A9",
            "a;b",
            "a,b",
            "",
            "*",
        ]
    ),
    st.sampled_from(["a" * 255, "a" * 256, "x" * 3000, "%41" * 300]),
    st.text(anything, max_size=20).map(_percent),
    st.builds(lambda live, tail: live + tail, st.just(LIVE_ID), st.sampled_from(["%20", "%00", ".", "~", "=="])),
)


def _path_for(mount: Mount, resource: Resource, params: list[str], tail: str) -> str:
    path = mount.prefix.rstrip("/") + "".join(f"/{param}" for param in params) + tail
    return path if path.startswith("/") else "/" + path


def _mostly(draw: st.DrawFn, plausible: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> Any:
    """A plausible value three times in four, else a hostile one: so that most requests get past the first check
    of a handler and into the next, and each hostile part is often the only one in its request."""
    return draw(hostile if draw(st.integers(0, 3)) == 0 else plausible)


#: Every (mount, resource, method) of the route table, so that each operation is drawn as often as any other.
ENDPOINTS = tuple(
    (mount, resource, method)
    for mount in MOUNTS
    for resource in mount.resources
    for operation in resource.operations
    for method in operation.methods
)


@st.composite
def paths(draw: st.DrawFn) -> tuple[Mount, str, str]:
    """A path of some operation of the route table (or just past it), its mount and its method."""
    mount, resource, method = draw(st.sampled_from(ENDPOINTS))
    params = [_mostly(draw, st.just(LIVE_ID) if name == "id" else identifier, segments) for name in resource.params]
    tails = st.sampled_from(["/", "/watch", "/x/y", "/..", "//", "/%2e%2e/health", "?", "#frag", ";x"])
    tail = _mostly(draw, st.just(""), tails)
    return mount, method, _path_for(mount, resource, params, tail)


query_values = st.one_of(
    st.sampled_from(["", "1", "2", "0", "-1", "01", "1e3", "NaN", "inf", "9" * 40, "0x10", " 1", "1 ", "\u0661"]),
    st.sampled_from([LIVE_TOKEN, f"{ALICE_TOKEN}", "\x00", "\n", "a\x00b", "\r\n", "é", "\ud800"]),
    st.text(anything, max_size=30),
)
query_pairs = st.lists(
    st.tuples(st.sampled_from(["since", "timeout_ms", "access_token", "since", "x", "", "timeout_ms[]"]), query_values),
    max_size=4,
)


def _query(pairs: list[tuple[str, str]], raw: bool) -> str:
    if not pairs:
        return ""
    encode = (lambda text: text) if raw else _percent
    return "?" + "&".join(f"{key}={encode(value)}" for key, value in pairs)


def _header_text(alphabet: st.SearchStrategy[str] = latin1, max_size: int = 40) -> st.SearchStrategy[str]:
    # A header value may not start or end with whitespace (it would be trimmed: harmless, but not what was drawn).
    return st.text(alphabet, max_size=max_size).map(str.strip)


ETAG_JUNK = [LIVE_ETAG, f"W/{LIVE_ETAG}", "*", '"x"', "x", '"a", "b"', f"{LIVE_ETAG}, {LIVE_ETAG}", "", '"', 'W/"']
ETAG_JUNK += ['"kq3VfB2x-1"', '"kq3VfB2x-99999999999999999999"', '"-1"', "W/", f"{LIVE_ETAG}x", '"é"']
HEADER_CHOICES: dict[str, st.SearchStrategy[str]] = {
    "Content-Type": st.one_of(
        st.sampled_from(
            [
                "text/plain",
                "text/plain",
                "application/json",
                "text/plain; charset=utf-8",
                "TEXT/PLAIN",
                "text/plain;",
                "text/plain ;",
                "text/html",
                "multipart/form-data; boundary=x",
                "*/*",
                "",
                "application/json; charset=utf-16",
            ]
        ),
        _header_text(),
    ),
    "If-Match": st.one_of(st.sampled_from(ETAG_JUNK), _header_text()),
    "If-None-Match": st.one_of(st.sampled_from(ETAG_JUNK), _header_text()),
    "Prefer": st.one_of(
        st.sampled_from(
            ["wait=1", "wait=0", "wait=-1", "wait=1.5", "wait=" + "9" * 30, "wait", "wait=", "respond-async, wait=1"]
        ),
        _header_text(),
    ),
    "Authorization": st.one_of(
        st.sampled_from(
            [
                f"Bearer {ALICE_TOKEN}",
                f"Bearer {ALICE_TOKEN}",
                "Bearer",
                "Bearer ",
                "bearer x",
                "Basic YWxpY2U6cHc=",
                "Bearer a b",
                "Bearer " + "t" * 6000,
                "Bearer é",
                "Negotiate",
            ]
        ),
        _header_text(),
    ),
    "X-Forwarded-For": st.one_of(
        st.sampled_from(["1.2.3.4", "::1", "1.2.3.4, 5.6.7.8", "", "junk", "[::1]:80"]), _header_text()
    ),
    "X-Forwarded-Proto": st.one_of(
        st.sampled_from(["https", "http", "ftp", "", "HTTPS", "https, http"]), _header_text()
    ),
    "X-Forwarded-Host": st.one_of(
        st.sampled_from(["rz.example.org", "rz.example.org:8443", "a b", "", "[::1]", "[::1", "x:y:z", "x:70000"]),
        _header_text(),
    ),
    "Forwarded": st.one_of(
        st.sampled_from(
            [
                "for=1.2.3.4;proto=https;host=rz.example.org",
                'for="[::1]";host="a b"',
                "host=",
                "proto=gopher",
                ";;;",
                "for=1.2.3.4, for=5.6.7.8;host=x",
                'host="unterminated',
            ]
        ),
        _header_text(),
    ),
    "Host": st.one_of(
        st.sampled_from(["", "localhost", "[::1]:8008", "a b", "x:notaport", "é", "x:65536", "[::1]:99999", "x:"]),
        _header_text(),
    ),
    "Sec-Fetch-Dest": st.one_of(st.sampled_from(["empty", "document", "iframe", ""]), _header_text()),
    "Sec-Fetch-Mode": st.one_of(st.sampled_from(["cors", "navigate", "no-cors", ""]), _header_text()),
    "Sec-Fetch-Site": st.one_of(st.sampled_from(["none", "same-origin", "cross-site", ""]), _header_text()),
    "Sec-Fetch-User": st.one_of(st.sampled_from(["?1", "?0", "?", ""]), _header_text()),
    "Origin": st.one_of(st.sampled_from(["https://app.element.io", "null", ""]), _header_text()),
    "Accept": st.one_of(st.sampled_from(["application/json", "text/plain", "*/*", ""]), _header_text()),
    "Accept-Encoding": st.sampled_from(["gzip", "br", "identity", "*;q=0"]),
    "Expect": st.sampled_from(["100-continue", "200-ok", ""]),
    # A WebSocket upgrade (the watch routes), whole or in pieces.
    "Upgrade": st.sampled_from(["websocket", "WebSocket", "h2c", "websocket, h2c", ""]),
    "Connection": st.sampled_from(["Upgrade", "upgrade, keep-alive", "keep-alive", "close"]),
    "Sec-WebSocket-Key": st.one_of(st.sampled_from(["dGhlIHNhbXBsZSBub25jZQ==", "junk", "", "AAAA"]), _header_text()),
    "Sec-WebSocket-Version": st.one_of(st.sampled_from(["13", "8", "13, 8", ""]), _header_text()),
    "Sec-WebSocket-Extensions": st.one_of(
        st.sampled_from(["permessage-deflate", "permessage-deflate; client_max_window_bits=99", ";;;"]), _header_text()
    ),
    "Sec-WebSocket-Protocol": st.one_of(st.sampled_from(["chat", "a b", ","]), _header_text()),
    "X-Junk": st.sampled_from(["v" * 8000, "w" * 20000]),
}
header_names = st.from_regex(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,30}", fullmatch=True)


WEBSOCKET_HANDSHAKE = [
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
]


@st.composite
def header_lists(draw: st.DrawFn) -> list[tuple[str, str]]:
    names = draw(st.lists(st.sampled_from(sorted(HEADER_CHOICES)), max_size=4, unique=True))
    headers = [(name, draw(HEADER_CHOICES[name])) for name in names]
    if draw(st.integers(0, 2)) == 0:
        # A whole handshake, its hostile parts (drawn above) coming first.
        headers += WEBSOCKET_HANDSHAKE
    headers += draw(st.lists(st.tuples(header_names, _header_text()), max_size=1))
    # Repeated headers: two Content-Types, two If-Matches.
    if headers and draw(st.booleans()):
        headers.append(draw(st.sampled_from(headers)))
    return headers


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**30, max_value=10**60),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(), max_size=20),  # surrogates included: escaped by json.dumps
    st.sampled_from([LIVE_TOKEN, "1", "2", "01", "", "\ud800", "é" * 3000]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
gen2_objects = st.fixed_dictionaries(
    {},
    optional={
        "data": st.one_of(st.text(st.characters(), max_size=30), json_values, st.just("x" * 5000)),
        "sequence_token": st.one_of(
            st.sampled_from([LIVE_TOKEN, LIVE_TOKEN, "1", "0", "01", " 1", "1.0"]), json_values
        ),
    },
)


def _json_bytes(value: Any, encoding: str) -> bytes:
    text = json.dumps(value)
    return text.encode(encoding, "surrogatepass")


bodies = st.one_of(
    st.just(b""),
    st.binary(max_size=200),
    st.text(anything, max_size=200).map(str.encode),
    st.builds(_json_bytes, gen2_objects, st.sampled_from(["utf-8", "utf-8", "utf-16", "utf-32-le"])),
    st.builds(_json_bytes, json_values, st.just("utf-8")),
    st.sampled_from(
        [
            b"[" * 100_000 + b"]" * 100_000,
            b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
            b"[" * 1_000,
            b'{"data": "' + b"\\ud800" + b'", "sequence_token": "1"}',
            b'{"data": "", "sequence_token": ' + b"1" * 5_000 + b"}",
            b'{"data": 1' + b"0" * 5_000 + b"}",
            b'{"data": 1e999999, "sequence_token": -1e999999}',
            b'{"data": NaN, "sequence_token": Infinity}',
            b'{"data": "", "data": 1}',
            b"\xef\xbb\xbf{}",
            b"\xff\xfe{\x00}\x00",
            b"null",
            b"x" * 4097,
            b"x" * 30_000,
            b"\x00" * 64,
        ]
    ),
)

FRAMINGS = ("none", "chunked", "short", "long", "bogus")
#: Framings whose request is not one well-formed HTTP message: uvicorn may refuse it before the app sees it, and
#: a too-long Content-Length leaves the server waiting for bytes that never come (it gets an EOF instead).
BROKEN_FRAMINGS = frozenset({"short", "long", "bogus"})


@dataclass(frozen=True)
class Fuzzed:
    method: str
    mount: Mount = field(repr=False)
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    framing: str
    raw_target: bool
    #: ``http://host`` before the path (absolute-form), and the HTTP version.
    absolute: bool = False
    version: str = "HTTP/1.1"

    @property
    def broken(self) -> bool:
        return self.framing in BROKEN_FRAMINGS or self.raw_target


def _plausible_headers(mount: Mount, method: str) -> list[tuple[str, str]]:
    """What a well-behaved client of ``mount`` would send with ``method``."""
    if mount.generation is Generation.GEN1:
        headers = [("Content-Type", "text/plain")] if method in ("POST", "PUT") else []
        if method == "PUT":
            headers.append(("If-Match", LIVE_ETAG))
        elif method in ("GET", "HEAD"):
            headers.append(("If-None-Match", LIVE_ETAG))
        return headers
    if mount.generation is Generation.GEN2:
        return [("Content-Type", "application/json"), ("Authorization", f"Bearer {ALICE_TOKEN}")]
    return []


def _plausible_body(mount: Mount) -> st.SearchStrategy[bytes]:
    if mount.generation is Generation.GEN2:
        objects = st.fixed_dictionaries({"data": st.text(max_size=30), "sequence_token": st.just(LIVE_TOKEN)})
        return objects.map(lambda value: json.dumps(value).encode())
    return st.text(max_size=40).map(str.encode)


@st.composite
def requests(draw: st.DrawFn) -> Fuzzed:
    mount, method, path = draw(paths())
    method = _mostly(draw, st.just(method), st.sampled_from(METHODS + ODD_METHODS))
    raw = draw(st.integers(0, 19)) == 0
    plausible_query = st.sampled_from([[], [], [("since", LIVE_TOKEN), ("timeout_ms", "50")], [("timeout_ms", "0")]])
    target = path + _query(_mostly(draw, plausible_query, query_pairs), raw)
    headers = _plausible_headers(mount, method)
    # Hostile headers replace plausible ones of the same name, or come as a second header of that name.
    hostile = draw(header_lists()) if draw(st.booleans()) else []
    if draw(st.booleans()):
        names = {name.lower() for name, _ in hostile}
        headers = [(name, value) for name, value in headers if name.lower() not in names]
    headers += hostile
    body = _mostly(draw, _plausible_body(mount), bodies)
    framing = _mostly(draw, st.just("exact"), st.sampled_from(FRAMINGS))
    if framing in ("short", "long") and not body:
        framing = "exact"
    absolute = draw(st.integers(0, 9)) == 0
    version = "HTTP/1.0" if draw(st.integers(0, 9)) == 0 else "HTTP/1.1"
    return Fuzzed(method, mount, target, headers, body, framing, raw, absolute, version)


# -- sending one and checking its answer ---------------------------------------------------------------------


@dataclass
class Live:
    """Sessions made for one example, substituted for the markers."""

    gen1_id: str
    gen1_etag: str
    gen2_id: str
    gen2_token: str


def _live_sessions(client: httpx.Client, target: Target) -> Live:
    gen1 = client.post(GEN1_PATH, headers={"Content-Type": "text/plain"})
    assert gen1.status_code == 201, gen1.text
    gen2 = client.post(GEN2_UNSTABLE_PATH, json={"data": ""}, headers=dict(target.create_headers))
    assert gen2.status_code == 200, gen2.text
    body = gen2.json()
    return Live(gen1.json()["url"].rsplit("/", 1)[1], gen1.headers["etag"], body["id"], body["sequence_token"])


def _substitute(text: str, request: Fuzzed, live: Live) -> str:
    gen2 = request.mount.generation is Generation.GEN2
    return (
        text.replace(LIVE_ID, live.gen2_id if gen2 else live.gen1_id)
        .replace(OTHER_ID, live.gen1_id if gen2 else live.gen2_id)
        .replace(LIVE_ETAG, live.gen1_etag)
        .replace(LIVE_TOKEN, live.gen2_token)
    )


def _wire(request: Fuzzed, target: Target, live: Live) -> bytes:
    """The request as bytes: request line, headers (Host first unless fuzzed), framing, body."""
    body = _substitute(request.body.decode("latin-1"), request, live).encode("latin-1")
    headers = [(name, _substitute(value, request, live)) for name, value in request.headers]
    if not any(name.lower() == "host" for name, _ in headers):
        headers.insert(0, ("Host", f"127.0.0.1:{target.port}"))
    if not any(name.lower() == "connection" for name, _ in headers):
        headers.append(("Connection", "close"))
    if request.framing == "exact":
        headers.append(("Content-Length", str(len(body))))
    elif request.framing == "none":
        body = b""
    elif request.framing == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
        chunks = [body[i : i + 1000] for i in range(0, len(body), 1000)]
        body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"
    elif request.framing == "short":
        headers.append(("Content-Length", str(len(body) - 1)))
    elif request.framing == "long":
        headers.append(("Content-Length", str(len(body) + 10)))
    else:
        headers.append(("Content-Length", "-1" if len(body) % 2 else "abc"))
        headers.append(("Content-Length", str(len(body))))
    target_text = _substitute(request.target, request, live)
    if request.absolute:
        target_text = f"http://elsewhere.example{target_text}"
    head = (
        f"{request.method} {target_text} {request.version}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n"
    )
    return head.encode("utf-8" if request.raw_target else "latin-1", "surrogatepass") + body


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def _send(port: int, wire: bytes, method: str, half_close: bool) -> Answer | None:
    """Send ``wire`` on a new connection and parse the first answer (``None``: no answer).

    With ``half_close`` our side is shut after sending (for a Content-Length longer than the body: the server
    then sees the end of the stream instead of waiting for the rest). Otherwise it stays open, as a client's
    does: uvicorn takes a half-close for a disconnect and drops an answer still being computed. The answer is
    read by its Content-Length (a fuzzed ``Connection`` header may keep the connection open), and a 101 by its
    head alone (the WebSocket then stays open until we close it).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT_S) as sock:
        with contextlib.suppress(OSError):  # the server may answer and close before reading everything
            sock.sendall(wire)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        received = bytearray()
        answer: Answer | None = None
        with contextlib.suppress(ConnectionResetError):
            while answer is None and (chunk := sock.recv(65536)):
                received += chunk
                answer = _parse_answer(bytes(received), method)
    if answer is None:
        # Nothing, or only the interim answer to "Expect: 100-continue" before the server saw our side close.
        assert received in (b"", b"HTTP/1.1 100 Continue\r\n\r\n"), f"incomplete answer: {bytes(received)[:300]!r}"
    return answer


def _parse_answer(received: bytes, method: str) -> Answer | None:
    """The first answer in ``received``, or ``None`` while it is incomplete."""
    head, separator, rest = received.partition(b"\r\n\r\n")
    if not separator:
        return None
    if head.startswith(b"HTTP/1.1 100 "):
        # The interim answer to "Expect: 100-continue"; the answer follows.
        return _parse_answer(rest, method)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    status = int(status_line.split(" ")[1])
    if method == "HEAD" or status in (101, 204, 304):
        return Answer(status, headers, b"")
    length = int(headers["content-length"])
    return Answer(status, headers, rest[:length]) if len(rest) >= length else None


def _check(request: Fuzzed, answer: Answer | None) -> None:
    if answer is None:
        # Only a request the server was still reading when our side closed can go unanswered.
        assert request.framing == "long" or request.broken, "no answer to a well-formed request"
        return
    if answer.status == 101:
        # A WebSocket accepted: only ever for a request that asked for one.
        assert any(name == "Sec-WebSocket-Key" for name, _ in request.headers), request
        return
    if "cache-control" not in answer.headers:
        # Every answer of the app carries Cache-Control; this one is uvicorn's refusal of an unparseable request.
        assert (answer.status, answer.body) in ((400, UVICORN_BAD_REQUEST), (400, b"")), answer
        assert request.broken, "uvicorn refused a well-formed request"
        return
    assert answer.status < 500, f"{answer.status} {answer.body[:300]!r}"
    if answer.status == 304:
        assert answer.body == b""
    if answer.status == 201 and request.method != "HEAD":
        # A Gen-1 session URL, built from Host or forwarding headers: one a client can use.
        url = urlsplit(json.loads(answer.body)["url"])
        assert url.scheme in ("http", "https") and url.hostname, url
        assert url.port is None or 0 < url.port, url  # .port raises for a port out of range
    if 400 <= answer.status < 500:
        assert answer.headers.get("content-type") == "application/json", answer.headers
        if answer.status == 405:
            assert answer.headers.get("allow"), answer.headers
        if request.method != "HEAD":
            error = json.loads(answer.body)
            assert isinstance(error, dict), error
            assert isinstance(error.get("errcode"), str), error
            assert isinstance(error.get("error"), str), error


def _assert_no_crash_logged(target: Target) -> None:
    log = target.log_text()
    for sign in ("Traceback", "Exception in ASGI application", "unexpected error"):
        assert sign not in log, log[-5000:]
    assert target.process.poll() is None, "the server exited"


def _fuzz(target: Target) -> None:
    with httpx.Client(base_url=target.url, timeout=ANSWER_TIMEOUT_S) as client:

        @FUZZ_SETTINGS
        @seed(int(SEED or 0))
        @given(request=requests())
        def run(request: Fuzzed) -> None:
            live = _live_sessions(client, target)
            wire = _wire(request, target, live)
            _check(request, _send(target.port, wire, request.method, half_close=request.framing == "long"))

        run()
    _assert_no_crash_logged(target)


# -- the suites ----------------------------------------------------------------------------------------------


def test_fuzz_memory_store(memory_server: Target) -> None:
    _fuzz(memory_server)


def test_fuzz_redis_two_workers(redis_workers_server: Target) -> None:
    _fuzz(redis_workers_server)


def test_fuzz_authenticated_policy(authenticated_server: Target) -> None:
    _fuzz(authenticated_server)


authority_text = st.text(st.sampled_from("az09.-:[]@%_~!$&'()*+,;= /?#é"), max_size=25)
authorities = st.one_of(
    authority_text,
    st.builds(lambda host, port: f"{host}:{port}", st.sampled_from(["x", "[::1]", "1.2.3.4"]), st.integers(0, 10**6)),
)


@st.composite
def url_headers(draw: st.DrawFn) -> list[tuple[str, str]]:
    """Host and forwarding headers for a Gen-1 create, whose answer is a URL built from them."""
    headers = [("Host", draw(authorities))] if draw(st.booleans()) else []
    if draw(st.booleans()):
        headers.append(("X-Forwarded-Host", draw(authorities)))
    if draw(st.booleans()):
        headers.append(
            ("X-Forwarded-Proto", draw(st.sampled_from(["https", "http", "HTTPS", "ftp", "", "https, http"])))
        )
    if draw(st.booleans()):
        params = draw(st.lists(st.tuples(st.sampled_from(["host", "proto", "for"]), authorities), max_size=3))
        headers.append(("Forwarded", ";".join(f"{name}={value}" for name, value in params)))
    return headers


def _fuzz_session_urls(target: Target) -> None:
    @FUZZ_SETTINGS
    @seed(int(SEED or 0))
    @given(headers=url_headers())
    def run(headers: list[tuple[str, str]]) -> None:
        request = Fuzzed("POST", MOUNTS[0], GEN1_PATH, [("Content-Type", "text/plain"), *headers], b"", "exact", False)
        answer = _send(target.port, _wire(request, target, Live("", "", "", "")), "POST", half_close=False)
        _check(request, answer)
        assert answer is not None and answer.status in (201, 400), answer

    run()
    _assert_no_crash_logged(target)


def test_fuzz_session_urls_from_x_forwarded(memory_server: Target) -> None:
    """The URL of a Gen-1 create comes from Host or a trusted proxy's headers: a usable one, or a 400."""
    _fuzz_session_urls(memory_server)


def test_fuzz_session_urls_from_forwarded(redis_workers_server: Target) -> None:
    _fuzz_session_urls(redis_workers_server)


def test_every_mount_is_fuzzed() -> None:
    """The strategy draws from the whole route table, so a route added there is fuzzed without a change here."""
    seen: set[str] = set()

    @settings(max_examples=300, derandomize=True, database=None, deadline=None)
    @given(drawn=paths())
    def collect(drawn: tuple[Mount, str, str]) -> None:
        seen.add(drawn[0].prefix)

    collect()
    assert seen == {mount.prefix for mount in MOUNTS}
