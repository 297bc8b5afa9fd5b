"""``rendezvous serve --server granian``: the same app, settings and protocols under granian instead of uvicorn.

Each test starts the real CLI in a subprocess on a free port and talks HTTP to it.
"""

from __future__ import annotations

import httpx
import pytest

from tests.support.server import run_cli, serve_cli

from .helpers import GEN1, GEN2, TEXT

pytest.importorskip("granian")

GRANIAN = ["--server", "granian"]
NO_LIMITS = {
    "RENDEZVOUS_CREATE_RATE_PER_SECOND": "0",
    "RENDEZVOUS_SESSION_RATE_PER_SECOND": "0",
    "RENDEZVOUS_HOLD_MS": "300",
}


def test_gen1_exchange_works_under_granian() -> None:
    with serve_cli(NO_LIMITS, GRANIAN) as base, httpx.Client(base_url=base) as client:
        created = client.post(GEN1, content=b"offer", headers=TEXT)
        assert created.status_code == 201
        assert created.headers["server"] == "granian"  # uvicorn runs without a Server header
        url = created.json()["url"]
        first = client.get(url)
        assert (first.status_code, first.text, first.headers["content-type"]) == (200, "offer", "text/plain")
        assert client.get(url, headers={"If-None-Match": first.headers["etag"]}).status_code == 304
        put = client.put(url, content=b"answer", headers={**TEXT, "If-Match": first.headers["etag"]})
        assert put.status_code == 202
        second = client.get(url, headers={"If-None-Match": first.headers["etag"]})
        assert (second.status_code, second.text, second.headers["etag"]) == (200, "answer", put.headers["etag"])
        assert client.delete(url).status_code == 204
        assert client.get(url).status_code == 404


def test_gen2_exchange_works_under_granian_chosen_by_environment() -> None:
    with serve_cli({**NO_LIMITS, "RENDEZVOUS_SERVER": "granian"}) as base, httpx.Client(base_url=base) as client:
        response = client.post(GEN2, json={"data": "offer"})
        assert response.headers["server"] == "granian"
        created = response.json()
        url = f"{GEN2}/{created['id']}"
        assert client.get(url).json()["data"] == "offer"
        put = client.put(f"{url}/txn-1", json={"sequence_token": created["sequence_token"], "data": "answer"})
        assert put.status_code == 200
        read = client.get(url).json()
        assert (read["data"], read["sequence_token"]) == ("answer", put.json()["sequence_token"])
        stale = client.put(f"{url}/txn-2", json={"sequence_token": created["sequence_token"], "data": "late"})
        assert stale.status_code == 409
        assert client.delete(url).status_code == 200
        assert client.get(url).status_code == 404


def test_granian_gets_the_validated_settings() -> None:
    env = {**NO_LIMITS, "RENDEZVOUS_TTL_SECONDS": "150", "RENDEZVOUS_PUBLIC_BASE_URL": "https://rz.example"}
    with serve_cli(env, GRANIAN) as base, httpx.Client(base_url=base) as client:
        assert 145_000 <= client.post(GEN2, json={"data": ""}).json()["expires_in_ms"] <= 150_000
        assert client.post(GEN1, content=b"", headers=TEXT).json()["url"].startswith(f"https://rz.example{GEN1}/")


def test_granian_workers_share_sessions_through_redis() -> None:
    redis = pytest.importorskip("redis")
    url = "redis://127.0.0.1:6379/0"
    probe = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        probe.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    finally:
        probe.close()
    env = {**NO_LIMITS, "RENDEZVOUS_STORE_URL": url}
    with serve_cli(env, [*GRANIAN, "--workers", "2"]) as base:
        session = httpx.post(f"{base}{GEN2}", json={"data": "shared"}).json()
        # A fresh connection per request lets the kernel hand requests to either worker.
        for _ in range(20):
            response = httpx.get(f"{base}{GEN2}/{session['id']}", headers={"Connection": "close"})
            assert response.json()["data"] == "shared"
        assert httpx.delete(f"{base}{GEN2}/{session['id']}").status_code == 200


def test_an_unknown_server_is_refused() -> None:
    result = run_cli(["serve", "--server", "hypercorn"])
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
