"""The push-delivery extension on the real server: long-polls, the WebSocket watch, advertisement, the cap.

Servers run under real uvicorn on real sockets; the maximum wait is lowered to 2 s so that deadlines and the
cap are observable quickly.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from rendezvous.store import MemoryStore
from tests.server.helpers import GEN1, GEN2, TEXT, gen1_put, gen2_session
from tests.server.test_push_support import NO_LIMITS, ParkedRequest, cli_server, scrape
from tests.support.deadlines import eventually
from tests.support.server import serve_cli, serve_settings

MAX_WAIT_S = 2
PUSH_ENV = {**NO_LIMITS, "RENDEZVOUS_PUSH_MAX_WAIT_SECONDS": str(MAX_WAIT_S)}


@pytest.fixture(scope="module")
def push_server() -> Iterator[str]:
    with serve_cli(PUSH_ENV) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def no_push_server() -> Iterator[str]:
    with serve_cli({**NO_LIMITS, "RENDEZVOUS_PUSH_ENABLED": "false"}) as base_url:
        yield base_url


@pytest.fixture
async def http(push_server: str) -> AsyncIterator[httpx.AsyncClient]:
    """Overrides the suite's ``http``: these tests speak raw HTTP to one server, so the client is bound to it
    (``base_url``) and the requests name only paths."""
    async with httpx.AsyncClient(base_url=push_server, timeout=10) as client:
        yield client


def _txn() -> str:
    return secrets.token_hex(8)


def _ws(base_url: str, path: str) -> str:
    return base_url.replace("http://", "ws://") + path


async def _put2(http: httpx.AsyncClient, session_id: str, token: str, data: str) -> str:
    response = await http.put(f"{GEN2}/{session_id}/{_txn()}", json={"sequence_token": token, "data": data})
    assert response.status_code == 200, response.text
    token = response.json()["sequence_token"]
    assert isinstance(token, str)
    return token


# -- both generations' long-polls ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LongPoll:
    """How one generation asks the server to hold a read until its session changes, and what it answers."""

    number: int
    #: A held read whose session did not change ends with the unchanged state (Gen-2) or 304 (Gen-1).
    unchanged_status: int

    def __str__(self) -> str:
        return f"gen{self.number}"

    async def create(self, http: httpx.AsyncClient) -> tuple[str, str]:
        """A new empty session: its URL (or path) and its version (sequence token, ETag)."""
        if self.number == 1:
            created = await http.post(GEN1, content=b"", headers=TEXT)
            return created.json()["url"], created.headers["etag"]
        session = (await http.post(GEN2, json={"data": ""})).json()
        return f"{GEN2}/{session['id']}", session["sequence_token"]

    async def write(self, http: httpx.AsyncClient, url: str, version: str, data: str) -> str:
        """Write ``data`` over ``version``: the new version."""
        if self.number == 1:
            put = await http.put(url, content=data.encode(), headers={**TEXT, "If-Match": version})
            return put.headers["etag"]
        return await _put2(http, url.rsplit("/", 1)[1], version, data)

    async def hold(
        self, http: httpx.AsyncClient, url: str, version: str, seconds: int, *, other_preferences: str = ""
    ) -> httpx.Response:
        """Read ``url``, asking the server to wait up to ``seconds`` for a version other than ``version``:
        ``If-None-Match`` + ``Prefer: [other_preferences, ]wait=N`` (Gen-1), ``since`` + ``timeout_ms`` (Gen-2)."""
        if self.number == 1:
            prefer = f"{other_preferences}, wait={seconds}" if other_preferences else f"wait={seconds}"
            return await http.get(url, headers={"If-None-Match": version, "Prefer": prefer})
        return await http.get(url, params={"since": version, "timeout_ms": str(seconds * 1000)})

    def version(self, response: httpx.Response) -> str:
        """The version a read answered with: the ETag (Gen-1), the sequence token (Gen-2)."""
        if self.number == 1:
            return response.headers["etag"]
        token: str = response.json()["sequence_token"]
        return token

    def data(self, response: httpx.Response) -> str:
        if self.number == 1:
            return response.text
        data: str = response.json()["data"]
        return data


LONG_POLLS = [LongPoll(1, unchanged_status=304), LongPoll(2, unchanged_status=200)]
both_generations = pytest.mark.parametrize("gen", LONG_POLLS, ids=str)


@both_generations
async def test_long_poll_answers_within_100_ms_of_a_write_from_another_client(
    gen: LongPoll, http: httpx.AsyncClient, push_server: str
) -> None:
    url, version = await gen.create(http)
    poll = asyncio.create_task(gen.hold(http, url, version, 10))
    await asyncio.sleep(0.3)
    assert not poll.done()
    async with httpx.AsyncClient(base_url=push_server, timeout=10) as other:
        put_at = time.monotonic()
        new_version = await gen.write(other, url, version, "hello")
    response = await poll
    assert time.monotonic() - put_at < 0.1
    assert response.status_code == 200
    assert gen.version(response) == new_version != version
    assert gen.data(response) == "hello"
    if gen.number == 1:  # a Gen-1 answer is the payload with the usual session headers
        assert response.headers["content-type"] == "text/plain"
        for name in ("expires", "last-modified", "cache-control", "pragma"):
            assert name in response.headers
        assert response.headers["preference-applied"] == f"wait={MAX_WAIT_S}"


@both_generations
async def test_long_poll_wait_is_capped_at_the_server_maximum(gen: LongPoll, http: httpx.AsyncClient) -> None:
    url, version = await gen.create(http)
    started = time.monotonic()
    # Gen-1: the wait is found among other preferences too.
    response = await gen.hold(http, url, version, 3600, other_preferences="respond-async")
    elapsed = time.monotonic() - started
    assert response.status_code == gen.unchanged_status
    assert MAX_WAIT_S - 0.1 <= elapsed < MAX_WAIT_S + 1.5
    if gen.number == 1:  # only Gen-1 has a header that says which wait was applied
        assert response.headers["preference-applied"] == f"wait={MAX_WAIT_S}"


@both_generations
async def test_long_poll_on_a_stale_version_answers_at_once(gen: LongPoll, http: httpx.AsyncClient) -> None:
    url, version = await gen.create(http)
    new_version = await gen.write(http, url, version, "new")
    started = time.monotonic()
    response = await gen.hold(http, url, version, 10)
    assert time.monotonic() - started < 0.5
    assert response.status_code == 200
    assert gen.version(response) == new_version
    assert gen.data(response) == "new"
    assert "preference-applied" not in response.headers


@both_generations
async def test_long_poll_parameters_are_ignored_when_push_is_off(gen: LongPoll, no_push_server: str) -> None:
    async with httpx.AsyncClient(base_url=no_push_server, timeout=10) as client:
        url, version = await gen.create(client)
        started = time.monotonic()
        response = await gen.hold(client, url, version, 5)
        assert time.monotonic() - started < 0.5
        assert response.status_code == gen.unchanged_status
        assert gen.version(response) == version
        assert "preference-applied" not in response.headers


# -- Gen-2 long-poll -----------------------------------------------------------------------------------------


async def test_gen2_long_poll_returns_the_unchanged_state_at_its_deadline(http: httpx.AsyncClient) -> None:
    session = (await http.post(GEN2, json={"data": "same"})).json()
    started = time.monotonic()
    response = await http.get(
        f"{GEN2}/{session['id']}", params={"since": session["sequence_token"], "timeout_ms": "500"}
    )
    elapsed = time.monotonic() - started
    assert 0.45 <= elapsed < 1.5
    assert response.status_code == 200
    body = response.json()
    assert body["sequence_token"] == session["sequence_token"]
    assert body["data"] == "same"
    assert isinstance(body["expires_in_ms"], int)


async def test_gen2_long_poll_with_a_malformed_timeout_is_400(http: httpx.AsyncClient) -> None:
    session = (await http.post(GEN2, json={"data": ""})).json()
    response = await http.get(f"{GEN2}/{session['id']}", params={"since": "1", "timeout_ms": "soon"})
    assert response.status_code == 400
    assert response.json()["errcode"] == "M_INVALID_PARAM"


async def test_gen2_long_poll_on_a_session_deleted_meanwhile_is_404(http: httpx.AsyncClient) -> None:
    session = (await http.post(GEN2, json={"data": ""})).json()
    poll = asyncio.create_task(
        http.get(f"{GEN2}/{session['id']}", params={"since": session["sequence_token"], "timeout_ms": "10000"})
    )
    await asyncio.sleep(0.2)
    assert (await http.delete(f"{GEN2}/{session['id']}")).status_code == 200
    response = await asyncio.wait_for(poll, 1)
    assert response.status_code == 404
    assert response.json()["errcode"] == "M_NOT_FOUND"


# -- Gen-1 long-poll -----------------------------------------------------------------------------------------


async def test_gen1_prefer_wait_answers_304_with_the_usual_headers_at_the_deadline(
    http: httpx.AsyncClient,
) -> None:
    created = await http.post(GEN1, content=b"", headers=TEXT)
    url, etag = created.json()["url"], created.headers["etag"]
    started = time.monotonic()
    response = await http.get(url, headers={"If-None-Match": etag, "Prefer": "wait=1"})
    elapsed = time.monotonic() - started
    assert 0.95 <= elapsed < 2.0
    assert response.status_code == 304
    assert response.headers["etag"] == etag
    for name in ("expires", "last-modified", "cache-control", "pragma", "x-qrlink-push"):
        assert name in response.headers
    assert response.headers["preference-applied"] == "wait=1"


# -- advertisement -------------------------------------------------------------------------------------------


def test_session_answers_of_both_generations_advertise_push(push_server: str) -> None:
    expected = f"long-poll; max-wait-ms={MAX_WAIT_S * 1000}, websocket"
    with httpx.Client(base_url=push_server, timeout=10) as client:
        created = client.post(GEN1, content=b"", headers=TEXT)
        url, etag = created.json()["url"], created.headers["etag"]
        put = gen1_put(client, url, etag, b"x")
        for response in (created, client.get(url), put):
            assert response.headers["x-qrlink-push"] == expected
        session = client.post(GEN2, json={"data": ""})
        sid = session.json()["id"]
        put2 = client.put(f"{GEN2}/{sid}/{_txn()}", json={"sequence_token": "1", "data": "x"})
        for response in (session, client.get(f"{GEN2}/{sid}"), put2):
            assert response.headers["x-qrlink-push"] == expected


def test_push_headers_are_exposed_to_browsers(push_server: str) -> None:
    with httpx.Client(base_url=push_server, timeout=10) as client:
        session = gen2_session(client)
        exposed = client.get(f"{GEN2}/{session['id']}").headers["access-control-expose-headers"]
        names = {name.strip().lower() for name in exposed.split(",")}
        assert {"etag", "x-qrlink-push", "preference-applied"} <= names
        preflight = client.options(f"{GEN2}/{session['id']}", headers={"Access-Control-Request-Method": "GET"})
        assert "prefer" in preflight.headers["access-control-allow-headers"].lower()


def test_gen2_discovery_advertises_push(push_server: str) -> None:
    body = httpx.get(f"{push_server}{GEN2}", timeout=10).json()
    assert body["io.qrlink.push"] == {"long_poll": True, "max_timeout_ms": MAX_WAIT_S * 1000, "websocket": True}


def test_nothing_is_advertised_when_push_is_off(no_push_server: str) -> None:
    with httpx.Client(base_url=no_push_server, timeout=10) as client:
        assert "io.qrlink.push" not in client.get(GEN2).json()
        session = client.post(GEN2, json={"data": ""})
        assert "x-qrlink-push" not in session.headers
        assert "x-qrlink-push" not in client.post(GEN1, content=b"", headers=TEXT).headers


def test_websocket_is_not_advertised_when_switched_off() -> None:
    with serve_settings(push_websocket=False) as base_url:
        with httpx.Client(base_url=base_url, timeout=10) as client:
            assert client.post(GEN1, content=b"", headers=TEXT).headers["x-qrlink-push"] == (
                "long-poll; max-wait-ms=30000"
            )
            assert client.get(GEN2).json()["io.qrlink.push"]["websocket"] is False


# -- WebSocket watch -----------------------------------------------------------------------------------------


async def test_gen2_watch_streams_the_current_revision_then_each_write(http: httpx.AsyncClient) -> None:
    push_server = str(http.base_url).rstrip("/")
    session = (await http.post(GEN2, json={"data": "first"})).json()
    async with connect(_ws(push_server, f"{GEN2}/{session['id']}/watch")) as ws:
        initial = json.loads(await asyncio.wait_for(ws.recv(), 2))
        assert initial == {"sequence_token": session["sequence_token"], "data": "first"}
        token = await _put2(http, session["id"], session["sequence_token"], "second")
        assert json.loads(await asyncio.wait_for(ws.recv(), 2)) == {"sequence_token": token, "data": "second"}
        token = await _put2(http, session["id"], token, "third")
        assert json.loads(await asyncio.wait_for(ws.recv(), 2)) == {"sequence_token": token, "data": "third"}


async def test_gen2_watch_closes_4404_when_the_session_is_deleted(http: httpx.AsyncClient) -> None:
    push_server = str(http.base_url).rstrip("/")
    session = (await http.post(GEN2, json={"data": ""})).json()
    async with connect(_ws(push_server, f"{GEN2}/{session['id']}/watch")) as ws:
        await asyncio.wait_for(ws.recv(), 2)
        await http.delete(f"{GEN2}/{session['id']}")
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 2)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404


async def test_gen1_watch_streams_etags_and_payloads_and_closes_4404_on_delete(http: httpx.AsyncClient) -> None:
    created = await http.post(GEN1, content=b"", headers=TEXT)
    url, etag = created.json()["url"], created.headers["etag"]
    async with connect(url.replace("http://", "ws://") + "/watch") as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 2)) == {"etag": etag, "data": ""}
        put = await http.put(url, content=b"hello", headers={**TEXT, "If-Match": etag})
        assert json.loads(await asyncio.wait_for(ws.recv(), 2)) == {"etag": put.headers["etag"], "data": "hello"}
        await http.delete(url)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 2)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404


async def test_gen1_watch_carries_a_payload_that_is_not_utf8(http: httpx.AsyncClient) -> None:
    created = await http.post(GEN1, content=b"", headers=TEXT)
    url, etag = created.json()["url"], created.headers["etag"]
    payload = b"\xff\xfe not utf-8 \x80"
    async with connect(url.replace("http://", "ws://") + "/watch") as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 2)) == {"etag": etag, "data": ""}
        put = await http.put(url, content=payload, headers={**TEXT, "If-Match": etag})
        frame = json.loads(await asyncio.wait_for(ws.recv(), 2))
        assert frame == {"etag": put.headers["etag"], "data_base64": base64.b64encode(payload).decode()}
        # The watch goes on: the next revision arrives as usual.
        again = await http.put(url, content=b"text", headers={**TEXT, "If-Match": put.headers["etag"]})
        assert json.loads(await asyncio.wait_for(ws.recv(), 2)) == {"etag": again.headers["etag"], "data": "text"}
    # A watch that starts on such a payload gets it first.
    await http.put(url, content=payload, headers={**TEXT, "If-Match": again.headers["etag"]})
    async with connect(url.replace("http://", "ws://") + "/watch") as ws:
        assert base64.b64decode(json.loads(await asyncio.wait_for(ws.recv(), 2))["data_base64"]) == payload


async def test_watch_of_an_unknown_session_closes_4404(push_server: str) -> None:
    async with connect(_ws(push_server, f"{GEN2}/doesnotexist/watch")) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 2)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404


async def test_watch_is_refused_when_push_is_off(no_push_server: str) -> None:
    async with httpx.AsyncClient(base_url=no_push_server) as client:
        session = (await client.post(GEN2, json={"data": ""})).json()
    with pytest.raises(InvalidStatus) as refused:
        async with connect(_ws(no_push_server, f"{GEN2}/{session['id']}/watch")):
            pass
    assert refused.value.response.status_code == 404


async def test_watch_is_rate_limited_like_reads() -> None:
    with serve_settings(session_rate_per_second=0.01, session_burst=2) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as client:
            session = (await client.post(GEN2, json={"data": ""})).json()  # creating uses the other bucket
        async with connect(_ws(base_url, f"{GEN2}/{session['id']}/watch")) as ws:
            await asyncio.wait_for(ws.recv(), 2)
        async with connect(_ws(base_url, f"{GEN2}/{session['id']}/watch")) as ws:
            await asyncio.wait_for(ws.recv(), 2)
        with pytest.raises(InvalidStatus) as refused:
            async with connect(_ws(base_url, f"{GEN2}/{session['id']}/watch")):
                pass
        assert refused.value.response.status_code == 429


# -- waiters: disconnects, the cap ---------------------------------------------------------------------------


async def test_disconnected_long_polls_free_their_waiters_at_once() -> None:
    store = MemoryStore()
    with serve_settings(store=store, create_rate_per_second=0, session_rate_per_second=0) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as client:
            s2 = (await client.post(GEN2, json={"data": ""})).json()
            created = await client.post(GEN1, content=b"", headers=TEXT)
        path1 = created.json()["url"].removeprefix(base_url)
        parked = [
            await ParkedRequest.open(base_url, f"{GEN2}/{s2['id']}?since=1&timeout_ms=30000") for _ in range(10)
        ] + [
            await ParkedRequest.open(base_url, path1, {"If-None-Match": created.headers["etag"], "Prefer": "wait=30"})
            for _ in range(10)
        ]
        await eventually(lambda: store.waiter_count() == 20)
        assert scrape(base_url)[("rendezvous_push_parked", (("kind", "long_poll"),))] == 20
        for request in parked:
            request.abort()
        await eventually(lambda: store.waiter_count() == 0, within=1.0)
        assert scrape(base_url)[("rendezvous_push_parked", (("kind", "long_poll"),))] == 0


async def test_closed_watches_free_their_waiters_at_once() -> None:
    store = MemoryStore()
    with serve_settings(store=store, create_rate_per_second=0, session_rate_per_second=0) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as client:
            session = (await client.post(GEN2, json={"data": ""})).json()
        sockets = [await connect(_ws(base_url, f"{GEN2}/{session['id']}/watch")) for _ in range(5)]
        for ws in sockets:
            await asyncio.wait_for(ws.recv(), 2)
        await eventually(lambda: store.waiter_count() == 5)
        assert scrape(base_url)[("rendezvous_push_parked", (("kind", "websocket"),))] == 5
        for ws in sockets:
            ws.transport.abort()  # no closing handshake: the peer just vanishes
        await eventually(lambda: store.waiter_count() == 0, within=1.0)
        assert scrape(base_url)[("rendezvous_push_parked", (("kind", "websocket"),))] == 0


async def test_long_polls_beyond_the_cap_are_answered_at_once() -> None:
    with serve_settings(push_max_waiters=2, create_rate_per_second=0, session_rate_per_second=0) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            session = (await client.post(GEN2, json={"data": ""})).json()
            path = f"{GEN2}/{session['id']}?since=1&timeout_ms=30000"
            parked = [await ParkedRequest.open(base_url, path) for _ in range(2)]
            await eventually(lambda: scrape(base_url)[("rendezvous_push_parked", (("kind", "long_poll"),))] == 2)
            started = time.monotonic()
            response = await client.get(path)
            assert time.monotonic() - started < 0.5
            assert response.status_code == 200
            assert response.json()["sequence_token"] == "1"
            for request in parked:
                request.abort()


# -- cost of parked long-polls -------------------------------------------------------------------------------


async def test_a_thousand_parked_long_polls_cost_little_memory_and_no_cpu(tmp_path: Path) -> None:
    with cli_server(tmp_path / "server.log", NO_LIMITS) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            session = (await client.post(GEN2, json={"data": ""})).json()
            path = f"{GEN2}/{session['id']}?since=1&timeout_ms=60000"
            # Warm up the code paths (imports, caches) before measuring.
            warm = [await ParkedRequest.open(server.base_url, path) for _ in range(20)]
            for request in warm:
                request.abort()
            await asyncio.sleep(0.5)
            rss_before = server.rss_bytes()
            parked = [await ParkedRequest.open(server.base_url, path) for _ in range(1000)]
            await eventually(
                lambda: scrape(server.base_url)[("rendezvous_push_parked", (("kind", "long_poll"),))] == 1000,
                within=20,
            )
            rss_delta = server.rss_bytes() - rss_before
            cpu_before = server.cpu_seconds()
            await asyncio.sleep(2.0)
            idle_cpu = server.cpu_seconds() - cpu_before
            # All still parked, and all answered promptly by one write.
            put = await client.put(f"{GEN2}/{session['id']}/{_txn()}", json={"sequence_token": "1", "data": "go"})
            assert put.status_code == 200
            statuses = await asyncio.wait_for(asyncio.gather(*(r.status() for r in parked)), 10)
            for request in parked:
                request.abort()
        assert rss_delta < 50 * 1024 * 1024, rss_delta
        assert idle_cpu < 0.5, idle_cpu
        assert statuses == [200] * 1000
