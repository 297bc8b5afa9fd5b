"""The Gen-2 create policy: off / open / authenticated, with tokens checked by a homeserver's whoami.

The homeserver here is a stand-in (the only one in these tests): a small ASGI app that implements just
``GET /_matrix/client/v3/account/whoami``, served by real uvicorn on a real socket, so the server's real HTTP
client talks to it over TCP. A full Synapse would need an OAuth server behind it to issue tokens at all.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from rendezvous.protocol import GEN2_STABLE_PATH, WHOAMI_PATH
from tests.support.server import free_port, serve_app, serve_settings

from .helpers import GEN1, GEN2, TEXT, assert_matrix_error, gen1_session

ALICE_TOKEN = "syt_alice_secret"
BROKEN_TOKEN = "breaks-the-homeserver"


class StandInHomeserver:
    """Answers whoami for one known token; counts calls so tests can see the cache working."""

    def __init__(self) -> None:
        self.whoami_calls = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        headers = dict(scope["headers"])
        if scope["path"] != WHOAMI_PATH:
            status, body = 404, b'{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}'
        else:
            self.whoami_calls += 1
            auth = headers.get(b"authorization", b"")
            if auth == f"Bearer {ALICE_TOKEN}".encode():
                status, body = 200, b'{"user_id":"@alice:example.org","device_id":"ABCDEF"}'
            elif auth == f"Bearer {BROKEN_TOKEN}".encode():
                status, body = 500, b'{"errcode":"M_UNKNOWN","error":"oops"}'
            else:
                status, body = 401, b'{"errcode":"M_UNKNOWN_TOKEN","error":"Invalid access token"}'
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def homeserver() -> Iterator[tuple[str, StandInHomeserver]]:
    app = StandInHomeserver()
    with serve_app(app) as base_url:
        yield base_url, app


@pytest.fixture(scope="module")
def authenticated(homeserver: tuple[str, StandInHomeserver]) -> Iterator[str]:
    with serve_settings(gen2_create_policy="authenticated", homeserver_url=homeserver[0]) as base_url:
        yield base_url


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- authenticated -------------------------------------------------------------------------------------------


def test_discovery_without_token_says_unavailable(authenticated: str) -> None:
    response = httpx.get(f"{authenticated}{GEN2}")
    assert response.status_code == 200
    assert response.json()["create_available"] is False


def test_discovery_with_valid_token_says_available(authenticated: str) -> None:
    response = httpx.get(f"{authenticated}{GEN2}", headers=_bearer(ALICE_TOKEN))
    assert response.json()["create_available"] is True


def test_discovery_with_invalid_token_is_401_not_anonymous(authenticated: str) -> None:
    response = httpx.get(f"{authenticated}{GEN2}", headers=_bearer("expired"))
    assert_matrix_error(response, 401, "M_UNKNOWN_TOKEN")


def test_create_without_token_is_forbidden(authenticated: str) -> None:
    assert_matrix_error(httpx.post(f"{authenticated}{GEN2}", json={"data": ""}), 403, "M_FORBIDDEN")


def test_create_with_valid_token_succeeds(authenticated: str) -> None:
    response = httpx.post(f"{authenticated}{GEN2}", json={"data": ""}, headers=_bearer(ALICE_TOKEN))
    assert response.status_code == 200
    assert response.json()["sequence_token"] == "1"


def test_create_with_invalid_token_is_401(authenticated: str) -> None:
    response = httpx.post(f"{authenticated}{GEN2}", json={"data": ""}, headers=_bearer("expired"))
    assert_matrix_error(response, 401, "M_UNKNOWN_TOKEN")


def test_authorization_that_is_not_bearer_is_401(authenticated: str) -> None:
    response = httpx.get(f"{authenticated}{GEN2}", headers={"Authorization": "Basic YWxpY2U6cHc="})
    assert_matrix_error(response, 401, "M_UNKNOWN_TOKEN")


@pytest.fixture(scope="module")
def unthrottled(homeserver: tuple[str, StandInHomeserver]) -> Iterator[str]:
    with serve_settings(
        gen2_create_policy="authenticated",
        homeserver_url=homeserver[0],
        create_rate_per_second=0,
        session_rate_per_second=0,
    ) as base_url:
        yield base_url


@pytest.mark.parametrize("query", ["%C3%A9", "%FF", "syt_a%0Ab", "syt_a%00b", "a%20b", "%0D%0AX-Evil:%201"])
def test_access_token_parameter_that_is_no_token_string_is_401(unthrottled: str, query: str) -> None:
    for method in ("GET", "POST"):
        response = httpx.request(method, f"{unthrottled}{GEN2}?access_token={query}", json={"data": ""})
        assert_matrix_error(response, 401, "M_UNKNOWN_TOKEN")


@pytest.mark.parametrize("value", [b"Bearer \xff", b"Bearer \xc3\xa9", b"Bearer syt_a\tb", b"Bearer syt_a b"])
def test_bearer_token_that_is_no_token_string_is_401(unthrottled: str, value: bytes) -> None:
    for method in ("GET", "POST"):
        response = httpx.request(method, f"{unthrottled}{GEN2}", json={"data": ""}, headers={"Authorization": value})
        assert_matrix_error(response, 401, "M_UNKNOWN_TOKEN")


def test_access_token_query_parameter_is_honoured(authenticated: str) -> None:
    response = httpx.get(f"{authenticated}{GEN2}", params={"access_token": ALICE_TOKEN})
    assert response.json()["create_available"] is True


def test_session_operations_need_no_token(authenticated: str) -> None:
    created = httpx.post(f"{authenticated}{GEN2}", json={"data": "x"}, headers=_bearer(ALICE_TOKEN)).json()
    path = f"{authenticated}{GEN2}/{created['id']}"
    assert httpx.get(path).status_code == 200
    assert httpx.put(f"{path}/t1", json={"sequence_token": "1", "data": "y"}).status_code == 200
    assert httpx.delete(path).status_code == 200


def test_gen1_create_stays_unauthenticated(authenticated: str) -> None:
    assert httpx.post(f"{authenticated}{GEN1}", content=b"", headers=TEXT).status_code == 201


def test_whoami_answers_are_cached(homeserver: tuple[str, StandInHomeserver]) -> None:
    base, app = homeserver
    with serve_settings(gen2_create_policy="authenticated", homeserver_url=base) as server:
        before = app.whoami_calls
        for _ in range(3):
            assert httpx.get(f"{server}{GEN2}", headers=_bearer(ALICE_TOKEN)).json()["create_available"]
        assert app.whoami_calls == before + 1


def test_with_cache_off_every_request_asks_the_homeserver(homeserver: tuple[str, StandInHomeserver]) -> None:
    base, app = homeserver
    with serve_settings(gen2_create_policy="authenticated", homeserver_url=base, token_cache_seconds=0) as server:
        before = app.whoami_calls
        for _ in range(2):
            httpx.get(f"{server}{GEN2}", headers=_bearer(ALICE_TOKEN))
        assert app.whoami_calls == before + 2


def test_homeserver_error_is_503_with_retry_after(authenticated: str) -> None:
    response = httpx.get(f"{authenticated}{GEN2}", headers=_bearer(BROKEN_TOKEN))
    assert_matrix_error(response, 503, "M_UNKNOWN")
    assert int(response.headers["retry-after"]) >= 1


def test_unreachable_homeserver_is_503_with_retry_after() -> None:
    with serve_settings(gen2_create_policy="authenticated", homeserver_url=f"http://127.0.0.1:{free_port()}") as server:
        response = httpx.post(f"{server}{GEN2}", json={"data": ""}, headers=_bearer(ALICE_TOKEN))
        body = assert_matrix_error(response, 503, "M_UNKNOWN")
        assert int(response.headers["retry-after"]) >= 1
        assert ALICE_TOKEN not in body["error"]


# -- open, with a homeserver configured
# ----------------------------------------------------------------------------


def test_open_policy_still_refuses_an_invalid_token(homeserver: tuple[str, StandInHomeserver]) -> None:
    with serve_settings(gen2_create_policy="open", homeserver_url=homeserver[0]) as server:
        assert httpx.get(f"{server}{GEN2}").json()["create_available"] is True
        assert_matrix_error(httpx.get(f"{server}{GEN2}", headers=_bearer("expired")), 401, "M_UNKNOWN_TOKEN")


# -- off
# -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gen2_off() -> Iterator[str]:
    with serve_settings(gen2_create_policy="off", gen2_stable_api=True) as base_url:
        yield base_url


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", GEN2),
        ("POST", GEN2),
        ("GET", f"{GEN2}/someid"),
        ("PUT", f"{GEN2}/someid"),
        ("PUT", f"{GEN2}/someid/txn"),
        ("DELETE", f"{GEN2}/someid"),
        ("GET", GEN2_STABLE_PATH),
    ],
)
def test_off_policy_makes_the_whole_gen2_api_unrecognized(gen2_off: str, method: str, path: str) -> None:
    response = httpx.request(method, f"{gen2_off}{path}", json={"data": ""})
    assert_matrix_error(response, 404, "M_UNRECOGNIZED")


def test_off_policy_leaves_gen1_working(gen2_off: str) -> None:
    with httpx.Client(base_url=gen2_off) as client:
        url, _ = gen1_session(client)
        assert client.get(url).status_code == 200


def test_httpx_is_loaded_only_for_a_homeserver() -> None:
    """The HTTP client is the server's largest import: a server without a homeserver never loads it (nor does the
    command line that starts it)."""
    script = """
import sys
import rendezvous.cli
from rendezvous.app import RendezvousApp
from rendezvous.config import Settings
RendezvousApp(Settings())
print("httpx" in sys.modules)
RendezvousApp(Settings(homeserver_url="http://127.0.0.1:1/"))
print("httpx" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]
