"""Gen-1 session URLs: built from the request, from trusted proxies' headers, or from public_base_url."""

from __future__ import annotations

import httpx
import pytest

from tests.support.server import serve_settings

from .helpers import GEN1, TEXT, assert_matrix_error


def _created_url(base: str, headers: dict[str, str] | None = None) -> str:
    response = httpx.post(f"{base}{GEN1}", content=b"", headers={**TEXT, **(headers or {})})
    assert response.status_code == 201, response.text
    url: str = response.json()["url"]
    return url


def test_url_uses_the_host_the_client_asked_for(server: str) -> None:
    url = _created_url(server, {"Host": "rendezvous.example.org:8443"})
    assert url.startswith(f"http://rendezvous.example.org:8443{GEN1}/")


def test_forwarded_headers_from_untrusted_peer_are_ignored(server: str) -> None:
    url = _created_url(server, {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"})
    assert url.startswith(f"{server}{GEN1}/")


def test_x_forwarded_headers_from_trusted_proxy_are_used() -> None:
    with serve_settings(trusted_proxies=["127.0.0.0/8"]) as base:
        url = _created_url(base, {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "matrix.example.org"})
        assert url.startswith(f"https://matrix.example.org{GEN1}/")


def test_nearest_proxy_value_wins_in_a_forwarded_list() -> None:
    with serve_settings(trusted_proxies=["127.0.0.1"]) as base:
        url = _created_url(base, {"X-Forwarded-Proto": "http, https", "X-Forwarded-Host": "a.example, b.example"})
        assert url.startswith(f"https://b.example{GEN1}/")


def test_rfc7239_forwarded_header_from_trusted_proxy_is_used() -> None:
    with serve_settings(trusted_proxies=["127.0.0.1"], forwarded_header="forwarded") as base:
        url = _created_url(base, {"Forwarded": 'for=198.51.100.7;proto=https;host="rz.example.net"'})
        assert url.startswith(f"https://rz.example.net{GEN1}/")


def test_configured_public_base_url_wins() -> None:
    with serve_settings(public_base_url="https://rz.example.com/prefix/", trusted_proxies=["127.0.0.1"]) as base:
        url = _created_url(base, {"X-Forwarded-Host": "other.example"})
        assert url.startswith(f"https://rz.example.com/prefix{GEN1}/")


# The ports out of range were found by tests/server/test_fuzz_http.py: they made URLs no client can use.
UNUSABLE_HOSTS = ["bad host", "a/b", "x@y", "x:0", "x:65536", "[::1]:99999"]


@pytest.mark.parametrize("host", UNUSABLE_HOSTS)
def test_unusable_forwarded_host_is_invalid_param(host: str) -> None:
    with serve_settings(trusted_proxies=["127.0.0.1"]) as base:
        response = httpx.post(f"{base}{GEN1}", content=b"", headers={**TEXT, "X-Forwarded-Host": host})
        assert_matrix_error(response, 400, "M_INVALID_PARAM")


@pytest.mark.parametrize("host", UNUSABLE_HOSTS)
def test_unusable_host_is_invalid_param(server: str, host: str) -> None:
    response = httpx.post(f"{server}{GEN1}", content=b"", headers={**TEXT, "Host": host})
    assert_matrix_error(response, 400, "M_INVALID_PARAM")


@pytest.mark.parametrize("host", ["x:1", "x:65535", "[::1]:8448", "rz.example.org"])
def test_host_with_a_port_in_range_is_used(server: str, host: str) -> None:
    assert _created_url(server, {"Host": host}).startswith(f"http://{host}{GEN1}/")


def test_unknown_forwarded_protocol_is_invalid_param() -> None:
    with serve_settings(trusted_proxies=["127.0.0.1"]) as base:
        response = httpx.post(f"{base}{GEN1}", content=b"", headers={**TEXT, "X-Forwarded-Proto": "gopher"})
        assert_matrix_error(response, 400, "M_INVALID_PARAM")


# -- one forwarding family only: the one the proxy writes ---------------------------------------------------


def test_client_forwarded_header_is_ignored_behind_an_x_forwarded_proxy() -> None:
    # nginx / Caddy write X-Forwarded-* and pass a client's own Forwarded header through untouched.
    with serve_settings(trusted_proxies=["127.0.0.1"]) as base:
        url = _created_url(
            base,
            {
                "Forwarded": 'for=203.0.113.5;proto=https;host="evil.example"',
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "matrix.example.org",
            },
        )
        assert url.startswith(f"https://matrix.example.org{GEN1}/")
        url = _created_url(base, {"Forwarded": 'host="evil.example"', "Host": "rz.example.org"})
        assert url.startswith(f"http://rz.example.org{GEN1}/")


def test_x_forwarded_headers_are_ignored_when_the_proxy_writes_forwarded() -> None:
    with serve_settings(trusted_proxies=["127.0.0.1"], forwarded_header="forwarded") as base:
        url = _created_url(base, {"X-Forwarded-Host": "evil.example", "Host": "rz.example.org"})
        assert url.startswith(f"http://rz.example.org{GEN1}/")


def _limited(base: str, headers: list[dict[str, str]]) -> list[int]:
    with httpx.Client(base_url=base) as c:
        return [c.post(GEN1, content=b"", headers={**TEXT, **h}).status_code for h in headers]


_ONE_CREATE = {"create_rate_per_second": 0.01, "create_burst": 1, "trusted_proxies": ["127.0.0.1"]}


def test_rotating_a_client_forwarded_header_does_not_dodge_the_rate_limit() -> None:
    with serve_settings(**_ONE_CREATE) as base:
        headers = [{"Forwarded": f"for=203.0.113.{n}", "X-Forwarded-For": "198.51.100.7"} for n in range(1, 4)]
        assert _limited(base, headers) == [201, 429, 429]


def test_client_made_hops_before_the_proxy_append_do_not_dodge_the_rate_limit() -> None:
    # $proxy_add_x_forwarded_for keeps what the client sent and appends the real address: the rightmost
    # untrusted hop is the client.
    with serve_settings(**_ONE_CREATE) as base:
        headers = [{"X-Forwarded-For": f"203.0.113.{n}, 198.51.100.7"} for n in range(1, 4)]
        assert _limited(base, headers) == [201, 429, 429]


def test_rfc7239_mode_keys_on_the_rightmost_untrusted_hop() -> None:
    with serve_settings(**_ONE_CREATE, forwarded_header="forwarded") as base:
        headers = [
            {"Forwarded": f"for=203.0.113.{n}, for=198.51.100.7", "X-Forwarded-For": f"192.0.2.{n}"}
            for n in range(1, 4)
        ]
        assert _limited(base, headers) == [201, 429, 429]
