"""Many workers on one Redis: a session created through one worker is read, written, replayed and deleted
through any other.

One port with ``--workers N`` hands each connection to whichever worker accepts it first, so the
deterministic tests run two separate ``rendezvous serve`` processes (A and B) on different ports sharing the
machine's Redis, and address each one on purpose. The fault tests use a throwaway ``redis-server`` that can be
killed and restarted.

The server's Redis key prefix is not configurable (it is always ``rz``), so instead of a private prefix these
tests record every session id they create and delete exactly those keys afterwards; rate limits are off, so
no bucket keys are written.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from rendezvous.protocol import HEALTH_PATH
from tests.support import redis_servers
from tests.support.server import REPO_ROOT, clean_environ, free_port

from .helpers import GEN1, GEN2, TEXT, assert_matrix_error

redis = pytest.importorskip("redis")

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
#: The server's fixed key prefix (RedisStore's default; the server has no setting for it).
KEY_PREFIX = "rz"
WRITERS = 40
STARTUP_TIMEOUT_S = 30.0


@dataclass
class ServerProcess:
    """One ``rendezvous serve`` process and the URL it answers on."""

    process: subprocess.Popen[str]
    url: str

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL by PID: a crash, not a shutdown."""
        if self.alive():
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.communicate(timeout=15)

    def worker_pids(self) -> list[int]:
        """PIDs of the uvicorn worker processes this server spawned (multiprocessing ``spawn_main``)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        workers = []
        for child in children:
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    workers.append(int(child))
        return workers


def _wait_until_up(server: ServerProcess) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not server.alive():
            _, stderr = server.process.communicate(timeout=10)
            raise RuntimeError(f"server exited during startup:\n{stderr}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{server.url}{HEALTH_PATH}", timeout=1).status_code in (200, 503):
                return
        time.sleep(0.05)
    raise TimeoutError(f"server at {server.url} did not come up")


@contextlib.contextmanager
def rendezvous_process(store_url: str, *args: str) -> Iterator[ServerProcess]:
    """``rendezvous serve`` on a free port with ``store_url`` and no rate limits; stopped afterwards."""
    port = free_port()
    env = {
        "RENDEZVOUS_STORE_URL": store_url,
        "RENDEZVOUS_CREATE_RATE_PER_SECOND": "0",
        "RENDEZVOUS_SESSION_RATE_PER_SECOND": "0",
        "RENDEZVOUS_LOG_LEVEL": "warning",
        # Plain conditional GETs of an unchanged session are held 2 s, then 304.
        "RENDEZVOUS_HOLD_MS": "2000",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "rendezvous", "serve", "--host", "127.0.0.1", "--port", str(port), *args],
        env=clean_environ(env),
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = ServerProcess(process, f"http://127.0.0.1:{port}")
    try:
        _wait_until_up(server)
        yield server
    finally:
        if server.alive():
            process.terminate()
            try:
                process.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()


@dataclass
class Ledger:
    """The session ids a test created on the shared Redis, so that exactly their keys are removed."""

    ids: list[str] = field(default_factory=list)

    def gen1(self, response: httpx.Response) -> tuple[str, str]:
        """Record a Gen-1 create answer; the session path and its first ETag."""
        assert response.status_code == 201, response.text
        path = urlsplit(response.json()["url"]).path
        self.ids.append(path.rsplit("/", 1)[1])
        return path, response.headers["etag"]

    def gen2(self, response: httpx.Response) -> dict[str, Any]:
        """Record a Gen-2 create answer; its body."""
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        self.ids.append(body["id"])
        return body

    def remove_keys(self, url: str) -> None:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        try:
            for session_id in self.ids:
                client.delete(*(f"{KEY_PREFIX}:{{{session_id}}}:{kind}" for kind in "sto"))
            if self.ids:
                client.zrem(f"{KEY_PREFIX}:live", *self.ids)
        finally:
            client.close()


@pytest.fixture(scope="module")
def shared_redis() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def ledger(shared_redis: str) -> Iterator[Ledger]:
    record = Ledger()
    yield record
    record.remove_keys(shared_redis)


@pytest.fixture(scope="module")
def pair(shared_redis: str) -> Iterator[tuple[str, str]]:
    """Two separate server processes, A and B, on different ports and one Redis."""
    with rendezvous_process(shared_redis) as a, rendezvous_process(shared_redis) as b:
        yield a.url, b.url


def fresh(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request on its own connection, so a multi-worker port may hand it to any worker."""
    headers = {"Connection": "close", **kwargs.pop("headers", {})}
    return httpx.request(method, url, headers=headers, timeout=10, **kwargs)


# -- one session, two processes: Gen-1 ------------------------------------------------------------------------


def test_gen1_session_created_on_a_is_read_on_b(pair: tuple[str, str], ledger: Ledger) -> None:
    a, b = pair
    path, etag = ledger.gen1(fresh("POST", a + GEN1, content=b"first", headers=TEXT))
    response = fresh("GET", b + path)
    assert response.status_code == 200
    assert response.content == b"first"
    assert response.headers["etag"] == etag
    assert fresh("GET", b + path, headers={"If-None-Match": etag}).status_code == 304


def test_gen1_write_on_b_is_seen_on_a(pair: tuple[str, str], ledger: Ledger) -> None:
    a, b = pair
    path, etag = ledger.gen1(fresh("POST", a + GEN1, headers=TEXT))
    put = fresh("PUT", b + path, content=b"from b", headers={**TEXT, "If-Match": etag})
    assert put.status_code == 202
    response = fresh("GET", a + path, headers={"If-None-Match": etag})
    assert response.status_code == 200
    assert response.content == b"from b"
    assert response.headers["etag"] == put.headers["etag"]


def test_gen1_poll_held_on_a_is_answered_by_a_write_on_b(pair: tuple[str, str], ledger: Ledger) -> None:
    """A plain poll naming the current ETag is held on A; B's write wakes it through Redis, long before hold_ms."""
    a, b = pair
    path, etag = ledger.gen1(fresh("POST", a + GEN1, headers=TEXT))
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        held = pool.submit(fresh, "GET", a + path, headers={"If-None-Match": etag})
        time.sleep(0.5)
        assert not held.done()
        put = fresh("PUT", b + path, content=b"from b", headers={**TEXT, "If-Match": etag})
        response = held.result(timeout=5)
    assert time.monotonic() - started < 1.5
    assert (response.status_code, response.content) == (200, b"from b")
    assert response.headers["etag"] == put.headers["etag"]


def test_gen1_stale_etag_written_on_b_is_refused_after_a_write_on_a(pair: tuple[str, str], ledger: Ledger) -> None:
    a, b = pair
    path, etag = ledger.gen1(fresh("POST", a + GEN1, headers=TEXT))
    assert fresh("PUT", a + path, content=b"from a", headers={**TEXT, "If-Match": etag}).status_code == 202
    stale = fresh("PUT", b + path, content=b"from b", headers={**TEXT, "If-Match": etag})
    assert stale.status_code == 412
    assert fresh("GET", b + path).content == b"from a"


def test_gen1_delete_on_b_ends_the_session_on_a(pair: tuple[str, str], ledger: Ledger) -> None:
    a, b = pair
    path, _ = ledger.gen1(fresh("POST", a + GEN1, headers=TEXT))
    assert fresh("DELETE", b + path).status_code == 204
    assert_matrix_error(fresh("GET", a + path), 404, "M_NOT_FOUND")


# -- one session, two processes: Gen-2 ------------------------------------------------------------------------


def test_gen2_session_created_on_a_is_read_on_b(pair: tuple[str, str], ledger: Ledger) -> None:
    a, b = pair
    session = ledger.gen2(fresh("POST", a + GEN2, json={"data": "first"}))
    body = fresh("GET", f"{b}{GEN2}/{session['id']}").json()
    assert body["data"] == "first"
    assert body["sequence_token"] == session["sequence_token"]


def test_gen2_write_on_b_is_seen_on_a(pair: tuple[str, str], ledger: Ledger) -> None:
    a, b = pair
    session = ledger.gen2(fresh("POST", a + GEN2, json={"data": ""}))
    path = f"{GEN2}/{session['id']}"
    put = fresh("PUT", f"{b}{path}/{secrets.token_urlsafe(16)}", json={"sequence_token": "1", "data": "from b"})
    assert put.status_code == 200
    body = fresh("GET", a + path).json()
    assert body == {**body, "data": "from b", "sequence_token": put.json()["sequence_token"]}


def test_gen2_txn_replayed_on_b_returns_the_answer_recorded_on_a(pair: tuple[str, str], ledger: Ledger) -> None:
    a, b = pair
    session = ledger.gen2(fresh("POST", a + GEN2, json={"data": ""}))
    path = f"{GEN2}/{session['id']}"
    txn = secrets.token_urlsafe(16)
    first = fresh("PUT", f"{a}{path}/{txn}", json={"sequence_token": "1", "data": "one"})
    assert first.json() == {"sequence_token": "2"}
    second = fresh("PUT", f"{a}{path}/{secrets.token_urlsafe(16)}", json={"sequence_token": "2", "data": "two"})
    assert second.json() == {"sequence_token": "3"}
    replay = fresh("PUT", f"{b}{path}/{txn}", json={"sequence_token": "1", "data": "one"})
    assert replay.status_code == 200
    assert replay.json() == {"sequence_token": "2"}
    assert fresh("GET", b + path).json()["data"] == "two"


def test_gen2_replayed_conflict_on_b_is_the_409_recorded_on_a(pair: tuple[str, str], ledger: Ledger) -> None:
    a, b = pair
    session = ledger.gen2(fresh("POST", a + GEN2, json={"data": ""}))
    path = f"{GEN2}/{session['id']}"
    txn = secrets.token_urlsafe(16)
    conflict = fresh("PUT", f"{a}{path}/{txn}", json={"sequence_token": "7", "data": "stale"})
    assert conflict.status_code == 409
    # Token 1 is now current, but the txnId's recorded answer is the 409: no compare-and-swap runs again.
    replay = fresh("PUT", f"{b}{path}/{txn}", json={"sequence_token": "7", "data": "stale"})
    assert_matrix_error(replay, 409, "IO_ELEMENT_MSC4388_CONCURRENT_WRITE")
    assert fresh("GET", a + path).json()["sequence_token"] == "1"


def test_gen2_delete_on_b_ends_the_session_on_a(pair: tuple[str, str], ledger: Ledger) -> None:
    a, b = pair
    session = ledger.gen2(fresh("POST", a + GEN2, json={"data": ""}))
    path = f"{GEN2}/{session['id']}"
    assert fresh("DELETE", b + path).json() == {}
    assert_matrix_error(fresh("GET", a + path), 404, "M_NOT_FOUND")


# -- compare-and-swap races split across the two processes ---------------------------------------------------


async def test_gen1_race_split_across_processes_has_one_winner(pair: tuple[str, str], ledger: Ledger) -> None:
    a, b = pair
    limits = httpx.Limits(max_connections=WRITERS)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        path, etag = ledger.gen1(await client.post(a + GEN1, headers=TEXT))
        bodies = [f"writer-{i}".encode() for i in range(WRITERS)]
        targets = [(a if i % 2 else b) + path for i in range(WRITERS)]
        responses = await asyncio.gather(
            *(
                client.put(url, content=body, headers={**TEXT, "If-Match": etag})
                for url, body in zip(targets, bodies, strict=True)
            )
        )
        statuses = [r.status_code for r in responses]
        assert sorted(set(statuses)) == [202, 412]
        assert statuses.count(202) == 1
        winner = statuses.index(202)
        for base in (a, b):
            stored = await client.get(base + path)
            assert stored.content == bodies[winner]
            assert stored.headers["etag"] == responses[winner].headers["etag"]


async def test_gen2_race_split_across_processes_has_one_winner(pair: tuple[str, str], ledger: Ledger) -> None:
    a, b = pair
    limits = httpx.Limits(max_connections=WRITERS)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        session = ledger.gen2(await client.post(a + GEN2, json={"data": ""}))
        path = f"{GEN2}/{session['id']}"
        data = [f"writer-{i}" for i in range(WRITERS)]
        responses = await asyncio.gather(
            *(
                client.put(
                    f"{a if i % 2 else b}{path}/{secrets.token_urlsafe(12)}",
                    json={"sequence_token": "1", "data": d},
                )
                for i, d in enumerate(data)
            )
        )
        statuses = [r.status_code for r in responses]
        assert sorted(set(statuses)) == [200, 409]
        assert statuses.count(200) == 1
        for base in (a, b):
            stored = (await client.get(base + path)).json()
            assert stored["data"] == data[statuses.index(200)]
            assert stored["sequence_token"] == "2"


# -- --workers 2 on one port ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_workers(shared_redis: str) -> Iterator[ServerProcess]:
    with rendezvous_process(shared_redis, "--workers", "2") as server:
        yield server


def test_workers_option_starts_that_many_worker_processes(two_workers: ServerProcess) -> None:
    deadline = time.monotonic() + 10
    while len(two_workers.worker_pids()) != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(two_workers.worker_pids()) == 2


def _gen1_poll(url: str, etag: str) -> httpx.Response:
    """Poll as Element does (If-None-Match, once per interval) until the payload changes."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = fresh("GET", url, headers={"If-None-Match": etag})
        if response.status_code != 304:
            return response
        time.sleep(0.05)
    raise AssertionError("the payload never changed")


def test_two_workers_on_one_port_serve_a_whole_gen1_exchange(two_workers: ServerProcess, ledger: Ledger) -> None:
    base = two_workers.url
    # Device G creates the session and shows the QR code; device S scans it and reads the empty first payload.
    url_path, g_etag = ledger.gen1(fresh("POST", base + GEN1, headers=TEXT))
    url = base + url_path
    first = fresh("GET", url)
    assert (first.status_code, first.content) == (200, b"")
    s_etag = first.headers["etag"]
    received: list[bytes] = []
    for turn in range(4):
        # S and G take turns, each writing on the ETag it last saw and then waiting for the other's answer.
        writer_etag = s_etag if turn % 2 == 0 else g_etag
        message = f"message {turn}".encode()
        put = fresh("PUT", url, content=message, headers={**TEXT, "If-Match": writer_etag})
        assert put.status_code == 202, put.text
        reader = _gen1_poll(url, g_etag if turn % 2 == 0 else s_etag)
        assert reader.status_code == 200
        received.append(reader.content)
        if turn % 2 == 0:
            s_etag, g_etag = put.headers["etag"], reader.headers["etag"]
        else:
            g_etag, s_etag = put.headers["etag"], reader.headers["etag"]
    assert received == [b"message 0", b"message 1", b"message 2", b"message 3"]
    assert fresh("DELETE", url).status_code == 204
    assert fresh("GET", url).status_code == 404


def _gen2_poll(url: str, token: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        body: dict[str, Any] = fresh("GET", url).json()
        if body["sequence_token"] != token:
            return body
        time.sleep(0.05)
    raise AssertionError("the sequence_token never changed")


def test_two_workers_on_one_port_serve_a_whole_gen2_exchange(two_workers: ServerProcess, ledger: Ledger) -> None:
    base = two_workers.url
    session = ledger.gen2(fresh("POST", base + GEN2, json={"data": ""}))
    url = f"{base}{GEN2}/{session['id']}"
    token = fresh("GET", url).json()["sequence_token"]
    received: list[str] = []
    for turn in range(4):
        put = fresh("PUT", f"{url}/{secrets.token_urlsafe(16)}", json={"sequence_token": token, "data": f"m{turn}"})
        assert put.status_code == 200, put.text
        body = _gen2_poll(url, token)
        assert body["sequence_token"] == put.json()["sequence_token"]
        received.append(body["data"])
        token = body["sequence_token"]
    assert received == ["m0", "m1", "m2", "m3"]
    assert fresh("DELETE", url).status_code == 200
    assert fresh("GET", url).status_code == 404


# -- faults --------------------------------------------------------------------------------------------------


@pytest.fixture
def throwaway_redis() -> Iterator[redis_servers.RedisServer]:
    reason = redis_servers.missing_binaries()
    if reason is not None:
        pytest.skip(reason)
    with redis_servers.redis_server() as server:
        yield server


def _assert_store_unavailable(response: httpx.Response) -> None:
    body = assert_matrix_error(response, 503, "M_UNKNOWN")
    assert int(response.headers["retry-after"]) >= 1
    assert body["retry_after_ms"] > 0


def test_redis_outage_mid_session_answers_503_with_retry_after(
    throwaway_redis: redis_servers.RedisServer,
) -> None:
    with rendezvous_process(throwaway_redis.url) as server:
        base = server.url
        gen1_path = urlsplit(fresh("POST", base + GEN1, headers=TEXT).json()["url"]).path
        gen1_etag = fresh("GET", base + gen1_path).headers["etag"]
        gen2_path = f"{GEN2}/{fresh('POST', base + GEN2, json={'data': ''}).json()['id']}"
        throwaway_redis.stop()
        _assert_store_unavailable(fresh("GET", base + gen1_path))
        _assert_store_unavailable(fresh("PUT", base + gen1_path, content=b"x", headers={**TEXT, "If-Match": gen1_etag}))
        _assert_store_unavailable(fresh("GET", base + gen2_path))
        _assert_store_unavailable(fresh("PUT", f"{base}{gen2_path}/t1", json={"sequence_token": "1", "data": "x"}))
        _assert_store_unavailable(fresh("POST", base + GEN1, headers=TEXT))
        _assert_store_unavailable(fresh("POST", base + GEN2, json={"data": ""}))
        _assert_store_unavailable(fresh("GET", base + HEALTH_PATH))
        assert server.alive()


def test_service_resumes_when_redis_returns_without_restarting_the_server(
    throwaway_redis: redis_servers.RedisServer,
) -> None:
    with rendezvous_process(throwaway_redis.url) as server:
        base = server.url
        pid = server.process.pid
        assert fresh("POST", base + GEN2, json={"data": ""}).status_code == 200
        throwaway_redis.stop()
        assert fresh("POST", base + GEN2, json={"data": ""}).status_code == 503
        throwaway_redis.start()
        assert fresh("GET", base + HEALTH_PATH).status_code == 200
        session = fresh("POST", base + GEN2, json={"data": "back"})
        assert session.status_code == 200
        path = f"{GEN2}/{session.json()['id']}"
        put = fresh("PUT", f"{base}{path}/t1", json={"sequence_token": "1", "data": "again"})
        assert put.json() == {"sequence_token": "2"}
        gen1 = fresh("POST", base + GEN1, headers=TEXT)
        assert gen1.status_code == 201
        assert server.alive()
        assert server.process.pid == pid


def test_killing_one_process_leaves_the_other_serving_its_sessions(shared_redis: str, ledger: Ledger) -> None:
    with rendezvous_process(shared_redis) as a, rendezvous_process(shared_redis) as b:
        gen1_path, etag = ledger.gen1(fresh("POST", a.url + GEN1, headers=TEXT))
        session = ledger.gen2(fresh("POST", a.url + GEN2, json={"data": ""}))
        gen2_path = f"{GEN2}/{session['id']}"
        a.kill()
        with pytest.raises(httpx.TransportError):
            fresh("GET", a.url + HEALTH_PATH)
        put = fresh("PUT", b.url + gen1_path, content=b"after the crash", headers={**TEXT, "If-Match": etag})
        assert put.status_code == 202
        assert fresh("GET", b.url + gen1_path).content == b"after the crash"
        put2 = fresh("PUT", f"{b.url}{gen2_path}/t1", json={"sequence_token": "1", "data": "after the crash"})
        assert put2.json() == {"sequence_token": "2"}
        assert fresh("GET", b.url + gen2_path).json()["data"] == "after the crash"
        assert fresh("DELETE", b.url + gen1_path).status_code == 204
        assert fresh("DELETE", b.url + gen2_path).status_code == 200
