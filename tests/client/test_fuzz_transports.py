"""A hostile rendezvous server gets only the transports' documented errors out of them, never a crash.

Every transport operation of both generations (create, join, send, receive, receive_pending, delete) and the
discovery calls run against answers drawn by hypothesis: any status, hostile headers (``ETag``, ``Expires`` and
``Date``, ``Content-Type``, ``Content-Encoding``, ``Location``, ``Retry-After``, ``X-Qrlink-Push``) and hostile
bodies (random bytes, JSON nested far deeper than the parser's stack, ``\\ud800`` escapes that decode to lone
surrogates, integers of hundreds of digits, ``NaN``, wrong JSON types, near-valid answers with one field
poisoned). The frames of the push extension's WebSocket watch are fuzzed the same way, through a stand-in for
the connection. The test asserts only that what comes out is a result or one of the errors listed for that
entry point in :data:`DOCUMENTED` (and docs/client-transports.md, "Hostile servers and peers").

The server here is an ``httpx.MockTransport``, on purpose: the point is the exact bytes of each answer, and no
real server (ours, Synapse) can be made to send a lone surrogate or a 400-digit ``expires_in_ms``. What the
transports do against real servers is tested in ``test_transport_*.py``.

The three escapes a long fuzz run found (``RecursionError``, ``UnicodeEncodeError``, ``OverflowError``) each have
a direct regression test at the end.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qrlink_client import discovery
from qrlink_client.discovery import discover_gen1_rendezvous, discover_gen2, well_known_base_url
from qrlink_client.transport import (
    ConcurrentWrite,
    CreateNotAvailable,
    Gen1Transport,
    Gen2Transport,
    PayloadTooLarge,
    PushSupport,
    ReceiveTimeout,
    RendezvousProtocolError,
    RendezvousUnavailable,
    RetryPolicy,
    SessionExpired,
    SessionNotFound,
    TransportOptions,
)
from qrlink_client.transport.push import Watch

BASE_URL = "https://hs.test"
GEN1_CREATE = f"{BASE_URL}/_matrix/client/unstable/org.matrix.msc4108/rendezvous"
GEN1_SESSION = f"{GEN1_CREATE}/abc"
# No WebSocket: a fuzzed X-Qrlink-Push header must not send the test to the network. Long-poll stays on.
OPTIONS = TransportOptions(
    poll_interval=0.005,
    long_poll_wait=0.06,
    websocket=False,
    retry=RetryPolicy(attempts=2, initial_delay=0.0, max_delay=0.0, jitter=0.0),
)
RECEIVE_TIMEOUT = 0.03
EXAMPLE_TIMEOUT = 5.0  # a hang (a loop the server can keep going) fails the example

_SESSION = (SessionExpired, SessionNotFound, RendezvousUnavailable, RendezvousProtocolError)

DOCUMENTED: dict[str, tuple[type[Exception], ...]] = {
    "gen1.create": (CreateNotAvailable, PayloadTooLarge, RendezvousUnavailable, RendezvousProtocolError),
    "gen1.send": (ConcurrentWrite, PayloadTooLarge, *_SESSION),
    "gen1.receive": (ReceiveTimeout, *_SESSION),
    "gen1.receive_pending": _SESSION,
    "gen1.delete": (RendezvousUnavailable, RendezvousProtocolError),
    "gen2.create": (CreateNotAvailable, PayloadTooLarge, RendezvousUnavailable, RendezvousProtocolError),
    "gen2.join": _SESSION,
    "gen2.send": (ConcurrentWrite, PayloadTooLarge, *_SESSION),
    "gen2.receive": (ReceiveTimeout, *_SESSION),
    "gen2.receive_pending": _SESSION,
    "gen2.delete": (RendezvousUnavailable, RendezvousProtocolError),
    "discover_gen2": (CreateNotAvailable, RendezvousUnavailable, RendezvousProtocolError),
    "discover_gen1_rendezvous": (discovery.RendezvousUnavailable,),
    "well_known_base_url": (),
}
"""The errors each entry point may raise at a hostile server, as docs/client-transports.md lists them."""


# --- the hostile server -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def response(self) -> httpx.Response:
        return httpx.Response(self.status, headers=self.headers, content=self.body)


def deep_json(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    if kind == "object":
        return b'{"a":' * depth + b"1" + b"}" * depth
    # A near-valid answer whose one field is nested too deep.
    return b'{"sequence_token":"1","data":' + b"[" * depth + b"]" * depth + b"}"


BIG_INTS = st.one_of(
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.integers(min_value=-(10**400), max_value=-(10**300)),
    st.sampled_from([2**63, 2**64, 10**308, 10**309, -1, 0]),
)
SURROGATE_TEXT = st.text(alphabet=st.characters(codec=None, min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1)
HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    SURROGATE_TEXT,
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=5), SURROGATE_TEXT, st.text(max_size=5)),
    st.text(min_size=250, max_size=300),
    st.sampled_from(["", "1", " ", "http://[::1", "ftp://x/", "https://h.test/\x00", "é", "²"]),
)
SCALARS = st.one_of(st.none(), st.booleans(), BIG_INTS, st.floats(), HOSTILE_TEXT)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
FIELDS = (
    *("id", "sequence_token", "expires_in_ms", "data", "url", "create_available", "errcode", "retry_after_ms"),
    *("org.matrix.msc4108.errcode", "m.homeserver", "unstable_features", "io.qrlink.push"),
)


def _near_valid(fields: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "abc",
        "sequence_token": "2",
        "expires_in_ms": 120000,
        "data": "payload",
        "url": GEN1_SESSION,
        "create_available": True,
        "m.homeserver": {"base_url": BASE_URL},
        "unstable_features": {"org.matrix.msc4108": True},
    }
    body.update(fields)
    return body


def _dumps(value: Any) -> bytes:
    # ensure_ascii (the default) writes a lone surrogate as a \ud800 escape; allow_nan writes NaN/Infinity.
    return json.dumps(value).encode()


BODIES = st.one_of(
    st.binary(max_size=64),
    st.builds(
        deep_json, st.integers(min_value=2_000, max_value=200_000), st.sampled_from(["array", "object", "field"])
    ),
    st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=4).map(_near_valid).map(_dumps),
    st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=4).map(_dumps),
    VALUES.map(_dumps),
    st.sampled_from(
        [
            b"",
            b"NaN",
            b"1e400",
            b'{"expires_in_ms": 1e400}',
            b'"\\ud800"',
            b"{",
            b"null",
            b'{"sequence_token": "\\udfff", "data": ""}',
            b'{"id": "\\ud800\\u0000", "sequence_token": "1"}',
            b'{"retry_after_ms": ' + b"9" * 400 + b"}",
            b'{"expires_in_ms": ' + b"9" * 5000 + b"}",
        ]
    ),
)

HTTP_DATES = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40).map(lambda t: _formatdate(t)),
    st.sampled_from(
        [
            "Fri, 01 Jan 99999999999999999999 00:00:00 GMT",
            "Fri, 01 Jan 2026 00:00:00 +99999999999999999999",
            "Fri, 31 Dec 9999 23:59:59 -2359",
            "Mon, 01 Jan 0001 00:00:00 +2359",
            "Fri, 01 Jan 10000 00:00:00 GMT",
            "0",
            "",
            "Thu, 01 Jan 1970 00:00:00 GMT",
        ]
    ),
    st.text(max_size=30),
)


def _formatdate(timestamp: int) -> str:
    try:
        return email.utils.formatdate(timestamp, usegmt=True)
    except (OverflowError, ValueError, OSError):
        return f"Fri, 01 Jan {timestamp} 00:00:00 GMT"


def _header_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")


HEADER_VALUES: dict[bytes, st.SearchStrategy[Any]] = {
    b"etag": st.one_of(st.sampled_from(['"1"', '"2"', 'W/"3"', "4"]), st.binary(max_size=12), HOSTILE_TEXT),
    b"expires": HTTP_DATES,
    b"date": HTTP_DATES,
    b"content-type": st.one_of(
        st.sampled_from(["text/plain", "text/plain; charset=utf-8", "application/json", "TEXT/PLAIN;;"]),
        st.binary(max_size=20),
    ),
    b"content-encoding": st.sampled_from(["gzip", "br", "deflate", "zstd", "identity", "x-unknown", "gzip, gzip"]),
    b"location": st.one_of(st.sampled_from([GEN1_CREATE, "/other", "http://[::1", "//", "ftp://x/"]), HOSTILE_TEXT),
    b"retry-after": st.one_of(
        st.sampled_from(["0", "1", "²", "9" * 30, "9" * 5000, "-1", "Fri, 01 Jan 2100"]), st.text(max_size=8)
    ),
    b"x-qrlink-push": st.one_of(
        st.builds(lambda n: f"long-poll; max-wait-ms={n}", st.one_of(BIG_INTS, st.sampled_from(["²", "9" * 5000]))),
        st.text(max_size=30),
    ),
}

HEADERS = st.lists(
    st.sampled_from(sorted(HEADER_VALUES)).flatmap(
        lambda name: HEADER_VALUES[name].map(lambda value: (name, _header_bytes(value)))
    ),
    max_size=5,
)
STATUSES = st.one_of(
    st.sampled_from([200, 201, 202, 204, 304, 307, 400, 401, 403, 404, 405, 409, 412, 413, 429, 500, 503]),
    st.integers(min_value=100, max_value=599),
)
ANSWERS = st.builds(Answer, STATUSES, HEADERS, BODIES)
SCRIPTS = st.lists(ANSWERS, min_size=1, max_size=4)


def server(script: Sequence[Answer], prefix: Sequence[httpx.Response] = ()) -> httpx.MockTransport:
    """Answers the canned ``prefix`` first, then the fuzzed ``script`` over and over (or the last of ``prefix``
    again, without a script)."""
    calls = 0

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls <= len(prefix) or not script:
            return prefix[min(calls, len(prefix)) - 1]
        return script[(calls - len(prefix) - 1) % len(script)].response()

    return httpx.MockTransport(handle)


# --- the operations -----------------------------------------------------------------------------------------

Op = Callable[[httpx.AsyncClient], Awaitable[object]]

GEN2_JOINED = httpx.Response(200, json={"data": "", "sequence_token": "1", "expires_in_ms": 120000})


async def _gen1_create(http: httpx.AsyncClient) -> object:
    return await Gen1Transport.create(http, GEN1_CREATE, options=OPTIONS)


async def _gen1_send(http: httpx.AsyncClient) -> object:
    await Gen1Transport(http, GEN1_SESSION, etag='"1"', options=OPTIONS).send("hello")
    return None


async def _gen1_join_send(http: httpx.AsyncClient) -> object:
    # The joiner learns the ETag with a GET first: that answer is fuzzed too.
    await (await Gen1Transport.join(http, GEN1_SESSION, options=OPTIONS)).send("hello")
    return None


async def _gen1_receive(http: httpx.AsyncClient) -> object:
    return await Gen1Transport(http, GEN1_SESSION, etag='"1"', options=OPTIONS).receive(timeout=RECEIVE_TIMEOUT)


async def _gen1_pending(http: httpx.AsyncClient) -> object:
    return await Gen1Transport(http, GEN1_SESSION, etag='"1"', options=OPTIONS).receive_pending()


async def _gen1_delete(http: httpx.AsyncClient) -> object:
    await Gen1Transport(http, GEN1_SESSION, options=OPTIONS).delete()
    return None


async def _gen2_create(http: httpx.AsyncClient) -> object:
    return await Gen2Transport.create(http, BASE_URL, options=OPTIONS)


async def _gen2_joined(http: httpx.AsyncClient) -> Gen2Transport:
    return await Gen2Transport.join(http, BASE_URL, "abc", options=OPTIONS)


async def _gen2_send(http: httpx.AsyncClient) -> object:
    await (await _gen2_joined(http)).send("hello")
    return None


async def _gen2_receive(http: httpx.AsyncClient) -> object:
    return await (await _gen2_joined(http)).receive(timeout=RECEIVE_TIMEOUT)


async def _gen2_pending(http: httpx.AsyncClient) -> object:
    return await (await _gen2_joined(http)).receive_pending()


async def _gen2_delete(http: httpx.AsyncClient) -> object:
    await (await _gen2_joined(http)).delete()
    return None


# (entry point, operation, canned answers that come before the fuzzed ones)
OPERATIONS: list[tuple[str, Op, tuple[httpx.Response, ...]]] = [
    ("gen1.create", _gen1_create, ()),
    ("gen1.send", _gen1_send, ()),
    ("gen1.send", _gen1_join_send, ()),
    ("gen1.receive", _gen1_receive, ()),
    ("gen1.receive_pending", _gen1_pending, ()),
    ("gen1.delete", _gen1_delete, ()),
    ("gen2.create", _gen2_create, ()),
    ("gen2.join", _gen2_joined, ()),
    ("gen2.send", _gen2_send, (GEN2_JOINED,)),
    ("gen2.receive", _gen2_receive, (GEN2_JOINED,)),
    ("gen2.receive_pending", _gen2_pending, (GEN2_JOINED,)),
    ("gen2.delete", _gen2_delete, (GEN2_JOINED,)),
    ("discover_gen2", lambda http: discover_gen2(http, BASE_URL, "token", options=OPTIONS), ()),
    ("discover_gen1_rendezvous", lambda http: discover_gen1_rendezvous(http, BASE_URL), ()),
    ("well_known_base_url", lambda http: well_known_base_url(http, "hs.test"), ()),
]


async def run(op: Op, transport: httpx.MockTransport) -> object:
    async with asyncio.timeout(EXAMPLE_TIMEOUT), httpx.AsyncClient(transport=transport) as http:
        return await op(http)


def outcome(name: str, op: Op, transport: httpx.MockTransport) -> BaseException | None:
    """Run ``op``; ``None`` if it returned, the exception if it raised one of ``name``'s documented errors."""
    try:
        asyncio.run(run(op, transport))
    except DOCUMENTED[name] as error:
        return error
    return None


# --- the fuzz test ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "op", "prefix"), OPERATIONS, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(OPERATIONS)]
)
@settings(max_examples=150, deadline=3000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(script=SCRIPTS)
def test_hostile_answers_give_only_documented_errors(
    name: str, op: Op, prefix: tuple[httpx.Response, ...], script: list[Answer]
) -> None:
    error = outcome(name, op, server(script, prefix))
    if error is not None:
        # Messages never carry what the server sent (payloads, tokens, ids): at most a short, fixed text.
        assert "\ud800" not in str(error)


# --- WebSocket watch frames ---------------------------------------------------------------------------------


class FrameSource:
    """Stands in for the watch's WebSocket connection: yields the fuzzed frames, then nothing more."""

    def __init__(self, frames: Sequence[str | bytes]) -> None:
        self._frames = iter(frames)

    async def recv(self) -> str | bytes:
        for frame in self._frames:
            return frame
        await asyncio.sleep(EXAMPLE_TIMEOUT)
        raise AssertionError("the receive timeout should have ended the wait")

    async def close(self) -> None:
        return None


def _frame(tag_field: str) -> st.SearchStrategy[str | bytes]:
    near_valid = st.fixed_dictionaries({tag_field: st.one_of(st.just('"2"'), VALUES), "data": VALUES})
    return st.one_of(
        near_valid.map(json.dumps),
        st.builds(deep_json, st.integers(min_value=2_000, max_value=100_000), st.sampled_from(["array", "field"])),
        st.binary(max_size=40),
        VALUES.map(json.dumps),
    )


@pytest.mark.parametrize("generation", [1, 2])
@settings(max_examples=100, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_watch_frames_give_only_documented_errors(generation: int, data: st.DataObject) -> None:
    frames = data.draw(st.lists(_frame("etag" if generation == 1 else "sequence_token"), min_size=1, max_size=3))
    options = TransportOptions(poll_interval=0.005)

    async def receive(http: httpx.AsyncClient) -> object:
        transport: Gen1Transport | Gen2Transport
        if generation == 1:
            transport = Gen1Transport(http, GEN1_SESSION, etag='"1"', options=options)
        else:
            transport = Gen2Transport(http, BASE_URL, "abc", options=options)
            transport._commit_write("1")
        transport._push = PushSupport(long_poll=False, max_wait_ms=None, websocket=True)
        transport._watch = Watch("ws://rendezvous.test/watch", open_timeout=1.0)
        transport._watch._conn = FrameSource(frames)  # type: ignore[assignment]
        return await transport.receive(timeout=RECEIVE_TIMEOUT)

    outcome(f"gen{generation}.receive", receive, _only(httpx.Response(599)))


# --- regressions: the three escapes the long fuzz run found ---------------------------------------------------


def _only(answer: httpx.Response) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: answer)


@pytest.mark.parametrize("kind", ["array", "object", "field"])
@pytest.mark.parametrize("name", ["gen2.create", "gen1.create", "gen2.join", "discover_gen2"])
def test_deeply_nested_json_is_a_protocol_error(name: str, kind: str) -> None:
    # Was RecursionError out of json.loads.
    ops = {n: op for n, op, prefix in OPERATIONS if not prefix}
    answer = httpx.Response(201 if "create" in name else 200, content=deep_json(100_000, kind))
    error = outcome(name, ops[name], _only(answer))
    assert isinstance(error, RendezvousProtocolError)


def test_deeply_nested_error_body_keeps_the_status_error() -> None:
    # The errcode reader (and the Retry-After reader on 5xx) met the same RecursionError.
    answer = httpx.Response(403, content=deep_json(100_000, "object"))
    error = outcome("gen2.create", _gen2_create, _only(answer))
    assert isinstance(error, CreateNotAvailable) and error.errcode is None
    answer = httpx.Response(503, content=deep_json(100_000, "array"))
    assert isinstance(outcome("gen2.create", _gen2_create, _only(answer)), RendezvousUnavailable)


@pytest.mark.parametrize(
    "body",
    [
        {"id": "ab\ud800", "sequence_token": "1", "expires_in_ms": 1000},
        {"id": "abc", "sequence_token": "\udfff", "expires_in_ms": 1000},
    ],
    ids=["id", "sequence_token"],
)
def test_lone_surrogates_in_create_answer_are_a_protocol_error(body: dict[str, Any]) -> None:
    # Was UnicodeEncodeError when the id or token was measured, quoted into the URL or put in the next PUT.
    error = outcome("gen2.create", _gen2_create, _only(httpx.Response(201, content=_dumps(body))))
    assert isinstance(error, RendezvousProtocolError)


def test_lone_surrogate_in_received_sequence_token_is_a_protocol_error() -> None:
    answer = httpx.Response(200, content=b'{"data": "x", "sequence_token": "2\\ud800", "expires_in_ms": 1000}')
    error = outcome("gen2.receive", _gen2_receive, server([], [GEN2_JOINED, answer]))
    assert isinstance(error, RendezvousProtocolError)


def test_lone_surrogate_in_base_url_is_a_protocol_error() -> None:
    async def join(http: httpx.AsyncClient) -> object:
        return await Gen2Transport.join(http, "https://hs.test/\ud800", "abc", options=OPTIONS)

    error = outcome("gen2.join", join, _only(GEN2_JOINED))
    assert isinstance(error, RendezvousProtocolError)


def test_non_ascii_etag_is_a_protocol_error() -> None:
    # Echoed in If-None-Match, a non-ASCII ETag was a UnicodeEncodeError in httpx's header encoding.
    answer = httpx.Response(200, headers=[(b"etag", b"\xc3\xa9"), (b"content-type", b"text/plain")], content=b"x")
    error = outcome("gen1.receive", _gen1_receive, _only(answer))
    assert isinstance(error, RendezvousProtocolError)


@pytest.mark.parametrize("expires_in_ms", [10**400, 2**1024, 10**308 * 1001], ids=["1e400", "2^1024", "1.001e311"])
def test_huge_expires_in_ms_is_clamped(expires_in_ms: int) -> None:
    # Was OverflowError converting the milliseconds to float seconds.
    body = b'{"id": "abc", "sequence_token": "1", "expires_in_ms": %d}' % expires_in_ms

    async def create(http: httpx.AsyncClient) -> object:
        transport = await Gen2Transport.create(http, BASE_URL, options=OPTIONS)
        return transport.expires_in

    async def go() -> object:
        async with httpx.AsyncClient(transport=_only(httpx.Response(201, content=body))) as http:
            return await create(http)

    expires_in = asyncio.run(go())
    assert isinstance(expires_in, float) and 3600 < expires_in <= 24 * 3600


@pytest.mark.parametrize(
    ("expires", "date"),
    [
        ("Fri, 01 Jan 99999999999999999999 00:00:00 GMT", "Mon, 07 Dec 2026 09:00:00 GMT"),
        ("Mon, 07 Dec 2026 09:00:00 GMT", "Fri, 01 Jan 99999999999999999999 00:00:00 GMT"),
        ("Fri, 01 Jan 2027 00:00:00 +99999999999999999999", "Mon, 07 Dec 2026 09:00:00 GMT"),
        ("Fri, 31 Dec 9999 23:59:59 -2359", "Mon, 01 Jan 0001 00:00:00 +2359"),
    ],
    ids=["far-future", "far-past-date", "huge-offset", "calendar-ends"],
)
def test_expires_far_from_date_does_not_overflow(expires: str, date: str) -> None:
    # Was OverflowError out of the HTTP-date parser (a year or offset beyond a C long).
    answer = httpx.Response(201, headers={"ETag": '"1"', "Expires": expires, "Date": date}, json={"url": GEN1_SESSION})

    async def go() -> float | None:
        async with httpx.AsyncClient(transport=_only(answer)) as http:
            return (await Gen1Transport.create(http, GEN1_CREATE, options=OPTIONS)).expires_in

    expires_in = asyncio.run(go())
    assert expires_in is None or 0 <= expires_in <= 24 * 3600


@pytest.mark.parametrize(
    "header", ["²", "9" * 5000, "long-poll; max-wait-ms=" + "9" * 400], ids=["superscript", "5000-digits", "400-digits"]
)
def test_hostile_number_headers_are_ignored_or_bounded(header: str) -> None:
    # Unicode digits passed str.isdigit() and then failed int()/float(); 400 digits overflowed a float.
    value = header.encode("latin-1")  # b"\xb2" reads back as "²"
    answers = [
        httpx.Response(503, headers=[(b"retry-after", value)]),
        httpx.Response(200, headers=[(b"x-qrlink-push", value), (b"etag", b'"1"'), (b"content-type", b"text/plain")]),
    ]
    error = outcome("gen1.receive", _gen1_receive, server([], answers))
    assert error is None or isinstance(error, ReceiveTimeout)
