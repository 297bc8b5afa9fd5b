"""Prometheus metrics: ``/metrics`` exposes them, and they count what happens (parsed from the text exposition).

Counters are compared before and after the actions of each test, so tests sharing a server do not depend on
one another.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rendezvous.app import create_app
from rendezvous.config import load_settings
from rendezvous.metrics import ExpiryWatch, Metrics
from rendezvous.protocol import METRICS_PATH
from rendezvous.store import Generation, MemoryStore
from tests.server.helpers import GEN1, GEN2, TEXT, gen1_put, gen1_session, gen2_session
from tests.server.test_push_redis import REDIS_URL
from tests.server.test_push_support import NO_LIMITS, sample, scrape
from tests.support.server import free_port, serve_app, serve_cli, serve_settings

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve_cli(NO_LIMITS) as base_url:
        yield base_url


@pytest.fixture
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=10) as c:
        yield c


def _delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return sample(after, name, **labels) - sample(before, name, **labels)


def _txn() -> str:
    return secrets.token_hex(8)


def test_metrics_endpoint_serves_the_prometheus_text_format(client: httpx.Client) -> None:
    response = client.get(METRICS_PATH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert "# TYPE rendezvous_sessions_created_total counter" in response.text


def test_sessions_created_and_deleted_are_counted_per_generation(client: httpx.Client, server: str) -> None:
    before = scrape(server)
    url, _ = gen1_session(client)
    gen2 = [gen2_session(client) for _ in range(2)]
    client.delete(url)
    client.delete(f"{GEN2}/{gen2[0]['id']}")
    after = scrape(server)
    assert _delta(before, after, "rendezvous_sessions_created_total", generation="gen1") == 1
    assert _delta(before, after, "rendezvous_sessions_created_total", generation="gen2") == 2
    assert _delta(before, after, "rendezvous_sessions_deleted_total", generation="gen1") == 1
    assert _delta(before, after, "rendezvous_sessions_deleted_total", generation="gen2") == 1


def test_live_sessions_are_read_from_the_store(client: httpx.Client, server: str) -> None:
    before = sample(scrape(server), "rendezvous_sessions_live")
    session = gen2_session(client)
    assert sample(scrape(server), "rendezvous_sessions_live") == before + 1
    client.delete(f"{GEN2}/{session['id']}")
    assert sample(scrape(server), "rendezvous_sessions_live") == before


def test_writes_conflicts_and_replays_are_counted(client: httpx.Client, server: str) -> None:
    before = scrape(server)
    url, etag = gen1_session(client)
    assert gen1_put(client, url, etag, b"one").status_code == 202
    assert gen1_put(client, url, etag, b"stale").status_code == 412
    session = gen2_session(client)
    txn = _txn()
    path = f"{GEN2}/{session['id']}/{txn}"
    assert client.put(path, json={"sequence_token": "1", "data": "a"}).status_code == 200
    assert client.put(path, json={"sequence_token": "1", "data": "a"}).status_code == 200  # replayed
    conflict = client.put(f"{GEN2}/{session['id']}/{_txn()}", json={"sequence_token": "1", "data": "b"})
    assert conflict.status_code == 409
    after = scrape(server)
    assert _delta(before, after, "rendezvous_writes_total", generation="gen1") == 1
    assert _delta(before, after, "rendezvous_writes_total", generation="gen2") == 1
    assert _delta(before, after, "rendezvous_write_conflicts_total", generation="gen1") == 1
    assert _delta(before, after, "rendezvous_write_conflicts_total", generation="gen2") == 1
    assert _delta(before, after, "rendezvous_write_replays_total", generation="gen2") == 1
    assert _delta(before, after, "rendezvous_http_responses_total", route="gen1.put", status="412") == 1
    assert _delta(before, after, "rendezvous_http_responses_total", route="gen2.put", status="409") == 1


def test_too_large_answers_are_counted(client: httpx.Client, server: str) -> None:
    before = scrape(server)
    url, etag = gen1_session(client)
    assert gen1_put(client, url, etag, b"x" * 5000).status_code == 413
    after = scrape(server)
    assert _delta(before, after, "rendezvous_http_responses_total", route="gen1.put", status="413") == 1


def test_request_latency_is_observed_per_route(client: httpx.Client, server: str) -> None:
    session = gen2_session(client)
    before = scrape(server)
    for _ in range(3):
        client.get(f"{GEN2}/{session['id']}")
    client.get(f"{GEN2}/{session['id']}", params={"since": "1", "timeout_ms": "100"})
    after = scrape(server)
    name = "rendezvous_http_request_duration_seconds_count"
    assert _delta(before, after, name, route="gen2.get") == 3
    assert _delta(before, after, name, route="gen2.long_poll") == 1
    assert _delta(before, after, "rendezvous_http_request_duration_seconds_sum", route="gen2.long_poll") >= 0.09
    assert _delta(before, after, "rendezvous_push_long_polls_total", generation="gen2", outcome="timeout") == 1


def test_store_latency_is_observed_per_operation(client: httpx.Client, server: str) -> None:
    before = scrape(server)
    session = gen2_session(client)
    client.get(f"{GEN2}/{session['id']}")
    after = scrape(server)
    name = "rendezvous_store_operation_duration_seconds_count"
    assert _delta(before, after, name, operation="create") == 1
    assert _delta(before, after, name, operation="get") >= 1


def test_rate_limited_answers_are_counted() -> None:
    with serve_settings(session_rate_per_second=0.01, session_burst=1) as base_url:
        with httpx.Client(base_url=base_url, timeout=10) as client:
            session = gen2_session(client)
            assert client.get(f"{GEN2}/{session['id']}").status_code == 200
            assert client.get(f"{GEN2}/{session['id']}").status_code == 429
        samples = scrape(base_url)
    assert sample(samples, "rendezvous_http_responses_total", route="gen2.get", status="429") == 1


def test_store_outage_is_counted_as_503_and_as_store_errors() -> None:
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    with serve_settings(store_url=unreachable, create_rate_per_second=0, session_rate_per_second=0) as base_url:
        response = httpx.post(f"{base_url}{GEN2}", json={"data": ""}, timeout=30)
        assert response.status_code == 503
        samples = scrape(base_url)
    assert sample(samples, "rendezvous_http_responses_total", route="gen2.create", status="503") == 1
    assert sample(samples, "rendezvous_store_errors_total", operation="create") == 1
    assert ("rendezvous_sessions_live", ()) not in samples  # unknown while the store is down


def test_sessions_that_reach_their_deadline_are_counted_as_expired() -> None:
    app = create_app(load_settings(environ={}, create_rate_per_second=0, session_rate_per_second=0))
    # Look sessions up 0.3 s after creation instead of just before their 180 s deadline: a session still there
    # then is what a session still there at its deadline looks like.
    app.expiry.margin_s = 180 - 0.3
    with serve_app(app) as base_url, httpx.Client(base_url=base_url, timeout=10) as client:
        gen1_session(client)
        kept, deleted = gen2_session(client), gen2_session(client)
        client.delete(f"{GEN2}/{deleted['id']}")
        assert kept
        time.sleep(0.8)
        samples = scrape(base_url)
    assert sample(samples, "rendezvous_sessions_expired_total", generation="gen1") == 1
    assert sample(samples, "rendezvous_sessions_expired_total", generation="gen2") == 1


def test_metrics_can_be_served_on_a_separate_port_only() -> None:
    port = free_port()
    with serve_settings(metrics_port=port) as base_url:
        assert httpx.get(f"{base_url}{METRICS_PATH}").status_code == 404
        response = httpx.get(f"http://127.0.0.1:{port}{METRICS_PATH}", timeout=10)
        assert response.status_code == 200
        assert "rendezvous_http_responses_total" in response.text
        assert httpx.get(f"http://127.0.0.1:{port}/other", timeout=10).status_code == 404


def test_metrics_can_be_switched_off() -> None:
    with serve_settings(metrics_enabled=False) as base_url:
        response = httpx.get(f"{base_url}{METRICS_PATH}")
        assert response.status_code == 404
        assert response.json()["errcode"] == "M_UNRECOGNIZED"


def test_workers_report_their_sum_in_multiprocess_mode(tmp_path: Path) -> None:
    env = {
        **NO_LIMITS,
        "RENDEZVOUS_WORKERS": "2",
        "RENDEZVOUS_STORE_URL": REDIS_URL,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    }
    with serve_cli(env) as base_url:
        # A new connection per request lets the kernel spread them over both workers.
        for _ in range(20):
            assert httpx.post(f"{base_url}{GEN1}", content=b"", headers=TEXT).status_code == 201
        pids = {path.name for path in tmp_path.glob("counter_*.db")}
        assert len(pids) == 2, "both workers should have served requests"
        for _ in range(5):
            samples = scrape(base_url)
            assert sample(samples, "rendezvous_sessions_created_total", generation="gen1") == 20


async def test_parked_gauge_counts_a_long_poll_while_it_waits(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=10) as http:
        session = (await http.post(GEN2, json={"data": ""})).json()
        poll = asyncio.create_task(http.get(f"{GEN2}/{session['id']}", params={"since": "1", "timeout_ms": "5000"}))
        await asyncio.sleep(0.3)
        assert sample(scrape(server), "rendezvous_push_parked", kind="long_poll") == 1
        await http.put(f"{GEN2}/{session['id']}/{_txn()}", json={"sequence_token": "1", "data": "x"})
        await poll
        assert sample(scrape(server), "rendezvous_push_parked", kind="long_poll") == 0


async def test_the_expiry_watch_holds_only_the_sessions_it_watches() -> None:
    # With several workers, a DELETE is often served by a worker that did not create the session: the ids of
    # those must not pile up in the worker that deleted them.
    store = MemoryStore()
    metrics = Metrics()
    creator, deleter = ExpiryWatch(store, metrics, margin_s=0.8), ExpiryWatch(store, metrics, margin_s=0.8)
    creator.start()
    deleter.start()
    try:
        sessions = [await store.create(Generation.GEN2, b"", ttl_ms=1_000) for _ in range(2_000)]
        for session in sessions:
            creator.created(session)
            await store.delete(session.id)
            deleter.deleted(session.id)
        assert deleter.held_ids == 0
        assert creator.held_ids == 2_000
        # The creator's own deletions and sessions still there at the deadline are judged as before.
        own, kept = [await store.create(Generation.GEN2, b"", ttl_ms=1_000) for _ in range(2)]
        creator.created(own)
        creator.created(kept)
        await store.delete(own.id)
        creator.deleted(own.id)
        await asyncio.sleep(0.6)
        assert creator.held_ids == deleter.held_ids == 0
        assert metrics.registry.get_sample_value("rendezvous_sessions_expired_total", {"generation": "gen2"}) == 1
    finally:
        await creator.stop()
        await deleter.stop()
