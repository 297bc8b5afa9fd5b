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
        url = _created_url(
            base, {"X-Forwarded-Proto": "http, https", "X-Forwarded-Host": "a.example, b.example"}
        )
        assert url.startswith(f"https://b.example{GEN1}/")


def test_rfc7239_forwarded_header_from_trusted_proxy_is_used() -> None:
    with serve_settings(trusted_proxies=["127.0.0.1"]) as base:
        url = _created_url(base, {"Forwarded": 'for=198.51.100.7;proto=https;host="rz.example.net"'})
        assert url.startswith(f"https://rz.example.net{GEN1}/")


def test_configured_public_base_url_wins() -> None:
    with serve_settings(
        public_base_url="https://rz.example.com/prefix/", trusted_proxies=["127.0.0.1"]
    ) as base:
        url = _created_url(base, {"X-Forwarded-Host": "other.example"})
        assert url.startswith(f"https://rz.example.com/prefix{GEN1}/")


@pytest.mark.parametrize("host", ["bad host", "a/b", "x@y"])
def test_unusable_forwarded_host_is_invalid_param(host: str) -> None:
    with serve_settings(trusted_proxies=["127.0.0.1"]) as base:
        response = httpx.post(f"{base}{GEN1}", content=b"", headers={**TEXT, "X-Forwarded-Host": host})
        assert_matrix_error(response, 400, "M_INVALID_PARAM")


def test_unknown_forwarded_protocol_is_invalid_param() -> None:
    with serve_settings(trusted_proxies=["127.0.0.1"]) as base:
        response = httpx.post(f"{base}{GEN1}", content=b"", headers={**TEXT, "X-Forwarded-Proto": "gopher"})
        assert_matrix_error(response, 400, "M_INVALID_PARAM")
